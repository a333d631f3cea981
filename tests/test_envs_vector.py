"""SessionVectorEnv: make_vec, autoreset, one model call per step, N=1 equivalence, long rollouts."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from _env_fixtures import env_simulator_dir
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode

import simkit.envs  # noqa: F401  (registers simkit/Session-v0)
from simkit.envs import SessionVectorEnv
from simkit.simulator import Simulator


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return env_simulator_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def sim(sim_dir: Path) -> Simulator:
    return Simulator.load(sim_dir)


def make_vec(sim_dir: Path, n: int, **kwargs: object) -> gym.vector.VectorEnv:
    return gym.make_vec(
        "simkit/Session-v0",
        num_envs=n,
        vectorization_mode="vector_entry_point",
        simulator=str(sim_dir),
        **kwargs,
    )


def test_make_vec_builds_the_native_vector_env(sim_dir: Path) -> None:
    envs = make_vec(sim_dir, 8, slate_size=2)
    assert isinstance(envs.unwrapped, SessionVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.unwrapped.max_episode_steps == 200  # the registered TimeLimit
    assert envs.action_space.shape == (8, 2)
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space
    assert obs["user"].shape == (8, len(envs.unwrapped.user_names))
    assert info["candidate_item_ids"].shape == (8, 50) and info["_candidate_item_ids"].all()
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert reward.shape == terminated.shape == truncated.shape == (8,)
    assert terminated.dtype == bool and truncated.dtype == bool
    for key in ("item_ids", "p_click", "examined", "click", "watch_time"):
        assert info[key].shape == (8, 2) and info[f"_{key}"].all()
    assert info["p_continue"].shape == (8,)
    np.testing.assert_allclose(reward, info["watch_time"].sum(axis=1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"slate_size": 3, "sampler": "interest"},
        {"sampler": "popularity", "users": "new", "reward": "clicks"},
    ],
)
def test_one_user_vector_env_reproduces_the_single_env(sim_dir: Path, kwargs: dict) -> None:
    env = gym.make("simkit/Session-v0", simulator=str(sim_dir), max_episode_steps=12, **kwargs)
    envs = make_vec(sim_dir, 1, max_episode_steps=12, **kwargs)
    single = env.unwrapped.action_space
    rng = np.random.default_rng(4)
    obs, info = env.reset(seed=21)
    vobs, vinfo = envs.reset(seed=21)
    episodes = 0
    for _ in range(250):
        action = _random_action(single, rng)
        obs, r, term, trunc, info = env.step(action)
        vobs, vr, vterm, vtrunc, vinfo = envs.step(
            np.asarray(action).reshape(envs.action_space.shape)
        )
        assert data_equivalence(obs, {k: v[0] for k, v in vobs.items()}, exact=True)
        assert (r, term, trunc) == (vr[0], vterm[0], vtrunc[0])
        for key in ("item_ids", "p_click", "click", "watch_time", "candidate_item_ids"):
            np.testing.assert_array_equal(info[key], vinfo[key][0])
        if term or trunc:
            episodes += 1
            obs, info = env.reset()
            vobs, vr, vterm, vtrunc, vinfo = envs.step(np.zeros(envs.action_space.shape, np.int64))
            assert vr[0] == 0 and not vterm[0] and not vtrunc[0] and not vinfo["_click"][0]
            assert data_equivalence(obs, {k: v[0] for k, v in vobs.items()}, exact=True)
    assert episodes >= 10


def _random_action(space: gym.Space, rng: np.random.Generator) -> object:
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    return rng.integers(space.nvec)


def test_same_seed_same_batch_trajectory(sim_dir: Path) -> None:
    def run(seed: int) -> list:
        envs = make_vec(sim_dir, 32, slate_size=2, sampler="interest")
        envs.action_space.seed(0)
        out = [envs.reset(seed=seed)]
        for _ in range(40):
            out.append(envs.step(envs.action_space.sample()))
        return out

    a, b, c = run(5), run(5), run(6)
    assert all(data_equivalence(x, y, exact=True) for x, y in zip(a, b))
    assert not data_equivalence(a[-1][0], c[-1][0])


def test_next_step_autoreset(sim_dir: Path) -> None:
    envs = make_vec(sim_dir, 64, max_episode_steps=5)
    envs.reset(seed=0)
    step_col = envs.unwrapped.user_names.index("step")
    done = np.zeros(64, bool)
    seen_done = False
    for _ in range(30):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        # sessions that ended at the previous call restart now: first obs, no reward, no step info
        assert (
            np.all(reward[done] == 0) and not terminated[done].any() and not truncated[done].any()
        )
        assert np.all(obs["user"][done, step_col] == 0)
        assert not info["_click"][done].any() and info["_click"][~done].all()
        assert np.all(obs["user"][~done, step_col] >= 1)
        assert np.all(obs["user"][~done, step_col] <= 5)
        seen_done |= done.any()
        done = terminated | truncated
        assert np.all(truncated == (obs["user"][:, step_col] >= 5))
    assert seen_done


def test_same_step_autoreset_reports_the_final_observation(sim_dir: Path) -> None:
    envs = make_vec(sim_dir, 16, autoreset_mode=AutoresetMode.SAME_STEP, max_episode_steps=4)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    envs.reset(seed=0)
    step_col = envs.unwrapped.user_names.index("step")
    for _ in range(12):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        done = terminated | truncated
        assert np.all(obs["user"][done, step_col] == 0)  # already restarted
        if done.any():
            assert np.array_equal(info["_final_obs"], done)
            for i in np.flatnonzero(done):
                assert info["final_obs"][i]["user"][step_col] >= 1
            assert np.array_equal(info["final_info"]["_click"], done)


def test_disabled_autoreset_uses_reset_mask(sim_dir: Path) -> None:
    envs = make_vec(sim_dir, 4, autoreset_mode="Disabled")
    envs.reset(seed=0)
    for _ in range(3):
        envs.step(envs.action_space.sample())
    step_col = envs.unwrapped.user_names.index("step")
    mask = np.array([True, False, True, False])
    obs, info = envs.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(obs["user"][:, step_col], [0, 3, 0, 3])
    with pytest.raises(ValueError, match="reset_mask"):
        envs.reset(options={"reset_mask": np.ones(3, bool)})


def test_bad_actions_raise(sim_dir: Path) -> None:
    envs = make_vec(sim_dir, 3)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"candidate indices in \[0, 50\)"):
        envs.step(np.array([0, 50, 1]))
    with pytest.raises(ValueError, match="integers of shape"):
        envs.step(np.zeros(4, np.int64))


def test_one_model_call_per_model_per_step(sim_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    envs = make_vec(sim_dir, 256, slate_size=3, max_episode_steps=3)
    sim = envs.unwrapped.simulator
    calls = {"click": 0, "watch": 0, "cont": 0}
    for name, model in (("click", sim.click), ("watch", sim.watch), ("cont", sim.cont)):
        booster = model.booster
        original = booster.predict

        def counted(
            *args: object, _name: str = name, _f: object = original, **kw: object
        ) -> object:
            calls[_name] += 1
            return _f(*args, **kw)  # type: ignore[operator]

        monkeypatch.setattr(booster, "predict", counted)
    envs.reset(seed=0)
    for t in range(1, 9):
        envs.step(envs.action_space.sample())
        assert calls["click"] == t and calls["cont"] == t and calls["watch"] <= t


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"users": "new", "sampler": "popularity", "slate_size": 3}],
)
def test_100k_random_steps_stay_finite_and_in_space(sim_dir: Path, kwargs: dict) -> None:
    envs = make_vec(sim_dir, 1000, **kwargs)
    space = envs.single_observation_space
    lows = {k: space[k].low for k in space}
    highs = {k: space[k].high for k in space}
    envs.action_space.seed(0)
    obs, _ = envs.reset(seed=0)
    for _ in range(100):  # 100 x 1000 = 100k user-steps
        obs, reward, *_ = envs.step(envs.action_space.sample())
        assert np.isfinite(reward).all()
        for k, value in obs.items():
            assert value.dtype == np.float32 and np.isfinite(value).all()
            assert np.all(value >= lows[k]) and np.all(value <= highs[k])


def test_random_policy_statistics_match_the_single_env(sim_dir: Path) -> None:
    """Episode length and return under a random policy: |difference| < 4 standard errors."""
    env = gym.make("simkit/Session-v0", simulator=str(sim_dir))
    env.action_space.seed(1)
    env.reset(seed=100)
    single_len, single_ret, length, ret = [], [], 0, 0.0
    while len(single_len) < 400:
        _, r, term, trunc, _ = env.step(env.action_space.sample())
        length, ret = length + 1, ret + r
        if term or trunc:
            single_len.append(length)
            single_ret.append(ret)
            length, ret = 0, 0.0
            env.reset()
    envs = make_vec(sim_dir, 256)
    envs.action_space.seed(2)
    envs.reset(seed=200)
    vec_len: list[int] = []
    vec_ret: list[float] = []
    lengths, returns = np.zeros(256, int), np.zeros(256)
    while len(vec_len) < 2000:
        _, r, term, trunc, info = envs.step(envs.action_space.sample())
        stepped = info["_click"]
        lengths += stepped
        returns += r
        for i in np.flatnonzero(term | trunc):
            vec_len.append(int(lengths[i]))
            vec_ret.append(float(returns[i]))
            lengths[i], returns[i] = 0, 0.0
    for a, b in ((single_len, vec_len), (single_ret, vec_ret)):
        a_, b_ = np.asarray(a, float), np.asarray(b, float)
        se = np.sqrt(a_.var(ddof=1) / len(a_) + b_.var(ddof=1) / len(b_))
        assert abs(a_.mean() - b_.mean()) < 4 * se, (a_.mean(), b_.mean(), se)


def test_concentrated_interest_sampler_falls_back_to_exact_draws(sim_dir: Path) -> None:
    """A very low temperature leaves most sessions short of K distinct draws: the race fills them."""
    envs = make_vec(sim_dir, 300, users="new", sampler="interest", temperature=0.02)
    envs.action_space.seed(0)
    obs, info = envs.reset(seed=0)
    for _ in range(10):
        ids = info["candidate_item_ids"]
        assert all(len(set(row)) == ids.shape[1] for row in ids.tolist())
        assert obs in envs.observation_space
        obs, _, _, _, info = envs.step(envs.action_space.sample())
