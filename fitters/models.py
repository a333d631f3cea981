"""The three response models as scikit-learn style estimators over LightGBM.

Each estimator stores its hyper-parameters in ``__init__``, validates and fits in ``fit`` with early
stopping on held-out sessions (the ``groups`` argument), and exposes fitted attributes ending in
``_`` plus ``to_runtime()``, which returns the pickle-free runtime object of :mod:`simkit.models`.
Fits are deterministic: ``deterministic=True``, ``force_col_wise=True`` and a seed drawn from the
caller's generator give the same model text for the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from simkit.errors import LogError
from simkit.metrics import expected_calibration_error, log_loss
from simkit.models import BinaryResponse, WatchResponse, kaplan_meier

__all__ = [
    "ClickModel",
    "ContinuationModel",
    "WatchTimeModel",
    "expected_calibration_error",
    "lightgbm_params",
    "train_booster",
]


def lightgbm_params(
    *,
    objective: str,
    seed: int,
    learning_rate: float = 0.05,
    num_leaves: int = 31,
    min_data_in_leaf: int = 50,
    feature_fraction: float = 0.9,
    lambda_l2: float = 1.0,
    num_threads: int = 1,
) -> dict[str, Any]:
    """simkit's LightGBM recipe: the parameters of every booster it fits.

    Deterministic (``deterministic=True``, ``force_col_wise=True`` and ``seed``: the same data and
    seed give the same model text), quiet, with an explicit thread count (numpy's BLAS and
    LightGBM's OpenMP threads fighting over the same cores make a fit many times slower).

    Parameters
    ----------
    objective : str
        LightGBM objective, e.g. ``"binary"`` or ``"regression"``.
    seed : int
        LightGBM seed; draw it from the caller's generator.
    learning_rate, num_leaves, min_data_in_leaf, feature_fraction, lambda_l2 : optional
        Tree hyper-parameters.
    num_threads : int, default 1
        LightGBM threads.

    Returns
    -------
    dict
        Parameters for :func:`train_booster` (or ``lightgbm.train``).

    Examples
    --------
    >>> lightgbm_params(objective="binary", seed=0)["deterministic"]
    True
    """
    return {
        "objective": objective,
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": min_data_in_leaf,
        "feature_fraction": feature_fraction,
        "lambda_l2": lambda_l2,
        "num_threads": num_threads,
        "deterministic": True,
        "force_col_wise": True,
        "seed": seed,
        "verbosity": -1,
    }


def train_booster(
    params: dict[str, Any],
    x: NDArray[np.float32],
    y: NDArray,
    *,
    valid: NDArray[np.bool_] | None = None,
    n_rounds: int,
    early_stopping_rounds: int = 50,
    feature_names: list[str] | None = None,
    categorical: list[int] | None = None,
) -> lgb.Booster:
    """Train a LightGBM booster, early-stopped on the ``valid`` rows, cut at its best iteration.

    Parameters
    ----------
    params : dict
        From :func:`lightgbm_params`.
    x : numpy.ndarray of shape (n, n_features)
        Feature rows.
    y : numpy.ndarray of shape (n,)
        Targets.
    valid : numpy.ndarray of bool, shape (n,), optional
        Rows held out for early stopping (not trained on); none: all ``n_rounds`` rounds.
    n_rounds : int
        Most boosting rounds.
    early_stopping_rounds : int, default 50
        Stop after this many rounds without improvement on the ``valid`` rows.
    feature_names : list of str, optional
        Names stored in the model text.
    categorical : list of int, optional
        Columns LightGBM treats as categorical.

    Returns
    -------
    lightgbm.Booster
        With early stopping, a booster holding only the trees up to the best iteration.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((400, 2)).astype(np.float32)
    >>> y = (x[:, 0] > 0.5).astype(float)
    >>> params = lightgbm_params(objective="binary", seed=1, min_data_in_leaf=20)
    >>> booster = train_booster(params, x, y, valid=np.arange(400) % 5 == 0, n_rounds=50)
    >>> bool(booster.predict(np.array([[0.9, 0.5]], np.float32))[0] > 0.5)
    True
    """
    held = np.zeros(len(y), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    train = lgb.Dataset(
        x[~held],
        y[~held],
        feature_name=feature_names or "auto",
        categorical_feature=categorical or "auto",
        free_raw_data=True,
        params={"verbosity": -1},
    )
    callbacks: list[Callable[..., Any]] = []
    valid_sets: list[lgb.Dataset] = []
    if held.any():
        valid_sets = [lgb.Dataset(x[held], y[held], reference=train)]
        callbacks = [lgb.early_stopping(early_stopping_rounds, verbose=False)]
    booster = lgb.train(
        params, train, num_boost_round=n_rounds, valid_sets=valid_sets, callbacks=callbacks
    )
    if held.any():
        best = booster.best_iteration or booster.current_iteration()
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return booster


def _holdout_mask(groups: NDArray, share: float, rng: np.random.Generator) -> NDArray[np.bool_]:
    uniq = np.unique(groups)
    n_val = max(1, int(round(share * len(uniq)))) if len(uniq) > 1 else 0
    val = rng.choice(uniq, size=n_val, replace=False) if n_val else uniq[:0]
    return np.isin(groups, val)


class _LightGBMEstimator:
    """Shared LightGBM plumbing: parameters, early stopping on held-out groups, determinism."""

    objective = "binary"

    def __init__(
        self,
        *,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        n_estimators: int = 2000,
        early_stopping_rounds: int = 50,
        validation_share: float = 0.1,
        num_threads: int = 1,
        random_state: int | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_share = validation_share
        self.num_threads = num_threads
        self.random_state = random_state

    def lgb_params(self, seed: int) -> dict[str, Any]:
        """The LightGBM parameters this estimator trains with (:func:`lightgbm_params`)."""
        return lightgbm_params(
            objective=self.objective,
            seed=seed,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_data_in_leaf=self.min_child_samples,
            num_threads=self.num_threads,
        )

    def _train(
        self,
        x: NDArray[np.float32],
        y: NDArray,
        groups: NDArray,
        categorical: list[int],
        feature_names: list[str] | None,
    ) -> tuple[lgb.Booster, NDArray[np.bool_]]:
        rng = np.random.default_rng(self.random_state)
        val = _holdout_mask(np.asarray(groups), self.validation_share, rng)
        seed = int(rng.integers(2**31 - 1))
        names = feature_names or [f"f{j}" for j in range(x.shape[1])]
        booster = train_booster(
            self.lgb_params(seed),
            x,
            y,
            valid=val,
            n_rounds=self.n_estimators,
            early_stopping_rounds=self.early_stopping_rounds,
            feature_names=names,
            categorical=categorical,
        )
        return booster, val


MIN_CALIBRATION_EVENTS = 100
"""Fewest positives and fewest negatives *each half* of the validation rows must hold before a
recalibration map is fitted (on one half) and judged (on the other). The map's intercept is known
to about ``1 / sqrt(k)`` in logit units from ``k`` events of the rarer kind: at 100 that is +-10%
of the mean prediction, the tolerance of the session-level gates; at the 3 clicks of a 0.4% click
rate it is +-58%, and a map fitted there halved a model's mean prediction."""


def _platt_knots(
    p: NDArray[np.float64],
    y: NDArray[np.float64],
    min_gain: float,
    *,
    judge_p: NDArray[np.float64] | None = None,
    judge_y: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Logistic recalibration ``sigmoid(a logit(p) + b)`` of held-out predictions, as knots.

    Two parameters cannot chase the noise of a validation set the way an isotonic map does. The
    map is fitted on ``(p, y)`` and kept only when it lowers the log loss of *other* rows
    (``judge_p``, ``judge_y``; the same rows when not given) by more than ``min_gain``
    (relative). Returned as a dense knot grid so that the runtime applies it by interpolation.
    """
    logit = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))
    lr = LogisticRegression(C=1e6, max_iter=200).fit(logit[:, None], y)
    jp = p if judge_p is None else judge_p
    jy = y if judge_y is None else judge_y
    grid = np.unique(np.r_[np.quantile(np.r_[p, jp], np.linspace(0, 1, 201)), 1e-6, 1 - 1e-6])
    gl = np.log(grid / (1 - grid))
    mapped = 1.0 / (1.0 + np.exp(-(lr.coef_[0, 0] * gl + lr.intercept_[0])))
    before = log_loss(jy, jp)
    after = log_loss(jy, np.interp(jp, grid, mapped))
    if before - after <= min_gain * before:
        return np.zeros(0), np.zeros(0)
    return grid, mapped


def single_leaf(booster: lgb.Booster) -> bool:
    """Whether every tree of ``booster`` is a single leaf (the model is a constant)."""
    import re

    leaves = re.findall(r"^num_leaves=(\d+)$", booster.model_to_string(), flags=re.M)
    return not any(int(n) > 1 for n in leaves)


class _BinaryModel(_LightGBMEstimator):
    """Binary classifier with a logistic recalibration when its held-out calibration is off."""

    def __init__(
        self,
        *,
        calibrate: str = "auto",
        ece_tolerance: float = 0.003,
        min_gain: float = 1e-4,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.calibrate = calibrate
        self.ece_tolerance = ece_tolerance
        self.min_gain = min_gain

    def fit(
        self,
        x: NDArray[np.float32],
        y: NDArray,
        *,
        groups: NDArray,
        categorical: list[int] | None = None,
        feature_names: list[str] | None = None,
    ) -> _BinaryModel:
        """Fit on rows ``x`` with 0/1 labels ``y``; ``groups`` (sessions) decide early stopping."""
        y = np.asarray(y, dtype=np.float64)
        if len(y) == 0 or y.min() == y.max():
            raise LogError(
                f"{type(self).__name__} needs both outcomes in its labels; got {len(y)} rows, all "
                f"{'empty' if len(y) == 0 else int(y[0])}. Provide logs with clicks and non-clicks "
                "(and sessions of more than one impression)."
            )
        if self.calibrate not in ("auto", "always", "never"):
            raise ValueError(
                f"calibrate must be 'auto', 'always' or 'never'; got {self.calibrate!r}"
            )
        self.booster_, val = self._train(x, y, groups, categorical or [], feature_names)
        name = type(self).__name__
        n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
        if single_leaf(self.booster_):
            raise LogError(
                f"{name} learned nothing: every tree is a single leaf, so it would predict one "
                f"constant ({len(y):,} rows: {n_pos:,} positive, {n_neg:,} negative; "
                f"min_child_samples={self.min_child_samples}). Provide more logs."
            )
        self.calib_x_ = np.zeros(0)
        self.calib_y_ = np.zeros(0)
        self.validation_ece_ = float("nan")
        self.calibration_note_ = "no validation rows"
        if val.any():
            p_val = np.asarray(
                self.booster_.predict(x[val], num_threads=self.num_threads), dtype=np.float64
            )
            y_val = y[val]
            self.validation_ece_ = expected_calibration_error(y_val, p_val)
            if self.calibrate == "always" or (
                self.calibrate == "auto" and self.validation_ece_ > self.ece_tolerance
            ):
                self._recalibrate(p_val, y_val, np.asarray(groups)[val])
            else:
                self.calibration_note_ = "not needed"
        return self

    def _recalibrate(self, p: NDArray[np.float64], y: NDArray[np.float64], groups: NDArray) -> None:
        """Fit the map on one half of the validation groups, keep it if it helps the other."""
        rng = np.random.default_rng(None if self.random_state is None else self.random_state + 1)
        uniq = np.unique(groups)
        half = np.isin(groups, uniq[rng.permutation(len(uniq)) < len(uniq) // 2])
        counts = [(int(y[h].sum()), int((1 - y[h]).sum())) for h in (half, ~half)]
        fewest = min(min(c) for c in counts)
        if fewest < MIN_CALIBRATION_EVENTS:
            self.calibration_note_ = (
                f"not recalibrated: the validation halves hold {counts[0][0]}/{counts[1][0]} "
                f"positives and {counts[0][1]}/{counts[1][1]} negatives (at least "
                f"{MIN_CALIBRATION_EVENTS} of each per half are needed)"
            )
            return
        self.calib_x_, self.calib_y_ = _platt_knots(
            p[half], y[half], self.min_gain, judge_p=p[~half], judge_y=y[~half]
        )
        self.calibration_note_ = "recalibrated" if len(self.calib_x_) else "map did not help"

    def to_runtime(self) -> BinaryResponse:
        """The pickle-free runtime model."""
        return BinaryResponse(self.booster_, self.calib_x_, self.calib_y_)

    def predict_proba(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """Calibrated positive-class probability of each row."""
        return self.to_runtime().proba(x)


class ClickModel(_BinaryModel):
    """Click probability given state and item features (LightGBM binary, calibrated)."""


class ContinuationModel(_BinaryModel):
    """Probability that another impression follows, on the state after a transition."""


class WatchTimeModel(_LightGBMEstimator):
    """Watch time given a click: LightGBM on ``log1p(watch)`` plus residuals per prediction bin.

    Rows that watched the item to its end (``watch >= duration``) are right-censored; each bin's
    residual distribution is their Kaplan-Meier estimate (see :class:`simkit.models.WatchResponse`).

    Parameters
    ----------
    n_bins
        Quantile bins of the prediction that residuals are stored in.
    max_residuals_per_bin
        Residuals kept per bin (a seeded subsample beyond that).
    """

    objective = "regression"

    def __init__(self, *, n_bins: int = 10, max_residuals_per_bin: int = 5000, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_bins = n_bins
        self.max_residuals_per_bin = max_residuals_per_bin

    def fit(
        self,
        x: NDArray[np.float32],
        watch: NDArray[np.float64],
        *,
        groups: NDArray,
        duration: NDArray[np.float64] | None = None,
        categorical: list[int] | None = None,
        feature_names: list[str] | None = None,
    ) -> WatchTimeModel:
        """Fit on clicked rows ``x`` with watch seconds ``watch`` (and item ``duration``, if known)."""
        watch = np.asarray(watch, dtype=np.float64)
        if len(watch) < 20:
            raise LogError(
                f"WatchTimeModel needs at least 20 clicked rows; got {len(watch)}. Provide logs with "
                "more clicks."
            )
        y = np.log1p(watch)
        self.booster_, _ = self._train(x, y, groups, categorical or [], feature_names)
        pred = self.booster_.predict(x, num_threads=self.num_threads)
        resid = y - pred
        completed = np.zeros(len(watch), dtype=bool)
        if duration is not None:
            dur = np.asarray(duration, dtype=np.float64)
            completed = np.isfinite(dur) & (watch >= dur * 0.999)
        edges = np.unique(np.quantile(pred, np.linspace(0, 1, self.n_bins + 1)[1:-1]))
        bins = np.searchsorted(edges, pred)
        rng = np.random.default_rng(self.random_state)
        support, cumulative = [], []
        for b in range(len(edges) + 1):
            idx = np.flatnonzero(bins == b)
            if len(idx) > self.max_residuals_per_bin:
                idx = np.sort(rng.choice(idx, self.max_residuals_per_bin, replace=False))
            values, mass = kaplan_meier(resid[idx], completed[idx])
            support.append(values)
            cum = np.minimum(np.cumsum(mass), 1.0)
            cum[-1] = 1.0
            cumulative.append(b + cum)
        self.bin_edges_ = edges
        self.residuals_ = np.concatenate(support)
        self.cumulative_ = np.concatenate(cumulative)
        self.completed_share_ = float(completed.mean())
        return self

    def to_runtime(self) -> WatchResponse:
        """The pickle-free runtime model."""
        return WatchResponse(
            booster=self.booster_,
            bin_edges=self.bin_edges_,
            residuals=self.residuals_,
            cumulative=self.cumulative_,
        )
