"""The DRL-PUT ad-request world (simkit.ads_world) and simkit/AdUtility-v0 (issue 24)."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

import simkit.envs  # noqa: F401  (registers the ids)
from simkit.ads_world import N_ACTIONS, AdsWorld, decode_action, encode_action
from simkit.envs.ads import AdUtilityEnv
from simkit.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "ads.parquet"


@pytest.fixture(scope="module")
def world() -> AdsWorld:
    return AdsWorld()


def test_world_is_not_trivial(world: AdsWorld) -> None:
    """Default world (measured): uniform 0.328, best global 0.565, oracle 0.588; +79%, +3.7%."""
    s = world.summary()
    table = world.action_table()["reward"]
    gap = (s["oracle"] - s["uniform"]) / s["uniform"]
    seg_gain = (s["segment_oracle"] - s["best_global"]) / s["best_global"]
    # reserve matters: best setting with the reserve at its lowest vs best setting, per segment
    w = world.cell_weights()[:, None]
    seg = (w * table).reshape(world.n_segments, -1, N_ACTIONS).sum(axis=1).reshape(-1, 100, 10)
    reserve_gain = seg.max(axis=(1, 2)) / seg[:, :, 0].max(axis=1) - 1.0
    print(
        f"uniform {s['uniform']:.4f} best global {s['best_global']:.4f} "
        f"segment oracle {s['segment_oracle']:.4f} oracle {s['oracle']:.4f}; "
        f"(oracle-uniform)/uniform {gap:.3f}, segment oracle over global {seg_gain:.4f}, "
        f"reserve gain per segment {np.round(reserve_gain, 4)}"
    )
    assert gap >= 0.10
    assert seg_gain >= 0.03
    assert reserve_gain.max() >= 0.01
    best_reserve = [decode_action(a)[2] for a in s["segment_oracle_actions"]]
    assert max(best_reserve) >= 1


def test_exact_values_match_sampling(world: AdsWorld) -> None:
    rng = np.random.default_rng(0)
    req = world.sample_requests(40_000, rng=rng)
    table = world.action_table()
    cells = req["cell"].to_numpy()
    for a in (0, 471, 905, 999):
        out = world.outcomes(req, world.serve(req, np.full(len(req), a)), rng=rng)
        for metric, col in (("reward", "reward"), ("click", "clicked"), ("shown", None)):
            sampled = (out["ad_id"] >= 0) if col is None else out[col]
            exact = table[metric][cells, a]
            se = np.std(sampled.to_numpy(dtype=float) - exact) / np.sqrt(len(req))
            assert abs(sampled.mean() - exact.mean()) < 4 * se + 1e-12, (a, metric)


def test_policy_value_deterministic_and_stochastic(world: AdsWorld) -> None:
    n = len(world.population)
    s = world.summary()
    uniform = np.full((n, N_ACTIONS), 1.0 / N_ACTIONS)
    assert world.policy_value(uniform) == pytest.approx(s["uniform"])
    best = np.full(n, s["best_global_action"])
    assert world.policy_value(best) == pytest.approx(s["best_global"])
    oracle = s["oracle_actions"][world.population["cell"].to_numpy()]
    assert world.policy_value(oracle) == pytest.approx(s["oracle"])


def test_action_encoding_round_trips() -> None:
    a = np.arange(N_ACTIONS)
    assert np.array_equal(encode_action(*decode_action(a)), a)
    assert decode_action(507) == (5, 0, 7)


def test_revenue_reward_ablation_world(world: AdsWorld) -> None:
    rev = AdsWorld(reward="revenue")
    assert np.allclose(rev.action_table()["reward"], world.action_table()["revenue"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reward": "clicks"}, "reward must be 'campaign' or 'revenue'"),
        ({"reserves": (0.5, 0.1)}, "reserves must be (lo, hi)"),
        ({"n_candidates": 0}, "n_candidates must be >= 1"),
    ],
)
def test_bad_world_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AdsWorld(**kwargs)


def test_log_uniform_has_propensities(world: AdsWorld) -> None:
    log = world.log_uniform(5000, rng=np.random.default_rng(1))
    assert np.all(log["propensity"] == 1.0 / N_ACTIONS)
    assert log["action"].between(0, N_ACTIONS - 1).all()
    assert np.array_equal(
        log["action"], encode_action(log.g_click, log.g_conversion, log.g_reserve)
    )
    nothing = log["ad_id"] < 0
    assert (log.loc[nothing, "reward"] == 0).all() and (log.loc[nothing, "revenue"] == 0).all()
    assert (log["click30"] <= log["clicked"]).all() and (log["converted"] <= log["clicked"]).all()
    # a click pays only CPC ads, a conversion only CPA ads, an impression always pays CPM
    cpm = log["campaign_type"] == 2
    assert np.allclose(log.loc[cpm, "revenue"], log.loc[cpm, "bid"])


def test_sample_log_is_small_and_reproducible(tmp_path: Path) -> None:
    assert SAMPLE.stat().st_size < 2_000_000
    sample = pd.read_parquet(SAMPLE)
    assert len(sample) == 50_000
    again = AdsWorld().log_uniform(2000, rng=np.random.default_rng(0))
    # the first rows depend on the total size through the spawned streams: compare layouts only
    assert list(sample.columns) == list(again.columns)


def test_check_env_clean_with_warnings_as_errors() -> None:
    env = gym.make("simkit/AdUtility-v0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["user"].shape == (6,) and obs["candidates"].shape == (N_ACTIONS, 3)
    _, reward, terminated, truncated, info = env.step(0)
    assert terminated and not truncated
    for key in ("click", "click30", "conversion", "revenue"):
        assert key in info


def test_env_seeding_reproduces_trajectories() -> None:
    def run(seed: int) -> list[tuple]:
        env = AdUtilityEnv()
        obs, _ = env.reset(seed=seed)
        out = []
        for a in (3, 500, 999, 120, 77):
            _, r, _, _, info = env.step(a)
            out.append((r, info["click"], info["ad_id"]))
            obs, _ = env.reset()
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_env_rejects_bad_action_and_world() -> None:
    env = AdUtilityEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be an integer in"):
        env.step(1000)
    with pytest.raises(TypeError, match="world must be an AdsWorld"):
        AdUtilityEnv(world="default")  # type: ignore[arg-type]


def test_env_reward_is_the_campaign_reward_in_expectation(world: AdsWorld) -> None:
    env = AdUtilityEnv(world)
    env.reset(seed=3)
    rewards, expected = [], []
    for _ in range(1500):
        _, r, _, _, info = env.step(471)
        rewards.append(r)
        expected.append(info["expected_reward"])
        env.reset()
    diff = np.asarray(rewards) - np.asarray(expected)
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size)
