"""Off-policy estimators for slates: SIPS, IIPS, RIPS, PI and its control-variate variants.

A slate s = (a_1, ..., a_L) is shown per row; ``slot_reward`` (n, L) holds the reward at each
position and R = sum_k r_k. Propensities come in the three forms agents log (:class:`simkit.agents.base.DecisionLog`):

- joint slate probabilities pi(s|x), pi0(s|x), shape (n,): :func:`sips`;
- per-slot marginals pi_k(a_k|x), pi0_k(a_k|x), shape (n, L): :func:`iips` and the pseudo-inverse
  family (``slate_pi*``), which assume factored (independent-slot) policies;
- per-position conditionals pi(a_k | x, a_<k), shape (n, L): :func:`rips` (equal to the marginals
  for factored policies).

With w_k = pi_k / pi0_k, the pseudo-inverse weight of a factored slate is G = sum_k w_k - (L - 1);
E[G | x] = 1 and E[w_k - 1 | x] = 0 under the logging policy, which the control variates exploit.
Every function returns a :class:`simkit.validation.ope.Estimate`, checks its inputs like the
single-action estimators (:class:`simkit.errors.LogError` listing every problem) and runs the
propensity check on a row weight with expectation 1 (the slate weight for SIPS, the prefix weights
averaged over positions for RIPS, the slot weights averaged over slots otherwise).

References
----------
.. [1] Swaminathan, Krishnamurthy, Agarwal, Dudík, Langford, Jose, Zitouni. "Off-policy evaluation
   for slate recommendation." NeurIPS 2017.
.. [2] Li, Kim, Zitouni. "Offline evaluation of ranking policies with click models." KDD 2018.
.. [3] McInerney, Brost, Chandar, Mehrotra, Carterette. "Counterfactual evaluation of slate
   recommendations with sequential reward interactions." KDD 2020 (Spotify).
.. [4] Vlassis, Chandrashekar, Amat Gil, Kallus. "Control variates for slate off-policy evaluation."
   NeurIPS 2021 (Netflix).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simkit.validation.ope_kernel import (
    Estimate,
    EstimatorOptions,
    InputCheck,
    estimator_options,
    fill_docs,
    finish_estimate,
    mean_stat,
    ratio_stat,
    stack_columns,
)

__all__ = [
    "iips",
    "rips",
    "sips",
    "slate_pi",
    "slate_pi_dr",
    "slate_pi_opt_baseline",
    "slate_pi_opt_cv",
    "slate_wpi",
]

_SHARED = """rng : numpy.random.Generator, optional
        Bootstrap randomness; required when ``n_bootstrap > 0``.
    n_bootstrap : int, default 1000
        Bootstrap resamples of rows (0 skips the interval).
    min_ess : float, optional
        Minimum ESS for the value to be reported; default
        :func:`simkit.validation.ope.default_min_ess`."""

_FACTORED = """slot_reward : array-like of shape (n, L) or (n,)
        Reward at each position, or the slate's total reward.
    target_marginal : array-like of shape (n, L)
        Target policy's probability of the logged item in each slot, in [0, 1].
    logged_marginal : array-like of shape (n, L)
        Logging policy's probability of the logged item in each slot, in (0, 1]."""


def _slate_inputs(
    estimator: str,
    slot_reward: ArrayLike,
    target: ArrayLike,
    logged: ArrayLike,
    *,
    names: tuple[str, str],
    reward_ndim: tuple[int, ...] = (1, 2),
    proba_ndim: int = 2,
    extra: dict[str, ArrayLike] | None = None,
) -> tuple[NDArray, NDArray, list[NDArray]]:
    """Check slate inputs; returns the rewards as given, the weights target/logged, the extras."""
    chk = InputCheck(estimator)
    r = chk.array("slot_reward", slot_reward, ndim=reward_ndim)
    pi = chk.array(names[0], target, ndim=proba_ndim)
    p0 = chk.array(names[1], logged, ndim=proba_ndim)
    chk.finite("slot_reward", r, "Drop or impute those rows before estimating.")
    chk.probability(names[0], pi, propensity=False)
    chk.probability(names[1], p0, propensity=True)
    if proba_ndim == 2 and pi.shape != p0.shape:
        chk.problems.append(
            f"{names[0]} and {names[1]} must have the same (n_rows, n_slots) shape;"
            f" got {pi.shape} and {p0.shape}."
        )
    if r.ndim == 2 and proba_ndim == 2 and p0.ndim == 2 and r.shape[1] != p0.shape[1]:
        chk.problems.append(
            f"slot_reward must have one column per slot like {names[1]}; got {r.shape[1]} columns"
            f" and {p0.shape[1]} slots."
        )
    out = []
    for name, value in (extra or {}).items():
        arr = chk.array(name, value, ndim=(1, 2))
        chk.finite(name, arr, "Check the reward model's predictions.")
        out.append(arr.reshape(arr.shape[0], -1).sum(axis=1) if arr.ndim == 2 else arr)
    chk.done()
    return r, pi / p0, out


def _total(r: NDArray) -> NDArray:
    return r.sum(axis=1) if r.ndim == 2 else r


def sips(
    slot_reward: ArrayLike,
    target_slate_proba: ArrayLike,
    logged_slate_proba: ArrayLike,
    *,
    self_normalized: bool = False,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Standard slate IPS: V = (1/n) sum_i R_i pi(s_i|x_i) / pi0(s_i|x_i).

    No assumption on the reward; the variance explodes with the slate length. The self-normalised
    form divides by the mean slate weight.

    Parameters
    ----------
    slot_reward : array-like of shape (n, L) or (n,)
        Reward at each position, or the slate's total reward.
    target_slate_proba : array-like of shape (n,)
        Target policy's probability of the whole logged slate.
    logged_slate_proba : array-like of shape (n,)
        Logging policy's probability of the whole logged slate, in (0, 1].
    self_normalized : bool, default False
        Divide by the sum of the weights instead of n.
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        Invalid probabilities, non-finite rewards or mismatched lengths.

    References
    ----------
    Swaminathan et al. "Off-policy evaluation for slate recommendation." NeurIPS 2017 (the
    baseline); Li, Kim, Zitouni. KDD 2018.

    Examples
    --------
    >>> sips([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], [0.02, 0.01, 0.0], [0.01, 0.01, 0.04],
    ...      n_bootstrap=0).value
    0.6666666666666666
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    names = ("target_slate_proba", "logged_slate_proba")
    name = "SNSIPS" if self_normalized else "SIPS"
    r, w, _ = _slate_inputs(
        name, slot_reward, target_slate_proba, logged_slate_proba, names=names, proba_ndim=1
    )
    rw = _total(r) * w
    if self_normalized:
        return finish_estimate(name, stack_columns(rw, w), ratio_stat, opts, used=w, raw=w)
    return finish_estimate(name, stack_columns(rw), mean_stat, opts, used=w, raw=w)


def _per_slot(
    name: str,
    r: NDArray,
    u: NDArray,
    self_normalized: bool,
    opts: EstimatorOptions,
) -> Estimate:
    """sum_k mean(u_k r_k), or sum_k sum(u_k r_k) / sum(u_k) when self-normalised."""
    n_slots = u.shape[1]
    if self_normalized:

        def stat(m: NDArray) -> NDArray:
            return (m[:, :n_slots] / m[:, n_slots:]).sum(axis=1)

        columns = np.hstack([u * r, u])
    else:
        columns = stack_columns((u * r).sum(axis=1))
        stat = mean_stat
    return finish_estimate(name, columns, stat, opts, used=u, raw=u.mean(axis=1))


def iips(
    slot_reward: ArrayLike,
    target_marginal: ArrayLike,
    logged_marginal: ArrayLike,
    *,
    self_normalized: bool = False,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Independent IPS: V = (1/n) sum_i sum_k r_ik pi_k(a_ik|x_i) / pi0_k(a_ik|x_i).

    Assumes each position's reward depends only on that position's item (the item-position model);
    biased when the reward at a position depends on the items above it. The self-normalised form
    divides each slot's sum by the sum of that slot's weights. ESS is the smallest slot ESS.

    Parameters
    ----------
    slot_reward : array-like of shape (n, L)
        Reward at each position.
    target_marginal, logged_marginal : array-like of shape (n, L)
        Per-slot probabilities of the logged items under the target and logging policies.
    self_normalized : bool, default False
        Normalise each slot by its weights.
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        Invalid probabilities, non-finite rewards or mismatched shapes.

    References
    ----------
    Li, Kim, Zitouni. "Offline evaluation of ranking policies with click models." KDD 2018.

    Examples
    --------
    >>> iips([[0.0, 1.0], [1.0, 0.0]], [[0.5, 0.5], [0.2, 0.1]], [[0.25, 0.5], [0.2, 0.2]],
    ...      n_bootstrap=0).value
    1.0
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    name = "SNIIPS" if self_normalized else "IIPS"
    names = ("target_marginal", "logged_marginal")
    r, w, _ = _slate_inputs(
        name, slot_reward, target_marginal, logged_marginal, names=names, reward_ndim=(2,)
    )
    return _per_slot(name, r, w, self_normalized, opts)


def rips(
    slot_reward: ArrayLike,
    target_conditional: ArrayLike,
    logged_conditional: ArrayLike,
    *,
    self_normalized: bool = False,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Reward-interaction (cascade) IPS: each position weighted by the prefix weight up to it.

    V = (1/n) sum_i sum_k r_ik prod_{j<=k} pi(a_ij|x_i, a_i,<j) / pi0(a_ij|x_i, a_i,<j). Assumes a
    position's reward may depend on the items (and rewards) above it but not below. The
    self-normalised form divides each position's sum by the sum of its prefix weights, as
    McInerney et al. and OBP do for variance. ESS is the smallest position ESS.

    Parameters
    ----------
    slot_reward : array-like of shape (n, L)
        Reward at each position, top first.
    target_conditional, logged_conditional : array-like of shape (n, L)
        Probability of the logged item at each position given the items above it, under the
        target and logging policies (the per-slot marginals for factored policies).
    self_normalized : bool, default False
        Normalise each position by its prefix weights.
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        Invalid probabilities, non-finite rewards or mismatched shapes.

    References
    ----------
    McInerney, Brost, Chandar, Mehrotra, Carterette. "Counterfactual evaluation of slate
    recommendations with sequential reward interactions." KDD 2020.

    Examples
    --------
    >>> rips([[0.0, 1.0], [1.0, 0.0]], [[0.5, 0.5], [0.2, 0.1]], [[0.25, 0.5], [0.2, 0.2]],
    ...      n_bootstrap=0).value
    1.5
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    name = "SNRIPS" if self_normalized else "RIPS"
    names = ("target_conditional", "logged_conditional")
    r, w, _ = _slate_inputs(
        name, slot_reward, target_conditional, logged_conditional, names=names, reward_ndim=(2,)
    )
    return _per_slot(name, r, np.cumprod(w, axis=1), self_normalized, opts)


def _pi_inputs(
    estimator: str,
    slot_reward: ArrayLike,
    target_marginal: ArrayLike,
    logged_marginal: ArrayLike,
    extra: dict[str, ArrayLike] | None = None,
) -> tuple[NDArray, NDArray, NDArray, list[NDArray]]:
    """Total reward R, slot weights w (n, L), PI weights G, and the extras summed over slots."""
    names = ("target_marginal", "logged_marginal")
    r, w, out = _slate_inputs(
        estimator, slot_reward, target_marginal, logged_marginal, names=names, extra=extra
    )
    return _total(r), w, w.sum(axis=1) - (w.shape[1] - 1), out


def slate_pi(
    slot_reward: ArrayLike,
    target_marginal: ArrayLike,
    logged_marginal: ArrayLike,
    *,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Pseudo-inverse estimator for factored policies: V = (1/n) sum_i G_i R_i.

    G_i = sum_k w_ik - (L - 1). Unbiased under the additive reward model E[R|x, s] =
    sum_k phi_k(x, a_k) when both policies pick each slot independently given x.

    Parameters
    ----------
    {factored}
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        Invalid probabilities, non-finite rewards or mismatched shapes.

    References
    ----------
    Swaminathan et al. "Off-policy evaluation for slate recommendation." NeurIPS 2017.

    Examples
    --------
    >>> slate_pi([2.0, 1.0], [[0.5, 0.5], [0.2, 0.1]], [[0.25, 0.5], [0.2, 0.2]],
    ...          n_bootstrap=0).value
    2.25
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    r, w, g, _ = _pi_inputs("PI", slot_reward, target_marginal, logged_marginal)
    return finish_estimate("PI", stack_columns(g * r), mean_stat, opts, used=g, raw=w.mean(axis=1))


def slate_wpi(
    slot_reward: ArrayLike,
    target_marginal: ArrayLike,
    logged_marginal: ArrayLike,
    *,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Weighted (self-normalised) pseudo-inverse: V = sum_i G_i R_i / sum_i G_i.

    Parameters
    ----------
    {factored}
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        As :func:`slate_pi`.

    References
    ----------
    Swaminathan et al. NeurIPS 2017.

    Examples
    --------
    >>> slate_wpi([2.0, 1.0], [[0.5, 0.5], [0.2, 0.1]], [[0.25, 0.5], [0.2, 0.2]],
    ...           n_bootstrap=0).value
    1.8
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    r, w, g, _ = _pi_inputs("wPI", slot_reward, target_marginal, logged_marginal)
    return finish_estimate(
        "wPI", stack_columns(g * r, g), ratio_stat, opts, used=g, raw=w.mean(axis=1)
    )


def _folds(n: int, cross_fit: bool) -> NDArray:
    """Fold masks (n_folds, n): rows alternate between two folds, or one fold of all rows."""
    if not cross_fit or n < 4:
        return np.ones((1, n))
    fold = np.arange(n) % 2
    return np.stack([fold == 0, fold == 1]).astype(np.float64)


def _control_variate(
    name: str,
    r: NDArray,
    g: NDArray,
    d: NDArray,
    raw: NDArray,
    cross_fit: bool,
    opts: EstimatorOptions,
) -> Estimate:
    """V = mean(G R) - beta . mean(d) with the variance-optimal beta = E[d d']^+ E[d G R].

    ``d`` (n, m) are control variates with zero mean under the logging policy. With cross-fitting,
    the beta fitted on one fold corrects the rows of the other.
    """
    n, m = d.shape
    masks = _folds(n, cross_fit)
    n_folds = masks.shape[0]
    rg = g * r
    per_row = np.hstack(
        [rg[:, None], d, (d[:, :, None] * d[:, None, :]).reshape(n, m * m), d * rg[:, None]]
    )
    width = per_row.shape[1]
    columns = np.hstack([per_row * mask[:, None] for mask in masks])

    def stat(means: NDArray) -> NDArray:
        b = means.shape[0]
        blocks = means.reshape(b, n_folds, width)
        dd = blocks[:, :, 1 + m : 1 + m + m * m].reshape(b, n_folds, m, m)
        d_rg = blocks[:, :, 1 + m + m * m :]
        beta = np.einsum("bfij,bfj->bfi", np.linalg.pinv(dd), d_rg)
        if n_folds == 2:
            beta = beta[:, ::-1]  # each fold is corrected with the other fold's beta
        correction = np.einsum("bfi,bfi->b", beta, blocks[:, :, 1 : 1 + m])
        return blocks[:, :, 0].sum(axis=1) - correction

    return finish_estimate(
        name, columns, stat, opts, used=g, raw=raw, details={"cross_fit": float(n_folds == 2)}
    )


def slate_pi_opt_baseline(
    slot_reward: ArrayLike,
    target_marginal: ArrayLike,
    logged_marginal: ArrayLike,
    *,
    cross_fit: bool = True,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """PI with the variance-optimal scalar baseline: V = (1/n) sum_i (R_i - beta) G_i + beta.

    beta* = E[R G (G - 1)] / E[(G - 1)^2], estimated by plug-in; with ``cross_fit`` the rows are
    split into two interleaved folds (even and odd rows) and each fold uses the other's beta, which
    keeps the estimator exactly unbiased. Unbiased for any beta because E[G] = 1.

    Parameters
    ----------
    {factored}
    cross_fit : bool, default True
        Fit beta on one fold and apply it to the other.
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        As :func:`slate_pi`.

    References
    ----------
    Vlassis, Chandrashekar, Amat Gil, Kallus. "Control variates for slate off-policy evaluation."
    NeurIPS 2021.

    Examples
    --------
    >>> est = slate_pi_opt_baseline([2.0, 1.0, 0.0], [[0.5, 0.5], [0.2, 0.1], [0.1, 0.1]],
    ...                             [[0.25, 0.5], [0.2, 0.2], [0.1, 0.1]], cross_fit=False,
    ...                             n_bootstrap=0)
    >>> round(est.value, 6)
    1.0
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    r, w, g, _ = _pi_inputs("PI-OptBaseline", slot_reward, target_marginal, logged_marginal)
    return _control_variate(
        "PI-OptBaseline", r, g, (g - 1.0)[:, None], w.mean(axis=1), cross_fit, opts
    )


def slate_pi_opt_cv(
    slot_reward: ArrayLike,
    target_marginal: ArrayLike,
    logged_marginal: ArrayLike,
    *,
    cross_fit: bool = True,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """PI with the variance-optimal vector control variate: V = (1/n) sum_i [G_i R_i - beta'(w_i - 1)].

    beta* = E[(w - 1)(w - 1)']^+ E[(w - 1) R G] (pseudo-inverse, so a slot where the two policies
    agree is harmless), estimated by plug-in with the same cross-fitting as
    :func:`slate_pi_opt_baseline`. Unbiased for any beta because E[w_k - 1 | x] = 0.

    Parameters
    ----------
    {factored}
    cross_fit : bool, default True
        Fit beta on one fold and apply it to the other.
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        As :func:`slate_pi`.

    References
    ----------
    Vlassis, Chandrashekar, Amat Gil, Kallus. "Control variates for slate off-policy evaluation."
    NeurIPS 2021.

    Examples
    --------
    >>> est = slate_pi_opt_cv([2.0, 1.0, 0.0], [[0.5, 0.5], [0.2, 0.1], [0.1, 0.1]],
    ...                       [[0.25, 0.5], [0.2, 0.2], [0.1, 0.1]], cross_fit=False,
    ...                       n_bootstrap=0)
    >>> round(est.value, 6)
    0.0
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    r, w, g, _ = _pi_inputs("PI-OptCV", slot_reward, target_marginal, logged_marginal)
    return _control_variate("PI-OptCV", r, g, w - 1.0, w.mean(axis=1), cross_fit, opts)


def slate_pi_dr(
    slot_reward: ArrayLike,
    target_marginal: ArrayLike,
    logged_marginal: ArrayLike,
    f_hat_logged: ArrayLike,
    f_hat_target: ArrayLike,
    *,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
    min_ess: float | None = None,
) -> Estimate:
    """Slate DR (regression control variate): V = (1/n) sum_i [f_pi(x_i) + G_i (R_i - f(x_i, s_i))].

    f is an additive reward model f(x, s) = sum_k f_k(x, a_k), fit out-of-fold; f_pi(x) =
    sum_k E_{a ~ pi_k}[f_k(x, a)]. Unbiased for any f under factored policies, since
    E[G f(x, s) | x] = f_pi(x) for an additive f.

    Parameters
    ----------
    {factored}
    f_hat_logged : array-like of shape (n,) or (n, L)
        The model's prediction for the logged slate (or per slot, summed).
    f_hat_target : array-like of shape (n,) or (n, L)
        The model's expected slate reward under the target policy (or per slot, summed).
    {shared}

    Returns
    -------
    Estimate

    Raises
    ------
    LogError
        As :func:`slate_pi`, plus non-finite predictions.

    References
    ----------
    Vlassis, Chandrashekar, Amat Gil, Kallus. NeurIPS 2021; Swaminathan et al. NeurIPS 2017.

    Examples
    --------
    >>> est = slate_pi_dr([2.0, 1.0], [[0.5, 0.5], [0.2, 0.1]], [[0.25, 0.5], [0.2, 0.2]],
    ...                   [1.0, 1.0], [1.5, 1.0], n_bootstrap=0)
    >>> round(est.value, 6)
    2.25
    """
    opts = estimator_options(rng, n_bootstrap, min_ess)
    extra = {"f_hat_logged": f_hat_logged, "f_hat_target": f_hat_target}
    r, w, g, (f_log, f_tgt) = _pi_inputs(
        "PI-DR", slot_reward, target_marginal, logged_marginal, extra
    )
    return finish_estimate(
        "PI-DR", stack_columns(f_tgt + g * (r - f_log)), mean_stat, opts, used=g, raw=w.mean(axis=1)
    )


fill_docs(
    (sips, iips, rips, slate_pi, slate_wpi, slate_pi_opt_baseline, slate_pi_opt_cv, slate_pi_dr),
    {"shared": _SHARED, "factored": _FACTORED},
)
