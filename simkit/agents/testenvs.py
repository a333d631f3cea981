"""Small Gymnasium environments with exact oracles, for testing and calibrating agents.

All use simkit's observation layout ``{"user": (d_u,), "candidates": (K, d_c)}`` (float32) and are
stateless: each episode is one decision (``terminated=True`` after one step). The problem instance
(parameters, item features) is drawn once from ``world_seed``; ``reset(seed=...)`` seeds the
per-round draws. Features are rounded to float32 before use, so the float32 observation carries the
exact values the rewards are computed from and ``expected_reward(obs, action)`` is exact.

- :class:`LinearBanditEnv`: linear rewards, disjoint arms or one
  shared parameter over changing candidate sets, Gaussian or Bernoulli noise.
- :class:`StatelessItemEnv` (section 2.5 T1): 10 items with fixed rewards (10, 9, 1, ..., 1), the
  simulation of Chen et al. (2019), with uniform logging and the exact top-K set objective.
- :class:`SlateMNLEnv` (sections 2.5 T2 and 7.2): slates under a multinomial-logit choice with a
  no-click option, uniform or Plackett-Luce popularity logging with logged propensities, and the
  exact click-through rate of any slate.

References
----------
Li, Chu, Langford, Schapire. A contextual-bandit approach to personalized news article
recommendation. WWW 2010.
Chen, Beutel, Covington, Jain, Belletti, Chi. Top-K off-policy correction for a REINFORCE
recommender system. WSDM 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from simkit.agents.base import DecisionLog, Observation
from simkit.errors import ConfigError

__all__ = ["LinearBanditEnv", "SlateMNLEnv", "StatelessItemEnv"]

F64 = NDArray[np.float64]
_USER_LIMIT = 8.0


def _f32(x: F64) -> F64:
    """Round to float32 and back: the values an observation can carry exactly."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


class LinearBanditEnv(gym.Env):
    """Contextual linear bandit with an exact oracle.

    ``model="disjoint"``: ``n_arms`` arms with parameters ``theta_a ~ N(0, I/dim)``; the user
    vector is a context ``x`` uniform on the unit sphere and the candidates are the one-hot rows of
    the identity, so position ``a`` is arm ``a``; the mean reward is ``theta_a . x``.

    ``model="joint"``: ``n_items`` items with features ``w_i ~ N(0, I)`` and one ``theta ~ N(0,
    I/dim)``; each round offers ``n_arms`` items drawn without replacement (candidate rows are their
    features) and the mean reward is ``theta . (x * w_i)`` (elementwise product).

    Gaussian rewards add N(0, noise_std^2); Bernoulli rewards click with probability
    ``clip(0.5 + 0.5 mean, 0, 1)`` and report it in ``info["click"]``.

    Parameters
    ----------
    n_arms : int
        Candidates per round (K).
    dim : int
        Context dimension d.
    model : {"disjoint", "joint"}
    n_items : int
        Catalogue size for the joint model.
    reward : {"gaussian", "bernoulli"}
    noise_std : float
        Gaussian noise scale.
    world_seed : int
        Seeds the problem instance (the parameters and item features), like ``random_state``.

    Examples
    --------
    >>> env = LinearBanditEnv(world_seed=1)
    >>> obs, info = env.reset(seed=0)
    >>> obs["user"].shape, obs["candidates"].shape
    ((10,), (20, 20))
    >>> _, r, terminated, truncated, info = env.step(env.oracle_action(obs))
    >>> info["regret"]
    0.0
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        *,
        n_arms: int = 20,
        dim: int = 10,
        model: str = "disjoint",
        n_items: int = 200,
        reward: str = "gaussian",
        noise_std: float = 0.1,
        world_seed: int = 0,
    ) -> None:
        problems = []
        if model not in ("disjoint", "joint"):
            problems.append(f"model must be 'disjoint' or 'joint'; got {model!r}")
        if reward not in ("gaussian", "bernoulli"):
            problems.append(f"reward must be 'gaussian' or 'bernoulli'; got {reward!r}")
        if n_arms < 2 or dim < 1 or noise_std < 0:
            problems.append(
                f"need n_arms >= 2, dim >= 1, noise_std >= 0; got {n_arms}, {dim}, {noise_std}"
            )
        if model == "joint" and n_items < n_arms:
            problems.append(f"n_items ({n_items}) must be at least n_arms ({n_arms})")
        if problems:
            raise ConfigError("; ".join(problems))
        self.n_arms, self.dim, self.model, self.n_items = n_arms, dim, model, n_items
        self.reward_kind, self.noise_std = reward, float(noise_std)
        world = np.random.default_rng(world_seed)
        if model == "disjoint":
            self.theta = world.normal(size=(n_arms, dim)) / math.sqrt(dim)
            self.item_features = _f32(np.eye(n_arms))
            cand_space = spaces.Box(0.0, 1.0, (n_arms, n_arms), np.float32)
        else:
            self.theta = world.normal(size=dim) / math.sqrt(dim)
            self.item_features = _f32(world.normal(size=(n_items, dim)))
            lim = float(np.abs(self.item_features).max())
            cand_space = spaces.Box(-lim, lim, (n_arms, dim), np.float32)
        self.observation_space = spaces.Dict(
            {"user": spaces.Box(-1.0, 1.0, (dim,), np.float32), "candidates": cand_space}
        )
        self.action_space = spaces.Discrete(n_arms)
        self._obs: dict[str, NDArray[np.float32]] | None = None
        self._ids = np.arange(n_arms)

    def _draw_round(self) -> dict[str, NDArray[np.float32]]:
        x = self.np_random.normal(size=self.dim)
        x = _f32(x / np.linalg.norm(x))
        if self.model == "joint":
            self._ids = np.sort(self.np_random.choice(self.n_items, self.n_arms, replace=False))
        cands = self.item_features[self._ids]
        self._obs = {"user": x.astype(np.float32), "candidates": cands.astype(np.float32)}
        return {k: v.copy() for k, v in self._obs.items()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        super().reset(seed=seed)
        return self._draw_round(), {"item_ids": self._ids.copy()}

    def mean_rewards(self, obs: Observation) -> F64:
        """Noise-free mean reward of every candidate (before the Bernoulli link)."""
        x = np.asarray(obs["user"], dtype=np.float64)
        cands = np.asarray(obs["candidates"], dtype=np.float64)
        if self.model == "disjoint":
            return cands @ (self.theta @ x)
        return (cands * x) @ self.theta

    def expected_rewards(self, obs: Observation) -> F64:
        """Expected reward of every candidate of ``obs`` (exact)."""
        mean = self.mean_rewards(obs)
        return np.clip(0.5 + 0.5 * mean, 0.0, 1.0) if self.reward_kind == "bernoulli" else mean

    def expected_reward(self, obs: Observation, action: int) -> float:
        """Expected reward of showing candidate ``action`` (exact)."""
        return float(self.expected_rewards(obs)[action])

    def oracle_action(self, obs: Observation) -> int:
        """Candidate with the highest expected reward."""
        return int(np.argmax(self.expected_rewards(obs)))

    def step(
        self, action: Any
    ) -> tuple[dict[str, NDArray[np.float32]], float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        a = int(action)
        if not 0 <= a < self.n_arms:
            raise ValueError(f"action must be in [0, {self.n_arms}); got {action!r}")
        means = self.expected_rewards(self._obs)
        info: dict[str, Any] = {
            "item_ids": self._ids.copy(),
            "expected_reward": float(means[a]),
            "regret": float(means.max() - means[a]),
        }
        if self.reward_kind == "gaussian":
            reward = float(means[a] + self.noise_std * self.np_random.normal())
        else:
            reward = float(self.np_random.random() < means[a])
            info["p_click"] = float(means[a])
            info["click"] = int(reward)
        obs = {k: v.copy() for k, v in self._obs.items()}
        return obs, reward, True, False, info


class StatelessItemEnv(gym.Env):
    """Items with fixed rewards and no context: the simulation of Chen et al. (2019), Fig. 3.

    The user vector is the constant ``[1.0]`` and the candidates are one-hot item rows; showing
    item ``a`` pays ``rewards[a]`` and ends the episode. :meth:`sample_logs` writes logs of a
    behaviour policy; :meth:`set_value` is the top-K set objective
    ``sum_a r_a (1 - (1 - p_a)^K)``, maximised exactly by :meth:`oracle_set_value`.

    Parameters
    ----------
    rewards : sequence of float
        Reward of each item; default ``(10, 9, 1, 1, 1, 1, 1, 1, 1, 1)``.

    Examples
    --------
    >>> env = StatelessItemEnv()
    >>> round(env.oracle_set_value(2), 2)
    14.26
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, rewards: Sequence[float] = (10, 9, 1, 1, 1, 1, 1, 1, 1, 1)) -> None:
        self.rewards = np.asarray(rewards, dtype=np.float64)
        if self.rewards.ndim != 1 or self.rewards.size < 2 or np.any(self.rewards < 0):
            raise ConfigError(f"rewards must be >= 2 non-negative numbers; got {list(rewards)}")
        n = self.rewards.size
        self.observation_space = spaces.Dict(
            {
                "user": spaces.Box(0.0, 1.0, (1,), np.float32),
                "candidates": spaces.Box(0.0, 1.0, (n, n), np.float32),
            }
        )
        self.action_space = spaces.Discrete(n)
        self._obs = {"user": np.ones(1, np.float32), "candidates": np.eye(n, dtype=np.float32)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        super().reset(seed=seed)
        return {k: v.copy() for k, v in self._obs.items()}, {}

    def step(
        self, action: Any
    ) -> tuple[dict[str, NDArray[np.float32]], float, bool, bool, dict[str, Any]]:
        a = int(action)
        if not 0 <= a < self.rewards.size:
            raise ValueError(f"action must be in [0, {self.rewards.size}); got {action!r}")
        obs = {k: v.copy() for k, v in self._obs.items()}
        return obs, float(self.rewards[a]), True, False, {"item_ids": np.arange(self.rewards.size)}

    def expected_reward(self, obs: Observation, action: int) -> float:
        """Reward of item ``action``."""
        return float(self.rewards[action])

    def oracle_action(self, obs: Observation) -> int:
        """The single best item."""
        return int(np.argmax(self.rewards))

    def sample_logs(
        self,
        n_rows: int,
        *,
        rng: np.random.Generator,
        behaviour: NDArray[np.float64] | None = None,
    ) -> DecisionLog:
        """Logs of ``n_rows`` decisions drawn from ``behaviour`` (uniform by default).

        Returns
        -------
        DecisionLog
            Shared candidates (the identity), propensity = behaviour probability of the action.
        """
        n = self.rewards.size
        beta = np.full(n, 1.0 / n) if behaviour is None else np.asarray(behaviour, np.float64)
        if beta.shape != (n,) or np.any(beta <= 0) or not math.isclose(beta.sum(), 1.0):
            raise ConfigError(f"behaviour must be {n} positive probabilities summing to 1")
        action = rng.choice(n, size=n_rows, p=beta)
        return DecisionLog(
            user=np.ones((n_rows, 1)),
            candidates=np.eye(n),
            action=action,
            reward=self.rewards[action],
            propensity=beta[action],
        )

    def set_value(self, proba: F64, k: int) -> float:
        """Expected total reward of the de-duplicated set of ``k`` i.i.d. draws from ``proba``."""
        return float((self.rewards * (1.0 - (1.0 - np.asarray(proba)) ** k)).sum())

    def oracle_set_value(self, k: int) -> float:
        """Maximum of :meth:`set_value` over the probability simplex (KKT, by bisection)."""
        return self.set_value(self.oracle_set_proba(k), k)

    def oracle_set_proba(self, k: int) -> F64:
        """Maximiser of :meth:`set_value`: ``p_a = max(0, 1 - (mu / (k r_a))^(1/(k-1)))``."""
        r = self.rewards
        if k == 1:
            p = (r == r.max()).astype(np.float64)
            return p / p.sum()

        def proba(mu: float) -> F64:
            ratio = np.divide(mu, k * r, out=np.full_like(r, np.inf), where=r > 0)
            return np.maximum(0.0, 1.0 - ratio ** (1.0 / (k - 1)))

        lo, hi = 0.0, k * r.max()
        for _ in range(200):  # total mass decreases in mu
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if proba(mid).sum() > 1.0 else (lo, mid)
        p = proba(0.5 * (lo + hi))
        return p / p.sum()


class SlateMNLEnv(gym.Env):
    """Slates of items under a multinomial-logit click model.

    Items have embeddings ``v_i ~ N(0, I_dim)`` and biases ``b_i ~ N(0, bias_std^2)``; each episode
    draws a user ``u ~ N(0, I_dim)``. Item ``i`` has attractiveness
    ``A_i(u) = exp(scale * u . v_i / sqrt(dim) + b_i)``; the user clicks at most one item of the
    slate, item ``j`` with probability ``A_j / (sum_slate A + no_click_weight)``. The reward is 1
    for a click. The best slate is the top ``slate_size`` items by attractiveness.

    The candidates are the whole catalogue, rows ``[v_i, one_hot(i)]`` (the one-hot part lets a
    policy learn a per-item bias); the action is a slate of ``slate_size`` indices (a repeated item
    counts once). ``info`` has ``item_ids``, ``p_click`` and ``click`` per slot.

    Parameters
    ----------
    n_items, dim, slate_size : int
    scale : float
        Multiplier of the user-item affinity.
    bias_std : float
        Standard deviation of the item biases (quality).
    no_click_weight : float
        Weight of the no-click option.
    id_features : bool
        Append one-hot item ids to the candidate rows.
    world_seed : int
        Seeds the items, like ``random_state``.

    Examples
    --------
    >>> env = SlateMNLEnv()
    >>> obs, _ = env.reset(seed=0)
    >>> obs["candidates"].shape
    (100, 108)
    >>> users = obs["user"][None].astype(float)
    >>> bool(env.slate_ctr(users, env.oracle_slates(users))[0] > 0)
    True
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        *,
        n_items: int = 100,
        dim: int = 8,
        slate_size: int = 5,
        scale: float = 2.0,
        bias_std: float = 0.5,
        no_click_weight: float = 20.0,
        id_features: bool = True,
        world_seed: int = 0,
    ) -> None:
        if not 1 <= slate_size <= n_items or dim < 1 or no_click_weight <= 0:
            raise ConfigError(
                "need 1 <= slate_size <= n_items, dim >= 1 and no_click_weight > 0; got "
                f"slate_size={slate_size}, n_items={n_items}, dim={dim}, "
                f"no_click_weight={no_click_weight}"
            )
        self.n_items, self.dim, self.slate_size = n_items, dim, slate_size
        self.scale, self.no_click_weight = float(scale), float(no_click_weight)
        world = np.random.default_rng(world_seed)
        self.item_embeddings = _f32(world.normal(size=(n_items, dim)))
        self.item_bias = world.normal(0.0, bias_std, size=n_items)
        feats = [self.item_embeddings] + ([np.eye(n_items)] if id_features else [])
        self.candidates = np.concatenate(feats, axis=1)
        lim = float(np.abs(self.candidates).max())
        self.observation_space = spaces.Dict(
            {
                "user": spaces.Box(-_USER_LIMIT, _USER_LIMIT, (dim,), np.float32),
                "candidates": spaces.Box(-lim, lim, self.candidates.shape, np.float32),
            }
        )
        self.action_space = spaces.MultiDiscrete(np.full(slate_size, n_items))
        self._user: F64 | None = None

    def _draw_users(self, n: int, rng: np.random.Generator) -> F64:
        # clipping at 8 standard deviations keeps the space bounded and changes nothing in practice
        return _f32(np.clip(rng.normal(size=(n, self.dim)), -_USER_LIMIT, _USER_LIMIT))

    def _obs(self) -> dict[str, NDArray[np.float32]]:
        assert self._user is not None
        return {
            "user": self._user.astype(np.float32),
            "candidates": self.candidates.astype(np.float32),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        super().reset(seed=seed)
        self._user = self._draw_users(1, self.np_random)[0]
        return self._obs(), {}

    def attractiveness(self, users: F64) -> F64:
        """``A_i(u)`` for each user row and item, shape (n_users, n_items)."""
        aff = np.atleast_2d(users) @ self.item_embeddings.T / math.sqrt(self.dim)
        return np.exp(self.scale * aff + self.item_bias)

    def _slate_weights(self, users: F64, slates: NDArray[np.int64]) -> F64:
        slates = np.atleast_2d(slates)
        w = np.take_along_axis(self.attractiveness(users), slates, axis=1)
        for j in range(1, slates.shape[1]):  # a repeated item is shown once
            w[:, j] *= ~np.any(slates[:, :j] == slates[:, j : j + 1], axis=1)
        return w

    def click_proba(self, users: F64, slates: NDArray[np.int64]) -> F64:
        """Probability of a click on each slot, shape (n, slate_size)."""
        w = self._slate_weights(users, slates)
        return w / (w.sum(axis=1, keepdims=True) + self.no_click_weight)

    def slate_ctr(self, users: F64, slates: NDArray[np.int64]) -> F64:
        """Exact probability of a click on each user's slate, shape (n,)."""
        return self.click_proba(users, slates).sum(axis=1)

    def oracle_slates(self, users: F64) -> NDArray[np.int64]:
        """Top ``slate_size`` items by attractiveness for each user."""
        return top_k(np.log(self.attractiveness(users)), self.slate_size)

    def random_ctr(self, users: F64, *, rng: np.random.Generator, n_draws: int = 20) -> float:
        """Mean CTR of uniformly random slates over ``users`` (Monte Carlo over slates)."""
        total = 0.0
        for _ in range(n_draws):
            keys = rng.random((len(users), self.n_items))
            total += float(self.slate_ctr(users, top_k(keys, self.slate_size)).mean())
        return total / n_draws

    def sample_users(self, n: int, *, rng: np.random.Generator) -> F64:
        """Fresh users (float32-exact), for evaluation."""
        return self._draw_users(n, rng)

    def expected_reward(self, obs: Observation, action: Any) -> float:
        """Exact CTR of slate ``action`` for the user of ``obs``."""
        user = np.asarray(obs["user"], dtype=np.float64)[None]
        return float(self.slate_ctr(user, np.asarray(action, dtype=np.int64)[None])[0])

    def oracle_action(self, obs: Observation) -> NDArray[np.int64]:
        """Best slate for the user of ``obs``."""
        return self.oracle_slates(np.asarray(obs["user"], dtype=np.float64)[None])[0]

    def step(
        self, action: Any
    ) -> tuple[dict[str, NDArray[np.float32]], float, bool, bool, dict[str, Any]]:
        if self._user is None:
            raise RuntimeError("call reset() before step()")
        slate = np.asarray(action, dtype=np.int64).reshape(-1)
        if slate.shape != (self.slate_size,) or np.any((slate < 0) | (slate >= self.n_items)):
            raise ValueError(
                f"action must be {self.slate_size} item indices in [0, {self.n_items}); "
                f"got {action!r}"
            )
        p = self.click_proba(self._user[None], slate[None])[0]
        choice = self.np_random.random() * (1.0 + 1e-12)
        click = np.zeros(self.slate_size, dtype=np.int64)
        hit = np.searchsorted(np.cumsum(p), choice, side="right")
        if hit < self.slate_size:
            click[hit] = 1
        info = {"item_ids": slate.copy(), "p_click": p, "click": click}
        return self._obs(), float(click.sum()), True, False, info

    def logging_weights(self, policy: str, skew: float = 3.0) -> F64:
        """Plackett-Luce weights of a logging policy, normalised to per-draw probabilities.

        ``"uniform"``: equal weights; ``"popularity"``: ``exp(-skew * b_i)``, popular items being
        the low-quality ones (anti-correlated with the biases).
        """
        if policy == "uniform":
            w = np.ones(self.n_items)
        elif policy == "popularity":
            w = np.exp(-skew * self.item_bias)
        else:
            raise ConfigError(f"policy must be 'uniform' or 'popularity'; got {policy!r}")
        return w / w.sum()

    def sample_logs(
        self,
        n_slates: int,
        *,
        rng: np.random.Generator,
        policy: str = "popularity",
        skew: float = 3.0,
    ) -> DecisionLog:
        """Log ``n_slates`` slates of a context-free Plackett-Luce policy, one row per shown item.

        Rows carry the click as reward, the per-draw probability ``beta(i)`` as ``propensity``,
        the Plackett-Luce probability of the item at its slot given the slots before it as
        ``conditional_propensity`` and the probability of the ordered slate as
        ``slate_propensity``.
        """
        beta = self.logging_weights(policy, skew)
        user_rng, slate_rng, click_rng = rng.spawn(3)
        users = self._draw_users(n_slates, user_rng)
        k = self.slate_size
        slates = np.empty((n_slates, k), dtype=np.int64)
        chunk = 20_000
        for s in range(0, n_slates, chunk):  # Gumbel top-k is Plackett-Luce sampling
            m = min(chunk, n_slates - s)
            keys = np.log(beta) + slate_rng.gumbel(size=(m, self.n_items))
            slates[s : s + m] = top_k(keys, k)
        p = self.click_proba(users, slates)
        u = click_rng.random(n_slates)[:, None]
        cum = np.cumsum(p, axis=1)
        clicks = ((u < cum) & (u >= cum - p)).astype(np.float64)
        shown = beta[slates]
        cond = shown / (1.0 - np.cumsum(shown, axis=1) + shown)
        return DecisionLog(
            user=np.repeat(users, k, axis=0),
            candidates=self.candidates,
            action=slates.reshape(-1),
            reward=clicks.reshape(-1),
            propensity=shown.reshape(-1),
            slate_id=np.repeat(np.arange(n_slates), k),
            position=np.tile(np.arange(k), n_slates),
            conditional_propensity=np.minimum(cond, 1.0).reshape(-1),
            slate_propensity=np.repeat(np.prod(cond, axis=1), k),
        )


def top_k(scores: F64, k: int) -> NDArray[np.int64]:
    """Indices of the ``k`` largest scores of each row, in decreasing order."""
    scores = np.atleast_2d(scores)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)
