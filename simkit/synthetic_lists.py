"""Impression lists with known truth: a news-like world of lists of 5-30 items and at most one click.

Each step of a session shows a list (an impression) on a page and a device; the user scans it top
down (a cascade, the slate rule of :mod:`simkit.envs`), examining position ``j`` with probability
``b_j = exp(-j / depth(device))``, clicks an examined item with its attraction probability and stops
at the first click, then reads the clicked article (the watch time). Another list follows with a
probability that depends on the state after the list. In simkit's terms:

* attraction ``sigmoid(-3.0 + 2.2 u.v + 1.2 max(u.v, 0)^2 + 1.2 clickbait + 0.5 quality
  - 0.8 repeats - 0.1 log1p(step) + page effect)``, with ``u`` the user's interest, moved by the
  clicked item as in :class:`simkit.synthetic.World`;
* the true click probability of a row (``true_p_click``) is the cascade's marginal
  ``b_j p_j prod_{k<j} (1 - b_k p_k)``: what a per-row classifier with every feature can reach;
* read time: log-normal around ``3.6 + 0.9 u.v + 0.35 quality - 1.3 clickbait`` (sd 0.8),
  capped by the item's duration;
* continuation after a list: ``sigmoid(1.6 + 0.45 log1p(last_watch) - 1.2 last_click
  - 0.15 min(steps_since_click, 10) - 0.1 log1p(step))``.

The context changes per list: ``ctx_device`` (mostly constant in a session, switching now and then)
sets the scan depth, ``ctx_page`` (home, section, article, search; an article page follows a click)
sets the list length and the attraction. The logging policy ranks by Plackett-Luce over the
catalogue with :meth:`simkit.synthetic.World.logging_proba`'s scores; ``propensity`` is the per-slot
conditional ``pi(a_j | a_<j)`` (their product is the list's probability). Sessions are laid out in
time per user without return behaviour (:func:`simkit.synthetic_time.lay_out_sessions`).

Example
-------
>>> import numpy as np
>>> world = ListWorld(ListWorldConfig(n_users=100, n_items=200), rng=np.random.default_rng(0))
>>> logs = world.generate_logs(50, rng=np.random.default_rng(1))
>>> int(logs.groupby(["session_id", "step"])["clicked"].sum().max()) <= 1
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.errors import ConfigError
from simkit.synthetic import T0, World, WorldConfig, WorldState
from simkit.synthetic_time import lay_out_sessions
from simkit.threads import blas_threads

__all__ = ["DEVICES", "PAGES", "ListWorld", "ListWorldConfig"]

#: device: (share of sessions, scan depth of the examination probability exp(-j / depth))
DEVICES = {"mobile": (0.6, 5.0), "desktop": (0.3, 12.0), "tablet": (0.1, 8.0)}
#: page: (attraction effect, shortest list, longest list)
PAGES = {
    "home": (0.0, 15, 30),
    "section": (0.2, 10, 25),
    "article": (0.4, 5, 10),
    "search": (0.5, 5, 20),
}
_FIRST_PAGE = np.array([0.6, 0.25, 0.0, 0.15])
_AFTER_CLICK = np.array([0.2, 0.1, 0.7, 0.0])
_AFTER_SKIP = np.array([0.3, 0.5, 0.0, 0.2])
DEVICE_SWITCH = 0.1


@dataclass(frozen=True, kw_only=True)
class ListWorldConfig:
    """Parameters of the impression-list world.

    Parameters
    ----------
    n_users, n_items, dim, n_clusters, clickbait_share, eta
        As :class:`simkit.synthetic.WorldConfig` (users and items are drawn the same way).
    list_min, list_max
        Bounds on list lengths (the page's range is clipped to them).
    max_lists
        Hard cap on lists per session.
    sessions_per_user
        Generated logs draw ``n_sessions / sessions_per_user`` users.
    return_hours
        Median over users of the Weibull scale of the gaps between sessions (hours).
    """

    n_users: int = 3000
    n_items: int = 1000
    dim: int = 8
    n_clusters: int = 6
    clickbait_share: float = 0.1
    eta: float = 0.1
    list_min: int = 5
    list_max: int = 30
    max_lists: int = 60
    sessions_per_user: float = 5.0
    return_hours: float = 72.0

    def __post_init__(self) -> None:
        if not 1 <= self.list_min <= self.list_max <= self.n_items:
            raise ConfigError(
                "ListWorldConfig needs 1 <= list_min <= list_max <= n_items; got "
                f"list_min={self.list_min}, list_max={self.list_max}, n_items={self.n_items}."
            )
        if self.max_lists < 1 or self.sessions_per_user <= 0 or self.return_hours <= 0:
            raise ConfigError(
                "ListWorldConfig.max_lists must be at least 1 and sessions_per_user, return_hours "
                f"positive; got {self.max_lists}, {self.sessions_per_user}, {self.return_hours}."
            )

    def base(self) -> WorldConfig:
        """The :class:`~simkit.synthetic.WorldConfig` its users and items are drawn with."""
        return WorldConfig(
            n_users=self.n_users,
            n_items=self.n_items,
            dim=self.dim,
            n_clusters=self.n_clusters,
            clickbait_share=self.clickbait_share,
            eta=self.eta,
        )


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class ListWorld:
    """The impression-list world: users, items (from a :class:`~simkit.synthetic.World`), lists.

    Parameters
    ----------
    config
        Parameters; defaults when omitted.
    rng
        Generator for users and items.

    Attributes
    ----------
    world
        The underlying world (users' true interest, item embeddings, quality, clickbait).
    """

    def __init__(self, config: ListWorldConfig | None = None, *, rng: np.random.Generator) -> None:
        self.config = config or ListWorldConfig()
        self.world = World(self.config.base(), rng=rng)
        self.depth = np.array([d for _, d in DEVICES.values()])
        self.page_effect = np.array([e for e, _, _ in PAGES.values()])
        lo = np.array([lo for _, lo, _ in PAGES.values()])
        hi = np.array([hi for _, _, hi in PAGES.values()])
        self.page_lengths = (
            np.clip(lo, self.config.list_min, self.config.list_max),
            np.clip(hi, self.config.list_min, self.config.list_max),
        )

    @property
    def items(self) -> pd.DataFrame:
        """The item catalogue (as :attr:`simkit.synthetic.World.items`)."""
        return self.world.items

    # ------------------------------------------------------------------ truth

    def attraction(
        self, state: WorldState, items: NDArray[np.int64], page: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        """Click probability of each listed item if examined (shape (n, L))."""
        w = self.world
        aff = np.einsum("nd,nkd->nk", state.interest, w.item_embedding[items])
        logit = (
            -3.0
            + 2.2 * aff
            + 1.2 * np.maximum(aff, 0.0) ** 2
            + 1.2 * w.item_clickbait[items]
            + 0.5 * w.item_quality[items]
            - 0.8 * np.take_along_axis(state.shown, items, axis=1)
            - 0.1 * np.log1p(state.step)[:, None]
            + self.page_effect[page][:, None]
        )
        return _sigmoid(logit)

    def examination(self, device: NDArray[np.int64], length: int) -> NDArray[np.float64]:
        """Probability of examining each position (shape (n, length))."""
        return np.exp(-np.arange(length)[None, :] / self.depth[device][:, None])

    def continue_proba(self, state: WorldState) -> NDArray[np.float64]:
        """True probability that another list follows, in the state after a list."""
        logit = (
            1.6
            + 0.45 * np.log1p(state.last_watch)
            - 1.2 * state.last_click
            - 0.15 * np.minimum(state.steps_since_click, 10)
            - 0.1 * np.log1p(state.step)
        )
        return _sigmoid(logit)

    # ------------------------------------------------------------------- logs

    def generate_logs(
        self,
        n_sessions: int,
        *,
        rng: np.random.Generator,
        truth: bool = False,
        layout: Literal["slates", "rows"] = "slates",
    ) -> pd.DataFrame:
        """Run the logging policy for ``n_sessions`` sessions of lists and return the log.

        Parameters
        ----------
        layout
            ``"slates"``: ``step`` is the list's index in the session and ``position`` its slot
            (rows sharing ``session_id``, ``step`` form one list). ``"rows"``: every row is its own
            ``step``; the list is named by ``ctx_impression_id`` and the slot by ``ctx_slot``.
        truth
            Adds ``true_p_click`` (marginal click probability of the row), ``true_p_attract``
            (click probability if examined), ``true_p_examine`` (examination probability of the
            position) and ``true_p_continue`` (another list follows, same on the list's rows).

        Returns
        -------
        pandas.DataFrame
            ``user_id, session_id, step, position, timestamp, item_id, clicked, watch_time,
            propensity, ctx_device, ctx_page, user_segment`` (``"rows"``: ``position`` replaced
            by ``ctx_slot``, plus ``ctx_impression_id``). Timestamps are per list.
        """
        if n_sessions < 1:
            raise ConfigError(f"n_sessions must be at least 1; got {n_sessions}.")
        if layout not in ("slates", "rows"):
            raise ConfigError(f"layout must be 'slates' or 'rows'; got {layout!r}.")
        c = self.config
        pick_rng, policy_rng, response_rng, context_rng, time_rng = rng.spawn(5)
        n_users_used = min(c.n_users, max(1, int(round(n_sessions / c.sessions_per_user))))
        pool = pick_rng.choice(c.n_users, size=n_users_used, replace=False)
        users = np.sort(pool[pick_rng.integers(n_users_used, size=n_sessions)])
        with blas_threads(1):
            data = self._simulate(users, policy_rng, response_rng, context_rng)
        return self._frame(users, data, time_rng, truth=truth, layout=layout)

    def _simulate(self, users, policy_rng, response_rng, context_rng) -> dict[str, NDArray]:
        c, w = self.config, self.world
        n = len(users)
        state = w.initial_state(users)
        alive = np.arange(n)
        device = context_rng.choice(3, size=n, p=[s for s, _ in DEVICES.values()])
        page = context_rng.choice(4, size=n, p=_FIRST_PAGE)
        out: list[dict[str, NDArray]] = []
        for _ in range(c.max_lists):
            if len(alive) == 0:
                break
            m = len(alive)
            lo, hi = self.page_lengths
            length = context_rng.integers(lo[page], hi[page] + 1)
            width = int(length.max())
            # Plackett-Luce without replacement: the top ``width`` of log-probability + Gumbel
            probs = w.logging_proba(state)
            keys = np.log(np.maximum(probs, 1e-300)) + policy_rng.gumbel(size=probs.shape)
            items = np.argsort(-keys, axis=1)[:, :width]
            taken = np.take_along_axis(probs, items, axis=1)
            left = 1.0 - np.cumsum(taken, axis=1) + taken
            prop = taken / np.maximum(left, 1e-300)
            valid = np.arange(width)[None, :] < length[:, None]
            attract = self.attraction(state, items, page)
            exam = self.examination(device, width) * valid
            hit = (response_rng.random((m, width)) < exam) & (
                response_rng.random((m, width)) < attract
            )
            clicked_any = hit.any(axis=1)
            first = np.where(clicked_any, hit.argmax(axis=1), width)
            click = np.arange(width)[None, :] == first[:, None]
            miss = np.cumprod(1.0 - exam * attract, axis=1)
            p_click = exam * attract * np.c_[np.ones(m), miss[:, :-1]]
            chosen = items[np.arange(m), np.minimum(first, width - 1)]
            mu = (
                3.6
                + 0.9 * np.einsum("nd,nd->n", state.interest, w.item_embedding[chosen])
                + 0.35 * w.item_quality[chosen]
                - 1.3 * w.item_clickbait[chosen]
            )
            raw = np.exp(mu + 0.8 * response_rng.standard_normal(m))
            read = np.where(clicked_any, np.round(np.minimum(raw, w.item_duration[chosen]), 2), 0.0)
            step = state.step.copy()
            self._transition(state, items, valid, clicked_any, chosen, read)
            p_cont = self.continue_proba(state)
            cont = response_rng.random(m) < p_cont
            out.append(
                {
                    "session": np.repeat(alive, length),
                    "step": np.repeat(step, length),
                    "position": np.nonzero(valid)[1],
                    "item": items[valid],
                    "clicked": click[valid].astype(np.int8),
                    "watch": np.where(click, read[:, None], 0.0)[valid],
                    "propensity": prop[valid],
                    "device": np.repeat(device, length),
                    "page": np.repeat(page, length),
                    "p_click": p_click[valid],
                    "p_attract": attract[valid],
                    "p_examine": exam[valid],
                    "p_cont": np.repeat(p_cont, length),
                    "length": np.repeat(length, length),
                }
            )
            keep = np.flatnonzero(cont)
            switch = context_rng.random(m) < DEVICE_SWITCH
            new_device = context_rng.choice(3, size=m, p=[s for s, _ in DEVICES.values()])
            device = np.where(switch, new_device, device)[keep]
            after = np.where(clicked_any[:, None], _AFTER_CLICK, _AFTER_SKIP)
            u = context_rng.random(m)[:, None]
            page = np.minimum((after.cumsum(axis=1) < u).sum(axis=1), 3)[keep]
            alive = alive[keep]
            state = state.take(keep)
        data = {k: np.concatenate([o[k] for o in out]) for k in out[0]}
        order = np.lexsort((data["position"], data["step"], data["session"]))
        return {k: v[order] for k, v in data.items()}

    def _transition(self, state, items, valid, clicked_any, chosen, read) -> None:
        """The slate rule of simkit's env: the clicked item moves the state; every item counts as shown."""
        w, eta = self.world, self.config.eta
        rows = np.flatnonzero(clicked_any)
        state.interest[rows] = (1 - eta) * state.interest[rows] + eta * w.item_embedding[
            chosen[rows]
        ]
        r, k = np.nonzero(valid)
        np.add.at(state.shown, (r, items[r, k]), 1)
        state.step += 1
        state.n_clicks += clicked_any
        state.watch_total += read
        state.steps_since_click = np.where(clicked_any, 0, state.steps_since_click + 1)
        state.last_watch = read.copy()
        state.last_click = clicked_any.astype(np.int64)

    def _frame(self, users, data, time_rng, *, truth: bool, layout: str) -> pd.DataFrame:
        w, c = self.world, self.config
        session = data["session"]
        # one timestamp per list: a list takes its read time (+1 s) or a scan of 2 s + 0.3 s/item
        new_list = np.r_[True, (np.diff(session) != 0) | (np.diff(data["step"]) != 0)]
        list_rows = np.flatnonzero(new_list)
        read = np.add.reduceat(data["watch"], list_rows)
        took = np.where(read > 0, read + 1.0, 2.0 + 0.3 * data["length"][list_rows])
        list_session = session[list_rows]
        sess_bounds = np.r_[0, np.flatnonzero(np.diff(list_session)) + 1]
        offset = np.cumsum(took) - took
        offset -= np.repeat(offset[sess_bounds], np.diff(np.r_[sess_bounds, len(took)]))
        duration = np.add.reduceat(took, sess_bounds)
        scale = c.return_hours * np.exp(0.7 * time_rng.standard_normal(c.n_users))[users]
        start = lay_out_sessions(users, duration, scale, 0.8, rng=time_rng)
        list_time = start[list_session] + offset
        row_time = np.repeat(list_time, np.diff(np.r_[list_rows, len(session)]))
        frame = pd.DataFrame(
            {
                "user_id": w.user_ids[users[session]],
                "session_id": session.astype(np.int64) + 1,
                "step": data["step"],
                "position": data["position"],
                "timestamp": np.round(T0 + row_time, 3),
                "item_id": w.item_ids[data["item"]],
                "clicked": data["clicked"],
                "watch_time": data["watch"],
                "propensity": data["propensity"],
                "ctx_device": pd.Categorical.from_codes(data["device"], list(DEVICES)),
                "ctx_page": pd.Categorical.from_codes(data["page"], list(PAGES)),
                "user_segment": pd.Categorical(
                    w.user_segment[users[session]], categories=["seg0", "seg1", "seg2"]
                ),
            }
        )
        if layout == "rows":
            list_id = np.cumsum(new_list)
            frame.insert(3, "ctx_impression_id", list_id.astype(np.int64))
            frame = frame.rename(columns={"position": "ctx_slot"})
            frame["step"] = frame.groupby("session_id").cumcount().to_numpy()
        if truth:
            frame["true_p_click"] = data["p_click"]
            frame["true_p_attract"] = data["p_attract"]
            frame["true_p_examine"] = data["p_examine"]
            frame["true_p_continue"] = data["p_cont"]
        return frame
