"""Off-policy estimators for single-action logs, and the :class:`Estimate` every estimator returns.

Array-level API: numpy arrays in (one entry per logged decision), an :class:`Estimate` out. The
estimators follow AGENTS.md §6.1; slate estimators live in :mod:`simkit.validation.ope_slate` and
session estimators in :mod:`simkit.validation.ope_sequential`.

Notation: ``w = target_proba_of_logged / logged_propensity`` is the importance weight of a row, and
``q_hat`` a reward model (fit it out-of-fold with :func:`cross_fit_predict`).

Conventions shared by every estimator in the three modules:

- Inputs are checked before anything is computed. A propensity that is 0, NaN/missing, negative or
  above 1, a target probability outside [0, 1], a non-finite reward or model prediction, or arrays of
  different lengths raise :class:`simkit.errors.LogError` listing every problem with its count and up
  to five row numbers (0-based positions in the arrays). Only :func:`dm` reads no propensities: calling
  it is how a caller opts into a model-only estimate when the propensities are unusable.
- Every estimate carries a percentile bootstrap 95% interval (``n_bootstrap`` resamples of rows, or of
  sessions for sequential estimators; ``n_bootstrap=0`` skips it) and weight diagnostics: the
  effective sample size ESS = (sum w)^2 / sum w^2 and the max weight of the weights the estimator used
  (after clipping or shrinkage), and the propensity sanity check on the raw weights: mean(w) must be
  within 3 standard errors of 1 for any target policy, a failure almost always being a logging bug.
- ``min_ess`` defaults to ``max(100, 0.01 * n)``: below 100 effective rows the bootstrap interval is not
  trustworthy, and below 1% of the rows the estimate rests on a handful of heavy rows that one more
  logged row can move. An estimate under the minimum has ``enough_overlap=False`` and its summary
  says "not enough overlap" instead of a number.
- The bootstrap needs ``rng`` (a ``numpy.random.Generator``); the same generator state gives the
  same interval.
- Tuned estimators (Switch-DR, DRos, SG) pick their hyper-parameter from a grid by estimated MSE:
  var(row-wise terms) / n + bias^2, the bias being the mean difference from the unbiased base
  estimator (DR, or IPS), by default raised to the normal-approximation (1 - delta) upper bound
  |bias| + z SE(bias) (OBP also offers a bias upper bound; ours is our own, simpler one). With the
  bound, an estimator leaves its base only when the variance saved clearly exceeds the bias added:
  in the calibration of tests/test_ope.py the tuned Switch-DR and DRos kept their base and SG-IPS
  ended within 1% of the RMSE of IPS. ``bias_upper_bound=False`` is bolder: in our calibration runs
  it lowered the RMSE in most settings and raised it by up to about 10% in a few. The bootstrap
  re-tunes on every resample.

References
----------
.. [1] Li, Chu, Langford, Wang. "Unbiased offline evaluation of contextual-bandit-based news article
   recommendation algorithms." WSDM 2011.
.. [2] Horvitz, Thompson. "A generalization of sampling without replacement from a finite universe."
   JASA 1952. Precup, Sutton, Singh. "Eligibility traces for off-policy policy evaluation." ICML 2000.
.. [3] Swaminathan, Joachims. "The self-normalized estimator for counterfactual learning." NeurIPS 2015.
.. [4] Dudík, Langford, Li. "Doubly robust policy evaluation and learning." ICML 2011.
.. [5] Wang, Agarwal, Dudík. "Optimal and adaptive off-policy evaluation in contextual bandits."
   ICML 2017.
.. [6] Su, Dimakopoulou, Krishnamurthy, Dudík. "Doubly robust off-policy evaluation with shrinkage."
   ICML 2020.
.. [7] Metelli, Russo, Restelli. "Subgaussian and differentiable importance sampling for off-policy
   evaluation and learning." NeurIPS 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from types import MappingProxyType
from typing import Any, NamedTuple, NoReturn

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simkit.errors import ConfigError, LogError

__all__ = [
    "Estimate",
    "cross_fit_predict",
    "default_min_ess",
    "dm",
    "dr",
    "dr_os",
    "ips",
    "replay",
    "sg_dr",
    "sg_ips",
    "sndr",
    "snips",
    "switch_dr",
]

_CHECK_SE = 3.0  # the propensity sanity check: |mean(w) - 1| <= 3 SE
_BOOT_CELLS = 4_000_000  # resample rows x bootstrap draws held in memory at once
_DM_HINT = "dm() gives a model-only estimate that reads no propensities"


def default_min_ess(n: int) -> float:
    """Smallest ESS at which an estimate is reported: ``max(100, 0.01 * n)``.

    Parameters
    ----------
    n : int
        Number of logged rows (or sessions).

    Returns
    -------
    float
        The minimum effective sample size.

    Examples
    --------
    >>> default_min_ess(5000), default_min_ess(10**6)
    (100.0, 10000.0)
    """
    return max(100.0, 0.01 * n)


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """An off-policy value estimate with its bootstrap interval and weight diagnostics.

    Parameters
    ----------
    name : str
        Estimator name, e.g. ``"IPS"`` or ``"Switch-DR"``.
    value : float
        The point estimate (kept even when it is withheld from :meth:`summary`).
    ci_low, ci_high : float
        Percentile bootstrap 95% interval; NaN when ``n_bootstrap == 0``.
    n : int
        Number of rows (sessions for sequential estimators).
    ess : float
        Effective sample size (sum u)^2 / sum u^2 of the weights u the estimator used.
    max_weight : float
        Largest weight the estimator used; NaN when it uses none.
    mean_weight, mean_weight_se : float
        Mean of the raw importance weights and its standard error; NaN when not computable.
    weights_ok : bool
        Propensity sanity check: mean weight within 3 SE of 1 (True when it cannot be run).
    enough_overlap : bool
        ``ess >= min_ess``.
    min_ess : float
        The minimum ESS this estimate was held to.
    n_bootstrap : int
        Number of bootstrap resamples behind the interval.
    ess_per_horizon : tuple of float
        Sequential estimators: ESS of the cumulative weights at each step; empty otherwise.
    details : mapping of str to float
        Chosen hyper-parameters and other figures (``tau``, ``lam``, ``clip``, ``gamma``, ...).

    Examples
    --------
    >>> est = Estimate(name="IPS", value=0.5, ci_low=0.4, ci_high=0.6, n=1000, ess=40.0,
    ...                max_weight=9.0, mean_weight=1.0, mean_weight_se=0.05, weights_ok=True,
    ...                enough_overlap=False, min_ess=100.0)
    >>> est.display_value
    'not enough overlap (ESS=40.0, minimum 100)'
    """

    name: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    ess: float
    max_weight: float
    mean_weight: float
    mean_weight_se: float
    weights_ok: bool
    enough_overlap: bool
    min_ess: float
    n_bootstrap: int = 0
    ess_per_horizon: tuple[float, ...] = ()
    details: Mapping[str, float] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Estimate.name must be a non-empty string")
        if self.n < 0 or self.n_bootstrap < 0 or self.min_ess < 0:
            raise ValueError("Estimate.n, n_bootstrap and min_ess must be >= 0")
        if self.ci_low > self.ci_high:
            raise ValueError(f"Estimate.ci_low {self.ci_low} exceeds ci_high {self.ci_high}")
        object.__setattr__(self, "ess_per_horizon", tuple(float(e) for e in self.ess_per_horizon))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    @property
    def display_value(self) -> str:
        """The value as text, or ``"not enough overlap (ESS=...)"`` when it is withheld."""
        if not self.enough_overlap:
            return f"not enough overlap (ESS={self.ess:.1f}, minimum {self.min_ess:.0f})"
        return f"{self.value:.4g}"

    def summary(self) -> str:
        """Plain-text summary: value and interval (or the overlap warning) and the diagnostics."""
        if self.enough_overlap:
            head = f"{self.name} = {self.value:.4g}"
            if self.n_bootstrap > 0:
                head += (
                    f", 95% CI [{self.ci_low:.4g}, {self.ci_high:.4g}]"
                    f" (bootstrap, {self.n_bootstrap} resamples)"
                )
        else:
            head = f"{self.name}: {self.display_value}; no value reported"
        unit = "sessions" if self.ess_per_horizon else "rows"
        if math.isnan(self.max_weight):
            lines = [head, f"  {unit}: {self.n}, no importance weights"]
        else:
            lines = [
                head,
                f"  {unit}: {self.n}, ESS: {self.ess:.1f} (minimum {self.min_ess:.0f}),"
                f" max weight: {self.max_weight:.4g}",
            ]
        if math.isnan(self.mean_weight):
            lines.append("  propensity check: not run (no logged propensities)")
        elif self.weights_ok:
            lines.append(
                f"  propensity check: mean weight {self.mean_weight:.4g}"
                f" (SE {self.mean_weight_se:.2g}), within 3 SE of 1: ok"
            )
        else:
            lines.append(
                f"  propensity check FAILED: mean weight {self.mean_weight:.4g}"
                f" (SE {self.mean_weight_se:.2g}) is not within 3 SE of 1; the logged propensities"
                " or the target probabilities are probably wrong (another policy's, scaled, or"
                " misaligned rows)"
            )
        if self.details:
            shown = (
                f"{k}={int(v)}" if float(v).is_integer() else f"{k}={v:.4g}"
                for k, v in self.details.items()
            )
            lines.append("  " + ", ".join(shown))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Input checks: collect every problem, raise once.


def _rows(mask: NDArray[np.bool_]) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:5]) + (", ..." if idx.size > 5 else "")
    return (
        f"{idx.size} row{'s' if idx.size != 1 else ''} (row{'s' if idx.size != 1 else ''} {shown})"
    )


class _Inputs:
    """Converts and checks estimator inputs, collecting every problem into one :class:`LogError`."""

    def __init__(self, estimator: str) -> None:
        self.estimator = estimator
        self.problems: list[str] = []
        self.lengths: dict[str, int] = {}

    def array(self, name: str, value: ArrayLike, *, ndim: int | tuple[int, ...] = 1) -> NDArray:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be a numeric array-like; got {type(value).__name__}"
            ) from exc
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            self.problems.append(
                f"{name} must be {want} with one entry per row; got shape {arr.shape}."
            )
        elif arr.ndim > 0:
            self.lengths[name] = arr.shape[0]
        return arr

    def _bad(self, arr: NDArray, cond: NDArray) -> NDArray[np.bool_]:
        bad = cond.reshape(arr.shape[0], -1).any(axis=1) if arr.ndim > 1 else cond
        return np.asarray(bad, dtype=bool)

    def finite(self, name: str, arr: NDArray, fix: str) -> None:
        if arr.ndim == 0:
            return
        nan = self._bad(arr, np.isnan(arr))
        inf = self._bad(arr, np.isinf(arr))
        parts = []
        if nan.any():
            parts.append(f"NaN or missing in {_rows(nan)}")
        if inf.any():
            parts.append(f"infinite values in {_rows(inf)}")
        if parts:
            self.problems.append(
                f"{name} must be finite on every row; got {'; '.join(parts)}. {fix}"
            )

    def probability(self, name: str, arr: NDArray, *, propensity: bool) -> None:
        if arr.ndim == 0:
            return
        nan = self._bad(arr, np.isnan(arr))
        checks = [
            (nan, "NaN or missing"),
            (self._bad(arr, arr == 0), "0"),
            (self._bad(arr, arr < 0), "negative values"),
            (self._bad(arr, arr > 1), "values above 1"),
        ]
        if not propensity:
            checks.pop(1)
        parts = [f"{what} in {_rows(bad)}" for bad, what in checks if bad.any()]
        if not parts:
            return
        if propensity:
            self.problems.append(
                f"{name} must be a probability in (0, 1] on every row (the logging policy's"
                f" probability of the logged action); got {'; '.join(parts)}. Log the probability the"
                " behaviour policy gave each shown action (a deterministic policy logs 1.0, or"
                f" 1/#ties), or drop those rows knowingly; {_DM_HINT}."
            )
        else:
            self.problems.append(
                f"{name} must be a probability in [0, 1] on every row; got {'; '.join(parts)}."
                " Pass the target policy's probabilities, not scores or logits."
            )

    def distribution(self, name: str, arr: NDArray, n_actions: int) -> None:
        if arr.ndim != 2 or arr.shape[1] != n_actions:
            self.problems.append(
                f"{name} must have shape (n_rows, {n_actions}) like the q_hat matrix; got {arr.shape}."
            )
            return
        self.probability(name, arr, propensity=False)
        off = np.abs(arr.sum(axis=1) - 1.0) > 1e-6
        if off.any():
            self.problems.append(
                f"{name} rows must sum to 1; got sums off by more than 1e-6 in {_rows(off)}."
                " Normalise each row of the action distribution."
            )

    def fail(self) -> NoReturn:
        """Raise the collected problems (at least one has been recorded)."""
        self.done()
        raise AssertionError("fail() called without a recorded problem")

    def done(self) -> None:
        if len(set(self.lengths.values())) > 1:
            got = ", ".join(f"{k}={v}" for k, v in self.lengths.items())
            self.problems.insert(
                0,
                f"All inputs must have one entry per logged row; got lengths {got}."
                " Pass arrays aligned row by row.",
            )
        elif self.lengths and next(iter(self.lengths.values())) == 0:
            self.problems.insert(0, "The inputs must hold at least one row; got 0 rows.")
        if self.problems:
            plural = "s" if len(self.problems) > 1 else ""
            raise LogError(
                f"Cannot compute the {self.estimator} estimate; {len(self.problems)} problem{plural}"
                " in the inputs:\n- " + "\n- ".join(self.problems)
            )


class _Opts(NamedTuple):
    """Bootstrap and overlap settings shared by every estimator call."""

    rng: np.random.Generator | None
    n_bootstrap: int
    min_ess: float | None


def _opts(rng: np.random.Generator | None, n_bootstrap: int, min_ess: float | None) -> _Opts:
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap must be an integer >= 0; got {n_bootstrap!r}")
    if n_bootstrap > 0 and not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator for the bootstrap; pass"
            " rng=np.random.default_rng(seed), or n_bootstrap=0 to skip the interval"
        )
    if min_ess is not None and not min_ess >= 0:
        raise ConfigError(f"min_ess must be >= 0; got {min_ess!r}")
    return _Opts(rng if n_bootstrap > 0 else None, int(n_bootstrap), min_ess)


def _bandit_inputs(
    estimator: str,
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    q_hat_logged: ArrayLike | None = None,
    q_hat_target: ArrayLike | None = None,
    target_dist: ArrayLike | None = None,
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Check the single-action inputs; returns reward, w, q_hat_logged and the expected q_hat."""
    chk = _Inputs(estimator)
    r = chk.array("reward", reward)
    pi = chk.array("target_proba_of_logged", target_proba_of_logged)
    p = chk.array("logged_propensity", logged_propensity)
    chk.finite("reward", r, "Drop or impute those rows before estimating.")
    chk.probability("target_proba_of_logged", pi, propensity=False)
    chk.probability("logged_propensity", p, propensity=True)
    q_log = q_tgt = None
    if q_hat_logged is not None and q_hat_target is not None:
        q_log = chk.array("q_hat_logged", q_hat_logged)
        chk.finite("q_hat_logged", q_log, "Check the reward model's predictions.")
        q_tgt = _expected_q(chk, q_hat_target, target_dist)
    chk.done()
    return r, pi / p, q_log, q_tgt  # type: ignore[return-value]


def _expected_q(chk: _Inputs, q_hat_target: ArrayLike, target_dist: ArrayLike | None) -> NDArray:
    fix = "Check the reward model's predictions."
    q = chk.array("q_hat_target", q_hat_target, ndim=(1, 2))
    chk.finite("q_hat_target", q, fix)
    if q.ndim == 2:
        if target_dist is None:
            chk.problems.append(
                "q_hat_target is an (n_rows, n_actions) matrix, so target_dist must give the target"
                " policy's (n_rows, n_actions) distribution; got target_dist=None."
            )
            return q[:, 0]
        dist = chk.array("target_dist", target_dist, ndim=2)
        chk.distribution("target_dist", dist, q.shape[1])
        if dist.shape == q.shape:
            return np.einsum("ij,ij->i", dist, q)
        return q[:, 0]
    return q


# ---------------------------------------------------------------------------------------------
# Diagnostics, bootstrap, assembly.


def _ess(u: NDArray) -> float:
    sq = float(np.sum(u * u))
    return float(np.sum(u)) ** 2 / sq if sq > 0 else 0.0


def _weight_check(raw: NDArray) -> tuple[float, float, bool]:
    """Mean of the raw weights, its SE, and whether it lies within 3 SE of 1."""
    mean = float(raw.mean())
    se = float(raw.std(ddof=1) / math.sqrt(raw.size)) if raw.size > 1 else math.nan
    ok = math.isnan(se) or abs(mean - 1.0) <= _CHECK_SE * se + 1e-9
    return mean, se, ok


def _bootstrap(
    columns: NDArray, stat: Callable[[NDArray], NDArray], opts: _Opts
) -> tuple[float, float, float]:
    """Point value and percentile 95% interval of ``stat`` applied to column means.

    ``stat`` maps a (b, m) array of (resampled) column means to b values. A resample is drawn as
    row counts, so any statistic that is a function of means costs one matrix product.
    """
    n = columns.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(stat(columns.mean(axis=0)[None, :])[0])
        if opts.rng is None:
            return value, math.nan, math.nan
        chunk = max(1, min(opts.n_bootstrap, _BOOT_CELLS // max(n, 1)))
        draws = []
        for start in range(0, opts.n_bootstrap, chunk):
            b = min(chunk, opts.n_bootstrap - start)
            idx = opts.rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
            counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
            draws.append(stat(counts @ columns / n))
    boots = np.concatenate(draws)
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return value, math.nan, math.nan
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return value, float(lo), float(hi)


def _mean_stat(m: NDArray) -> NDArray:
    return m[:, 0]


def _ratio_stat(m: NDArray) -> NDArray:
    return m[:, 0] / m[:, 1]


def _finish(
    name: str,
    columns: NDArray,
    stat: Callable[[NDArray], NDArray],
    opts: _Opts,
    *,
    used: NDArray | None,
    raw: NDArray | None,
    details: Mapping[str, float] | None = None,
    check: tuple[float, float, bool] | None = None,
    per_horizon: bool = False,
) -> Estimate:
    """Bootstrap the statistic and attach the weight diagnostics.

    ``used`` holds the weights the estimator applied: (n,), or (n, m) for per-slot or per-step
    weights, whose ESS is the smallest column ESS (all column ESS are kept when ``per_horizon``).
    ``raw`` holds row weights with expectation 1 for the propensity check, unless ``check`` gives
    its result directly.
    """
    n = columns.shape[0]
    value, lo, hi = _bootstrap(columns, stat, opts)
    horizon: tuple[float, ...] = ()
    if used is None:
        ess, max_w = float(n), math.nan
    else:
        u = used.reshape(n, -1)
        s1, s2 = u.sum(axis=0), (u * u).sum(axis=0)
        per_column = np.divide(s1**2, s2, out=np.zeros_like(s1), where=s2 > 0)
        ess, max_w = float(per_column.min()), float(np.max(used))
        horizon = tuple(per_column.tolist()) if per_horizon else ()
    if check is None:
        check = _weight_check(raw) if raw is not None else (math.nan, math.nan, True)
    floor = default_min_ess(n) if opts.min_ess is None else float(opts.min_ess)
    return Estimate(
        name=name,
        value=value,
        ci_low=lo,
        ci_high=hi,
        n=n,
        ess=ess,
        max_weight=max_w,
        mean_weight=check[0],
        mean_weight_se=check[1],
        weights_ok=check[2],
        enough_overlap=ess >= floor,
        min_ess=floor,
        n_bootstrap=opts.n_bootstrap if opts.rng is not None else 0,
        ess_per_horizon=horizon,
        details=details or {},
    )


def _col(*arrays: NDArray) -> NDArray:
    return np.column_stack(arrays)


def _check_clip(clip: float | None) -> None:
    if clip is not None and not clip > 0:
        raise ConfigError(f"clip must be > 0 or None; got {clip!r}")


# ---------------------------------------------------------------------------------------------
# Estimators. Parameters shared by all of them:
#   rng: numpy Generator for the bootstrap (required when n_bootstrap > 0);
#   n_bootstrap: resamples of rows, 0 skips the interval; min_ess: default default_min_ess(n).

_SHARED_PARAMS = """rng : numpy.random.Generator, optional
        Bootstrap randomness; required when ``n_bootstrap > 0``.
    n_bootstrap : int, default 1000
        Bootstrap resamples of rows (0 skips the interval).
    min_ess : float, optional
        Minimum ESS for the value to be reported; default :func:`default_min_ess`."""


def replay(
    reward: ArrayLike,
    target_action: ArrayLike,
    logged_action: ArrayLike,
    *,
    logged_propensity: ArrayLike | None = None,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Replay (rejection) estimate of a deterministic policy from uniformly logged data.

    V = sum_i 1[target_action_i = logged_action_i] r_i / sum_i 1[target_action_i = logged_action_i].
    Unbiased only when the logging policy was uniform over a fixed number of candidates; it then
    equals SNIPS. The weights used are the match indicators, so ESS is the number of matches.

    Parameters
    ----------
    reward : array-like of shape (n,)
        Logged rewards.
    target_action, logged_action : array-like of shape (n,)
        The target policy's choice and the logged action in each row.
    logged_propensity : array-like of shape (n,), optional
        When given, it is checked and feeds the propensity sanity check.
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        Mismatched lengths, non-finite rewards or invalid propensities.

    References
    ----------
    Li, Chu, Langford, Wang. "Unbiased offline evaluation of contextual-bandit-based news article
    recommendation algorithms." WSDM 2011.

    Examples
    --------
    >>> replay([1.0, 0.0, 1.0], [2, 1, 0], [2, 0, 0], n_bootstrap=0).value
    1.0
    """
    opts = _opts(rng, n_bootstrap, min_ess)
    chk = _Inputs("Replay")
    r = chk.array("reward", reward)
    chk.finite("reward", r, "Drop or impute those rows before estimating.")
    target_action = np.asarray(target_action)
    logged_action = np.asarray(logged_action)
    for name, act in (("target_action", target_action), ("logged_action", logged_action)):
        if act.ndim != 1:
            chk.problems.append(f"{name} must be 1-D with one action per row; got {act.shape}.")
        else:
            chk.lengths[name] = act.shape[0]
    p = None
    if logged_propensity is not None:
        p = chk.array("logged_propensity", logged_propensity)
        chk.probability("logged_propensity", p, propensity=True)
    chk.done()
    match = (target_action == logged_action).astype(np.float64)
    raw = None if p is None else match / p
    return _finish("Replay", _col(match * r, match), _ratio_stat, opts, used=match, raw=raw)


def ips(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    *,
    clip: float | None = None,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Inverse propensity scoring, optionally with clipped weights.

    V = (1/n) sum_i min(w_i, clip) r_i with w_i = pi(a_i|x_i) / pi0(a_i|x_i). Unbiased when the
    logging policy covers the target (pi0 > 0 wherever pi > 0) and ``clip`` is None.

    Parameters
    ----------
    reward : array-like of shape (n,)
        Logged rewards.
    target_proba_of_logged : array-like of shape (n,)
        Target policy's probability of the logged action, in [0, 1].
    logged_propensity : array-like of shape (n,)
        Logging policy's probability of the logged action, in (0, 1].
    clip : float, optional
        Upper limit on the weights (clipped IPS); None keeps them.
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        Propensity 0, NaN/missing, negative or above 1; target probabilities outside [0, 1];
        non-finite rewards; mismatched lengths.

    References
    ----------
    Horvitz, Thompson. "A generalization of sampling without replacement from a finite universe."
    JASA 1952. Precup, Sutton, Singh. ICML 2000.

    Examples
    --------
    >>> ips([1.0, 0.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.25], [0.5, 0.25, 0.5, 0.25], n_bootstrap=0).value
    0.5
    """
    opts = _opts(rng, n_bootstrap, min_ess)
    _check_clip(clip)
    r, w, _, _ = _bandit_inputs("IPS", reward, target_proba_of_logged, logged_propensity)
    u = w if clip is None else np.minimum(w, clip)
    name, details = ("IPS", {}) if clip is None else ("clipped IPS", {"clip": float(clip)})
    return _finish(name, _col(u * r), _mean_stat, opts, used=u, raw=w, details=details)


def snips(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    *,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Self-normalised IPS: V = sum_i w_i r_i / sum_i w_i.

    Slightly biased, consistent, usually far less variable than IPS, and invariant to adding a
    constant to the rewards.

    Parameters
    ----------
    reward, target_proba_of_logged, logged_propensity : array-like of shape (n,)
        As in :func:`ips`.
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        As :func:`ips`.

    References
    ----------
    Swaminathan, Joachims. "The self-normalized estimator for counterfactual learning." NeurIPS 2015.

    Examples
    --------
    >>> snips([1.0, 0.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.25], [0.5, 0.25, 0.5, 0.25], n_bootstrap=0).value
    0.4
    """
    opts = _opts(rng, n_bootstrap, min_ess)
    r, w, _, _ = _bandit_inputs("SNIPS", reward, target_proba_of_logged, logged_propensity)
    return _finish("SNIPS", _col(w * r, w), _ratio_stat, opts, used=w, raw=w)


def dm(
    q_hat_target: ArrayLike,
    *,
    target_dist: ArrayLike | None = None,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
) -> Estimate:
    """Direct method: V = (1/n) sum_i sum_a pi(a|x_i) q_hat(x_i, a).

    It reads no propensities, so calling it is the opt-in for a model-only estimate when the logged
    propensities are unusable. Unbiased only when q_hat is. No weights: ``ess`` is n, the overlap
    minimum is 0 and the propensity check is not run.

    Parameters
    ----------
    q_hat_target : array-like of shape (n,) or (n, n_actions)
        The target policy's expected q_hat per row, or the full q_hat matrix.
    target_dist : array-like of shape (n, n_actions), optional
        The target policy's action distribution; required with a q_hat matrix.
    rng : numpy.random.Generator, optional
        Bootstrap randomness; required when ``n_bootstrap > 0``.
    n_bootstrap : int, default 1000
        Bootstrap resamples of rows (0 skips the interval).

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        Non-finite predictions, a target distribution whose rows are not distributions, or
        mismatched shapes.

    References
    ----------
    Dudík, Langford, Li. "Doubly robust policy evaluation and learning." ICML 2011 (the DM baseline).

    Examples
    --------
    >>> dm([[0.2, 0.6], [0.4, 0.0]], target_dist=[[0.5, 0.5], [1.0, 0.0]], n_bootstrap=0).value
    0.4
    """
    opts = _opts(rng, n_bootstrap, 0.0)
    chk = _Inputs("DM")
    q = _expected_q(chk, q_hat_target, target_dist)
    chk.done()
    return _finish("DM", _col(q), _mean_stat, opts, used=None, raw=None)


def _dr_terms(r: NDArray, u: NDArray, q_log: NDArray, q_tgt: NDArray) -> NDArray:
    return q_tgt + u * (r - q_log)


_DR_PARAMS = """reward, target_proba_of_logged, logged_propensity : array-like of shape (n,)
        As in :func:`ips`.
    q_hat_logged : array-like of shape (n,)
        Reward model's prediction for the logged action (fit out-of-fold, :func:`cross_fit_predict`).
    q_hat_target : array-like of shape (n,) or (n, n_actions)
        The target policy's expected q_hat per row, or the full q_hat matrix with ``target_dist``.
    target_dist : array-like of shape (n, n_actions), optional
        Target action distribution, required with a q_hat matrix."""


def dr(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    q_hat_logged: ArrayLike,
    q_hat_target: ArrayLike,
    *,
    target_dist: ArrayLike | None = None,
    clip: float | None = None,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Doubly robust estimate: V = (1/n) sum_i [q_pi(x_i) + w_i (r_i - q_hat(x_i, a_i))].

    Unbiased when either the propensities or q_hat are correct. Fit q_hat out-of-fold
    (:func:`cross_fit_predict`) so that no row's prediction depends on that row.

    Parameters
    ----------
    {dr}
    clip : float, optional
        Upper limit on the weights of the correction term.
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        As :func:`ips`, plus non-finite model predictions or a bad ``target_dist``.

    References
    ----------
    Dudík, Langford, Li. "Doubly robust policy evaluation and learning." ICML 2011.

    Examples
    --------
    >>> est = dr([1.0, 0.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.25], [0.5, 0.25, 0.5, 0.25],
    ...          [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], n_bootstrap=0)
    >>> round(est.value, 6)
    0.375
    """
    opts = _opts(rng, n_bootstrap, min_ess)
    _check_clip(clip)
    args = (reward, target_proba_of_logged, logged_propensity, q_hat_logged, q_hat_target)
    r, w, q_log, q_tgt = _bandit_inputs("DR", *args, target_dist)
    u = w if clip is None else np.minimum(w, clip)
    details = {} if clip is None else {"clip": float(clip)}
    terms = _col(_dr_terms(r, u, q_log, q_tgt))
    return _finish("DR", terms, _mean_stat, opts, used=u, raw=w, details=details)


def sndr(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    q_hat_logged: ArrayLike,
    q_hat_target: ArrayLike,
    *,
    target_dist: ArrayLike | None = None,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Self-normalised DR: the DR correction divided by the mean weight.

    V = (1/n) sum_i q_pi(x_i) + sum_i w_i (r_i - q_hat_i) / sum_i w_i.

    Parameters
    ----------
    {dr}
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        As :func:`dr`.

    References
    ----------
    Dudík, Langford, Li. ICML 2011; Swaminathan, Joachims. NeurIPS 2015 (self-normalisation).

    Examples
    --------
    >>> est = sndr([1.0, 0.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.25], [0.5, 0.25, 0.5, 0.25],
    ...            [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], n_bootstrap=0)
    >>> round(est.value, 6)
    0.4
    """
    opts = _opts(rng, n_bootstrap, min_ess)
    args = (reward, target_proba_of_logged, logged_propensity, q_hat_logged, q_hat_target)
    r, w, q_log, q_tgt = _bandit_inputs("SNDR", *args, target_dist)

    def stat(m: NDArray) -> NDArray:
        return m[:, 0] + m[:, 1] / m[:, 2]

    return _finish("SNDR", _col(q_tgt, w * (r - q_log), w), stat, opts, used=w, raw=w)


# ---------------------------------------------------------------------------------------------
# Tuned estimators: Switch-DR, DRos, sub-Gaussian IPS/DR.

_TUNE_PARAMS = """bias_upper_bound : bool, default True
        Tune with a normal-approximation (1 - delta) upper bound on the bias (estimated against the
        unbiased base estimator) instead of its point estimate.
    delta : float, default 0.05
        The bias bound holds with probability about 1 - delta."""


def _grid(value: float | Sequence[float] | None, default: NDArray, name: str) -> NDArray | None:
    """None for a fixed hyper-parameter, else the candidate grid."""
    if value is None:
        return default
    if np.ndim(value) == 0:
        return None
    grid = np.asarray(value, dtype=np.float64)
    if grid.size == 0 or np.isnan(grid).any():
        raise ConfigError(f"{name} grid must be a non-empty sequence of numbers; got {value!r}")
    return grid


def _select(
    name: str,
    key: str,
    values: NDArray,
    tuned: bool,
    weights: Sequence[NDArray],
    terms: NDArray,
    reference: NDArray,
    raw: NDArray,
    opts: _Opts,
    *,
    bias_upper_bound: bool,
    delta: float,
) -> Estimate:
    """Fixed hyper-parameter, or the grid point of smallest estimated MSE (re-picked per resample)."""
    if not tuned:
        details = {key: float(values[0])}
        return _finish(name, terms, _mean_stat, opts, used=weights[0], raw=raw, details=details)
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1); got {delta!r}")
    n = terms.shape[0]
    z = NormalDist().inv_cdf(1 - delta / 2) if bias_upper_bound else 0.0
    diff = terms - reference[:, None]
    columns = np.hstack([terms, terms**2, diff, diff**2])

    def choose(means: NDArray) -> NDArray:
        t, t2, d, d2 = np.split(means, 4, axis=1)
        var = np.maximum(t2 - t**2, 0.0) / n
        bias = np.abs(d) + z * np.sqrt(np.maximum(d2 - d**2, 0.0) / n)
        return np.argmin(var + bias**2, axis=1)

    def stat(means: NDArray) -> NDArray:
        return means[np.arange(means.shape[0]), choose(means)]

    j = int(choose(columns.mean(axis=0)[None, :])[0])
    details = {key: float(values[j])}
    return _finish(name, columns, stat, opts, used=weights[j], raw=raw, details=details)


def _candidates(
    value: float | Sequence[float] | None, default: NDArray, name: str
) -> tuple[NDArray, bool]:
    grid = _grid(value, default, name)
    if grid is None:
        return np.array([value], dtype=np.float64), False
    return grid, True


def _shrink_weights(w: NDArray, lam: float) -> NDArray:
    if lam == math.inf:
        return w
    if lam == 0:
        return np.zeros_like(w)
    return lam * w / (w * w + lam)


def switch_dr(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    q_hat_logged: ArrayLike,
    q_hat_target: ArrayLike,
    *,
    tau: float | Sequence[float] | None = None,
    form: str = "obp",
    target_dist: ArrayLike | None = None,
    logged_dist: ArrayLike | None = None,
    bias_upper_bound: bool = True,
    delta: float = 0.05,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Switch-DR: importance weighting where the weights are small, the model where they are large.

    Two forms:

    - ``form="obp"`` (default; OBP's): DR with the correction switched off above tau,
      V = (1/n) sum_i [q_pi(x_i) + 1{w_i <= tau} w_i (r_i - q_hat_i)]. tau = inf is DR exactly.
    - ``form="original"`` (Wang et al. 2017): V = (1/n) sum_i [1{w_i <= tau} w_i r_i +
      sum_a pi(a|x_i) q_hat(x_i, a) 1{pi(a|x_i)/pi0(a|x_i) > tau}]. tau = inf is IPS exactly.
      It needs the full q_hat matrix (``q_hat_target``), ``target_dist`` and ``logged_dist``.

    Parameters
    ----------
    {dr}
    tau : float or sequence of float, optional
        A fixed threshold, or candidates chosen by estimated MSE; default: inf and the 50-99%
        quantiles of the weights.
    form : {"obp", "original"}, default "obp"
        Which Switch estimator.
    logged_dist : array-like of shape (n, n_actions), optional
        The logging policy's action distribution (original form only).
    {tune}
    {shared}

    Returns
    -------
    Estimate
        ``details["tau"]`` holds the threshold used.

    Raises
    ------
    LogError
        As :func:`dr`; for the original form also a missing or malformed ``logged_dist``.

    References
    ----------
    Wang, Agarwal, Dudík. "Optimal and adaptive off-policy evaluation in contextual bandits."
    ICML 2017.

    Examples
    --------
    >>> est = switch_dr([1.0, 0.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.25], [0.5, 0.25, 0.5, 0.25],
    ...                 [0.25] * 4, [0.25] * 4, tau=1.5, n_bootstrap=0)
    >>> round(est.value, 6)
    0.1875
    """
    opts = _opts(rng, n_bootstrap, min_ess)
    if form not in ("obp", "original"):
        raise ConfigError(f"form must be 'obp' or 'original'; got {form!r}")
    args = (reward, target_proba_of_logged, logged_propensity, q_hat_logged, q_hat_target)
    r, w, q_log, q_tgt = _bandit_inputs("Switch-DR", *args, target_dist)
    quantiles = np.unique(np.quantile(w, [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]))[::-1]
    taus, tuned = _candidates(tau, np.concatenate([[math.inf], quantiles]), "tau")
    weights = [np.where(w <= t, w, 0.0) for t in taus]
    if form == "obp":
        terms = np.column_stack([_dr_terms(r, u, q_log, q_tgt) for u in weights])
        reference = _dr_terms(r, w, q_log, q_tgt)
    else:
        ratio, pi_q = _original_form(r.size, q_hat_target, target_dist, logged_dist)
        model = [np.where(ratio > t, pi_q, 0.0).sum(axis=1) for t in taus]
        terms = np.column_stack([u * r + m for u, m in zip(weights, model)])
        reference = w * r
    return _select(
        "Switch-DR" if form == "obp" else "Switch-DR original",
        "tau",
        taus,
        tuned,
        weights,
        terms,
        reference,
        w,
        opts,
        bias_upper_bound=bias_upper_bound,
        delta=delta,
    )


def _original_form(
    n: int, q_hat_target: ArrayLike, target_dist: ArrayLike | None, logged_dist: ArrayLike | None
) -> tuple[NDArray, NDArray]:
    """pi/pi0 over all actions (inf where pi0 = 0 < pi) and pi * q_hat, for the original Switch."""
    chk = _Inputs("Switch-DR (original form)")
    if target_dist is None or logged_dist is None or np.ndim(q_hat_target) != 2:
        chk.problems.append(
            "form='original' needs the full (n_rows, n_actions) q_hat matrix as q_hat_target and the"
            " target_dist and logged_dist distributions of the same shape; got q_hat_target with"
            f" shape {np.shape(q_hat_target)}, target_dist {'given' if target_dist is not None else 'None'},"
            f" logged_dist {'given' if logged_dist is not None else 'None'}."
        )
        chk.fail()
    q = chk.array("q_hat_target", q_hat_target, ndim=2)
    pi = chk.array("target_dist", target_dist, ndim=2)
    pi0 = chk.array("logged_dist", logged_dist, ndim=2)
    chk.distribution("logged_dist", pi0, q.shape[1])
    chk.lengths["reward"] = n
    chk.done()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pi > 0, pi / pi0, 0.0), pi * q


def dr_os(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    q_hat_logged: ArrayLike,
    q_hat_target: ArrayLike,
    *,
    lam: float | Sequence[float] | None = None,
    target_dist: ArrayLike | None = None,
    bias_upper_bound: bool = True,
    delta: float = 0.05,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """DR with optimistic shrinkage (DRos): DR with w replaced by lam w / (w^2 + lam).

    lam = inf gives DR and lam = 0 gives DM, exactly.

    Parameters
    ----------
    {dr}
    lam : float or sequence of float, optional
        A fixed shrinkage >= 0, or candidates chosen by estimated MSE; default: inf and the
        squares of the 50-100% quantiles of the positive weights.
    {tune}
    {shared}

    Returns
    -------
    Estimate
        ``details["lam"]`` holds the shrinkage used.

    Raises
    ------
    LogError
        As :func:`dr`.

    References
    ----------
    Su, Dimakopoulou, Krishnamurthy, Dudík. "Doubly robust off-policy evaluation with shrinkage."
    ICML 2020.

    Examples
    --------
    >>> est = dr_os([1.0, 0.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.25], [0.5, 0.25, 0.5, 0.25],
    ...             [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], lam=4.0, n_bootstrap=0)
    >>> round(est.value, 6)
    0.4
    """
    opts = _opts(rng, n_bootstrap, min_ess)
    args = (reward, target_proba_of_logged, logged_propensity, q_hat_logged, q_hat_target)
    r, w, q_log, q_tgt = _bandit_inputs("DRos", *args, target_dist)
    positive = w[w > 0]
    qs = np.quantile(positive, [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]) if positive.size else []
    default = np.concatenate([[math.inf], np.unique(np.square(qs))[::-1]])
    lams, tuned = _candidates(lam, default, "lam")
    if (lams < 0).any():
        raise ConfigError(f"lam must be >= 0; got {lam!r}")
    weights = [_shrink_weights(w, x) for x in lams]
    terms = np.column_stack([_dr_terms(r, u, q_log, q_tgt) for u in weights])
    reference = _dr_terms(r, w, q_log, q_tgt)
    return _select(
        "DRos",
        "lam",
        lams,
        tuned,
        weights,
        terms,
        reference,
        w,
        opts,
        bias_upper_bound=bias_upper_bound,
        delta=delta,
    )


_SG_GRID = np.array([0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3])


def _sg(
    name: str,
    args: tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike | None, ArrayLike | None],
    target_dist: ArrayLike | None,
    lam: float | Sequence[float] | None,
    opts: _Opts,
    bias_upper_bound: bool,
    delta: float,
) -> Estimate:
    r, w, q_log, q_tgt = _bandit_inputs(name, *args, target_dist)
    lams, tuned = _candidates(lam, _SG_GRID, "lam")
    if ((lams < 0) | (lams > 1)).any():
        raise ConfigError(f"lam must be in [0, 1]; got {lam!r}")
    weights = [w / (1.0 - x + x * w) for x in lams]
    if q_log is None:
        terms = np.column_stack([u * r for u in weights])
        reference = w * r
    else:
        terms = np.column_stack([_dr_terms(r, u, q_log, q_tgt) for u in weights])
        reference = _dr_terms(r, w, q_log, q_tgt)
    return _select(
        name,
        "lam",
        lams,
        tuned,
        weights,
        terms,
        reference,
        w,
        opts,
        bias_upper_bound=bias_upper_bound,
        delta=delta,
    )


def sg_ips(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    *,
    lam: float | Sequence[float] | None = None,
    bias_upper_bound: bool = True,
    delta: float = 0.05,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Sub-Gaussian IPS: IPS with w replaced by w / (1 - lam + lam w); lam = 0 is IPS exactly.

    Parameters
    ----------
    reward, target_proba_of_logged, logged_propensity : array-like of shape (n,)
        As in :func:`ips`.
    lam : float or sequence of float, optional
        A fixed lam in [0, 1], or candidates chosen by estimated MSE; default
        0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3.
    {tune}
    {shared}

    Returns
    -------
    Estimate
        ``details["lam"]`` holds the lam used.

    Raises
    ------
    LogError
        As :func:`ips`.

    References
    ----------
    Metelli, Russo, Restelli. "Subgaussian and differentiable importance sampling for off-policy
    evaluation and learning." NeurIPS 2021.

    Examples
    --------
    >>> est = sg_ips([1.0, 0.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.25], [0.5, 0.25, 0.5, 0.25],
    ...              lam=0.5, n_bootstrap=0)
    >>> round(est.value, 6)
    0.333333
    """
    opts = _opts(rng, n_bootstrap, min_ess)
    args = (reward, target_proba_of_logged, logged_propensity, None, None)
    return _sg("SG-IPS", args, None, lam, opts, bias_upper_bound, delta)


def sg_dr(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    q_hat_logged: ArrayLike,
    q_hat_target: ArrayLike,
    *,
    lam: float | Sequence[float] | None = None,
    target_dist: ArrayLike | None = None,
    bias_upper_bound: bool = True,
    delta: float = 0.05,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Sub-Gaussian DR: DR with w replaced by w / (1 - lam + lam w); lam = 0 is DR exactly.

    Parameters
    ----------
    {dr}
    lam : float or sequence of float, optional
        As in :func:`sg_ips`.
    {tune}
    {shared}

    Returns
    -------
    Estimate
        ``details["lam"]`` holds the lam used.

    Raises
    ------
    LogError
        As :func:`dr`.

    References
    ----------
    Metelli, Russo, Restelli. NeurIPS 2021; Dudík, Langford, Li. ICML 2011.

    Examples
    --------
    >>> est = sg_dr([1.0, 0.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.25], [0.5, 0.25, 0.5, 0.25],
    ...             [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], lam=0.0, n_bootstrap=0)
    >>> round(est.value, 6)
    0.375
    """
    opts = _opts(rng, n_bootstrap, min_ess)
    args = (reward, target_proba_of_logged, logged_propensity, q_hat_logged, q_hat_target)
    return _sg("SG-DR", args, target_dist, lam, opts, bias_upper_bound, delta)


def _fill_docs(functions: Sequence[Callable[..., Any]], parts: Mapping[str, str]) -> None:
    """Replace ``{key}`` placeholders in the docstrings with the shared parameter text."""
    for func in functions:
        doc = func.__doc__ or ""
        for key, text in parts.items():
            doc = doc.replace("{" + key + "}", text)
        func.__doc__ = doc


_fill_docs(
    (replay, ips, snips, dr, sndr, switch_dr, dr_os, sg_ips, sg_dr),
    {"shared": _SHARED_PARAMS, "dr": _DR_PARAMS, "tune": _TUNE_PARAMS},
)


# ---------------------------------------------------------------------------------------------
# Reward models.


def cross_fit_predict(
    model_factory: Callable[[], Any] | Any,
    X: ArrayLike,
    y: ArrayLike,
    groups: ArrayLike | None = None,
    *,
    n_folds: int = 2,
    rng: np.random.Generator,
    X_eval: ArrayLike | None = None,
    response: str = "auto",
) -> NDArray:
    """Out-of-fold predictions of any scikit-learn-style model, folds grouped by user or session.

    Groups are shuffled with ``rng`` and dealt round-robin into ``n_folds`` folds; for each fold a
    fresh model is fit on the other folds and predicts the held-out rows, so no row's prediction
    depends on its own group. That keeps DR-type estimators unbiased when q_hat is fit on the same
    logs. Plug in the fitted click or watch models of :mod:`simkit.fitters` through
    ``model_factory``.

    Parameters
    ----------
    model_factory : callable or estimator
        A zero-argument callable (or class) returning a fresh unfitted model, or a scikit-learn
        estimator instance that is cloned for every fold. The model needs ``fit(X, y)`` and
        ``predict`` or ``predict_proba``.
    X : array-like of shape (n, n_features)
        Features of the logged rows (context and logged action).
    y : array-like of shape (n,)
        Targets (reward, click, watch time, ...).
    groups : array-like of shape (n,), optional
        User or session id per row; default: every row its own group.
    n_folds : int, default 2
        Number of folds (>= 2).
    rng : numpy.random.Generator
        Shuffles the groups into folds.
    X_eval : array-like of shape (n, n_actions, n_features), optional
        Features of every candidate action of each row; the predictions are then (n, n_actions),
        each row predicted by the model that did not see its group.
    response : {"auto", "predict", "predict_proba"}, default "auto"
        ``"auto"`` returns the positive-class probability when the model has ``predict_proba``.

    Returns
    -------
    numpy.ndarray
        Shape (n,) for ``X``, or (n, n_actions) with ``X_eval``.

    Raises
    ------
    LogError
        Mismatched lengths, fewer groups than folds, or a classifier fold with one class.

    References
    ----------
    Chernozhukov, Chetverikov, Demirer, Duflo, Hansen, Newey, Robins. "Double/debiased machine
    learning for treatment and structural parameters." The Econometrics Journal 2018 (cross-fitting).
    Dudík, Langford, Li. ICML 2011 (the DR estimator that uses the predictions).

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression
    >>> X = np.arange(8.0).reshape(-1, 1)
    >>> pred = cross_fit_predict(LinearRegression, X, 2 * X[:, 0], np.arange(8) // 2,
    ...                          rng=np.random.default_rng(0))
    >>> bool(np.allclose(pred, 2 * X[:, 0]))
    True
    """
    if response not in ("auto", "predict", "predict_proba"):
        raise ConfigError(
            f"response must be 'auto', 'predict' or 'predict_proba'; got {response!r}"
        )
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2; got {n_folds!r}")
    X = np.asarray(X)
    y = np.asarray(y)
    g = np.arange(X.shape[0]) if groups is None else np.asarray(groups)
    ev = None if X_eval is None else np.asarray(X_eval)
    lengths = {"X": X.shape[0], "y": y.shape[0], "groups": g.shape[0]}
    if ev is not None:
        lengths["X_eval"] = ev.shape[0]
    if len(set(lengths.values())) > 1:
        got = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise LogError(
            f"cross_fit_predict needs one entry per row in every input; got lengths {got}."
            " Align the arrays row by row."
        )
    uniq, inverse = np.unique(g, return_inverse=True)
    if uniq.size < n_folds:
        raise LogError(
            f"cross_fit_predict needs at least n_folds={n_folds} groups; got {uniq.size}."
            " Pass finer groups (sessions instead of users) or fewer folds."
        )
    fold_of_group = np.empty(uniq.size, dtype=np.int64)
    fold_of_group[rng.permutation(uniq.size)] = np.arange(uniq.size) % n_folds
    fold = fold_of_group[inverse.ravel()]
    out = np.empty(X.shape[0] if ev is None else ev.shape[:2], dtype=np.float64)
    for k in range(n_folds):
        held = fold == k
        model = _fresh(model_factory)
        model.fit(X[~held], y[~held])
        if ev is None:
            out[held] = _predict(model, X[held], response)
        else:
            block = ev[held]
            flat = block.reshape(block.shape[0] * block.shape[1], *block.shape[2:])
            out[held] = _predict(model, flat, response).reshape(block.shape[:2])
    return out


def _fresh(model_factory: Callable[[], Any] | Any) -> Any:
    if not isinstance(model_factory, type) and hasattr(model_factory, "get_params"):
        from sklearn.base import clone

        return clone(model_factory)
    return model_factory()


def _predict(model: Any, X: NDArray, response: str) -> NDArray:
    proba = response == "predict_proba" or (response == "auto" and hasattr(model, "predict_proba"))
    if not proba:
        return np.asarray(model.predict(X), dtype=np.float64)
    out = np.asarray(model.predict_proba(X), dtype=np.float64)
    if out.ndim != 2 or out.shape[1] != 2:
        raise LogError(
            "cross_fit_predict with a classifier needs exactly two classes in every training fold"
            f" (it returns the positive-class probability); got {out.shape[-1]} class column(s)."
            " Use response='predict', or check that both classes occur in every fold."
        )
    return out[:, 1]
