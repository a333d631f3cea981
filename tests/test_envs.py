"""SessionEnv (simkit/Session-v0): Gymnasium contract, observation layout, slates, rewards, seeding."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from _env_fixtures import env_simulator_dir
from gymnasium.utils.env_checker import check_env

import simkit.envs
from simkit.envs import SessionEnv
from simkit.envs._core import EnvConfig, SessionCore
from simkit.errors import ConfigError
from simkit.simulator import Simulator
from simkit.state import click_features, continue_features

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return env_simulator_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def sim(sim_dir: Path) -> Simulator:
    return Simulator.load(sim_dir)


def rollout(env: gym.Env, seed: int, n_steps: int, action_seed: int = 1) -> list:
    """(obs, reward, terminated, truncated, info) of ``n_steps`` random steps, resetting on end."""
    env.action_space.seed(action_seed)
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for _ in range(n_steps):
        step = env.step(env.action_space.sample())
        out.append(step)
        if step[2] or step[3]:
            out.append(env.reset())
    return out


def same(a: object, b: object) -> bool:
    return gym.utils.env_checker.data_equivalence(a, b, exact=True)


# ---------------------------------------------------------------- contract


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"slate_size": 4},
        {"slate_size": 3, "sampler": "interest", "users": "new", "reward": "clicks"},
        {"sampler": "popularity", "n_candidates": 20, "reward": "long_watch"},
    ],
)
def test_check_env_passes_without_warnings(sim_dir: Path, kwargs: dict) -> None:
    env = gym.make("simkit/Session-v0", simulator=str(sim_dir), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


def test_make_with_path_keeps_kwargs_serialisable(sim_dir: Path) -> None:
    env = gym.make("simkit/Session-v0", simulator=str(sim_dir), slate_size=2)
    assert isinstance(env.unwrapped, SessionEnv)
    assert env.spec is not None and env.spec.max_episode_steps == 200
    assert json.loads(env.spec.to_json())["kwargs"]["simulator"] == str(sim_dir)
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
    assert simkit.envs.SESSION_ID in gym.registry


def test_accepts_a_simulator_object(sim: Simulator) -> None:
    env = SessionEnv(sim, n_candidates=10)
    obs, info = env.reset(seed=0)
    assert obs["candidates"].shape == (10, len(env.candidate_names))
    assert env.action_space == gym.spaces.Discrete(10)
    with pytest.raises(TypeError, match="simulator must be"):
        SessionEnv(42)  # type: ignore[arg-type]


def test_time_limit_truncates(sim_dir: Path) -> None:
    env = gym.make("simkit/Session-v0", simulator=str(sim_dir), max_episode_steps=3)
    env.reset(seed=0)
    for t in range(1, 4):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated:
            break
        assert truncated == (t == 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_candidates": 0}, "n_candidates must be a positive integer; got 0"),
        ({"slate_size": 60}, "slate_size (60) must not exceed n_candidates (50)"),
        ({"sampler": "random"}, "sampler must be one of ('uniform', 'popularity', 'interest')"),
        ({"reward": "money"}, "reward must be one of ('watch_time', 'clicks', 'long_watch')"),
        ({"users": "old"}, "users must be 'logged' or 'new'; got 'old'"),
        ({"duplicates": "skip"}, "duplicates must be one of ('next', 'reject')"),
        ({"temperature": 0.0}, "temperature must be a positive number; got 0.0"),
        ({"slate_size": 3, "position_bias": [1.0, 0.5]}, "position_bias must list at least"),
        ({"n_candidates": 10_000}, "n_candidates (10000) must not exceed the simulator's 500"),
    ],
)
def test_bad_settings_raise_config_error(sim: Simulator, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        SessionEnv(sim, **kwargs)


def test_bad_actions_raise(sim: Simulator) -> None:
    env = SessionEnv(sim)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for bad in (50, -1, 1.5, [1, 2]):
        with pytest.raises(ValueError, match="outside the action space"):
            env.step(bad)


# ---------------------------------------------------------------- observation layout


def test_observation_layout_matches_the_model_features(sim: Simulator) -> None:
    env = SessionEnv(sim, users="logged")
    obs, info = env.reset(seed=3)
    for _ in range(5):
        obs, _, terminated, _, info = env.step(int(np.argmax(obs["candidates"][:, -3])))
        if terminated:
            obs, info = env.reset()
    state, cands = env._state, env._cands
    assert state is not None and cands is not None
    d = sim.catalogue.dim
    assert env.user_names == tuple(f"z_{j}" for j in range(d)) + sim.spec.continue_names
    np.testing.assert_allclose(obs["user"][:d], state.z[0], rtol=1e-6)
    np.testing.assert_array_equal(obs["user"][d:], continue_features(state)[0])
    x = click_features(state, sim.catalogue, cands).reshape(len(cands[0]), -1)
    names = list(sim.spec.click_names)
    for j, name in enumerate(env.candidate_names):
        col = x[:, names.index(name)]
        np.testing.assert_allclose(obs["candidates"][:, j], col, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(info["candidate_item_ids"], sim.catalogue.item_ids[cands[0]])


@pytest.mark.parametrize("sampler", ["uniform", "popularity", "interest"])
def test_candidates_are_distinct_catalogue_items(sim: Simulator, sampler: str) -> None:
    core = SessionCore(sim, EnvConfig(sampler=sampler, n_candidates=50))
    state = core.start(400, np.random.default_rng(0))
    cands = core.draw_candidates(state, np.random.default_rng(1))
    assert cands.shape == (400, 50)
    assert cands.min() >= 0 and cands.max() < sim.n_items  # never the stand-in row
    assert all(len(set(row)) == 50 for row in cands.tolist())


def test_samplers_follow_their_weights(sim: Simulator) -> None:
    n = 2000
    counts = {}
    for sampler in ("uniform", "popularity", "interest"):
        core = SessionCore(sim, EnvConfig(sampler=sampler, n_candidates=20))
        state = core.start(n, np.random.default_rng(0))
        cands = core.draw_candidates(state, np.random.default_rng(1))
        counts[sampler] = np.bincount(cands.ravel(), minlength=sim.n_items)
        if sampler == "interest":
            dots = core.sampler.item_dots(state)
            chosen = np.take_along_axis(dots, cands, axis=1).mean()
            assert chosen > dots.mean() + 0.5 * dots.std(axis=1).mean()
    pop = np.expm1(sim.catalogue.log_popularity[: sim.n_items])
    assert np.corrcoef(counts["popularity"], pop)[0, 1] > 0.8
    assert abs(np.corrcoef(counts["uniform"], pop)[0, 1]) < 0.2


def test_first_occurrence_keeps_the_first_of_each_item(sim: Simulator) -> None:
    core = SessionCore(sim, EnvConfig())
    draws = np.array([[3, 1, 3, 2, 1, 0], [5, 5, 5, 4, 4, 5]])
    expected = [[1, 1, 0, 1, 0, 1], [1, 0, 0, 1, 0, 0]]
    np.testing.assert_array_equal(core.sampler._first_occurrence(draws), np.array(expected, bool))


def test_observations_are_clipped_to_finite_bounds(sim: Simulator) -> None:
    env = SessionEnv(sim, users="new", sampler="interest")
    space = env.observation_space
    for box in space.values():
        assert np.all(np.isfinite(box.low)) and np.all(np.isfinite(box.high))
        assert np.all(box.low < box.high)
    env.reset(seed=0)
    env._state.z[:] = 50.0  # far outside any fitted interest vector
    obs, *_ = env.step(0)
    assert obs in space


# ---------------------------------------------------------------- slates and rewards


def test_duplicate_slate_indices_take_the_next_unused_candidate(sim: Simulator) -> None:
    core = SessionCore(sim, EnvConfig(slate_size=3, n_candidates=6))
    got = core.slots(np.array([[3, 3, 4], [5, 5, 5], [0, 1, 2], [2, 0, 2]]))
    np.testing.assert_array_equal(got, [[3, 4, 5], [5, 0, 1], [0, 1, 2], [2, 0, 3]])
    env = SessionEnv(sim, slate_size=3)
    env.reset(seed=0)
    cands = env._cands
    _, _, _, _, info = env.step(np.array([7, 7, 7]))
    np.testing.assert_array_equal(info["item_ids"], sim.catalogue.item_ids[cands[0, [7, 8, 9]]])


def test_duplicate_slate_indices_can_be_rejected(sim: Simulator) -> None:
    env = SessionEnv(sim, slate_size=3, duplicates="reject")
    env.reset(seed=0)
    env.step(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=re.escape("slate position 1 repeats an earlier index")):
        env.step(np.array([4, 4, 5]))


def test_cascade_examines_by_position_and_stops_at_the_first_click(sim: Simulator) -> None:
    bias = (1.0, 0.6, 0.2)
    env = gym.make("simkit/Session-v0", simulator=sim, slate_size=3, position_bias=bias)
    assert env.unwrapped.core.position_bias.tolist() == list(bias)
    env.reset(seed=0)
    examined, clicks, reached = np.zeros(3), np.zeros(3), np.zeros(3)
    for _ in range(1500):
        _, reward, terminated, truncated, info = env.step(np.array([0, 1, 2]))
        click, seen = info["click"], info["examined"]
        assert click.sum() <= 1 and np.all(click <= seen)
        assert reward == pytest.approx(info["watch_time"].sum())
        assert info["watch_time"][click == 0].sum() == 0
        first = int(np.argmax(click)) if click.any() else 3
        assert not seen[first + 1 :].any()  # nothing is examined after the first click
        reach = np.arange(3) <= first
        reached += reach
        examined += seen & reach
        clicks += click
        if terminated or truncated:
            env.reset()
    rate = examined / reached
    se = np.sqrt(np.array(bias) * (1 - np.array(bias)) / reached) + 1e-9
    assert np.all(np.abs(rate - bias) <= 4 * se + 1e-9), (rate, bias)
    assert clicks.sum() > 0


def test_default_position_bias_is_one_over_log2(sim: Simulator) -> None:
    env = SessionEnv(sim, slate_size=4)
    np.testing.assert_allclose(env.core.position_bias, 1 / np.log2(np.arange(4) + 2))


@pytest.mark.parametrize("reward", ["watch_time", "clicks", "long_watch", "callable"])
def test_rewards(sim: Simulator, reward: str) -> None:
    seen: list[tuple] = []

    def fn(click: int, watch: float, info: dict) -> float:
        seen.append((click, watch, sorted(info)))
        return 2.0 * click - watch / 100

    env = SessionEnv(sim, reward=fn if reward == "callable" else reward, long_watch_threshold=30)
    env.reset(seed=0)
    for _ in range(300):
        _, r, terminated, _, info = env.step(int(env.np_random.integers(50)))
        c, w = int(info["click"].sum()), float(info["watch_time"].sum())
        expected = {
            "watch_time": w,
            "clicks": c,
            "long_watch": float(w > 30),
            "callable": 2.0 * c - w / 100,
        }[reward]
        assert r == pytest.approx(expected)
        assert isinstance(r, float)
        assert 0 < info["p_continue"] < 1 and np.all((info["p_click"] > 0) & (info["p_click"] < 1))
        if terminated:
            env.reset()
    if reward == "callable":
        assert len(seen) == 300
        assert seen[0][2] == [
            "click",
            "examined",
            "item_ids",
            "p_click",
            "p_continue",
            "watch_time",
        ]


# ---------------------------------------------------------------- seeding


@pytest.mark.parametrize("kwargs", [{}, {"slate_size": 3, "sampler": "interest", "users": "new"}])
def test_same_seed_same_trajectory(sim_dir: Path, kwargs: dict) -> None:
    a = rollout(gym.make("simkit/Session-v0", simulator=str(sim_dir), **kwargs), 11, 300)
    b = rollout(gym.make("simkit/Session-v0", simulator=str(sim_dir), **kwargs), 11, 300)
    c = rollout(gym.make("simkit/Session-v0", simulator=str(sim_dir), **kwargs), 12, 300)
    assert len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    assert not all(same(x[0], y[0]) for x, y in zip(a, c))


def test_reset_without_seed_continues_the_streams(sim: Simulator) -> None:
    env = SessionEnv(sim)
    first, _ = env.reset(seed=5)
    second, _ = env.reset()
    assert not same(first, second)
    again, _ = env.reset(seed=5)
    assert same(first, again)


# ---------------------------------------------------------------- example


@pytest.mark.skipif(
    importlib.util.find_spec("stable_baselines3") is None, reason="stable_baselines3 not installed"
)
def test_train_ppo_example_runs(sim_dir: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import train_ppo
    finally:
        sys.path.pop(0)
    result = train_ppo.main(
        [
            "--simulator",
            str(sim_dir),
            "--timesteps",
            "256",
            "--eval-episodes",
            "3",
            "--out",
            str(tmp_path / "ppo"),
        ]
    )
    assert np.isfinite(result["mean_return"])
