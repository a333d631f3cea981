"""RecoMind-style Double DQN: per-candidate Q, prioritised replay, top-K softmax exploration.

RecoMind (2025) trains an item-selection policy for a whole session in a simulator built from the
production models: the Q-network starts from the supervised model, so the untrained agent already
ranks like production, and it is trained by Double DQN with prioritised replay while exploring with
epsilon-greedy mixed with a softmax over the top 25% of the candidates by Q.

**Q per (state, candidate).** ``Q(s, a) = scale * prior(s, a) + f([s, x_a])``: a numpy MLP ``f``
scores the user state ``s`` joined to each candidate's feature row ``x_a``, so the same net serves
any number of candidates. ``prior(s, a)`` is the expected immediate reward of showing ``a`` in
``s``, supplied by the caller (:meth:`DQN.set_reward_prior`; in :meth:`DQN.learn_online` the env's
``immediate_values(obs)`` when it has one). It takes a batch of observations (``user`` (N, d_u),
``candidates`` (N, K, d_c)) and returns an (N, K) array. With ``warm_start=True`` the last layer of
``f`` starts at zero, so before any update Q equals the prior and the greedy policy is the
supervised ranker (the optimal Q at gamma = 0); TD learning then adds the discounted future. With
``warm_start=False`` there is no prior and ``f`` starts random. ``scale`` is ``reward_scale``,
which puts rewards on a scale where the Huber threshold (1) and the softmax temperature make sense;
:meth:`DQN.q_values` reports Q in reward units.

**Double DQN** (van Hasselt et al. 2016). For a transition ``(s, a, r, s')`` with candidates
``C(s')`` the target is

    y = scale * r + gamma * (1 - terminated) * Q_target(s', argmax_{b in C(s')} Q_online(s', b)),

(``double=False``: ``max_b Q_target(s', b)``, the vanilla target). Only termination stops the
bootstrap: a session cut at the env's step limit (truncation) still bootstraps. The loss is the
Huber loss of ``Q_online(s, a) - y`` weighted by the importance weights of prioritised replay
(:mod:`simkit.agents.per`, Schaul et al. 2016); the gradient's global norm is clipped; the target
net takes ``theta' <- tau theta + (1 - tau) theta'`` every ``target_update_interval`` updates
(``tau=1``: a periodic copy; ``interval=1`` and small ``tau``: a soft update).

**Exploration.** With probability ``1 - epsilon`` the greedy candidate (ties split evenly); with
probability ``epsilon`` an exploratory draw: with share ``1 - u`` a softmax of ``Q / temperature``
over the ``top_k`` best candidates by Q (default 25% of them), with share ``u`` uniform over all
candidates. The uniform floor is a toolkit addition: without it, a warm-started learner whose top-K
holds only myopically good items never tries the others. The probability of the shown item is
recorded exactly,

    P(a) = (1 - eps) 1[a in argmax] / #ties + eps (1 - u) softmax_topK(a) + eps u / K,

in ``last_propensity`` and :meth:`DQN.action_proba` (``exploration="epsilon_greedy"``: plain
``(1 - eps) 1[argmax] / #ties + eps / K``). ``epsilon`` decays linearly from ``epsilon_start`` to
``epsilon_end`` over ``exploration_fraction`` of training; outside training the agent acts with
``eval_epsilon`` (0: greedy).

Inputs are standardised with the mean and standard deviation of the first replay contents (frozen
at the first update, saved with the agent) and clipped to +-5. Observations with a leading batch
axis (a vector env's) are acted on in one forward pass. The replay buffer is not saved.

References
----------
Chen, Gomes et al. RecoMind: a reinforcement learning framework for optimizing in-session user
satisfaction in recommendation systems. 2025. arXiv:2508.00201.
van Hasselt, Guez, Silver. Deep reinforcement learning with double Q-learning. AAAI 2016.
arXiv:1509.06461.
Schaul, Quan, Antonoglou, Silver. Prioritized experience replay. ICLR 2016. arXiv:1511.05952.
Mnih et al. Human-level control through deep reinforcement learning. Nature 518, 2015.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from numpy.typing import NDArray

from simkit import diagnostics, nn
from simkit.agents.base import Observation, SavableAgent, blas_threads, register_agent
from simkit.agents.per import PrioritizedReplay, annealed_beta
from simkit.errors import ArtifactError, ConfigError

__all__ = ["DQN", "DQNConfig", "RewardPrior", "exploration_proba"]

F64 = NDArray[Any]
RewardPrior = Callable[[Mapping[str, NDArray[Any]]], NDArray[Any]]
"""``prior(obs_batch) -> (N, K)``: expected immediate reward of each candidate of each state."""

_CLIP = 5.0  # standardised inputs are clipped to +-5


@dataclass(frozen=True, kw_only=True)
class DQNConfig:
    """Settings of :class:`DQN`.

    Parameters
    ----------
    hidden : tuple of int
        Hidden widths of the residual Q net.
    gamma : float
        Discount; 0.75 is a horizon of about 4 steps, as in RecoMind's in-session setting.
    double : bool
        Double DQN targets (False: vanilla ``max`` over the target net).
    learning_rate, batch_size : float, int
        Adam step size and replay batch size.
    buffer_size : int
        Replay capacity (transitions; each stores both candidate matrices).
    learning_starts : int
        Env steps before the first update.
    train_frequency : int
        Env steps per gradient update (a vector env of N sessions makes N env steps per call).
    target_update_interval : int
        Updates between target-net refreshes.
    tau : float
        Weight of the online net in each refresh (1: copy).
    huber_delta : float
        Threshold of the Huber loss.
    grad_clip : float or None
        Global gradient-norm clip.
    per_alpha, per_beta0, per_eps : float
        Priority exponent, initial importance exponent (annealed to 1 over training) and priority
        offset of prioritised replay.
    exploration : {"topk_softmax", "epsilon_greedy"}
    epsilon_start, epsilon_end, exploration_fraction : float
        Linear epsilon schedule over that fraction of ``learn_online``'s steps.
    eval_epsilon : float
        Epsilon outside training (0: greedy; > 0 gives a loggable stochastic policy).
    top_k : int or None
        Candidates in the exploratory softmax; None: ``ceil(top_k_fraction * K)``.
    top_k_fraction : float
    temperature : float
        Softmax temperature, in the units of ``reward_scale * Q``.
    uniform_share : float
        Share u of exploratory draws that are uniform over all candidates.
    warm_start : bool
        Q = prior + residual with a zero last layer; False: Q = residual, random init, no prior.
    reward_scale : float
        Rewards (and the prior) are multiplied by this inside the learner.
    normalize_inputs : bool
        Standardise inputs with statistics frozen at the first update.
    dtype : {"float32", "float64"}
        Floating type of the nets.
    blas_threads : int or None
        BLAS threads while learning (None: leave numpy's setting).
    """

    hidden: tuple[int, ...] = (64, 64)
    gamma: float = 0.75
    double: bool = True
    learning_rate: float = 1e-3
    batch_size: int = 128
    buffer_size: int = 20_000
    learning_starts: int = 1_000
    train_frequency: int = 4
    target_update_interval: int = 250
    tau: float = 1.0
    huber_delta: float = 1.0
    grad_clip: float | None = 10.0
    per_alpha: float = 0.6
    per_beta0: float = 0.4
    per_eps: float = 1e-6
    exploration: str = "topk_softmax"
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    exploration_fraction: float = 0.5
    eval_epsilon: float = 0.0
    top_k: int | None = None
    top_k_fraction: float = 0.25
    temperature: float = 0.5
    uniform_share: float = 0.1
    warm_start: bool = True
    reward_scale: float = 1.0
    normalize_inputs: bool = True
    dtype: str = "float32"
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        problems = []
        if self.exploration not in ("topk_softmax", "epsilon_greedy"):
            problems.append(
                f"exploration must be 'topk_softmax' or 'epsilon_greedy'; got {self.exploration!r}"
            )
        if self.dtype not in ("float32", "float64"):
            problems.append(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}")
        for name in ("gamma", "tau", "epsilon_start", "epsilon_end", "eval_epsilon"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must lie in [0, 1]; got {getattr(self, name)}")
        for name in ("uniform_share", "per_beta0", "exploration_fraction", "top_k_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must lie in [0, 1]; got {getattr(self, name)}")
        for name in ("learning_rate", "temperature", "huber_delta", "reward_scale", "per_eps"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("batch_size", "buffer_size", "train_frequency", "target_update_interval"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.learning_starts < 0 or self.per_alpha < 0:
            problems.append("learning_starts and per_alpha must be >= 0")
        if self.top_k is not None and self.top_k < 1:
            problems.append(f"top_k must be >= 1 or None; got {self.top_k}")
        if any(h < 1 for h in self.hidden):
            problems.append(f"hidden widths must be >= 1; got {self.hidden}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 or None; got {self.grad_clip}")
        if self.blas_threads is not None and self.blas_threads < 1:
            problems.append(f"blas_threads must be >= 1 or None; got {self.blas_threads}")
        if problems:
            raise ConfigError("Invalid DQNConfig: " + "; ".join(problems) + ".")


def _greedy(q: F64) -> F64:
    best = q >= q.max(axis=1, keepdims=True)
    return best / best.sum(axis=1, keepdims=True)


def _topk_softmax(q: F64, k: int, temperature: float) -> F64:
    top = np.argsort(-q, axis=1, kind="stable")[:, :k]
    rows = np.arange(q.shape[0])[:, None]
    out = np.zeros(q.shape, dtype=np.float64)
    out[rows, top] = nn.softmax(q[rows, top].astype(np.float64) / temperature)
    return out


def exploration_proba(
    q: F64,
    epsilon: float,
    *,
    exploration: str = "topk_softmax",
    top_k: int = 1,
    temperature: float = 1.0,
    uniform_share: float = 0.1,
) -> F64:
    """Exact probability of each candidate under the exploration mixture.

    Parameters
    ----------
    q : ndarray, shape (N, K)
        Q-values of each state's candidates.
    epsilon : float
        Probability of an exploratory draw.
    exploration : {"topk_softmax", "epsilon_greedy"}
    top_k, temperature, uniform_share
        The top-K softmax and the uniform share u of exploratory draws.

    Returns
    -------
    ndarray, shape (N, K)
        ``(1-eps) greedy + eps ((1-u) softmax_topK + u/K)``; epsilon-greedy: ``(1-eps) greedy +
        eps/K``. The greedy part splits its mass evenly over tied maxima.

    Examples
    --------
    >>> exploration_proba(np.array([[1.0, 0.0, 0.0]]), 0.5, top_k=1, uniform_share=0.0)
    array([[1., 0., 0.]])
    """
    soft = _topk_softmax(q, min(top_k, q.shape[1]), temperature)
    return _mixture(_greedy(q), soft, epsilon, exploration, uniform_share)


def _mixture(greedy: F64, soft: F64, epsilon: float, exploration: str, u: float) -> F64:
    k = greedy.shape[1]
    if exploration == "epsilon_greedy":
        return (1.0 - epsilon) * greedy + epsilon / k
    return (1.0 - epsilon) * greedy + epsilon * ((1.0 - u) * soft + u / k)


def _inverse_cdf(proba: F64, u: F64) -> NDArray[np.int64]:
    c = np.cumsum(proba, axis=1)
    idx = (c < u[:, None] * c[:, -1:]).sum(axis=1)
    return np.minimum(idx, proba.shape[1] - 1).astype(np.int64)


class _QNet:
    """Residual Q net: an MLP over ``[user, candidate]`` rows, standardised inputs."""

    def __init__(self, cfg: DQNConfig, d_u: int, d_c: int, rng: np.random.Generator | None) -> None:
        self.d_u, self.d_c, self.dtype = d_u, d_c, np.dtype(cfg.dtype)
        sizes = [d_u + d_c, *cfg.hidden, 1]
        init_rng = rng if rng is not None else np.random.default_rng(0)
        self.net = nn.mlp(sizes, rng=init_rng, dtype=cfg.dtype)
        last = self.net.layers[-1]
        assert isinstance(last, nn.Dense)
        if cfg.warm_start or rng is None:
            last.weight.value[...] = 0.0
        self.mean = np.zeros(d_u + d_c, dtype=self.dtype)
        self.std = np.ones(d_u + d_c, dtype=self.dtype)

    def _x(self, user: F64, cand: F64) -> tuple[F64, F64]:
        m, s, du = self.mean, self.std, self.d_u
        xu = np.clip((user.astype(self.dtype) - m[:du]) / s[:du], -_CLIP, _CLIP)
        xc = np.clip((cand.astype(self.dtype) - m[du:]) / s[du:], -_CLIP, _CLIP)
        return xu, xc

    def score(self, user: F64, cands: F64) -> F64:
        """Residual of every candidate, (N, K); the first layer splits into user and item parts."""
        n, k = cands.shape[:2]
        xu, xc = self._x(user, cands.reshape(n * k, -1))
        first = self.net.layers[0]
        assert isinstance(first, nn.Dense)
        w = first.weight.value
        # 2-D products throughout: numpy runs a stacked (N, K, H) @ (H, H') as N small products
        h = xc @ w[self.d_u :]
        h = (h.reshape(n, k, -1) + (xu @ w[: self.d_u] + first.bias.value)[:, None, :]).reshape(
            n * k, -1
        )
        for layer in self.net.layers[1:]:
            if isinstance(layer, nn.Dense):
                h = h @ layer.weight.value + layer.bias.value
            else:
                h = np.maximum(h, 0.0) if isinstance(layer, nn.ReLU) else np.tanh(h)
        return h.reshape(n, k)

    def forward_rows(self, user: F64, cand: F64) -> F64:
        """Residual of one candidate per row, (B,), caching for :meth:`backward`."""
        xu, xc = self._x(user, cand)
        return self.net.forward(np.concatenate([xu, xc], axis=1))[:, 0]

    def backward(self, grad: F64) -> None:
        self.net.backward(grad[:, None])

    def parameters(self) -> list[nn.Parameter]:
        return self.net.parameters()

    def state_dict(self) -> dict[str, F64]:
        return {**self.net.state_dict(), "input_mean": self.mean, "input_std": self.std}

    def load_state_dict(self, state: Mapping[str, NDArray[Any]]) -> None:
        rest = {k: v for k, v in state.items() if not k.startswith("input_")}
        self.net.load_state_dict(rest)
        self.mean[...] = state["input_mean"]
        self.std[...] = state["input_std"]


@register_agent
class DQN(SavableAgent):
    """Double DQN over per-candidate Q-values with prioritised replay and top-K exploration.

    Parameters
    ----------
    config : DQNConfig, optional
    reward_prior : callable, optional
        ``prior(obs_batch) -> (N, K)`` expected immediate rewards (see the module docstring);
        needed when ``warm_start`` and not found on the training env.
    **overrides
        Config fields, e.g. ``DQN(gamma=0.95, top_k=5)``.

    Attributes
    ----------
    epsilon : float
        Exploration rate used by :meth:`act` (the schedule while training, then ``eval_epsilon``).
    last_propensity : float or ndarray
        Probability of the shown candidate under the exploration mixture (per row for a batch).
    n_updates : int
        Gradient updates so far.

    Examples
    --------
    >>> from simkit.agents.clickbait_env import ClickbaitSessionEnv
    >>> env = ClickbaitSessionEnv()
    >>> agent = DQN(gamma=0.0, learning_starts=64, batch_size=32)
    >>> returns = agent.learn_online(env, 200, rng=np.random.default_rng(0))
    >>> int(agent.act(env.reset(seed=0)[0], rng=np.random.default_rng(0)))
    0
    """

    Config = DQNConfig

    def __init__(
        self,
        config: DQNConfig | None = None,
        *,
        reward_prior: RewardPrior | None = None,
        **overrides: Any,
    ) -> None:
        self.config = replace(config or DQNConfig(), **overrides)
        self.reward_prior = reward_prior
        self.online: _QNet | None = None
        self.target: _QNet | None = None
        self.dims: tuple[int, int] | None = None
        self.epsilon = self.config.eval_epsilon
        self.n_updates = 0
        self.normalised = False
        self.last_propensity: float | F64 | None = None
        self.last_info: dict[str, Any] = {}
        self.buffer: PrioritizedReplay | None = None

    # ------------------------------------------------------------------ network

    def build(self, user_dim: int, item_dim: int, *, rng: np.random.Generator | None) -> None:
        """Create the online and target nets and the optimiser (zero weights when ``rng`` is None)."""
        cfg = self.config
        self.dims = (int(user_dim), int(item_dim))
        self.online = _QNet(cfg, user_dim, item_dim, rng)
        self.target = _QNet(cfg, user_dim, item_dim, None)
        self.target.load_state_dict(self.online.state_dict())
        self._opt = nn.Adam(self.online.parameters(), lr=cfg.learning_rate)

    def set_reward_prior(self, prior: RewardPrior | None) -> None:
        """Attach the immediate-reward prior ``prior(obs_batch) -> (N, K)`` (not saved)."""
        self.reward_prior = prior

    def _prior(self, user: F64, cands: F64) -> F64:
        """Scaled prior of a batch, (N, K); zeros without warm start."""
        if not self.config.warm_start:
            return np.zeros(cands.shape[:2])
        if self.reward_prior is None:
            raise ConfigError(
                "This DQN uses a warm start (Q = immediate-reward prior + residual) but has no "
                "prior: call agent.set_reward_prior(fn) with fn(obs_batch) -> (N, K) expected "
                "immediate rewards, train it in an env with immediate_values(obs), or build it "
                "with warm_start=False."
            )
        prior = np.asarray(self.reward_prior({"user": user, "candidates": cands}), np.float64)
        if prior.shape != cands.shape[:2]:
            raise ConfigError(
                f"reward_prior must return shape {cands.shape[:2]} (states, candidates); got "
                f"{prior.shape}"
            )
        return prior * self.config.reward_scale

    def _batch(self, obs: Observation) -> tuple[F64, F64, bool]:
        if not isinstance(obs, Mapping) or "user" not in obs or "candidates" not in obs:
            raise TypeError(
                "Observations must be dicts with keys 'user' and 'candidates'; got "
                f"{type(obs).__name__}"
            )
        user, cands = np.asarray(obs["user"]), np.asarray(obs["candidates"])
        single = user.ndim == 1
        if single:
            user, cands = user[None], cands[None]
        if user.ndim != 2 or cands.ndim != 3 or len(user) != len(cands):
            raise ValueError(
                "obs['user'] must be (d_u,) or (N, d_u) and obs['candidates'] (K, d_c) or "
                f"(N, K, d_c); got {np.shape(obs['user'])} and {np.shape(obs['candidates'])}"
            )
        if self.online is None:
            raise ConfigError("DQN has no networks yet: call learn_online or build first.")
        return user, cands, single

    def _q(self, net: _QNet, user: F64, cands: F64, prior: F64) -> F64:
        return prior + net.score(user, cands)

    def q_values(self, obs: Observation) -> F64:
        """Q of every candidate in reward units: (K,) or (N, K) for a batch."""
        user, cands, single = self._batch(obs)
        assert self.online is not None
        q = self._q(self.online, user, cands, self._prior(user, cands)) / self.config.reward_scale
        return q[0] if single else q

    # ------------------------------------------------------------------ acting

    def _top_k(self, n_candidates: int) -> int:
        cfg = self.config
        if cfg.top_k is not None:
            return min(cfg.top_k, n_candidates)
        return max(1, math.ceil(cfg.top_k_fraction * n_candidates))

    def _proba(self, q: F64, epsilon: float) -> F64:
        cfg = self.config
        return exploration_proba(
            q,
            epsilon,
            exploration=cfg.exploration,
            top_k=self._top_k(q.shape[1]),
            temperature=cfg.temperature,
            uniform_share=cfg.uniform_share,
        )

    def action_proba(self, obs: Observation, *, rng: np.random.Generator | None = None) -> F64:
        """Exact probability of each candidate at the current ``epsilon``: (K,) or (N, K)."""
        user, cands, single = self._batch(obs)
        assert self.online is not None
        q = self._q(self.online, user, cands, self._prior(user, cands))
        p = self._proba(q, self.epsilon)
        return p[0] if single else p

    def act(self, obs: Observation, *, rng: np.random.Generator) -> Any:
        """Show a candidate: greedy, or with probability ``epsilon`` an exploratory draw.

        Returns an int for one observation and an int array for a batch; ``last_propensity``
        holds the exact probability of each shown candidate.
        """
        user, cands, single = self._batch(obs)
        assert self.online is not None
        q = self._q(self.online, user, cands, self._prior(user, cands))
        actions, propensity = self._draw(q, self.epsilon, rng)
        self.last_propensity = float(propensity[0]) if single else propensity
        return int(actions[0]) if single else actions

    def _draw(
        self, q: F64, epsilon: float, rng: np.random.Generator
    ) -> tuple[NDArray[np.int64], F64]:
        """Draw by the mixture's branches (explore?, uniform?) and log the closed-form P(a)."""
        cfg = self.config
        n, k = q.shape
        explore = rng.random((n,)) < epsilon
        use_uniform = rng.random((n,)) < cfg.uniform_share
        greedy = _greedy(q)
        soft = _topk_softmax(q, self._top_k(k), cfg.temperature)
        if cfg.exploration == "epsilon_greedy":
            use_uniform[:] = True
        branch = np.where(use_uniform[:, None], 1.0 / k, soft)
        dist = np.where(explore[:, None], branch, greedy)
        actions = _inverse_cdf(dist, rng.random((n,)))
        proba = _mixture(greedy, soft, epsilon, cfg.exploration, cfg.uniform_share)
        self.last_info = {"epsilon": epsilon, "explored": explore, "q": q}
        return actions, proba[np.arange(n), actions]

    # ------------------------------------------------------------------ learning

    def td_targets(self, data: Mapping[str, NDArray[Any]]) -> F64:
        """Targets ``y`` of a batch of stored transitions (see the module docstring).

        ``data`` holds ``reward`` (B,), ``terminated`` (B,), ``next_user`` (B, d_u),
        ``next_candidates`` (B, K, d_c) and ``next_prior`` (B, K) (already scaled).
        """
        assert self.online is not None and self.target is not None
        cfg = self.config
        u2, c2, pr2 = data["next_user"], data["next_candidates"], data["next_prior"]
        q_target = self._q(self.target, u2, c2, pr2)
        if cfg.double:
            best = np.argmax(self._q(self.online, u2, c2, pr2), axis=1)
            v = q_target[np.arange(len(best)), best]
        else:
            v = q_target.max(axis=1)
        alive = 1.0 - data["terminated"].astype(np.float64)
        return cfg.reward_scale * data["reward"] + cfg.gamma * alive * v

    def update(self, rng: np.random.Generator, beta: float) -> float:
        """One gradient step on a prioritised batch; returns the loss."""
        assert self.online is not None and self.target is not None and self.buffer is not None
        cfg = self.config
        if not self.normalised:
            self._fit_normalisation()
        batch = self.buffer.sample(cfg.batch_size, rng=rng, beta=beta)
        d = batch.data
        y = self.td_targets(d)
        rows = np.arange(len(y))
        cand = d["candidates"][rows, d["action"]]
        pred = d["prior"] + self.online.forward_rows(d["user"], cand)
        dt = self.online.dtype
        loss, grad = nn.huber_loss(
            pred, y.astype(dt), cfg.huber_delta, weights=batch.weights.astype(dt)
        )
        self.online.backward(grad)
        if cfg.grad_clip is not None:
            nn.clip_grad_norm(self._opt.params, cfg.grad_clip)
        self._opt.step()
        self.buffer.update_priorities(batch.index, pred - y)
        diagnostics.record(  # TD error, critic loss and reward variance of the batch
            td_error=float(np.abs(pred - y).mean()),
            critic_loss=float(loss),
            reward_variance=float(np.var(d["reward"])),
        )
        self.n_updates += 1
        if self.n_updates % cfg.target_update_interval == 0:
            self._refresh_target()
        return loss

    def _refresh_target(self) -> None:
        assert self.online is not None and self.target is not None
        tau = self.config.tau
        for p, t in zip(self.online.parameters(), self.target.parameters()):
            t.value[...] = p.value if tau == 1.0 else tau * p.value + (1.0 - tau) * t.value

    def _fit_normalisation(self) -> None:
        """Freeze input statistics from the replay contents (no-op when disabled)."""
        assert self.online is not None and self.target is not None and self.buffer is not None
        self.normalised = True
        if not self.config.normalize_inputs:
            return
        n = len(self.buffer)
        users = self.buffer.data["user"][:n].astype(np.float64)
        cands = self.buffer.data["candidates"][:n].reshape(
            -1, self.buffer.data["candidates"].shape[-1]
        )
        mean = np.concatenate([users.mean(axis=0), cands.mean(axis=0)])
        std = np.concatenate([users.std(axis=0), cands.astype(np.float64).std(axis=0)])
        std = np.where(std > 1e-6, std, 1.0)
        for net in (self.online, self.target):
            net.mean[...] = mean
            net.std[...] = std

    def epsilon_at(self, fraction: float) -> float:
        """Scheduled epsilon after ``fraction`` of training."""
        cfg = self.config
        span = cfg.exploration_fraction
        f = 1.0 if span == 0 else min(fraction / span, 1.0)
        return cfg.epsilon_start + (cfg.epsilon_end - cfg.epsilon_start) * f

    def learn_online(
        self,
        env: Any,
        n_steps: int,
        *,
        rng: np.random.Generator,
        progress: bool = False,
        callback: Callable[[DQN, int], None] | None = None,
    ) -> F64:
        """Train for ``n_steps`` env steps in a Gymnasium env or a native vector env.

        A vector env (``num_envs`` sessions, next-step or same-step autoreset) steps all its
        sessions with one forward pass; every real transition counts as an env step (the ignored
        step of a next-step autoreset does not). When ``warm_start`` and no prior is attached, the
        env's ``immediate_values(obs)`` (on ``env.unwrapped`` for a wrapped env) is used.

        Parameters
        ----------
        env : gymnasium.Env or gymnasium.vector.VectorEnv
            Observations ``{"user", "candidates"}``, ``Discrete(K)`` actions.
        n_steps : int
            Env steps (transitions) to collect.
        rng : numpy.random.Generator
            Initial weights, env seed, exploration and replay draws (separate streams).
        progress : bool
            Show a progress bar.
        callback : callable, optional
            ``callback(agent, steps_done)`` after every env step (and its updates), e.g. to
            record a learning curve; ``agent.epsilon`` is the training epsilon at that point.

        Returns
        -------
        ndarray
            Return of each completed episode, in completion order.
        """
        cfg = self.config
        if n_steps < 1:
            raise ConfigError(f"n_steps must be at least 1; got {n_steps}")
        if cfg.warm_start and self.reward_prior is None:
            self.reward_prior = _env_prior(env)
        with blas_threads(cfg.blas_threads):
            returns = _run_online(self, env, n_steps, rng=rng, progress=progress, callback=callback)
        self.epsilon = cfg.eval_epsilon
        return returns

    # ------------------------------------------------------------------ saving

    def _get_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        if self.online is None:
            return {}, {"built": False}
        assert self.target is not None and self.dims is not None
        arrays: dict[str, NDArray[Any]] = {}
        arrays |= {f"online.{k}": v for k, v in self.online.state_dict().items()}
        arrays |= {f"target.{k}": v for k, v in self.target.state_dict().items()}
        arrays |= {f"opt.{k}": v for k, v in self._opt.state_dict().items()}
        state = {
            "built": True,
            "user_dim": self.dims[0],
            "item_dim": self.dims[1],
            "n_updates": self.n_updates,
            "normalised": self.normalised,
            "uses_prior": self.config.warm_start,
        }
        return arrays, state

    def _set_state(self, arrays: dict[str, NDArray[Any]], state: dict[str, Any]) -> None:
        if not state.get("built"):
            return
        self.build(state["user_dim"], state["item_dim"], rng=None)
        assert self.online is not None and self.target is not None
        try:
            for prefix, target in (("online.", self.online), ("target.", self.target)):
                target.load_state_dict(
                    {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                )
            self._opt.load_state_dict({k[4:]: v for k, v in arrays.items() if k.startswith("opt.")})
        except KeyError as exc:
            raise ArtifactError(f"saved DQN agent lacks array {exc}") from exc
        self.n_updates = int(state["n_updates"])
        self.normalised = bool(state["normalised"])


# --------------------------------------------------------------------------- training loop


def _env_prior(env: Any) -> RewardPrior | None:
    """``immediate_values`` of the env, its unwrapped env, or a sync vector env's first env."""
    for candidate in (env, getattr(env, "unwrapped", None), *getattr(env, "envs", ())[:1]):
        for obj in (candidate, getattr(candidate, "unwrapped", None)):
            if obj is not None and hasattr(obj, "immediate_values"):
                return obj.immediate_values  # type: ignore[no-any-return]
    return None


def _as_batch(obs: Observation, vector: bool) -> tuple[F64, F64]:
    user, cands = np.asarray(obs["user"]), np.asarray(obs["candidates"])
    return (user, cands) if vector else (user[None], cands[None])


def _run_online(
    agent: DQN,
    env: Any,
    n_steps: int,
    *,
    rng: np.random.Generator,
    progress: bool,
    callback: Callable[[DQN, int], None] | None,
) -> F64:
    """Collect ``n_steps`` transitions with the exploration schedule, updating as configured."""
    cfg = agent.config
    init_rng, env_rng, act_rng, replay_rng = rng.spawn(4)
    vector = isinstance(env, VectorEnv)
    mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) if vector else None
    if vector and mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        raise ConfigError(
            f"DQN trains on vector envs with next-step or same-step autoreset; got {mode}."
        )
    obs, _ = env.reset(seed=int(env_rng.integers(2**63 - 1)))
    user, cands = _as_batch(obs, vector)
    if agent.online is None:
        agent.build(user.shape[1], cands.shape[2], rng=init_rng)
    if agent.buffer is None:
        agent.buffer = PrioritizedReplay(cfg.buffer_size, alpha=cfg.per_alpha, eps=cfg.per_eps)
    assert agent.online is not None
    dt = agent.online.dtype
    prior = agent._prior(user, cands)
    n = user.shape[0]
    valid = np.ones(n, dtype=bool)  # False: the env ignores this step's action (autoreset)
    episode_return = np.zeros(n)
    returns: list[float] = []
    done_steps = credit = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc="DQN")
    while done_steps < n_steps:
        eps = agent.epsilon_at(done_steps / n_steps)
        agent.epsilon = eps
        q = agent._q(agent.online, user, cands, prior)
        actions, propensity = agent._draw(q, eps, act_rng)
        if vector:
            next_obs, reward, terminated, truncated, info = env.step(actions)
        else:
            next_obs, r, term, trunc, info = env.step(int(actions[0]))
            reward, terminated, truncated = np.array([r]), np.array([term]), np.array([trunc])
        reward = np.asarray(reward, dtype=np.float64)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        next_user, next_cands = _as_batch(next_obs, vector)
        next_prior = agent._prior(next_user, next_cands)
        s2_user, s2_cands, s2_prior = next_user, next_cands, next_prior
        ended = terminated | truncated
        if mode == AutoresetMode.SAME_STEP and ended.any():  # s' of ended rows is in info
            s2_user, s2_cands, s2_prior = next_user.copy(), next_cands.copy(), next_prior.copy()
            rows = np.flatnonzero(ended)
            final = info["final_obs"]
            s2_user[rows] = np.stack([final[i]["user"] for i in rows])
            s2_cands[rows] = np.stack([final[i]["candidates"] for i in rows])
            s2_prior[rows] = agent._prior(s2_user[rows], s2_cands[rows])
        rows = np.flatnonzero(valid)
        agent.buffer.add(
            {
                "user": user[rows],
                "candidates": cands[rows],
                "action": actions[rows],
                "reward": reward[rows],
                "terminated": terminated[rows],
                "prior": prior[rows, actions[rows]].astype(dt),
                "next_user": s2_user[rows],
                "next_candidates": s2_cands[rows],
                "next_prior": s2_prior[rows].astype(dt),
            }
        )
        episode_return[rows] += reward[rows]
        finished = ended & valid
        returns.extend(episode_return[finished].tolist())
        episode_return[finished] = 0.0
        done_steps += rows.size
        if bar is not None:
            bar.update(rows.size)
        if not vector and ended[0]:
            next_obs, _ = env.reset()
            next_user, next_cands = _as_batch(next_obs, vector)
            next_prior = agent._prior(next_user, next_cands)
        if mode == AutoresetMode.NEXT_STEP:
            valid = ~ended
        user, cands, prior = next_user, next_cands, next_prior
        if done_steps >= cfg.learning_starts and len(agent.buffer) >= cfg.batch_size:
            credit += rows.size
            beta = annealed_beta(cfg.per_beta0, done_steps / n_steps)
            while credit >= cfg.train_frequency:
                agent.update(replay_rng, beta)
                credit -= cfg.train_frequency
        if callback is not None:
            callback(agent, done_steps)
    if bar is not None:
        bar.close()
    return np.asarray(returns, dtype=np.float64)
