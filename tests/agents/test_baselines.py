"""Baselines: most popular and greedy-on-the-click-model; ties, propensities, saving."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from _env_fixtures import env_simulator_dir

import simkit.envs  # noqa: F401  (registers simkit/Session-v0)
from simkit.agents import Agent, GreedyClickAgent, PopularAgent, load_agent
from simkit.agents.baselines import observation_names
from simkit.errors import ArtifactError, ConfigError
from simkit.simulator import Simulator, UserTable


def obs_with(scores: list[float]) -> dict[str, np.ndarray]:
    """An observation whose candidate column 0 holds ``scores``."""
    cands = np.column_stack([scores, np.zeros(len(scores))])
    return {"user": np.zeros(2), "candidates": cands}


# --------------------------------------------------------------------------- popular


def test_popular_shows_the_most_popular_candidate() -> None:
    agent = PopularAgent(column=0)
    assert isinstance(agent, Agent)
    assert agent.act(obs_with([1.0, 4.0, 2.0]), rng=np.random.default_rng(0)) == 1
    assert agent.last_propensity == 1.0
    np.testing.assert_array_equal(agent.action_proba(obs_with([1.0, 4.0, 2.0])), [0, 1, 0])


def test_popular_breaks_ties_uniformly_and_logs_one_over_ties() -> None:
    agent = PopularAgent(column=0)
    obs = obs_with([3.0, 1.0, 3.0, 3.0, 2.0])
    rng = np.random.default_rng(0)
    counts = Counter(agent.act(obs, rng=rng) for _ in range(3000))
    assert set(counts) == {0, 2, 3}
    for a in (0, 2, 3):
        assert abs(counts[a] / 3000 - 1 / 3) < 0.04  # binomial sd 0.009
    assert agent.last_propensity == pytest.approx(1 / 3)
    np.testing.assert_allclose(agent.action_proba(obs), [1 / 3, 0, 1 / 3, 1 / 3, 0])


def test_popular_epsilon_mix_propensities_sum_to_one() -> None:
    agent = PopularAgent(column=0, epsilon_mix=0.2)
    obs = obs_with([3.0, 1.0, 3.0, 0.0])
    proba = agent.action_proba(obs)
    np.testing.assert_allclose(proba, [0.45, 0.05, 0.45, 0.05])
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = agent.act(obs, rng=rng)
        assert agent.last_propensity == pytest.approx(proba[a])


def test_popular_slate_is_ranked_and_its_propensities_count_ties() -> None:
    agent = PopularAgent(column=0, slate_size=3)
    obs = obs_with([5.0, 3.0, 5.0, 1.0, 3.0])
    rng = np.random.default_rng(2)
    slates = Counter()
    for _ in range(4000):
        slate = agent.act(obs, rng=rng)
        assert set(slate[:2]) == {0, 2} and slate[2] in (1, 4)
        np.testing.assert_allclose(agent.last_propensity, [0.5, 0.5, 0.5])
        # two orders of the tie {0, 2} times two choices of the third item
        assert agent.last_slate_propensity == pytest.approx(0.25)
        slates[tuple(slate)] += 1
    assert len(slates) == 4
    assert all(abs(n / 4000 - 0.25) < 0.04 for n in slates.values())


def test_popular_for_env_reads_item_log_pop_by_name(env_sim_dir) -> None:
    env = gym.make("simkit/Session-v0", simulator=env_sim_dir, n_candidates=20)
    agent = PopularAgent.for_env(env)
    names = env.unwrapped.candidate_names
    assert agent.config.column_index == names.index("item_log_pop") == len(names) - 4
    obs, info = env.reset(seed=0)
    action = agent.act(obs, rng=np.random.default_rng(0))
    sim = env.unwrapped.simulator
    pop = sim.catalogue.log_popularity[sim.catalogue.rows(info["candidate_item_ids"])]
    assert pop[action] == pop.max()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slate_size": 0}, "Invalid PopularAgentConfig: slate_size must be at least 1; got 0."),
        (
            {"epsilon_mix": 1.5},
            "Invalid PopularAgentConfig: epsilon_mix must be in [0, 1]; got 1.5.",
        ),
        (
            {"epsilon_mix": 0.1, "slate_size": 2},
            "Invalid PopularAgentConfig: epsilon_mix is only supported with slate_size=1.",
        ),
        (
            {"column": "item_log_pop"},
            "Invalid PopularAgentConfig: column='item_log_pop' is a name, so candidate_names "
            "must list the candidate columns (env.unwrapped.candidate_names).",
        ),
        (
            {"column": "pop", "candidate_names": ("a", "b")},
            "Invalid PopularAgentConfig: column 'pop' is not among the 2 candidate columns (a, b).",
        ),
        (
            {"column": 1.5},
            "Invalid PopularAgentConfig: column must be an int or a str; got 1.5.",
        ),
    ],
)
def test_popular_config_errors(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        PopularAgent(**kwargs)


def test_popular_column_outside_the_rows_is_an_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("(index 5) is outside the 2 candidate")):
        PopularAgent(column=5).act(obs_with([1.0, 2.0]), rng=np.random.default_rng(0))


def test_popular_round_trip(tmp_path) -> None:
    agent = PopularAgent(column="b", candidate_names=("a", "b"), slate_size=2)
    agent.save(tmp_path / "pop")
    loaded = load_agent(tmp_path / "pop")
    assert isinstance(loaded, PopularAgent) and loaded.config == agent.config
    obs = {"user": np.zeros(1), "candidates": np.array([[0, 1.0], [0, 3.0], [0, 3.0], [0, 2.0]])}
    for seed in range(5):
        np.testing.assert_array_equal(
            agent.act(obs, rng=np.random.default_rng(seed)),
            loaded.act(obs, rng=np.random.default_rng(seed)),
        )


# --------------------------------------------------------------------------- greedy


@pytest.fixture(scope="module")
def env_sim_dir(tmp_path_factory):
    return env_simulator_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def greedy(env_sim_dir) -> GreedyClickAgent:
    return GreedyClickAgent(simulator=env_sim_dir)


def test_observation_names_match_the_env(env_sim_dir, greedy) -> None:
    env = gym.make("simkit/Session-v0", simulator=env_sim_dir, n_candidates=20)
    assert observation_names(greedy.simulator) == (
        env.unwrapped.user_names,
        env.unwrapped.candidate_names,
    )


def test_greedy_rebuilds_the_click_features_the_env_scores(env_sim_dir, greedy) -> None:
    """Public contract: the agent's p_click of the shown candidate is the env's ``info``."""
    env = gym.make("simkit/Session-v0", simulator=env_sim_dir, n_candidates=20)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    for _ in range(300):
        p = greedy.click_proba(obs)
        action = int(rng.integers(20))
        obs_next, _, terminated, truncated, info = env.step(action)
        assert p[action] == pytest.approx(info["p_click"][0], abs=1e-9)
        obs = env.reset()[0] if terminated or truncated else obs_next


def test_greedy_feature_rows_equal_the_env_rows(env_sim_dir, greedy) -> None:
    """White box: every candidate's rebuilt row equals the env's own (float32 dot/cos aside)."""
    env = gym.make("simkit/Session-v0", simulator=env_sim_dir, n_candidates=20)
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=4)
    core = env.unwrapped
    for _ in range(50):
        expected = core.simulator.click_features(core._state, core._cands)
        np.testing.assert_allclose(greedy.click_features(obs), expected, rtol=1e-6, atol=1e-6)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(20)))
        if terminated or truncated:
            obs, _ = env.reset()


def test_greedy_shows_the_most_clickable_candidate(env_sim_dir, greedy) -> None:
    env = gym.make("simkit/Session-v0", simulator=env_sim_dir, n_candidates=20)
    obs, _ = env.reset(seed=5)
    assert isinstance(greedy, Agent)
    action = greedy.act(obs, rng=np.random.default_rng(0))
    p = greedy.click_proba(obs)
    assert p[action] == p.max()
    assert greedy.last_propensity == pytest.approx(1.0 / np.sum(p == p.max()))
    np.testing.assert_allclose(greedy.action_proba(obs).sum(), 1.0)


def test_greedy_turns_minus_one_back_into_missing(greedy) -> None:
    sim = greedy.simulator
    feats = sim.users.features.copy()
    feats[0, 0] = np.nan  # column 0 now has a missing value and no -1: -1 in obs means NaN
    users = UserTable(sim.users.user_ids, sim.users.z0, sim.users.hist_n, feats)
    agent = GreedyClickAgent(simulator=dataclasses.replace(sim, users=users))
    user_names, cand_names = observation_names(sim)
    obs = {"user": np.zeros(len(user_names)), "candidates": np.zeros((3, len(cand_names)))}
    obs["user"][user_names.index(sim.spec.user_columns[0])] = -1.0
    assert np.isnan(agent.click_features(obs)[:, 0]).all()
    assert (greedy.click_features(obs)[:, 0] == -1).all()  # the original has no NaN there


def test_greedy_refuses_a_foreign_observation(greedy) -> None:
    with pytest.raises(ValueError, match="expects the session env's observation"):
        greedy.act(obs_with([1.0, 2.0]), rng=np.random.default_rng(0))


def test_greedy_needs_a_simulator() -> None:
    with pytest.raises(ConfigError, match=re.escape("GreedyClickAgent needs the fitted simulator")):
        GreedyClickAgent()


def test_greedy_saves_the_simulator_path_not_the_model(env_sim_dir, greedy, tmp_path) -> None:
    greedy.save(tmp_path / "greedy")
    manifest = json.loads((tmp_path / "greedy" / "manifest.json").read_text())
    assert manifest["config"]["simulator_path"] == str(env_sim_dir.resolve())
    with np.load(tmp_path / "greedy" / "arrays.npz") as arrays:
        assert arrays.files == []
    loaded = load_agent(tmp_path / "greedy")
    env = gym.make("simkit/Session-v0", simulator=env_sim_dir, n_candidates=20)
    obs, _ = env.reset(seed=6)
    np.testing.assert_array_equal(loaded.click_proba(obs), greedy.click_proba(obs))


def test_greedy_from_an_object_saves_only_with_a_path(env_sim_dir, greedy, tmp_path) -> None:
    bare = GreedyClickAgent(simulator=greedy.simulator)
    with pytest.raises(ArtifactError, match="no simulator path to save"):
        bare.save(tmp_path / "bare")
    named = GreedyClickAgent(simulator=greedy.simulator, simulator_path=str(env_sim_dir))
    named.save(tmp_path / "named")
    assert load_agent(tmp_path / "named").config == named.config


def test_greedy_load_reports_a_missing_simulator(env_sim_dir, tmp_path) -> None:
    copy = tmp_path / "sim"
    shutil.copytree(env_sim_dir, copy)
    GreedyClickAgent(simulator=copy).save(tmp_path / "greedy")
    shutil.rmtree(copy)
    with pytest.raises(ArtifactError, match=re.escape(f"simulator folder {copy.resolve()}")):
        load_agent(tmp_path / "greedy")


def test_greedy_load_warns_when_the_simulator_changed(env_sim_dir, tmp_path) -> None:
    copy = tmp_path / "sim"
    shutil.copytree(env_sim_dir, copy)
    GreedyClickAgent(simulator=copy).save(tmp_path / "greedy")
    sim = Simulator.load(copy)
    sim.dynamics = dataclasses.replace(sim.dynamics, eta=0.2)  # another simulator, same folder
    sim.save(copy, overwrite=True)
    with pytest.warns(UserWarning, match="holds another simulator"):
        load_agent(tmp_path / "greedy")


def test_greedy_slate_ranks_by_click_probability(env_sim_dir, greedy) -> None:
    agent = GreedyClickAgent(simulator=greedy.simulator, slate_size=4)
    env = gym.make("simkit/Session-v0", simulator=env_sim_dir, n_candidates=20)
    obs, _ = env.reset(seed=7)
    slate = agent.act(obs, rng=np.random.default_rng(0))
    p = agent.click_proba(obs)
    np.testing.assert_array_equal(p[slate], np.sort(p)[::-1][:4])
    _, group, counts = np.unique(p, return_inverse=True, return_counts=True)
    np.testing.assert_allclose(agent.last_propensity, 1.0 / counts[group[slate]])


def test_docstring_examples_run() -> None:
    import doctest

    from simkit.agents import baselines

    result = doctest.testmod(baselines, extraglobs={"np": np}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
