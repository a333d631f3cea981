"""Fitting a simulator from logs: click, watch-time and continuation models and embeddings.

Installed as ``simkit.fitters``; import it under that name. The log replay the fit runs on lives in
:mod:`simkit.replay` (``prepare_logs``, ``replay_with``), shared with validation.
"""

from __future__ import annotations

from simkit.fitters.fit import (
    FitConfig,
    FitResult,
    fit_simulator,
    fit_simulator_with_rows,
    heldout_metrics,
)
from simkit.fitters.models import (
    ClickModel,
    ContinuationModel,
    WatchTimeModel,
    expected_calibration_error,
)

__all__ = [
    "ClickModel",
    "ContinuationModel",
    "FitConfig",
    "FitResult",
    "WatchTimeModel",
    "expected_calibration_error",
    "fit_simulator",
    "fit_simulator_with_rows",
    "heldout_metrics",
]
