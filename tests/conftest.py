"""Shared fixtures: generators, synthetic worlds with known truth, the bundled samples, a tiny simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simkit.logs import Logs, read_logs, split_logs
from simkit.synthetic import World, WorldConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The bundled ``data_samples/`` folder."""
    return SAMPLES


@pytest.fixture(scope="session")
def world() -> World:
    """The default synthetic world (seed 0)."""
    return World(WorldConfig(), rng=np.random.default_rng(0))


@pytest.fixture(scope="session")
def world_logs(world: World) -> tuple[Logs, Logs]:
    """About 200k rows of logs with truth columns, split by user into (train, held-out)."""
    frame = world.generate_logs(30000, rng=np.random.default_rng(100), truth=True)
    logs = read_logs(frame, items=world.items)
    return split_logs(logs, by="user", holdout=0.2, rng=np.random.default_rng(1))


@pytest.fixture(scope="session")
def small_logs() -> Logs:
    """A small synthetic log (about 20k rows) for fast tests."""
    w = World(WorldConfig(n_users=600, n_items=200), rng=np.random.default_rng(3))
    return read_logs(w.generate_logs(3000, rng=np.random.default_rng(4)), items=w.items)


@pytest.fixture(scope="session")
def tiny_simulator(small_logs: Logs):
    """A simulator with few trees, shared by tests that need one."""
    from simkit.fitters import FitConfig, fit_simulator

    return fit_simulator(small_logs, FitConfig(n_estimators=40), rng=np.random.default_rng(5))
