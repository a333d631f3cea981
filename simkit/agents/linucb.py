"""LinUCB: ridge regression per arm (disjoint) or over candidate features (joint), plus a UCB bonus.

Each model keeps ``A = lambda I + sum x x^T``, its inverse and ``b = sum r x``. The inverse is
kept current by the Sherman-Morrison rank-one formula, ``A^-1 <- A^-1 - (A^-1 x)(A^-1 x)^T /
(1 + x^T A^-1 x)``, so no step inverts a matrix. A candidate scores
``theta^T x + alpha sqrt(x^T A^-1 x)``; the agent shows the argmax, ties broken at random.

- ``model="disjoint"`` (Li et al. 2010): one model per arm over the user/context vector; the arm
  is the candidate's position, so it suits a fixed catalogue offered in a fixed order.
- ``model="joint"``: one model over per-candidate feature vectors built from the user vector and
  the candidate row (``features``), for candidate sets that change every round.

With ``batch_size=B`` the statistics used for acting are published every ``B`` updates (delayed
feedback); ``epsilon_mix`` mixes in a uniform choice so that the logged propensities
``(1 - eps) 1[a = argmax] / #ties + eps / K`` support off-policy evaluation. The ridge statistics
and feature maps defined here are shared with :mod:`simkit.agents.lints`.

References
----------
Li, Chu, Langford, Schapire. A contextual-bandit approach to personalized news article
recommendation. WWW 2010.
Abbasi-Yadkori, Pal, Szepesvari. Improved algorithms for linear stochastic bandits. NeurIPS 2011.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.agents.base import (
    DecisionLog,
    Observation,
    SavableAgent,
    draw_from,
    greedy_proba,
    observation_parts,
    register_agent,
    run_bandit_online,
)
from simkit.errors import ArtifactError, ConfigError

__all__ = ["LinUCB", "LinUCBConfig", "RidgeStatistics", "candidate_features"]

F64 = NDArray[np.float64]
MODELS = ("disjoint", "joint")
FEATURES = ("outer", "product", "concat", "candidates")


def candidate_features(user: F64, candidates: F64, kind: str, intercept: bool) -> F64:
    """Feature vector of each candidate for the joint model, shape (K, p).

    Parameters
    ----------
    user : ndarray, shape (d_u,)
    candidates : ndarray, shape (K, d_c)
    kind : {"outer", "product", "concat", "candidates"}
        ``"outer"``: ``[user, 1] (x) [candidate, 1]`` flattened (all user-item interactions, the
        user and item main effects and a constant; ``intercept`` is then implied);
        ``"product"``: ``user * candidate`` (needs ``d_u == d_c``); ``"concat"``:
        ``[user, candidate]``; ``"candidates"``: the candidate rows as they are (the env already
        provides per-arm context features).
    intercept : bool
        Append a constant 1 (ignored for ``"outer"``, which has one).
    """
    k = candidates.shape[0]
    if kind == "outer":
        u1 = np.append(user, 1.0)
        c1 = np.hstack([candidates, np.ones((k, 1))])
        return (c1[:, :, None] * u1[None, None, :]).reshape(k, -1)
    if kind == "product":
        if user.shape[0] != candidates.shape[1]:
            raise ConfigError(
                "features='product' needs user and candidate vectors of the same size; got "
                f"{user.shape[0]} and {candidates.shape[1]}. Use features='outer'."
            )
        x = candidates * user
    elif kind == "concat":
        x = np.hstack([np.broadcast_to(user, (k, user.shape[0])), candidates])
    else:
        x = candidates
    return np.hstack([x, np.ones((k, 1))]) if intercept else x


class RidgeStatistics:
    """Ridge-regression statistics of ``n_models`` linear models of dimension ``dim``.

    Parameters
    ----------
    n_models, dim : int
    ridge : float
        lambda: ``A`` starts at ``lambda I``.

    Attributes
    ----------
    A, A_inv : ndarray, shape (n_models, dim, dim)
    b, theta : ndarray, shape (n_models, dim)
        ``theta = A^-1 b``, kept current.
    n_updates : int
    """

    def __init__(self, n_models: int, dim: int, ridge: float) -> None:
        eye = np.eye(dim)
        self.A = np.repeat((ridge * eye)[None], n_models, axis=0)
        self.A_inv = np.repeat((eye / ridge)[None], n_models, axis=0)
        self.b = np.zeros((n_models, dim))
        self.theta = np.zeros((n_models, dim))
        self.n_updates = 0

    def update(self, model: int, x: F64, reward: float) -> None:
        """Add one observation ``(x, reward)`` to model ``model`` (Sherman-Morrison)."""
        a_inv = self.A_inv[model]
        u = a_inv @ x
        a_inv -= np.outer(u, u) / (1.0 + x @ u)
        self.A[model] += np.outer(x, x)
        self.b[model] += reward * x
        self.theta[model] = a_inv @ self.b[model]
        self.n_updates += 1

    def copy(self) -> RidgeStatistics:
        """An independent copy."""
        new = RidgeStatistics.__new__(RidgeStatistics)
        new.A, new.A_inv = self.A.copy(), self.A_inv.copy()
        new.b, new.theta, new.n_updates = self.b.copy(), self.theta.copy(), self.n_updates
        return new

    def arrays(self, prefix: str) -> dict[str, F64]:
        """Arrays to save, names prefixed."""
        return {f"{prefix}.{k}": getattr(self, k) for k in ("A", "A_inv", "b", "theta")}

    @classmethod
    def from_arrays(cls, arrays: dict[str, F64], prefix: str, n_updates: int) -> RidgeStatistics:
        """Rebuild from :meth:`arrays` output."""
        new = cls.__new__(cls)
        try:
            for k in ("A", "A_inv", "b", "theta"):
                setattr(new, k, np.array(arrays[f"{prefix}.{k}"], dtype=np.float64))
        except KeyError as exc:
            raise ArtifactError(f"saved agent lacks array {exc}") from exc
        new.n_updates = int(n_updates)
        return new


class LinearBanditMixin(SavableAgent):
    """What LinUCB and LinTS share: features, ridge statistics, delayed publishing, I/O."""

    config: Any

    def _setup(self) -> None:
        self._shadow: RidgeStatistics | None = None  # updated on every observation
        self._stats: RidgeStatistics | None = None  # what the agent acts on (published)
        self.last_propensity: float | None = None
        self.last_info: dict[str, Any] = {}

    @property
    def statistics(self) -> RidgeStatistics:
        """The published ridge statistics (what the agent acts on)."""
        if self._stats is None:
            raise ConfigError("the agent has seen no observation yet")
        return self._stats

    def _features(self, obs: Observation) -> F64:
        """Per-candidate features (joint, shape (K, p)) or the context (disjoint, shape (p,))."""
        user, cands = observation_parts(obs)
        cfg = self.config
        if cfg.model == "disjoint":
            x = np.append(user, 1.0) if cfg.intercept else user
            n_models, dim = cands.shape[0], x.shape[0]
        else:
            x = candidate_features(user, cands, cfg.features, cfg.intercept)
            n_models, dim = 1, x.shape[1]
        if self._shadow is None:
            self._shadow = RidgeStatistics(n_models, dim, cfg.ridge)
            self._stats = self._shadow if cfg.batch_size == 1 else self._shadow.copy()
        elif self._shadow.b.shape != (n_models, dim):
            raise ConfigError(
                f"observations must keep one shape: the agent holds {self._shadow.b.shape[0]} "
                f"model(s) of dimension {self._shadow.b.shape[1]}, this one needs {n_models} of "
                f"dimension {dim}"
                + (" (disjoint arms are candidate positions)" if cfg.model == "disjoint" else "")
            )
        return x

    def _mean_and_var(self, x: F64) -> tuple[F64, F64]:
        stats = self.statistics
        if self.config.model == "disjoint":
            mean = stats.theta @ x
            var = (stats.A_inv @ x) @ x
        else:
            mean = x @ stats.theta[0]
            var = ((x @ stats.A_inv[0]) * x).sum(axis=1)
        return mean, np.maximum(var, 0.0)

    def update(self, obs: Observation, action: int, reward: float) -> None:
        """Learn from showing candidate ``action`` of ``obs`` and receiving ``reward``.

        The statistics the agent acts on are published every ``batch_size`` updates.
        """
        x = self._features(obs)
        assert self._shadow is not None
        if self.config.model == "disjoint":
            self._shadow.update(int(action), x, float(reward))
        else:
            self._shadow.update(0, x[int(action)], float(reward))
        if self.config.batch_size == 1:
            self._on_publish()
        elif self._shadow.n_updates % self.config.batch_size == 0:
            self._stats = self._shadow.copy()
            self._on_publish()

    def _on_publish(self) -> None:
        """Hook for cached quantities that depend on the published statistics."""

    def learn_online(
        self, env: Any, n_steps: int, *, rng: np.random.Generator, progress: bool = False
    ) -> F64:
        """Act and update in ``env`` for ``n_steps`` decisions.

        Returns
        -------
        ndarray
            Per-episode returns (one per decision in a one-step bandit env).
        """
        return run_bandit_online(self, env, n_steps, rng=rng, progress=progress)

    def learn_from_logs(self, logs: DecisionLog, *, rng: np.random.Generator | None = None) -> F64:
        """Replay logged rows as updates, in order (ridge regression needs no weights).

        Returns
        -------
        ndarray
            The logged rewards, in order.
        """
        for i in range(logs.n_rows):
            cands = logs.candidates if logs.candidates.ndim == 2 else logs.candidates[i]
            obs = {"user": logs.user[i], "candidates": cands}
            self.update(obs, int(logs.action[i]), float(logs.reward[i]))
        return np.asarray(logs.reward, dtype=np.float64)

    def _get_state(self) -> tuple[dict[str, F64], dict[str, Any]]:
        if self._shadow is None or self._stats is None:
            return {}, {"initialised": False}
        arrays = self._shadow.arrays("shadow") | self._stats.arrays("published")
        state = {
            "initialised": True,
            "shadow_updates": self._shadow.n_updates,
            "published_updates": self._stats.n_updates,
        }
        return arrays, state

    def _set_state(self, arrays: dict[str, F64], state: dict[str, Any]) -> None:
        if not state.get("initialised"):
            return
        self._shadow = RidgeStatistics.from_arrays(arrays, "shadow", state["shadow_updates"])
        if self.config.batch_size == 1:
            self._stats = self._shadow
        else:
            self._stats = RidgeStatistics.from_arrays(
                arrays, "published", state["published_updates"]
            )
        self._on_publish()


def check_linear_config(cfg: Any) -> list[str]:
    """Problems with the fields LinUCB and LinTS share."""
    problems = []
    if cfg.model not in MODELS:
        problems.append(f"model must be one of {MODELS}; got {cfg.model!r}")
    if cfg.features not in FEATURES:
        problems.append(f"features must be one of {FEATURES}; got {cfg.features!r}")
    if not cfg.ridge > 0:
        problems.append(f"ridge must be > 0; got {cfg.ridge}")
    if cfg.batch_size < 1:
        problems.append(f"batch_size must be >= 1; got {cfg.batch_size}")
    return problems


@dataclass(frozen=True, kw_only=True)
class LinUCBConfig:
    """Settings of :class:`LinUCB`.

    Parameters
    ----------
    alpha : float
        Width of the confidence bonus (1.0; 0 is greedy).
    ridge : float
        lambda, the ridge penalty (1.0).
    model : {"joint", "disjoint"}
        One model over candidate features, or one model per arm (= candidate position).
    features : {"outer", "product", "concat", "candidates"}
        Feature map of the joint model (see :func:`candidate_features`).
    intercept : bool
        Append a constant feature.
    batch_size : int
        Publish the statistics every ``batch_size`` updates (1: immediately).
    epsilon_mix : float
        Probability of a uniform choice instead of the UCB argmax (0: deterministic).
    """

    alpha: float = 1.0
    ridge: float = 1.0
    model: str = "joint"
    features: str = "outer"
    intercept: bool = True
    batch_size: int = 1
    epsilon_mix: float = 0.0

    def __post_init__(self) -> None:
        problems = check_linear_config(self)
        if not self.alpha >= 0:
            problems.append(f"alpha must be >= 0; got {self.alpha}")
        if not 0.0 <= self.epsilon_mix <= 1.0:
            problems.append(f"epsilon_mix must be in [0, 1]; got {self.epsilon_mix}")
        if problems:
            raise ConfigError("Invalid LinUCBConfig: " + "; ".join(problems) + ".")


@register_agent
class LinUCB(LinearBanditMixin):
    """Linear upper-confidence-bound bandit.

    Parameters
    ----------
    config : LinUCBConfig, optional
    **overrides
        Config fields, e.g. ``LinUCB(alpha=0.5, model="disjoint")``.

    Attributes
    ----------
    last_propensity : float
        ``(1 - eps) / #ties + eps / K`` for the shown argmax, ``eps / K`` otherwise.
    last_info : dict
        ``mean`` and ``ucb_width`` per candidate, ``deterministic`` flag.

    Examples
    --------
    >>> from simkit.agents.testenvs import LinearBanditEnv
    >>> agent = LinUCB(model="disjoint", intercept=False)
    >>> returns = agent.learn_online(LinearBanditEnv(), 200, rng=np.random.default_rng(0))
    >>> returns.shape
    (200,)
    """

    Config = LinUCBConfig

    def __init__(self, config: LinUCBConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or LinUCBConfig(), **overrides)
        self._setup()

    def predict(self, obs: Observation) -> tuple[F64, F64]:
        """Posterior mean reward and UCB width ``alpha sqrt(x^T A^-1 x)`` of each candidate."""
        mean, var = self._mean_and_var(self._features(obs))
        return mean, self.config.alpha * np.sqrt(var)

    def action_proba(self, obs: Observation, *, rng: np.random.Generator | None = None) -> F64:
        """Probability of showing each candidate (exact; ``rng`` is not used)."""
        mean, width = self.predict(obs)
        return greedy_proba(mean + width, self.config.epsilon_mix)

    def act(self, obs: Observation, *, rng: np.random.Generator) -> int:
        """Show the candidate with the highest upper confidence bound (ties at random)."""
        mean, width = self.predict(obs)
        proba = greedy_proba(mean + width, self.config.epsilon_mix)
        action = draw_from(proba, rng)
        self.last_propensity = float(proba[action])
        self.last_info = {
            "mean": mean,
            "ucb_width": width,
            "deterministic": self.config.epsilon_mix == 0.0,
        }
        return action
