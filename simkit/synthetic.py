"""A synthetic recommender world whose click, watch, leave and return behaviour is known exactly.

The world exists so that every other part of simkit can be checked against the truth: the
fitters' recovery of the click model, the simulator's value of a policy, the off-policy estimators.
Its dynamics are written in terms simkit's state can express:

* users have a latent interest vector ``u`` (never logged); items have an embedding ``v`` that the
  catalogue's ``item_f*`` features record, a quality, a duration and a clickbait flag;
* click: ``sigmoid(b + a * u.v + clickbait + quality - repeats - log1p(step))`` plus a
  non-linear interest term;
* watch time given a click: log-normal around a mean driven by interest and quality (clickbait is
  short), capped by the item's duration;
* after a click the interest moves, ``u <- (1 - eta) u + eta v`` (the same kind of update as
  :mod:`simkit.state`);
* leaving depends on the last watch, whether the last item was clicked, the steps since the last
  click and the step: short watches (clickbait) make users leave, so myopic policies lose;
* time: each impression takes its watch time or a short skip time, and after a session the user
  returns after a gap whose law depends on the end-of-session state (:mod:`simkit.synthetic_time`):
  long watches bring users back sooner, clickbait and sessions that end in a run of skips later.
  Logs cover a window of ``log_days``; every user's last logged session is censored.

``misspecified=True`` adds a hidden per-user fatigue that lowers clicks and continuation and delays
returns, and a different interest update, so that the truth lies outside what simkit's state can hold.
``confounded=True`` lets the logging policy see the latent interest, as production rankers see
signals no log keeps. ``hidden_embedding=True`` logs only an item's category, duration and clickbait
flag, and users' interest is over categories (:attr:`World.user_interest` is the truth).

Other log shapes with known truth: impression lists in :mod:`simkit.synthetic_lists`, click-only
bandit logs in :mod:`simkit.synthetic_bandit`.

Example
-------
>>> import numpy as np
>>> world = World(WorldConfig(n_users=200, n_items=100), rng=np.random.default_rng(0))
>>> logs = world.generate_logs(300, rng=np.random.default_rng(1))
>>> sorted(logs.columns)[:4]
['clicked', 'item_id', 'propensity', 'session_id']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.errors import ConfigError
from simkit.synthetic_io import write_samples
from simkit.synthetic_time import (
    GAP_COEF,
    RetentionValue,
    ReturnGap,
    SessionEnd,
    retention_value,
    run_timeline,
)
from simkit.threads import blas_threads

__all__ = [
    "PolicyValue",
    "RetentionValue",
    "ReturnGap",
    "SessionEnd",
    "World",
    "WorldConfig",
    "WorldState",
    "WorldView",
    "write_samples",
]

Policy = Callable[["WorldView", np.random.Generator], NDArray[np.int64]]
Chooser = Callable[["WorldState"], tuple[NDArray[np.int64], NDArray[np.float64] | None]]

#: catalogue cells (sessions x items) one batch of the log generator may hold when chunking is auto
AUTO_CHUNK_CELLS = 1 << 22
T0 = pd.Timestamp("2026-01-01").value // 10**9


@dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Parameters of the synthetic world (all have defaults that give realistic logs).

    Parameters
    ----------
    n_users, n_items, dim, n_clusters
        Population sizes and the latent dimension (with ``hidden_embedding`` the latent space is
        one axis per category, ``n_clusters`` of them, and ``dim`` is unused).
    clickbait_share
        Fraction of items that are clickbait (tempting, short watches, users leave after them).
    eta
        Interest update rate after a click.
    max_steps
        Hard cap on a session's length (a truncation; rarely reached).
    logging_temperature
        Temperature of the logging policy's softmax over the catalogue.
    confounded
        The logging policy also scores items by the user's latent interest.
    misspecified
        Hidden fatigue and a different interest update (truth outside simkit's state).
    hidden_embedding
        Items are logged only by category, duration and clickbait flag; interest is over categories.
    sessions_per_user
        Generated logs draw ``n_sessions / sessions_per_user`` users; it also sets the users' base
        return scale so that they average about this many sessions in the window.
    log_days
        Length of the logged window in days.
    return_shape
        Weibull shape of the return gap.
    return_spread
        Standard deviation over users of the log base return scale.
    interest_memory_hours
        Time constant of the interest carried from one session to the next, ``z_start = u +
        exp(-gap / tau) (z_end - u)``; 0 (default) starts every session from the long-term ``u``.
    """

    n_users: int = 3000
    n_items: int = 500
    dim: int = 8
    n_clusters: int = 6
    clickbait_share: float = 0.1
    eta: float = 0.1
    max_steps: int = 200
    logging_temperature: float = 1.0
    confounded: bool = False
    misspecified: bool = False
    hidden_embedding: bool = False
    sessions_per_user: float = 5.0
    log_days: float = 30.0
    return_shape: float = 0.8
    return_spread: float = 0.7
    interest_memory_hours: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "dim", "n_clusters", "max_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"WorldConfig.{name} must be at least 1; got {getattr(self, name)}."
                )
        if not 0.0 <= self.clickbait_share < 1.0:
            raise ConfigError(
                f"WorldConfig.clickbait_share must be in [0, 1); got {self.clickbait_share}."
            )
        if not 0.0 < self.eta < 1.0:
            raise ConfigError(f"WorldConfig.eta must be in (0, 1); got {self.eta}.")
        for name in ("logging_temperature", "sessions_per_user", "log_days", "return_shape"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"WorldConfig.{name} must be positive; got {getattr(self, name)}."
                )
        for name in ("return_spread", "interest_memory_hours"):
            if not getattr(self, name) >= 0:
                raise ConfigError(
                    f"WorldConfig.{name} must be zero or positive; got {getattr(self, name)}."
                )

    @property
    def base_return_hours(self) -> float:
        """Median over users of the base return scale (hours), from the window and session rate."""
        return 1.1 * 24.0 * self.log_days / self.sessions_per_user


@dataclass
class WorldState:
    """The true state of many sessions at once (arrays over sessions; mutated by :meth:`World.step`)."""

    user: NDArray[np.int64]
    interest: NDArray[np.float64]
    step: NDArray[np.int64]
    n_clicks: NDArray[np.int64]
    watch_total: NDArray[np.float64]
    steps_since_click: NDArray[np.int64]
    last_watch: NDArray[np.float64]
    last_click: NDArray[np.int64]
    shown: NDArray[np.int16]
    history: NDArray[np.float64]
    fatigue: NDArray[np.float64]
    bait_clicks: NDArray[np.int64]

    def take(self, rows: NDArray[np.int64]) -> WorldState:
        """The sub-state of the given sessions (copies)."""
        return WorldState(**{k: v[rows].copy() for k, v in self.__dict__.items()})

    def put(self, rows: NDArray[np.int64], other: WorldState) -> None:
        """Overwrite the given sessions with ``other`` (a new session in a running batch)."""
        for k, v in self.__dict__.items():
            v[rows] = getattr(other, k)


@dataclass(frozen=True)
class WorldView:
    """What a policy run in the world may look at: the logged history and the candidates.

    ``world`` and ``state`` are there for oracle policies; policies meant to be compared with a
    simulator must use only the observable fields.
    """

    user_id: NDArray[np.int64]
    candidates: NDArray[np.int64]
    step: NDArray[np.int64]
    n_clicks: NDArray[np.int64]
    last_watch: NDArray[np.float64]
    world: World
    state: WorldState = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class PolicyValue:
    """True value of a policy estimated by running it in the world, with standard errors."""

    n_sessions: int
    watch_time: float
    watch_time_se: float
    clicks: float
    clicks_se: float
    length: float
    length_se: float


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _se(x: NDArray[np.float64]) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


class World:
    """The synthetic ground-truth world: users, items and their true response functions.

    Parameters
    ----------
    config
        World parameters; defaults when omitted.
    rng
        Generator for the world's users and items (logs use their own generator).

    Attributes
    ----------
    user_interest
        True long-term interest of every user (rows of the user table; over categories with
        ``hidden_embedding``).
    user_return_scale
        Each user's base Weibull scale of the return gap (hours).
    """

    def __init__(self, config: WorldConfig | None = None, *, rng: np.random.Generator) -> None:
        self.config = config or WorldConfig()
        c = self.config
        items_rng, users_rng, return_rng, hidden_rng = rng.spawn(4)
        centres = items_rng.normal(size=(c.n_clusters, c.dim))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        item_cluster = items_rng.integers(c.n_clusters, size=c.n_items)
        v = centres[item_cluster] + 0.6 * items_rng.normal(size=(c.n_items, c.dim)) / np.sqrt(c.dim)
        self.item_embedding = v / np.linalg.norm(v, axis=1, keepdims=True)
        self.item_clickbait = (items_rng.random(c.n_items) < c.clickbait_share).astype(np.int64)
        self.item_quality = items_rng.normal(0.0, 0.5, size=c.n_items)
        self.item_duration = np.round(np.exp(items_rng.normal(5.0, 0.6, size=c.n_items)), 1)
        self.item_duration[self.item_clickbait == 1] *= 0.4
        self.item_pop = items_rng.normal(0.0, 0.7, size=c.n_items)
        self.item_ids = np.arange(c.n_items, dtype=np.int64) + 1000
        self.item_cluster = item_cluster
        self.item_category = np.array([f"cat{k}" for k in item_cluster], dtype=object)

        user_cluster = users_rng.integers(c.n_clusters, size=c.n_users)
        u = centres[user_cluster] + 0.7 * users_rng.normal(size=(c.n_users, c.dim)) / np.sqrt(c.dim)
        scale = users_rng.uniform(0.6, 1.2, size=(c.n_users, 1))
        self.user_interest = scale * u / np.linalg.norm(u, axis=1, keepdims=True)
        self.user_segment = np.array([f"seg{k % 3}" for k in user_cluster], dtype=object)
        self.user_fatigue_rate = users_rng.uniform(0.0, 0.3, size=c.n_users)
        self.user_ids = np.arange(c.n_users, dtype=np.int64) + 1
        self.user_return_scale = c.base_return_hours * np.exp(
            c.return_spread * return_rng.standard_normal(c.n_users)
        )
        if c.hidden_embedding:
            # one interest axis per category: items are one-hot, users like their home category
            self.item_embedding = np.eye(c.n_clusters)[item_cluster]
            taste = 0.35 * hidden_rng.normal(size=(c.n_users, c.n_clusters))
            taste[np.arange(c.n_users), user_cluster] += 0.9
            self.user_interest = scale * taste
        self._static_score = self.item_pop + 0.6 * self.item_quality + 0.5 * self.item_clickbait

    @property
    def dim(self) -> int:
        """Dimension of the latent interest space."""
        return int(self.item_embedding.shape[1])

    # ----------------------------------------------------------------- catalogue

    @property
    def items(self) -> pd.DataFrame:
        """The item catalogue as logs would ship it: ``item_id``, ``item_*`` features, ``duration``.

        With ``hidden_embedding`` only ``item_category`` (an integer), ``item_clickbait`` and
        ``duration`` are shipped.
        """
        frame = pd.DataFrame({"item_id": self.item_ids})
        if self.config.hidden_embedding:
            frame["item_category"] = self.item_cluster.astype(np.int64)
            frame["item_clickbait"] = self.item_clickbait
            frame["duration"] = self.item_duration
            return frame
        for k in range(self.config.dim):
            frame[f"item_f{k}"] = np.round(self.item_embedding[:, k], 4)
        frame["item_category"] = pd.Categorical(self.item_category)
        frame["item_clickbait"] = self.item_clickbait
        frame["item_quality"] = np.round(self.item_quality, 4)
        frame["duration"] = self.item_duration
        return frame

    def true_interest(self, user_ids: NDArray[np.int64]) -> NDArray[np.float64]:
        """Long-term interest of the users with these ids (the oracle's user state)."""
        return self.user_interest[np.asarray(user_ids) - 1]

    # ------------------------------------------------------------------ dynamics

    def initial_state(self, users: NDArray[np.int64]) -> WorldState:
        """Fresh sessions for the given user indices (0-based rows of the user table)."""
        n = len(users)
        return WorldState(
            user=np.asarray(users, dtype=np.int64),
            interest=self.user_interest[users].copy(),
            step=np.zeros(n, np.int64),
            n_clicks=np.zeros(n, np.int64),
            watch_total=np.zeros(n),
            steps_since_click=np.zeros(n, np.int64),
            last_watch=np.zeros(n),
            last_click=np.zeros(n, np.int64),
            shown=np.zeros((n, self.config.n_items), np.int16),
            history=np.zeros((n, self.dim)),
            fatigue=np.zeros(n),
            bait_clicks=np.zeros(n, np.int64),
        )

    def _affinity(self, state: WorldState, items: NDArray[np.int64]) -> NDArray[np.float64]:
        return np.einsum("nd,nkd->nk", state.interest, self.item_embedding[items])

    def click_proba(self, state: WorldState, items: NDArray[np.int64]) -> NDArray[np.float64]:
        """True click probability of showing ``items`` (shape (n, K)) in ``state``."""
        items = np.asarray(items).reshape(len(state.user), -1)
        aff = self._affinity(state, items)
        repeats = np.take_along_axis(state.shown, items, axis=1)
        logit = (
            -1.6
            + 2.2 * aff
            + 1.2 * np.maximum(aff, 0.0) ** 2
            + 1.4 * self.item_clickbait[items]
            + 0.5 * self.item_quality[items]
            - 0.8 * repeats
            - 0.15 * np.log1p(state.step)[:, None]
        )
        if self.config.misspecified:
            logit = logit - 0.25 * state.fatigue[:, None]
        return _sigmoid(logit)

    def watch_mean_log(self, state: WorldState, items: NDArray[np.int64]) -> NDArray[np.float64]:
        """Mean of log watch seconds given a click, before the duration cap (shape (n, K))."""
        items = np.asarray(items).reshape(len(state.user), -1)
        aff = self._affinity(state, items)
        return (
            3.4
            + 0.9 * aff
            + 0.35 * self.item_quality[items]
            - 1.3 * self.item_clickbait[items]
            + 0.05 * np.minimum(state.n_clicks, 10)[:, None]
        )

    def continue_proba(self, state: WorldState) -> NDArray[np.float64]:
        """True probability that another impression follows, in the state after a transition."""
        logit = (
            2.1
            + 0.5 * np.log1p(state.last_watch)
            - 1.5 * state.last_click
            - 0.12 * np.minimum(state.steps_since_click, 10)
            - 0.08 * np.log1p(state.step)
        )
        if self.config.misspecified:
            logit = logit - 0.2 * state.fatigue
        return _sigmoid(logit)

    def step(
        self, state: WorldState, items: NDArray[np.int64], *, rng: np.random.Generator
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_], NDArray, NDArray]:
        """Show one item per session, sample the response and move ``state`` in place.

        Returns
        -------
        clicked, watch_time, continues, p_click, p_continue
            Arrays over sessions (the last two are the true probabilities used).
        """
        items = np.asarray(items, dtype=np.int64)
        n = len(items)
        p = self.click_proba(state, items[:, None])[:, 0]
        click = (rng.random(n) < p).astype(np.int64)
        mu = self.watch_mean_log(state, items[:, None])[:, 0]
        raw = np.exp(mu + 0.8 * rng.standard_normal(n))
        watch = np.where(click == 1, np.minimum(raw, self.item_duration[items]), 0.0)
        watch = np.round(watch, 2).astype(np.float64, copy=False)

        eta = self.config.eta
        if self.config.misspecified:
            eta = 0.25
            # disengagement also moves interest: away from what was ignored
            miss = click == 0
            state.interest[miss] = state.interest[miss] - 0.03 * self.item_embedding[items[miss]]
        clicked = click == 1
        state.interest[clicked] = (1 - eta) * state.interest[clicked] + eta * self.item_embedding[
            items[clicked]
        ]
        state.history[clicked] += self.item_embedding[items[clicked]]
        rows = np.arange(n)
        state.shown[rows, items] += 1
        state.step += 1
        state.n_clicks += click
        state.bait_clicks += click * self.item_clickbait[items]
        state.watch_total += watch
        state.steps_since_click = np.where(clicked, 0, state.steps_since_click + 1)
        state.last_watch = watch.copy()
        state.last_click = click.copy()
        state.fatigue += self.user_fatigue_rate[state.user]
        p_cont = self.continue_proba(state)
        cont = rng.random(n) < p_cont
        return click, watch, cont, p, p_cont

    def return_gap(self, end: SessionEnd) -> ReturnGap:
        """The true law of the gap (hours) from the end of each session to the user's next one.

        ``log scale = log scale_user - 0.35 log1p(watch_total / 60) + 1.0 bait_clicks /
        max(n_clicks, 1) + 0.06 min(steps_since_click, 10)`` (plus ``0.1 * fatigue`` when
        misspecified), Weibull shape ``config.return_shape``; see :mod:`simkit.synthetic_time`.
        """
        a, b, s = GAP_COEF
        log_scale = (
            np.log(self.user_return_scale[end.user])
            + a * np.log1p(end.watch_total / 60.0)
            + b * end.bait_clicks / np.maximum(end.n_clicks, 1)
            + s * np.minimum(end.steps_since_click, 10)
        )
        if self.config.misspecified:
            log_scale = log_scale + 0.1 * end.fatigue
        return ReturnGap(scale_hours=np.exp(log_scale), shape=self.config.return_shape)

    def start_state(
        self, users: NDArray[np.int64], last: SessionEnd | None, gap_hours: NDArray[np.float64]
    ) -> WorldState:
        """Fresh sessions after a gap: the true cross-session transition.

        The interest restarts at the user's long-term interest ``u``; with
        ``interest_memory_hours = tau > 0`` it is ``u + exp(-gap / tau) (z_end - u)``, ``z_end``
        being the interest at the end of the previous session (``last``). Counters restart at 0.
        """
        state = self.initial_state(users)
        tau = self.config.interest_memory_hours
        if last is not None and tau > 0:
            keep = np.exp(-gap_hours / tau)[:, None]
            state.interest += keep * (last.interest - state.interest)
        return state

    def _run_sessions(
        self,
        state: WorldState,
        choose: Chooser,
        *,
        rng: np.random.Generator,
        record: Callable[..., None] | None = None,
    ) -> SessionEnd:
        """Run all sessions in ``state`` to their end; ``record`` sees every impression."""
        n = len(state.user)
        end = SessionEnd.empty(n, self.dim)
        alive = np.arange(n)
        for _ in range(self.config.max_steps):
            if len(alive) == 0:
                break
            items, prop = choose(state)
            step = state.step.copy()
            click, watch, cont, p_click, p_cont = self.step(state, items, rng=rng)
            if record is not None:
                record(alive, step, items, click, watch, prop, p_click, p_cont)
            stop = np.flatnonzero(~cont)
            end.put(alive[stop], state, stop)
            keep = np.flatnonzero(cont)
            alive = alive[keep]
            state = state.take(keep)
        end.put(alive, state, np.arange(len(alive)))
        return end

    # ------------------------------------------------------------ logging policy

    def logging_proba(self, state: WorldState) -> NDArray[np.float64]:
        """The logging policy's probabilities over the whole catalogue (shape (n, n_items)).

        By default it scores items by what the logs record: the item's popularity and quality,
        its clickbait flag, and the items clicked earlier in the session; ``confounded=True``
        adds the latent interest.
        """
        c = self.config
        n_hist = np.maximum(state.n_clicks, 1)[:, None]
        h = state.history / n_hist
        score = h @ (1.5 * self.item_embedding.T)
        score += self._static_score
        score -= 2.0 * (state.shown > 0)
        if c.confounded:
            score += 2.5 * state.interest @ self.item_embedding.T
        if c.logging_temperature != 1.0:
            score /= c.logging_temperature
        score -= score.max(axis=1, keepdims=True)
        np.exp(score, out=score)
        score /= score.sum(axis=1, keepdims=True)
        return score

    def _logging_chooser(self, rng: np.random.Generator) -> Chooser:
        def choose(state: WorldState) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
            probs = self.logging_proba(state)
            draw = rng.random(len(state.user))[:, None]
            items = np.minimum((probs.cumsum(axis=1) < draw).sum(axis=1), self.config.n_items - 1)
            return items, probs[np.arange(len(items)), items]

        return choose

    # --------------------------------------------------------------------- logs

    def generate_logs(
        self,
        n_sessions: int,
        *,
        rng: np.random.Generator,
        truth: bool = False,
        chunk_users: int | None = None,
    ) -> pd.DataFrame:
        """Run the logging policy over the log window and return the impression log.

        ``n_sessions / sessions_per_user`` users are drawn; each has the sessions the return
        process gives it inside the window of ``log_days`` (so the number of sessions is about,
        not exactly, ``n_sessions``; when ``n_users`` is too small for that, the window is
        lengthened in proportion). Columns: ``user_id, session_id, step, timestamp, item_id,
        clicked, watch_time, propensity, user_segment`` (one row per shown item; item features are
        in :attr:`items`). ``timestamp`` is when the item was shown (seconds since the epoch).
        With ``truth=True`` more columns hold the truth behind each row: ``true_p_click``,
        ``true_p_continue`` (of the state after the row) and, per session, ``true_gap_hours`` (the
        sampled gap to the next session, also when that falls after the window),
        ``true_gap_scale_hours`` (its Weibull scale) and ``censored`` (the next session falls after
        the window).

        Parameters
        ----------
        chunk_users
            Users simulated at once. ``None`` picks all of them when users x items is small and
            otherwise chunks of ``AUTO_CHUNK_CELLS / n_items`` users, so memory does not grow with
            the catalogue times the number of sessions. Different chunkings give different (equally
            distributed) logs.
        """
        return pd.concat(
            list(self.iter_logs(n_sessions, rng=rng, truth=truth, chunk_users=chunk_users)),
            ignore_index=True,
        )

    def iter_logs(
        self,
        n_sessions: int,
        *,
        rng: np.random.Generator,
        truth: bool = False,
        chunk_users: int | None = None,
    ) -> Iterator[pd.DataFrame]:
        """:meth:`generate_logs` as a stream of frames, one per chunk of users (ids stay unique)."""
        if n_sessions < 1:
            raise ConfigError(f"n_sessions must be at least 1; got {n_sessions}.")
        if chunk_users is not None and chunk_users < 1:
            raise ConfigError(f"chunk_users must be at least 1; got {chunk_users}.")
        c = self.config
        pick_rng, policy_rng, response_rng, time_rng, start_rng, gap_rng = rng.spawn(6)
        n_users_used = min(c.n_users, max(1, int(round(n_sessions / c.sessions_per_user))))
        pool = np.sort(pick_rng.choice(c.n_users, size=n_users_used, replace=False))
        # when the population is too small for n_sessions, the window grows instead of the return rate
        window = 24.0 * c.log_days * max(1.0, n_sessions / (n_users_used * c.sessions_per_user))
        size = chunk_users or max(1, AUTO_CHUNK_CELLS // c.n_items)
        n_chunks = -(-n_users_used // size)
        streams = [policy_rng, response_rng, time_rng, start_rng, gap_rng]
        per_chunk = (
            [tuple(s) for s in zip(*(r.spawn(n_chunks) for r in streams), strict=True)]
            if n_chunks > 1
            else [tuple(streams)]
        )
        first_id = 1
        for k, chunk_streams in enumerate(per_chunk):
            with blas_threads(1):  # small products: extra BLAS threads only spin on shared cores
                frame = self._window_logs(
                    pool[k * size : (k + 1) * size], chunk_streams, window, truth=truth
                )
            frame["session_id"] += first_id
            first_id = int(frame["session_id"].max()) + 1
            yield frame

    def _window_logs(
        self, users: NDArray[np.int64], streams: tuple, window: float, *, truth: bool
    ) -> pd.DataFrame:
        """The logs of ``users`` over ``window`` hours (each user's sessions in turn, users batched)."""
        policy_rng, response_rng, time_rng, start_rng, gap_rng = streams
        base = ReturnGap(scale_hours=self.user_return_scale[users], shape=self.config.return_shape)
        start = base.sample_first(window, rng=start_rng)
        chunks: list[dict[str, NDArray]] = []

        def record(session, step, items, click, watch, prop, p_click, p_cont, time) -> None:
            chunks.append(
                {"session": session, "step": step, "item": items, "clicked": click,
                 "watch": watch, "propensity": prop, "p_click": p_click, "p_cont": p_cont,
                 "time": time}
            )  # fmt: skip

        sessions = run_timeline(
            self,
            users,
            start,
            window,
            self._logging_chooser(policy_rng),
            streams=(response_rng, time_rng, gap_rng),
            record=record,
        )
        data = {key: np.concatenate([ch[key] for ch in chunks]) for key in chunks[0]}
        return self._log_frame(users, data, sessions, truth=truth)

    def _log_frame(
        self,
        users: NDArray[np.int64],
        data: dict[str, NDArray],
        sess: dict[str, NDArray],
        *,
        truth: bool,
    ) -> pd.DataFrame:
        # session ids: by user, then by start time
        rank = np.empty(len(sess["user"]), np.int64)
        rank[np.lexsort((sess["start"], sess["user"]))] = np.arange(len(rank))
        sid = rank[data["session"]]
        order = np.lexsort((data["step"], sid))
        data = {k: v[order] for k, v in data.items()}
        sid = sid[order]
        user = users[sess["user"][data["session"]]]
        frame = pd.DataFrame(
            {
                "user_id": self.user_ids[user],
                "session_id": sid,
                "step": data["step"],
                "timestamp": np.round(T0 + data["time"], 3),
                "item_id": self.item_ids[data["item"]],
                "clicked": data["clicked"].astype(np.int8),
                "watch_time": data["watch"],
                "propensity": data["propensity"],
                "user_segment": pd.Categorical(
                    self.user_segment[user], categories=["seg0", "seg1", "seg2"]
                ),
            }
        )
        if truth:
            frame["true_p_click"] = data["p_click"]
            frame["true_p_continue"] = data["p_cont"]
            s = data["session"]
            frame["true_gap_hours"] = sess["gap"][s]
            frame["true_gap_scale_hours"] = sess["scale"][s]
            frame["censored"] = sess["censored"][s]
        return frame

    # -------------------------------------------------------------- true values

    def _policy_chooser(
        self, policy: Policy, n_candidates: int | None, cand_rng, policy_rng
    ) -> Chooser:
        c = self.config

        def choose(state: WorldState) -> tuple[NDArray[np.int64], None]:
            n = len(state.user)
            if n_candidates is None:
                cands = np.broadcast_to(np.arange(c.n_items), (n, c.n_items))
            else:
                cands = np.argsort(cand_rng.random((n, c.n_items)), axis=1)[:, :n_candidates]
            view = WorldView(
                user_id=self.user_ids[state.user],
                candidates=cands,
                step=state.step,
                n_clicks=state.n_clicks,
                last_watch=state.last_watch,
                world=self,
                state=state,
            )
            idx = np.asarray(policy(view, policy_rng), dtype=np.int64)
            return cands[np.arange(n), idx], None

        return choose

    def run_policy(
        self,
        policy: Policy,
        n_sessions: int,
        *,
        rng: np.random.Generator,
        n_candidates: int | None = None,
        users: NDArray[np.int64] | None = None,
    ) -> PolicyValue:
        """Run ``policy`` in the world and return its true mean values per session.

        Parameters
        ----------
        policy
            ``policy(view, rng) -> indices`` choosing one candidate per session.
        n_sessions
            Number of sessions to simulate.
        n_candidates
            Candidates drawn uniformly without replacement each step; ``None`` offers the whole
            catalogue.
        users
            User rows to start sessions from (default: uniform over the population).
        """
        user_rng, cand_rng, policy_rng, response_rng = rng.spawn(4)
        if users is None:
            users = user_rng.integers(self.config.n_users, size=n_sessions)
        state = self.initial_state(np.asarray(users)[:n_sessions])
        choose = self._policy_chooser(policy, n_candidates, cand_rng, policy_rng)
        with blas_threads(1):
            end = self._run_sessions(state, choose, rng=response_rng)
        length = end.length.astype(np.float64)
        clicks = end.n_clicks.astype(np.float64)
        return PolicyValue(
            n_sessions=n_sessions,
            watch_time=float(end.watch_total.mean()),
            watch_time_se=_se(end.watch_total),
            clicks=float(clicks.mean()),
            clicks_se=_se(clicks),
            length=float(length.mean()),
            length_se=_se(length),
        )

    def run_days(
        self,
        policy: Policy,
        n_users: int,
        *,
        days: float,
        rng: np.random.Generator,
        n_candidates: int | None = 20,
        users: NDArray[np.int64] | None = None,
    ) -> RetentionValue:
        """Run ``policy`` for users over a horizon of days: sessions, return gaps and engagement.

        Every user starts a session at hour 0; after each session the true return law
        (:meth:`return_gap`) samples the gap, and sessions starting before ``days * 24`` hours are
        run, all users' k-th sessions in one batch.

        Parameters
        ----------
        policy, n_candidates
            As :meth:`run_policy` (20 uniform candidates per step by default).
        n_users
            Number of users (drawn uniformly from the population unless ``users`` is given).
        days
            Horizon.
        users
            User rows (0-based) to run.

        Returns
        -------
        RetentionValue
            Per-user and per-session figures (their means are the policy's true values).
        """
        if n_users < 1 or days <= 0:
            raise ConfigError(f"run_days needs n_users >= 1 and days > 0; got {n_users}, {days}.")
        user_rng, cand_rng, policy_rng, response_rng, time_rng, gap_rng = rng.spawn(6)
        if users is None:
            users = user_rng.integers(self.config.n_users, size=n_users)
        users = np.asarray(users, dtype=np.int64)[:n_users]
        with blas_threads(1):
            sessions = run_timeline(
                self,
                users,
                np.zeros(len(users)),
                days * 24.0,
                self._policy_chooser(policy, n_candidates, cand_rng, policy_rng),
                streams=(response_rng, time_rng, gap_rng),
            )
        return retention_value(users, sessions, days=days)

    def logging_policy(self, view: WorldView, rng: np.random.Generator) -> NDArray[np.int64]:
        """The logging policy as a :data:`Policy` over the offered candidates."""
        probs = self.logging_proba(view.state)
        sub = np.take_along_axis(probs, np.asarray(view.candidates), axis=1)
        sub /= sub.sum(axis=1, keepdims=True)
        draw = rng.random(len(sub))[:, None]
        return np.minimum((sub.cumsum(axis=1) < draw).sum(axis=1), sub.shape[1] - 1)
