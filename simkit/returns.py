"""Return time: when a user comes back after a session, and users run over days of sessions.

:class:`ReturnModel` is the runtime return-time model of a simulator (``Simulator.extras["return"]``,
saved as ``return.txt`` + ``return.npz``): a discrete-time hazard model (Singer & Willett 1993) over
buckets of the gap in hours, ``h_b(x) = P(G in bucket b | G >= start of b, x)``, with the hazard
rate constant inside a bucket (piecewise-exponential) and the last bucket's rate continued beyond
the last edge. ``x`` are :func:`simkit.state.return_features` of the state at the end of the
session. It is fitted by :func:`simkit.fitters.returns.fit_return_model`.

:func:`timed_sessions` is the causal replay of logs with timestamps that fitting and validation
share: each session starts from what came before it (:func:`simkit.state.between_sessions`), its
end-of-session features come from :func:`simkit.replay.replay`, and the gap to the user's next
session is censored at the end of the log. :func:`close_sessions` is the one end-of-session step
(features, sampled gap, next start state) that the retention env and :func:`run_days` call.

References
----------
.. [1] Singer, Willett. "It's about time: using discrete-time survival analysis to study duration
   and the timing of events." Journal of Educational Statistics 18(2), 1993.
.. [2] Cai, Liu, Wang et al. "Reinforcing user retention in a billion scale short video
   recommender system." WWW 2023 Companion, arXiv:2302.01724 (return time as the RL signal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.errors import SimkitError
from simkit.models import predict_threads
from simkit.replay import SessionStart, index_logs, replay, session_features
from simkit.session import StepResult
from simkit.state import (
    SessionState,
    UserHistory,
    between_sessions,
    initial_state,
    long_term_interest,
    record_clicks,
    return_feature_names,
    return_features,
)

if TYPE_CHECKING:
    import lightgbm as lgb

    from simkit.logs import Logs
    from simkit.simulator import Simulator, UserBatch
    from simkit.synthetic_time import RetentionValue

__all__ = [
    "HISTORY_ARRAYS",
    "EpisodeEvents",
    "Episodes",
    "NoReturnModelError",
    "ReturnModel",
    "TimedSessions",
    "after_step",
    "close_sessions",
    "known_users",
    "return_model_of",
    "run_days",
    "timed_sessions",
    "user_rows",
]

HISTORY_ARRAYS = ("n_sessions", "hours", "gap_log_sum", "n_gaps", "last_log_gap")
"""Per-user record at the end of the training log stored with the model (order of the users)."""


class NoReturnModelError(SimkitError):
    """The simulator has no return-time model (its logs had no timestamps)."""


def return_model_of(sim: Simulator, what: str) -> ReturnModel:
    """The simulator's return model, or :class:`NoReturnModelError` saying why there is none."""
    model = sim.extras.get("return")
    if not isinstance(model, ReturnModel):
        raise NoReturnModelError(
            f"{what} needs a simulator with a return-time model, but this simulator has none: it "
            "was fitted from logs without a 'timestamp' column (or from an older simkit), so the "
            "gaps between a user's sessions are unknown. Refit it from logs that carry the time "
            "of every impression (simkit fit LOGS with a timestamp column)."
        )
    expected = [*return_feature_names(sim.spec), "gap_bucket"]
    found = list(model.booster.feature_name())
    if found != expected:
        raise NoReturnModelError(
            f"{what} needs a return-time model on the features {expected[-4:]} (last four of "
            f"{len(expected)}), but this simulator's was fitted on {found[-4:]} (last four of "
            f"{len(found)}) by an older simkit. Refit the simulator (simkit fit LOGS)."
        )
    return model


@dataclass
class ReturnModel:
    """A discrete-time hazard model of the gap (hours) from the end of a session to the next one.

    Attributes
    ----------
    booster
        LightGBM binary model of the bucket hazard on the return features plus the bucket index
        (last column).
    edges_hours
        Bucket edges ``0 = e_0 < e_1 < ... < e_B``; bucket ``b`` is ``[e_b, e_{b+1})`` and beyond
        ``e_B`` the hazard rate of the last bucket continues.
    user_history
        Known users' record at the end of the training log (:data:`HISTORY_ARRAYS`, arrays in the
        order of ``Simulator.users``): where an episode of a logged user picks up.
    skip_seconds, open_seconds
        Mean time an unclicked impression takes, and the time a click takes beyond its watch.
    """

    booster: lgb.Booster
    edges_hours: NDArray[np.float64]
    user_history: dict[str, NDArray[np.float64]]
    skip_seconds: float
    open_seconds: float

    @property
    def n_buckets(self) -> int:
        """Number of buckets ``B``."""
        return len(self.edges_hours) - 1

    def hazards(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """Hazard of each bucket for each row of return features, (n, B)."""
        n, b = len(x), self.n_buckets
        rows = np.empty((n * b, x.shape[1] + 1), np.float32)
        rows[:, :-1] = np.repeat(np.asarray(x, np.float32), b, axis=0)
        rows[:, -1] = np.tile(np.arange(b, dtype=np.float32), n)
        if n == 0:
            return np.zeros((0, b))
        p = self.booster.predict(rows, num_threads=predict_threads(len(rows)))
        return np.clip(np.asarray(p).reshape(n, b), 1e-6, 1 - 1e-6)

    def _rates(self, x: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Hazard rate per hour in each bucket (n, B) and the cumulative hazard at each edge."""
        widths = np.diff(self.edges_hours)
        lam = -np.log1p(-self.hazards(x)) / widths
        cum = np.zeros((len(x), self.n_buckets + 1))
        cum[:, 1:] = np.cumsum(lam * widths, axis=1)
        return lam, cum

    def survival(self, x: NDArray[np.float32], hours: float | NDArray) -> NDArray[np.float64]:
        """``P(G > hours)`` for each row."""
        lam, cum = self._rates(x)
        t = np.broadcast_to(np.asarray(hours, dtype=np.float64), (len(x),))
        e = self.edges_hours
        b = np.clip(np.searchsorted(e, t, side="right") - 1, 0, self.n_buckets - 1)
        rows = np.arange(len(x))
        h = cum[rows, b] + lam[rows, b] * (t - e[b])
        return np.exp(-h)

    def restricted_mean(self, x: NDArray[np.float32], cap_hours: float) -> NDArray[np.float64]:
        """``E[min(G, cap_hours)]`` for each row (the mean gap over a horizon)."""
        lam, cum = self._rates(x)
        e = self.edges_hours
        lo = np.minimum(e[:-1], cap_hours)
        hi = np.r_[e[1:-1], max(cap_hours, e[-1])]
        hi = np.minimum(hi, cap_hours)
        length = np.maximum(hi - lo, 0.0)
        part = np.exp(-cum[:, :-1]) * -np.expm1(-lam * length) / lam
        return part.sum(axis=1)

    def sample(self, x: NDArray[np.float32], *, rng: np.random.Generator) -> NDArray[np.float64]:
        """One gap (hours) per row of return features."""
        lam, cum = self._rates(x)
        target = -np.log(rng.random(len(x)))  # the cumulative hazard at which the user returns
        b = np.minimum((cum[:, 1:] <= target[:, None]).sum(axis=1), self.n_buckets - 1)
        rows = np.arange(len(x))
        return self.edges_hours[b] + (target - cum[rows, b]) / lam[rows, b]

    def session_hours(self, click: NDArray, watch: NDArray[np.float64]) -> NDArray[np.float64]:
        """Hours that impressions take: watch plus the open time when clicked, else a skip."""
        seconds = np.where(
            np.asarray(click) > 0, np.asarray(watch) + self.open_seconds, self.skip_seconds
        )
        return seconds / 3600.0

    def start_history(self, sim: Simulator, users: UserBatch, n_item_features: int) -> UserHistory:
        """The record of users starting an episode: logged users continue their training log.

        A known user (``users.rows >= 0``) has the clicks behind its start interest
        (``z0 (n + k) - k m`` with ``n = expm1(hist_n)``), its training sessions and gaps over
        the span of the log (the session the episode begins with is placed there, not drawn from
        the user's returns, so it does not count as one); a new user has no past.
        """
        n = len(users.rows)
        hist = UserHistory.empty(n, sim.catalogue.dim, n_item_features)
        known = users.rows >= 0
        k, m = sim.dynamics.shrinkage, sim.dynamics.prior
        n_clicks = np.expm1(users.hist_n)
        hist.n_clicks[:] = n_clicks
        hist.click_sum[:] = users.z0 * (n_clicks + k)[:, None] - k * m
        rows = users.rows[known]
        if len(rows):
            u = self.user_history
            hist.n_sessions[known] = u["n_sessions"][rows]
            hist.hours[known] = u["hours"][rows]
            hist.gap_log_sum[known] = u["gap_log_sum"][rows]
            hist.n_gaps[known] = u["n_gaps"][rows]
            hist.last_log_gap[known] = u["last_log_gap"][rows]
        return hist

    @staticmethod
    def activity(history: UserHistory) -> NDArray[np.float64]:
        """Sessions per day over each user's record (at least a day)."""
        return history.n_sessions / np.maximum(history.hours / 24.0, 1.0)

    def median_activity(self) -> float:
        """Median sessions per day of the logged users over the training log."""
        u = self.user_history
        rate = u["n_sessions"] / np.maximum(u["hours"] / 24.0, 1.0)
        return float(np.median(rate)) if len(rate) else 0.0

    def to_arrays(self) -> dict[str, NDArray[np.float64]]:
        """Arrays of ``return.npz``."""
        return {
            "edges_hours": self.edges_hours,
            "seconds": np.array([self.skip_seconds, self.open_seconds]),
            **{f"user_{k}": v for k, v in self.user_history.items()},
        }

    @classmethod
    def from_arrays(cls, booster: lgb.Booster, arrays: dict[str, Any]) -> ReturnModel:
        """Inverse of :meth:`to_arrays`; raises ``ValueError`` when an array is missing or bad."""
        need = {"edges_hours", "seconds", *(f"user_{k}" for k in HISTORY_ARRAYS)}
        missing = sorted(need - set(arrays))
        if missing:
            raise ValueError(f"return.npz lacks the arrays {missing}")
        edges = np.asarray(arrays["edges_hours"], dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or edges[0] != 0 or np.any(np.diff(edges) <= 0):
            raise ValueError("return.npz edges_hours must start at 0 and increase")
        skip, opened = (float(v) for v in arrays["seconds"])
        return cls(
            booster=booster,
            edges_hours=edges,
            user_history={k: np.asarray(arrays[f"user_{k}"], np.float64) for k in HISTORY_ARRAYS},
            skip_seconds=skip,
            open_seconds=opened,
        )


# --------------------------------------------------------------------------- causal replay


@dataclass(frozen=True, kw_only=True)
class TimedSessions:
    """Logged sessions with their return gaps, replayed causally (arrays over sessions).

    Attributes
    ----------
    x
        Return features at the end of each session (:func:`simkit.state.return_features`).
    user
        User code of each session (into ``user_ids``).
    start_hours, end_hours
        Start (first impression) and end (last impression plus its watch) from the log's start.
    gap_hours
        Hours to the user's next session (NaN when censored).
    censor_hours
        Hours from the end of the session to the end of the log.
    censored
        The user has no later session in the log.
    span_hours
        Length of the log.
    end_history
        Each user's record at the end of the log (arrays over ``user_ids``).
    skip_seconds, open_seconds
        Mean logged time of an unclicked impression, and of a click beyond its watch.
    n_overlapping
        Sessions that started before the previous one of the same user ended (gap set to 0).
    """

    x: NDArray[np.float32]
    user: NDArray[np.int64]
    user_ids: NDArray
    start_hours: NDArray[np.float64]
    end_hours: NDArray[np.float64]
    gap_hours: NDArray[np.float64]
    censor_hours: NDArray[np.float64]
    censored: NDArray[np.bool_]
    span_hours: float
    end_history: dict[str, NDArray[np.float64]]
    skip_seconds: float
    open_seconds: float
    n_overlapping: int

    @property
    def observed_hours(self) -> NDArray[np.float64]:
        """``min(gap, censor_hours)``: what the log shows of each gap."""
        return np.where(self.censored, self.censor_hours, self.gap_hours)

    @property
    def sessions_per_user(self) -> NDArray[np.int64]:
        """Logged sessions of each user."""
        return np.bincount(self.user, minlength=len(self.user_ids))


def timed_sessions(logs: Logs, sim: Simulator) -> TimedSessions:
    """Replay logs with timestamps causally and measure every gap between a user's sessions.

    A user's sessions are taken in time order; the first starts from the population mean interest
    with a record that began at the start of the log, each later one from
    :func:`simkit.state.between_sessions` after the previous one (so only earlier clicks shape
    it), and every session is replayed through :func:`simkit.replay.replay` to its end state.

    Raises
    ------
    NoReturnModelError
        When the logs have no ``timestamp`` column.
    """
    frame = logs.frame
    if "timestamp" not in frame.columns:
        raise NoReturnModelError(
            f"{logs.source}: return times need a 'timestamp' column (seconds or dates of each "
            f"impression); the log has only {sorted(frame.columns)[:12]}."
        )
    cat = sim.catalogue
    index = index_logs(frame, cat)
    ts = frame["timestamp"].to_numpy(dtype=np.float64)
    first_row = index.session_first_row
    start = np.minimum.reduceat(ts, first_row)
    end = np.maximum.reduceat(ts + index.watch, first_row)
    t0, t1 = float(start.min()), float(end.max())
    start_h, end_h = (start - t0) / 3600.0, (end - t0) / 3600.0
    span = (t1 - t0) / 3600.0
    user = index.user_of_session
    n_s, n_u = index.n_sessions, len(index.user_ids)

    order = np.lexsort((start_h, user))
    first_of_user = np.r_[True, user[order][1:] != user[order][:-1]]
    rank = np.empty(n_s, np.int64)
    group_start = np.maximum.accumulate(np.where(first_of_user, np.arange(n_s), 0))
    rank[order] = np.arange(n_s) - group_start
    nxt = np.full(n_s, -1, np.int64)
    last_of_user = np.r_[first_of_user[1:], True]
    nxt[order[~last_of_user]] = order[1:][~first_of_user[1:]]
    prev = np.full(n_s, -1, np.int64)
    prev[nxt[nxt >= 0]] = np.flatnonzero(nxt >= 0)
    censored = nxt < 0
    raw_gap = np.where(censored, np.nan, start_h[np.maximum(nxt, 0)] - end_h)
    overlapping = int(np.sum(raw_gap < 0))
    gap = np.where(censored, np.nan, np.maximum(raw_gap, 0.0))

    # rounds over each user's j-th session: the record moves as the env moves it
    n_feat = cat.features.shape[1]
    hist = UserHistory.empty(n_u, cat.dim, n_feat)
    at_end = UserHistory.empty(n_s, cat.dim, n_feat)
    z0 = np.empty((n_s, cat.dim))
    hist_n = np.empty(n_s)
    ufeat = session_features(frame, first_row, sim.spec.user_columns, sim.categories)
    hit_rows = np.flatnonzero(index.clicked > 0)
    hit_session = index.session_of_row[hit_rows]
    by_rank = np.argsort(rank[hit_session], kind="stable")
    hit_rows, hit_session = hit_rows[by_rank], hit_session[by_rank]
    hit_bounds = np.searchsorted(rank[hit_session], np.arange(int(rank.max()) + 2))
    sessions_by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[sessions_by_rank], np.arange(int(rank.max()) + 2))
    local = np.empty(n_u, np.int64)
    for j in range(int(rank.max()) + 1):
        s = sessions_by_rank[bounds[j] : bounds[j + 1]]
        u = user[s]
        sub = hist.take(u)
        if j == 0:
            sub.hours[:] = start_h[s]
            z0[s], hist_n[s] = long_term_interest(sub, sim.dynamics), np.log1p(sub.n_clicks)
        else:
            p = prev[s]
            placeholder = initial_state(
                np.zeros((len(s), cat.dim)), np.zeros(len(s)), ufeat[s], None
            )
            nxt_state = between_sessions(
                placeholder,
                sub,
                gap[p],
                end_h[p] - start_h[p],
                dynamics=sim.dynamics,
                n_items=None,
            )
            z0[s], hist_n[s] = nxt_state.z, nxt_state.hist_n
        rows = hit_rows[hit_bounds[j] : hit_bounds[j + 1]]
        local[u] = np.arange(len(u))
        record_clicks(
            sub,
            cat,
            local[user[index.session_of_row[rows]]],
            index.item_rows[rows],
            np.ones(len(rows)),
        )
        at_end.put(s, sub)
        hist.put(u, sub)

    start_state = SessionStart(z0=z0, hist_n=hist_n, user_codes=user)
    rows_out, _ = replay(index, cat, start_state, ufeat, sim.dynamics)
    last_step = index.session_first_step[1:] - 1
    x = return_features(rows_out.x_continue[last_step], at_end)

    # time per impression: the gap to the next step of the same session
    step_start = ts[index.step_first_row]
    same = index.session_of_step[1:] == index.session_of_step[:-1]
    dwell = (step_start[1:] - step_start[:-1])[same]
    clicked = index.step_click[:-1][same] > 0
    watched = index.step_watch[:-1][same]
    skip = float(np.mean(dwell[~clicked])) if (~clicked).any() else 4.5
    opened = (
        float(np.mean(np.maximum(dwell[clicked] - watched[clicked], 0.0))) if clicked.any() else 1.0
    )

    last = order[last_of_user]  # each user's last session, in user-code order
    end_hist = {
        "n_sessions": hist.n_sessions.copy(),
        "hours": np.full(n_u, span),
        "gap_log_sum": hist.gap_log_sum.copy(),
        "n_gaps": hist.n_gaps.copy(),
        "last_log_gap": hist.last_log_gap.copy(),
    }
    assert len(last) == n_u
    return TimedSessions(
        x=x,
        user=user,
        user_ids=index.user_ids,
        start_hours=start_h,
        end_hours=end_h,
        gap_hours=gap,
        censor_hours=span - end_h,
        censored=censored,
        span_hours=span,
        end_history=end_hist,
        skip_seconds=max(skip, 0.0),
        open_seconds=max(opened, 0.0),
        n_overlapping=overlapping,
    )


# --------------------------------------------------------------------------- simulation


def close_sessions(
    sim: Simulator,
    model: ReturnModel,
    state: SessionState,
    history: UserHistory,
    x_continue: NDArray[np.float32],
    session_hours: NDArray[np.float64],
    *,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], SessionState]:
    """End sessions: sample each gap (hours) and the state the next session starts from.

    ``state`` and ``history`` hold only the ending sessions' users (``history`` moves in place);
    ``x_continue`` are their continuation features after the last step.
    """
    gap = model.sample(return_features(x_continue, history), rng=rng)
    nxt = between_sessions(
        state, history, gap, session_hours, dynamics=sim.dynamics, n_items=sim.n_items
    )
    return gap, nxt


@dataclass
class Episodes:
    """Users followed over days, session after session (arrays over episodes).

    Attributes
    ----------
    state, history
        The current session's state and each user's record.
    group
        Activity group of each user (1: above the logged users' median sessions per day).
    clock, session_start, session_hours
        Hours since the episode began; when the current session started; how long it has run.
    session_index
        Sessions before the current one.
    pending_gap
        Days since the previous session ended, for the current session's first request (NaN
        once reported, and in the first session).
    """

    state: SessionState
    history: UserHistory
    group: NDArray[np.int64]
    clock: NDArray[np.float64]
    session_start: NDArray[np.float64]
    session_hours: NDArray[np.float64]
    session_index: NDArray[np.int64]
    pending_gap: NDArray[np.float64]

    @classmethod
    def start(
        cls,
        sim: Simulator,
        model: ReturnModel,
        users: UserBatch,
        start_hours: NDArray[np.float64] | None = None,
    ) -> Episodes:
        """Episodes of ``users`` starting at ``start_hours`` (0 by default).

        Logged users continue the record of their training log; a new user's record starts at
        hour 0 (the start of a log), so one starting later has waited that long.
        """
        n = len(users.rows)
        history = model.start_history(sim, users, sim.catalogue.features.shape[1])
        clock = np.zeros(n) if start_hours is None else np.asarray(start_hours, np.float64).copy()
        new = users.rows < 0
        history.hours[new] = clock[new]  # a new user's record starts at hour 0, as a log's does
        return cls(
            state=sim.initial_state(users),
            history=history,
            group=(model.activity(history) > model.median_activity()).astype(np.int64),
            clock=clock,
            session_start=clock.copy(),
            session_hours=np.zeros(n),
            session_index=np.zeros(n, np.int64),
            pending_gap=np.full(n, np.nan),
        )

    @property
    def n(self) -> int:
        """Number of episodes."""
        return len(self.clock)

    def take(self, rows: NDArray[np.int64]) -> Episodes:
        """The given episodes (copies)."""
        return Episodes(**{k: v.take(rows) if hasattr(v, "n") and not isinstance(v, np.ndarray)
                           else v[rows].copy() for k, v in self.__dict__.items()})  # fmt: skip

    def put(self, rows: NDArray[np.int64], other: Episodes) -> None:
        """Overwrite the given episodes with ``other``."""
        for k, v in self.__dict__.items():
            if isinstance(v, np.ndarray):
                v[rows] = getattr(other, k)
            else:
                v.put(rows, getattr(other, k))


@dataclass(frozen=True)
class EpisodeEvents:
    """What one request did to the episodes' time (arrays over episodes).

    ``session_index``, ``day`` (the day the session started on) and ``gap`` (days since the
    previous session, NaN unless this was the first request of a later session) describe the
    request just served; ``session_end`` marks the session's last request, ``gap_hours`` the gap
    sampled after it (NaN elsewhere) and ``truncated`` the episodes whose next session would start
    after the horizon.
    """

    session_index: NDArray[np.int64]
    day: NDArray[np.int64]
    gap: NDArray[np.float64]
    session_end: NDArray[np.bool_]
    gap_hours: NDArray[np.float64]
    truncated: NDArray[np.bool_]


def after_step(
    sim: Simulator,
    model: ReturnModel,
    ep: Episodes,
    result: StepResult,
    active: NDArray[np.int64],
    *,
    rng: np.random.Generator,
    horizon_hours: float,
    max_session_steps: int = 200,
) -> EpisodeEvents:
    """Move the episodes' time after :func:`simkit.session.step` served the ``active`` ones.

    The clicks enter each user's record, the clock advances by the time the impressions took,
    and sessions that ended (the user left, or ``max_session_steps``) are closed by
    :func:`close_sessions`: the next session starts ``gap`` later, or the episode is truncated
    when that falls after ``horizon_hours``. The one multi-session step of the retention env and
    :func:`run_days`.
    """
    n = ep.n
    s = result.items.shape[1]
    record_clicks(
        ep.history,
        sim.catalogue,
        np.repeat(active, s),
        result.items[active].ravel(),
        result.click[active].ravel(),
    )
    took = model.session_hours(result.click[active], result.watch[active]).sum(axis=1)
    ep.clock[active] += took
    ep.session_hours[active] += took
    session_index = ep.session_index.copy()
    day = np.floor(ep.session_start / 24.0).astype(np.int64)
    gap_days = np.full(n, np.nan)
    gap_days[active] = ep.pending_gap[active]
    ep.pending_gap[active] = np.nan
    mask = np.zeros(n, dtype=bool)
    mask[active] = True
    ended = np.flatnonzero(mask & (result.terminated | (ep.state.step >= max_session_steps)))
    session_end = np.zeros(n, dtype=bool)
    gap_hours = np.full(n, np.nan)
    truncated = np.zeros(n, dtype=bool)
    if len(ended):
        sub = ep.history.take(ended)
        gap, fresh = close_sessions(
            sim,
            model,
            ep.state.take(ended),
            sub,
            result.x_continue[ended],
            ep.session_hours[ended],
            rng=rng,
        )
        ep.history.put(ended, sub)
        session_end[ended] = True
        gap_hours[ended] = gap
        start = ep.clock[ended] + gap
        back = start < horizon_hours
        truncated[ended[~back]] = True
        again = ended[back]
        if len(again):
            ep.state.put(again, fresh.take(np.flatnonzero(back)))
            ep.clock[again] = start[back]
            ep.session_start[again] = start[back]
            ep.session_hours[again] = 0.0
            ep.session_index[again] += 1
            ep.pending_gap[again] = gap[back] / 24.0
    return EpisodeEvents(
        session_index=session_index,
        day=day,
        gap=gap_days,
        session_end=session_end,
        gap_hours=gap_hours,
        truncated=truncated,
    )


Chooser = Callable[[SessionState, NDArray[np.int64]], NDArray[np.int64]]


def run_days(
    sim: Simulator,
    choose: Chooser,
    users: UserBatch,
    *,
    days: float,
    rng: np.random.Generator,
    n_candidates: int = 20,
    start_hours: NDArray[np.float64] | None = None,
    max_steps: int = 200,
) -> RetentionValue:
    """Run users in the simulator over a horizon of days: sessions, sampled gaps and engagement.

    Each user starts a session at ``start_hours`` (0 by default); each step ``choose(state,
    candidates)`` picks one of ``n_candidates`` uniform candidates, :func:`simkit.session.step`
    responds and :func:`after_step` moves the time; sessions that start before ``days * 24`` hours
    are run.

    Returns
    -------
    simkit.synthetic_time.RetentionValue
        The figures :meth:`simkit.synthetic.World.run_days` gives for the true world (``scale``
        is NaN: the simulator's gap law is not a Weibull).

    Raises
    ------
    NoReturnModelError
        When the simulator has no return model.
    """
    from simkit.candidates import uniform_candidates
    from simkit.session import Streams, step
    from simkit.synthetic_time import retention_value

    model = return_model_of(sim, "run_days")
    stream_rng, gap_rng = rng.spawn(2)
    streams = Streams.spawn(stream_rng)
    n = len(users.rows)
    ep = Episodes.start(sim, model, users, start_hours)
    horizon = days * 24.0
    slot_user = np.arange(n)
    session = np.arange(n)
    starts = list(ep.clock)
    n_started = n
    acc = np.zeros((n, 3))  # watch, clicks, length of the current session
    out: dict[str, list[NDArray]] = {k: [] for k in ("id", "user", "gap", "censored", "acc")}
    while ep.n:
        m = ep.n
        cands = uniform_candidates(m, sim.n_items, n_candidates, rng=streams.candidates)
        items = cands[np.arange(m), choose(ep.state, cands)]
        res = step(sim, ep.state, items, streams=streams)
        acc += np.column_stack([res.watch[:, 0], res.click[:, 0], np.ones(m)])
        ev = after_step(
            sim, model, ep, res, np.arange(m), rng=gap_rng, horizon_hours=horizon,
            max_session_steps=max_steps,
        )  # fmt: skip
        ended = np.flatnonzero(ev.session_end)
        if len(ended) == 0:
            continue
        for key, value in (
            ("id", session[ended]),
            ("user", slot_user[ended]),
            ("gap", ev.gap_hours[ended]),
            ("censored", ev.truncated[ended]),
            ("acc", acc[ended]),
        ):
            out[key].append(np.asarray(value).copy())
        again = ended[~ev.truncated[ended]]
        session[again] = n_started + np.arange(len(again))
        n_started += len(again)
        starts.extend(ep.clock[again])
        acc[again] = 0.0
        keep = np.flatnonzero(~ev.truncated)
        if len(keep) < m:
            ep, slot_user, session, acc = ep.take(keep), slot_user[keep], session[keep], acc[keep]
    cat = {k: np.concatenate(v) for k, v in out.items()}
    order = np.argsort(cat["id"])
    sessions = {
        "user": cat["user"][order],
        "gap": cat["gap"][order],
        "censored": cat["censored"][order],
        "watch": cat["acc"][order, 0],
        "clicks": cat["acc"][order, 1].astype(np.int64),
        "length": cat["acc"][order, 2].astype(np.int64),
        "start": np.asarray(starts),
        "scale": np.full(len(order), np.nan),
    }
    return retention_value(users.rows, sessions, days=days)


def known_users(sim: Simulator, rows: NDArray[np.int64]) -> UserBatch:
    """A :class:`~simkit.simulator.UserBatch` of known users by row of ``Simulator.users``."""
    from simkit.simulator import UserBatch

    rows = np.asarray(rows, dtype=np.int64)
    return UserBatch(
        rows=rows,
        z0=sim.users.z0[rows].copy(),
        hist_n=sim.users.hist_n[rows].copy(),
        features=sim.users.features[rows].copy(),
    )


def user_rows(sim: Simulator, user_ids: NDArray) -> NDArray[np.int64]:
    """Rows of ``Simulator.users`` of the given ids (-1 for unknown ids)."""
    return pd.Index(sim.users.user_ids).get_indexer(np.asarray(user_ids)).astype(np.int64)
