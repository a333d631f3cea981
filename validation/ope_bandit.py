"""Off-policy estimators for single-action logs: replay, IPS, SNIPS, DM, DR and SNDR.

Array-level API: numpy arrays in (one entry per logged decision), an
:class:`~simkit.validation.ope_kernel.Estimate` out, following the conventions of
:mod:`simkit.validation.ope_kernel` (input checks, bootstrap interval, weight diagnostics, overlap
minimum). The tuned estimators are in :mod:`.ope_tuned`, reward models fitted out-of-fold in
:mod:`.ope_crossfit`; import them all from :mod:`simkit.validation.ope`.

Notation: ``w = target_proba_of_logged / logged_propensity`` is the importance weight of a row, and
``q_hat`` a reward model (fit it out-of-fold with :func:`~simkit.validation.ope.cross_fit_predict`).

References
----------
.. [1] Li, Chu, Langford, Wang. "Unbiased offline evaluation of contextual-bandit-based news article
   recommendation algorithms." WSDM 2011.
.. [2] Horvitz, Thompson. "A generalization of sampling without replacement from a finite universe."
   JASA 1952. Precup, Sutton, Singh. "Eligibility traces for off-policy policy evaluation." ICML 2000.
.. [3] Swaminathan, Joachims. "The self-normalized estimator for counterfactual learning." NeurIPS 2015.
.. [4] Dudík, Langford, Li. "Doubly robust policy evaluation and learning." ICML 2011.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simkit.validation.ope_kernel import (
    DR_PARAMS,
    SHARED_PARAMS,
    Estimate,
    InputCheck,
    bandit_inputs,
    check_clip,
    dr_terms,
    estimator_options,
    expected_q,
    fill_docs,
    finish_estimate,
    mean_stat,
    ratio_stat,
    stack_columns,
)

__all__ = ["dm", "dr", "ips", "replay", "sndr", "snips"]


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
    opts = estimator_options(rng, n_bootstrap, min_ess)
    chk = InputCheck("Replay")
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
    return finish_estimate(
        "Replay", stack_columns(match * r, match), ratio_stat, opts, used=match, raw=raw
    )


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
    opts = estimator_options(rng, n_bootstrap, min_ess)
    check_clip(clip)
    r, w, _, _ = bandit_inputs("IPS", reward, target_proba_of_logged, logged_propensity)
    u = w if clip is None else np.minimum(w, clip)
    name, details = ("IPS", {}) if clip is None else ("clipped IPS", {"clip": float(clip)})
    return finish_estimate(
        name, stack_columns(u * r), mean_stat, opts, used=u, raw=w, details=details
    )


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
    opts = estimator_options(rng, n_bootstrap, min_ess)
    r, w, _, _ = bandit_inputs("SNIPS", reward, target_proba_of_logged, logged_propensity)
    return finish_estimate("SNIPS", stack_columns(w * r, w), ratio_stat, opts, used=w, raw=w)


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
    opts = estimator_options(rng, n_bootstrap, 0.0)
    chk = InputCheck("DM")
    q = expected_q(chk, q_hat_target, target_dist)
    chk.done()
    return finish_estimate("DM", stack_columns(q), mean_stat, opts, used=None, raw=None)


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
    opts = estimator_options(rng, n_bootstrap, min_ess)
    check_clip(clip)
    args = (reward, target_proba_of_logged, logged_propensity, q_hat_logged, q_hat_target)
    r, w, q_log, q_tgt = bandit_inputs("DR", *args, target_dist)
    u = w if clip is None else np.minimum(w, clip)
    details = {} if clip is None else {"clip": float(clip)}
    terms = stack_columns(dr_terms(r, u, q_log, q_tgt))
    return finish_estimate("DR", terms, mean_stat, opts, used=u, raw=w, details=details)


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
    opts = estimator_options(rng, n_bootstrap, min_ess)
    args = (reward, target_proba_of_logged, logged_propensity, q_hat_logged, q_hat_target)
    r, w, q_log, q_tgt = bandit_inputs("SNDR", *args, target_dist)

    def stat(m: NDArray) -> NDArray:
        return m[:, 0] + m[:, 1] / m[:, 2]

    return finish_estimate(
        "SNDR", stack_columns(q_tgt, w * (r - q_log), w), stat, opts, used=w, raw=w
    )


fill_docs((replay, ips, snips, dr, sndr), {"shared": SHARED_PARAMS, "dr": DR_PARAMS})
