"""Fitting a simulator from logs: click, watch-time and continuation models and embeddings.

Installed as ``simkit.fitters``; import it under that name.
"""

from __future__ import annotations

from simkit.fitters.fit import (
    FitConfig,
    PreparedLogs,
    fit_simulator,
    heldout_metrics,
    prepare_logs,
    replay_with,
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
    "PreparedLogs",
    "WatchTimeModel",
    "expected_calibration_error",
    "fit_simulator",
    "heldout_metrics",
    "prepare_logs",
    "replay_with",
]
