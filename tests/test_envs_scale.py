"""Large catalogues and the single env: shown memory, clustered interest sampler, single-row predict,
and same-seed trajectories against the batched path and a recorded run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from _env_fixtures import env_simulator_dir

from simkit.candidates import CandidateSampler, ItemClusters
from simkit.envs import SessionEnv, SessionVectorEnv
from simkit.models import _raw_predict
from simkit.shown import ShownMemory
from simkit.simulator import Simulator

RECORD = Path(__file__).with_name("data") / "session_trajectory.json"


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return env_simulator_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def sim(sim_dir: Path) -> Simulator:
    return Simulator.load(sim_dir)


# ---------------------------------------------------------------- shown memory


def test_shown_memory_counts_like_the_dense_matrix() -> None:
    rng = np.random.default_rng(0)
    n, n_items = 32, 400
    memory, dense = ShownMemory(n, n_items), np.zeros((n, n_items), np.int16)
    rows = np.arange(n)
    for t in range(120):
        items = rng.integers(n_items, size=n)
        memory[rows, items] += 1
        dense[rows, items] += 1
        if t % 4 == 0:  # slates: several items per session in one update
            r, it = np.repeat(rows, 3), rng.integers(n_items, size=3 * n)
            memory[r, it] += 1
            dense[r, it] += 1
        query = rng.integers(n_items, size=(n, 20))
        np.testing.assert_array_equal(memory.count(query), np.take_along_axis(dense, query, 1))
    np.testing.assert_array_equal(memory.to_dense(), dense)
    along = np.take_along_axis(memory, query, axis=1)  # type: ignore[arg-type,var-annotated]
    np.testing.assert_array_equal(along, memory.count(query))
    some = np.array([2, 9])
    np.testing.assert_array_equal(memory[some].to_dense(), dense[some])
    memory[some] = ShownMemory(2, n_items)  # autoreset: fresh sessions in rows 2 and 9
    dense[some] = 0
    np.testing.assert_array_equal(memory.to_dense(), dense)
    assert memory.sum() == int(dense.sum())


def test_shown_memory_is_sized_by_session_length_not_catalogue() -> None:
    memory = ShownMemory(1024, 10**6)
    start = memory.nbytes
    rng = np.random.default_rng(1)
    for _ in range(200):
        memory[np.arange(1024), rng.integers(10**6, size=1024)] += 1
    assert start < 200_000  # 8 slots per session
    assert memory.capacity == 512  # 200 distinct items at load <= 1/2
    assert memory.nbytes < 6 * 2**20  # the dense int16 matrix would be 2 GB


def test_env_state_uses_the_shown_memory(sim: Simulator) -> None:
    env = SessionEnv(sim)
    env.reset(seed=0)
    assert isinstance(env._state.shown, ShownMemory)
    _, _, _, _, info = env.step(3)
    shown_row = env.core.sim.catalogue.rows(info["item_ids"])
    assert env._state.shown.count(shown_row[None]).tolist() == [[1]]


# ---------------------------------------------------------------- clustered interest sampler


def _race(logits: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The exact draw: K without replacement in proportion to exp(logits) (exponential race)."""
    keys = logits - np.log(np.random.default_rng(seed).standard_exponential(logits.shape))
    return np.argpartition(-keys, k - 1, axis=1)[:, :k]


def _inclusion(cands: np.ndarray, n_items: int) -> np.ndarray:
    return np.bincount(cands.ravel(), minlength=n_items) / cands.size


def test_clustered_interest_sampler_matches_the_exact_distribution(sim: Simulator) -> None:
    env = SessionVectorEnv(sim, num_envs=1, sampler="interest", n_candidates=20)
    exact = env.core.sampler
    state = env.core.start(3000, np.random.default_rng(0))
    clustered = CandidateSampler(
        exact.embedding,
        sim.catalogue.log_popularity[: sim.n_items],
        20,
        "interest",
        interest_scale=exact.interest_scale,
        interest_method="clustered",
    )
    assert clustered.clusters is not None and clustered.clusters.n >= 2
    logits = exact.item_dots(state) / exact.interest_scale
    reference = _inclusion(_race(logits, 20, seed=1), sim.n_items)
    floor = 0.5 * np.abs(_inclusion(_race(logits, 20, seed=2), sim.n_items) - reference).sum()
    cands = clustered.draw_candidates(state, np.random.default_rng(3))
    assert all(len(set(row)) == 20 for row in cands.tolist())
    tv = 0.5 * np.abs(_inclusion(cands, sim.n_items) - reference).sum()
    # inclusion frequencies within 1.5x the exact sampler's own seed-to-seed distance
    assert tv < 1.5 * floor, (tv, floor)
    # and per user: the chosen items are as aligned with each user's interest as exact draws
    chosen = np.take_along_axis(logits, cands, axis=1).mean()
    exact_chosen = np.take_along_axis(logits, _race(logits, 20, seed=4), axis=1).mean()
    uniform_chosen = logits.mean()
    assert abs(chosen - exact_chosen) < 0.15 * (exact_chosen - uniform_chosen)


def test_item_clusters_partition_the_catalogue() -> None:
    emb = np.random.default_rng(0).standard_normal((5000, 8))
    cl = ItemClusters(emb)
    assert np.array_equal(np.sort(cl.order), np.arange(5000))
    assert cl.size.sum() == 5000 and (cl.size > 0).all()
    members = cl.order[cl.start[0] : cl.start[0] + cl.size[0]]
    np.testing.assert_allclose(cl.mean[0], emb[members].mean(axis=0))


def test_auto_method_is_exact_on_small_catalogues(sim: Simulator) -> None:
    env = SessionVectorEnv(sim, num_envs=1, sampler="interest")
    assert env.core.sampler.clusters is None


# ---------------------------------------------------------------- single-row predictions


def test_single_row_predictions_equal_booster_predict(sim: Simulator) -> None:
    rng = np.random.default_rng(0)
    for model in (sim.click, sim.watch, sim.cont):
        assert model is not None
        booster = model.booster
        x = rng.normal(size=(50, booster.num_feature())).astype(np.float32)
        x[::5, 1] = np.nan
        batch = booster.predict(x, num_threads=1)
        rows = np.concatenate([_raw_predict(booster, x[i : i + 1]) for i in range(len(x))])
        np.testing.assert_array_equal(rows, batch)


# ---------------------------------------------------------------- trajectories


def _trajectory(env: SessionEnv, kwargs_s: int, n_steps: int = 300) -> dict[str, list]:
    rng = np.random.default_rng(5)
    env.reset(seed=21)
    rec: dict[str, list] = {"candidates": [], "item_ids": [], "click": [], "watch": [], "obs": []}
    rec["terminated"] = []
    for _ in range(n_steps):
        a = rng.integers(50, size=kwargs_s) if kwargs_s > 1 else int(rng.integers(50))
        obs, _, term, _, info = env.step(a)
        rec["candidates"].append(int(np.asarray(info["candidate_item_ids"]).astype(np.int64).sum()))
        rec["item_ids"].append(np.asarray(info["item_ids"]).astype(np.int64).tolist())
        rec["click"].append(np.asarray(info["click"]).astype(int).tolist())
        rec["watch"].append([float(w) for w in np.asarray(info["watch_time"])])
        rec["terminated"].append(bool(term))
        rec["obs"].append(
            [
                float(obs["user"].astype(np.float64).sum()),
                float(obs["candidates"].astype(np.float64).sum()),
            ]
        )
        if term:
            env.reset()
    return rec


def _model_digest(sim_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("click.txt", "watch.txt", "continue.txt"):
        h.update((sim_dir / name).read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("single", {}), ("slate_interest", {"slate_size": 3, "sampler": "interest"})],
)
def test_single_env_reproduces_the_recorded_trajectory(
    sim_dir: Path, name: str, kwargs: dict
) -> None:
    record = json.loads(RECORD.read_text())
    if record["model_sha256"] != _model_digest(sim_dir):
        pytest.skip(
            "the fixture simulator's models differ from the recorded ones (fitting changed); "
            "re-record tests/data/session_trajectory.json"
        )
    got = _trajectory(SessionEnv(sim_dir, **kwargs), kwargs.get("slate_size", 1))
    assert got == record[name]
