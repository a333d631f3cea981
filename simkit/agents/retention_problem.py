"""A calibrated multi-session retention problem with known optima, for testing retention agents.

:class:`RetentionTestEnv` is the test problem of the retention agent (it is not the product env
``simkit/Retention-v0``, which runs a fitted simulator). One episode is one user over
``n_sessions`` sessions; one step is one request inside a session.
:class:`RetentionTestVectorEnv` steps many users at once through the same batched core (the
single env is that core at one user), with Gymnasium's ``NEXT_STEP`` autoreset.

- Users belong to one of two activity groups, drawn with equal probability at ``reset``: "high"
  (base next-day return probability 0.75) and "low" (0.35).
- Each request offers ``n_candidates`` items: the first half are clickbait (click probability
  ``U(0.5, 0.8)``, satisfaction ``U(0, 0.3)``), the second half quality items (``U(0.2, 0.5)``,
  ``U(0.5, 1)``). A candidate's features are its ``(p_click, p_sat)``.
- The shown item is clicked with its ``p_click``. Patience starts at 6; each request costs 1, a skip
  1 more, a click gives back the item's ``p_sat``. The session ends when patience reaches 0 or
  after ``max_requests`` requests.
- After a session the user returns ``T = min(Geometric(q), 10)`` days later, with
  ``q = sigmoid(logit(base) + 3 (s - 0.4))`` and ``s`` the mean ``p_sat`` of the items clicked in
  the session (0 when nothing was clicked). Day-1 retention is ``P(T = 1) = q``.

This mirrors the setting of Cai et al. (2023): immediate feedback (clicks) and retention (the
returning time) pull apart, because clickbait earns clicks now and brings users back later.

**Actions.** ``action="candidate"`` (default): ``Discrete(n_candidates)``, the index of the
candidate to show, like simkit's session envs. ``action="weights"``: the paper's continuous
action, a ``Box(0, 1, (2,))`` vector ``a = (a1, a2)`` that ranks candidates by ``a1 p_click + a2
p_sat``; the top item is shown. Both describe the same problem: the constant policy of ranking
weight ``theta = a2 / (a1 + a2)`` (``theta = 0.5`` when ``a = 0``) shows the candidate that
maximises ``(1 - theta) p_click + theta p_sat`` (:meth:`RetentionTestEnv.constant_policy`).

**Observation.** ``{"user": (6,), "candidates": (n_candidates, 2)}``, float32. The user vector is
``[high-activity flag, patience / 6, requests / max_requests, clicks / max_requests, mean p_sat of
the clicked items (0 if none), 1 if anything was clicked]``: the in-session state the return model
depends on. It does not hold the session index: the user's dynamics are stationary across sessions.

**Rewards and info.** The reward is the click (0 or 1) plus ``-gap_reward_weight * gap`` on the
step where a gap is revealed (0 by default: retention reaches agents through ``info``). Each step's
``info`` holds

- ``session_index`` (int): the session the served request belongs to (0-based);
- ``day`` (int): the day that session started on (the first session starts on day 0);
- ``gap`` (int, days): only on the first step of each session after the first: the returning time
  since the previous session ended. It is revealed one step after the session's last request, as
  a delayed reward is: an agent must credit it back to that last request;
- ``session_end`` (bool): the request was the last of its session;
- ``user_group`` (int): 1 for high activity, 0 for low;
- ``immediate_reward`` (float), ``click`` (int), ``p_click``, ``p_sat`` (float): the response.

The episode ends after the last request of the last session with ``truncated=True``: the user
would come back, but that return is never observed (right-censored), so it is not a termination.
The env never terminates.

**Oracles.** :meth:`RetentionTestEnv.constant_policy_stats` runs a constant ranking weight over many
sessions at once (the same response code as :meth:`step`), giving average return days, day-1
retention and clicks per session per group; :meth:`RetentionTestEnv.best_constant_theta` searches
a grid; :meth:`RetentionTestEnv.retention_value` is the expected discounted retention return
``E[sum_n gamma^n (-T_n)] = -E[T] / (1 - gamma)`` at a session start (sessions are i.i.d. given the
group under a constant policy).

References
----------
Cai, Liu, Wang, Zuo, Xie, Yang, Zheng, Jiang, Gai. Reinforcing user retention in a billion scale
short video recommender system. WWW 2023 Companion. arXiv:2302.01724.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from simkit.agents.base import Observation
from simkit.errors import ConfigError

__all__ = [
    "ConstantPolicyStats",
    "RetentionEvaluation",
    "RetentionTestEnv",
    "RetentionTestVectorEnv",
    "evaluate_retention",
]

F64 = NDArray[np.float64]
USER_DIM = 6
_ONE = np.zeros(1, dtype=np.int64)


class _Users:
    """Batched state of ``n`` users: group, session, day, in-session state, candidates, gap.

    ``state`` rows are ``[patience, requests, clicks, satisfaction sum]``; ``pending_gap`` is the
    gap to reveal on the user's next step (-1: none).
    """

    def __init__(self, n: int, n_candidates: int) -> None:
        self.group = np.zeros(n, dtype=np.int64)
        self.session = np.zeros(n, dtype=np.int64)
        self.day = np.zeros(n, dtype=np.int64)
        self.pending_gap = np.full(n, -1, dtype=np.int64)
        self.state = np.zeros((n, 4))
        self.cands = np.zeros((n, n_candidates, 2))


@dataclass(frozen=True, kw_only=True)
class ConstantPolicyStats:
    """Per-group figures of a constant ranking weight (Monte-Carlo over many sessions).

    Attributes
    ----------
    theta : float
        The ranking weight on ``p_sat``.
    return_days : tuple of float
        Mean returning time in days, per group ``(low, high)``.
    day1_retention : tuple of float
        Fraction of returns after one day, per group.
    clicks_per_session : tuple of float
        Mean clicks per session, per group.
    n_sessions : int
        Sessions simulated per group.
    """

    theta: float
    return_days: tuple[float, float]
    day1_retention: tuple[float, float]
    clicks_per_session: tuple[float, float]
    n_sessions: int

    @property
    def mean_return_days(self) -> float:
        """Return days averaged over users (the groups are equally likely)."""
        return float(np.mean(self.return_days))

    @property
    def mean_day1_retention(self) -> float:
        """Day-1 retention averaged over users."""
        return float(np.mean(self.day1_retention))

    @property
    def mean_clicks_per_session(self) -> float:
        """Clicks per session averaged over users."""
        return float(np.mean(self.clicks_per_session))


class RetentionTestEnv(gym.Env):
    """Calibrated two-group, multi-session retention problem with exact constant-policy oracles.

    See the module docstring for the dynamics, observation, rewards and ``info``.

    Parameters
    ----------
    n_sessions : int
        Sessions per episode (one user); the last one's return is censored.
    n_candidates : int
        Candidates per request (even: half clickbait, half quality).
    action : {"candidate", "weights"}
        ``Discrete(n_candidates)`` or the paper's ``Box(0, 1, (2,))`` ranking weights.
    base_return : tuple of float
        Next-day return probability of the ``(low, high)`` activity groups at satisfaction 0.4.
    satisfaction_slope : float
        Effect of the session's mean satisfaction on the return logit.
    initial_patience : float
        Patience at the start of each session.
    max_requests : int
        Requests per session at most.
    max_return_days : int
        Cap of the returning time.
    gap_reward_weight : float
        Weight of ``-gap`` in the scalar reward (0: clicks only).

    Examples
    --------
    >>> env = RetentionTestEnv()
    >>> obs, info = env.reset(seed=0)
    >>> obs["user"].shape, obs["candidates"].shape
    ((6,), (20, 2))
    >>> policy = env.constant_policy(0.4)
    >>> _, reward, terminated, truncated, info = env.step(policy(obs, np.random.default_rng(0)))
    >>> info["session_index"], info["day"], terminated
    (0, 0, False)
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        *,
        n_sessions: int = 8,
        n_candidates: int = 20,
        action: str = "candidate",
        base_return: tuple[float, float] = (0.35, 0.75),
        satisfaction_slope: float = 3.0,
        initial_patience: float = 6.0,
        max_requests: int = 30,
        max_return_days: int = 10,
        gap_reward_weight: float = 0.0,
    ) -> None:
        problems = []
        if n_sessions < 1 or max_requests < 1 or max_return_days < 1:
            problems.append(
                "n_sessions, max_requests and max_return_days must be >= 1; got "
                f"{n_sessions}, {max_requests}, {max_return_days}"
            )
        if n_candidates < 2 or n_candidates % 2:
            problems.append(f"n_candidates must be even and >= 2; got {n_candidates}")
        if action not in ("candidate", "weights"):
            problems.append(f"action must be 'candidate' or 'weights'; got {action!r}")
        if len(base_return) != 2 or not all(0.0 < b < 1.0 for b in base_return):
            problems.append(f"base_return must be two probabilities in (0, 1); got {base_return}")
        if not initial_patience > 0:
            problems.append(f"initial_patience must be > 0; got {initial_patience}")
        if problems:
            raise ConfigError("Invalid RetentionTestEnv: " + "; ".join(problems) + ".")
        self.n_sessions, self.n_candidates, self.action_kind = n_sessions, n_candidates, action
        self.base_return = (float(base_return[0]), float(base_return[1]))
        self.satisfaction_slope = float(satisfaction_slope)
        self.initial_patience = float(initial_patience)
        self.max_requests, self.max_return_days = int(max_requests), int(max_return_days)
        self.gap_reward_weight = float(gap_reward_weight)
        self.observation_space = spaces.Dict(
            {
                "user": spaces.Box(-1.0, 1.0, (USER_DIM,), np.float32),
                "candidates": spaces.Box(0.0, 1.0, (n_candidates, 2), np.float32),
            }
        )
        self.action_space: spaces.Space[Any] = (
            spaces.Discrete(n_candidates)
            if action == "candidate"
            else spaces.Box(0.0, 1.0, (2,), np.float32)
        )
        half = n_candidates // 2
        self._lo = np.array([[0.5, 0.0]] * half + [[0.2, 0.5]] * half)
        self._width = np.array([[0.3, 0.3]] * half + [[0.3, 0.5]] * half)

    # ------------------------------------------------------------------ shared response code

    def draw_candidates(self, n: int, rng: np.random.Generator) -> F64:
        """``(n, n_candidates, 2)`` candidate features ``(p_click, p_sat)``, float32-exact."""
        u = rng.random((n, self.n_candidates, 2))
        return (self._lo + self._width * u).astype(np.float32).astype(np.float64)

    def return_probability(self, group: NDArray[Any], satisfaction: F64) -> F64:
        """Day-1 return probability ``q`` of a session with mean clicked satisfaction ``s``."""
        base = np.asarray(self.base_return)[np.asarray(group, dtype=np.int64)]
        logit = np.log(base / (1.0 - base)) + self.satisfaction_slope * (satisfaction - 0.4)
        return 1.0 / (1.0 + np.exp(-logit))

    def draw_return_days(
        self, group: NDArray[Any], satisfaction: F64, rng: np.random.Generator
    ) -> NDArray[np.int64]:
        """Returning time ``min(Geometric(q), max_return_days)`` in days."""
        q = self.return_probability(group, satisfaction)
        return np.minimum(rng.geometric(q), self.max_return_days).astype(np.int64)

    def _respond(
        self,
        shown: F64,
        state: F64,
        rng: np.random.Generator,
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Click on the shown ``(p_click, p_sat)`` rows and update ``state`` in place.

        ``state`` rows are ``[patience, requests, clicks, satisfaction sum]``; returns the clicks
        and whether each session is over.
        """
        click = rng.random(shown.shape[0]) < shown[:, 0]
        state[:, 0] += np.where(click, shown[:, 1] - 1.0, -2.0)
        state[:, 1] += 1.0
        state[:, 2] += click
        state[:, 3] += np.where(click, shown[:, 1], 0.0)
        over = (state[:, 0] <= 0.0) | (state[:, 1] >= self.max_requests)
        return click, over

    @staticmethod
    def theta_choice(candidates: F64, theta: float | F64) -> NDArray[np.int64]:
        """Index of the candidate maximising ``(1 - theta) p_click + theta p_sat`` (last axis 2)."""
        th = np.asarray(theta, dtype=np.float64)[..., None]
        score = (1.0 - th) * candidates[..., 0] + th * candidates[..., 1]
        return np.argmax(score, axis=-1)

    # ------------------------------------------------------------------ batched core

    def start_users(self, users: _Users, rows: NDArray[np.int64], rng: np.random.Generator) -> None:
        """Draw the group of each user in ``rows`` and start its first session."""
        users.group[rows] = (rng.random(rows.size) < 0.5).astype(np.int64)
        users.session[rows] = 0
        users.day[rows] = 0
        users.pending_gap[rows] = -1
        self._start_sessions(users, rows, rng)

    def _start_sessions(
        self, users: _Users, rows: NDArray[np.int64], rng: np.random.Generator
    ) -> None:
        users.state[rows] = [self.initial_patience, 0.0, 0.0, 0.0]
        users.cands[rows] = self.draw_candidates(rows.size, rng)

    def observe(self, users: _Users, rows: NDArray[np.int64]) -> dict[str, NDArray[np.float32]]:
        """Observations ``{"user": (n, 6), "candidates": (n, K, 2)}`` of the users in ``rows``."""
        st = users.state[rows]
        clicks = st[:, 2]
        sat = np.divide(st[:, 3], clicks, out=np.zeros(rows.size), where=clicks > 0)
        user = np.stack(
            [
                users.group[rows].astype(np.float64),
                st[:, 0] / self.initial_patience,
                st[:, 1] / self.max_requests,
                clicks / self.max_requests,
                sat,
                (clicks > 0).astype(np.float64),
            ],
            axis=1,
        )
        return {
            "user": np.clip(user, -1.0, 1.0).astype(np.float32),
            "candidates": users.cands[rows].astype(np.float32),
        }

    def shown_index(
        self, users: _Users, rows: NDArray[np.int64], actions: Any
    ) -> NDArray[np.int64]:
        """Candidate index shown to each user of ``rows`` for the batch of ``actions``."""
        if self.action_kind == "candidate":
            a = np.asarray(actions).reshape(-1)
            if a.size != rows.size or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"actions must be {rows.size} candidate indices; got {actions!r}")
            a = a.astype(np.int64)
            bad = np.flatnonzero((a < 0) | (a >= self.n_candidates))
            if bad.size:
                raise ValueError(
                    f"action must be in [0, {self.n_candidates}); got {a[bad[:5]].tolist()}"
                )
            return a
        w = np.asarray(actions, dtype=np.float64).reshape(-1, 2)
        if w.shape[0] != rows.size or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"action must be two finite weights >= 0; got {actions!r}")
        total = w.sum(axis=1)
        theta = np.divide(w[:, 1], total, out=np.full(rows.size, 0.5), where=total > 0)
        return self.theta_choice(users.cands[rows], theta)

    def step_users(
        self,
        users: _Users,
        rows: NDArray[np.int64],
        shown: NDArray[np.int64],
        rng: np.random.Generator,
    ) -> tuple[F64, NDArray[np.bool_], dict[str, NDArray[Any]]]:
        """Serve ``shown`` to the users of ``rows``; returns rewards, truncation and step info.

        Draws, in order: the clicks, the gaps of the sessions that ended, the candidates of the
        users that continue. The info arrays are aligned with ``rows``; ``gap`` is -1 where no
        gap is revealed.
        """
        item = users.cands[rows, shown]
        state = users.state[rows]
        click, over = self._respond(item, state, rng)
        users.state[rows] = state
        gap = users.pending_gap[rows].copy()
        info = {
            "session_index": users.session[rows].copy(),
            "day": users.day[rows].copy(),
            "session_end": over.copy(),
            "user_group": users.group[rows].copy(),
            "immediate_reward": click.astype(np.float64),
            "click": click.astype(np.int64),
            "p_click": item[:, 0].copy(),
            "p_sat": item[:, 1].copy(),
            "gap": gap,
        }
        reward = click - self.gap_reward_weight * np.maximum(gap, 0)
        users.pending_gap[rows] = -1
        ended = rows[over]
        truncated = np.zeros(rows.size, dtype=bool)
        if ended.size:
            n_click, sat = users.state[ended, 2], users.state[ended, 3]
            mean_sat = np.divide(sat, n_click, out=np.zeros(ended.size), where=n_click > 0)
            days = self.draw_return_days(users.group[ended], mean_sat, rng)
            last = users.session[ended] + 1 >= self.n_sessions
            truncated[np.flatnonzero(over)[last]] = True  # the next return is never observed
            nxt = ended[~last]
            users.session[nxt] += 1
            users.day[nxt] += days[~last]
            users.pending_gap[nxt] = days[~last]
        fresh = rows[~truncated]
        users.cands[fresh] = self.draw_candidates(fresh.size, rng)
        starting = rows[over & ~truncated]
        users.state[starting] = [self.initial_patience, 0.0, 0.0, 0.0]
        return reward.astype(np.float64), truncated, info

    # ------------------------------------------------------------------ gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        super().reset(seed=seed)
        self._users = _Users(1, self.n_candidates)
        self.start_users(self._users, _ONE, self.np_random)
        self._live = True
        info = {"session_index": 0, "day": 0, "user_group": int(self._users.group[0])}
        return self._single_obs(), info

    def _single_obs(self) -> dict[str, NDArray[np.float32]]:
        return {k: v[0] for k, v in self.observe(self._users, _ONE).items()}

    def step(
        self, action: Any
    ) -> tuple[dict[str, NDArray[np.float32]], float, bool, bool, dict[str, Any]]:
        if not getattr(self, "_live", False):
            raise RuntimeError("call reset() before step()")
        shown = self.shown_index(self._users, _ONE, np.asarray(action)[None])
        reward, truncated, arrays = self.step_users(self._users, _ONE, shown, self.np_random)
        info: dict[str, Any] = {k: v[0].item() for k, v in arrays.items() if k != "gap"}
        info["session_end"] = bool(info["session_end"])
        if arrays["gap"][0] >= 0:
            info["gap"] = int(arrays["gap"][0])
        if truncated[0]:
            self._live = False
        return self._single_obs(), float(reward[0]), False, bool(truncated[0]), info

    # ------------------------------------------------------------------ oracles

    def constant_policy(self, theta: float) -> Callable[[Observation, np.random.Generator], Any]:
        """A policy ``f(obs, rng) -> action`` that always ranks by ``theta`` (for either action)."""
        if not 0.0 <= theta <= 1.0:
            raise ConfigError(f"theta must be in [0, 1]; got {theta}")
        if self.action_kind == "weights":
            weights = np.array([1.0 - theta, theta], dtype=np.float32)
            return lambda obs, rng: np.broadcast_to(
                weights, (*np.shape(obs["candidates"])[:-2], 2)
            ).copy()

        def policy(obs: Observation, rng: np.random.Generator) -> Any:
            choice = self.theta_choice(np.asarray(obs["candidates"], np.float64), theta)
            return int(choice) if choice.ndim == 0 else choice

        return policy

    def constant_policy_stats(
        self, theta: float, *, n_sessions: int = 50_000, rng: np.random.Generator
    ) -> ConstantPolicyStats:
        """Figures of the constant ranking weight ``theta``, ``n_sessions`` sessions per group.

        Sessions are independent given the group under a constant policy, so they run in one
        vectorised batch through the same response code as :meth:`step`.
        """
        days, day1, clicks = [], [], []
        for group in (0, 1):
            state = np.tile([self.initial_patience, 0.0, 0.0, 0.0], (n_sessions, 1))
            active = np.ones(n_sessions, dtype=bool)
            while active.any():
                rows = np.flatnonzero(active)
                cands = self.draw_candidates(rows.size, rng)
                shown = cands[np.arange(rows.size), self.theta_choice(cands, theta)]
                sub = state[rows]
                _, over = self._respond(shown, sub, rng)
                state[rows] = sub
                active[rows[over]] = False
            n_click = state[:, 2]
            sat = np.divide(state[:, 3], n_click, out=np.zeros(n_sessions), where=n_click > 0)
            g = np.full(n_sessions, group)
            t = self.draw_return_days(g, sat, rng)
            days.append(float(t.mean()))
            day1.append(float(self.return_probability(g, sat).mean()))
            clicks.append(float(n_click.mean()))
        return ConstantPolicyStats(
            theta=float(theta),
            return_days=(days[0], days[1]),
            day1_retention=(day1[0], day1[1]),
            clicks_per_session=(clicks[0], clicks[1]),
            n_sessions=n_sessions,
        )

    def best_constant_theta(
        self,
        *,
        rng: np.random.Generator,
        grid: Sequence[float] = tuple(np.round(np.linspace(0.0, 1.0, 21), 2)),
        n_sessions: int = 50_000,
    ) -> ConstantPolicyStats:
        """The constant ranking weight with the fewest average return days, over ``grid``."""
        stats = [self.constant_policy_stats(t, n_sessions=n_sessions, rng=rng) for t in grid]
        return min(stats, key=lambda s: s.mean_return_days)

    def retention_value(
        self, theta: float, gamma: float, *, rng: np.random.Generator, n_sessions: int = 50_000
    ) -> tuple[float, float]:
        """``E[sum_n gamma^n (-T_n)]`` from a session start, per group ``(low, high)``.

        Under a constant policy the sessions of a user are i.i.d., so the value is
        ``-E[T] / (1 - gamma)`` (the return of the infinite-horizon problem the censored episodes
        are a window of).
        """
        if not 0.0 <= gamma < 1.0:
            raise ConfigError(f"gamma must be in [0, 1); got {gamma}")
        s = self.constant_policy_stats(theta, n_sessions=n_sessions, rng=rng)
        return (-s.return_days[0] / (1.0 - gamma), -s.return_days[1] / (1.0 - gamma))


class RetentionTestVectorEnv(VectorEnv):  # type: ignore[type-arg]
    """``num_envs`` users of :class:`RetentionTestEnv` stepped together (no loop over users).

    The same batched core as the single env (:meth:`RetentionTestEnv.step_users`), so the single
    env is this env at ``num_envs = 1`` with the same draws. Autoreset is Gymnasium's default
    ``NEXT_STEP``: the step after a user's episode ends ignores that user's action, starts a new
    user and returns its first observation with reward 0, ``terminated = truncated = False`` and
    the reset info (``session_index``, ``day``, ``user_group``).

    ``info`` holds the single env's keys batched over users, each with its ``_key`` mask: the
    step keys only for the users that were served a request; ``gap`` only where one is revealed.

    Parameters
    ----------
    num_envs : int
        Users stepped at once.
    **kwargs
        Settings of :class:`RetentionTestEnv`.

    Examples
    --------
    >>> envs = RetentionTestVectorEnv(4)
    >>> obs, info = envs.reset(seed=0)
    >>> obs["user"].shape, obs["candidates"].shape
    ((4, 6), (4, 20, 2))
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 64, **kwargs: Any) -> None:
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1; got {num_envs}")
        self.problem = RetentionTestEnv(**kwargs)
        self.num_envs = int(num_envs)
        self.single_observation_space = self.problem.observation_space
        self.single_action_space = self.problem.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._users = _Users(self.num_envs, self.problem.n_candidates)
        self._needs_reset: NDArray[np.bool_] | None = None

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        if isinstance(seed, list):
            seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
        self._rng, self._np_random_seed = seeding.np_random(seed)
        self._np_random = self._rng
        rows = np.arange(self.num_envs)
        self.problem.start_users(self._users, rows, self._rng)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        return self.problem.observe(self._users, rows), self._reset_info(rows)

    def _reset_info(self, rows: NDArray[np.int64]) -> dict[str, Any]:
        info: dict[str, Any] = {}
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[rows] = True
        u = self._users
        for key, source in (("session_index", u.session), ("day", u.day), ("user_group", u.group)):
            values = np.zeros(self.num_envs, dtype=np.int64)
            values[rows] = source[rows]
            info[key], info[f"_{key}"] = values, mask.copy()
        return info

    def step(
        self, actions: Any
    ) -> tuple[
        dict[str, NDArray[np.float32]], F64, NDArray[np.bool_], NDArray[np.bool_], dict[str, Any]
    ]:
        if self._needs_reset is None:
            raise RuntimeError("call reset() before step()")
        n, prob = self.num_envs, self.problem
        resetting = np.flatnonzero(self._needs_reset)
        active = np.flatnonzero(~self._needs_reset)
        acts = np.asarray(actions)
        shown = prob.shown_index(self._users, active, acts[active])
        reward, trunc, arrays = prob.step_users(self._users, active, shown, self._rng)
        if resetting.size:
            prob.start_users(self._users, resetting, self._rng)
        info = self._reset_info(resetting) if resetting.size else {}
        for key, values in arrays.items():
            rows = active if key != "gap" else active[values >= 0]
            full = np.zeros(n, dtype=values.dtype)
            full[rows] = values if key != "gap" else values[values >= 0]
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
            if key in info:  # reset info and step info share session_index, day, user_group
                full[resetting] = info[key][resetting]
                mask |= info[f"_{key}"]
            info[key], info[f"_{key}"] = full, mask
        rewards = np.zeros(n)
        rewards[active] = reward
        truncated = np.zeros(n, dtype=bool)
        truncated[active] = trunc
        self._needs_reset = truncated.copy()
        obs = prob.observe(self._users, np.arange(n))
        return obs, rewards, np.zeros(n, dtype=bool), truncated, info


@dataclass(frozen=True, kw_only=True)
class RetentionEvaluation:
    """Retention figures of a policy run in a multi-session env.

    Attributes
    ----------
    return_days : float
        Mean observed gap between sessions.
    day1_retention : float
        Fraction of observed gaps of at most one day.
    clicks_per_session : float
        Mean clicks per session.
    n_gaps, n_sessions : int
        Gaps observed and sessions run.
    """

    return_days: float
    day1_retention: float
    clicks_per_session: float
    n_gaps: int
    n_sessions: int


def evaluate_retention(
    env: gym.Env | RetentionTestVectorEnv,
    policy: Any,
    n_episodes: int,
    *,
    rng: np.random.Generator,
) -> RetentionEvaluation:
    """Run ``policy`` for ``n_episodes`` users and average gaps and clicks from ``info``.

    Parameters
    ----------
    env : gymnasium.Env or RetentionTestVectorEnv
        Reports ``gap`` on the first step of each later session, ``session_index`` and ``click``.
        A vector env runs ``ceil(n_episodes / num_envs)`` whole episodes on each of its users
        (so short episodes are not over-counted) with one policy call per step.
    policy : Agent or callable
        An object with ``act(obs, *, rng)`` or a function ``f(obs, rng) -> action``; for a vector
        env, an object with ``act_batch(obs, *, rng)`` or a function of the batched ``obs``.
    n_episodes : int
        Users to run (at least).
    rng : numpy.random.Generator
        Seeds the env and drives the policy (separate streams).

    Returns
    -------
    RetentionEvaluation

    Examples
    --------
    >>> env = RetentionTestEnv()
    >>> res = evaluate_retention(env, env.constant_policy(0.0), 50, rng=np.random.default_rng(0))
    >>> res.n_sessions
    400
    >>> envs = RetentionTestVectorEnv(16)
    >>> evaluate_retention(envs, env.constant_policy(0.0), 50, rng=np.random.default_rng(0)).n_gaps
    448
    """
    if n_episodes < 1:
        raise ConfigError(f"n_episodes must be at least 1; got {n_episodes}")
    env_rng, policy_rng = rng.spawn(2)
    if isinstance(env, RetentionTestVectorEnv):
        return _evaluate_vector(env, policy, n_episodes, env_rng, policy_rng)
    act = policy.act if hasattr(policy, "act") else None
    gaps: list[float] = []
    clicks = 0.0
    n_sessions = 0
    obs, _ = env.reset(seed=int(env_rng.integers(2**63 - 1)))
    for e in range(n_episodes):
        if e:
            obs, _ = env.reset()
        done, session = False, None
        while not done:
            action = act(obs, rng=policy_rng) if act is not None else policy(obs, policy_rng)
            obs, _, terminated, truncated, info = env.step(action)
            if info["session_index"] != session:
                session = info["session_index"]
                n_sessions += 1
            if "gap" in info:
                gaps.append(float(info["gap"]))
            clicks += float(info.get("click", 0.0))
            done = terminated or truncated
    return _evaluation(np.asarray(gaps), clicks, n_sessions)


def _evaluation(g: F64, clicks: float, n_sessions: int) -> RetentionEvaluation:
    return RetentionEvaluation(
        return_days=float(g.mean()) if g.size else math.nan,
        day1_retention=float((g <= 1).mean()) if g.size else math.nan,
        clicks_per_session=clicks / max(n_sessions, 1),
        n_gaps=int(g.size),
        n_sessions=n_sessions,
    )


def _evaluate_vector(
    env: RetentionTestVectorEnv,
    policy: Any,
    n_episodes: int,
    env_rng: np.random.Generator,
    policy_rng: np.random.Generator,
) -> RetentionEvaluation:
    act = policy.act_batch if hasattr(policy, "act_batch") else None
    quota = -(-n_episodes // env.num_envs)
    finished = np.zeros(env.num_envs, dtype=np.int64)
    obs, _ = env.reset(seed=int(env_rng.integers(2**63 - 1)))
    gaps: list[F64] = []
    clicks, n_sessions = 0.0, 0
    served = np.ones(env.num_envs, dtype=bool)
    while (finished < quota).any():
        actions = act(obs, rng=policy_rng) if act is not None else policy(obs, policy_rng)
        obs, _, terminated, truncated, info = env.step(actions)
        counted = served & (finished < quota)  # rows that served a request of a counted episode
        gaps.append(info["gap"][counted & info["_gap"]].astype(np.float64))
        clicks += float(info["click"][counted].sum())
        n_sessions += int((counted & info["session_end"]).sum())
        done = terminated | truncated
        finished += done & counted
        served = ~done
    return _evaluation(np.concatenate(gaps), clicks, n_sessions)
