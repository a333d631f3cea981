"""Cross-fitting: out-of-fold reward-model predictions for the DR-type off-policy estimators.

A reward model fitted on the same logs it corrects overfits their noise and biases DR; fitting it on
the other folds (grouped by user or session) and predicting each held-out fold removes that
dependence. Any scikit-learn-style model plugs in, including the fitted click and watch models of
:mod:`simkit.fitters`.

References
----------
.. [1] Chernozhukov, Chetverikov, Demirer, Duflo, Hansen, Newey, Robins. "Double/debiased machine
   learning for treatment and structural parameters." The Econometrics Journal 2018.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simkit.errors import ConfigError, LogError

__all__ = ["cross_fit_predict"]


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
