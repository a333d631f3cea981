"""Agent protocol, save/load round trips, evaluation and DecisionLog validation."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from simkit.agents import (
    REINFORCE,
    Agent,
    DecisionLog,
    EvaluationResult,
    LinTS,
    LinUCB,
    OfflineLearner,
    OnlineLearner,
    RandomAgent,
    evaluate,
    load_agent,
)
from simkit.agents.testenvs import LinearBanditEnv, SlateMNLEnv, StatelessItemEnv
from simkit.errors import ArtifactError, ConfigError, LogError


def trained_agents() -> dict[str, object]:
    env = LinearBanditEnv(world_seed=0)
    rng = np.random.default_rng(0)
    ucb = LinUCB(model="disjoint", batch_size=3, epsilon_mix=0.05)
    ucb.learn_online(env, 50, rng=rng)  # 50 is not a multiple of 3: shadow != published
    ts = LinTS(model="joint", features="outer", propensity_samples=200)
    ts.learn_online(env, 40, rng=rng)
    item_env = StatelessItemEnv()
    pg = REINFORCE(embedding_dim=3, hidden=(4,), batch_size=128)
    pg.learn_from_logs(item_env.sample_logs(2000, rng=rng), rng=rng, n_steps=30)
    return {"random": RandomAgent(), "linucb": ucb, "lints": ts, "reinforce": pg}


@pytest.fixture(scope="module")
def agents() -> dict[str, object]:
    return trained_agents()


def observation_for(name: str) -> dict[str, np.ndarray]:
    env = StatelessItemEnv() if name == "reinforce" else LinearBanditEnv(world_seed=0)
    return env.reset(seed=11)[0]


@pytest.mark.parametrize("name", ["random", "linucb", "lints", "reinforce"])
def test_every_agent_follows_the_protocol(agents, name: str) -> None:
    agent = agents[name]
    assert isinstance(agent, Agent)
    obs = observation_for(name)
    proba = agent.action_proba(obs, rng=np.random.default_rng(0))
    assert proba.shape == (obs["candidates"].shape[0],)
    np.testing.assert_allclose(proba.sum(), 1.0)
    action = agent.act(obs, rng=np.random.default_rng(0))
    assert 0 <= action < obs["candidates"].shape[0]
    assert 0.0 < agent.last_propensity <= 1.0
    if name != "random":
        assert isinstance(agent, OnlineLearner) and isinstance(agent, OfflineLearner)


@pytest.mark.parametrize("name", ["random", "linucb", "lints", "reinforce"])
def test_save_load_round_trip(agents, tmp_path, name: str) -> None:
    agent = agents[name]
    agent.save(tmp_path / "agent")
    loaded = type(agent).load(tmp_path / "agent")
    assert loaded.config == agent.config
    obs = observation_for(name)
    np.testing.assert_array_equal(
        loaded.action_proba(obs, rng=np.random.default_rng(1)),
        agent.action_proba(obs, rng=np.random.default_rng(1)),
    )
    acts = [agent.act(obs, rng=np.random.default_rng(s)) for s in range(20)]
    assert [loaded.act(obs, rng=np.random.default_rng(s)) for s in range(20)] == acts
    assert type(load_agent(tmp_path / "agent")) is type(agent)
    with np.load(tmp_path / "agent" / "arrays.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent"]  # no temp folder left


def test_loaded_agents_keep_learning_identically(agents, tmp_path) -> None:
    """Shadow statistics, optimiser state and counters survive a save."""
    env = LinearBanditEnv(world_seed=0)
    ucb = agents["linucb"]
    ucb.save(tmp_path / "ucb")
    twin = LinUCB.load(tmp_path / "ucb")
    a = ucb.learn_online(env, 7, rng=np.random.default_rng(5))
    b = twin.learn_online(env, 7, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(twin.statistics.theta, ucb.statistics.theta)
    pg = agents["reinforce"]
    pg.save(tmp_path / "pg")
    twin_pg = REINFORCE.load(tmp_path / "pg")
    logs = StatelessItemEnv().sample_logs(500, rng=np.random.default_rng(0))
    pg.learn_from_logs(logs, rng=np.random.default_rng(1), n_steps=5)
    twin_pg.learn_from_logs(logs, rng=np.random.default_rng(1), n_steps=5)
    for p, q in zip(pg.policy_parameters(), twin_pg.policy_parameters()):
        np.testing.assert_array_equal(p.value, q.value)


def test_save_refuses_to_overwrite(agents, tmp_path) -> None:
    agent = agents["linucb"]
    agent.save(tmp_path / "a")
    with pytest.raises(ArtifactError, match="already exists; pass overwrite=True"):
        agent.save(tmp_path / "a")
    agents["lints"].save(tmp_path / "a", overwrite=True)
    assert type(load_agent(tmp_path / "a")) is LinTS
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not an agent")  # an empty folder is replaced
    with pytest.raises(ArtifactError, match="is not a saved agent"):
        agent.save(tmp_path / "notes", overwrite=True)


def test_load_checks_version_class_and_hash(agents, tmp_path) -> None:
    agents["linucb"].save(tmp_path / "a")
    with pytest.raises(ArtifactError, match="holds a LinUCB agent, not a LinTS"):
        LinTS.load(tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="field 'format_version' does not match its sha256"):
        LinUCB.load(tmp_path / "a")  # edited; a genuinely newer folder: tests/test_artifacts.py
    agents["linucb"].save(tmp_path / "b")
    with open(tmp_path / "b" / "arrays.npz", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load_agent(tmp_path / "b")
    with pytest.raises(ArtifactError, match="cannot read manifest.json"):
        load_agent(tmp_path / "missing")


def test_evaluate_reports_returns_lengths_and_clicks() -> None:
    env = LinearBanditEnv(world_seed=2, reward="bernoulli")
    res = evaluate(env, RandomAgent(), 3000, rng=np.random.default_rng(0))
    assert isinstance(res, EvaluationResult)
    assert res.mean_length == 1.0 and res.length_ci == (1.0, 1.0)
    assert res.click_rate == pytest.approx(res.mean_return)
    # the exact click rate of uniform play: mean over contexts of the mean candidate probability
    rng = np.random.default_rng(1)
    exact = np.mean(
        [
            env.expected_rewards(env.reset(seed=int(s))[0]).mean()
            for s in rng.integers(1e9, size=4000)
        ]
    )
    assert res.click_rate_ci[0] - 0.01 < exact < res.click_rate_ci[1] + 0.01
    assert res.return_ci[0] < res.mean_return < res.return_ci[1]

    def oracle(obs, rng):
        return env.oracle_action(obs)

    assert (
        evaluate(env, oracle, 500, rng=np.random.default_rng(0)).mean_return > res.mean_return + 0.1
    )
    again = evaluate(env, RandomAgent(), 3000, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again.returns, res.returns)  # reproducible
    with pytest.raises(ConfigError, match="episodes must be at least 2"):
        evaluate(env, RandomAgent(), 1, rng=np.random.default_rng(0))


def test_evaluate_sums_slate_clicks() -> None:
    env = SlateMNLEnv(n_items=20)
    res = evaluate(env, RandomAgent(slate_size=5), 200, rng=np.random.default_rng(0))
    assert 0.0 < res.click_rate < 1.0
    assert res.click_rate == pytest.approx(res.mean_return)


def test_decision_log_reports_every_problem_at_once() -> None:
    message = (
        "DecisionLog fields are inconsistent: user must have shape (n=3, d_u); got (2, 4); "
        "action must index the 5 candidates; 1 rows are outside (rows [2]); "
        "propensity must lie in (0, 1]; 2 rows do not (rows [0, 2], values [0.0, 1.5]). "
        "Build the log with one row per shown item."
    )
    with pytest.raises(LogError, match=re.escape(message)):
        DecisionLog(
            user=np.zeros((2, 4)),
            candidates=np.eye(5),
            action=np.array([0, 1, 7]),
            reward=np.zeros(3),
            propensity=np.array([0.0, 0.5, 1.5]),
        )


def test_observation_layout_is_checked() -> None:
    with pytest.raises(TypeError, match="dicts with keys 'user'"):
        RandomAgent().act(np.zeros(3), rng=np.random.default_rng(0))
