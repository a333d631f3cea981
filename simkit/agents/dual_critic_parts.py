"""Building blocks of the dual-critic agent (:mod:`simkit.agents.dual_critic`).

- :class:`CandidateWeightActor`: the policy's logits ``c_j . w(s)`` over the candidates;
- :func:`session_gae`: generalised advantage estimates with a per-transition discount, over a
  time-major ``(T, N)`` batch of ``N`` parallel users;
- :func:`mixed_advantages`: the normalise-then-mix rule of the two advantages;
- :class:`RunningMoments`: running mean and variance of the user vectors;
- :class:`Lanes`: a single Gymnasium env or a ``NEXT_STEP``-autoreset vector env, seen as ``N``
  parallel users with the ``info`` keys the agent reads.

References
----------
Cai, Liu, Wang, Zuo, Xie, Yang, Zheng, Jiang, Gai. Reinforcing user retention in a billion scale
short video recommender system. WWW 2023 Companion. arXiv:2302.01724.
Schulman, Moritz, Levine, Jordan, Abbeel. High-dimensional continuous control using generalized
advantage estimation. ICLR 2016.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from numpy.typing import NDArray

from simkit import nn
from simkit.errors import ConfigError

__all__ = ["CandidateWeightActor", "Lanes", "RunningMoments", "mixed_advantages", "session_gae"]

F64 = NDArray[Any]


class CandidateWeightActor:
    """Logits ``z_j = c_j . w(s)`` of the candidates, ``w`` an MLP of the user vector.

    Parameters
    ----------
    user_dim, item_dim : int
        Sizes of the user vector and of a candidate's features.
    hidden : tuple of int
        Hidden widths of ``w``.
    activation : {"relu", "tanh"}
    rng : numpy.random.Generator or None
        Initial weights (zeros when None, for loading). The output layer starts at zero, so the
        first policy is uniform over the candidates.
    """

    def __init__(
        self,
        user_dim: int,
        item_dim: int,
        hidden: tuple[int, ...],
        activation: str,
        rng: np.random.Generator | None,
    ) -> None:
        self.net = mlp_or_zeros([user_dim, *hidden, item_dim], activation, rng)
        if rng is not None:
            last = self.net.layers[-1]
            assert isinstance(last, nn.Dense)
            last.weight.value[...] = 0.0

    def forward(self, users: F64, candidates: F64) -> F64:
        """Logits ``(n, K)`` for users ``(n, d_u)`` and candidates ``(n, K, d_c)``."""
        w = self.net.forward(users)
        self._cands = candidates
        return np.einsum("nkd,nd->nk", candidates, w)

    def backward(self, dz: F64) -> None:
        """Store parameter gradients from the gradient ``(n, K)`` in the logits."""
        self.net.backward(np.einsum("nk,nkd->nd", dz, self._cands))

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters."""
        return self.net.parameters()


def mlp_or_zeros(
    sizes: list[int], activation: str, rng: np.random.Generator | None
) -> nn.Sequential:
    """``nn.mlp(sizes)`` with random weights, or the same layers with zero weights (for loading)."""
    if rng is not None:
        return nn.mlp(sizes, rng=rng, activation=activation)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Dense(a, b, init="zeros"))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU() if activation == "relu" else nn.Tanh())
    return nn.Sequential(layers)


def session_gae(
    rewards: F64,
    values: F64,
    next_values: F64,
    discounts: F64,
    continues: NDArray[np.bool_],
    valid: NDArray[np.bool_],
    lam: float,
) -> F64:
    """Generalised advantage estimates with a per-transition discount.

    ``delta_t = r_t + g_t V(s_t+1) - V(s_t)`` and ``A_t = delta_t + g_t lam A_t+1`` while the next
    stored transition continues the same trajectory (``continues[t]``). A transition whose target
    is unknown (``valid[t]`` false, e.g. a return never observed) gets ``A_t = 0``: the transition
    before it then bootstraps from ``V`` of its state.

    Parameters
    ----------
    rewards, values, next_values, discounts : ndarray, shape (T,) or (T, N)
        ``r_t``, ``V(s_t)``, ``V(s_t+1)`` and the factor ``g_t`` of each transition, in time order
        along the first axis (one column per parallel user).
    continues, valid : ndarray of bool, same shape
    lam : float

    Returns
    -------
    ndarray, same shape

    Examples
    --------
    >>> session_gae(np.array([0.0, -2.0]), np.zeros(2), np.zeros(2), np.array([1.0, 0.9]),
    ...             np.array([True, False]), np.array([True, True]), 1.0)
    array([-2., -2.])
    """
    shape = np.shape(rewards)
    r, v, nv, g = (
        np.asarray(x, dtype=np.float64).reshape(shape[0], -1)
        for x in (rewards, values, next_values, discounts)
    )
    cont = np.asarray(continues, dtype=bool).reshape(r.shape)
    ok = np.asarray(valid, dtype=bool).reshape(r.shape)
    delta = np.where(ok, r + g * nv - v, 0.0)
    adv = np.zeros_like(r)
    running = np.zeros(r.shape[1])
    for t in range(r.shape[0] - 1, -1, -1):
        running = np.where(ok[t], delta[t] + np.where(cont[t], g[t] * lam * running, 0.0), 0.0)
        adv[t] = running
    return adv.reshape(shape)


def mixed_advantages(
    a_immediate: F64,
    a_retention: F64,
    alpha: float,
    valid_retention: NDArray[np.bool_],
    groups: NDArray[np.int64] | None = None,
) -> F64:
    """``(1 - alpha) norm(A_I) + alpha norm(A_T)``, each normalised over the batch first.

    ``norm`` subtracts the mean and divides by the standard deviation (over the rows where the
    retention target is known, for ``A_T``; 0 elsewhere). Normalising before mixing keeps the
    retention advantage, in units of returning time, from swamping the immediate one. With
    ``groups``, ``A_T`` is normalised within each user group, so a group whose returning time
    varies little (frequent users) weighs as much in the retention signal as the others.

    Examples
    --------
    >>> a = mixed_advantages(np.array([0.0, 2.0]), np.array([5.0, -5.0]), 0.25, np.ones(2, bool))
    >>> a.round(6)
    array([-0.5,  0.5])
    """

    def norm(x: F64, rows: NDArray[np.bool_]) -> F64:
        out = np.zeros_like(x)
        if rows.sum() >= 2:
            sel = x[rows]
            out[rows] = (sel - sel.mean()) / (sel.std() + 1e-8)
        return out

    mix = (1.0 - alpha) * norm(a_immediate, np.ones(len(a_immediate), dtype=bool))
    if alpha:
        if groups is None:
            a_t = norm(a_retention, valid_retention)
        else:
            a_t = sum(
                (norm(a_retention, valid_retention & (groups == g)) for g in np.unique(groups)),
                np.zeros(len(a_retention)),
            )
        mix = mix + alpha * a_t
    return mix


class RunningMoments:
    """Running mean and variance of vectors (Chan et al. parallel update)."""

    def __init__(self, dim: int) -> None:
        self.count = 0.0
        self.mean = np.zeros(dim)
        self.var = np.ones(dim)

    def update(self, x: F64) -> None:
        """Fold the rows of ``x`` into the moments."""
        n = x.shape[0]
        if n == 0:
            return
        mean, var = x.mean(axis=0), x.var(axis=0)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    def normalise(self, x: F64) -> F64:
        """``(x - mean) / std``, clipped to [-10, 10]."""
        return np.clip((x - self.mean) / np.sqrt(self.var + 1e-8), -10.0, 10.0)


class Lanes:
    """A single env or a vector env as ``n`` parallel users with ``NEXT_STEP`` autoreset.

    A single env is restarted by the step after its episode ends, as a Gymnasium vector env with
    ``AutoresetMode.NEXT_STEP`` does: that step serves no request (``served`` is False), returns the
    new user's first observation and ``reset``'s info. Vector envs must use that mode.

    Parameters
    ----------
    env : gymnasium.Env or gymnasium.vector.VectorEnv
        ``Discrete(K)`` actions per user and observations ``{"user", "candidates"}``.
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.vector = isinstance(env, VectorEnv)
        space = env.single_action_space if self.vector else env.action_space
        if not isinstance(space, spaces.Discrete):
            raise ConfigError(
                f"DualCritic needs a Discrete(K) action space (an index into the candidates); "
                f"got {space}."
            )
        if self.vector:
            mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
            if AutoresetMode(mode) != AutoresetMode.NEXT_STEP:
                raise ConfigError(
                    f"DualCritic needs a vector env with autoreset_mode NEXT_STEP (the gap of a "
                    f"session arrives on the next step of the same user); got {mode}."
                )
        self.n = int(env.num_envs) if self.vector else 1
        self._needs_reset = np.zeros(self.n, dtype=bool)

    def reset(self, seed: int) -> tuple[dict[str, F64], dict[str, Any]]:
        """Start every user; observations batched ``(n, ...)`` and the info in vector form."""
        obs, info = self.env.reset(seed=seed)
        self._needs_reset[:] = False
        return self._batched(obs, info)

    def step(
        self, actions: NDArray[np.int64]
    ) -> tuple[dict[str, F64], F64, NDArray[np.bool_], NDArray[np.bool_], dict[str, Any], Any]:
        """Step every user; returns ``obs, reward, terminated, truncated, info, served``."""
        served = ~self._needs_reset
        if self.vector:
            obs, reward, term, trunc, info = self.env.step(actions)
            reward, term, trunc = (np.asarray(x) for x in (reward, term, trunc))
        elif self._needs_reset[0]:
            obs, info = self.env.reset()
            obs, info = self._batched(obs, info)
            reward, term, trunc = np.zeros(1), np.zeros(1, bool), np.zeros(1, bool)
        else:
            obs1, r, t, u, info1 = self.env.step(int(actions[0]))
            obs, info = self._batched(obs1, info1)
            reward, term, trunc = np.array([r], dtype=np.float64), np.array([t]), np.array([u])
        self._needs_reset = served & (term | trunc)
        return obs, reward.astype(np.float64), term & served, trunc & served, info, served

    def _batched(self, obs: Any, info: dict[str, Any]) -> tuple[dict[str, F64], dict[str, Any]]:
        if self.vector:
            return obs, info
        out: dict[str, Any] = {}
        for key, value in info.items():
            out[key], out[f"_{key}"] = np.array([value]), np.array([True])
        return {k: np.asarray(v)[None] for k, v in obs.items()}, out

    def field(self, info: dict[str, Any], key: str, default: F64) -> tuple[F64, NDArray[np.bool_]]:
        """``info[key]`` per user where present (its ``_key`` mask), ``default`` elsewhere."""
        if key not in info:
            return np.asarray(default), np.zeros(self.n, dtype=bool)
        mask = np.asarray(info.get(f"_{key}", np.ones(self.n, dtype=bool)), dtype=bool)
        values = np.asarray(info[key])
        return np.where(mask, values, default), mask
