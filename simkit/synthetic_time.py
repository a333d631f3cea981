"""Time in the synthetic world: dwell inside a session, the true return gap between sessions.

A session lasts as long as its impressions: each shown item takes its watch time when clicked (plus
a second to open it) and a short skip time otherwise. When a session ends, the user returns after a
gap ``G`` (hours, from the end of the session to the start of the next) drawn from a Weibull law
whose scale depends on the end-of-session state::

    S(t) = P(G > t) = exp(-(t / scale) ** shape)
    log scale = log scale_user - 0.35 log1p(watch_total / 60)       # satisfied users come back sooner
                + 1.0 * bait_clicks / max(n_clicks, 1)               # clickbait disappoints: later
                + 0.06 * min(steps_since_click, 10)                  # ended bored, skipping: later

``scale_user`` is a per-user base scale (log-normal over users). Every term is a counter of
simkit's session state (watch so far, clicks, steps since the last click) or an aggregate of the
clicked items' features (the clickbait flag), so a return-time model on the end-of-session state can
recover the law. :class:`ReturnGap` holds the law for many sessions at once (survival, quantiles,
mean, sampling), which is what lets tests compute true retention under any policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from simkit.synthetic import Chooser, World

__all__ = [
    "GAP_COEF",
    "ReturnGap",
    "RetentionValue",
    "SessionEnd",
    "dwell_seconds",
    "lay_out_sessions",
    "retention_value",
    "run_timeline",
]

#: coefficients of the log Weibull scale on (log1p(watch_total / 60), clickbait share, skip streak)
GAP_COEF = (-0.35, 1.0, 0.06)
#: seconds to open a clicked item, and the skip time of an unclicked one (1.5 s + exponential)
OPEN_SECONDS = 1.0
SKIP_SECONDS = (1.5, 3.0)


@dataclass
class SessionEnd:
    """The world's state at the end of each of many sessions (arrays over sessions)."""

    user: NDArray[np.int64]
    interest: NDArray[np.float64]
    length: NDArray[np.int64]
    n_clicks: NDArray[np.int64]
    watch_total: NDArray[np.float64]
    bait_clicks: NDArray[np.int64]
    steps_since_click: NDArray[np.int64]
    fatigue: NDArray[np.float64]

    @classmethod
    def empty(cls, n: int, dim: int) -> SessionEnd:
        """Zeroed arrays for ``n`` sessions with ``dim``-dimensional interest."""
        return cls(
            user=np.zeros(n, np.int64),
            interest=np.zeros((n, dim)),
            length=np.zeros(n, np.int64),
            n_clicks=np.zeros(n, np.int64),
            watch_total=np.zeros(n),
            bait_clicks=np.zeros(n, np.int64),
            steps_since_click=np.zeros(n, np.int64),
            fatigue=np.zeros(n),
        )

    def put(self, rows: NDArray[np.int64], state: object, sel: NDArray[np.int64]) -> None:
        """Copy sessions ``sel`` of a world state into rows ``rows`` (``length`` = ``state.step``)."""
        for name, value in self.__dict__.items():
            source = getattr(state, "step" if name == "length" else name)
            value[rows] = source[sel]


@dataclass(frozen=True)
class ReturnGap:
    """The true law of the return gap in hours, one Weibull per session.

    Parameters
    ----------
    scale_hours
        Weibull scale of each session's gap (hours).
    shape
        Weibull shape (below 1: a user who has not come back soon is ever less likely to).

    Example
    -------
    >>> gap = ReturnGap(scale_hours=np.array([24.0]), shape=1.0)
    >>> round(float(gap.survival(24.0)[0]), 4)
    0.3679
    """

    scale_hours: NDArray[np.float64]
    shape: float

    def survival(self, hours: float | NDArray[np.float64]) -> NDArray[np.float64]:
        """P(gap > hours)."""
        t = np.maximum(np.asarray(hours, dtype=np.float64), 0.0)
        return np.exp(-((t / self.scale_hours) ** self.shape))

    def cdf(self, hours: float | NDArray[np.float64]) -> NDArray[np.float64]:
        """P(gap <= hours): the probability of a return within ``hours``."""
        return 1.0 - self.survival(hours)

    def quantile(self, q: float | NDArray[np.float64]) -> NDArray[np.float64]:
        """The gap (hours) below which a fraction ``q`` of returns fall."""
        q = np.asarray(q, dtype=np.float64)
        return self.scale_hours * (-np.log1p(-q)) ** (1.0 / self.shape)

    def mean_hours(self) -> NDArray[np.float64]:
        """Expected gap (hours)."""
        return self.scale_hours * math.gamma(1.0 + 1.0 / self.shape)

    def sample(self, *, rng: np.random.Generator) -> NDArray[np.float64]:
        """One gap per session (hours)."""
        return self.scale_hours * rng.weibull(self.shape, size=len(self.scale_hours))

    def sample_first(self, window_hours: float, *, rng: np.random.Generator) -> NDArray[np.float64]:
        """Time to each user's first session in a window, for a user already active before it.

        The forward recurrence time of a renewal process with this gap law (uniform fraction of a
        length-biased gap, which for a Weibull is ``scale * Gamma(1 + 1/shape) ** (1/shape)``),
        conditioned on falling inside the window: logs only hold users who came at least once.
        """
        n = len(self.scale_hours)
        out = np.full(n, np.inf)
        todo = np.arange(n)
        for _ in range(50):
            if len(todo) == 0:
                break
            biased = self.scale_hours[todo] * rng.gamma(1.0 + 1.0 / self.shape, size=len(todo)) ** (
                1.0 / self.shape
            )
            first = rng.random(len(todo)) * biased
            ok = first < window_hours
            out[todo[ok]] = first[ok]
            todo = todo[~ok]
        out[todo] = rng.random(len(todo)) * window_hours
        return out


def dwell_seconds(
    clicked: NDArray[np.int64], watch: NDArray[np.float64], *, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Time each impression takes: watch + 1 s when clicked, else 1.5 s + Exponential(3 s)."""
    skip = SKIP_SECONDS[0] + rng.exponential(SKIP_SECONDS[1], size=len(clicked))
    return np.where(np.asarray(clicked) == 1, np.asarray(watch) + OPEN_SECONDS, skip)


@dataclass(frozen=True, kw_only=True)
class RetentionValue:
    """Users run over a horizon of days in the world (from :meth:`simkit.synthetic.World.run_days`).

    Per user (arrays of length ``n_users``): ``sessions``, ``watch``, ``clicks``, ``impressions``,
    ``active_days`` (days with a session start), ``day1`` (a session started 24-48 h after the
    first one), ``first_gap_hours`` (from the end of the first session to the start of the second;
    NaN when the user did not return within the horizon).
    Per session (arrays over all sessions, in start order per user): ``session_user`` (index into
    the per-user arrays), ``session_start_hours``, ``session_watch``, ``session_clicks``,
    ``session_length``, ``session_gap_hours`` (the sampled gap after it, also when the next
    start falls beyond the horizon), ``session_gap_scale_hours`` (its true Weibull scale) and
    ``session_censored`` (the next start falls beyond the horizon).
    """

    days: float
    users: NDArray[np.int64]
    sessions: NDArray[np.int64]
    watch: NDArray[np.float64]
    clicks: NDArray[np.int64]
    impressions: NDArray[np.int64]
    active_days: NDArray[np.int64]
    day1: NDArray[np.bool_]
    first_gap_hours: NDArray[np.float64]
    session_user: NDArray[np.int64]
    session_start_hours: NDArray[np.float64]
    session_watch: NDArray[np.float64]
    session_clicks: NDArray[np.int64]
    session_length: NDArray[np.int64]
    session_gap_hours: NDArray[np.float64]
    session_gap_scale_hours: NDArray[np.float64]
    session_censored: NDArray[np.bool_]

    @property
    def sessions_per_user(self) -> float:
        """Mean number of sessions per user over the horizon."""
        return float(self.sessions.mean())

    @property
    def sessions_per_user_se(self) -> float:
        """Standard error of :attr:`sessions_per_user`."""
        n = len(self.sessions)
        return float(self.sessions.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0

    @property
    def day1_retention(self) -> float:
        """Share of users with a session 24-48 h after their first."""
        return float(self.day1.mean())


def run_timeline(
    world: World,
    users: NDArray[np.int64],
    start_hours: NDArray[np.float64],
    horizon_hours: float,
    choose: Chooser,
    *,
    streams: tuple[np.random.Generator, np.random.Generator, np.random.Generator],
    record: Callable[..., None] | None = None,
) -> dict[str, NDArray]:
    """Run each user's sessions one after another until the next start passes the horizon.

    All users run in one batch; when a user's session ends, the true return law samples the gap
    and, if the next start falls before ``horizon_hours``, the user's slot starts a new session
    (:meth:`~simkit.synthetic.World.start_state`). ``streams`` are the (response, dwell, gap)
    generators. ``record(session, step, items, click, watch, propensity, p_click, p_continue,
    seconds)`` sees every impression (``seconds``: when it was shown, from hour 0).

    Returns
    -------
    dict
        Arrays indexed by session number (in the order sessions started): ``user`` (index into
        ``users``), ``start`` (hours), ``gap``, ``scale`` (hours), ``censored``, ``watch``,
        ``clicks``, ``length``.
    """
    response_rng, time_rng, gap_rng = streams
    max_steps = world.config.max_steps
    slot_user = np.arange(len(users))
    state = world.initial_state(users)
    clock = np.asarray(start_hours, dtype=np.float64) * 3600.0
    session = np.arange(len(users))
    n_started = len(users)
    out: dict[str, list[NDArray]] = {
        k: [] for k in ("id", "user", "gap", "scale", "censored", "watch", "clicks", "length")
    }
    starts = list(clock / 3600.0)
    while len(slot_user):
        items, prop = choose(state)
        step = state.step.copy()
        click, watch, cont, p_click, p_cont = world.step(state, items, rng=response_rng)
        if record is not None:
            record(session.copy(), step, items, click, watch, prop, p_click, p_cont, clock.copy())
        clock += dwell_seconds(click, watch, rng=time_rng)
        ended = np.flatnonzero(~cont | (state.step >= max_steps))
        if len(ended) == 0:
            continue
        end = SessionEnd.empty(len(ended), world.dim)
        end.put(np.arange(len(ended)), state, ended)
        law = world.return_gap(end)
        gap = law.sample(rng=gap_rng)
        nxt = clock[ended] / 3600.0 + gap
        back = nxt < horizon_hours
        for key, value in (
            ("id", session[ended]),
            ("user", slot_user[ended]),
            ("gap", gap),
            ("scale", law.scale_hours),
            ("censored", ~back),
            ("watch", end.watch_total),
            ("clicks", end.n_clicks),
            ("length", end.length),
        ):
            out[key].append(np.asarray(value))
        again = ended[back]
        if len(again):
            last = SessionEnd(**{k: v[back] for k, v in end.__dict__.items()})
            state.put(again, world.start_state(users[slot_user[again]], last, gap[back]))
            clock[again] = nxt[back] * 3600.0
            session[again] = n_started + np.arange(len(again))
            n_started += len(again)
            starts.extend(nxt[back])
        if not back.all():
            keep = np.ones(len(slot_user), dtype=bool)
            keep[ended[~back]] = False
            idx = np.flatnonzero(keep)
            state, slot_user, clock, session = (
                state.take(idx),
                slot_user[idx],
                clock[idx],
                session[idx],
            )
    cat = {k: np.concatenate(v) for k, v in out.items()}
    result = {k: np.empty_like(v) for k, v in cat.items() if k != "id"}
    for k in result:
        result[k][cat["id"]] = cat[k]
    result["start"] = np.asarray(starts)
    return result


def retention_value(
    users: NDArray[np.int64], sessions: dict[str, NDArray], *, days: float
) -> RetentionValue:
    """Per-user figures from :func:`run_timeline`'s sessions (all users start at hour 0)."""
    n = len(users)
    order = np.lexsort((sessions["start"], sessions["user"]))
    s = {k: v[order] for k, v in sessions.items()}
    count = np.bincount(s["user"], minlength=n)
    firsts = np.r_[0, np.cumsum(count)[:-1]]
    first_gap = np.full(n, np.nan)
    returned = count > 1
    first_gap[returned] = s["gap"][firsts[returned]]
    day = np.floor(s["start"] / 24.0).astype(np.int64)
    new_day = np.r_[True, (np.diff(day) != 0) | (np.diff(s["user"]) != 0)]
    day1 = np.zeros(n, dtype=bool)
    day1[s["user"][day == 1]] = True
    return RetentionValue(
        days=float(days),
        users=np.asarray(users),
        sessions=count,
        watch=np.bincount(s["user"], weights=s["watch"], minlength=n).astype(np.float64),
        clicks=np.bincount(s["user"], weights=s["clicks"], minlength=n).astype(np.int64),
        impressions=np.bincount(s["user"], weights=s["length"], minlength=n).astype(np.int64),
        active_days=np.bincount(s["user"], weights=new_day, minlength=n).astype(np.int64),
        day1=day1,
        first_gap_hours=first_gap,
        session_user=s["user"],
        session_start_hours=s["start"],
        session_watch=s["watch"],
        session_clicks=s["clicks"].astype(np.int64),
        session_length=s["length"].astype(np.int64),
        session_gap_hours=s["gap"],
        session_gap_scale_hours=s["scale"],
        session_censored=s["censored"].astype(bool),
    )


def lay_out_sessions(
    session_user: NDArray[np.int64],
    duration_s: NDArray[np.float64],
    scale_hours: NDArray[np.float64],
    shape: float,
    *,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Start times (seconds) of sessions that do not depend on time: a renewal process per user.

    Sessions are given in order per user (``session_user`` sorted); each user's first session
    starts at a uniform fraction of one gap and each next one a gap (Weibull with the user's
    ``scale_hours``, independent of engagement) after the previous one ends. Used by the world
    modes without return behaviour (impression lists, bandit logs).
    """
    gap = np.asarray(scale_hours) * rng.weibull(shape, size=len(session_user)) * 3600.0
    first = np.r_[True, np.diff(session_user) != 0]
    lead = np.where(first, rng.random(len(gap)) * gap, gap)
    step = lead + np.r_[0.0, np.asarray(duration_s)[:-1]] * ~first
    total = np.cumsum(step)
    starts_of_user = np.maximum.accumulate(np.where(first, np.arange(len(gap)), 0))
    return total - total[starts_of_user] + lead[starts_of_user]
