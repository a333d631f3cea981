"""The simulator folder: round trips, tamper detection, atomic saves, batched sampling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from simkit.errors import ArtifactError
from simkit.simulator import Simulator


@pytest.fixture
def saved(tiny_simulator, tmp_path) -> Path:
    return tiny_simulator.save(tmp_path / "sim")


def _rollout(sim: Simulator, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    users = sim.sample_users(64, rng=rng)
    state = sim.initial_state(users)
    out = []
    for _ in range(5):
        items = rng.integers(sim.n_items, size=state.n)
        click, watch, p = sim.sample_response(state, items, rng=rng)
        from simkit.state import transition

        transition(state, sim.catalogue.embedding, items, click, watch, eta=sim.eta)
        out += [click, watch, p, sim.continue_proba(state)]
    return out


def test_round_trip_gives_identical_predictions_and_samples(tiny_simulator, saved) -> None:
    loaded = Simulator.load(saved)
    for a, b in zip(_rollout(tiny_simulator, 0), _rollout(loaded, 0), strict=True):
        np.testing.assert_array_equal(a, b)
    new_a = tiny_simulator.sample_users(10, rng=np.random.default_rng(1), population="new")
    new_b = loaded.sample_users(10, rng=np.random.default_rng(1), population="new")
    np.testing.assert_array_equal(new_a.z0, new_b.z0)


def test_refuses_to_overwrite_unless_asked(tiny_simulator, saved) -> None:
    with pytest.raises(ArtifactError, match="already exists; refusing to overwrite"):
        tiny_simulator.save(saved)
    tiny_simulator.save(saved, overwrite=True)
    Simulator.load(saved)


@pytest.mark.parametrize(
    "name",
    ["click.txt", "watch.txt", "continue.txt", "items.parquet", "users.parquet", "arrays.npz"],
)
def test_a_changed_byte_in_any_file_is_caught(saved, name) -> None:
    path = saved / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    msg = f"{path} does not match the sha256 in the manifest"
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)


def test_a_missing_file_is_caught(saved) -> None:
    (saved / "watch.txt").unlink()
    with pytest.raises(ArtifactError, match=re.escape(f"{saved} is missing watch.txt")):
        Simulator.load(saved)


def test_a_newer_format_is_refused(saved) -> None:
    m = json.loads((saved / "manifest.json").read_text())
    m["format_version"] = 99
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="format version 99, but this simkit"):
        Simulator.load(saved)


def test_a_path_traversal_name_is_refused(saved) -> None:
    m = json.loads((saved / "manifest.json").read_text())
    m["files"]["../click.txt"] = m["files"].pop("click.txt")
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="must list exactly the files"):
        Simulator.load(saved)
    m["files"] = {("../" + k if k == "watch.txt" else k): v for k, v in m["files"].items()}
    m["files"]["click.txt"] = m["files"].pop("../click.txt")
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="must list exactly the files"):
        Simulator.load(saved)


def test_loading_a_missing_folder_says_so(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="does not exist or is not a folder"):
        Simulator.load(tmp_path / "nope")


def test_no_pickle_anywhere(saved) -> None:
    with np.load(saved / "arrays.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_an_interrupted_save_leaves_no_folder(tiny_simulator, tmp_path, monkeypatch) -> None:
    import simkit.simulator_io as io

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "_write_files", boom)
    target = tmp_path / "sim"
    with pytest.raises(KeyboardInterrupt):
        tiny_simulator.save(target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_batched_methods_shapes(tiny_simulator) -> None:
    sim = tiny_simulator
    rng = np.random.default_rng(0)
    state = sim.initial_state(sim.sample_users(7, rng=rng, population="new"))
    p = sim.click_proba(state, rng.integers(sim.n_items, size=(7, 4)))
    assert p.shape == (7, 4) and np.all((p > 0) & (p < 1))
    assert sim.continue_proba(state).shape == (7,)


def test_expected_watch_is_the_mean_of_sampled_watch(tiny_simulator) -> None:
    w = tiny_simulator.watch
    pred = np.array([2.0, 3.5, 4.5, 3.0])
    cap = np.array([np.nan, 60.0, 400.0, 5.0])
    draws = np.stack(
        [w.sample_from_prediction(pred, cap, rng=np.random.default_rng(s)) for s in range(4000)]
    )
    mean = w.mean_from_prediction(pred, cap, n_quantiles=512)
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4 * se + 0.01 * mean)
    assert np.all(draws <= np.where(np.isnan(cap), np.inf, cap))


def test_kaplan_meier_treats_completed_watches_as_censored() -> None:
    from simkit.models import kaplan_meier

    values = np.array([1.0, 2.0, 3.0, 4.0])
    censored = np.array([False, True, False, True])
    support, mass = kaplan_meier(values, censored)
    # S: 3/4 after 1; 2 censored; at 3 two at risk: S = 3/4 * 1/2; the rest lies beyond 4
    np.testing.assert_allclose(support, [1.0, 3.0, np.inf])
    np.testing.assert_allclose(mass, [0.25, 0.375, 0.375])
