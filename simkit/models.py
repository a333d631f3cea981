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

__all__ = ["BinaryResponse", "WatchResponse", "predict_threads"]


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
    return booster.predict(x, num_threads=predict_threads(len(x)))


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

    Each residual remembers whether its row watched the item to the end (``completed``). Sampling
    draws a residual from the bin of the prediction; a completed draw watches the current item to
    its end, any other draw is kept only if it lies below the current item's duration (else it is
    drawn again), so the sample follows the fitted distribution *given* the cap instead of piling
    clipped mass onto it.
    """

    booster: lgb.Booster
    bin_edges: NDArray[np.float64]
    residuals: NDArray[np.float64]
    completed: NDArray[np.bool_]
    bin_offsets: NDArray[np.int64]

    def predict_log(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """Predicted ``log1p(watch seconds)`` for each row."""
        return _raw_predict(self.booster, x)

    def sample(
        self,
        x: NDArray[np.float32],
        cap: NDArray[np.float64],
        *,
        rng: np.random.Generator,
        max_redraws: int = 8,
    ) -> NDArray[np.float64]:
        """Sample watch seconds for clicked rows ``x`` with durations ``cap`` (NaN: no cap)."""
        pred = self.predict_log(x)
        return self.sample_from_prediction(pred, cap, rng=rng, max_redraws=max_redraws)

    def sample_from_prediction(
        self,
        pred: NDArray[np.float64],
        cap: NDArray[np.float64],
        *,
        rng: np.random.Generator,
        max_redraws: int = 8,
    ) -> NDArray[np.float64]:
        """Like :meth:`sample` from predictions already made."""
        n = len(pred)
        bins = np.searchsorted(self.bin_edges, pred)
        lo = self.bin_offsets[bins]
        size = self.bin_offsets[bins + 1] - lo
        cap = np.asarray(cap, dtype=np.float64)
        has_cap = np.isfinite(cap)
        out = np.empty(n)
        todo = np.arange(n)
        for attempt in range(max_redraws + 1):
            pick = lo[todo] + (rng.random(len(todo)) * size[todo]).astype(np.int64)
            value = np.expm1(pred[todo] + self.residuals[pick])
            done = self.completed[pick] & has_cap[todo]
            value = np.where(done, cap[todo], value)
            over = has_cap[todo] & ~done & (value > cap[todo])
            if attempt == max_redraws:
                value = np.where(over, cap[todo], value)
                over[:] = False
            out[todo[~over]] = value[~over]
            todo = todo[over]
            if len(todo) == 0:
                break
        return np.maximum(out, 0.0)
