"""The agents' test environments: Gymnasium contract, exact oracles, reproducibility."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from simkit.agents.testenvs import LinearBanditEnv, SlateMNLEnv, StatelessItemEnv, top_k
from simkit.errors import ConfigError

ENVS = {
    "linear-disjoint": lambda: LinearBanditEnv(),
    "linear-joint-bernoulli": lambda: LinearBanditEnv(model="joint", reward="bernoulli"),
    "stateless-items": lambda: StatelessItemEnv(),
    "slate-mnl": lambda: SlateMNLEnv(n_items=30),
}


@pytest.mark.parametrize("name", ENVS)
def test_gymnasium_contract(name: str) -> None:
    env = ENVS[name]()
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"user", "candidates"}
    assert obs["user"].dtype == np.float32 and obs["candidates"].dtype == np.float32
    wrapped = gym.wrappers.TimeLimit(ENVS[name](), max_episode_steps=5)
    wrapped.reset(seed=0)
    _, _, terminated, truncated, _ = wrapped.step(wrapped.action_space.sample())
    assert terminated and not truncated  # one decision per episode


@pytest.mark.parametrize("name", ENVS)
def test_same_seed_same_trajectory(name: str) -> None:
    def rollout() -> list[float]:
        env = ENVS[name]()
        env.action_space.seed(0)
        out = [float(env.reset(seed=3)[0]["user"].sum())]
        for _ in range(20):
            _, r, _, _, _ = env.step(env.action_space.sample())
            out.append(r)
            out.append(float(env.reset()[0]["user"].sum()))
        return out

    assert rollout() == rollout()


def test_linear_bandit_oracle_and_expected_reward_are_exact() -> None:
    for kw in ({}, {"model": "joint"}, {"reward": "bernoulli"}):
        env = LinearBanditEnv(world_seed=1, **kw)
        obs, _ = env.reset(seed=0)
        for _ in range(50):
            means = env.expected_rewards(obs)
            best = env.oracle_action(obs)
            _, _, _, _, info = env.step(best)
            assert info["regret"] == 0.0
            assert info["expected_reward"] == means.max()
            obs, _ = env.reset()
    env = LinearBanditEnv(world_seed=1, noise_std=0.1)
    obs, _ = env.reset(seed=0)
    mean = env.expected_reward(obs, 3)
    draws = []
    for _ in range(2000):  # the same context, stepped again and again
        env._obs = {k: v.copy() for k, v in obs.items()}
        draws.append(env.step(3)[1])
    assert abs(np.mean(draws) - mean) < 4 * 0.1 / np.sqrt(2000)


def test_joint_bandit_offers_changing_candidate_sets() -> None:
    env = LinearBanditEnv(model="joint", n_arms=20, n_items=200, world_seed=0)
    _, info = env.reset(seed=0)
    first = info["item_ids"]
    _, info = env.reset()
    assert len(set(first)) == 20 and not np.array_equal(first, info["item_ids"])


def test_slate_env_exact_ctr_matches_simulation() -> None:
    env = SlateMNLEnv(n_items=30)
    obs, _ = env.reset(seed=0)
    slate = np.array([3, 7, 1, 20, 9])
    exact = env.expected_reward(obs, slate)
    clicks = []
    for _ in range(4000):
        env._user = obs["user"].astype(np.float64)
        clicks.append(env.step(slate)[1])
    assert abs(np.mean(clicks) - exact) < 4 * np.sqrt(exact * (1 - exact) / 4000)
    users = env.sample_users(200, rng=np.random.default_rng(0))
    best = env.slate_ctr(users, env.oracle_slates(users))
    some = env.slate_ctr(users, top_k(np.random.default_rng(1).random((200, 30)), 5))
    assert np.all(best >= some - 1e-12)


def test_slate_env_counts_a_repeated_item_once() -> None:
    env = SlateMNLEnv(n_items=30)
    users = env.sample_users(3, rng=np.random.default_rng(0))
    twice = env.slate_ctr(users, np.array([[4, 4, 5, 6, 7]] * 3))
    once = env.click_proba(users, np.array([[4, 5, 6, 7, 8]] * 3))[:, :4].sum(axis=1)
    w8 = env.attractiveness(users)[:, 8]
    denom_once = w8 / env.click_proba(users, np.array([[4, 5, 6, 7, 8]] * 3))[:, 4]
    np.testing.assert_allclose(twice, once * denom_once / (denom_once - w8))


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=re.escape("model must be 'disjoint' or 'joint'")):
        LinearBanditEnv(model="hybrid")
    with pytest.raises(ConfigError, match="policy must be 'uniform' or 'popularity'"):
        SlateMNLEnv(n_items=10).sample_logs(5, rng=np.random.default_rng(0), policy="greedy")
    with pytest.raises(ConfigError, match="behaviour must be 10 positive probabilities"):
        StatelessItemEnv().sample_logs(5, rng=np.random.default_rng(0), behaviour=np.ones(10))
