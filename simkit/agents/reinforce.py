"""REINFORCE recommender with off-policy and top-K off-policy correction (Chen et al. 2019).

The policy is a softmax over the K candidates of an observation,
``pi(a|s) = softmax_a((f(user) . g(candidate_a) + c(candidate_a)) / T)``, from a two-tower numpy
net: a user tower ``f`` (the shared state), an item tower ``g`` and a linear item-bias head ``c``.
Linear towers (``hidden=()``) give bilinear logits ``u^T M v_a + c_a``; ``embedding_dim=0`` drops
the towers and leaves free per-candidate logits (with one-hot candidates: a full softmax).

Trained from logs of a behaviour policy beta, the loss for a batch is

    L = -(1/n) sum_i sg(w_i (R_i - b)) log pi(a_i|s_i) - entropy_coef * mean entropy(pi(.|s_i)),

with ``sg`` a stop-gradient (the weights are computed outside the backward pass) and

- ``correction="none"``: ``w = 1`` (the fixed point is pi proportional to beta * r);
- ``correction="standard"``: ``w = min(pi(a|s) / beta(a|s), cap)``, cap ``e^3``;
- ``correction="topk"``: ``w = min(pi/beta, cap) * lambda_K`` with
  ``lambda_K = K (1 - pi(a|s))^(K-1)``, the derivative of the probability ``1 - (1 - pi)^K`` that
  the item is in a set of K draws. The cap is applied before ``lambda_K``.

Both probabilities are evaluated at the logged action. ``beta`` is the logged propensity
(``propensity_source="logged"``) or the prediction of a behaviour head
(``propensity_source="estimated"``): a second softmax on the same user state, trained by softmax
cross-entropy on every logged row, whose gradient never reaches the user tower. As in the paper the
policy trains only on rows with a non-zero return (``train_on="rewarded"``).

Online, the agent runs plain on-policy REINFORCE in a ``Discrete(K)`` env: it samples from pi,
computes discounted returns (``gamma=0.9``) per episode and subtracts the batch mean.

Why the offline default is no baseline: with the top-K weights, subtracting a baseline ``b``
changes the objective to ``sum_a (r_a - b) alpha_a`` (the weights no longer integrate to zero), and
without correction a beta-mean baseline leaves no fixed point at all.

References
----------
Chen, Beutel, Covington, Jain, Belletti, Chi. Top-K off-policy correction for a REINFORCE
recommender system. WSDM 2019. arXiv:1812.02353.
Williams. Simple statistical gradient-following algorithms for connectionist reinforcement
learning. Machine Learning 8, 1992.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from simkit import diagnostics, nn
from simkit.agents.base import (
    DecisionLog,
    Observation,
    SavableAgent,
    blas_threads,
    discounted_returns,
    draw_from,
    observation_parts,
    register_agent,
)
from simkit.errors import ArtifactError, ConfigError, LogError

__all__ = ["REINFORCE", "REINFORCEConfig", "importance_weights", "topk_multiplier"]

F64 = NDArray[Any]  # float64 arrays; Any keeps numpy's stubs quiet across nn's floating types


def topk_multiplier(pi: F64, k: int) -> F64:
    """``lambda_K = d/dpi [1 - (1 - pi)^K] = K (1 - pi)^(K-1)``."""
    return k * (1.0 - pi) ** (k - 1)


def importance_weights(
    pi: F64,
    beta: F64,
    *,
    correction: str,
    cap: float = math.exp(3.0),
    top_k: int = 1,
    self_normalise: bool = False,
) -> F64:
    """Per-row weights of the off-policy REINFORCE loss (constants: no gradient flows into them).

    Parameters
    ----------
    pi, beta : ndarray, shape (n,)
        Target and behaviour probability of the logged action.
    correction : {"none", "standard", "topk"}
    cap : float
        Upper bound of ``pi / beta``, applied before the top-K multiplier.
    top_k : int
        K of the top-K multiplier.
    self_normalise : bool
        Rescale the capped ratios to mean one over the batch.

    Examples
    --------
    >>> importance_weights(np.array([0.5]), np.array([0.01]), correction="topk", cap=20.0, top_k=2)
    array([20.])
    """
    if correction == "none":
        return np.ones_like(pi)
    w = np.minimum(pi / beta, cap)
    if self_normalise:
        w = w * (w.size / w.sum())
    if correction == "topk":
        w = w * topk_multiplier(pi, top_k)
    return w


@dataclass(frozen=True, kw_only=True)
class REINFORCEConfig:
    """Settings of :class:`REINFORCE`.

    Parameters
    ----------
    embedding_dim : int
        Output size of both towers; 0 drops the towers (per-candidate logits only).
    hidden : tuple of int
        Hidden widths of each tower; ``()`` gives linear towers (bilinear logits).
    activation : {"relu", "tanh"}
    item_bias : bool
        Add a linear per-candidate bias head.
    temperature : float
        Softmax temperature T.
    correction : {"none", "standard", "topk"}
    top_k : int
        K of the top-K correction (the slate size).
    weight_cap : float
        Cap of ``pi/beta`` (``e^3``).
    self_normalise : bool
        Normalise the capped ratios to batch mean one.
    propensity_source : {"logged", "estimated"}
    train_on : {"rewarded", "all"}
        Rows that train the policy; the behaviour head always uses all rows.
    offline_baseline, online_baseline : {"none", "batch_mean"}
        Subtracted from the returns (see the module docstring for the offline default).
    gamma : float
        Discount of the online returns.
    entropy_coef : float
        Weight of the entropy bonus.
    optimizer : {"adam", "sgd"}
    learning_rate : float
        0.02 suits linear towers with Adam (on SlateMNLEnv 0.05 overshoots: normalised gain
        0.965 against 0.985 on uniform logs); use about 1e-3 for MLP towers.
    batch_size : int
        Rows per offline update; minimum steps per online update.
    grad_clip : float or None
        Global gradient-norm clip.
    slate_size : int
        Items ``act`` shows (1: a single candidate index).
    blas_threads : int or None
        BLAS threads while learning (1: small products are fastest single-threaded; None: leave
        numpy's setting alone).
    """

    embedding_dim: int = 16
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    item_bias: bool = True
    temperature: float = 1.0
    correction: str = "topk"
    top_k: int = 5
    weight_cap: float = math.exp(3.0)
    self_normalise: bool = False
    propensity_source: str = "logged"
    train_on: str = "rewarded"
    offline_baseline: str = "none"
    online_baseline: str = "batch_mean"
    gamma: float = 0.9
    entropy_coef: float = 0.0
    optimizer: str = "adam"
    learning_rate: float = 0.02
    batch_size: int = 512
    grad_clip: float | None = None
    slate_size: int = 1
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        problems = []
        choices = {
            "activation": ("relu", "tanh"),
            "correction": ("none", "standard", "topk"),
            "propensity_source": ("logged", "estimated"),
            "train_on": ("rewarded", "all"),
            "offline_baseline": ("none", "batch_mean"),
            "online_baseline": ("none", "batch_mean"),
            "optimizer": ("adam", "sgd"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}; got {getattr(self, name)!r}")
        positive = ("temperature", "weight_cap", "learning_rate")
        for name in positive:
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("top_k", "batch_size", "slate_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.embedding_dim < 0 or any(h < 1 for h in self.hidden):
            problems.append(
                f"embedding_dim must be >= 0 and hidden widths >= 1; got {self.embedding_dim}, "
                f"{self.hidden}"
            )
        if self.embedding_dim == 0 and (self.hidden or not self.item_bias):
            problems.append("embedding_dim=0 needs item_bias=True and hidden=()")
        if not 0.0 <= self.gamma <= 1.0:
            problems.append(f"gamma must be in [0, 1]; got {self.gamma}")
        if self.entropy_coef < 0:
            problems.append(f"entropy_coef must be >= 0; got {self.entropy_coef}")
        if self.blas_threads is not None and self.blas_threads < 1:
            problems.append(f"blas_threads must be >= 1 or None; got {self.blas_threads}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 or None; got {self.grad_clip}")
        if problems:
            raise ConfigError("Invalid REINFORCEConfig: " + "; ".join(problems) + ".")


class _Head:
    """Item tower and bias head scoring candidates against a user state."""

    def __init__(self, cfg: REINFORCEConfig, item_dim: int, rng: np.random.Generator | None):
        self.tower = _tower(cfg, item_dim, rng) if cfg.embedding_dim else None
        self.bias = nn.Dense(item_dim, 1, init="zeros") if cfg.item_bias else None

    def modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {}
        if self.tower is not None:
            out["item_tower"] = self.tower
        if self.bias is not None:
            out["bias"] = self.bias
        return out

    def forward(self, state: F64 | None, cands: F64, n: int) -> F64:
        """Logits (n, K) for states (n, E) and candidates (K, d_c) or (n, K, d_c)."""
        z: Any = np.zeros((n, cands.shape[-2]))
        if self.tower is not None:
            assert state is not None, "a head with an item tower needs the user state"
            g = self.tower.forward(cands)
            z = state @ g.T if cands.ndim == 2 else np.einsum("ne,nke->nk", state, g)
            self._g, self._state = g, state
        if self.bias is not None:
            z = z + self.bias.forward(cands)[..., 0]
        return z

    def backward(self, dz: F64, shared: bool) -> F64 | None:
        """Gradients of the head's parameters; returns the gradient in the state."""
        if self.bias is not None:
            self.bias.backward((dz.sum(axis=0) if shared else dz)[..., None])
        if self.tower is None:
            return None
        if shared:
            self.tower.backward(dz.T @ self._state)
            return dz @ self._g
        self.tower.backward(np.einsum("nk,ne->nke", dz, self._state))
        return np.einsum("nk,nke->ne", dz, self._g)


def _tower(cfg: REINFORCEConfig, n_in: int, rng: np.random.Generator | None) -> nn.Sequential:
    sizes = [n_in, *cfg.hidden, cfg.embedding_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        init = (
            "zeros"
            if rng is None
            else ("he" if cfg.activation == "relu" and not last else "xavier")
        )
        layers.append(nn.Dense(a, b, rng=rng, init=init))
        if not last:
            layers.append(nn.ReLU() if cfg.activation == "relu" else nn.Tanh())
    return nn.Sequential(layers)


@register_agent
class REINFORCE(SavableAgent):
    """Softmax two-tower policy trained by (top-K) off-policy or on-policy REINFORCE.

    Parameters
    ----------
    config : REINFORCEConfig, optional
    **overrides
        Config fields, e.g. ``REINFORCE(correction="standard", top_k=1)``.

    Attributes
    ----------
    last_propensity : float or ndarray
        pi of the shown candidate (per shown item, per draw, for a slate).
    last_slate_propensity : float
        Plackett-Luce probability of the ordered slate (1 when ``greedy``).

    Examples
    --------
    >>> from simkit.agents.testenvs import StatelessItemEnv
    >>> env = StatelessItemEnv()
    >>> rng = np.random.default_rng(0)
    >>> agent = REINFORCE(embedding_dim=0, correction="topk", top_k=2, batch_size=256)
    >>> losses = agent.learn_from_logs(env.sample_logs(5000, rng=rng), rng=rng, n_steps=50)
    >>> agent.action_proba(env.reset(seed=0)[0]).shape
    (10,)
    """

    Config = REINFORCEConfig

    def __init__(self, config: REINFORCEConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or REINFORCEConfig(), **overrides)
        self.user_tower: nn.Sequential | None = None
        self.policy: _Head | None = None
        self.behaviour: _Head | None = None
        self.dims: tuple[int, int] | None = None
        self.last_propensity: float | F64 | None = None
        self.last_slate_propensity: float | None = None

    # ------------------------------------------------------------------ network

    def build(self, user_dim: int, item_dim: int, *, rng: np.random.Generator | None) -> None:
        """Create the networks and optimisers (zero weights when ``rng`` is None)."""
        cfg = self.config
        self.dims = (int(user_dim), int(item_dim))
        self.user_tower = _tower(cfg, user_dim, rng) if cfg.embedding_dim else None
        self.policy = _Head(cfg, item_dim, rng)
        self.behaviour = _Head(cfg, item_dim, rng)
        make = (
            (lambda ps: nn.Adam(ps, lr=cfg.learning_rate))
            if cfg.optimizer == "adam"
            else (lambda ps: nn.SGD(ps, lr=cfg.learning_rate))
        )
        self._opt = make(self.policy_parameters())
        self._behaviour_opt = make(self.behaviour_parameters())

    def modules(self) -> dict[str, nn.Module]:
        """Every module by name: ``user_tower``, ``policy.*``, ``behaviour.*``."""
        self._check_built()
        assert self.policy is not None and self.behaviour is not None
        out: dict[str, nn.Module] = {}
        if self.user_tower is not None:
            out["user_tower"] = self.user_tower
        out |= {f"policy.{k}": m for k, m in self.policy.modules().items()}
        out |= {f"behaviour.{k}": m for k, m in self.behaviour.modules().items()}
        return out

    def policy_parameters(self) -> list[nn.Parameter]:
        """Parameters the policy loss trains (user tower, item tower, bias head)."""
        return [
            p
            for k, m in self.modules().items()
            if not k.startswith("behaviour")
            for p in m.parameters()
        ]

    def behaviour_parameters(self) -> list[nn.Parameter]:
        """Parameters of the behaviour head (never the user tower)."""
        return [
            p
            for k, m in self.modules().items()
            if k.startswith("behaviour")
            for p in m.parameters()
        ]

    def _check_built(self) -> None:
        if self.policy is None:
            raise ConfigError(
                "REINFORCE has no networks yet: call learn_from_logs, learn_online or build first."
            )

    def _state(self, users: F64) -> F64 | None:
        return None if self.user_tower is None else self.user_tower.forward(users)

    def logits(self, users: F64, candidates: F64) -> F64:
        """Policy logits (already divided by the temperature), shape (n, K).

        Parameters
        ----------
        users : ndarray, shape (n, d_u)
        candidates : ndarray, shape (K, d_c) shared, or (n, K, d_c)
        """
        self._check_built()
        assert self.policy is not None
        state = self._state(users)
        return self.policy.forward(state, candidates, len(users)) / self.config.temperature

    def behaviour_logits(self, users: F64, candidates: F64) -> F64:
        """Logits of the behaviour head, shape (n, K)."""
        self._check_built()
        assert self.behaviour is not None
        return self.behaviour.forward(self._state(users), candidates, len(users))

    # ------------------------------------------------------------------ acting

    def action_proba(self, obs: Observation, *, rng: np.random.Generator | None = None) -> F64:
        """pi over the candidates of ``obs`` (exact; ``rng`` is not used)."""
        user, cands = observation_parts(obs)
        return nn.softmax(self.logits(user[None], cands))[0]

    def act(self, obs: Observation, *, rng: np.random.Generator, greedy: bool = False) -> Any:
        """Sample a candidate from pi (a Plackett-Luce slate when ``slate_size > 1``).

        With ``greedy=True`` show the most probable candidate(s) instead (propensity 1).
        """
        user, cands = observation_parts(obs)
        logp = nn.log_softmax(self.logits(user[None], cands))[0]
        k = self.config.slate_size
        if k == 1:
            a = int(np.argmax(logp)) if greedy else draw_from(np.exp(logp), rng)
            self.last_propensity = 1.0 if greedy else float(np.exp(logp[a]))
            self.last_slate_propensity = self.last_propensity
            return a
        keys = logp if greedy else logp + rng.gumbel(size=logp.shape)  # Gumbel top-k = PL
        slate = np.argsort(-keys, kind="stable")[:k]
        p = np.exp(logp[slate])
        self.last_propensity = p
        remaining = 1.0 - np.concatenate([[0.0], np.cumsum(p)[:-1]])
        self.last_slate_propensity = 1.0 if greedy else float(np.prod(p / remaining))
        return slate

    # ------------------------------------------------------------------ losses

    def loss_and_gradients(
        self,
        users: F64,
        candidates: F64,
        actions: NDArray[np.int64],
        returns: F64,
        propensities: F64 | None = None,
        *,
        weights: F64 | None = None,
        baseline: str | None = None,
    ) -> tuple[float, F64]:
        """Policy loss of a batch; stores the gradients in the policy parameters.

        Parameters
        ----------
        users, candidates, actions, returns
            The batch (see :meth:`logits`).
        propensities : ndarray, optional
            beta of the logged actions (needed for ``"logged"`` propensities with a correction).
        weights : ndarray, optional
            Importance weights to use as given (the gradient check holds them fixed); by default
            computed from the current pi and beta and treated as constants.
        baseline : {"none", "batch_mean"}, optional
            Defaults to ``offline_baseline``.

        Returns
        -------
        loss : float
        weights : ndarray
            The importance weights used.
        """
        cfg = self.config
        assert self.policy is not None
        shared = candidates.ndim == 2
        state = self._state(users)
        z = self.policy.forward(state, candidates, len(users))
        if cfg.temperature != 1.0:
            z = z / cfg.temperature
        logp, p = nn.log_softmax_and_softmax(z)
        if weights is None:
            pi = np.exp(logp[np.arange(len(actions)), actions])
            beta = (
                propensities
                if cfg.propensity_source == "logged"
                else self._estimated_propensity(users, candidates, actions)
            )
            if cfg.correction != "none" and beta is None:
                raise LogError(
                    "Off-policy correction with propensity_source='logged' needs the logged "
                    "propensities; the log has none. Log them, or use "
                    "propensity_source='estimated'."
                )
            weights = importance_weights(
                pi,
                beta if beta is not None else pi,
                correction=cfg.correction,
                cap=cfg.weight_cap,
                top_k=cfg.top_k,
                self_normalise=cfg.self_normalise,
            )
            if beta is not None and cfg.correction != "none":
                ratio = pi / beta
                diagnostics.record(
                    cap_share=float(np.mean(ratio >= cfg.weight_cap)),
                    ess_share=diagnostics.weight_stats(ratio, np.inf)["ess_share"],
                )
        diagnostics.record(entropy=diagnostics.entropy(p), reward_variance=float(np.var(returns)))
        adv = returns - (
            returns.mean() if (baseline or cfg.offline_baseline) == "batch_mean" else 0.0
        )
        # weighted log-likelihood, fused with the log-softmax above:
        # d/dz [-(1/n) sum_i c_i log pi(a_i)] = (c_i/n) (pi - onehot(a_i))
        n = len(actions)
        coef = weights * adv / n
        rows = np.arange(n)
        loss = -float(coef @ logp[rows, actions])
        dz = p * coef[:, None]
        dz[rows, actions] -= coef
        if cfg.entropy_coef:
            h = -(p * logp).sum(axis=1, keepdims=True)
            loss -= cfg.entropy_coef * float(h.mean())
            dz += (cfg.entropy_coef / n) * p * (logp + h)
        if cfg.temperature != 1.0:
            dz = dz / cfg.temperature
        d_state = self.policy.backward(dz, shared)
        if self.user_tower is not None and d_state is not None:
            self.user_tower.backward(d_state)
        return loss, weights

    def _estimated_propensity(self, users: F64, candidates: F64, actions: NDArray[np.int64]) -> F64:
        z = self.behaviour_logits(users, candidates)
        return np.exp(nn.log_softmax(z)[np.arange(len(actions)), actions])

    def behaviour_loss_and_gradients(
        self, users: F64, candidates: F64, actions: NDArray[np.int64]
    ) -> float:
        """Softmax cross-entropy of the behaviour head; gradients reach only that head.

        The user state enters as a constant (stop-gradient): the user tower is not touched.
        """
        assert self.behaviour is not None
        state = self._state(users)
        z = self.behaviour.forward(state, candidates, len(users))
        loss, dz = nn.softmax_cross_entropy(z, actions)
        self.behaviour.backward(dz, candidates.ndim == 2)  # the state gradient is dropped
        return loss

    def _step(self, opt: nn.Adam | nn.SGD) -> None:
        if self.config.grad_clip is not None:
            nn.clip_grad_norm(opt.params, self.config.grad_clip)
        opt.step()

    # ------------------------------------------------------------------ training

    def learn_from_logs(
        self,
        logs: DecisionLog,
        *,
        rng: np.random.Generator,
        n_steps: int | None = None,
        n_epochs: int | None = None,
        progress: bool = False,
    ) -> F64:
        """Train on logged decisions (rows' ``reward`` are the returns to credit).

        Parameters
        ----------
        logs : DecisionLog
        rng : numpy.random.Generator
            Initial weights (if not built) and batch sampling.
        n_steps : int, optional
            Updates on batches drawn with replacement.
        n_epochs : int, optional
            Passes over the training rows in shuffled batches (give exactly one of the two).
        progress : bool
            Show a progress bar.

        Returns
        -------
        ndarray
            Loss of each update.

        Raises
        ------
        LogError
            When no row can train the policy or logged propensities are missing.
        """
        cfg = self.config
        if (n_steps is None) == (n_epochs is None):
            raise ConfigError("give exactly one of n_steps and n_epochs")
        init_rng, batch_rng, beh_rng = rng.spawn(3)
        if self.policy is None:
            self.build(logs.user.shape[1], logs.candidates.shape[-1], rng=init_rng)
        if (
            cfg.propensity_source == "logged"
            and cfg.correction != "none"
            and logs.propensity is None
        ):
            raise LogError(
                "Off-policy correction with propensity_source='logged' needs the logged "
                "propensities; the log has none. Log them, or use propensity_source='estimated'."
            )
        rows = np.arange(logs.n_rows)
        if cfg.train_on == "rewarded":
            rows = rows[logs.reward != 0]
        if rows.size == 0:
            raise LogError("No logged row has a non-zero return; nothing can train the policy.")
        bs = cfg.batch_size
        if n_steps is not None:
            batches: Any = (rows[batch_rng.integers(rows.size, size=bs)] for _ in range(n_steps))
            total = n_steps
        else:
            assert n_epochs is not None
            per_epoch = math.ceil(rows.size / bs)
            batches = (
                perm[i * bs : (i + 1) * bs]
                for _ in range(n_epochs)
                for perm in [batch_rng.permutation(rows)]
                for i in range(per_epoch)
            )
            total = n_epochs * per_epoch
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=total, desc="REINFORCE")
        with blas_threads(cfg.blas_threads):
            return self._train_batches(logs, batches, total, beh_rng)

    def _train_batches(
        self, logs: DecisionLog, batches: Any, total: int, beh_rng: np.random.Generator
    ) -> F64:
        cfg, bs = self.config, self.config.batch_size
        losses = np.empty(total)
        for t, idx in enumerate(batches):
            if cfg.propensity_source == "estimated":
                b_idx = beh_rng.integers(logs.n_rows, size=bs)
                self.behaviour_loss_and_gradients(
                    logs.user[b_idx], logs.candidates_for(b_idx), logs.action[b_idx]
                )
                self._step(self._behaviour_opt)
            losses[t], _ = self.loss_and_gradients(
                logs.user[idx],
                logs.candidates_for(idx),
                logs.action[idx],
                logs.reward[idx],
                None if logs.propensity is None else logs.propensity[idx],
            )
            self._step(self._opt)
        return losses

    def learn_online(
        self, env: Any, n_steps: int, *, rng: np.random.Generator, progress: bool = False
    ) -> F64:
        """On-policy REINFORCE in a ``Discrete(K)`` env for ``n_steps`` env steps.

        Updates once at least ``batch_size`` steps of complete episodes are collected, with
        discounted returns (``gamma``) minus their batch mean (``online_baseline``).

        Returns
        -------
        ndarray
            Return of each completed episode.
        """
        if not isinstance(env.action_space, spaces.Discrete):
            raise ConfigError(
                f"learn_online needs a Discrete(K) action space; got {env.action_space}. "
                "Train slate policies from logs."
            )
        init_rng, env_rng, act_rng = rng.spawn(3)
        obs, _ = env.reset(seed=int(env_rng.integers(2**63 - 1)))
        user, cands = observation_parts(obs)
        if self.policy is None:
            self.build(user.shape[0], cands.shape[1], rng=init_rng)
        steps: Any = range(n_steps)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="REINFORCE online")
        with blas_threads(self.config.blas_threads):
            returns = self._run_online(env, obs, steps, act_rng)
        return np.asarray(returns)

    def _run_online(
        self, env: Any, obs: Observation, steps: Any, act_rng: np.random.Generator
    ) -> list[float]:
        buf: dict[str, list[Any]] = {k: [] for k in ("user", "cands", "action", "reward", "end")}
        returns: list[float] = []
        episode_return = 0.0
        for _ in steps:
            user, cands = observation_parts(obs)
            a = draw_from(nn.softmax(self.logits(user[None], cands))[0], act_rng)
            obs, reward, terminated, truncated, _ = env.step(a)
            done = bool(terminated or truncated)
            for key, value in zip(buf, (user, cands, a, float(reward), done)):
                buf[key].append(value)
            episode_return += float(reward)
            if done:
                returns.append(episode_return)
                episode_return = 0.0
                obs, _ = env.reset()
                if len(buf["action"]) >= self.config.batch_size:
                    self._online_update(buf)
                    buf = {k: [] for k in buf}
        return returns

    def _online_update(self, buf: dict[str, list[Any]]) -> None:
        rewards = np.asarray(buf["reward"])
        ret = discounted_returns(rewards, np.asarray(buf["end"]), self.config.gamma)
        users, cands = np.asarray(buf["user"]), np.asarray(buf["cands"])
        if np.all(cands == cands[0]):
            cands = cands[0]
        actions = np.asarray(buf["action"], dtype=np.int64)
        self.loss_and_gradients(
            users,
            cands,
            actions,
            ret,
            weights=np.ones(len(actions)),
            baseline=self.config.online_baseline,
        )
        self._step(self._opt)

    # ------------------------------------------------------------------ saving

    def _get_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        if self.policy is None:
            return {}, {"built": False}
        arrays: dict[str, NDArray[Any]] = {}
        for name, module in self.modules().items():
            arrays |= {f"{name}.{k}": v for k, v in module.state_dict().items()}
        arrays |= {f"opt.{k}": v for k, v in self._opt.state_dict().items()}
        arrays |= {f"behaviour_opt.{k}": v for k, v in self._behaviour_opt.state_dict().items()}
        assert self.dims is not None
        return arrays, {"built": True, "user_dim": self.dims[0], "item_dim": self.dims[1]}

    def _set_state(self, arrays: dict[str, NDArray[Any]], state: dict[str, Any]) -> None:
        if not state.get("built"):
            return
        self.build(state["user_dim"], state["item_dim"], rng=None)
        try:
            for name, module in self.modules().items():
                prefix = f"{name}."
                module.load_state_dict(
                    {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                )
            for prefix, opt in (("opt.", self._opt), ("behaviour_opt.", self._behaviour_opt)):
                opt.load_state_dict(
                    {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                )
        except KeyError as exc:
            raise ArtifactError(f"saved REINFORCE agent lacks array {exc}") from exc
