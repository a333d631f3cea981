"""Linear Thompson sampling with an explicit posterior scale and Monte-Carlo propensities.

The ridge statistics are those of :mod:`simkit.agents.linucb`. Each round the agent samples
``theta ~ N(theta_hat, v^2 A^-1)`` and shows the candidate with the best sampled score. With
disjoint arms the sampled scores are independent normals ``N(theta_a^T x, v^2 x^T A_a^-1 x)``
(the same distribution as sampling each ``theta_a``); the joint model samples ``theta`` through a
Cholesky factor of ``A^-1``, recomputed only when the statistics are published.

The posterior scale ``v`` defaults to 0.3 (AGENTS.md section 1.4): OBP and Pearl use 1, which
over-explores badly when the reward noise is small. The probability of the shown candidate has no
closed form; it is estimated from ``propensity_samples`` extra posterior draws (argmax
frequencies with a floor of ``1/(M+1)``, renormalised), so the logs stay usable off-policy.

References
----------
Agrawal, Goyal. Thompson sampling for contextual bandits with linear payoffs. ICML 2013.
Chapelle, Li. An empirical evaluation of Thompson sampling. NeurIPS 2011.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.agents.base import Observation, register_agent
from simkit.agents.linucb import LinearBanditMixin, check_linear_config
from simkit.errors import ConfigError

__all__ = ["LinTS", "LinTSConfig"]

F64 = NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class LinTSConfig:
    """Settings of :class:`LinTS` (AGENTS.md section 1.4).

    Parameters
    ----------
    scale : float
        Posterior scale v (0.3; about 3x the reward-noise standard deviation).
    ridge : float
        lambda, the ridge penalty (1.0).
    model : {"joint", "disjoint"}
    features : {"outer", "product", "concat", "candidates"}
        Feature map of the joint model (see :func:`simkit.agents.linucb.candidate_features`).
    intercept : bool
    batch_size : int
        Publish the statistics every ``batch_size`` updates.
    propensity_samples : int
        M, posterior draws per decision for the logged propensity (0: do not estimate).
    """

    scale: float = 0.3
    ridge: float = 1.0
    model: str = "joint"
    features: str = "outer"
    intercept: bool = True
    batch_size: int = 1
    propensity_samples: int = 1000

    def __post_init__(self) -> None:
        problems = check_linear_config(self)
        if not self.scale > 0:
            problems.append(f"scale must be > 0; got {self.scale}")
        if self.propensity_samples < 0:
            problems.append(f"propensity_samples must be >= 0; got {self.propensity_samples}")
        if problems:
            raise ConfigError("Invalid LinTSConfig: " + "; ".join(problems) + ".")


@register_agent
class LinTS(LinearBanditMixin):
    """Linear Thompson sampling.

    Parameters
    ----------
    config : LinTSConfig, optional
    **overrides
        Config fields, e.g. ``LinTS(scale=0.3, model="disjoint")``.

    Attributes
    ----------
    last_propensity : float or None
        Monte-Carlo probability of the shown candidate (None with ``propensity_samples=0``).
    last_info : dict
        Posterior ``mean`` and standard deviation ``std`` (``v sqrt(x^T A^-1 x)``) per candidate.

    Examples
    --------
    >>> from simkit.agents.testenvs import LinearBanditEnv
    >>> agent = LinTS(model="disjoint", intercept=False, propensity_samples=100)
    >>> obs, _ = LinearBanditEnv().reset(seed=0)
    >>> a = agent.act(obs, rng=np.random.default_rng(0))
    >>> 0 < agent.last_propensity <= 1
    True
    """

    Config = LinTSConfig

    def __init__(self, config: LinTSConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or LinTSConfig(), **overrides)
        self._setup()
        self._chol: F64 | None = None

    def _on_publish(self) -> None:
        self._chol = None

    def _sample_scores(
        self, x: F64, n: int, rng: np.random.Generator, moments: tuple[F64, F64] | None = None
    ) -> F64:
        """``n`` posterior draws of every candidate's score, shape (n, K)."""
        v = self.config.scale
        if self.config.model == "disjoint":
            mean, var = moments or self._mean_and_var(x)
            return mean + v * np.sqrt(var) * rng.standard_normal((n, mean.size))
        stats = self.statistics
        if self._chol is None:
            self._chol = np.linalg.cholesky(stats.A_inv[0])
        theta = stats.theta[0] + v * rng.standard_normal((n, x.shape[1])) @ self._chol.T
        return theta @ x.T

    def predict(self, obs: Observation) -> tuple[F64, F64]:
        """Posterior mean score and its standard deviation ``v sqrt(x^T A^-1 x)``."""
        mean, var = self._mean_and_var(self._features(obs))
        return mean, self.config.scale * np.sqrt(var)

    def action_proba(
        self,
        obs: Observation,
        *,
        rng: np.random.Generator | None = None,
        n_samples: int | None = None,
    ) -> F64:
        """Monte-Carlo probability that each candidate has the best sampled score.

        Parameters
        ----------
        obs : dict
        rng : numpy.random.Generator
            Required: the estimate draws posterior samples.
        n_samples : int, optional
            M (default ``propensity_samples``, or 1000 when that is 0).

        Returns
        -------
        ndarray
            ``max(count/M, 1/(M+1))``, renormalised to sum to one.
        """
        if rng is None:
            raise TypeError("LinTS.action_proba draws posterior samples: pass rng=Generator")
        m = n_samples or self.config.propensity_samples or 1000
        return self._mc_proba(self._features(obs), m, rng)

    def _mc_proba(
        self, x: F64, m: int, rng: np.random.Generator, moments: tuple[F64, F64] | None = None
    ) -> F64:
        scores = self._sample_scores(x, m, rng, moments)
        counts = np.bincount(scores.argmax(axis=1), minlength=scores.shape[1])
        p = np.maximum(counts / m, 1.0 / (m + 1))
        return p / p.sum()

    def act(self, obs: Observation, *, rng: np.random.Generator) -> int:
        """Show the best candidate under one posterior sample; estimate its propensity."""
        x = self._features(obs)
        mean, var = moments = self._mean_and_var(x)
        action = int(np.argmax(self._sample_scores(x, 1, rng, moments)[0]))
        m = self.config.propensity_samples
        self.last_propensity = float(self._mc_proba(x, m, rng, moments)[action]) if m else None
        self.last_info = {"mean": mean, "std": self.config.scale * np.sqrt(var)}
        return action
