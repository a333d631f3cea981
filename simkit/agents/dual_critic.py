"""RLUR-style dual-critic actor-critic for user retention (Cai et al. 2023).

**From the paper.** Retention is optimised as an infinite-horizon, request-based MDP: each step is
one request, the action weighs each candidate's predicted signals into a ranking score, and the
objective is the cumulative returning time between sessions, which arrives only when the user comes
back (a delayed reward). Two critics learn the two timescales: an immediate critic of the
per-request feedback and a retention critic of the returning time, whose discount is 1 between the
requests of a session and ``gamma`` across a session boundary (as in the public TD3-based
reimplementation). Three obstacles the paper names shape the rest: *uncertainty* of the returning
time, *bias* between user groups of different activity (frequent users would dominate), and
*instability* of learning from a delayed signal, for which the paper proposes a soft regularisation
of the actor's update.

**Our choices** (the paper's body was not available to us; these are not claimed to be its):

- the **actor** scores candidate ``j`` by ``c_j . w(s)`` (the paper's weights over predicted
  signals, ``w`` an MLP of the user vector) and draws from ``softmax_j(c_j . w(s))`` instead of a
  Gaussian over ``w``, so that every decision has an exact propensity. In
  :class:`~simkit.agents.retention_problem.RetentionTestEnv` the candidate features are
  ``(p_click, p_sat)``, so ``w(s)`` is the paper's ``(a1, a2)``;
- state-value critics with generalised advantage estimates (Schulman et al. 2016) instead of
  TD3's twin Q critics: ``V_I`` of the immediate rewards discounted by ``gamma_immediate`` per
  request, each session ending its horizon; ``V_T`` of ``r_T = -gap`` credited to the last request
  of the session it follows, with the session-boundary discount above, so that
  ``V_T(session start) = E[sum_n gamma^n (-T_n)]``. Each critic has its own GAE lambda
  (``retention_lambda``): a shorter one gives the requests inside a session the critic's change
  of expected return time instead of the noise of the gap that ends it;
- every ``batch_size`` requests, both advantages are normalised to zero mean and unit variance and
  mixed: ``A = (1 - alpha) A_I + alpha A_T``; the actor minimises ``-(1/n) sum_i sg(rho_i A_i)
  log pi(a_i|s_i) - entropy_coef * H`` over a few passes (``sg``: constant), with the soft
  regularisation weight ``rho_i = exp(-kappa |log pi(a_i|s_i) - log beta(a_i|s_i)|)`` (``beta``:
  the policy that collected the batch);
- for the bias between groups, each group's ``r_T`` is divided by the running root-mean-square of
  that group's ``r_T`` (the critic's units; :meth:`DualCritic.retention_value` returns days), and
  ``A_T`` is normalised within each group before mixing (``group_advantages``), so that frequent
  users, whose returning time varies little in days, still weigh in the retention signal. On the
  test problem it is not what makes training reliable (the small actor step is; with it the
  sweep in ``benchmarks/dual_critic_sweep.py`` passes every seed with and without it).

**What the agent reads from the env.** Observations ``{"user": (d_u,), "candidates": (K, d_c)}``
and a ``Discrete(K)`` action space, or the same batched over the users of a Gymnasium vector env
with ``NEXT_STEP`` autoreset (its ``info`` batched, each key with its ``_key`` mask). From each
step's ``info``:

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
from numpy.typing import NDArray

from simkit import diagnostics, nn
from simkit.agents.base import (
    Observation,
    SavableAgent,
    blas_threads,
    draw_from,
    observation_parts,
    register_agent,
)
from simkit.agents.dual_critic_parts import (
    CandidateWeightActor,
    Lanes,
    RunningMoments,
    mixed_advantages,
    mlp_or_zeros,
    session_gae,
)
from simkit.errors import ArtifactError, ConfigError, TrainingDivergedError

__all__ = [
    "CandidateWeightActor",
    "DualCritic",
    "DualCriticConfig",
    "TrainingDivergedError",
    "mixed_advantages",
    "session_gae",
]

F64 = NDArray[Any]


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
        lambda of the generalised advantage estimates (of both critics unless
        ``retention_lambda`` is set).
    retention_lambda : float or None
        lambda of the retention critic's estimates (None: ``gae_lambda``).
    discount_every_request : bool
        Ablation, not the method: discount the retention critic by ``gamma`` on every request,
        as a plain TD target does, instead of only across session boundaries.
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
        Divide each user group's retention reward by its running root-mean-square (the
        critic's units).
    group_advantages : bool
        Normalise the retention advantage within each user group before mixing (else over
        the batch).
    normalise_observations : bool
        Standardise user vectors by running mean and variance before the nets.
    grad_clip : float or None
        Global gradient-norm clip of every net.
    learn_actor : bool
        Update the actor; False evaluates the critics of a fixed policy.
    blas_threads : int or None
        BLAS threads while learning (1: small products are fastest single-threaded).

    Notes
    -----
    The actor step is small because larger ones make the policy swing between the retention
    optimum and the click optimum faster than the critics follow (``benchmarks/
    dual_critic_sweep.py``).
    """

    alpha: float = 0.9
    gamma: float = 0.9
    gamma_immediate: float = 0.9
    gae_lambda: float = 0.9
    retention_lambda: float | None = 0.5
    discount_every_request: bool = False
    actor_hidden: tuple[int, ...] = (32,)
    critic_hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    actor_lr: float = 0.005
    critic_lr: float = 3e-3
    batch_size: int = 2048
    n_epochs: int = 4
    n_minibatches: int = 4
    soft_kappa: float = 1.0
    entropy_coef: float = 0.0
    group_normalisation: bool = True
    group_advantages: bool = True
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
        if self.retention_lambda is not None and not 0.0 <= self.retention_lambda <= 1.0:
            problems.append(f"retention_lambda must be in [0, 1]; got {self.retention_lambda}")
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


# --------------------------------------------------------------------------- the agent


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
        self.last_propensity: float | NDArray[np.float64] | None = None
        self.group_scale_: dict[int, float] = {}
        self._group_sq: dict[int, tuple[float, float]] = {}
        self.updates_: list[dict[str, float]] = []

    # ------------------------------------------------------------------ networks

    def build(self, user_dim: int, item_dim: int, *, rng: np.random.Generator | None) -> None:
        """Create the nets and optimisers (zero weights when ``rng`` is None)."""
        cfg = self.config
        self.dims = (int(user_dim), int(item_dim))
        self.actor = CandidateWeightActor(user_dim, item_dim, cfg.actor_hidden, cfg.activation, rng)
        sizes = [user_dim, *cfg.critic_hidden, 1]
        self.critic_immediate = mlp_or_zeros(sizes, cfg.activation, rng)
        self.critic_retention = mlp_or_zeros(sizes, cfg.activation, rng)
        self.moments = RunningMoments(user_dim)
        self._actor_opt = nn.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self._imm_opt = nn.Adam(self.critic_immediate.parameters(), lr=cfg.critic_lr)
        self._ret_opt = nn.Adam(self.critic_retention.parameters(), lr=cfg.critic_lr)

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

    def act_batch(self, obs: Observation, *, rng: np.random.Generator) -> NDArray[np.int64]:
        """Sample one candidate per row of a batched observation ``(n, ...)`` from pi.

        ``last_propensity`` becomes the array of the chosen candidates' probabilities.
        """
        users = np.asarray(obs["user"], dtype=np.float64)
        cands = np.asarray(obs["candidates"], dtype=np.float64)
        with blas_threads(self.config.blas_threads):
            actions, logp = self._sample(users, cands, rng)
        self.last_propensity = np.exp(logp)
        return np.asarray(actions, dtype=np.int64)

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
        """Serve ``n_steps`` requests in ``env``, updating every ``batch_size`` requests.

        Parameters
        ----------
        env : gymnasium.Env or gymnasium.vector.VectorEnv
            ``Discrete(K)`` actions, observations ``{"user", "candidates"}``, and the ``info`` keys
            of the module docstring. A vector env (``NEXT_STEP`` autoreset, its ``info`` batched
            with ``_key`` masks) steps ``num_envs`` users at once: the same updates with one
            policy and env call per step for all of them.
        n_steps : int
            Requests to serve, summed over the users of a vector env.
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
            When the action space is not ``Discrete`` or a vector env does not autoreset on the
            next step.
        """
        lanes = Lanes(env)
        if n_steps < 1:
            raise ConfigError(f"n_steps must be at least 1; got {n_steps}")
        init_rng, env_rng, act_rng, batch_rng = rng.spawn(4)
        obs, info = lanes.reset(int(env_rng.integers(2**63 - 1)))
        if self.actor is None:
            self.build(obs["user"].shape[1], obs["candidates"].shape[2], rng=init_rng)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_steps, desc="DualCritic")
        try:
            with blas_threads(self.config.blas_threads):
                returns = self._run(lanes, obs, info, n_steps, act_rng, batch_rng, bar)
        finally:
            if bar is not None:
                bar.close()
        return np.asarray(returns)

    def _sample(self, users: F64, cands: F64, rng: np.random.Generator) -> tuple[Any, F64]:
        proba = nn.softmax(self.logits(users, cands))
        c = np.cumsum(proba, axis=1)
        u = rng.random(len(users)) * c[:, -1]
        a = np.minimum((c <= u[:, None]).sum(axis=1), proba.shape[1] - 1)
        return a, np.log(proba[np.arange(len(a)), a])

    def _run(
        self,
        lanes: Lanes,
        obs: dict[str, F64],
        info: dict[str, Any],
        n_steps: int,
        act_rng: np.random.Generator,
        batch_rng: np.random.Generator,
        bar: Any,
    ) -> list[float]:
        """Collect time-major rows ``(T, n)``; a row is final once its user's next step is seen."""
        cfg, n = self.config, lanes.n
        rows_per_update = max(1, math.ceil(cfg.batch_size / n))
        buf: list[dict[str, F64]] = []
        returns: list[float] = []
        episode = np.zeros(n)
        group = lanes.field(info, "user_group", np.zeros(n))[0].astype(np.int64)
        prev_session = np.zeros(n, dtype=np.int64)
        pending = np.zeros(n, dtype=bool)  # the user's last stored row awaits its next step
        served_total = 0
        while served_total < n_steps:
            users = np.asarray(obs["user"], dtype=np.float64)
            cands = np.asarray(obs["candidates"], dtype=np.float64)
            _check_finite(users, "observation 'user'", served_total)
            actions, logp = self._sample(users, cands, act_rng)
            obs, reward, terminated, truncated, info, served = lanes.step(actions)
            group = lanes.field(info, "user_group", group)[0].astype(np.int64)
            r_imm = lanes.field(info, "immediate_reward", reward)[0].astype(np.float64)
            _check_finite(np.concatenate([reward[served], r_imm[served]]), "reward", served_total)
            session = lanes.field(info, "session_index", np.zeros(n))[0].astype(np.int64)
            if buf:
                self._finalise_previous(
                    buf[-1],
                    lanes,
                    info,
                    pending & served & (session != prev_session),
                    group,
                    served_total,
                )
            row = {
                "present": served,
                "user": users,
                "cands": cands,
                "action": actions,
                "logp": logp,
                "r_imm": np.where(served, r_imm, 0.0),
                "r_ret": np.zeros(n),
                "group": group.copy(),
                "g_imm": np.full(n, cfg.gamma_immediate),
                "g_ret": np.full(n, cfg.gamma if cfg.discount_every_request else 1.0),
                "valid_ret": served.copy(),
                "end": np.zeros(n, dtype=bool),
                "next_user": np.asarray(obs["user"], dtype=np.float64),
            }
            done = terminated | truncated
            session_end = lanes.field(info, "session_end", np.zeros(n, dtype=bool))[0]
            row["end"] = done
            row["g_imm"][done & (terminated | session_end.astype(bool))] = 0.0
            row["g_ret"][terminated] = 0.0  # the user never returns: no retention after this
            row["valid_ret"][truncated & session_end.astype(bool) & ~terminated] = False
            buf.append(row)
            episode += np.where(served, reward, 0.0)
            for i in np.flatnonzero(done):
                returns.append(float(episode[i]))
                episode[i] = 0.0
            pending = served & ~done
            prev_session = session
            n_served = int(served.sum())
            served_total += n_served
            if bar is not None:
                bar.update(n_served)
            if len(buf) > rows_per_update:  # every row but the last is final
                self._update(buf[:-1], batch_rng, served_total)
                buf = buf[-1:]
        return returns

    def _finalise_previous(
        self,
        last: dict[str, F64],
        lanes: Lanes,
        info: dict[str, Any],
        boundary: NDArray[np.bool_],
        group: NDArray[np.int64],
        step: int,
    ) -> None:
        """Close the sessions that ended on ``last``: factor gamma, the gap as ``r_T``."""
        rows = np.flatnonzero(boundary)
        if rows.size == 0:
            return  # in-session: factor 1 for retention, gamma_immediate for the immediate critic
        last["g_imm"][rows] = 0.0
        last["g_ret"][rows] = self.config.gamma
        gap, has_gap = lanes.field(info, "gap", np.zeros(lanes.n))
        seen = rows[has_gap[rows]]
        last["valid_ret"][rows[~has_gap[rows]]] = False  # a new session without its gap
        gaps = gap[seen].astype(np.float64)
        _check_finite(gaps, "info['gap']", step)
        last["r_ret"][seen] = -gaps
        last["group"][seen] = group[seen]
        for g, r in zip(group[seen], -gaps):
            self._observe_gap(int(g), float(r))

    def _update(self, buf: list[dict[str, F64]], rng: np.random.Generator, step: int) -> None:
        cfg = self.config
        assert self.critic_immediate is not None and self.critic_retention is not None
        b = {k: np.stack([row[k] for row in buf]) for k in buf[0]}  # (T, n, ...)
        present = b["present"]
        shape = present.shape
        self.moments.update(b["user"][present])
        users = self._inputs(b["user"].reshape(-1, b["user"].shape[-1]))
        next_users = self._inputs(b["next_user"].reshape(-1, b["user"].shape[-1]))
        scale = np.vectorize(self._scale, otypes=[np.float64])(b["group"]) if b["group"].size else 1
        valid = b["valid_ret"] & present
        continues = ~b["end"]
        adv, targets = {}, {}
        for name, critic, rewards, disc, ok, lam in (
            ("imm", self.critic_immediate, b["r_imm"], b["g_imm"], present, cfg.gae_lambda),
            ("ret", self.critic_retention, b["r_ret"] / scale, b["g_ret"], valid, self._ret_lam),
        ):
            v = critic.forward(users)[:, 0].reshape(shape)
            v_next = critic.forward(next_users)[:, 0].reshape(shape)
            adv[name] = session_gae(rewards, v, v_next, disc, continues, ok, lam)[present]
            targets[name] = adv[name] + v[present]
        users, valid = users[present.ravel()], valid[present]
        cands = b["cands"][present]
        actions, logp_beta = b["action"][present].astype(np.int64), b["logp"][present]
        groups = b["group"][present] if cfg.group_advantages else None
        mixed = mixed_advantages(adv["imm"], adv["ret"], cfg.alpha, valid, groups)
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
        diagnostics.record(  # critic losses are the critics' mean squared TD errors
            critic_loss=record["imm"] + record["ret"],
            td_error=float(np.sqrt(record["imm"])),
            entropy=record["entropy"],
            reward_variance=float(np.var(b["r_imm"][present])),
        )
        record["step"] = float(step)
        self.updates_.append(record)

    @property
    def _ret_lam(self) -> float:
        lam = self.config.retention_lambda
        return self.config.gae_lambda if lam is None else lam

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
