"""REINFORCE's decision records from a user's logs (simkit.agents.from_logs): cheap checks.

The acceptance runs (learning from the sample logs, judged in the true world) are slow tests in
tests/test_agents_world.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from simkit.agents.base import discounted_returns
from simkit.agents.from_logs import (
    candidate_propensity,
    decisions_from_logs,
    sample_candidates,
    slate_size_of,
)
from simkit.errors import ConfigError, LogError
from simkit.logs import Logs, read_logs
from simkit.observation import ObservationLayout
from simkit.replay import replay_with


@pytest.fixture(scope="module")
def few_logs(small_logs: Logs) -> Logs:
    """The first 150 sessions of the small synthetic log."""
    frame = small_logs.frame
    keep = frame["session_id"].isin(frame["session_id"].unique()[:150])
    return read_logs(frame[keep].reset_index(drop=True), items=small_logs.items)


def test_candidates_hold_the_logged_item_once_among_uniform_others() -> None:
    rng = np.random.default_rng(0)
    n, n_items, k = 40_000, 12, 4
    logged = rng.integers(n_items, size=n)
    cands, action = sample_candidates(logged, n_items, k, rng=rng)
    assert np.array_equal(cands[np.arange(n), action], logged)
    srt = np.sort(cands, axis=1)
    assert (srt[:, 1:] != srt[:, :-1]).all(), "candidates must be distinct"
    assert ((cands >= 0) & (cands < n_items)).all()
    # the logged item's column is uniform, and the others are uniform over the rest
    assert np.abs(np.bincount(action, minlength=k) / n - 1 / k).max() < 0.01
    rows = logged == 5
    others = cands[rows][cands[rows] != 5]
    freq = np.bincount(others, minlength=n_items) / others.size
    assert freq[5] == 0
    assert np.abs(np.delete(freq, 5) - 1 / (n_items - 1)).max() < 0.01
    # dense path (k close to the catalogue) gives the same guarantees
    cands, action = sample_candidates(logged[:500], n_items, 11, rng=rng)
    assert np.array_equal(cands[np.arange(500), action], logged[:500])
    assert (np.diff(np.sort(cands, axis=1), axis=1) > 0).all()
    with pytest.raises(ConfigError, match=r"n_candidates must lie in \[1, 12\]"):
        sample_candidates(logged, n_items, 13, rng=rng)


def test_candidate_propensity_is_the_logged_choice_among_the_candidates() -> None:
    b = np.array([1e-4, 0.01, 0.3, 1.0])
    n_items, k = 500, 20
    got = candidate_propensity(b, k, n_items)
    assert np.allclose(got, b / (b + (1 - b) * (k - 1) / (n_items - 1)))
    assert ((got > 0) & (got <= 1)).all() and got[-1] == 1.0
    assert np.allclose(candidate_propensity(b, n_items, n_items), b)  # all items offered
    assert abs(got[0] / (b[0] * (n_items - 1) / (k - 1)) - 1) < 0.01  # small b
    # Monte Carlo: beta(a) / sum over the candidates of beta, averaged over uniform others
    rng = np.random.default_rng(1)
    beta = rng.dirichlet(np.full(n_items, 0.3))
    a = int(np.argmax(beta))
    others = np.array(
        [rng.choice(np.delete(np.arange(n_items), a), k - 1, False) for _ in range(4000)]
    )
    exact = beta[a] / (beta[a] + beta[others].sum(axis=1))
    approx = candidate_propensity(beta[a : a + 1], k, n_items)[0]
    assert abs(approx / exact.mean() - 1) < 0.1


def test_records_are_the_env_observation_of_the_replayed_state(tiny_simulator, few_logs) -> None:
    sim, logs = tiny_simulator, few_logs
    k = 7
    rec = decisions_from_logs(sim, logs, n_candidates=k, rng=np.random.default_rng(0))
    n = logs.n_rows
    assert rec.n_rows == n and rec.candidates.shape == (
        n,
        k,
        len(ObservationLayout(sim, k).candidate_names),
    )
    # the logged item's column, read back into click-model rows, is the row the models were fit on
    layout = ObservationLayout(sim, k)
    x = layout.click_features(rec.user, rec.candidates[np.arange(n), rec.action][:, None])
    rows = replay_with(sim, logs).rows.x_click
    assert x.shape == rows.shape
    np.testing.assert_allclose(x, rows, rtol=1e-5, atol=1e-4)
    # propensities: the logged item's probability among the candidates
    raw = logs.frame["propensity"].to_numpy()
    np.testing.assert_allclose(rec.propensity, candidate_propensity(raw, k, sim.n_items))
    # returns: own watch plus the discounted later steps of the session (gamma 0.5)
    rec2 = decisions_from_logs(sim, logs, n_candidates=k, rng=np.random.default_rng(0), gamma=0.5)
    f = logs.frame
    ends = (f["session_id"] != f["session_id"].shift(-1)).to_numpy()
    want = discounted_returns(f["watch_time"].to_numpy(), ends, 0.5)
    np.testing.assert_allclose(rec2.reward, want)
    clicks = decisions_from_logs(
        sim, logs, n_candidates=k, rng=np.random.default_rng(0), reward="clicks", gamma=0.0
    )
    np.testing.assert_array_equal(clicks.reward, f["clicked"].to_numpy())
    assert slate_size_of(logs) == 1


def test_propensities_left_out_or_missing(tiny_simulator, few_logs) -> None:
    sim, logs = tiny_simulator, few_logs
    rec = decisions_from_logs(
        sim, logs, n_candidates=5, rng=np.random.default_rng(0), propensities="none"
    )
    assert rec.propensity is None
    bare = read_logs(logs.frame.drop(columns="propensity"), items=logs.items)
    assert (
        decisions_from_logs(sim, bare, n_candidates=5, rng=np.random.default_rng(0)).propensity
        is None
    )
    with pytest.raises(
        LogError, match="needs a 'propensity' value on every row; the logs have none"
    ):
        decisions_from_logs(
            sim, bare, n_candidates=5, rng=np.random.default_rng(0), propensities="logged"
        )
    with pytest.raises(ConfigError, match="reward must be one of .*; gamma must lie in"):
        decisions_from_logs(
            sim, logs, n_candidates=5, rng=np.random.default_rng(0), reward="x", gamma=2
        )


def test_items_outside_the_catalogue_are_counted_and_left_out(tiny_simulator, few_logs) -> None:
    frame = few_logs.frame.copy()
    frame.loc[:2, "item_id"] = 10**9
    logs = read_logs(frame)
    with pytest.warns(UserWarning, match="3 of .* logged rows show items outside"):
        rec = decisions_from_logs(
            tiny_simulator, logs, n_candidates=5, rng=np.random.default_rng(0)
        )
    assert rec.n_rows == len(frame) - 3


def test_cli_trains_from_logs_and_evaluates_in_the_simulator(
    tmp_path, capsys, tiny_simulator, few_logs
) -> None:
    from simkit.cli import main

    sim_dir, logs_path, out = tmp_path / "sim", tmp_path / "logs.parquet", tmp_path / "run"
    tiny_simulator.save(sim_dir)
    few_logs.frame.to_parquet(logs_path)
    args = ["train", str(sim_dir), "--agent", "reinforce", "--logs", str(logs_path), "--steps", "3"]
    assert (
        main(
            [
                *args,
                "--candidates",
                "6",
                "--top-k",
                "2",
                "--episodes",
                "5",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    settings = json.loads((out / "run.json").read_text())
    assert settings["top_k"] == 2 and settings["propensity_source"] == "logged"
    assert settings["learned_from"] == "logs" and settings["n_decisions"] == few_logs.n_rows
    assert settings["agent_config"]["correction"] == "topk"
    assert (out / "agent" / "manifest.json").is_file() and (out / "loss.csv").is_file()
    assert settings["evaluation"]["episodes"] == 5
    bad = ["train", str(sim_dir), "--agent", "dqn", "--logs", str(logs_path), "--steps", "3"]
    assert main([*bad, "--out", str(tmp_path / "x"), "--quiet"]) == 1
    assert "train REINFORCE off-policy from logs" in capsys.readouterr().err
