"""Linear Thompson sampling with an explicit posterior scale and Monte-Carlo propensities.

The ridge statistics are those of :mod:`simkit.agents.linucb`. Each round the agent samples
``theta ~ N(theta_hat, v^2 A^-1)`` and shows the candidate with the best sampled score. With
disjoint arms the sampled scores are independent normals ``N(theta_a^T x, v^2 x^T A_a^-1 x)``
(the same distribution as sampling each ``theta_a``); the joint model samples ``theta`` through a
Cholesky factor of ``A^-1``, recomputed only when the statistics are published.

The posterior scale ``v`` defaults to 0.3: OBP and Pearl use 1, which
over-explores badly when the reward noise is small.

The probability of the shown candidate under a fresh posterior draw per decision has no closed
form (an orthant probability of a correlated Gaussian). Two ways to log it:

- ``ensemble_size=0`` (default): a fresh draw per decision; the probability is *estimated* from
  ``propensity_samples`` extra draws (argmax frequencies with a floor of ``1/(M+1)``,
  renormalised) and declared as such: ``last_propensity_error`` holds a 95% bound on its error,
  ``sqrt(ln(2/0.05) / (2M))`` (Hoeffding, on the raw frequency) plus ``K/(M+1)`` (what the floor and
  the renormalisation can move it).
- ``ensemble_size=M > 0``: at each publish of the statistics the agent draws ``M`` posterior
  samples ``theta_1 .. theta_M`` once (with the ``rng`` of the next decision) and each decision
  acts on one of them chosen uniformly, its argmax ties split evenly. The probability of every
  candidate is then exact, ``(1/M) sum_m 1[a in argmax_b x_b theta_m] / #ties_m``, and
  ``last_propensity_error`` is 0. As ``M`` grows this is Thompson sampling; it is the policy a
  served LinTS runs (:mod:`simkit.serving`), the draws being frozen at export. A finite set of
  posterior draws standing in for the posterior is the idea of ensemble sampling (Lu and Van Roy
  2017), here redrawn from the exact Gaussian posterior at every publish.

References
----------
Agrawal, Goyal. Thompson sampling for contextual bandits with linear payoffs. ICML 2013.
Chapelle, Li. An empirical evaluation of Thompson sampling. NeurIPS 2011.
Lu, Van Roy. Ensemble sampling. NeurIPS 2017.
Hoeffding. Probability inequalities for sums of bounded random variables. JASA 58, 1963.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.agents.base import Observation, draw_from, register_agent
from simkit.agents.linucb import LinearBanditMixin, check_linear_config
from simkit.errors import ConfigError

__all__ = ["LinTS", "LinTSConfig"]

F64 = NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class LinTSConfig:
    """Settings of :class:`LinTS`.

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
        M, posterior draws per decision for the logged propensity (0: do not estimate); used
        when ``ensemble_size`` is 0.
    ensemble_size : int
        0: a fresh posterior draw per decision (Monte-Carlo propensities with an error bound);
        ``M > 0``: act on one of ``M`` posterior draws fixed between publishes (exact
        propensities).
    """

    scale: float = 0.3
    ridge: float = 1.0
    model: str = "joint"
    features: str = "outer"
    intercept: bool = True
    batch_size: int = 1
    propensity_samples: int = 1000
    ensemble_size: int = 0

    def __post_init__(self) -> None:
        problems = check_linear_config(self)
        if not self.scale > 0:
            problems.append(f"scale must be > 0; got {self.scale}")
        if self.propensity_samples < 0:
            problems.append(f"propensity_samples must be >= 0; got {self.propensity_samples}")
        if self.ensemble_size < 0:
            problems.append(f"ensemble_size must be >= 0; got {self.ensemble_size}")
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
        Probability of the shown candidate: exact with ``ensemble_size > 0``, else a Monte-Carlo
        estimate (None with ``propensity_samples=0``).
    last_propensity_error : float or None
        95% bound on the error of ``last_propensity`` (0.0 when exact, None when not estimated).
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
        self._ensemble: F64 | None = None
        self.last_propensity_error: float | None = None

    def _on_publish(self) -> None:
        self._chol = None
        self._ensemble = None

    @property
    def exact_propensities(self) -> bool:
        """Whether the logged probabilities are exact (``ensemble_size > 0``)."""
        return self.config.ensemble_size > 0

    def propensity_error_bound(self, n_candidates: int) -> float:
        """95% bound on the error of a Monte-Carlo propensity over ``n_candidates`` (0 if exact).

        ``sqrt(ln(2/0.05) / (2M))`` bounds the error of the raw argmax frequency of ``M`` draws
        (Hoeffding 1963); ``K/(M+1)`` bounds what the floor and the renormalisation add.
        """
        if self.exact_propensities:
            return 0.0
        m = self.config.propensity_samples or 1000
        return math.sqrt(math.log(2 / 0.05) / (2 * m)) + n_candidates / (m + 1)

    def posterior_ensemble(self, rng: np.random.Generator) -> F64:
        """The ``M`` posterior draws the agent acts on, drawing them with ``rng`` if needed.

        Returns
        -------
        ndarray
            Shape (M, p) for the joint model, (M, n_arms, p) for disjoint arms.

        Raises
        ------
        ConfigError
            When ``ensemble_size`` is 0 or the agent has seen no observation.
        """
        m = self.config.ensemble_size
        if m < 1:
            raise ConfigError(
                "This LinTS draws a fresh posterior sample per decision (ensemble_size=0); set "
                "ensemble_size=M (e.g. agent.config = dataclasses.replace(agent.config, "
                "ensemble_size=100)) to act on M fixed draws with exact probabilities."
            )
        if self._ensemble is None or self._ensemble.shape[0] != m:
            stats = self.statistics
            v = self.config.scale
            if self.config.model == "disjoint":
                chol = np.linalg.cholesky(stats.A_inv)  # (arms, p, p)
                z = rng.standard_normal((m, *stats.theta.shape))
                self._ensemble = stats.theta + v * np.einsum("ajk,mak->maj", chol, z)
            else:
                if self._chol is None:
                    self._chol = np.linalg.cholesky(stats.A_inv[0])
                z = rng.standard_normal((m, stats.theta.shape[1]))
                self._ensemble = stats.theta[0] + v * z @ self._chol.T
        return self._ensemble

    def _ensemble_proba(self, x: F64, rng: np.random.Generator) -> F64:
        """Exact probability of each candidate under the ensemble policy."""
        ens = self.posterior_ensemble(rng)
        scores = ens @ x.T if ens.ndim == 2 else np.einsum("mad,d->ma", ens, x)
        best = scores >= scores.max(axis=1, keepdims=True)
        return (best / best.sum(axis=1, keepdims=True)).mean(axis=0)  # type: ignore[no-any-return]

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
        """Probability that each candidate has the best sampled score.

        Exact under the ensemble policy (``ensemble_size > 0``); otherwise a Monte-Carlo
        estimate, with the error bound :meth:`propensity_error_bound`.

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
            The ensemble probabilities, or ``max(count/M, 1/(M+1))`` renormalised to sum to one.
        """
        if self.exact_propensities and self._ensemble is not None:
            return self._ensemble_proba(self._features(obs), np.random.default_rng(0))
        if rng is None:
            raise TypeError("LinTS.action_proba draws posterior samples: pass rng=Generator")
        if self.exact_propensities:
            return self._ensemble_proba(self._features(obs), rng)
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
        """Show the best candidate under one posterior sample; record its propensity.

        With ``ensemble_size > 0`` the candidate is drawn from the exact ensemble probabilities
        (inverse CDF, one uniform), which is the same as drawing one of the ``M`` samples.
        """
        x = self._features(obs)
        mean, var = moments = self._mean_and_var(x)
        if self.exact_propensities:
            proba = self._ensemble_proba(x, rng)
            choice = draw_from(proba, rng)
            self.last_propensity = float(proba[choice])
            self.last_propensity_error = 0.0
            self.last_info = {"mean": mean, "std": self.config.scale * np.sqrt(var)}
            return choice
        action = int(np.argmax(self._sample_scores(x, 1, rng, moments)[0]))
        m = self.config.propensity_samples
        self.last_propensity = float(self._mc_proba(x, m, rng, moments)[action]) if m else None
        self.last_propensity_error = self.propensity_error_bound(x.shape[0]) if m else None
        self.last_info = {"mean": mean, "std": self.config.scale * np.sqrt(var)}
        return action

    def _get_state(self) -> tuple[dict[str, F64], dict[str, Any]]:
        arrays, state = super()._get_state()
        if self._ensemble is not None:
            arrays = {**arrays, "ensemble": self._ensemble}
        return arrays, state

    def _set_state(self, arrays: dict[str, F64], state: dict[str, Any]) -> None:
        super()._set_state(arrays, state)
        if "ensemble" in arrays:
            self._ensemble = np.array(arrays["ensemble"], dtype=np.float64)
