"""ScoredSessionEnv (simkit/ScoredSession-v0): contract, selection rules, propensities, seeding,
and the Stable-Baselines3 examples (skipped where stable-baselines3 is not installed)."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from _env_fixtures import env_simulator_dir
from gymnasium.utils.env_checker import check_env

import simkit.envs  # noqa: F401
from simkit.envs import ScoredSessionEnv, SessionEnv
from simkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
HAS_SB3 = importlib.util.find_spec("stable_baselines3") is not None


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return env_simulator_dir(tmp_path_factory)


@pytest.mark.parametrize(
    "kwargs", [{}, {"selection": "softmax", "observation": "candidates", "sampler": "interest"}]
)
def test_check_env_passes(sim_dir: Path, kwargs: dict) -> None:
    env = gym.make("simkit/ScoredSession-v0", simulator=str(sim_dir), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    assert env.spec is not None and env.spec.max_episode_steps == 200


def test_argmax_shows_the_best_scoring_candidate(sim_dir: Path) -> None:
    env = ScoredSessionEnv(sim_dir)
    env.reset(seed=0)
    pop = env.candidate_names.index("item_log_pop")
    w = np.zeros(env.action_space.shape, np.float32)
    w[pop] = 1.0
    for _ in range(20):
        x = env._x.copy()
        _, _, terminated, _, info = env.step(w)
        assert info["candidate_index"] == int(np.argmax(x[:, pop]))
        assert info["propensity"] == 1.0
        if terminated:
            env.reset()


def test_softmax_propensity_is_the_selection_probability(sim_dir: Path) -> None:
    env = ScoredSessionEnv(sim_dir, selection="softmax", score_temperature=0.5)
    env.reset(seed=1)
    w = np.linspace(-1, 1, env.action_space.shape[0]).astype(np.float32)
    s = env._x.astype(np.float64) @ w / 0.5
    p = np.exp(s - s.max())
    p /= p.sum()
    picks = np.array([env.choose(w)[0] for _ in range(4000)])
    j, prop = env.choose(w)
    assert prop == pytest.approx(p[j])
    freq = np.bincount(picks, minlength=len(p)) / len(picks)
    top = np.argsort(-p)[:5]  # the five likeliest slots, each within 4 standard errors
    se = np.sqrt(p[top] * (1 - p[top]) / len(picks))
    assert np.all(np.abs(freq[top] - p[top]) < 4 * se + 1e-3)


def test_same_seed_same_users_and_candidates_as_the_session_env(sim_dir: Path) -> None:
    scored, plain = ScoredSessionEnv(sim_dir), SessionEnv(sim_dir)
    _, info_a = scored.reset(seed=7)
    _, info_b = plain.reset(seed=7)
    np.testing.assert_array_equal(info_a["candidate_item_ids"], info_b["candidate_item_ids"])
    w = np.ones(scored.action_space.shape, np.float32)
    j = scored.choose(w)[0]
    _, ra, *_ = scored.step(w)
    _, rb, *_ = plain.step(j)
    assert ra == rb


def test_summary_observation_is_user_then_candidate_mean_and_max(sim_dir: Path) -> None:
    env = ScoredSessionEnv(sim_dir)
    obs, _ = env.reset(seed=2)
    d_u, d_c = len(env.user_names), len(env.candidate_names)
    assert obs.shape == (d_u + 2 * d_c,)
    np.testing.assert_allclose(obs[d_u : d_u + d_c], env._x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(obs[d_u + d_c :], env._x.max(axis=0))
    assert obs in env.observation_space


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"selection": "best"}, "selection must be one of"),
        ({"score_temperature": 0.0}, "score_temperature must be a positive number"),
        ({"observation": "flat"}, "observation must be one of"),
    ],
)
def test_bad_settings_raise(sim_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ScoredSessionEnv(sim_dir, **kwargs)


def test_bad_actions_raise(sim_dir: Path) -> None:
    env = ScoredSessionEnv(sim_dir)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite candidate-feature weights"):
        env.step(np.full(3, np.nan, np.float32))


def _example(name: str):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(REPO / "examples"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


@pytest.mark.skipif(not HAS_SB3, reason="stable_baselines3 not installed")
@pytest.mark.parametrize("name", ["train_ppo", "train_sac"])
def test_sb3_examples_run(sim_dir: Path, tmp_path: Path, name: str) -> None:
    result = _example(name).main(
        [
            "--simulator",
            str(sim_dir),
            "--timesteps",
            "300",
            "--eval-episodes",
            "5",
            "--out",
            str(tmp_path / name),
        ]  # fmt: skip
    )
    for key in ("mean_return", "random_return", "popular_return", "gain_over_random"):
        assert np.isfinite(result[key]), key
    assert (tmp_path / name / "policy.zip").exists()
