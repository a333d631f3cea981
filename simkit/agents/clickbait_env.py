"""``ClickbaitSessionEnv``: patience-driven sessions where the myopic choice loses, with exact DP.

A Gymnasium view of :class:`simkit.validation._ope_envs.ClickbaitSessionProblem`: a user starts a
session with patience 5 (of 0..10) and is offered the same 10 items every step. Clicking one of the
five clickbait items (click probability 0.75 .. 0.60) costs 2 patience, clicking one of the five
quality items (0.40 .. 0.25) adds 1, a skip costs 1. The session terminates at patience 0 and is
truncated after 50 steps; the reward is the click. Always showing the most clickable item earns
2.37 clicks per session; the best policy earns 8.75 by showing quality items.

Observations use simkit's layout: ``user`` is the one-hot patience followed by the elapsed fraction
of the horizon ``t / 50`` (12 values); ``candidates`` holds one row per item, ``(click probability,
is_clickbait)``. ``reward_noise_std`` adds N(0, s^2) noise to the reward (the click in ``info`` stays
exact), for overestimation tests of Q-learning.

Exact figures for tests, computed by backward induction over (step, patience):
:meth:`~ClickbaitSessionEnv.optimal_value` (the finite-horizon optimum), :meth:`policy_value` of any
step- and patience-dependent policy table, :meth:`immediate_values` (the expected immediate reward of
each candidate, the warm-start prior of a Q-learner) and :meth:`stationary_optimum` (the best
stationary policy for a discount factor).

:class:`ClickbaitSessionVectorEnv` steps ``num_envs`` sessions at once with Gymnasium's next-step
autoreset; the single env is its core at N = 1, so both give the same trajectory for one seed.

References
----------
Chen, Gomes et al. RecoMind: a reinforcement learning framework for optimizing in-session user
satisfaction in recommendation systems. 2025. arXiv:2508.00201 (the in-session setting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from simkit.errors import ConfigError
from simkit.validation._ope_envs import ClickbaitSessionProblem

__all__ = ["ClickbaitSessionEnv", "ClickbaitSessionVectorEnv"]

F64 = NDArray[np.float64]
Obs = dict[str, NDArray[np.float32]]


class _Core:
    """The vectorised dynamics shared by the single and the vector env."""

    def __init__(self, problem: ClickbaitSessionProblem, reward_noise_std: float) -> None:
        if reward_noise_std < 0:
            raise ConfigError(f"reward_noise_std must be >= 0; got {reward_noise_std}")
        self.problem = problem
        self.noise = float(reward_noise_std)
        self.n_patience = problem.max_patience + 1
        self.horizon = problem.horizon
        self.n_items = problem.click.size
        cands = np.stack([problem.click, (problem.on_click < 0).astype(np.float64)], axis=1)
        self.candidates = cands.astype(np.float32)

    def observation_space(self) -> spaces.Dict:
        return spaces.Dict(
            {
                "user": spaces.Box(0.0, 1.0, (self.n_patience + 1,), np.float32),
                "candidates": spaces.Box(0.0, 1.0, self.candidates.shape, np.float32),
            }
        )

    def observe(self, patience: NDArray[np.int64], t: NDArray[np.int64]) -> Obs:
        n = patience.shape[0]
        user = np.zeros((n, self.n_patience + 1), dtype=np.float32)
        user[np.arange(n), np.minimum(patience, self.n_patience - 1)] = 1.0
        user[:, -1] = t / self.horizon
        return {
            "user": user,
            "candidates": np.broadcast_to(self.candidates, (n, *self.candidates.shape)).copy(),
        }

    def step(
        self,
        patience: NDArray[np.int64],
        t: NDArray[np.int64],
        action: NDArray[np.int64],
        rng: np.random.Generator,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], F64, NDArray[np.bool_], F64]:
        pr = self.problem
        click = rng.random(action.shape[0]) < pr.click[action]
        delta = np.where(click, pr.on_click[action], pr.on_skip)
        new_p = np.clip(patience + delta, 0, pr.max_patience)
        reward = click.astype(np.float64)
        if self.noise:
            reward = reward + self.noise * rng.standard_normal(action.shape[0])
        return new_p, t + 1, reward, click, pr.click[action].astype(np.float64)


class _ExactMixin:
    """Exact values by backward induction, shared by both envs."""

    _core: _Core

    @property
    def problem(self) -> ClickbaitSessionProblem:
        """The underlying :class:`ClickbaitSessionProblem`."""
        return self._core.problem

    def immediate_values(self, obs: Mapping[str, NDArray[Any]]) -> F64:
        """Expected immediate reward (the click probability) of every candidate.

        Parameters
        ----------
        obs : mapping
            One observation (``candidates`` (K, 2)) or a batch (``candidates`` (N, K, 2)).

        Returns
        -------
        ndarray, shape (K,) or (N, K)
        """
        return np.asarray(obs["candidates"], dtype=np.float64)[..., 0]

    def all_observations(self) -> Obs:
        """Every (step, patience > 0) state as one batch, step-major: shape (50 * 10, ...)."""
        c = self._core
        t, p = np.meshgrid(np.arange(c.horizon), np.arange(1, c.n_patience), indexing="ij")
        return c.observe(p.reshape(-1), t.reshape(-1))

    def policy_table(self, proba: Callable[[Obs], NDArray[Any]]) -> F64:
        """Probabilities of a policy in every (step, patience) state: (50, 11, K); row 0 unused."""
        c = self._core
        table = np.zeros((c.horizon, c.n_patience, c.n_items))
        table[:, 0] = 1.0 / c.n_items
        table[:, 1:] = np.asarray(proba(self.all_observations())).reshape(
            c.horizon, c.n_patience - 1, c.n_items
        )
        return table

    def policy_value(self, table: F64, gamma: float = 1.0) -> float:
        """Exact expected discounted clicks per session of a (step, patience) policy table.

        ``table`` has shape (50, 11, K), or (11, K) for a stationary policy.
        """
        q, _ = self._backup(np.asarray(table, dtype=np.float64), gamma)
        start = self.problem.start
        pol = table if np.ndim(table) == 2 else table[0]
        return float((q[0, start] * pol[start]).sum())

    def optimal_value(self) -> float:
        """Exact finite-horizon optimum of undiscounted clicks per session (8.75 by default)."""
        q, _ = self._backup(None, 1.0)
        return float(q[0, self.problem.start].max())

    def optimal_q(self, gamma: float = 1.0) -> F64:
        """Optimal finite-horizon Q* under discount ``gamma``: (50, 11, K), zero at patience 0."""
        return self._backup(None, gamma)[0]

    def stationary_optimum(self, gamma: float, n_iter: int = 2000) -> F64:
        """Greedy stationary policy (11, K) of the discounted infinite-horizon optimal Q."""
        pr, c = self.problem, self._core
        p = np.arange(c.n_patience)
        after_click = np.clip(p[:, None] + pr.on_click[None, :], 0, pr.max_patience)
        after_skip = np.clip(p + pr.on_skip, 0, pr.max_patience)[:, None]
        v = np.zeros(c.n_patience)
        for _ in range(n_iter):
            q = pr.click * (1 + gamma * v[after_click]) + (1 - pr.click) * gamma * v[after_skip]
            q[0] = 0.0
            v = q.max(axis=1)
        return np.eye(c.n_items)[q.argmax(axis=1)]

    def _backup(self, table: F64 | None, gamma: float) -> tuple[F64, F64]:
        """Q of ``table`` (or optimal Q when None) for every step: (50, 11, K), and V at step 0."""
        pr, c = self.problem, self._core
        p = np.arange(c.n_patience)
        after_click = np.clip(p[:, None] + pr.on_click[None, :], 0, pr.max_patience)
        after_skip = np.clip(p + pr.on_skip, 0, pr.max_patience)[:, None]
        q = np.zeros((c.horizon, c.n_patience, c.n_items))
        v = np.zeros(c.n_patience)
        for t in range(c.horizon - 1, -1, -1):
            q[t] = pr.click * (1 + gamma * v[after_click]) + (1 - pr.click) * gamma * v[after_skip]
            q[t, 0] = 0.0
            if table is None:
                v = q[t].max(axis=1)
            else:
                pol = table if table.ndim == 2 else table[t]
                v = (pol * q[t]).sum(axis=1)
        return q, v


class ClickbaitSessionEnv(_ExactMixin, gym.Env[dict[str, Any], Any]):
    """One clickbait-vs-quality session per episode.

    Parameters
    ----------
    problem : ClickbaitSessionProblem, optional
        Click probabilities, patience changes, start, horizon (the defaults above when omitted).
    reward_noise_std : float
        Standard deviation of Gaussian noise added to the reward.

    Examples
    --------
    >>> env = ClickbaitSessionEnv()
    >>> obs, _ = env.reset(seed=0)
    >>> obs["user"].shape, obs["candidates"].shape
    ((12,), (10, 2))
    >>> round(env.optimal_value(), 2)
    8.75
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self, problem: ClickbaitSessionProblem | None = None, *, reward_noise_std: float = 0.0
    ) -> None:
        self._core = _Core(problem or ClickbaitSessionProblem(), reward_noise_std)
        self.observation_space = self._core.observation_space()
        self.action_space = spaces.Discrete(self._core.n_items)
        self._patience = np.zeros(1, dtype=np.int64)
        self._t = np.zeros(1, dtype=np.int64)

    def _obs(self) -> Obs:
        o = self._core.observe(self._patience, self._t)
        return {k: v[0] for k, v in o.items()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Start a session at the start patience."""
        super().reset(seed=seed)
        self._patience[:] = self.problem.start
        self._t[:] = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Show candidate ``action``; the reward is the click (plus optional noise)."""
        a = np.asarray([int(action)], dtype=np.int64)
        if not 0 <= a[0] < self._core.n_items:
            raise ValueError(f"action must lie in [0, {self._core.n_items}); got {action}")
        self._patience, self._t, reward, click, p_click = self._core.step(
            self._patience, self._t, a, self.np_random
        )
        terminated = bool(self._patience[0] == 0)
        truncated = bool(not terminated and self._t[0] >= self._core.horizon)
        info = {"click": float(click[0]), "p_click": float(p_click[0])}
        return self._obs(), float(reward[0]), terminated, truncated, info


class ClickbaitSessionVectorEnv(_ExactMixin, VectorEnv):
    """``num_envs`` clickbait sessions stepped together, next-step autoreset.

    The step after a session ends ignores its action and returns the first observation of a new
    session with reward 0 and ``terminated = truncated = False`` (Gymnasium's default autoreset).

    Parameters
    ----------
    num_envs : int
    problem : ClickbaitSessionProblem, optional
    reward_noise_std : float

    Examples
    --------
    >>> envs = ClickbaitSessionVectorEnv(4)
    >>> obs, _ = envs.reset(seed=0)
    >>> obs["candidates"].shape
    (4, 10, 2)
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        problem: ClickbaitSessionProblem | None = None,
        *,
        reward_noise_std: float = 0.0,
    ) -> None:
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1; got {num_envs}")
        self._core = _Core(problem or ClickbaitSessionProblem(), reward_noise_std)
        self.num_envs = int(num_envs)
        self.single_observation_space = self._core.observation_space()
        self.single_action_space = spaces.Discrete(self._core.n_items)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.autoreset_mode = AutoresetMode.NEXT_STEP
        self._patience = np.zeros(self.num_envs, dtype=np.int64)
        self._t = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Start every session at the start patience."""
        if seed is not None:
            s = seed if isinstance(seed, int) else int(seed[0])
            self._np_random, self._np_random_seed = seeding.np_random(s)
        self._patience[:] = self.problem.start
        self._t[:] = 0
        self._needs_reset[:] = False
        return self._core.observe(self._patience, self._t), {}

    def step(
        self, actions: Any
    ) -> tuple[Obs, F64, NDArray[np.bool_], NDArray[np.bool_], dict[str, Any]]:
        """Step every session (restarting those that ended on the previous step)."""
        a = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        if a.min() < 0 or a.max() >= self._core.n_items:
            raise ValueError(f"actions must lie in [0, {self._core.n_items}); got {a}")
        resetting = self._needs_reset
        active = ~resetting
        new_p = np.full(self.num_envs, self.problem.start, dtype=np.int64)
        new_t = np.zeros(self.num_envs, dtype=np.int64)
        reward, click, p_click = (
            np.zeros(self.num_envs),
            np.zeros(self.num_envs),
            np.zeros(self.num_envs),
        )
        # only the sessions that step draw random numbers: at N = 1 the draws are the single env's
        new_p[active], new_t[active], reward[active], click[active], p_click[active] = (
            self._core.step(self._patience[active], self._t[active], a[active], self.np_random)
        )
        self._patience, self._t = new_p, new_t
        terminated = (new_p == 0) & active
        truncated = (new_t >= self._core.horizon) & ~terminated & active
        self._needs_reset = terminated | truncated
        info = {"click": click, "_click": active.copy()}
        info["p_click"], info["_p_click"] = p_click, active.copy()
        return self._core.observe(new_p, new_t), reward, terminated, truncated, info
