"""Model uncertainty, coverage and the trust report (issue: can I trust this policy's result?)."""

from __future__ import annotations

import dataclasses
import re
import types

import numpy as np
import pytest

from simkit.fitters import FitConfig, fit_simulator
from simkit.logs import read_logs, split_logs
from simkit.session import immediate_values
from simkit.simulator import Simulator
from simkit.synthetic import World, WorldConfig
from simkit.uncertainty import members, rows_deviation, rows_spread, value_spread
from simkit.validation.confounding import ConfoundingResult
from simkit.validation.coverage import item_support, state_log_density, state_support
from simkit.validation.gates import Gates
from simkit.validation.policies import GreedyWatchPolicy, run_in_world
from simkit.validation.ranking import PolicyResult, RankingResult, ranking_metrics
from simkit.validation.sessions import heldout_sessions
from simkit.validation.trust import trust_report

RARE = 20  # impressions below which an item is "rarely logged"


@pytest.fixture(scope="module")
def setup():
    world = World(WorldConfig(n_users=600, n_items=200), rng=np.random.default_rng(3))
    logs = read_logs(world.generate_logs(3000, rng=np.random.default_rng(4)), items=world.items)
    train, hold = split_logs(logs, by="user", holdout=0.3, rng=np.random.default_rng(1))
    sim = fit_simulator(train, FitConfig(n_estimators=40, ensemble=3), rng=np.random.default_rng(5))
    return world, sim, hold


class _Overestimate:
    """A click model that overestimates the rarely logged items (the planted model error)."""

    def __init__(self, base, column: int, max_log_pop: float) -> None:
        self.base, self.column, self.max_log_pop = base, column, max_log_pop

    def proba(self, x):
        p = self.base.proba(x)
        return np.where(x[:, self.column] < self.max_log_pop, np.maximum(p, 0.95), p)


def _broken(sim: Simulator) -> Simulator:
    col = list(sim.spec.click_names).index("item_log_pop")
    broken = _Overestimate(sim.click, col, np.log1p(RARE))  # duck-types the click model
    return dataclasses.replace(sim, click=broken)  # type: ignore[arg-type]


def test_members_round_trip_and_accessor(setup, tmp_path) -> None:
    _, sim, _ = setup
    assert {k: len(v) for k, v in sim.extras.items() if k.endswith("members")} == {
        "click_members": 3,
        "watch_members": 3,
        "continue_members": 3,
    }
    back = Simulator.load(sim.save(tmp_path / "sim"))
    state = sim.initial_state(sim.sample_users(6, rng=np.random.default_rng(0)))
    items = np.tile(np.arange(4), (6, 1))
    m1, s1 = value_spread(sim, state, items)
    m2, s2 = back.value_spread(state, items)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(s1, s2)
    assert m1.shape == (6, 4) and (s1 > 0).all()


@pytest.mark.xfail(
    strict=True,
    reason="members early-stopped on whole held-out sessions barely spread more on rare items. "
    "Measured: relative spread 0.143 on the 20 least shown items against 0.139 on the 20 most "
    "shown (0.149 vs 0.136 on the 8 items shown under 20 times; absolute spread 2.51 vs 3.90). "
    "The 0.190 vs 0.155 measured before came from members whose early-stopping rows held copies "
    "of their training users, so they never stopped (in a default fit of 40k rows: 2,000 trees against the fit's 154). Item "
    "rarity is judged by the coverage's item support (the planted-error test).",
)
def test_spread_larger_on_rare_items(setup) -> None:
    _, sim, _ = setup
    users = sim.sample_users(200, rng=np.random.default_rng(0))
    state = sim.initial_state(users)
    imp = np.expm1(sim.catalogue.log_popularity[: sim.n_items])
    order = np.argsort(imp)
    rare, common = order[:20], order[-20:]
    m_rare, s_rare = value_spread(sim, state, np.tile(rare, (200, 1)))
    m_common, s_common = value_spread(sim, state, np.tile(common, (200, 1)))
    rel_rare, rel_common = s_rare.sum() / m_rare.sum(), s_common.sum() / m_common.sum()
    print(f"relative spread rare items {rel_rare:.3f}, common items {rel_common:.3f}")
    assert rel_rare > 1.1 * rel_common


@pytest.mark.xfail(
    strict=True,
    reason="bootstrap members of tree models do not spread on rare states. Measured: relative "
    "spread 0.134 on interest scaled x4 against 0.139 on logged users (the trees are constant "
    "beyond their last split, so every member repeats its edge leaf there); on the 10% of 3,000 "
    "logged users' start states least dense under the user mixture 0.142 against 0.144 on the "
    "densest half. State rarity is judged by the coverage's state support instead "
    "(test_state_support_marks_far_states).",
)
def test_spread_larger_on_rare_states(setup) -> None:
    _, sim, _ = setup
    users = sim.sample_users(200, rng=np.random.default_rng(0))
    imp = np.expm1(sim.catalogue.log_popularity[: sim.n_items])
    common = np.argsort(imp)[-20:]
    m_common, s_common = value_spread(sim, sim.initial_state(users), np.tile(common, (200, 1)))
    rel_common = s_common.sum() / m_common.sum()
    # rare states: interest far out of the logged users' range
    far = dataclasses.replace(users, z0=users.z0 * 4.0)
    m_far, s_far = value_spread(sim, sim.initial_state(far), np.tile(common, (200, 1)))
    rel_far = s_far.sum() / m_far.sum()
    print(f"relative spread far states {rel_far:.3f}, logged states {rel_common:.3f}")
    assert rel_far > 1.1 * rel_common


def test_state_support_marks_far_states(setup) -> None:
    """What the member spread cannot see, the state support does: far-out states are unsupported."""
    _, sim, _ = setup
    users = sim.sample_users(200, rng=np.random.default_rng(0))
    threshold, known = state_support(sim)
    far = state_log_density(sim, users.z0 * 4.0) >= threshold
    logged = state_log_density(sim, users.z0) >= threshold
    print(f"supported: far states {far.mean():.1%}, logged states {logged.mean():.1%}")
    assert far.mean() < 0.05 and logged.mean() > 0.95
    assert np.mean(known >= threshold) == pytest.approx(0.99, abs=0.01)


def test_planted_error_is_flagged_with_coverage_and_member_spread(setup) -> None:
    world, sim, hold = setup
    broken = _broken(sim)
    assert item_support(sim, min_impressions=RARE).mean() > 0.8  # the group is rare
    rep = trust_report(
        broken,
        GreedyWatchPolicy(),
        hold,
        rng=np.random.default_rng(0),
        n_sessions=150,
        confounding=False,
        ope_sessions=50,
    )
    print(rep.text())
    kinds = {f.kind: f.message for f in rep.flags}
    assert set(kinds) == {"coverage", "members"}
    assert f"only {rep.coverage.pair:.0%} of the policy's chosen" in kinds["coverage"]
    assert rep.coverage.item < 0.8
    assert "above the members' mean" in kinds["members"]
    assert rep.coverage.value_main > 1.25 * rep.coverage.value_mean
    # the exploit's simulated value is above its true value
    held = heldout_sessions(broken, hold)
    users = held.user_of_session[np.random.default_rng(1).integers(held.n_sessions, size=300)]
    truth = run_in_world(
        world, broken, GreedyWatchPolicy(), held, users, rng=np.random.default_rng(2)
    )
    lo = rep.value_ci[0]
    print(f"simulated {rep.value:.1f} (CI low {lo:.1f}), true {truth.watch.mean():.1f}")
    assert lo > truth.watch.mean()


@pytest.mark.slow
def test_greedy_on_the_unbroken_simulator_is_not_flagged(setup) -> None:
    _, sim, hold = setup
    rep = trust_report(
        sim,
        GreedyWatchPolicy(),
        hold,
        rng=np.random.default_rng(0),
        n_sessions=150,
        confounding=False,
        ope_sessions=50,
    )
    print(rep.text())
    assert rep.trusted, rep.text()


def test_env_penalty_subtracts_spread(setup) -> None:
    from simkit.envs import SessionEnv

    _, sim, _ = setup
    plain = SessionEnv(sim, n_candidates=5)
    pess = SessionEnv(sim, n_candidates=5, uncertainty_penalty=2.0)
    plain.reset(seed=3)
    pess.reset(seed=3)
    for _ in range(5):
        _, r0, t0, _, i0 = plain.step(0)
        _, r1, t1, _, i1 = pess.step(0)
        assert i0["spread"] == i1["spread"] > 0
        assert r1 == pytest.approx(r0 - 2.0 * i0["spread"])
        if t0:
            break
    assert len(members(sim)) == 3


def test_penalty_is_the_members_deviation_from_the_simulator(setup) -> None:
    """The penalty's spread: sqrt((M-1)/M s^2 + (members' mean - simulator's value)^2)."""
    _, sim, _ = setup
    broken = _broken(sim)
    state = broken.initial_state(broken.sample_users(30, rng=np.random.default_rng(0)))
    items = np.tile(np.arange(12), (30, 1))
    x, duration = broken.click_features(state, items), broken.catalogue.duration[items]
    mean, spread = rows_spread(broken, x, duration)
    own = immediate_values(broken, state, items)
    dev = rows_deviation(broken, x, duration)
    np.testing.assert_allclose(dev**2, 2 / 3 * spread**2 + (mean - own) ** 2, rtol=1e-9)


def test_penalty_steers_the_warm_start_away_from_planted_items(setup) -> None:
    """Cheap version of the DQN acceptance: the warm start (Q = the env's immediate values, what
    an untrained DQN picks) exploits the planted items without the penalty and avoids them with
    it; the members' own spread alone would not (it is no larger on the planted items)."""
    from simkit.envs import SessionVectorEnv

    _, sim, _ = setup
    broken = _broken(sim)
    planted = ~item_support(sim, min_impressions=RARE)
    share = {}
    for c in (0.0, 1.0):
        env = SessionVectorEnv(broken, num_envs=300, n_candidates=20, uncertainty_penalty=c)
        obs, info = env.reset(seed=4)
        ids = np.asarray(info["candidate_item_ids"])
        rows = broken.catalogue.rows(ids.ravel()).reshape(ids.shape)
        pick = np.argmax(env.immediate_values(obs), axis=1)
        offered = planted[rows].any(axis=1)
        share[c] = planted[rows[np.arange(300), pick]][offered].mean()
    print(
        f"greedy on immediate values picks a planted item when offered: {share[0.0]:.0%} "
        f"without the penalty, {share[1.0]:.0%} with uncertainty_penalty=1"
    )
    assert share[0.0] > 0.6 and share[1.0] < 0.2  # measured 78% and 7%
    users = sim.sample_users(200, rng=np.random.default_rng(0))
    state = sim.initial_state(users)
    rare = np.flatnonzero(planted)
    common = np.argsort(np.expm1(sim.catalogue.log_popularity[: sim.n_items]))[-len(rare) :]
    _, s_rare = value_spread(broken, state, np.tile(rare, (200, 1)))
    _, s_common = value_spread(broken, state, np.tile(common, (200, 1)))
    print(f"members' own spread: planted items {s_rare.mean():.2f}, common {s_common.mean():.2f}")
    assert s_rare.mean() < 1.5 * s_common.mean()


# ------------------------------------------------------------------ fidelity report's value errors


def _policy(name: str, sim: float, ref: float, lo: float, hi: float) -> PolicyResult:
    rel = (sim / ref - 1.0, sim / hi - 1.0, sim / lo - 1.0)
    return PolicyResult(
        name=name,
        sim={"watch": sim},
        sim_se={"watch": 0.1},
        ref={"watch": ref},
        ref_se={"watch": (hi - lo) / 3.92},
        rel_error={"watch": rel},
    )


def test_value_errors_are_point_errors_with_intervals_never_zero() -> None:
    """38.6 simulated against a noisy 32.4 [25, 45] is a 19% error, not 0 (issue's finding)."""
    policies = (
        _policy("a", 38.6, 32.4, 25.0, 45.0),
        _policy("b", 20.0, 21.0, 15.0, 30.0),
        _policy("c", 10.0, 12.0, 8.0, 18.0),
    )
    gates = Gates(value_error_max_max=0.15)
    noisy = ranking_metrics(policies, gates=gates, kinds={"watch": "watch"}, beyond_noise=True)
    metrics = {m.key: m for m in noisy}
    worst = metrics["ranking.max_error.watch"]
    assert worst.value == pytest.approx(38.6 / 32.4 - 1.0)  # the point error, 19%
    assert (worst.ci_low, worst.ci_high) == pytest.approx((0.0, 38.6 / 25.0 - 1.0))
    assert worst.passed is True  # the gate reads the error beyond the interval: 0 here
    assert "gated on the error beyond the off-policy reference's 95% interval, 0.0%" in worst.note
    mean = metrics["ranking.mean_error.watch"]
    assert mean.value == pytest.approx(np.mean([38.6 / 32.4 - 1, 1 - 20 / 21, 1 - 10 / 12]))
    assert mean.ci_high > mean.value > mean.ci_low >= 0
    # without a noisy reference the point error is the gate's figure too
    exact = {m.key: m for m in ranking_metrics(policies, gates=gates, kinds={"watch": "watch"})}
    assert exact["ranking.max_error.watch"].value == worst.value
    assert exact["ranking.max_error.watch"].passed is False


def test_report_says_which_check_to_believe_when_the_reference_is_noisy() -> None:
    from simkit.validation import report

    policies = (_policy("a", 38.6, 32.4, 25.0, 45.0), _policy("b", 20.0, 21.0, 15.0, 30.0))
    ranking = RankingResult(
        reference="off-policy estimates (SNIPS) of the per-decision value",
        policies=policies,
        metrics=(),
        n_sessions=100,
        n_candidates=20,
    )
    conf = dataclasses.replace(_CONFOUNDING, fired=True)
    fake = types.SimpleNamespace(ranking=ranking, confounding=conf, gates=Gates())
    text = report._which_check(fake)
    assert text.startswith("The off-policy reference is too noisy to gate on")
    assert "Believe the confounding check below (it fired on these logs)" in text
    assert "simkit trust SIM RUN --logs LOGS" in text
    world = dataclasses.replace(ranking, reference="the ground-truth world")
    assert report._which_check(types.SimpleNamespace(ranking=world, confounding=conf)) == ""


_CONFOUNDING = ConfoundingResult(
    ran=True,
    fired=False,
    gain=0.0,
    ci_low=-0.001,
    ci_high=0.001,
    threshold=0.005,
    log_loss_without=0.5,
    log_loss_with=0.5,
    n_rows=1000,
    n_users=100,
    message="quiet",
)


# ----------------------------------------------------- trained DQNs (slow: figures in the report)

DQN_STEPS = 20_000


def _train_dqn(sim: Simulator, penalty: float):
    from simkit.agents.dqn import DQN
    from simkit.envs import SessionVectorEnv

    env = SessionVectorEnv(sim, num_envs=16, n_candidates=20, uncertainty_penalty=penalty)
    agent = DQN(reward_scale=0.05, learning_starts=1000)  # watch seconds near Huber's threshold
    agent.learn_online(env, DQN_STEPS, rng=np.random.default_rng(7))
    return agent  # its reward prior stays the training env's (penalised) immediate values


@pytest.fixture(scope="module")
def dqns(setup):
    _, sim, _ = setup
    broken = _broken(sim)
    return {
        "unbroken": _train_dqn(sim, 0.0),
        "broken": _train_dqn(broken, 0.0),
        "broken, penalty 1": _train_dqn(broken, 1.0),
    }


def _boot(x: np.ndarray, rng: np.random.Generator, n: int = 1000) -> tuple[float, float]:
    means = x[rng.integers(len(x), size=(n, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


@pytest.mark.slow
def test_well_trained_dqn_on_the_unbroken_simulator_is_not_flagged(setup, dqns) -> None:
    from simkit.agents.policy import AgentPolicy

    _, sim, hold = setup
    rep = trust_report(
        sim,
        AgentPolicy(dqns["unbroken"], "dqn"),
        hold,
        rng=np.random.default_rng(0),
        n_sessions=300,
        confounding=False,
        ope_sessions=100,
    )
    print(rep.text())
    assert rep.trusted, rep.text()
    assert rep.gain > 0  # well trained: better than the logging policy in the simulator


@pytest.mark.slow
def test_penalty_makes_the_dqn_avoid_the_planted_items_and_gain_true_value(setup, dqns) -> None:
    from simkit.agents.policy import AgentPolicy
    from simkit.validation.coverage import policy_coverage

    world, sim, hold = setup
    broken = _broken(sim)
    held = heldout_sessions(broken, hold)
    users = held.user_of_session[np.random.default_rng(1).integers(held.n_sessions, size=1000)]
    share, share_ci, truth, truth_ci = {}, {}, {}, {}
    rng = np.random.default_rng(9)
    for name in ("broken", "broken, penalty 1"):
        policy = AgentPolicy(dqns[name], name)
        cov, values = policy_coverage(
            broken, policy, held, users, rng=np.random.default_rng(2), min_impressions=RARE
        )
        # planted choices per session over decisions: a ratio of sums, bootstrapped by session
        hits, steps = (1.0 - cov.episode_item) * values.length, values.length
        idx = rng.integers(len(users), size=(1000, len(users)))
        ratios = hits[idx].sum(axis=1) / steps[idx].sum(axis=1)
        share[name] = hits.sum() / steps.sum()
        share_ci[name] = (np.percentile(ratios, 2.5), np.percentile(ratios, 97.5))
        truth[name] = run_in_world(
            world, broken, policy, held, users, rng=np.random.default_rng(3)
        ).watch
        truth_ci[name] = _boot(truth[name], rng)
        print(
            f"{name}: planted items {share[name]:.1%} of choices (95% CI {share_ci[name][0]:.1%}"
            f"-{share_ci[name][1]:.1%}); true value {truth[name].mean():.1f} (95% CI "
            f"{truth_ci[name][0]:.1f}-{truth_ci[name][1]:.1f})"
        )
    diff = truth["broken, penalty 1"] - truth["broken"]
    lo, hi = _boot(diff, rng)
    print(f"paired true gain of the penalty {diff.mean():+.1f} (95% CI [{lo:+.1f}, {hi:+.1f}])")
    assert share_ci["broken, penalty 1"][1] < share_ci["broken"][0]
    assert share["broken, penalty 1"] < 0.5 * share["broken"]
    assert truth_ci["broken, penalty 1"][0] > truth_ci["broken"][1]
    assert lo > 0


# ------------------------------------------------------------- confounded logs (slow: figures)


@pytest.fixture(scope="module")
def confounded():
    """The full-size world (its confounding check has the power to fire), a DQN trained in it."""
    out = {}
    for conf in (True, False):
        world = World(WorldConfig(confounded=conf), rng=np.random.default_rng(0))
        frame = world.generate_logs(10_000, rng=np.random.default_rng(100))
        logs = read_logs(frame, items=world.items)
        train, hold = split_logs(logs, by="user", holdout=0.3, rng=np.random.default_rng(1))
        config = FitConfig(learning_rate=0.2, n_estimators=60, ensemble=3)
        sim = fit_simulator(train, config, rng=np.random.default_rng(2))
        from simkit.agents.dqn import DQN
        from simkit.envs import SessionVectorEnv

        agent = DQN(reward_scale=0.05, learning_starts=1000)
        agent.learn_online(
            SessionVectorEnv(sim, num_envs=16, n_candidates=20), 8000, rng=np.random.default_rng(7)
        )
        out[conf] = (sim, hold, agent)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("conf", [True, False], ids=["confounded", "unconfounded"])
def test_policy_trained_on_confounded_logs_is_flagged(confounded, conf: bool) -> None:
    from simkit.agents.policy import AgentPolicy

    sim, hold, agent = confounded[conf]
    rep = trust_report(
        sim,
        AgentPolicy(agent, "dqn"),
        hold,
        rng=np.random.default_rng(0),
        n_sessions=200,
        ope_sessions=100,
    )
    print(rep.text())
    kinds = {f.kind: f.message for f in rep.flags}
    assert rep.confounding is not None and rep.confounding.fired is conf
    if conf:
        assert "confounding" in rep.verdict
        assert kinds["confounding"].startswith("Confounded logs: the confounding check fired")
    else:
        assert "confounding" not in kinds


@pytest.mark.slow
def test_evaluate_prints_the_trust_verdict_per_agent(setup, tmp_path, capsys) -> None:
    from simkit.cli import main

    world, sim, hold = setup
    sim_dir = sim.save(tmp_path / "sim")
    hold.frame.to_csv(tmp_path / "hold.csv", index=False)
    world.items.to_csv(tmp_path / "items.csv", index=False)
    run = tmp_path / "run"
    assert (
        main(["train", str(sim_dir), "--agent", "random", "--steps", "50", "--out", str(run)]) == 0
    )
    capsys.readouterr()
    argv = ["evaluate", str(sim_dir), "--agents", str(run), "--episodes", "20", "--quiet"]
    argv += ["--out", str(tmp_path / "eval.png"), "--logs", str(tmp_path / "hold.csv")]
    assert main([*argv, "--items", str(tmp_path / "items.csv")]) == 0
    out = capsys.readouterr().out
    print(out)
    assert f"Trust verdicts (held-out logs {tmp_path / 'hold.csv'}" in out
    verdict = re.search(r"^  agent:run \(random\): (.*)$", out, flags=re.M)
    assert verdict is not None, out
    assert verdict.group(1) in (
        "no reason found to doubt the simulated result",
        "do not trust the simulated result (coverage)",
        "do not trust the simulated result (members)",
        "do not trust the simulated result (coverage, members)",
    )
