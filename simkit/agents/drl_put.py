"""DRL-PUT: per-request tuning of the ad ranking utility by single-step REINFORCE.

The state is the ad request (user and context features), the action one of the 10 x 10 x 10
grouped utility settings of :mod:`simkit.ads_world` (click weights, conversion weight, reserve
price) and the reward the campaign-type reward of the ad the auction shows. The policy is one
softmax over all 1000 actions:

    pi(a|s) = softmax_a( f(s) . g(a) + c(a) ),

where ``f`` embeds each categorical feature (one table per feature), concatenates the numeric
features and applies ``batch norm -> linear -> ReLU`` layers, and ``g``, ``c`` score the action from
its group indices (one-hot, 30 inputs) so that neighbouring settings share what is learned. At
serving time the agent takes the argmax.

Training (the paper's recipe) runs on the uniform exploration slice of the logs, mini-batch
averaged, gamma = 0, **without** importance weights:

    L = -(1/n) sum_i r~_i log pi(a_i|s_i),
    r~_i = revenue_i + sum_k gamma_{c_i,k} p~_{i,k},

with ``p~`` the engagement probabilities (click, click30, conversion) min-max normalised per
engagement type over the batch (:func:`minmax_normalise`) and ``gamma`` the campaign-type table
:data:`simkit.ads_world.GAMMA` (``reward="revenue"`` keeps revenue only, the paper's ablation).
Under a uniform logging policy the fixed point is ``pi(a|s)`` proportional to ``E[r~|s, a]``: a
reward-weighted classification whose argmax is the best setting. Options kept for comparison:
``importance_weighting=True`` multiplies each row by the capped ratio ``pi/mu`` (a policy
gradient that converges to a deterministic policy); ``heads="factorised"`` replaces the joint
softmax by three per-group softmaxes; ``algorithm="actor_critic"`` subtracts a learned state-value
critic ``V(s)`` from the reward (the variant the paper found to fail).

Offline gates on held-out uniform logs: :func:`diversity` (distinct settings chosen and the
normalised entropy of their histogram) and :func:`relative_gain` (the SNIPS value of the policy
relative to the logging policy's mean reward, with a bootstrap interval).

References
----------
Deep Reinforcement Learning for Ranking Utility Tuning in the Ad Recommender System at Pinterest
(DRL-PUT), Pinterest, 2025. arXiv:2509.05292.
Williams. Simple statistical gradient-following algorithms for connectionist reinforcement
learning. Machine Learning 8, 1992.
Swaminathan, Joachims. The self-normalized estimator for counterfactual learning. NeurIPS 2015.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit import diagnostics, nn
from simkit.ads_world import N_ACTIONS, USER_FEATURES
from simkit.agents.base import (
    Observation,
    SavableAgent,
    blas_threads,
    draw_from,
    observation_parts,
    register_agent,
)
from simkit.agents.drl_put_parts import (
    ENGAGEMENT_COLUMNS,
    Diversity,
    RelativeGain,
    campaign_reward,
    diversity,
    minmax_normalise,
    read_ads_log,
    relative_gain,
)
from simkit.errors import ArtifactError, ConfigError, LogError

__all__ = [
    "DRLPUT",
    "DRLPUTConfig",
    "Diversity",
    "RelativeGain",
    "campaign_reward",
    "diversity",
    "minmax_normalise",
    "read_ads_log",
    "relative_gain",
]

F64 = NDArray[Any]
N_GROUP = 10


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class DRLPUTConfig:
    """Settings of :class:`DRLPUT`.

    Parameters
    ----------
    categorical : tuple of int
        Columns of ``obs["user"]`` holding integer codes; each gets its own embedding table.
    embedding_dim : int
        Size of each embedding.
    hidden : tuple of int
        Widths of the ``batch norm -> linear -> ReLU`` layers of the state network.
    state_dim : int
        Size of the state vector ``f(s)`` (and of the action vector ``g(a)``).
    action_hidden : int
        Hidden width of the action network ``g``.
    heads : {"joint", "factorised"}
        One softmax over 1000 actions, or one softmax per group (their product).
    action_features : {"onehot", "values"}
        What the action network ``g`` reads: the one-hot group indices (30 inputs) or the three
        group indices scaled to [0, 1] (a smoother surface over the settings).
    algorithm : {"reinforce", "actor_critic"}
        REINFORCE on the reward, or with a learned state-value critic as baseline.
    importance_weighting : bool
        Multiply each row by ``min(pi/mu, weight_cap)`` (off by default, as in the paper).
    weight_cap : float
    reward : {"campaign", "revenue"}
        Campaign-type reward or revenue only.
    normalise : bool
        Min-max batch normalisation of the engagement probabilities.
    learning_rate : float
        Adam step size.
    final_learning_rate : float or None
        When set, each :meth:`DRLPUT.learn_from_logs` call moves the step size linearly from
        ``learning_rate`` to this value over its updates (the argmax settles instead of
        following the last batches).
    batch_size : int
        Requests per offline update.
    online_batch_size : int
        Env steps per online update.
    grad_clip : float or None
        Global gradient-norm clip.
    blas_threads : int or None
        BLAS threads while learning (None: leave numpy alone).
    """

    categorical: tuple[int, ...] = (0, 1, 2)
    embedding_dim: int = 4
    hidden: tuple[int, ...] = (64,)
    state_dim: int = 32
    action_hidden: int = 64
    heads: str = "joint"
    action_features: str = "onehot"
    algorithm: str = "reinforce"
    importance_weighting: bool = False
    weight_cap: float = 20.0
    reward: str = "campaign"
    normalise: bool = True
    learning_rate: float = 3e-3
    final_learning_rate: float | None = None
    batch_size: int = 1024
    online_batch_size: int = 256
    grad_clip: float | None = 10.0
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        problems = []
        choices = {
            "heads": ("joint", "factorised"),
            "action_features": ("onehot", "values"),
            "algorithm": ("reinforce", "actor_critic"),
            "reward": ("campaign", "revenue"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}; got {getattr(self, name)!r}")
        for name in ("embedding_dim", "state_dim", "action_hidden", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.online_batch_size < 2:
            problems.append(f"online_batch_size must be >= 2; got {self.online_batch_size}")
        if any(h < 1 for h in self.hidden) or any(c < 0 for c in self.categorical):
            problems.append(
                f"hidden widths must be >= 1 and categorical columns >= 0; got {self.hidden}, "
                f"{self.categorical}"
            )
        for name in ("weight_cap", "learning_rate"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0; got {getattr(self, name)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 or None; got {self.grad_clip}")
        if problems:
            raise ConfigError("Invalid DRLPUTConfig: " + "; ".join(problems) + ".")


def _action_inputs(kind: str) -> F64:
    """Inputs of the action network: group one-hots (30) or group indices scaled to [0, 1]."""
    a = np.arange(N_ACTIONS)
    groups = (a // 100, (a // 10) % 10, a % 10)
    if kind == "values":
        return np.stack(groups, axis=1) / (N_GROUP - 1.0)
    out = np.zeros((N_ACTIONS, 3 * N_GROUP))
    for g, idx in enumerate(groups):
        out[a, g * N_GROUP + idx] = 1.0
    return out


class _StateNet:
    """One embedding per categorical column, numeric columns, then BN -> linear -> ReLU layers."""

    def __init__(
        self,
        cfg: DRLPUTConfig,
        cards: list[int],
        n_numeric: int,
        out_dim: int,
        rng: np.random.Generator | None,
    ):
        self.emb = [nn.Embedding(c + 1, cfg.embedding_dim, rng=rng) for c in cards]
        width = cfg.embedding_dim * len(cards) + n_numeric
        layers: list[nn.Module] = []
        for h in cfg.hidden:
            layers += [nn.BatchNorm(width), nn.Dense(width, h, rng=rng, init=_init(rng, "he"))]
            layers.append(nn.ReLU())
            width = h
        layers += [nn.BatchNorm(width), nn.Dense(width, out_dim, rng=rng, init=_init(rng))]
        self.mlp = nn.Sequential(layers)

    def modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {f"emb{i}": e for i, e in enumerate(self.emb)}
        out["mlp"] = self.mlp
        return out

    def forward(self, codes: NDArray[np.int64], numeric: F64) -> F64:
        parts = [e.forward(codes[:, i]) for i, e in enumerate(self.emb)]
        return self.mlp.forward(np.concatenate([*parts, numeric], axis=1))

    def backward(self, grad: F64) -> None:
        g = self.mlp.backward(grad)
        assert g is not None
        d = self.emb[0].dim if self.emb else 0
        for i, e in enumerate(self.emb):
            e.backward(g[:, i * d : (i + 1) * d])


def _init(rng: np.random.Generator | None, kind: str = "xavier") -> str:
    return "zeros" if rng is None else kind


@register_agent
class DRLPUT(SavableAgent):
    """DRL-PUT agent: picks the utility setting of each ad request (see the module docstring).

    Parameters
    ----------
    config : DRLPUTConfig, optional
    **overrides
        Config fields, e.g. ``DRLPUT(heads="factorised")``.

    Attributes
    ----------
    last_propensity : float or None
        Probability of the last action (1/#ties at the argmax when serving).

    Examples
    --------
    >>> from simkit.ads_world import AdsWorld
    >>> world = AdsWorld(n_users=200)
    >>> logs = world.log_uniform(4000, rng=np.random.default_rng(0))
    >>> agent = DRLPUT(batch_size=256)
    >>> losses = agent.learn_from_logs(logs, rng=np.random.default_rng(1), n_steps=5)
    >>> int(agent.predict(world.features(world.population)).max()) < 1000
    True
    """

    Config = DRLPUTConfig

    def __init__(self, config: DRLPUTConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or DRLPUTConfig(), **overrides)
        self.state_net: _StateNet | None = None
        self.critic: _StateNet | None = None
        self.cardinalities: list[int] = []
        self.n_features = 0
        self.last_propensity: float | None = None
        self._actions = _action_inputs(self.config.action_features)

    # ------------------------------------------------------------------ network

    def build(self, n_features: int, cardinalities: list[int], *, rng: np.random.Generator | None):
        """Create the networks (zero weights when ``rng`` is None) and the optimisers."""
        cfg = self.config
        if any(c >= n_features for c in cfg.categorical):
            raise ConfigError(
                f"categorical columns {cfg.categorical} must index the {n_features} request "
                "features; set DRLPUTConfig(categorical=...) to the columns holding codes."
            )
        self.n_features, self.cardinalities = int(n_features), [int(c) for c in cardinalities]
        n_num = n_features - len(cfg.categorical)
        factorised = cfg.heads == "factorised"
        out = 3 * N_GROUP if factorised else cfg.state_dim
        self.state_net = _StateNet(cfg, self.cardinalities, n_num, out, rng)
        self.action_net = nn.Sequential(
            [
                nn.Dense(self._actions.shape[1], cfg.action_hidden, rng=rng, init=_init(rng, "he")),
                nn.ReLU(),
                nn.Dense(cfg.action_hidden, cfg.state_dim, rng=rng, init=_init(rng)),
            ]
        )
        self.action_bias = nn.Dense(self._actions.shape[1], 1, init="zeros")
        self.critic = (
            _StateNet(cfg, self.cardinalities, n_num, 1, rng)
            if cfg.algorithm == "actor_critic"
            else None
        )
        self._opt = nn.Adam(self.policy_parameters(), lr=cfg.learning_rate)
        self._critic_opt = (
            nn.Adam([p for m in self.critic.modules().values() for p in m.parameters()])
            if self.critic is not None
            else None
        )

    def modules(self) -> dict[str, nn.Module]:
        """Every module by name."""
        if self.state_net is None:
            raise ConfigError("DRLPUT has no networks yet: call learn_from_logs or learn_online.")
        out = {f"state.{k}": m for k, m in self.state_net.modules().items()}
        if self.config.heads == "joint":
            out |= {"action": self.action_net, "action_bias": self.action_bias}
        if self.critic is not None:
            out |= {f"critic.{k}": m for k, m in self.critic.modules().items()}
        return out

    def policy_parameters(self) -> list[nn.Parameter]:
        """Parameters the policy loss trains."""
        return [
            p
            for k, m in self.modules().items()
            if not k.startswith("critic")
            for p in m.parameters()
        ]

    def train(self, mode: bool = True) -> None:
        """Training mode (batch statistics in BatchNorm) or evaluation mode."""
        for m in self.modules().values():
            m.train(mode)

    def _split(self, x: F64) -> tuple[NDArray[np.int64], F64]:
        cat = list(self.config.categorical)
        num = [i for i in range(x.shape[1]) if i not in cat]
        codes = np.rint(x[:, cat]).astype(np.int64)
        cards = np.asarray(self.cardinalities)
        codes = np.where((codes >= 0) & (codes < cards), codes, cards)  # unseen -> last row
        return codes, x[:, num]

    def logits(self, x: F64) -> F64:
        """Logits, shape (n, 1000) for joint heads or (n, 3, 10) for factorised heads."""
        assert self.state_net is not None
        s = self.state_net.forward(*self._split(np.asarray(x, dtype=np.float64)))
        if self.config.heads == "factorised":
            return s.reshape(-1, 3, N_GROUP)
        g = self.action_net.forward(self._actions)
        self._s, self._g = s, g
        return s @ g.T + self.action_bias.forward(self._actions)[:, 0]

    def log_proba(self, x: F64) -> F64:
        """log pi(a|s) over the 1000 actions, shape (n, 1000)."""
        z = self.logits(x)
        if z.ndim == 2:
            return nn.log_softmax(z)
        lp = nn.log_softmax(z, axis=-1)  # (n, 3, 10)
        return (
            lp[:, 0, :, None, None] + lp[:, 1, None, :, None] + lp[:, 2, None, None, :]
        ).reshape(len(z), N_ACTIONS)

    def predict(self, x: F64, *, chunk: int = 4096) -> NDArray[np.int64]:
        """Serving: the argmax action of each row of request features ``x`` (evaluation mode)."""
        self.train(False)
        x = np.asarray(x, dtype=np.float64)
        out = [np.argmax(self.log_proba(x[i : i + chunk]), axis=1) for i in range(0, len(x), chunk)]
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ acting

    def action_proba(self, obs: Observation, *, rng: np.random.Generator | None = None) -> F64:
        """pi over the 1000 settings for ``obs`` (evaluation mode)."""
        user, _ = self._obs(obs)
        self.train(False)
        return np.exp(self.log_proba(user[None]))[0]

    def act(self, obs: Observation, *, rng: np.random.Generator, explore: bool = False) -> int:
        """The argmax setting (serving); ``explore=True`` samples from pi instead."""
        p = self.action_proba(obs)
        if explore:
            a = draw_from(p, rng)
            self.last_propensity = float(p[a])
            return a
        best = np.flatnonzero(p >= p.max())
        self.last_propensity = 1.0 / best.size
        return int(best[0])

    def _obs(self, obs: Observation) -> tuple[F64, F64]:
        user, cands = observation_parts(obs)
        if cands.shape[0] != N_ACTIONS:
            raise ValueError(
                f"DRLPUT acts on the {N_ACTIONS} grouped settings of simkit/AdUtility-v0; got "
                f"{cands.shape[0]} candidate rows. Use it with AdUtilityEnv."
            )
        if self.state_net is None:
            raise ConfigError("DRLPUT is not trained: call learn_from_logs or learn_online.")
        return user, cands

    # ------------------------------------------------------------------ losses

    def loss_and_gradients(
        self, x: F64, actions: NDArray[np.int64], reward: F64, propensity: F64 | None = None
    ) -> float:
        """Policy loss of a batch (see the module docstring); stores the policy gradients.

        The row weights (reward, minus the critic's value for the actor-critic variant, times
        the capped importance weight when enabled) are constants of the backward pass.
        """
        cfg = self.config
        n = len(actions)
        coef = np.asarray(reward, dtype=np.float64).copy()
        if self.critic is not None:
            coef -= self._critic_step(x, coef)
        z = self.logits(x)
        rows = np.arange(n)
        if cfg.heads == "joint":
            logp, p = nn.log_softmax_and_softmax(z)
            logp_a = logp[rows, actions]
        else:
            lp = nn.log_softmax(z, axis=-1)
            groups = np.stack([actions // 100, (actions // 10) % 10, actions % 10], axis=1)
            logp_a = lp[rows[:, None], np.arange(3), groups].sum(axis=1)
        if cfg.importance_weighting:
            if propensity is None:
                raise LogError("importance_weighting needs the logged propensities.")
            coef *= np.minimum(np.exp(logp_a) / propensity, cfg.weight_cap)
            ratio = np.exp(logp_a) / propensity
            diagnostics.record(
                cap_share=float(np.mean(ratio >= cfg.weight_cap)),
                ess_share=diagnostics.weight_stats(ratio, np.inf)["ess_share"],
            )
        ent = diagnostics.entropy(p) if cfg.heads == "joint" else diagnostics.entropy(np.exp(lp))
        diagnostics.record(entropy=ent, reward_variance=float(np.var(reward)))
        coef /= n
        loss = -float(coef @ logp_a)
        if cfg.heads == "joint":
            dz = p * coef[:, None]
            dz[rows, actions] -= coef
            self.action_bias.backward(dz.sum(axis=0)[:, None])
            self.action_net.backward(dz.T @ self._s)
            ds = dz @ self._g
        else:
            dz = np.exp(lp) * coef[:, None, None]
            dz[rows[:, None], np.arange(3), groups] -= coef[:, None]
            ds = dz.reshape(n, -1)
        assert self.state_net is not None
        self.state_net.backward(ds)
        return loss

    def _critic_step(self, x: F64, reward: F64) -> F64:
        """One MSE step of the critic V(s) toward the reward; returns V(s) before the step."""
        assert self.critic is not None and self._critic_opt is not None
        v = self.critic.forward(*self._split(x))
        _, grad = nn.mse_loss(v, reward[:, None])
        self.critic.backward(grad)
        self._critic_opt.step()
        return v[:, 0]

    def _step(self) -> None:
        if self.config.grad_clip is not None:
            nn.clip_grad_norm(self._opt.params, self.config.grad_clip)
        self._opt.step()

    # ------------------------------------------------------------------ training

    def batch_reward(self, frame: pd.DataFrame) -> F64:
        """Training reward of a batch of logged rows (normalised within the batch)."""
        return campaign_reward(
            frame["campaign_type"].to_numpy(),
            frame["est_revenue"].to_numpy(),
            frame.loc[:, list(ENGAGEMENT_COLUMNS)].to_numpy(dtype=np.float64),
            reward=self.config.reward,
            normalise=self.config.normalise,
        )

    def learn_from_logs(
        self,
        logs: Any,
        *,
        rng: np.random.Generator,
        n_steps: int | None = None,
        n_epochs: int | None = None,
        feature_columns: tuple[str, ...] = USER_FEATURES,
        progress: bool = False,
    ) -> F64:
        """Train offline on uniformly explored ads logs (:meth:`AdsWorld.log_uniform` layout).

        Parameters
        ----------
        logs : pandas.DataFrame or path
            One row per request with the request features, ``action``, ``propensity``,
            ``campaign_type`` (-1 when nothing was shown), ``est_revenue``, ``p_click``,
            ``p_click30`` and ``p_conversion``.
        rng : numpy.random.Generator
            Initial weights and batches.
        n_steps, n_epochs : int, optional
            Updates on batches drawn with replacement, or passes over the rows (give one).
        feature_columns : tuple of str
            Request features, in the order ``obs["user"]`` has them.
        progress : bool
            Show a progress bar.

        Returns
        -------
        ndarray
            Loss of each update.

        Raises
        ------
        LogError
            Missing columns or bad values (see :func:`read_ads_log`).
        """
        if (n_steps is None) == (n_epochs is None):
            raise ConfigError("give exactly one of n_steps and n_epochs")
        frame = read_ads_log(logs, feature_columns)
        x = frame.loc[:, list(feature_columns)].to_numpy(dtype=np.float64)
        actions = frame["action"].to_numpy(dtype=np.int64)
        init_rng, batch_rng = rng.spawn(2)
        if self.state_net is None:
            cards = [int(x[:, c].max()) + 1 for c in self.config.categorical if c < x.shape[1]]
            self.build(x.shape[1], cards, rng=init_rng)
        bs = min(self.config.batch_size, len(frame))
        n = len(frame)
        if n_steps is not None:
            batches = [batch_rng.integers(n, size=bs) for _ in range(n_steps)]
        else:
            assert n_epochs is not None
            batches = [
                perm[i : i + bs]
                for _ in range(n_epochs)
                for perm in [batch_rng.permutation(n)]
                for i in range(0, n - bs + 1, bs)
            ]
        it: Any = batches
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc="DRL-PUT")
        losses = np.empty(len(batches))
        prop = frame["propensity"].to_numpy(dtype=np.float64)
        self.train(True)
        with blas_threads(self.config.blas_threads):
            for t, idx in enumerate(it):
                if self.config.final_learning_rate is not None:
                    frac = t / max(len(batches) - 1, 1)
                    lr0, lr1 = self.config.learning_rate, self.config.final_learning_rate
                    self._opt.lr = lr0 + frac * (lr1 - lr0)
                r = self.batch_reward(frame.iloc[idx])
                losses[t] = self.loss_and_gradients(x[idx], actions[idx], r, prop[idx])
                self._step()
        self.train(False)
        return losses

    def learn_online(
        self, env: Any, n_steps: int, *, rng: np.random.Generator, progress: bool = False
    ) -> F64:
        """On-policy single-step REINFORCE in ``simkit/AdUtility-v0`` for ``n_steps`` requests.

        Actions are sampled from pi; every ``online_batch_size`` steps the batch reward
        (normalised within the batch) minus its mean weights the update.

        Returns
        -------
        ndarray
            The env reward of every step.
        """
        env_rng, act_rng, init_rng = rng.spawn(3)
        obs, _ = env.reset(seed=int(env_rng.integers(2**63 - 1)))
        user, _ = observation_parts(obs)
        if self.state_net is None:
            space = env.observation_space["user"]
            cards = [int(space.high[c]) + 1 for c in self.config.categorical]
            self.build(user.shape[0], cards, rng=init_rng)
        rewards = np.empty(n_steps)
        rows: list[dict[str, Any]] = []
        steps: Any = range(n_steps)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="DRL-PUT online")
        with blas_threads(self.config.blas_threads):
            for t in steps:
                a = self.act(obs, rng=act_rng, explore=True)
                x = np.asarray(obs["user"], dtype=np.float64)
                obs, reward, _, _, info = env.step(a)
                rewards[t] = reward
                rows.append({"x": x, "action": a, **info})
                obs, _ = env.reset()
                if len(rows) >= self.config.online_batch_size:
                    self._online_update(pd.DataFrame(rows))
                    rows = []
        return rewards

    def _online_update(self, batch: pd.DataFrame) -> None:
        r = self.batch_reward(batch)
        x = np.stack(batch["x"].to_list())
        self.train(True)
        self.loss_and_gradients(x, batch["action"].to_numpy(dtype=np.int64), r - r.mean())
        self._step()
        self.train(False)

    # ------------------------------------------------------------------ gates

    def gates(
        self,
        holdout: Any,
        *,
        rng: np.random.Generator,
        feature_columns: tuple[str, ...] = USER_FEATURES,
        min_distinct: int = 3,
        n_bootstrap: int = 1000,
    ) -> tuple[Diversity, RelativeGain]:
        """The Diversity and Relative_Gain gates on held-out uniform logs.

        The logged reward of each row is the campaign-type reward with the *held-out* batch as
        the normalisation batch.
        """
        frame = read_ads_log(holdout, feature_columns)
        x = frame.loc[:, list(feature_columns)].to_numpy(dtype=np.float64)
        chosen = self.predict(x)
        gain = relative_gain(
            self.batch_reward(frame),
            chosen,
            frame["action"].to_numpy(),
            frame["propensity"].to_numpy(),
            rng=rng,
            n_bootstrap=n_bootstrap,
        )
        return diversity(chosen, min_distinct=min_distinct), gain

    # ------------------------------------------------------------------ saving

    def _get_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        if self.state_net is None:
            return {}, {"built": False}
        arrays: dict[str, NDArray[Any]] = {}
        for name, module in self.modules().items():
            arrays |= {f"{name}.{k}": v for k, v in module.state_dict().items()}
        arrays |= {f"opt.{k}": v for k, v in self._opt.state_dict().items()}
        if self._critic_opt is not None:
            arrays |= {f"critic_opt.{k}": v for k, v in self._critic_opt.state_dict().items()}
        state = {"built": True, "n_features": self.n_features, "cardinalities": self.cardinalities}
        return arrays, state

    def _set_state(self, arrays: dict[str, NDArray[Any]], state: dict[str, Any]) -> None:
        if not state.get("built"):
            return
        self.build(state["n_features"], list(state["cardinalities"]), rng=None)
        try:
            for name, module in self.modules().items():
                prefix = f"{name}."
                module.load_state_dict(
                    {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                )
            opts = [("opt.", self._opt), ("critic_opt.", self._critic_opt)]
            for prefix, opt in opts:
                if opt is not None:
                    opt.load_state_dict(
                        {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                    )
        except KeyError as exc:
            raise ArtifactError(f"saved DRLPUT agent lacks array {exc}") from exc
        self.train(False)
