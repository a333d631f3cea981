"""A small fitted simulator shared by the environment tests (built once per test session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

_CACHE: dict[str, Path] = {}


def env_simulator_dir(factory: pytest.TempPathFactory) -> Path:
    """Synthetic logs (3000 sessions, seed 0) fitted with 50 trees per model, saved as a folder."""
    if "dir" not in _CACHE:
        from simkit.fitters import FitConfig, fit_simulator
        from simkit.logs import read_logs
        from simkit.synthetic import write_samples

        root = factory.mktemp("env_simulator")
        paths = write_samples(root / "logs", n_sessions=3000, rng=np.random.default_rng(0))
        logs = read_logs(paths["logs.parquet"], items=paths["items.parquet"])
        sim = fit_simulator(logs, FitConfig(n_estimators=50), rng=np.random.default_rng(0))
        _CACHE["dir"] = sim.save(root / "sim")
    return _CACHE["dir"]
