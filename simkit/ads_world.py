"""A synthetic ad-request world with exact values: the setting of DRL-PUT (Pinterest, 2025).

Each ad request comes from a user (a finite population with features) at an hour of the day;
``K`` candidate ads are drawn with replacement from a catalogue, with weights that depend on the
user's segment and the hour. Each ad has a campaign type (click / CPC, conversion / CPA,
impression / CPM), a bid and true engagement probabilities ``p_click``, ``p_click30`` (a click
followed by more than 30 s on the landing page) and ``p_conversion``, all known functions of the
ad, the segment and the hour.

The action is one of 10 x 10 x 10 grouped settings ``a = 100 g1 + 10 g2 + g3``: ``g1`` indexes
the click and click30 weights together, ``g2`` the conversion weight and ``g3`` the reserve price.
Ads whose *estimated revenue* ``erev = bid * p_action`` (``p_action`` = ``p_click`` for CPC,
``p_conversion`` for CPA, 1 for CPM) is below the reserve are dropped; the remaining ad with the
highest utility

    U = p_action * bid + w_click p_click + w_click30 p_click30 + w_conversion p_conversion

is shown (ties broken by catalogue rank); when every candidate is dropped nothing is shown and
the reward is 0. The reward of a shown ad is the campaign-type reward: estimated revenue plus user
value ``sum_k gamma_{c,k} p~_k`` with the coefficient table ``GAMMA`` and ``p~_k`` the engagement
probability min-max scaled over the world (``(p - lo_k) / (hi_k - lo_k)``, the population
version of the batch normalisation DRL-PUT trains with). ``reward="revenue"`` sets every gamma to 0
(the paper's revenue-only ablation).

Because the catalogue and the user population are finite and the candidates are drawn i.i.d.,
the probability that each catalogue ad is the one shown follows from order statistics:
with ads sorted by utility and ``F_j`` the probability that one draw is dropped or ranks at or
below ad ``j``, ad ``j`` is shown with probability ``F_j^K - F_{j-1}^K``. So the expected reward,
click rate and revenue of every action in every (segment, hour) cell are exact
(:meth:`AdsWorld.action_table`), and so is the value of any policy over the population of
(user, hour) requests (:meth:`AdsWorld.policy_value`).

References
----------
Deep Reinforcement Learning for Ranking Utility Tuning in the Ad Recommender System at Pinterest
(DRL-PUT), Pinterest, 2025. arXiv:2509.05292.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.errors import ConfigError

__all__ = [
    "CAMPAIGN_TYPES",
    "ENGAGEMENTS",
    "GAMMA",
    "N_ACTIONS",
    "USER_FEATURES",
    "AdsWorld",
    "AdsWorldConfig",
    "decode_action",
    "encode_action",
]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

CAMPAIGN_TYPES = ("click", "conversion", "impression")
"""Campaign types; an ad's ``campaign_type`` code indexes this tuple."""

ENGAGEMENTS = ("click", "click30", "conversion")
"""Engagement types, in the column order of every probability array."""

GAMMA = np.array([[1.0, 0.5, 0.0], [0.1, 0.4, 0.5], [0.0, 0.0, 0.0]])
"""User-value coefficients ``gamma[campaign_type, engagement]`` of the DRL-PUT paper."""

N_GROUP = 10
N_ACTIONS = N_GROUP**3

USER_FEATURES = ("segment", "hour", "country", "hist_ctr", "hist_cvr", "log_activity")
"""Request features, in the order of the env's ``obs["user"]``; the first three are categorical."""

# Segment parameters (rows: segments). Columns: base click logit, click30 logit, conversion logit.
_SEGMENTS = np.array(
    [
        [-1.41, 0.11, -3.18],  # clickers: most clicks, rare conversions
        [-2.68, -0.23, -0.28],  # shoppers: few clicks, many of them convert
        [-3.09, -0.61, -2.69],  # casual: few clicks, on eye-catching impression ads
        [-2.27, -1.31, -2.33],  # browsers: short clicks
    ]
)
# click-logit shift of each campaign type (click, conversion, impression) per segment
_SEGMENT_TYPE_CLICK = np.array(
    [[0.47, -0.37, -0.8], [-0.4, -0.52, -0.66], [-0.05, -0.94, 1.47], [0.63, 0.07, 1.7]]
)
# log sampling weight of each campaign type per segment (targeting)
_SEGMENT_MIX = np.array(
    [[-0.18, -0.13, 0.09], [0.27, 2.09, -0.3], [-0.31, -1.9, 1.0], [1.31, 0.66, 0.5]]
)
_N_CATEGORIES = 4
_HOUR_CLICK = np.array([0.0, 0.15, 0.3, -0.2])  # click-logit shift per hour bucket
_HOUR_MIX = np.array(  # log sampling weight of each campaign type per hour bucket
    [[0.0, 0.0, 0.0], [0.2, -0.2, 0.0], [0.0, 0.3, -0.3], [-0.3, -0.3, 0.8]]
)


def encode_action(g_click: Any, g_conversion: Any, g_reserve: Any) -> Any:
    """Joint action index ``100 g_click + 10 g_conversion + g_reserve``.

    Examples
    --------
    >>> int(encode_action(1, 2, 3))
    123
    """
    return 100 * np.asarray(g_click) + 10 * np.asarray(g_conversion) + np.asarray(g_reserve)


def decode_action(action: Any) -> tuple[Any, Any, Any]:
    """Group indices ``(g_click, g_conversion, g_reserve)`` of joint action indices.

    Examples
    --------
    >>> decode_action(123)
    (1, 2, 3)
    """
    a = np.asarray(action)
    out = (a // 100, (a // 10) % 10, a % 10)
    return tuple(int(x) for x in out) if a.ndim == 0 else out  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class AdsWorldConfig:
    """Settings of :class:`AdsWorld`.

    Parameters
    ----------
    n_users : int
        Users in the population.
    n_ads : int
        Ads in the catalogue.
    n_candidates : int
        ``K``, candidate ads per request (drawn with replacement).
    n_hours : int
        Hour-of-day buckets (at most 4 carry distinct effects; more repeat them).
    n_countries : int
        Values of the ``country`` feature (it has no effect: a distractor).
    click_weights, click30_ratio, conversion_weights, reserves : tuple of float
        Bounds of the grids: ``w_click`` on ``linspace(*click_weights, 10)``, ``w_click30 =
        click30_ratio * w_click``, ``w_conversion`` on ``linspace(*conversion_weights, 10)``,
        the reserve on ``linspace(*reserves, 10)``.
    bid_scales : tuple of float
        Median bid of click (per click), conversion (per conversion) and impression (per
        impression) campaigns; bids are log-normal around them.
    reward : {"campaign", "revenue"}
        Campaign-type reward (revenue plus user value) or revenue only.
    world_seed : int
        Draws the catalogue and the users.
    """

    n_users: int = 2000
    n_ads: int = 150
    n_candidates: int = 10
    n_hours: int = 4
    n_countries: int = 3
    click_weights: tuple[float, float] = (0.0, 1.95)
    click30_ratio: float = 1.0
    conversion_weights: tuple[float, float] = (0.0, 5.3)
    reserves: tuple[float, float] = (0.0, 0.46)
    bid_scales: tuple[float, float, float] = (0.22, 6.9, 0.02)
    reward: str = "campaign"
    world_seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("n_users", "n_ads", "n_candidates", "n_hours", "n_countries"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("click_weights", "conversion_weights", "reserves"):
            lo, hi = getattr(self, name)
            if not 0 <= lo < hi:
                problems.append(f"{name} must be (lo, hi) with 0 <= lo < hi; got {(lo, hi)}")
        if self.click30_ratio < 0:
            problems.append(f"click30_ratio must be >= 0; got {self.click30_ratio}")
        if self.reward not in ("campaign", "revenue"):
            problems.append(f"reward must be 'campaign' or 'revenue'; got {self.reward!r}")
        if problems:
            raise ConfigError("Invalid AdsWorldConfig: " + "; ".join(problems) + ".")


def _sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


class AdsWorld:
    """The ad-request world: users, catalogue, auction and exact values (see the module docstring).

    Parameters
    ----------
    config : AdsWorldConfig, optional
    **overrides
        Config fields, e.g. ``AdsWorld(reward="revenue")``.

    Attributes
    ----------
    users : pandas.DataFrame
        One row per user: ``segment``, ``country``, ``hist_ctr``, ``hist_cvr``,
        ``log_activity``.
    campaign_type, bid, category : ndarray, shape (n_ads,)
        The catalogue.
    proba : ndarray, shape (n_segments, n_hours, n_ads, 3)
        True engagement probabilities (columns in ``ENGAGEMENTS`` order).
    draw_weights : ndarray, shape (n_segments, n_hours, n_ads)
        Probability of each ad in one candidate draw.

    Examples
    --------
    >>> world = AdsWorld()
    >>> table = world.action_table()
    >>> table["reward"].shape
    (16, 1000)
    """

    def __init__(self, config: AdsWorldConfig | None = None, **overrides: Any) -> None:
        self.config = cfg = replace(config or AdsWorldConfig(), **overrides)
        rng = np.random.default_rng(cfg.world_seed)
        cat_rng, user_rng = rng.spawn(2)
        n_seg = _SEGMENTS.shape[0]
        self.n_segments = n_seg
        # catalogue
        self.campaign_type = cat_rng.choice(3, size=cfg.n_ads, p=[0.5, 0.3, 0.2])
        self.category = cat_rng.integers(_N_CATEGORIES, size=cfg.n_ads)
        appeal = cat_rng.normal(0.0, 0.6, cfg.n_ads)
        depth = cat_rng.normal(0.0, 0.8, cfg.n_ads)
        intent = cat_rng.normal(0.0, 0.8, cfg.n_ads)
        # impression ads are eye-catching and shallow: clicks, few long clicks or conversions
        imp = self.campaign_type == 2
        appeal[imp] += 0.6
        depth[imp] -= 0.8
        intent[imp] -= 1.5
        bid_scale = np.asarray(cfg.bid_scales)[self.campaign_type]
        self.bid = bid_scale * np.exp(cat_rng.normal(0.0, 0.6, cfg.n_ads))
        affinity = cat_rng.normal(0.0, 0.7, (n_seg, _N_CATEGORIES))
        hours = np.arange(cfg.n_hours) % 4
        seg = _SEGMENTS[:, None, None, :]
        aff = affinity[:, self.category][:, None, :]
        click_logit = (
            seg[..., 0]
            + _SEGMENT_TYPE_CLICK[:, None, self.campaign_type]
            + 0.5 * aff
            + appeal
            + _HOUR_CLICK[hours][None, :, None]
        )
        p_click = _sigmoid(click_logit)
        p_click30 = p_click * _sigmoid(seg[..., 1] + depth)
        p_conv = p_click * _sigmoid(seg[..., 2] + intent + 0.5 * aff)
        self.proba = np.stack(np.broadcast_arrays(p_click, p_click30, p_conv), axis=-1)
        logw = (
            0.8 * aff
            + _HOUR_MIX[hours][None, :, self.campaign_type]
            + _SEGMENT_MIX[:, None, self.campaign_type]
        )
        w = np.exp(logw)
        self.draw_weights = w / w.sum(axis=-1, keepdims=True)
        p_action = np.where(
            self.campaign_type == 0,
            self.proba[..., 0],
            np.where(self.campaign_type == 1, self.proba[..., 2], 1.0),
        )
        self.est_revenue = self.bid * p_action
        lo = self.proba.min(axis=(0, 1, 2))
        hi = self.proba.max(axis=(0, 1, 2))
        self.engagement_range = (lo, hi)
        scaled = (self.proba - lo) / (hi - lo)
        gamma = GAMMA if cfg.reward == "campaign" else np.zeros_like(GAMMA)
        self.user_value = (scaled * gamma[self.campaign_type]).sum(axis=-1)
        self.ad_reward = self.est_revenue + self.user_value
        # users
        segment = user_rng.integers(n_seg, size=cfg.n_users)
        n_hist = np.maximum(user_rng.lognormal(4.0, 1.0, cfg.n_users).round(), 5)
        mean = self._segment_rates()
        clicks = user_rng.binomial(n_hist.astype(np.int64), mean[segment, 0])
        convs = user_rng.binomial(n_hist.astype(np.int64), mean[segment, 2])
        self.users = pd.DataFrame(
            {
                "segment": segment,
                "country": user_rng.integers(cfg.n_countries, size=cfg.n_users),
                "hist_ctr": clicks / n_hist,
                "hist_cvr": convs / n_hist,
                "log_activity": np.log(n_hist),
            }
        )
        # grids
        self.w_click = np.linspace(*cfg.click_weights, N_GROUP)
        self.w_click30 = cfg.click30_ratio * self.w_click
        self.w_conversion = np.linspace(*cfg.conversion_weights, N_GROUP)
        self.reserve = np.linspace(*cfg.reserves, N_GROUP)

    def _segment_rates(self) -> F64:
        """Mean engagement per segment, over hours and candidate draws, shape (n_seg, 3)."""
        return (self.draw_weights[..., None] * self.proba).sum(axis=2).mean(axis=1)

    # ------------------------------------------------------------------ actions

    def action_values(self, action: Any) -> F64:
        """``(w_click, w_conversion, reserve)`` of joint actions, shape ``(..., 3)``."""
        g1, g2, g3 = decode_action(np.asarray(action))
        return np.stack([self.w_click[g1], self.w_conversion[g2], self.reserve[g3]], axis=-1)

    @cached_property
    def action_matrix(self) -> F64:
        """``action_values`` of all 1000 actions, shape (1000, 3)."""
        return self.action_values(np.arange(N_ACTIONS))

    def _utility(self, proba: F64, erev: F64, g1: Any, g2: Any) -> F64:
        w = np.stack(
            [self.w_click[g1], self.w_click30[g1], self.w_conversion[g2]], axis=-1
        )  # (..., 3)
        return erev + (proba * w[..., None, :]).sum(axis=-1)

    # ------------------------------------------------------------------ exact values

    @cached_property
    def shown_proba(self) -> F64:
        """P(catalogue ad j is shown | cell, action), shape (n_cells, 1000, n_ads).

        Cells are (segment, hour) pairs, cell = ``segment * n_hours + hour``.
        """
        cfg = self.config
        n_cells = self.n_segments * cfg.n_hours
        proba = self.proba.reshape(n_cells, cfg.n_ads, 3)
        erev = np.broadcast_to(self.est_revenue, (self.n_segments, cfg.n_hours, cfg.n_ads))
        erev = erev.reshape(n_cells, cfg.n_ads)
        q = self.draw_weights.reshape(n_cells, cfg.n_ads)
        g1, g2 = np.divmod(np.arange(N_GROUP**2), N_GROUP)
        u = self._utility(proba[:, None], erev[:, None], g1, g2)  # (cells, 100, ads)
        # ascending utility; ties: the lower catalogue index ranks higher (shown first)
        order = np.lexsort((np.broadcast_to(-np.arange(cfg.n_ads), u.shape), u), axis=-1)
        passed = erev[:, None, :] >= self.reserve[None, :, None]  # (cells, 10, ads)
        q_sorted = np.take_along_axis(q[:, None, :], order, axis=-1)  # (cells, 100, ads)
        pass_sorted = np.take_along_axis(
            passed[:, None, :, :], order[:, :, None, :], axis=-1
        )  # (cells, 100, 10, ads)
        mass = q_sorted[:, :, None, :] * pass_sorted
        dropped = 1.0 - mass.sum(axis=-1, keepdims=True)
        cum = dropped + np.cumsum(mass, axis=-1)
        prev = cum - mass
        k = cfg.n_candidates
        p_sorted = cum**k - prev**k  # (cells, 100, 10, ads) in sorted order
        out = np.empty_like(p_sorted)
        idx = np.broadcast_to(order[:, :, None, :], p_sorted.shape)
        np.put_along_axis(out, idx, p_sorted, axis=-1)
        return out.reshape(n_cells, N_ACTIONS, cfg.n_ads)

    def action_table(self) -> dict[str, F64]:
        """Exact expected figures of every action in every (segment, hour) cell.

        Returns
        -------
        dict of str to ndarray, each shape (n_cells, 1000)
            ``reward``, ``revenue`` (estimated), ``user_value``, ``click``, ``click30``,
            ``conversion`` (expected engagement per request), ``shown`` (probability an ad is
            shown).
        """
        return self._table

    @cached_property
    def _table(self) -> dict[str, F64]:
        cfg = self.config
        n_cells = self.n_segments * cfg.n_hours
        s = self.shown_proba
        proba = self.proba.reshape(n_cells, cfg.n_ads, 3)
        erev = np.broadcast_to(self.est_revenue, (self.n_segments, cfg.n_hours, cfg.n_ads))
        per_ad = {
            "reward": self.ad_reward.reshape(n_cells, -1),
            "revenue": erev.reshape(n_cells, -1),
            "user_value": self.user_value.reshape(n_cells, -1),
            "click": proba[..., 0],
            "click30": proba[..., 1],
            "conversion": proba[..., 2],
            "shown": np.ones((n_cells, cfg.n_ads)),
        }
        return {k: np.einsum("caj,cj->ca", s, v) for k, v in per_ad.items()}

    @cached_property
    def population(self) -> pd.DataFrame:
        """Every (user, hour) request of the population, equally likely; with its ``cell``."""
        n_u, n_h = self.config.n_users, self.config.n_hours
        rows = self.users.iloc[np.repeat(np.arange(n_u), n_h)].reset_index(drop=True)
        rows.insert(0, "user_id", np.repeat(np.arange(n_u), n_h))
        rows.insert(2, "hour", np.tile(np.arange(n_h), n_u))
        rows["cell"] = rows["segment"] * n_h + rows["hour"]
        return rows

    def features(self, requests: pd.DataFrame) -> F64:
        """The ``USER_FEATURES`` columns of requests as a float array (categoricals as codes)."""
        return requests.loc[:, list(USER_FEATURES)].to_numpy(dtype=np.float64)

    def policy_value(self, actions: Any, metric: str = "reward") -> float:
        """Exact mean ``metric`` over the population when request ``i`` takes ``actions[i]``.

        Parameters
        ----------
        actions : array-like of int, shape (n_users * n_hours,), or of float, shape (n, 1000)
            One action per population row (rows of :attr:`population`), or action
            probabilities per row (a stochastic policy).
        metric : str
            A key of :meth:`action_table`.
        """
        table = self._table[metric][self.population["cell"].to_numpy()]
        a = np.asarray(actions)
        if a.ndim == 2:
            return float((table * a).sum(axis=1).mean())
        return float(table[np.arange(len(table)), a.astype(np.int64)].mean())

    def cell_weights(self) -> F64:
        """Share of population requests in each cell, shape (n_cells,)."""
        cells = self.population["cell"].to_numpy()
        return np.bincount(cells, minlength=self.n_segments * self.config.n_hours) / cells.size

    def summary(self, metric: str = "reward") -> dict[str, Any]:
        """Exact uniform, best-global and oracle values and the oracle's actions.

        The oracle picks the best action per (segment, hour) cell, the finest state the
        request features determine the outcome by; the per-segment oracle picks one action per
        segment.
        """
        t = self._table[metric]
        w = self.cell_weights()
        per_action = w @ t
        n_h = self.config.n_hours
        seg_tables = (w[:, None] * t).reshape(self.n_segments, n_h, N_ACTIONS).sum(axis=1)
        return {
            "uniform": float(per_action.mean()),
            "best_global": float(per_action.max()),
            "best_global_action": int(per_action.argmax()),
            "oracle": float(w @ t.max(axis=1)),
            "oracle_actions": t.argmax(axis=1),
            "segment_oracle": float(seg_tables.max(axis=1).sum()),
            "segment_oracle_actions": seg_tables.argmax(axis=1),
        }

    # ------------------------------------------------------------------ sampling

    @cached_property
    def _draw_cdf(self) -> F64:
        return np.cumsum(self.draw_weights.reshape(-1, self.config.n_ads), axis=1)

    def sample_request_arrays(self, n: int, *, rng: np.random.Generator) -> tuple[I64, I64]:
        """Population rows (n,) and candidate ad ids (n, K) of ``n`` requests."""
        user_rng, hour_rng, ad_rng = rng.spawn(3)
        cfg = self.config
        users = user_rng.integers(cfg.n_users, size=n)
        hours = hour_rng.integers(cfg.n_hours, size=n)
        rows = users * cfg.n_hours + hours
        cells = self._cells[rows]
        cum = self._draw_cdf
        u = ad_rng.random((n, cfg.n_candidates))
        cands = np.empty((n, cfg.n_candidates), dtype=np.int64)
        for c in np.unique(cells):
            sel = cells == c
            cands[sel] = np.searchsorted(cum[c], u[sel] * cum[c, -1], side="right")
        np.minimum(cands, cfg.n_ads - 1, out=cands)
        return rows, cands

    @cached_property
    def _cells(self) -> I64:
        return self.population["cell"].to_numpy()

    @cached_property
    def population_features(self) -> F64:
        """:meth:`features` of :attr:`population`, shape (n_users * n_hours, 6)."""
        return self.features(self.population)

    def sample_requests(self, n: int, *, rng: np.random.Generator) -> pd.DataFrame:
        """Draw ``n`` requests: a user and an hour uniformly, then ``K`` candidate ads.

        Returns
        -------
        pandas.DataFrame
            Population columns plus ``candidates`` (a (K,) int array per row, in column
            ``candidates``) and ``request_id``.
        """
        rows, cands = self.sample_request_arrays(n, rng=rng)
        req = self.population.iloc[rows].reset_index(drop=True)
        req.insert(0, "request_id", np.arange(n))
        req["candidates"] = list(cands)
        return req

    def serve(self, requests: pd.DataFrame, actions: Any) -> I64:
        """Catalogue id of the ad each request shows under ``actions`` (-1: none passes)."""
        cands = np.stack(requests["candidates"].to_list())  # (n, K)
        return self.serve_arrays(requests["cell"].to_numpy(), cands, actions)

    def serve_arrays(self, cells: I64, cands: I64, actions: Any) -> I64:
        """:meth:`serve` on arrays: cells (n,), candidate ids (n, K) and actions (n,)."""
        seg, hour = np.divmod(np.asarray(cells), self.config.n_hours)
        proba = self.proba[seg[:, None], hour[:, None], cands]  # (n, K, 3)
        erev = self.est_revenue[seg[:, None], hour[:, None], cands]
        g1, g2, g3 = decode_action(np.asarray(actions, dtype=np.int64))
        u = self._utility(proba, erev, g1, g2)  # (n, K)
        u = np.where(erev >= self.reserve[g3][:, None], u, -np.inf)
        # best utility; ties go to the lower catalogue id, as in the exact computation
        best = u.max(axis=1, keepdims=True)
        tied = np.where(u == best, cands, np.iinfo(np.int64).max)
        shown = tied.min(axis=1)
        return np.where(np.isfinite(best[:, 0]), shown, -1).astype(np.int64)

    def outcomes(
        self, requests: pd.DataFrame, shown: I64, *, rng: np.random.Generator
    ) -> pd.DataFrame:
        """Expected figures of the shown ads and sampled engagement and revenue.

        A click30 and a conversion can only follow a click.
        """
        return pd.DataFrame(self.outcome_arrays(requests["cell"].to_numpy(), shown, rng=rng))

    def outcome_arrays(
        self, cells: I64, shown: I64, *, rng: np.random.Generator
    ) -> dict[str, NDArray[Any]]:
        """:meth:`outcomes` on arrays, as a dict of columns."""
        n = len(shown)
        has = shown >= 0
        ad = np.where(has, shown, 0)
        seg, hour = np.divmod(np.asarray(cells), self.config.n_hours)
        p = self.proba[seg, hour, ad] * has[:, None]
        u = rng.random((n, 3))
        click = u[:, 0] < p[:, 0]
        click30 = click & (u[:, 1] * p[:, 0] < p[:, 1])
        conv = click & (u[:, 2] * p[:, 0] < p[:, 2])
        ctype = np.where(has, self.campaign_type[ad], -1)
        bid = np.where(has, self.bid[ad], 0.0)
        paid = np.select([ctype == 0, ctype == 1, ctype == 2], [click, conv, has], 0)
        return {
            "ad_id": shown,
            "campaign_type": ctype,
            "bid": bid,
            "p_click": p[:, 0],
            "p_click30": p[:, 1],
            "p_conversion": p[:, 2],
            "est_revenue": np.where(has, self.est_revenue[seg, hour, ad], 0.0),
            "reward": np.where(has, self.ad_reward[seg, hour, ad], 0.0),
            "clicked": click.astype(np.int64),
            "click30": click30.astype(np.int64),
            "converted": conv.astype(np.int64),
            "revenue": bid * paid,
        }

    def log_uniform(self, n: int, *, rng: np.random.Generator) -> pd.DataFrame:
        """Requests served under uniform exploration over the 1000 actions, with propensities.

        Returns
        -------
        pandas.DataFrame
            One row per request: ``request_id``, ``user_id``, the ``USER_FEATURES``, ``action``
            and its group indices and values, ``propensity`` (1/1000), the shown ad's
            ``ad_id`` (-1 for none), ``campaign_type`` (-1 for none), ``bid``, ``p_click``,
            ``p_click30``, ``p_conversion``, ``est_revenue``, ``reward``, and the sampled
            ``clicked``, ``click30``, ``converted`` and ``revenue``.
        """
        req_rng, act_rng, out_rng = rng.spawn(3)
        req = self.sample_requests(n, rng=req_rng)
        actions = act_rng.integers(N_ACTIONS, size=n)
        shown = self.serve(req, actions)
        g1, g2, g3 = decode_action(actions)
        vals = self.action_values(actions)
        frame = req.loc[:, ["request_id", "user_id", *USER_FEATURES]].assign(
            action=actions,
            g_click=g1,
            g_conversion=g2,
            g_reserve=g3,
            w_click=vals[:, 0],
            w_conversion=vals[:, 1],
            reserve=vals[:, 2],
            propensity=1.0 / N_ACTIONS,
        )
        return pd.concat([frame, self.outcomes(req, shown, rng=out_rng)], axis=1)


def main(argv: list[str] | None = None) -> None:
    """Write a uniform-exploration ads log: ``python -m simkit.ads_world --rows N --out F``."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="requests to log")
    parser.add_argument("--seed", type=int, default=0, help="seed of the requests and actions")
    parser.add_argument("--out", default="data_samples/ads.parquet", help="parquet file to write")
    args = parser.parse_args(argv)
    frame = AdsWorld().log_uniform(args.rows, rng=np.random.default_rng(args.seed))
    frame.to_parquet(args.out, index=False)
    print(f"wrote {len(frame)} requests to {args.out}")


if __name__ == "__main__":
    main()
