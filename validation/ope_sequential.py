"""Off-policy estimators for sessions: trajectory IS, per-decision IS, weighted PDIS, step-wise DR.

Inputs are flat per-step arrays, one entry per logged decision, with a
``session_id`` per row and optionally a ``step`` giving the order inside the session (default: the
order of the rows). Inside the estimators each session becomes a row of (n_sessions, horizon)
arrays; after a session ends its per-step weight is 1 and its reward 0, so the cumulative weights of
finished sessions carry on unchanged. The estimand is the expected discounted return over the logged
horizon: sessions end the way the logs end them, so a time-limit truncation is part of it.

With w_t = pi(a_t|s_t) / pi0(a_t|s_t) and the cumulative weight rho_t = prod_{t' <= t} w_t', clipped
at ``clip`` (default 1e3; None keeps it), every estimate reports:

- ``ess_per_horizon``: the ESS of rho_t over all sessions at each step t, and ``ess`` its minimum,
  held to ``min_ess`` (default :func:`simkit.validation.ope.default_min_ess` of the session count);
- the propensity check on the per-step weights: their mean over all logged steps must be within
  3 SE of 1 (E[w_t | history] = 1 under the logging policy), the SE clustered by session;
- a bootstrap interval over sessions.

References
----------
.. [1] Precup, Sutton, Singh. "Eligibility traces for off-policy policy evaluation." ICML 2000
   (trajectory-wise, per-decision and weighted importance sampling).
.. [2] Jiang, Li. "Doubly robust off-policy value evaluation for reinforcement learning." ICML 2016.
.. [3] Thomas, Brunskill. "Data-efficient off-policy policy evaluation for reinforcement learning."
   ICML 2016.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simkit.errors import ConfigError, LogError
from simkit.validation.ope_kernel import (
    Estimate,
    EstimatorOptions,
    InputCheck,
    describe_rows,
    estimator_options,
    fill_docs,
    finish_estimate,
    mean_stat,
    stack_columns,
)

__all__ = ["pdis", "stepwise_dr", "trajectory_is", "wpdis"]

_SHARED = """reward : array-like of shape (n_steps,)
        Reward of each logged step.
    target_proba_of_logged : array-like of shape (n_steps,)
        Target policy's probability of the logged action, in [0, 1].
    logged_propensity : array-like of shape (n_steps,)
        Logging policy's probability of the logged action, in (0, 1].
    session_id : array-like of shape (n_steps,)
        Session (episode) of each step; any sortable ids.
    step : array-like of shape (n_steps,), optional
        Order of the steps inside a session; default: the order of the rows.
    gamma : float, default 1.0
        Discount per step, in [0, 1].
    clip : float or None, default 1e3
        Upper limit on the cumulative weights.
    rng : numpy.random.Generator, optional
        Bootstrap randomness; required when ``n_bootstrap > 0``.
    n_bootstrap : int, default 1000
        Bootstrap resamples of sessions (0 skips the interval).
    min_ess : float, optional
        Minimum ESS (over sessions, at every step) for the value to be reported."""

_RETURNS = """Returns
    -------
    Estimate
        ``n`` counts sessions; ``details`` holds gamma, clip, the step count and the horizon.

    Raises
    ------
    LogError
        Propensity 0, NaN/missing, negative or above 1; target probabilities outside [0, 1];
        non-finite rewards or model values; mismatched lengths; a step repeated in a session."""


class _Sessions(NamedTuple):
    """Per-step inputs laid out as (n_sessions, horizon) arrays."""

    alive: NDArray  # bool: the step was logged
    reward: NDArray  # 0 after the session ended
    weight: NDArray  # raw per-step weight, 1 after the session ended
    rho: NDArray  # clipped cumulative weight
    extras: list[NDArray]  # 0 after the session ended
    discount: NDArray  # gamma ** t, shape (horizon,)


def _sessions(
    estimator: str,
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    session_id: ArrayLike,
    step: ArrayLike | None,
    gamma: float,
    clip: float | None,
    extra: dict[str, ArrayLike] | None = None,
) -> _Sessions:
    if not 0 <= gamma <= 1:
        raise ConfigError(f"gamma must be in [0, 1]; got {gamma!r}")
    if clip is not None and not clip > 0:
        raise ConfigError(f"clip must be > 0 or None; got {clip!r}")
    chk = InputCheck(estimator)
    r = chk.array("reward", reward)
    pi = chk.array("target_proba_of_logged", target_proba_of_logged)
    p = chk.array("logged_propensity", logged_propensity)
    chk.finite("reward", r, "Drop or impute those rows before estimating.")
    chk.probability("target_proba_of_logged", pi, propensity=False)
    chk.probability("logged_propensity", p, propensity=True)
    values = []
    for name, value in (extra or {}).items():
        values.append(chk.array(name, value))
        chk.finite(name, values[-1], "Check the value model's predictions.")
    sid = np.asarray(session_id)
    order_key = None if step is None else np.asarray(step)
    for name, arr in (("session_id", sid), ("step", order_key)):
        if arr is None:
            continue
        if arr.ndim != 1:
            chk.problems.append(f"{name} must be 1-D with one entry per step; got {arr.shape}.")
        else:
            chk.lengths[name] = arr.shape[0]
    chk.done()

    n = r.size
    _, session = np.unique(sid, return_inverse=True)
    session = session.ravel()
    within = np.arange(n) if order_key is None else order_key
    order = np.lexsort((within, session))
    session_sorted = session[order]
    if order_key is not None:
        sorted_key = order_key[order]
        repeated = np.zeros(n, dtype=bool)
        repeated[order[1:]] = (session_sorted[1:] == session_sorted[:-1]) & (
            sorted_key[1:] == sorted_key[:-1]
        )
        if repeated.any():
            raise LogError(
                f"Cannot compute the {estimator} estimate; each (session_id, step) pair must occur"
                f" once; got repeats in {describe_rows(repeated)}. Remove duplicated log rows or fix the"
                " step numbering."
            )
    counts = np.bincount(session_sorted)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(n) - np.repeat(starts, counts)
    shape = (counts.size, int(counts.max()))

    def pad(values: NDArray, fill: float) -> NDArray:
        out = np.full(shape, fill)
        out[session_sorted, position] = values[order]
        return out

    alive = pad(np.ones(n), 0.0).astype(bool)
    weight = pad(pi / p, 1.0)
    with np.errstate(divide="ignore"):
        rho = np.exp(np.cumsum(np.log(weight), axis=1))
    if clip is not None:
        rho = np.minimum(rho, clip)
    discount = gamma ** np.arange(shape[1], dtype=np.float64)
    return _Sessions(alive, pad(r, 0.0), weight, rho, [pad(v, 0.0) for v in values], discount)


def _step_check(s: _Sessions) -> tuple[float, float, bool]:
    """Mean per-step weight over logged steps, with an SE clustered by session."""
    n_steps = int(s.alive.sum())
    mean = float(s.weight[s.alive].sum() / n_steps)
    per_session = np.where(s.alive, s.weight - mean, 0.0).sum(axis=1)
    k = per_session.size
    se = math.sqrt(k / (k - 1) * float(np.sum(per_session**2))) / n_steps if k > 1 else math.nan
    ok = math.isnan(se) or abs(mean - 1.0) <= 3.0 * se + 1e-9
    return mean, se, ok


def _seq_finish(
    name: str,
    columns: NDArray,
    stat: object,
    s: _Sessions,
    opts: EstimatorOptions,
    gamma: float,
    clip: float | None,
) -> Estimate:
    details = {
        "gamma": float(gamma),
        "clip": math.inf if clip is None else float(clip),
        "n_steps": float(s.alive.sum()),
        "horizon": float(s.alive.shape[1]),
    }
    return finish_estimate(
        name,
        columns,
        stat,  # type: ignore[arg-type]
        opts,
        used=s.rho,
        raw=None,
        details=details,
        check=_step_check(s),
        per_horizon=True,
    )


def trajectory_is(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    session_id: ArrayLike,
    *,
    step: ArrayLike | None = None,
    gamma: float = 1.0,
    clip: float | None = 1e3,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Trajectory-wise importance sampling: V = (1/N) sum_n rho_n,T sum_t gamma^t r_nt.

    Parameters
    ----------
    {shared}

    {returns}

    References
    ----------
    Precup, Sutton, Singh. "Eligibility traces for off-policy policy evaluation." ICML 2000.

    Examples
    --------
    >>> trajectory_is([1.0, 1.0, 0.0], [1.0, 0.25, 0.5], [0.5, 0.5, 0.5], [7, 7, 8],
    ...               n_bootstrap=0).value
    1.0
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    args = (reward, target_proba_of_logged, logged_propensity, session_id, step, gamma, clip)
    s = _sessions("trajectory IS", *args)
    ret = (s.discount * s.reward).sum(axis=1)
    return _seq_finish(
        "trajectory IS", stack_columns(s.rho[:, -1] * ret), mean_stat, s, opts, gamma, clip
    )


def pdis(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    session_id: ArrayLike,
    *,
    step: ArrayLike | None = None,
    gamma: float = 1.0,
    clip: float | None = 1e3,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Per-decision importance sampling: V = (1/N) sum_n sum_t gamma^t rho_nt r_nt.

    Each reward is weighted only by the decisions before it, which lowers the variance of
    trajectory IS and keeps it unbiased (without clipping).

    Parameters
    ----------
    {shared}

    {returns}

    References
    ----------
    Precup, Sutton, Singh. "Eligibility traces for off-policy policy evaluation." ICML 2000.

    Examples
    --------
    >>> pdis([1.0, 1.0, 0.0], [1.0, 0.25, 0.5], [0.5, 0.5, 0.5], [7, 7, 8], n_bootstrap=0).value
    1.5
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    args = (reward, target_proba_of_logged, logged_propensity, session_id, step, gamma, clip)
    s = _sessions("PDIS", *args)
    terms = (s.discount * s.rho * s.reward).sum(axis=1)
    return _seq_finish("PDIS", stack_columns(terms), mean_stat, s, opts, gamma, clip)


def wpdis(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    session_id: ArrayLike,
    *,
    step: ArrayLike | None = None,
    gamma: float = 1.0,
    clip: float | None = 1e3,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Weighted per-decision IS: V = sum_t gamma^t sum_n rho_nt r_nt / sum_n rho_nt.

    The cumulative weights are normalised per step across sessions (finished sessions keep their
    last weight). Biased, consistent, usually much less variable than PDIS.

    Parameters
    ----------
    {shared}

    {returns}

    References
    ----------
    Precup, Sutton, Singh. ICML 2000; Thomas, Brunskill. ICML 2016.

    Examples
    --------
    >>> round(wpdis([1.0, 1.0, 0.0], [1.0, 0.25, 0.5], [0.5, 0.5, 0.5], [7, 7, 8],
    ...             n_bootstrap=0).value, 6)
    1.166667
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    args = (reward, target_proba_of_logged, logged_propensity, session_id, step, gamma, clip)
    s = _sessions("WPDIS", *args)
    horizon = s.rho.shape[1]

    def stat(m: NDArray) -> NDArray:
        return (s.discount * m[:, :horizon] / m[:, horizon:]).sum(axis=1)

    columns = np.hstack([s.rho * s.reward, s.rho])
    return _seq_finish("WPDIS", columns, stat, s, opts, gamma, clip)


def stepwise_dr(
    reward: ArrayLike,
    target_proba_of_logged: ArrayLike,
    logged_propensity: ArrayLike,
    session_id: ArrayLike,
    q_hat_logged: ArrayLike,
    v_hat: ArrayLike,
    *,
    step: ArrayLike | None = None,
    gamma: float = 1.0,
    clip: float | None = 1e3,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Step-wise doubly robust estimate.

    The recursion V_DR(t) = V_hat(s_t) + w_t (r_t + gamma V_DR(t+1) - Q_hat(s_t, a_t)), unrolled:
    V = (1/N) sum_n sum_t gamma^t [rho_nt (r_nt - Q_hat_nt) + rho_n,t-1 V_hat_nt] with rho_-1 = 1.
    Unbiased (without clipping) for any Q_hat; the closer Q_hat is to Q^pi, the lower the variance.
    Q_hat typically comes from fitted Q evaluation of the target policy.

    Parameters
    ----------
    {shared}
    q_hat_logged : array-like of shape (n_steps,)
        Q_hat(s_t, a_t) of the logged action under the target policy.
    v_hat : array-like of shape (n_steps,)
        V_hat(s_t) = sum_a pi(a|s_t) Q_hat(s_t, a).

    {returns}

    References
    ----------
    Jiang, Li. "Doubly robust off-policy value evaluation for reinforcement learning." ICML 2016.
    Thomas, Brunskill. "Data-efficient off-policy policy evaluation for reinforcement learning."
    ICML 2016.

    Examples
    --------
    >>> stepwise_dr([1.0, 1.0, 0.0], [1.0, 0.25, 0.5], [0.5, 0.5, 0.5], [7, 7, 8],
    ...             [0.5, 0.5, 0.5], [1.0, 0.5, 0.5], n_bootstrap=0).value
    1.75
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    args = (reward, target_proba_of_logged, logged_propensity, session_id, step, gamma, clip)
    s = _sessions("step-wise DR", *args, extra={"q_hat_logged": q_hat_logged, "v_hat": v_hat})
    q, v = s.extras
    rho_before = np.hstack([np.ones((s.rho.shape[0], 1)), s.rho[:, :-1]])
    terms = (s.discount * (s.rho * (s.reward - q) + rho_before * v)).sum(axis=1)
    return _seq_finish("step-wise DR", stack_columns(terms), mean_stat, s, opts, gamma, clip)


fill_docs((trajectory_is, pdis, wpdis, stepwise_dr), {"shared": _SHARED, "returns": _RETURNS})
