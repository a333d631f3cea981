"""Serving: export round trips, sealed folders, import isolation, exact propensities, OPE recovery,
shadow ordering."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr

from simkit.cli import main
from simkit.errors import ArtifactError, ConfigError
from simkit.serving import Exploration, InputError, ServedPolicy, export_policy, load_policy
from simkit.serving.policy import position_proba
from simkit.serving.scorers import Column, Constant
from simkit.serving.shadow import read_decision_log, shadow_report, write_decision_log
from simkit.synthetic import World, WorldConfig
from tests._env_fixtures import env_simulator_dir

AGENTS = ("random", "popular", "greedy", "linucb", "lints", "reinforce", "dqn")


# --------------------------------------------------------------------------- trained agents


@pytest.fixture(scope="module")
def session_setup(tmp_path_factory: pytest.TempPathFactory):
    from simkit.agents.baselines import observation_names
    from simkit.agents.train import make_agent, make_env

    sim_dir = env_simulator_dir(tmp_path_factory)
    env = make_env(sim_dir, n_candidates=20)
    sim = env.unwrapped.simulator
    agents = {}
    for name in AGENTS:
        agent = make_agent(name, env, simulator_path=sim_dir)
        rng = np.random.default_rng(1)
        if name == "lints":
            agent.config = dataclasses.replace(agent.config, ensemble_size=30)
            agent.learn_online(env, 150, rng=rng)
        elif name == "linucb":
            agent.config = dataclasses.replace(agent.config, epsilon_mix=0.1)
            agent.learn_online(env, 150, rng=rng)
        elif name == "reinforce":
            agent.config = dataclasses.replace(agent.config, batch_size=64)
            agent.learn_online(env, 200, rng=rng)
        elif name == "dqn":
            agent.config = dataclasses.replace(
                agent.config, learning_starts=100, batch_size=32, hidden=(16, 16)
            )
            agent.learn_online(env, 300, rng=rng)
            agent.epsilon = 0.3  # serve with exploration on
        agents[name] = agent
    observations = []
    obs, _ = env.reset(seed=3)
    for _ in range(25):
        observations.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    names = observation_names(sim)
    root = tmp_path_factory.mktemp("policies")
    folders = {}
    for name, agent in agents.items():
        folders[name] = export_policy(
            agent,
            root / name,
            rng=np.random.default_rng(2),
            context_names=names[0],
            candidate_names=names[1],
            simulator=sim,
        )
    return agents, observations, folders, sim


@pytest.mark.parametrize("name", AGENTS)
def test_exported_policy_reproduces_the_agent(session_setup, name: str) -> None:
    agents, observations, folders, _ = session_setup
    agent, policy = agents[name], load_policy(folders[name])
    for i, obs in enumerate(observations):
        decision = policy.rank(obs["user"], obs["candidates"], rng=np.random.default_rng(i))
        action = agent.act(obs, rng=np.random.default_rng(i))
        assert int(decision.action[0]) == int(action)
        assert decision.action_propensity[0] == pytest.approx(agent.last_propensity, abs=1e-12)
        expected = agent.action_proba(obs, rng=np.random.default_rng(0))
        np.testing.assert_allclose(decision.action_dist[0], expected, atol=1e-12)
        np.testing.assert_allclose(decision.action_dist.sum(axis=1), 1.0)
    if name == "dqn":  # scores are the agent's Q; a batch equals its requests one by one
        obs = observations[0]
        np.testing.assert_allclose(
            policy.scores(obs["user"], obs["candidates"])[0] / agent.config.reward_scale,
            agent.q_values(obs),
            rtol=1e-5,
        )
        users = np.stack([o["user"] for o in observations])
        cands = np.stack([o["candidates"] for o in observations])
        batch = policy.rank(users, cands, rng=np.random.default_rng(7))
        actions = agent.act({"user": users, "candidates": cands}, rng=np.random.default_rng(7))
        np.testing.assert_array_equal(batch.action, actions)


def test_lints_without_an_ensemble_is_refused_then_served_exactly(session_setup, tmp_path) -> None:
    from simkit.agents.lints import LinTS

    agents, observations, _, _ = session_setup
    fresh = LinTS(features="candidates", propensity_samples=200)
    obs = observations[0]
    fresh.act(obs, rng=np.random.default_rng(0))
    assert 0 < fresh.last_propensity_error < 0.2  # declared as an estimate
    with pytest.raises(ConfigError, match="--ensemble-size"):
        export_policy(
            fresh,
            tmp_path / "p",
            rng=np.random.default_rng(0),
            context_names=[f"u{j}" for j in range(obs["user"].size)],
            candidate_names=[f"c{j}" for j in range(obs["candidates"].shape[1])],
        )
    assert agents["lints"].last_propensity_error == 0.0


# --------------------------------------------------------------------------- the folder


def _reseal(folder: Path, **changes: object) -> None:
    from simkit.artifacts import seal

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("integrity")
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(seal(manifest)))


@pytest.mark.parametrize(
    "damage, message",
    [
        ("arrays", "does not match the sha256"),
        ("manifest", "edited after saving"),
        ("sums", "SHA256SUMS"),
        ("resealed", "does not match its sha256 in SHA256SUMS"),
        ("newer", "upgrade simkit"),
        ("extra", "does not list"),
    ],
)
def test_tampered_or_newer_folders_are_refused(session_setup, tmp_path, damage, message) -> None:
    import shutil

    _, _, folders, _ = session_setup
    folder = tmp_path / "p"
    shutil.copytree(folders["linucb"], folder)
    if damage == "arrays":
        data = bytearray((folder / "arrays.npz").read_bytes())
        data[-30] ^= 1
        (folder / "arrays.npz").write_bytes(bytes(data))
    elif damage == "manifest":
        text = (folder / "manifest.json").read_text().replace('"epsilon": 0.1', '"epsilon": 0.2')
        (folder / "manifest.json").write_text(text)
    elif damage == "sums":
        (folder / "SHA256SUMS").write_text("0" * 64 + "  arrays.npz\n")
    elif damage == "resealed":  # a consistent re-seal still disagrees with SHA256SUMS
        settings = load_policy(folders["linucb"]).exploration.to_json()
        _reseal(folder, exploration={**settings, "epsilon": 0.5})
    elif damage == "newer":
        _reseal(folder, format_version=99)
    else:
        (folder / "notes.txt").write_text("hello")
    with pytest.raises(ArtifactError, match=message):
        load_policy(folder)


def test_serving_imports_only_numpy_for_linear_and_mlp_policies(session_setup, tmp_path) -> None:
    _, observations, folders, _ = session_setup
    np.save(tmp_path / "user.npy", observations[0]["user"])
    np.save(tmp_path / "cands.npy", observations[0]["candidates"])
    code = f"""
import sys, numpy as np
import simkit.serving
for name in ("linucb", "lints", "reinforce"):
    p = simkit.serving.load_policy({str(folders["linucb"].parent)!r} + "/" + name)
    p.rank(np.load({str(tmp_path / "user.npy")!r}), np.load({str(tmp_path / "cands.npy")!r}),
           rng=np.random.default_rng(0))
bad = [m for m in ("lightgbm", "pandas", "gymnasium", "scipy", "sklearn") if m in sys.modules]
print(",".join(bad) or "clean")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "clean"


def test_input_checks_name_the_problem(session_setup) -> None:
    _, observations, folders, _ = session_setup
    policy = load_policy(folders["linucb"])
    obs = observations[0]
    with pytest.raises(InputError, match=r"candidates must have shape \(n, K, "):
        policy.rank(obs["user"], obs["candidates"][:, :-1], rng=np.random.default_rng(0))
    bad = obs["candidates"].copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match=r"1 values are NaN or infinite in 1 requests"):
        policy.rank(obs["user"], bad, rng=np.random.default_rng(0))
    ctx = dict(zip(policy.context_names[1:], obs["user"][1:]))
    with pytest.raises(InputError, match=rf"1 are missing \('{policy.context_names[0]}'\)"):
        policy.rank(ctx, obs["candidates"], rng=np.random.default_rng(0))
    named = dict(zip(policy.context_names, obs["user"]))
    d1 = policy.rank(named, obs["candidates"], rng=np.random.default_rng(0))
    d2 = policy.rank(obs["user"], obs["candidates"], rng=np.random.default_rng(0))
    assert d1.items.tolist() == d2.items.tolist()


# --------------------------------------------------------------------------- exact probabilities


@pytest.mark.parametrize(
    "exploration",
    [
        Exploration(rule="greedy", epsilon=0.2),
        Exploration(rule="greedy", epsilon=0.3, slate_size=2),
        Exploration(rule="softmax", temperature=0.7, slate_size=3),
        Exploration(rule="softmax", temperature=0.7, epsilon=0.2, slate_size=2),
        Exploration(rule="topk_softmax", epsilon=0.5, top_k=2, uniform_share=0.2),
        Exploration(rule="uniform", slate_size=2),
    ],
    ids=lambda e: f"{e.rule}-eps{e.epsilon}-L{e.slate_size}",
)
def test_returned_probabilities_match_frequencies_over_1e5_draws(exploration) -> None:
    n = 100_000
    cand = np.array([[1.0], [3.0], [3.0], [0.5], [2.0]])  # a tie at the top
    policy = ServedPolicy(Column(0), ["u"], ["s"], exploration, "test")
    cands = np.broadcast_to(cand, (n, 5, 1))
    d = policy.rank(np.zeros((n, 1)), cands, rng=np.random.default_rng(5))
    np.testing.assert_allclose(d.action_dist.sum(axis=1), 1.0)
    slates, inverse, counts = np.unique(d.items, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    returned = np.zeros(len(slates))
    returned[inverse] = d.slate_propensity  # one value per distinct slate
    for i in range(len(slates)):  # every row of a slate returns the same probability
        assert np.ptp(d.slate_propensity[inverse == i]) < 1e-12
    se = np.sqrt(returned * (1 - returned) / n)
    assert np.all(np.abs(counts / n - returned) <= 4.5 * se + 1e-12)
    assert 0.999 <= returned.sum() <= 1.0 + 1e-9  # the seen slates hold nearly all the mass
    # each position's conditional distribution sums to one
    avail = np.ones((1, 5), dtype=bool)
    avail[0, 1] = False
    p = position_proba(cand[:, 0][None], avail, exploration, 5)[0]
    assert p.sum() == pytest.approx(1.0) and p[0, 1] == 0.0


def test_ensemble_probabilities_match_frequencies() -> None:
    class Draws:
        def score(self, context, candidates):
            m = np.array([[0.0, 1.0, 1.0, 0.2], [2.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
            return np.broadcast_to(m, (len(context), 3, 4))

    n = 100_000
    policy = ServedPolicy(Draws(), ["u"], ["s"], Exploration(rule="ensemble", epsilon=0.1), "t")
    d = policy.rank(np.zeros((n, 1)), np.zeros((n, 4, 1)), rng=np.random.default_rng(0))
    expected = 0.9 * np.array([1 / 3, 1 / 6, 1 / 6, 1 / 3]) + 0.1 / 4
    np.testing.assert_allclose(d.action_dist[0], expected)
    freq = np.bincount(d.action, minlength=4) / n
    assert np.all(np.abs(freq - expected) <= 4.5 * np.sqrt(expected * (1 - expected) / n))


def test_uniform_rule_matches_a_constant_scorer() -> None:
    policy = ServedPolicy(Constant(), ["u"], ["s"], Exploration(rule="uniform"), "t")
    d = policy.rank(np.zeros((3, 1)), np.zeros((3, 4, 1)), rng=np.random.default_rng(0))
    np.testing.assert_allclose(d.propensity, 0.25)


# --------------------------------------------------------------------------- the synthetic world


class Requests:
    """Fresh one-step requests of the synthetic world, with exact per-candidate values."""

    def __init__(self, world: World, n: int, k: int, rng: np.random.Generator) -> None:
        users = rng.integers(world.config.n_users, size=n)
        self.state = world.initial_state(users)
        self.items = np.argsort(rng.random((n, world.config.n_items)), axis=1)[:, :k]
        emb = world.item_embedding[self.items]
        dot = np.einsum("nd,nkd->nk", self.state.interest, emb)
        self.context = np.linalg.norm(self.state.interest, axis=1, keepdims=True)
        self.candidates = np.stack(
            [dot, world.item_clickbait[self.items], world.item_quality[self.items]], axis=2
        )
        self.click = world.click_proba(self.state, self.items)
        mu = world.watch_mean_log(self.state, self.items)
        cap = np.log(world.item_duration[self.items])
        s = 0.8  # E[min(exp(mu + s Z), duration)]
        below = np.exp(mu + s * s / 2) * ndtr((cap - mu - s * s) / s)
        self.watch = self.click * (below + np.exp(cap) * (1 - ndtr((cap - mu) / s)))


def _softmax_policy(weights, folder: Path, epsilon: float = 0.0) -> ServedPolicy:
    from simkit.agents.reinforce import REINFORCE

    agent = REINFORCE(embedding_dim=0)
    agent.build(1, 3, rng=None)
    agent.policy.bias.weight.value[:, 0] = weights
    export_policy(
        agent,
        folder,
        rng=np.random.default_rng(0),
        context_names=["z_norm"],
        candidate_names=["dot", "clickbait", "quality"],
        exploration={"epsilon": epsilon},
    )
    return load_policy(folder)


@pytest.fixture(scope="module")
def world_policies(tmp_path_factory: pytest.TempPathFactory):
    world = World(WorldConfig(n_users=2000, n_items=300), rng=np.random.default_rng(0))
    root = tmp_path_factory.mktemp("world_policies")
    logging = _softmax_policy([0.5, 1.0, 0.5], root / "logging", epsilon=0.2)
    target = _softmax_policy([3.0, -1.0, 1.0], root / "target")
    worse = _softmax_policy([-2.0, 1.5, 0.0], root / "worse")
    big = Requests(world, 60_000, 10, np.random.default_rng(99))
    truth = {
        name: {
            "click": float((p.proba(big.context, big.candidates) * big.click).sum(axis=1).mean()),
            "watch": float((p.proba(big.context, big.candidates) * big.watch).sum(axis=1).mean()),
        }
        for name, p in (("target", target), ("worse", worse), ("logging", logging))
    }
    return world, {"logging": logging, "target": target, "worse": worse}, truth, root


def _fresh_log(world: World, logging: ServedPolicy, n: int, rng: np.random.Generator) -> dict:
    req_rng, act_rng, resp_rng = rng.spawn(3)
    req = Requests(world, n, 10, req_rng)
    d = logging.rank(req.context, req.candidates, rng=act_rng)
    shown = req.items[np.arange(n), d.action]
    click, watch, *_ = world.step(req.state, shown, rng=resp_rng)
    return {
        "context": req.context,
        "candidates": req.candidates,
        "action": d.action,
        "propensity": d.action_propensity,
        "reward": click.astype(np.float64),
        "reward.watch": watch,
        "item_ids": req.items,
    }


def _recovery(world_policies, reps: int, n: int, n_bootstrap: int) -> None:
    from simkit.validation.ope import dr, snips

    world, policies, truth, _ = world_policies
    for reward, key in (("reward", "click"), ("reward.watch", "watch")):
        values = {"SNIPS": [], "DR": []}
        covered = {"SNIPS": 0, "DR": 0}
        for rep in range(reps):
            log = _fresh_log(world, policies["logging"], n, np.random.default_rng(1000 + rep))
            log = {**log, "reward": log[reward]}
            rows = np.arange(n)
            pi = policies["target"].proba(log["context"], log["candidates"])
            pi_a, r, p0 = pi[rows, log["action"]], log["reward"], log["propensity"]
            boot = np.random.default_rng(rep)
            report = shadow_report(policies["target"], log, rng=boot, n_bootstrap=n_bootstrap)
            estimates = {"SNIPS": report.snips, "DR": report.dr}
            assert report.snips.value == pytest.approx(snips(r, pi_a, p0, n_bootstrap=0).value)
            assert dr  # the DR of the report is validation's dr (checked in shadow_report)
            for name, est in estimates.items():
                values[name].append(est.value)
                covered[name] += est.ci_low <= truth["target"][key] <= est.ci_high
        for name in values:
            v = np.asarray(values[name])
            mc_se = v.std(ddof=1) / np.sqrt(reps)
            assert abs(v.mean() - truth["target"][key]) <= 2 * mc_se, (name, key, v.mean())
            assert covered[name] / reps >= 0.9, (name, key, covered[name])


def test_off_policy_recovery_short(world_policies) -> None:
    _recovery(world_policies, reps=20, n=1500, n_bootstrap=200)


@pytest.mark.slow
def test_off_policy_recovery_full(world_policies) -> None:
    _recovery(world_policies, reps=100, n=5000, n_bootstrap=1000)


def test_shadow_orders_two_policies_and_gates_strict_runs(world_policies, tmp_path) -> None:
    world, policies, truth, root = world_policies
    assert truth["target"]["click"] > 1.1 * truth["worse"]["click"]
    log = _fresh_log(world, policies["logging"], 4000, np.random.default_rng(5))
    path = write_decision_log(tmp_path / "fresh.npz", **log)
    assert set(read_decision_log(path)) >= {"context", "action", "propensity"}
    figures = {}
    for name in ("target", "worse"):
        out = tmp_path / f"{name}.html"
        assert main(["shadow", str(root / name), "--logs", str(path), "--out", str(out)]) == 0
        figures[name] = json.loads(out.with_suffix(".json").read_text())
        assert "not a session" in out.read_text() or "rest of the session" in out.read_text()
    assert figures["target"]["dr"]["value"] > figures["worse"]["dr"]["value"]
    assert figures["target"]["snips"]["value"] > figures["worse"]["snips"]["value"]
    args = ["shadow", str(root / "worse"), "--logs", str(path), "--out", str(tmp_path / "w.html")]
    assert main([*args, "--strict"]) == 1  # the worse policy drops the value by far more than 5%
    assert main([*args, "--strict", "--gates", "max_value_drop=10"]) == 0
