"""Model uncertainty, coverage and the trust report (issue: can I trust this policy's result?)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simkit.fitters import FitConfig, fit_simulator
from simkit.logs import read_logs, split_logs
from simkit.simulator import Simulator
from simkit.synthetic import World, WorldConfig
from simkit.uncertainty import members, value_spread
from simkit.validation.coverage import item_support
from simkit.validation.policies import GreedyWatchPolicy, run_in_world
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
    return dataclasses.replace(sim, click=_Overestimate(sim.click, col, np.log1p(RARE)))


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


def test_spread_larger_on_rare_items_and_states(setup) -> None:
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
    reason="measured: relative spread 0.129 on interest scaled x4 against 0.155 on logged users; "
    "the trees saturate on far-out dot/cos features, so the members agree there",
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
