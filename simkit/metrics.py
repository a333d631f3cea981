"""Metrics of probabilistic predictions, written once for fitting and validation.

Log loss and expected calibration error (ECE) of binary predictions, plain and under many weight
vectors at once (one row of weights per bootstrap resample), and the quantile bins that the ECE
and the reliability diagram share. Probabilities are clipped to ``[1e-9, 1 - 1e-9]`` before a
logarithm, so a confident wrong prediction costs about 20.7 nats instead of infinity.

References
----------
.. [1] Naeini, Cooper, Hauskrecht. "Obtaining well calibrated probabilities using Bayesian binning."
   AAAI 2015 (expected calibration error).
.. [2] Guo, Pleiss, Sun, Weinberger. "On calibration of modern neural networks." ICML 2017
   (reliability diagrams).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

__all__ = [
    "PROBA_CLIP",
    "calibration_bins",
    "expected_calibration_error",
    "log_loss",
    "row_log_loss",
    "weighted_ece",
    "weighted_log_loss",
]

PROBA_CLIP = 1e-9  # probabilities are clipped to [PROBA_CLIP, 1 - PROBA_CLIP] inside logarithms


def row_log_loss(y: ArrayLike, p: ArrayLike) -> NDArray[np.float64]:
    """Log loss of each row: ``-(y log p + (1 - y) log(1 - p))``, with ``p`` clipped.

    Parameters
    ----------
    y : array-like of shape (n,)
        Labels in [0, 1] (0/1 outcomes, or rates).
    p : array-like of shape (n,)
        Predicted probabilities of the positive outcome.

    Returns
    -------
    numpy.ndarray of shape (n,)

    Examples
    --------
    >>> row_log_loss([1, 0], [0.5, 0.5]).round(4).tolist()
    [0.6931, 0.6931]
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), PROBA_CLIP, 1 - PROBA_CLIP)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def log_loss(y: ArrayLike, p: ArrayLike) -> float:
    """Mean log loss (binary cross-entropy) of predictions ``p`` for labels ``y``.

    Parameters
    ----------
    y : array-like of shape (n,)
        Labels in [0, 1].
    p : array-like of shape (n,)
        Predicted probabilities of the positive outcome.

    Returns
    -------
    float

    Examples
    --------
    >>> round(log_loss([1, 0, 1], [0.9, 0.1, 0.5]), 4)
    0.3013
    """
    return float(np.mean(row_log_loss(y, p)))


def weighted_log_loss(y: ArrayLike, p: ArrayLike, w: ArrayLike) -> NDArray[np.float64]:
    """Mean log loss under each row of weights ``w``, e.g. bootstrap counts.

    Parameters
    ----------
    y, p : array-like of shape (n,)
        Labels and predicted probabilities.
    w : array-like of shape (B, n) or (n,)
        Non-negative row weights, one vector per resample.

    Returns
    -------
    numpy.ndarray of shape (B,)

    Examples
    --------
    >>> weighted_log_loss([1, 0], [0.5, 0.5], np.ones((2, 2))).round(4).tolist()
    [0.6931, 0.6931]
    """
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    return (w @ row_log_loss(y, p)) / w.sum(axis=1)


def calibration_bins(p: ArrayLike, *, n_bins: int = 10, strategy: str = "quantile") -> NDArray:
    """Bin of each prediction for the ECE and the reliability diagram.

    Parameters
    ----------
    p : array-like of shape (n,)
        Predicted probabilities.
    n_bins : int, default 10
        Number of bins.
    strategy : {"quantile", "uniform"}, default "quantile"
        Quantiles of ``p`` as edges (bins of equal counts), or equal-width bins on [0, 1].

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Bin index in ``0 .. n_bins - 1``; a prediction on an edge goes to the upper bin.

    Raises
    ------
    ValueError
        An unknown ``strategy`` or ``n_bins < 1``.

    Examples
    --------
    >>> calibration_bins([0.1, 0.2, 0.3, 0.4], n_bins=2).tolist()
    [0, 0, 1, 1]
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    p = np.asarray(p, dtype=np.float64)
    inner = np.linspace(0, 1, n_bins + 1)[1:-1]
    if strategy == "quantile":
        edges = np.quantile(p, inner) if len(p) else inner
    elif strategy == "uniform":
        edges = inner
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform'; got {strategy!r}")
    return np.searchsorted(edges, p, side="right")


def weighted_ece(
    y: ArrayLike, p: ArrayLike, w: ArrayLike, *, n_bins: int = 10, strategy: str = "quantile"
) -> NDArray[np.float64]:
    """Expected calibration error under each row of weights ``w``.

    ECE = sum over bins of |sum w (y - p)| / sum w: the weighted mean gap between the observed
    rate and the mean prediction of each bin. The bins are those of :func:`calibration_bins`
    (unweighted, so they stay fixed across resamples).

    Parameters
    ----------
    y, p : array-like of shape (n,)
        Labels and predicted probabilities.
    w : array-like of shape (B, n) or (n,)
        Non-negative row weights, one vector per resample.
    n_bins : int, default 10
        Number of bins.
    strategy : {"quantile", "uniform"}, default "quantile"
        As in :func:`calibration_bins`.

    Returns
    -------
    numpy.ndarray of shape (B,)

    Examples
    --------
    >>> weighted_ece([0, 1, 0, 1], [0.5, 0.5, 0.0, 1.0], np.ones((1, 4)), n_bins=2).tolist()
    [0.0]
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(p)
    b = calibration_bins(p, n_bins=n_bins, strategy=strategy)
    ind = sparse.csr_matrix((np.ones(n), (np.arange(n), b)), shape=(n, n_bins))
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    gap = np.abs(np.asarray((ind.T @ (w * y).T).T) - np.asarray((ind.T @ (w * p).T).T))
    return gap.sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)


def expected_calibration_error(
    y: ArrayLike, p: ArrayLike, *, n_bins: int = 10, strategy: str = "quantile"
) -> float:
    """Expected calibration error: mean |observed rate - mean prediction| over bins, by bin size.

    Parameters
    ----------
    y, p : array-like of shape (n,)
        Labels and predicted probabilities.
    n_bins : int, default 10
        Number of bins.
    strategy : {"quantile", "uniform"}, default "quantile"
        As in :func:`calibration_bins`.

    Returns
    -------
    float
        0 for an empty input.

    Examples
    --------
    >>> expected_calibration_error([0, 1, 1, 1], [0.5, 0.5, 1.0, 1.0], n_bins=2)
    0.0
    >>> expected_calibration_error([0, 0, 0, 1], [0.5, 0.5, 0.5, 0.5], n_bins=1)
    0.25
    """
    n = len(np.asarray(p))
    if n == 0:
        return 0.0
    return float(weighted_ece(y, p, np.ones((1, n)), n_bins=n_bins, strategy=strategy)[0])
