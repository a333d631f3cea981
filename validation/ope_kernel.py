"""The estimator kernel: :class:`Estimate`, input checks, options, bootstrap and shared doc text.

Every off-policy estimator of :mod:`simkit.validation` (single-action :mod:`.ope_bandit` and
:mod:`.ope_tuned`, slate :mod:`.ope_slate`, sequential :mod:`.ope_sequential`) is a few lines on this
kernel: check the inputs with an :class:`InputCheck`, read the options with
:func:`estimator_options`, stack the per-row terms with :func:`stack_columns` and let
:func:`finish_estimate` bootstrap a statistic of their column means (:func:`mean_stat`,
:func:`ratio_stat` or the estimator's own) and attach the weight diagnostics.

Conventions shared by every estimator:

- Inputs are checked before anything is computed. A propensity that is 0, NaN/missing, negative or
  above 1, a target probability outside [0, 1], a non-finite reward or model prediction, or arrays of
  different lengths raise :class:`simkit.errors.LogError` listing every problem with its count and up
  to five row numbers (0-based positions in the arrays). Only :func:`simkit.validation.ope.dm` reads
  no propensities: calling it is how a caller opts into a model-only estimate when the propensities
  are unusable.
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

References
----------
.. [1] Efron, Tibshirani. "An Introduction to the Bootstrap." Chapman & Hall 1993 (percentile
   intervals).
.. [2] Kish. "Survey Sampling." Wiley 1965 (the effective sample size of weighted rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, NoReturn

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simkit.errors import ConfigError, LogError

__all__ = [
    "DR_PARAMS",
    "SHARED_PARAMS",
    "Estimate",
    "EstimatorOptions",
    "InputCheck",
    "bandit_inputs",
    "check_clip",
    "default_min_ess",
    "describe_rows",
    "dr_terms",
    "estimator_options",
    "expected_q",
    "fill_docs",
    "finish_estimate",
    "mean_stat",
    "ratio_stat",
    "stack_columns",
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


def describe_rows(mask: NDArray[np.bool_]) -> str:
    """Count and first five positions of the flagged rows, for an error message.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        True on the rows with a problem.

    Returns
    -------
    str

    Examples
    --------
    >>> describe_rows(np.array([False, True, True]))
    '2 rows (rows 1, 2)'
    """
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:5]) + (", ..." if idx.size > 5 else "")
    return (
        f"{idx.size} row{'s' if idx.size != 1 else ''} (row{'s' if idx.size != 1 else ''} {shown})"
    )


class InputCheck:
    """Converts and checks estimator inputs, collecting every problem into one :class:`LogError`.

    Each method converts or checks one input and appends what is wrong to ``problems``;
    :meth:`done` raises them together, with the lengths of the 1-D inputs compared.

    Parameters
    ----------
    estimator : str
        The estimator's name, for the error message.

    Attributes
    ----------
    problems : list of str
        Problems found so far, one sentence each (what must hold, what was found, the fix).
    lengths : dict of str to int
        Rows of each checked input, compared by :meth:`done`.

    Examples
    --------
    >>> chk = InputCheck("IPS")
    >>> p = chk.array("logged_propensity", [0.5, 0.0])
    >>> chk.probability("logged_propensity", p, propensity=True)
    >>> chk.done()
    Traceback (most recent call last):
    ...
    simkit.errors.LogError: Cannot compute the IPS estimate; 1 problem in the inputs:
    - logged_propensity must be a probability in (0, 1] on every row ...
    """

    def __init__(self, estimator: str) -> None:
        self.estimator = estimator
        self.problems: list[str] = []
        self.lengths: dict[str, int] = {}

    def array(self, name: str, value: ArrayLike, *, ndim: int | tuple[int, ...] = 1) -> NDArray:
        """``value`` as a float array; records a wrong number of dimensions and the row count."""
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
        """Record NaN or infinite entries of ``arr``; ``fix`` says how to repair them."""
        if arr.ndim == 0:
            return
        nan = self._bad(arr, np.isnan(arr))
        inf = self._bad(arr, np.isinf(arr))
        parts = []
        if nan.any():
            parts.append(f"NaN or missing in {describe_rows(nan)}")
        if inf.any():
            parts.append(f"infinite values in {describe_rows(inf)}")
        if parts:
            self.problems.append(
                f"{name} must be finite on every row; got {'; '.join(parts)}. {fix}"
            )

    def probability(self, name: str, arr: NDArray, *, propensity: bool) -> None:
        """Record entries outside [0, 1] (outside (0, 1] for a logged ``propensity``)."""
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
        parts = [f"{what} in {describe_rows(bad)}" for bad, what in checks if bad.any()]
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
        """Record a shape other than (n_rows, n_actions) or rows that are not distributions."""
        if arr.ndim != 2 or arr.shape[1] != n_actions:
            self.problems.append(
                f"{name} must have shape (n_rows, {n_actions}) like the q_hat matrix; got {arr.shape}."
            )
            return
        self.probability(name, arr, propensity=False)
        off = np.abs(arr.sum(axis=1) - 1.0) > 1e-6
        if off.any():
            self.problems.append(
                f"{name} rows must sum to 1; got sums off by more than 1e-6 in {describe_rows(off)}."
                " Normalise each row of the action distribution."
            )

    def fail(self) -> NoReturn:
        """Raise the collected problems (at least one has been recorded)."""
        self.done()
        raise AssertionError("fail() called without a recorded problem")

    def done(self) -> None:
        """Raise :class:`~simkit.errors.LogError` listing every recorded problem, if any."""
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


class EstimatorOptions(NamedTuple):
    """Bootstrap and overlap settings shared by every estimator call (see :func:`estimator_options`).

    Attributes
    ----------
    rng : numpy.random.Generator or None
        Bootstrap randomness; None when no interval is computed.
    n_bootstrap : int
        Bootstrap resamples.
    min_ess : float or None
        Minimum ESS; None for :func:`default_min_ess`.
    """

    rng: np.random.Generator | None
    n_bootstrap: int
    min_ess: float | None


def estimator_options(
    rng: np.random.Generator | None, n_bootstrap: int, min_ess: float | None
) -> EstimatorOptions:
    """Check an estimator's ``rng``, ``n_bootstrap`` and ``min_ess`` arguments.

    Parameters
    ----------
    rng : numpy.random.Generator or None
        Required when ``n_bootstrap > 0``.
    n_bootstrap : int
        Bootstrap resamples (>= 0).
    min_ess : float or None
        Minimum ESS (>= 0), or None for the default.

    Returns
    -------
    EstimatorOptions

    Raises
    ------
    ConfigError
        ``n_bootstrap`` or ``min_ess`` out of range.
    TypeError
        ``n_bootstrap > 0`` without a generator.

    Examples
    --------
    >>> estimator_options(None, 0, None)
    EstimatorOptions(rng=None, n_bootstrap=0, min_ess=None)
    """
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap must be an integer >= 0; got {n_bootstrap!r}")
    if n_bootstrap > 0 and not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator for the bootstrap; pass"
            " rng=np.random.default_rng(seed), or n_bootstrap=0 to skip the interval"
        )
    if min_ess is not None and not min_ess >= 0:
        raise ConfigError(f"min_ess must be >= 0; got {min_ess!r}")
    return EstimatorOptions(rng if n_bootstrap > 0 else None, int(n_bootstrap), min_ess)


def bandit_inputs(
    estimator: str,
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    q_hat_logged: ArrayLike | None = None,
    q_hat_target: ArrayLike | None = None,
    target_dist: ArrayLike | None = None,
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Check the single-action inputs of ``estimator`` and compute the importance weights.

    Parameters
    ----------
    estimator : str
        Estimator name, for the error message.
    reward, target_proba_of_logged, logged_propensity : array-like of shape (n,)
        Logged rewards, the target policy's and the logging policy's probability of the logged action.
    q_hat_logged, q_hat_target, target_dist : array-like, optional
        The reward model's predictions (see :data:`DR_PARAMS`); both q_hat arrays or neither.

    Returns
    -------
    reward, w, q_hat_logged, q_hat_target : numpy.ndarray
        Rewards, weights ``target / logged``, and the model's predictions for the logged action and
        in expectation over the target policy (None without a model).

    Raises
    ------
    LogError
        Every problem of the inputs, at once.

    Examples
    --------
    >>> r, w, _, _ = bandit_inputs("IPS", [1.0, 0.0], [1.0, 0.5], [0.5, 0.25])
    >>> w.tolist()
    [2.0, 2.0]
    """
    chk = InputCheck(estimator)
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
        q_tgt = expected_q(chk, q_hat_target, target_dist)
    chk.done()
    return r, pi / p, q_log, q_tgt  # type: ignore[return-value]


def expected_q(chk: InputCheck, q_hat_target: ArrayLike, target_dist: ArrayLike | None) -> NDArray:
    """The reward model's prediction in expectation over the target policy, per row.

    Parameters
    ----------
    chk : InputCheck
        Collects the problems of ``q_hat_target`` and ``target_dist``.
    q_hat_target : array-like of shape (n,) or (n, n_actions)
        The expected prediction per row, or the full prediction matrix.
    target_dist : array-like of shape (n, n_actions), optional
        The target policy's action distribution; required with a matrix.

    Returns
    -------
    numpy.ndarray of shape (n,)

    Examples
    --------
    >>> expected_q(InputCheck("DM"), [[1.0, 3.0]], [[0.5, 0.5]]).tolist()
    [2.0]
    """
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


def _weight_check(raw: NDArray) -> tuple[float, float, bool]:
    """Mean of the raw weights, its SE, and whether it lies within 3 SE of 1."""
    mean = float(raw.mean())
    se = float(raw.std(ddof=1) / math.sqrt(raw.size)) if raw.size > 1 else math.nan
    ok = math.isnan(se) or abs(mean - 1.0) <= _CHECK_SE * se + 1e-9
    return mean, se, ok


def _bootstrap(
    columns: NDArray, stat: Callable[[NDArray], NDArray], opts: EstimatorOptions
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


def mean_stat(m: NDArray) -> NDArray:
    """Statistic of :func:`finish_estimate`: the mean of the first column (IPS-like estimators).

    Examples
    --------
    >>> mean_stat(np.array([[0.5, 2.0]])).tolist()
    [0.5]
    """
    return m[:, 0]


def ratio_stat(m: NDArray) -> NDArray:
    """Statistic of :func:`finish_estimate`: first column mean over second (self-normalised).

    Examples
    --------
    >>> ratio_stat(np.array([[0.5, 2.0]])).tolist()
    [0.25]
    """
    return m[:, 0] / m[:, 1]


def finish_estimate(
    name: str,
    columns: NDArray,
    stat: Callable[[NDArray], NDArray],
    opts: EstimatorOptions,
    *,
    used: NDArray | None,
    raw: NDArray | None,
    details: Mapping[str, float] | None = None,
    check: tuple[float, float, bool] | None = None,
    per_horizon: bool = False,
) -> Estimate:
    """Bootstrap a statistic of column means and attach the weight diagnostics.

    Parameters
    ----------
    name : str
        Estimator name.
    columns : numpy.ndarray of shape (n, m)
        Per-row terms; the estimate is ``stat`` of their column means.
    stat : callable
        Maps a (b, m) array of (resampled) column means to b values, e.g. :func:`mean_stat`.
    opts : EstimatorOptions
        From :func:`estimator_options`.
    used : numpy.ndarray of shape (n,) or (n, k), or None
        The weights the estimator applied (per slot or step for (n, k), whose ESS is the smallest
        column ESS); None for model-only estimates.
    raw : numpy.ndarray of shape (n,), or None
        Row weights with expectation 1, for the propensity check.
    details : mapping, optional
        Chosen hyper-parameters and other figures.
    check : tuple of (float, float, bool), optional
        The propensity check's mean, SE and verdict when computed by the caller instead of ``raw``.
    per_horizon : bool, default False
        Keep every column's ESS (sequential estimators).

    Returns
    -------
    Estimate

    Examples
    --------
    >>> opts = estimator_options(None, 0, None)
    >>> w = np.array([2.0, 0.0])
    >>> finish_estimate("IPS", stack_columns(w * 1.0), mean_stat, opts, used=w, raw=w).value
    1.0
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


def stack_columns(*arrays: NDArray) -> NDArray:
    """Per-row terms as the (n, m) column matrix :func:`finish_estimate` takes.

    Examples
    --------
    >>> stack_columns(np.ones(2), np.zeros(2)).shape
    (2, 2)
    """
    return np.column_stack(arrays)


def check_clip(clip: float | None) -> None:
    """Raise :class:`~simkit.errors.ConfigError` unless ``clip`` is None or positive."""
    if clip is not None and not clip > 0:
        raise ConfigError(f"clip must be > 0 or None; got {clip!r}")


# ---------------------------------------------------------------------------------------------
# Shared terms and docstring text.

#: Docstring text of the ``rng``, ``n_bootstrap`` and ``min_ess`` parameters (``{shared}``).
SHARED_PARAMS = """rng : numpy.random.Generator, optional
        Bootstrap randomness; required when ``n_bootstrap > 0``.
    n_bootstrap : int, default 1000
        Bootstrap resamples of rows (0 skips the interval).
    min_ess : float, optional
        Minimum ESS for the value to be reported; default :func:`default_min_ess`."""


def dr_terms(r: NDArray, u: NDArray, q_log: NDArray, q_tgt: NDArray) -> NDArray:
    """Row terms of a doubly robust estimate: ``q_tgt + u * (r - q_log)``.

    Examples
    --------
    >>> dr_terms(np.array([1.0]), np.array([2.0]), np.array([0.5]), np.array([0.25])).tolist()
    [1.25]
    """
    return q_tgt + u * (r - q_log)


#: Docstring text of the reward-model parameters of the DR-type estimators (``{dr}``).
DR_PARAMS = """reward, target_proba_of_logged, logged_propensity : array-like of shape (n,)
        As in :func:`ips`.
    q_hat_logged : array-like of shape (n,)
        Reward model's prediction for the logged action (fit out-of-fold, :func:`cross_fit_predict`).
    q_hat_target : array-like of shape (n,) or (n, n_actions)
        The target policy's expected q_hat per row, or the full q_hat matrix with ``target_dist``.
    target_dist : array-like of shape (n, n_actions), optional
        Target action distribution, required with a q_hat matrix."""


def fill_docs(functions: Sequence[Callable[..., Any]], parts: Mapping[str, str]) -> None:
    """Replace ``{key}`` placeholders in the docstrings with the shared parameter text.

    Parameters
    ----------
    functions : sequence of callables
        Functions whose ``__doc__`` is rewritten in place.
    parts : mapping of str to str
        Placeholder name (without braces) to its text, e.g. ``{"shared": SHARED_PARAMS}``.

    Examples
    --------
    >>> def f():
    ...     "Uses {x}."
    >>> fill_docs([f], {"x": "text"}); f.__doc__
    'Uses text.'
    """
    for func in functions:
        doc = func.__doc__ or ""
        for key, text in parts.items():
            doc = doc.replace("{" + key + "}", text)
        func.__doc__ = doc
