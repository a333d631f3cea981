"""The seam between replay and simulation: one step, one replay, the same rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simkit.fitters import FitConfig, fit_simulator
from simkit.logs import Logs, read_logs
from simkit.replay import index_logs, replay, session_features, user_start_interest
from simkit.session import Streams, advance, immediate_values, reduce_slates, step
from simkit.simulator import Simulator
from simkit.state import initial_state

ROOT = Path(__file__).resolve().parents[1]


def _slate_logs(small_logs: Logs) -> Logs:
    frame = small_logs.frame.copy()
    frame["position"] = frame["step"] % 3
    frame["step"] = frame["step"] // 3
    # at most one click per slate keeps the logged responses a possible cascade outcome; the
    # replay rule (first clicked item moves the state) is what the test pins either way
    return read_logs(frame, items=small_logs.items)


@pytest.fixture(scope="module")
def slate_logs(small_logs: Logs) -> Logs:
    return _slate_logs(small_logs)


@pytest.fixture(scope="module")
def slate_simulator(slate_logs: Logs) -> Simulator:
    return fit_simulator(slate_logs, FitConfig(n_estimators=20), rng=np.random.default_rng(7))


def _drive_logged_sessions(sim: Simulator, logs: Logs, sessions: np.ndarray):
    """Step each chosen logged session through session.step with its logged responses."""
    index = index_logs(logs.frame, sim.catalogue)
    start, _ = user_start_interest(index, sim.catalogue, sim.dynamics)
    ufeat = session_features(
        logs.frame, index.session_first_row, sim.spec.user_columns, sim.categories
    )
    rows, _ = replay(index, sim.catalogue, start, ufeat, sim.dynamics)
    x_click = np.full_like(rows.x_click, np.nan)
    x_cont = np.full_like(rows.x_continue, np.nan)
    for s in sessions:
        state = initial_state(start.z0[[s]], start.hist_n[[s]], ufeat[[s]], sim.n_items)
        for st in range(index.session_first_step[s], index.session_first_step[s + 1]):
            lo = index.step_first_row[st]
            hi = index.step_first_row[st + 1] if st + 1 < index.n_steps else index.n_rows
            r = np.arange(lo, hi)
            result = step(
                sim,
                state,
                index.item_rows[r][None, :],
                position=index.position[r][None, :],
                logged_click=index.clicked[r][None, :],
                logged_watch=index.watch[r][None, :],
            )
            x_click[r] = result.x_click
            x_cont[st] = result.x_continue[0]
    return rows, x_click, x_cont, index


@pytest.mark.parametrize("kind", ["sample", "slates"])
def test_stepping_logged_sessions_reproduces_replay_rows(
    kind, tiny_simulator, small_logs, slate_simulator, slate_logs
) -> None:
    sim, logs = (tiny_simulator, small_logs) if kind == "sample" else (slate_simulator, slate_logs)
    index0 = index_logs(logs.frame, sim.catalogue)
    sessions = np.random.default_rng(0).choice(index0.n_sessions, size=60, replace=False)
    rows, x_click, x_cont, index = _drive_logged_sessions(sim, logs, sessions)
    if kind == "slates":
        assert index.slates
    row_mask = np.isin(index.session_of_row, sessions)
    step_mask = np.isin(index.session_of_step, sessions)
    assert row_mask.sum() > 200 and step_mask.sum() > 60
    # every column, bit for bit
    np.testing.assert_array_equal(x_click[row_mask], rows.x_click[row_mask])
    np.testing.assert_array_equal(x_cont[step_mask], rows.x_continue[step_mask])


def test_slate_rule_moves_the_state_with_the_first_clicked_item(tiny_simulator) -> None:
    sim = tiny_simulator
    moved, any_click, total = reduce_slates(
        np.array([0, 1, 1, 0, 0, 0]), np.array([0.0, 3.0, 4.0, 0, 0, 0]), np.array([0, 3])
    )
    assert moved.tolist() == [1, 3] and any_click.tolist() == [True, False]
    assert total.tolist() == [7.0, 0.0]
    z0 = np.zeros((1, sim.catalogue.dim))
    state = initial_state(z0, np.zeros(1), np.zeros((1, sim.users.features.shape[1])), sim.n_items)
    items = np.array([[3, 5, 7]])
    advance(state, sim, items, np.array([[0, 1, 1]]), np.array([[0.0, 10.0, 5.0]]))
    eta = sim.dynamics.eta
    np.testing.assert_allclose(state.z[0], eta * sim.catalogue.embedding[5])
    assert state.watch_total[0] == 15.0 and state.n_clicks[0] == 1
    # every slot of the slate counts as shown, once
    assert state.shown[0, [3, 5, 7]].tolist() == [1, 1, 1] and state.shown.sum() == 3


def test_forced_step_samples_nothing_and_sampled_step_needs_streams(tiny_simulator) -> None:
    sim = tiny_simulator
    users = sim.sample_users(4, rng=np.random.default_rng(0))
    state = sim.initial_state(users)
    with pytest.raises(ValueError, match="needs streams"):
        step(sim, state, np.arange(4))
    res = step(sim, state, np.arange(4), streams=Streams.spawn(np.random.default_rng(1)))
    assert res.click.shape == (4, 1) and res.terminated.dtype == bool
    assert np.all((res.p_continue > 0) & (res.p_continue < 1))


def test_immediate_watch_value_is_click_probability_times_the_fitted_mean(tiny_simulator) -> None:
    sim = tiny_simulator
    state = sim.initial_state(sim.sample_users(3, rng=np.random.default_rng(2)))
    cands = np.arange(12).reshape(3, 4)
    x = sim.click_features(state, cands)
    p = sim.click.proba(x).reshape(3, 4)
    mean = sim.watch.mean_from_prediction(
        sim.watch.predict_log(x).reshape(3, 4), sim.catalogue.duration[cands]
    )
    np.testing.assert_allclose(immediate_values(sim, state, cands), p * mean)
    np.testing.assert_allclose(immediate_values(sim, state, cands, reward="clicks"), p)
    # sampled watch times agree with the expectation
    many = np.repeat(x[:1], 20000, axis=0)
    draws = sim.watch.sample(
        many, np.full(20000, sim.catalogue.duration[0]), rng=np.random.default_rng(3)
    )
    assert abs(draws.mean() / mean[0, 0] - 1) < 0.05


def test_only_the_core_moves_the_state() -> None:
    """simkit.state.transition is called from state.py, replay.py and session.py only (the
    synthetic worlds' own private ``_transition`` methods are the truth, not simkit's state)."""
    out = subprocess.run(
        ["git", "grep", "-lE", r"(^|[^_.[:alnum:]])transition\(", "--", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    callers = {p for p in out if not p.startswith("tests/")}
    assert callers <= {"simkit/state.py", "simkit/replay.py", "simkit/session.py"}, callers


def test_validation_does_not_import_fitters() -> None:
    code = "import sys, simkit.validation; print('simkit.fitters' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_env_values_from_observations_equal_the_models_values_of_the_state(tiny_simulator) -> None:
    import gymnasium as gym

    import simkit.envs  # noqa: F401

    env = gym.make("simkit/Session-v0", simulator=tiny_simulator, n_candidates=8).unwrapped
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        from_obs = env.immediate_values(obs)[0]
        truth = immediate_values(tiny_simulator, env._state, env._cands)[0]
        np.testing.assert_allclose(from_obs, truth, rtol=1e-4)
        assert np.argmax(from_obs) == np.argmax(truth)
        obs, _, term, _, _ = env.step(int(np.argmax(from_obs)))
        if term:
            obs, _ = env.reset()
