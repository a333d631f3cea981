"""Runtime response models: fitted LightGBM boosters plus what a simulator needs to sample from them.

These objects are built by :mod:`simkit.fitters` and saved / loaded by :mod:`simkit.simulator`;
they hold no training code. Boosters are kept as LightGBM text models; calibration maps and
residual pools are plain arrays, so nothing here needs pickle.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

__all__ = ["BinaryResponse", "WatchResponse", "kaplan_meier", "predict_threads"]


PREDICT_THREADS = 1


def predict_threads(n_rows: int) -> int:
    """LightGBM threads for a predict call.

    One: small batches are dominated by thread start-up, and on shared cores OpenMP threads that
    wait on each other made predictions several times slower (see ``benchmarks/env.py``). Set
    ``simkit.models.PREDICT_THREADS`` to use more for large offline batches on a quiet machine.
    """
    return 1 if n_rows < 4096 else PREDICT_THREADS


def _raw_predict(booster: lgb.Booster, x: NDArray[np.float32]) -> NDArray[np.float64]:
    if len(x) == 0:
        return np.zeros(0)
    if len(x) == 1:
        return np.asarray(_single_row(booster).predict(x), dtype=np.float64)
    return np.asarray(booster.predict(x, num_threads=predict_threads(len(x))), dtype=np.float64)


class _SingleRowPredictor:
    """LightGBM's fast single-row prediction (``LGBM_BoosterPredictForMatSingleRowFast``).

    The configuration (iterations, feature count, one thread) is prepared once per booster; a call
    then skips ``Booster.predict``'s per-call set-up. The outputs equal ``Booster.predict``'s with
    the same iterations (the best iteration, else all), as LightGBM computes both with one code path.
    """

    def __init__(self, booster: lgb.Booster) -> None:
        import ctypes

        from lightgbm.basic import _LIB, _c_str, _safe_call

        self.n_features = booster.num_feature()
        handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL: probabilities for binary models
                ctypes.c_int(0),
                ctypes.c_int(booster.best_iteration),  # <= 0: every iteration, as predict()
                ctypes.c_int(0),  # C_API_DTYPE_FLOAT32
                ctypes.c_int32(self.n_features),
                _c_str("num_threads=1"),
                ctypes.byref(handle),
            )
        )
        self._handle = handle
        self._out = np.zeros(1)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._len = ctypes.c_int64(0)
        self._len_ref = ctypes.byref(self._len)
        self._call = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        self._check = _safe_call
        self._free = _LIB.LGBM_FastConfigFree
        self._void_p = ctypes.c_void_p

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        row = np.ascontiguousarray(x, dtype=np.float32)
        if row.size != self.n_features:
            raise ValueError(
                f"The model expects {self.n_features} features per row; got {row.size}."
            )
        data = self._void_p(row.ctypes.data)
        self._check(self._call(self._handle, data, self._len_ref, self._out_ptr))
        return self._out.copy()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            self._free(handle)


def _single_row(booster: lgb.Booster) -> _SingleRowPredictor:
    """The booster's single-row predictor, made on first use and kept on the booster."""
    fast = booster.__dict__.get("_simkit_single_row")
    if fast is None:
        fast = _SingleRowPredictor(booster)
        booster.__dict__["_simkit_single_row"] = fast
    return fast


@dataclass
class BinaryResponse:
    """A calibrated binary classifier: booster probabilities, then an optional isotonic map.

    Attributes
    ----------
    booster
        LightGBM binary model.
    calib_x, calib_y
        Isotonic calibration knots (empty arrays when the booster was calibrated already).
    """

    booster: lgb.Booster
    calib_x: NDArray[np.float64]
    calib_y: NDArray[np.float64]

    def proba(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """Probability of the positive class for each row of ``x``."""
        p = _raw_predict(self.booster, x)
        if len(self.calib_x):
            p = np.interp(p, self.calib_x, self.calib_y)
        return np.clip(p, 1e-6, 1 - 1e-6)


@dataclass
class WatchResponse:
    """Watch time given a click: a regressor on ``log1p(watch)`` plus residuals by prediction bin.

    A row that watched its item to the end is right-censored: the user would have watched longer
    had the item been longer. The residual distribution of each bin is therefore the Kaplan-Meier
    estimate over its rows (completed rows count as censored), stored as support points with
    cumulative probabilities; mass beyond the largest observed residual is an infinite residual.
    Sampling draws a residual ``r`` from the bin of the prediction and returns
    ``min(expm1(pred + r), duration)``: the fitted distribution given the cap, with no completion
    of a short item turned into a full watch of a long one, and nothing censored twice.

    Attributes
    ----------
    booster
        LightGBM regressor on ``log1p(watch)``.
    bin_edges
        Edges of the prediction bins (``n_bins - 1`` values).
    residuals
        Support of each bin's residual distribution, bins one after another (``inf`` for the tail).
    cumulative
        ``bin + cumulative probability`` at each support point, increasing over the whole array,
        so one ``searchsorted`` draws for rows of every bin at once.
    """

    booster: lgb.Booster
    bin_edges: NDArray[np.float64]
    residuals: NDArray[np.float64]
    cumulative: NDArray[np.float64]

    def predict_log(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """Predicted ``log1p(watch seconds)`` for each row."""
        return _raw_predict(self.booster, x)

    def sample(
        self, x: NDArray[np.float32], cap: NDArray[np.float64], *, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """Sample watch seconds for clicked rows ``x`` with durations ``cap`` (NaN: no cap)."""
        return self.sample_from_prediction(self.predict_log(x), cap, rng=rng)

    def sample_from_prediction(
        self, pred: NDArray[np.float64], cap: NDArray[np.float64], *, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """Like :meth:`sample` from predictions already made."""
        bins = np.searchsorted(self.bin_edges, pred)
        pick = np.searchsorted(self.cumulative, bins + rng.random(len(pred)), side="right")
        pick = np.minimum(pick, len(self.residuals) - 1)
        resid = self.residuals[pick]
        finite_max = self._finite_max()
        cap = np.asarray(cap, dtype=np.float64)
        uncapped = ~np.isfinite(cap)
        # the tail beyond every observed residual only exists where watching was capped
        resid = np.where(np.isinf(resid) & uncapped, finite_max[bins], resid)
        with np.errstate(over="ignore"):
            value = np.expm1(pred + resid)
        value = np.where(uncapped, value, np.minimum(value, cap))
        return np.maximum(value, 0.0)

    def quantile_values(
        self, pred: NDArray[np.float64], cap: NDArray[np.float64], *, n_quantiles: int = 64
    ) -> NDArray[np.float64]:
        """Watch seconds at ``n_quantiles`` equal-mass quantiles of what :meth:`sample` draws.

        Returns an array of shape ``pred.shape + (n_quantiles,)``; its mean over the last axis is
        the expected watch, exact as ``n_quantiles`` grows.
        """
        pred = np.asarray(pred, dtype=np.float64)
        shape = pred.shape
        pred = pred.ravel()
        cap = np.broadcast_to(np.asarray(cap, dtype=np.float64), shape).ravel()
        bins = np.searchsorted(self.bin_edges, pred)
        levels = (np.arange(n_quantiles) + 0.5) / n_quantiles
        n_bins = len(self.bin_edges) + 1
        grid = np.searchsorted(self.cumulative, np.arange(n_bins)[:, None] + levels, side="right")
        table = self.residuals[np.minimum(grid, len(self.residuals) - 1)]  # (n_bins, Q)
        finite_max = self._finite_max()
        uncapped = ~np.isfinite(cap)
        resid = table[bins]
        resid = np.where(np.isinf(resid) & uncapped[:, None], finite_max[bins][:, None], resid)
        with np.errstate(over="ignore"):
            value = np.expm1(pred[:, None] + resid)
        value = np.where(uncapped[:, None], value, np.minimum(value, cap[:, None]))
        return np.maximum(value, 0.0).reshape(*shape, n_quantiles)

    def mean_from_prediction(
        self, pred: NDArray[np.float64], cap: NDArray[np.float64], *, n_quantiles: int = 64
    ) -> NDArray[np.float64]:
        """Expected watch seconds given a click: the mean of what :meth:`sample` draws."""
        return self.quantile_values(pred, cap, n_quantiles=n_quantiles).mean(axis=-1)

    def share_above(
        self,
        pred: NDArray[np.float64],
        cap: NDArray[np.float64],
        threshold: float,
        *,
        n_quantiles: int = 64,
    ) -> NDArray[np.float64]:
        """Probability that the watch exceeds ``threshold`` seconds given a click."""
        values = self.quantile_values(pred, cap, n_quantiles=n_quantiles)
        return (values > threshold).mean(axis=-1)

    def _finite_max(self) -> NDArray[np.float64]:
        cached = self.__dict__.get("_finite_max_cache")
        if cached is not None:
            return cached
        n_bins = len(self.bin_edges) + 1
        bin_of = np.minimum(np.floor(self.cumulative - 1e-12).astype(np.int64), n_bins - 1)
        finite = np.isfinite(self.residuals)
        out = np.full(n_bins, -np.inf)
        np.maximum.at(out, bin_of[finite], self.residuals[finite])
        # depends only on the fitted arrays: computed once (it was 30% of a one-session step)
        result = np.where(np.isfinite(out), out, 0.0)
        self.__dict__["_finite_max_cache"] = result
        return result


def kaplan_meier(
    values: NDArray[np.float64], censored: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Kaplan-Meier distribution of right-censored ``values``: (support, probability mass).

    The mass left beyond the largest uncensored value (when the largest values are censored) is
    put on ``+inf``.
    """
    order = np.lexsort((censored, values))  # events before censorings at ties
    v, c = values[order], censored[order]
    at_risk = len(v) - np.arange(len(v))
    survival = np.cumprod(1.0 - (~c) / at_risk)
    before = np.r_[1.0, survival[:-1]]
    mass = before - survival
    event = ~c
    support, probs = v[event], mass[event]
    tail = survival[-1] if len(survival) else 1.0
    if tail > 1e-12:
        support, probs = np.r_[support, np.inf], np.r_[probs, tail]
    return support, probs
