"""A click-only bandit log with known truth, shaped like the Open Bandit Dataset.

One decision per session: a page view with ``n_positions`` slots, each filled by the logging policy
(uniform at random, no item twice on a page) and clicked or not independently (rare clicks, about
0.5%). There is no dwell: the log has **no** ``watch_time`` column, as bandit logs do not, and no
continuation (every session is one step). Columns: ``user_id, session_id, step`` (always 0),
``position, timestamp, item_id, clicked, propensity`` (the per-slot marginal probability of the item,
``1 / n_items`` under the uniform policy), ``ctx_device`` and ``user_segment``.

Truth: ``click_proba`` for any user, device, item and position::

    p = sigmoid(base + 0.35 t_u . f_i + 0.4 f_i0 + position_bias[pos] + device_effect[device])

with ``f_i`` the item's features (logged as ``item_f*``), ``t_u`` the user's taste (their segment's
taste plus a personal part, never logged). :meth:`BanditWorld.policy_ctr` gives the exact click
rate per impression of any :class:`FeaturePolicy` (an exact sum over the world's users, devices,
positions and items), and :attr:`BanditWorld.target_policy` is a documented non-uniform one.

Example
-------
>>> import numpy as np
>>> world = BanditWorld(BanditWorldConfig(n_users=200), rng=np.random.default_rng(0))
>>> logs = world.generate_logs(100, rng=np.random.default_rng(1))
>>> "watch_time" in logs.columns, sorted(set(logs["position"]))
(False, [0, 1, 2])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.errors import ConfigError
from simkit.synthetic import T0
from simkit.synthetic_time import lay_out_sessions

__all__ = ["BanditWorld", "BanditWorldConfig", "FeaturePolicy"]

DEVICES = ("mobile", "desktop", "tablet")
DEVICE_SHARE = np.array([0.6, 0.3, 0.1])
DEVICE_EFFECT = np.array([0.0, 0.2, -0.1])


@dataclass(frozen=True, kw_only=True)
class BanditWorldConfig:
    """Parameters of the bandit world.

    Parameters
    ----------
    n_users, n_items
        Population sizes (Open Bandit's "ALL" campaign has 80 items).
    n_features
        Item features ``item_f0 ... item_f{n_features-1}``.
    n_positions
        Slots per page view.
    base_logit
        Click logit offset (sets the click rate, about 0.5% by default).
    position_bias
        Logit shift of each position.
    return_hours
        Median over users of the scale of the gaps between page views (hours).
    """

    n_users: int = 3000
    n_items: int = 80
    n_features: int = 4
    n_positions: int = 3
    base_logit: float = -5.75
    position_bias: tuple[float, ...] = (0.0, -0.35, -0.6)
    return_hours: float = 48.0

    def __post_init__(self) -> None:
        if self.n_users < 1 or self.n_features < 1 or not 1 <= self.n_positions <= self.n_items:
            raise ConfigError(
                "BanditWorldConfig needs n_users >= 1, n_features >= 1 and 1 <= n_positions <= "
                f"n_items; got {self.n_users}, {self.n_features}, {self.n_positions}, {self.n_items}."
            )
        if len(self.position_bias) < self.n_positions:
            raise ConfigError(
                f"BanditWorldConfig.position_bias must list {self.n_positions} positions; "
                f"got {len(self.position_bias)}."
            )


@dataclass(frozen=True, kw_only=True)
class FeaturePolicy:
    """A stochastic policy over items from their catalogue features and the slot.

    ``pi(i | position) = softmax_i(sum_k weights[position][k] * items[features[k]] / temperature)``:
    each position draws independently (an item may appear at two positions). It sees only catalogue
    columns, so the same object runs in the world, in a simulator (pass the simulator's catalogue
    frame) and in off-policy estimators (:meth:`proba`).

    Parameters
    ----------
    features
        Catalogue column names.
    weights
        One weight vector per position (the last one is reused for further positions).
    temperature
        Softmax temperature.
    """

    features: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if any(len(w) != len(self.features) for w in self.weights) or not self.weights:
            raise ConfigError("FeaturePolicy needs one weight per feature for each position.")
        if self.temperature <= 0:
            raise ConfigError(
                f"FeaturePolicy.temperature must be positive; got {self.temperature}."
            )

    def proba(self, items: pd.DataFrame, position: int) -> NDArray[np.float64]:
        """Probabilities over the rows of ``items`` for one position."""
        w = np.asarray(self.weights[min(position, len(self.weights) - 1)])
        score = items[list(self.features)].to_numpy(np.float64) @ w / self.temperature
        score = np.exp(score - score.max())
        return score / score.sum()

    def sample(
        self, items: pd.DataFrame, n: int, n_positions: int, *, rng: np.random.Generator
    ) -> NDArray[np.int64]:
        """Row indices of ``items`` shown at each position of ``n`` page views (shape (n, P))."""
        out = np.empty((n, n_positions), np.int64)
        for j in range(n_positions):
            out[:, j] = rng.choice(len(items), size=n, p=self.proba(items, j))
        return out


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class BanditWorld:
    """The bandit world: users with hidden tastes, items with features, rare independent clicks.

    Parameters
    ----------
    config
        Parameters; defaults when omitted.
    rng
        Generator for users and items.
    """

    #: a non-uniform target policy: favours appealing items (``item_f0``) and, lower on the page,
    #: items with high ``item_f1``
    target_policy = FeaturePolicy(
        features=("item_f0", "item_f1"),
        weights=((1.5, 0.0), (1.0, 1.0), (0.5, 1.5)),
        temperature=1.0,
    )

    def __init__(
        self, config: BanditWorldConfig | None = None, *, rng: np.random.Generator
    ) -> None:
        self.config = c = config or BanditWorldConfig()
        items_rng, users_rng = rng.spawn(2)
        self.item_features = np.round(items_rng.normal(size=(c.n_items, c.n_features)), 4)
        self.item_ids = np.arange(c.n_items, dtype=np.int64) + 1
        segment_taste = users_rng.normal(size=(3, c.n_features))
        self.user_segment = users_rng.integers(3, size=c.n_users)
        self.user_taste = segment_taste[self.user_segment] + 0.7 * users_rng.normal(
            size=(c.n_users, c.n_features)
        )
        self.user_ids = np.arange(c.n_users, dtype=np.int64) + 1
        self.user_gap_scale = c.return_hours * np.exp(0.7 * users_rng.standard_normal(c.n_users))

    @property
    def items(self) -> pd.DataFrame:
        """The catalogue: ``item_id`` and ``item_f*`` features."""
        frame = pd.DataFrame({"item_id": self.item_ids})
        for k in range(self.config.n_features):
            frame[f"item_f{k}"] = self.item_features[:, k]
        return frame

    def click_proba(
        self,
        users: NDArray[np.int64],
        device: NDArray[np.int64],
        items: NDArray[np.int64],
        position: NDArray[np.int64],
    ) -> NDArray[np.float64]:
        """True click probability (arrays broadcast together; users and items are 0-based rows)."""
        c = self.config
        f = self.item_features[items]
        taste = np.einsum("...k,...k->...", self.user_taste[users], f)
        logit = (
            c.base_logit
            + 0.35 * taste
            + 0.4 * f[..., 0]
            + np.asarray(c.position_bias)[position]
            + DEVICE_EFFECT[device]
        )
        return _sigmoid(logit)

    def policy_ctr(self, policy: FeaturePolicy | None = None) -> float:
        """Exact click rate per impression of ``policy`` (uniform when None) over users, devices, slots.

        Users are uniform over the population and devices follow their shares, as in the logs.
        """
        c = self.config
        taste = self.user_taste @ self.item_features.T  # users x items
        total = 0.0
        for j in range(c.n_positions):
            pi = (
                np.full(c.n_items, 1.0 / c.n_items)
                if policy is None
                else policy.proba(self.items, j)
            )
            for d in range(len(DEVICES)):
                logit = (
                    c.base_logit
                    + 0.35 * taste
                    + 0.4 * self.item_features[:, 0]
                    + c.position_bias[j]
                    + DEVICE_EFFECT[d]
                )
                total += DEVICE_SHARE[d] * float(_sigmoid(logit).mean(axis=0) @ pi)
        return total / c.n_positions

    def generate_logs(
        self, n_sessions: int, *, rng: np.random.Generator, truth: bool = False
    ) -> pd.DataFrame:
        """Log ``n_sessions`` page views under the uniform policy (users uniform over the population).

        With ``truth=True`` the column ``true_p_click`` holds each row's click probability.
        """
        if n_sessions < 1:
            raise ConfigError(f"n_sessions must be at least 1; got {n_sessions}.")
        c = self.config
        user_rng, policy_rng, context_rng, response_rng, time_rng = rng.spawn(5)
        users = np.sort(user_rng.integers(c.n_users, size=n_sessions))
        device = context_rng.choice(len(DEVICES), size=n_sessions, p=DEVICE_SHARE)
        shown = np.argsort(policy_rng.random((n_sessions, c.n_items)), axis=1)[:, : c.n_positions]
        pos = np.broadcast_to(np.arange(c.n_positions), shown.shape)
        p = self.click_proba(users[:, None], device[:, None], shown, pos)
        click = (response_rng.random(p.shape) < p).astype(np.int8)
        start = lay_out_sessions(
            users, np.zeros(n_sessions), self.user_gap_scale[users], 0.8, rng=time_rng
        )
        k = c.n_positions
        frame = pd.DataFrame(
            {
                "user_id": np.repeat(self.user_ids[users], k),
                "session_id": np.repeat(np.arange(n_sessions, dtype=np.int64) + 1, k),
                "step": np.zeros(n_sessions * k, np.int64),
                "position": pos.ravel(),
                "timestamp": np.repeat(np.round(T0 + start, 3), k),
                "item_id": self.item_ids[shown.ravel()],
                "clicked": click.ravel(),
                "propensity": np.full(n_sessions * k, 1.0 / c.n_items),
                "ctx_device": pd.Categorical.from_codes(np.repeat(device, k), list(DEVICES)),
                "user_segment": pd.Categorical.from_codes(
                    np.repeat(self.user_segment[users], k), ["seg0", "seg1", "seg2"]
                ),
            }
        )
        if truth:
            frame["true_p_click"] = p.ravel()
        return frame
