"""RLUR-style dual-critic actor-critic for user retention (Cai et al. 2023).

The problem is an infinite-horizon, request-based MDP: each step is one request, and the objective
mixes the immediate feedback of the requests with the returning time between sessions, which
arrives only when the user comes back. The agent has

- an **actor** over the K candidates of an observation. From the user vector it computes a weight
  vector ``w(s)`` over the candidate features and scores each candidate by ``c_j . w(s)``; the
  action is drawn from ``softmax_j(c_j . w(s))``. This is the paper's action (weights over each
  item's predicted signals, ranking by the weighted sum), made stochastic so that it has
  propensities and a likelihood gradient. In :class:`~simkit.agents.retention_problem.
  RetentionTestEnv` the candidate features are ``(p_click, p_sat)``, so ``w(s)`` is the paper's
  ``(a1, a2)`` and a near-greedy policy is a ranking weight ``theta = a2 / (a1 + a2)``;
- an **immediate critic** ``V_I(s)`` of the immediate rewards, discounted by ``gamma_immediate``
  per request, each session ending its horizon;
- a **retention critic** ``V_T(s)`` of the retention reward ``r_T = -gap`` (the returning time,
  credited to the last request of the session it follows), with its own discount: 1 between
  requests of a session and ``gamma`` across a session boundary, so that
  ``V_T(session start) = E[sum_n gamma^n (-T_n)]``.

Each update collects ``batch_size`` requests, computes generalised advantage estimates ``A_I``
and ``A_T`` with each critic's own per-step discount, normalises each to zero mean and unit
variance over the batch, and mixes them: ``A = (1 - alpha) A_I + alpha A_T``. The actor minimises
``-(1/n) sum_i sg(rho_i A_i) log pi(a_i|s_i) - entropy_coef * H``, where ``rho_i =
exp(-kappa |log pi(a_i|s_i) - log beta(a_i|s_i)|)`` is the paper's soft regularisation: it
down-weights samples on which the policy has already moved far from the one that collected them
(``beta``), which keeps several passes over a batch stable. ``sg`` marks constants.

Retention signal, as the paper handles its bias (user groups of different activity return at
different rates, and the frequent users would dominate): each user group's ``r_T`` is divided by
the running root-mean-square of that group's ``r_T``, so every group's retention signal has the
same scale. The critic works in these units; :meth:`DualCritic.retention_value` returns days.

**What the agent reads from the env.** Observations ``{"user": (d_u,), "candidates": (K, d_c)}``
and a ``Discrete(K)`` action space. From each step's ``info``:

- ``session_index`` (int, required): the session of the request just served. A change from one
  step to the next marks a session boundary: the earlier step was the session's last request;
- ``gap`` (float, required on the first step of every session after the first): the returning
  time since the previous session ended (any unit; days in simkit). It is credited back to the
  last request of the previous session (delayed reward), never to the step that carries it. A new
  session without ``gap`` leaves that request's retention target unknown (it is skipped);
- ``session_end`` (bool, optional): with ``truncated=True`` it says the episode stopped right after
  a session ended, so that session's return was never observed: its retention target is skipped
  (right-censoring is truncation, not termination) and earlier requests bootstrap through it;
  without it a truncation is taken to be mid-session and both critics bootstrap from the final
  observation;
- ``immediate_reward`` (float, optional): the immediate part; the scalar reward otherwise;
- ``user_group`` (int, optional, also read from ``reset``'s info): the group of the retention
  normalisation; one group when absent.

``terminated=True`` means the user will never return: both critics stop there (factor 0) and no
retention reward is added. ``day`` is not needed by the agent.

References
----------
Cai, Liu, Wang, Zuo, Xie, Yang, Zheng, Jiang, Gai. Reinforcing user retention in a billion scale
short video recommender system. WWW 2023 Companion. arXiv:2302.01724.
Schulman, Moritz, Levine, Jordan, Abbeel. High-dimensional continuous control using generalized
advantage estimation. ICLR 2016.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from simkit import nn
from simkit.agents.base import (
    Observation,
    SavableAgent,
    blas_threads,
    draw_from,
    observation_parts,
    register_agent,
)
from simkit.errors import ArtifactError, ConfigError, SimkitError

__all__ = [
    "CandidateWeightActor",
    "DualCritic",
    "DualCriticConfig",
    "TrainingDivergedError",
    "mixed_advantages",
    "session_gae",
]

F64 = NDArray[Any]


class TrainingDivergedError(SimkitError):
    """Training met a NaN or infinite value and stopped."""


@dataclass(frozen=True, kw_only=True)
class DualCriticConfig:
    """Settings of :class:`DualCritic`.

    Parameters
    ----------
    alpha : float
        Weight of the retention advantage in ``(1 - alpha) A_I + alpha A_T``; 0 trains on the
        immediate critic alone.
    gamma : float
        Retention discount across session boundaries (1 inside a session).
    gamma_immediate : float
        Immediate discount per request; a session ends its horizon.
    gae_lambda : float
        lambda of the generalised advantage estimates of both critics.
    actor_hidden, critic_hidden : tuple of int
        Hidden widths of the actor's user net and of each critic.
    activation : {"relu", "tanh"}
    actor_lr, critic_lr : float
        Adam step sizes.
    batch_size : int
        Requests collected per update.
    n_epochs, n_minibatches : int
        Passes over each batch and minibatches per pass.
    soft_kappa : float
        kappa of the soft regularisation weight ``exp(-kappa |log pi - log beta|)``; 0 turns it
        off.
    entropy_coef : float
        Weight of the entropy bonus.
    group_normalisation : bool
        Divide each user group's retention reward by its running root-mean-square.
    normalise_observations : bool
        Standardise user vectors by running mean and variance before the nets.
    grad_clip : float or None
        Global gradient-norm clip of every net.
    learn_actor : bool
        Update the actor; False evaluates the critics of a fixed policy.
    blas_threads : int or None
        BLAS threads while learning (1: small products are fastest single-threaded).
    """

    alpha: float = 0.8
    gamma: float = 0.9
    gamma_immediate: float = 0.9
    gae_lambda: float = 0.9
    actor_hidden: tuple[int, ...] = (32,)
    critic_hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    actor_lr: float = 0.02
    critic_lr: float = 3e-3
    batch_size: int = 2048
    n_epochs: int = 4
    n_minibatches: int = 4
    soft_kappa: float = 1.0
    entropy_coef: float = 0.0
    group_normalisation: bool = True
    normalise_observations: bool = True
    grad_clip: float | None = 10.0
    learn_actor: bool = True
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.alpha <= 1.0:
            problems.append(f"alpha must be in [0, 1]; got {self.alpha}")
        for name in ("gamma", "gamma_immediate", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1]; got {getattr(self, name)}")
        if self.gamma >= 1.0:
            problems.append(
                f"gamma must be < 1 (the retention horizon is infinite); got {self.gamma}"
            )
        if self.activation not in ("relu", "tanh"):
            problems.append(f"activation must be 'relu' or 'tanh'; got {self.activation!r}")
        for name in ("actor_lr", "critic_lr"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("batch_size", "n_epochs", "n_minibatches"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1; got {getattr(self, name)}")
        if any(h < 1 for h in (*self.actor_hidden, *self.critic_hidden)):
            problems.append(
                f"hidden widths must be >= 1; got {self.actor_hidden}, {self.critic_hidden}"
            )
        for name in ("soft_kappa", "entropy_coef"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 or None; got {self.grad_clip}")
        if self.blas_threads is not None and self.blas_threads < 1:
            problems.append(f"blas_threads must be >= 1 or None; got {self.blas_threads}")
        if problems:
            raise ConfigError("Invalid DualCriticConfig: " + "; ".join(problems) + ".")


# --------------------------------------------------------------------------- pieces


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
        sizes = [user_dim, *hidden, item_dim]
        if rng is None:
            layers: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(nn.Dense(a, b, init="zeros"))
                if i < len(sizes) - 2:
                    layers.append(nn.ReLU() if activation == "relu" else nn.Tanh())
            self.net = nn.Sequential(layers)
        else:
            self.net = nn.mlp(sizes, rng=rng, activation=activation)
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
    rewards, values, next_values, discounts : ndarray, shape (n,)
        ``r_t``, ``V(s_t)``, ``V(s_t+1)`` and the factor ``g_t`` of each transition, in time order.
    continues, valid : ndarray of bool, shape (n,)
    lam : float

    Returns
    -------
    ndarray, shape (n,)

    Examples
    --------
    >>> session_gae(np.array([0.0, -2.0]), np.zeros(2), np.zeros(2), np.array([1.0, 0.9]),
    ...             np.array([True, False]), np.array([True, True]), 1.0)
    array([-2., -2.])
    """
    adv = np.zeros(len(rewards))
    delta = np.where(valid, rewards + discounts * next_values - values, 0.0)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if not valid[t]:
            running = 0.0
            continue
        running = delta[t] + (discounts[t] * lam * running if continues[t] else 0.0)
        adv[t] = running
    return adv


def mixed_advantages(
    a_immediate: F64, a_retention: F64, alpha: float, valid_retention: NDArray[np.bool_]
) -> F64:
    """``(1 - alpha) norm(A_I) + alpha norm(A_T)``, each normalised over the batch first.

    ``norm`` subtracts the mean and divides by the standard deviation (over the rows where the
    retention target is known, for ``A_T``; 0 elsewhere). Normalising before mixing keeps the
    retention advantage, in units of returning time, from swamping the immediate one.

    Examples
    --------
    >>> mixed_advantages(np.array([0.0, 2.0]), np.array([5.0, -5.0]), 0.5, np.array([True, True]))
    array([ 0.,  0.])
    """

    def norm(x: F64, rows: NDArray[np.bool_]) -> F64:
        out = np.zeros_like(x)
        if rows.sum() >= 2:
            sel = x[rows]
            out[rows] = (sel - sel.mean()) / (sel.std() + 1e-8)
        return out

    mix = (1.0 - alpha) * norm(a_immediate, np.ones(len(a_immediate), dtype=bool))
    if alpha:
        mix = mix + alpha * norm(a_retention, valid_retention)
    return mix


class _RunningMoments:
    """Running mean and variance of vectors (Chan et al. parallel update)."""

    def __init__(self, dim: int) -> None:
        self.count = 0.0
        self.mean = np.zeros(dim)
        self.var = np.ones(dim)

    def update(self, x: F64) -> None:
        n = x.shape[0]
        mean, var = x.mean(axis=0), x.var(axis=0)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    def normalise(self, x: F64) -> F64:
        return np.clip((x - self.mean) / np.sqrt(self.var + 1e-8), -10.0, 10.0)


# --------------------------------------------------------------------------- the agent

_FIELDS = (
    "user",
    "cands",
    "action",
    "logp",
    "r_imm",
    "r_ret",
    "group",
    "g_imm",
    "g_ret",
    "valid_ret",
    "next_user",
    "end",
)


@register_agent
class DualCritic(SavableAgent):
    """Actor over candidates with an immediate and a retention critic (RLUR, Cai et al. 2023).

    See the module docstring for the method and for what the agent reads from ``info``.

    Parameters
    ----------
    config : DualCriticConfig, optional
    **overrides
        Config fields, e.g. ``DualCritic(alpha=0.0)``.

    Attributes
    ----------
    last_propensity : float or None
        pi of the candidate the last :meth:`act` showed.
    group_scale_ : dict of int to float
        Running root-mean-square of each user group's retention reward.
    updates_ : list of dict
        Per update: env step, critic losses, actor loss, mean entropy.

    Examples
    --------
    >>> from simkit.agents.retention_problem import RetentionTestEnv
    >>> agent = DualCritic(batch_size=256)
    >>> _ = agent.learn_online(RetentionTestEnv(), 600, rng=np.random.default_rng(0))
    >>> agent.action_proba(RetentionTestEnv().reset(seed=0)[0]).shape
    (20,)
    """

    Config = DualCriticConfig

    def __init__(self, config: DualCriticConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or DualCriticConfig(), **overrides)
        self.actor: CandidateWeightActor | None = None
        self.critic_immediate: nn.Sequential | None = None
        self.critic_retention: nn.Sequential | None = None
        self.dims: tuple[int, int] | None = None
        self.last_propensity: float | None = None
        self.group_scale_: dict[int, float] = {}
        self._group_sq: dict[int, tuple[float, float]] = {}
        self.updates_: list[dict[str, float]] = []

    # ------------------------------------------------------------------ networks

    def build(self, user_dim: int, item_dim: int, *, rng: np.random.Generator | None) -> None:
        """Create the nets and optimisers (zero weights when ``rng`` is None)."""
        cfg = self.config
        self.dims = (int(user_dim), int(item_dim))
        self.actor = CandidateWeightActor(user_dim, item_dim, cfg.actor_hidden, cfg.activation, rng)
        critics = []
        for _ in range(2):
            if rng is None:
                critics.append(self._zero_mlp([user_dim, *cfg.critic_hidden, 1]))
            else:
                critics.append(
                    nn.mlp([user_dim, *cfg.critic_hidden, 1], rng=rng, activation=cfg.activation)
                )
        self.critic_immediate, self.critic_retention = critics
        self.moments = _RunningMoments(user_dim)
        self._actor_opt = nn.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self._imm_opt = nn.Adam(self.critic_immediate.parameters(), lr=cfg.critic_lr)
        self._ret_opt = nn.Adam(self.critic_retention.parameters(), lr=cfg.critic_lr)

    def _zero_mlp(self, sizes: list[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Dense(a, b, init="zeros"))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU() if self.config.activation == "relu" else nn.Tanh())
        return nn.Sequential(layers)

    def _check_built(self) -> None:
        if self.actor is None:
            raise ConfigError("DualCritic has no networks yet: call learn_online or build first.")

    def _inputs(self, users: F64) -> F64:
        return self.moments.normalise(users) if self.config.normalise_observations else users

    def logits(self, users: F64, candidates: F64) -> F64:
        """Actor logits ``(n, K)`` for raw user vectors ``(n, d_u)`` and candidates ``(n, K, d_c)``."""
        self._check_built()
        assert self.actor is not None
        return self.actor.forward(self._inputs(users), candidates)

    # ------------------------------------------------------------------ acting and values

    def action_proba(self, obs: Observation, *, rng: np.random.Generator | None = None) -> F64:
        """pi over the candidates of ``obs`` (exact; ``rng`` is not used)."""
        user, cands = observation_parts(obs)
        return nn.softmax(self.logits(user[None], cands[None]))[0]

    def act(self, obs: Observation, *, rng: np.random.Generator, greedy: bool = False) -> int:
        """Sample a candidate from pi (the most probable one when ``greedy``, propensity 1)."""
        proba = self.action_proba(obs)
        if greedy:
            a = int(np.argmax(proba))
            self.last_propensity = 1.0
        else:
            a = draw_from(proba, rng)
            self.last_propensity = float(proba[a])
        return a

    def immediate_value(self, obs: Observation) -> float:
        """``V_I`` of the observation's state."""
        self._check_built()
        assert self.critic_immediate is not None
        user, _ = observation_parts(obs)
        return float(self.critic_immediate.forward(self._inputs(user[None]))[0, 0])

    def retention_value(self, obs: Observation, *, group: int = 0) -> float:
        """``V_T`` of the observation's state in units of the gap (undoing group normalisation).

        At a session start this estimates ``E[sum_n gamma^n (-T_n)]``.
        """
        self._check_built()
        assert self.critic_retention is not None
        user, _ = observation_parts(obs)
        v = float(self.critic_retention.forward(self._inputs(user[None]))[0, 0])
        return v * self._scale(group)

    def _scale(self, group: int) -> float:
        if not self.config.group_normalisation:
            return 1.0
        return self.group_scale_.get(int(group), 1.0)

    def _observe_gap(self, group: int, reward: float) -> None:
        n, sq = self._group_sq.get(group, (0.0, 0.0))
        n, sq = n + 1.0, sq + reward * reward
        self._group_sq[group] = (n, sq)
        self.group_scale_[group] = max(math.sqrt(sq / n), 1e-6)

    # ------------------------------------------------------------------ training

    def learn_online(
        self, env: Any, n_steps: int, *, rng: np.random.Generator, progress: bool = False
    ) -> F64:
        """Interact with ``env`` for ``n_steps`` requests, updating every ``batch_size``.

        Parameters
        ----------
        env : gymnasium.Env
            ``Discrete(K)`` actions, observations ``{"user", "candidates"}``, and the ``info`` keys
            of the module docstring.
        n_steps : int
            Env steps.
        rng : numpy.random.Generator
            Initial weights, env seed, actions and minibatches (separate streams).
        progress : bool
            Show a progress bar.

        Returns
        -------
        ndarray
            Sum of the scalar rewards of each completed episode.

        Raises
        ------
        TrainingDivergedError
            When a reward, gap, loss or parameter becomes NaN or infinite; the message names the
            env step and the quantity.
        ConfigError
            When the action space is not ``Discrete``.
        """
        if not isinstance(env.action_space, spaces.Discrete):
            raise ConfigError(
                f"DualCritic needs a Discrete(K) action space (an index into the candidates); "
                f"got {env.action_space}."
            )
        if n_steps < 1:
            raise ConfigError(f"n_steps must be at least 1; got {n_steps}")
        init_rng, env_rng, act_rng, batch_rng = rng.spawn(4)
        obs, info = env.reset(seed=int(env_rng.integers(2**63 - 1)))
        user, cands = observation_parts(obs)
        if self.actor is None:
            self.build(user.shape[0], cands.shape[1], rng=init_rng)
        steps: Any = range(n_steps)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="DualCritic")
        with blas_threads(self.config.blas_threads):
            returns = self._run(env, obs, info, steps, act_rng, batch_rng)
        return np.asarray(returns)

    def _run(
        self,
        env: Any,
        obs: Observation,
        info: dict[str, Any],
        steps: Any,
        act_rng: np.random.Generator,
        batch_rng: np.random.Generator,
    ) -> list[float]:
        buf: dict[str, list[Any]] = {k: [] for k in _FIELDS}
        returns: list[float] = []
        episode_return = 0.0
        group = int(info.get("user_group", 0))
        prev_session: int | None = None  # session of the last stored, not yet finalised request
        for step in steps:
            user, cands = observation_parts(obs)
            _check_finite(user, "observation 'user'", step)
            a = self.act(obs, rng=act_rng)
            next_obs, reward, terminated, truncated, info = env.step(a)
            group = int(info.get("user_group", group))
            r_imm = float(info.get("immediate_reward", reward))
            _check_finite(np.array([reward, r_imm]), "reward", step)
            session = int(info["session_index"]) if "session_index" in info else 0
            if prev_session is not None:  # this step's info finalises the previous request
                self._finalise_previous(buf, session != prev_session, info, group, step)
            assert self.last_propensity is not None
            next_user, _ = observation_parts(next_obs)
            row: tuple[Any, ...] = (user, cands, a, math.log(self.last_propensity), r_imm, 0.0)
            row += (group, self.config.gamma_immediate, 1.0, True, next_user, False)
            for key, value in zip(_FIELDS, row):
                buf[key].append(value)
            episode_return += float(reward)
            prev_session = session
            if terminated or truncated:
                self._finalise_last(buf, terminated, bool(info.get("session_end", False)))
                returns.append(episode_return)
                episode_return, prev_session = 0.0, None
                next_obs, info = env.reset()
                group = int(info.get("user_group", 0))
            obs = next_obs
            n_ready = len(buf["action"]) - (prev_session is not None)
            if n_ready >= self.config.batch_size:
                self._update({k: v[:n_ready] for k, v in buf.items()}, batch_rng, step)
                buf = {k: v[n_ready:] for k, v in buf.items()}
        return returns

    def _finalise_previous(
        self,
        buf: dict[str, list[Any]],
        boundary: bool,
        info: dict[str, Any],
        group: int,
        step: int,
    ) -> None:
        if not boundary:
            return  # in-session: factor 1 for retention, gamma_immediate for the immediate critic
        buf["g_imm"][-1] = 0.0
        buf["g_ret"][-1] = self.config.gamma
        if "gap" not in info:
            buf["valid_ret"][-1] = False
            return
        gap = float(info["gap"])
        _check_finite(np.array([gap]), "info['gap']", step)
        buf["r_ret"][-1] = -gap
        buf["group"][-1] = group
        self._observe_gap(group, -gap)

    def _finalise_last(
        self, buf: dict[str, list[Any]], terminated: bool, session_end: bool
    ) -> None:
        buf["end"][-1] = True
        if terminated:
            buf["g_imm"][-1] = 0.0
            buf["g_ret"][-1] = 0.0
        elif session_end:  # truncated right after a session: its return is never observed
            buf["g_imm"][-1] = 0.0
            buf["valid_ret"][-1] = False

    def _update(self, buf: dict[str, list[Any]], rng: np.random.Generator, step: int) -> None:
        cfg = self.config
        assert self.critic_immediate is not None and self.critic_retention is not None
        self.moments.update(np.asarray(buf["user"]))
        users = self._inputs(np.asarray(buf["user"]))
        next_users = self._inputs(np.asarray(buf["next_user"]))
        cands = np.asarray(buf["cands"])
        actions = np.asarray(buf["action"], dtype=np.int64)
        logp_beta = np.asarray(buf["logp"])
        groups = np.asarray(buf["group"], dtype=np.int64)
        scale = np.array([self._scale(g) for g in groups])
        r_ret = np.asarray(buf["r_ret"]) / scale
        valid = np.asarray(buf["valid_ret"], dtype=bool)
        continues = ~np.asarray(buf["end"], dtype=bool)
        adv, targets = {}, {}
        for name, critic, rewards, disc, ok in (
            ("imm", self.critic_immediate, np.asarray(buf["r_imm"]), buf["g_imm"], None),
            ("ret", self.critic_retention, r_ret, buf["g_ret"], valid),
        ):
            v = critic.forward(users)[:, 0]
            v_next = critic.forward(next_users)[:, 0]
            ok_rows = np.ones(len(v), dtype=bool) if ok is None else ok
            adv[name] = session_gae(
                rewards, v, v_next, np.asarray(disc), continues, ok_rows, cfg.gae_lambda
            )
            targets[name] = adv[name] + v
        mixed = mixed_advantages(adv["imm"], adv["ret"], cfg.alpha, valid)
        n = len(actions)
        losses = {"imm": 0.0, "ret": 0.0, "actor": 0.0, "entropy": 0.0}
        n_mb = 0
        for _ in range(cfg.n_epochs):
            for idx in np.array_split(rng.permutation(n), cfg.n_minibatches):
                if idx.size == 0:
                    continue
                n_mb += 1
                for name, critic, opt, rows in (
                    ("imm", self.critic_immediate, self._imm_opt, idx),
                    ("ret", self.critic_retention, self._ret_opt, idx[valid[idx]]),
                ):
                    if rows.size == 0:
                        continue
                    loss, grad = nn.mse_loss(critic.forward(users[rows]), targets[name][rows, None])
                    critic.backward(grad)
                    self._step(opt)
                    losses[name] += loss
                loss, entropy = self.actor_loss_and_gradients(
                    users[idx], cands[idx], actions[idx], mixed[idx], logp_beta[idx]
                )
                if cfg.learn_actor:
                    self._step(self._actor_opt)
                losses["actor"] += loss
                losses["entropy"] += entropy
        record = {k: v / max(n_mb, 1) for k, v in losses.items()}
        for name, value in record.items():
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"DualCritic training stopped at env step {step}: the {_LOSS_NAMES[name]} is "
                    f"{value}. Lower actor_lr/critic_lr, set grad_clip, or check the env's rewards."
                )
        self._check_parameters(step)
        record["step"] = float(step)
        self.updates_.append(record)

    def actor_loss_and_gradients(
        self,
        users: F64,
        candidates: F64,
        actions: NDArray[np.int64],
        advantages: F64,
        logp_beta: F64,
    ) -> tuple[float, float]:
        """Soft-regularised policy-gradient loss; stores the actor's gradients.

        ``L = -(1/n) sum_i rho_i A_i log pi(a_i|s_i) - entropy_coef * mean_i H(pi(.|s_i))`` with
        ``rho_i = exp(-kappa |log pi(a_i|s_i) - logp_beta_i|)`` held constant.

        Parameters
        ----------
        users : ndarray, shape (n, d_u)
            User vectors as the nets see them (already normalised).
        candidates : ndarray, shape (n, K, d_c)
        actions : ndarray of int, shape (n,)
        advantages : ndarray, shape (n,)
            Mixed, normalised advantages (constants).
        logp_beta : ndarray, shape (n,)
            Log-probability of each action under the policy that collected it.

        Returns
        -------
        loss : float
        entropy : float
            Mean entropy of pi over the rows.
        """
        assert self.actor is not None
        cfg = self.config
        z = self.actor.forward(users, candidates)
        logp, p = nn.log_softmax_and_softmax(z)
        n = len(actions)
        rows = np.arange(n)
        logp_a = logp[rows, actions]
        rho = np.exp(-cfg.soft_kappa * np.abs(logp_a - logp_beta)) if cfg.soft_kappa else 1.0
        coef = rho * advantages / n
        loss = -float(coef @ logp_a)
        dz = p * coef[:, None]
        dz[rows, actions] -= coef
        h = -(p * logp).sum(axis=1, keepdims=True)
        if cfg.entropy_coef:
            loss -= cfg.entropy_coef * float(h.mean())
            dz += (cfg.entropy_coef / n) * p * (logp + h)
        self.actor.backward(dz)
        return loss, float(h.mean())

    def _step(self, opt: nn.Adam) -> None:
        if self.config.grad_clip is not None:
            nn.clip_grad_norm(opt.params, self.config.grad_clip)
        opt.step()

    def _modules(self) -> dict[str, nn.Module]:
        assert self.actor is not None
        assert self.critic_immediate is not None and self.critic_retention is not None
        return {
            "actor": self.actor.net,
            "critic_immediate": self.critic_immediate,
            "critic_retention": self.critic_retention,
        }

    def _check_parameters(self, step: int) -> None:
        for name, module in self._modules().items():
            for pname, p in module.named_parameters().items():
                if not np.all(np.isfinite(p.value)):
                    raise TrainingDivergedError(
                        f"DualCritic training stopped at env step {step}: parameter "
                        f"{name}.{pname} holds NaN or inf. Lower actor_lr/critic_lr or set "
                        "grad_clip."
                    )

    # ------------------------------------------------------------------ saving

    def _optimisers(self) -> dict[str, nn.Adam]:
        return {"actor_opt": self._actor_opt, "imm_opt": self._imm_opt, "ret_opt": self._ret_opt}

    def _get_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        if self.actor is None:
            return {}, {"built": False}
        arrays: dict[str, NDArray[Any]] = {}
        for name, module in self._modules().items():
            arrays |= {f"{name}.{k}": v for k, v in module.state_dict().items()}
        for name, opt in self._optimisers().items():
            arrays |= {f"{name}.{k}": v for k, v in opt.state_dict().items()}
        arrays["moments.mean"] = self.moments.mean.copy()
        arrays["moments.var"] = self.moments.var.copy()
        assert self.dims is not None
        state = {
            "built": True,
            "user_dim": self.dims[0],
            "item_dim": self.dims[1],
            "moments_count": self.moments.count,
            "group_sq": {str(g): list(v) for g, v in self._group_sq.items()},
        }
        return arrays, state

    def _set_state(self, arrays: dict[str, NDArray[Any]], state: dict[str, Any]) -> None:
        if not state.get("built"):
            return
        self.build(state["user_dim"], state["item_dim"], rng=None)
        try:
            objects: list[tuple[str, nn.Module | nn.Adam]] = [
                *self._modules().items(),
                *self._optimisers().items(),
            ]
            for name, obj in objects:
                prefix = f"{name}."
                obj.load_state_dict(
                    {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                )
            self.moments.mean = np.array(arrays["moments.mean"], dtype=np.float64)
            self.moments.var = np.array(arrays["moments.var"], dtype=np.float64)
        except KeyError as exc:
            raise ArtifactError(f"saved DualCritic agent lacks array {exc}") from exc
        self.moments.count = float(state["moments_count"])
        for g, (n, sq) in state["group_sq"].items():
            self._group_sq[int(g)] = (float(n), float(sq))
            self.group_scale_[int(g)] = max(math.sqrt(sq / n), 1e-6)


_LOSS_NAMES = {
    "imm": "immediate critic loss",
    "ret": "retention critic loss",
    "actor": "actor loss",
    "entropy": "policy entropy",
}


def _check_finite(x: F64, what: str, step: int) -> None:
    if not np.all(np.isfinite(x)):
        raise TrainingDivergedError(
            f"DualCritic training stopped at env step {step}: {what} is not finite "
            f"({np.asarray(x)[~np.isfinite(x)][:5].tolist()}). Check the env."
        )
