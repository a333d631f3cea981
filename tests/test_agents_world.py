"""Agents trained in (or from the logs of) the synthetic world, judged in the TRUE world.

Slow acceptance runs of issue 22 on the bundled sample logs (``data_samples/``, the default world
with seed 0): a simulator is fitted on 80% of the users; the agents act on the other users'
fresh sessions in the world through :class:`simkit.agents.policy.AgentPolicy` and
:func:`simkit.validation.policies.run_in_world` (20 uniform candidates per step). Each test
writes a bar chart with 95% intervals to ``$SIMKIT_FIGURE_DIR`` (default: pytest's tmp_path).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simkit.agents.policy import AgentPolicy
from simkit.logs import read_logs, split_logs
from simkit.synthetic import World, WorldConfig
from simkit.validation.policies import GreedyClickPolicy, run_in_world
from simkit.validation.sessions import heldout_sessions

pytestmark = pytest.mark.slow

K = 20  # candidates per step, in the records, the env and the world
N_SESSIONS = 2000  # per policy


@pytest.fixture(scope="module")
def setup(samples_dir):
    from simkit.fitters import FitConfig, fit_simulator

    world = World(WorldConfig(), rng=np.random.default_rng(0).spawn(2)[0])  # simkit synth --seed 0
    logs = read_logs(samples_dir / "logs.parquet", items=samples_dir / "items.parquet")
    assert np.allclose(world.items["item_quality"], logs.items["item_quality"])
    train, held = split_logs(logs, by="user", holdout=0.2, rng=np.random.default_rng(0))
    sim = fit_simulator(train, FitConfig(), rng=np.random.default_rng(0))
    h = heldout_sessions(sim, held)
    users = h.user_of_session[np.random.default_rng(1).integers(h.n_sessions, size=N_SESSIONS)]
    return world, sim, train, h, users


def _ci(x: np.ndarray) -> tuple[float, float, float]:
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def _figure(name: str, title: str, panels: dict[str, dict[str, tuple[float, float, float]]], tmp):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(panels), 3.6), dpi=100)
    for j, (ylabel, bars) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), j + 1)
        means = [m for m, _, _ in bars.values()]
        err = [[m - lo for m, lo, _ in bars.values()], [hi - m for m, _, hi in bars.values()]]
        ax.bar(list(bars), means, yerr=err, capsize=4, color="tab:blue")
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    folder = Path(os.environ.get("SIMKIT_FIGURE_DIR", tmp))
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / name)
    print(f"figure: {folder / name}")


class _CountingWorld:
    """The world, counting each session's long watches (>= 10 s) as :func:`run_in_world` runs.

    ``run_in_world`` keeps the running sessions in order and drops those that leave; this proxy
    follows the same bookkeeping from ``step``'s continuation flags, and the test checks that its
    per-session lengths equal the run's.
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def __getattr__(self, name):
        return getattr(self.world, name)

    def initial_state(self, rows):
        self.alive = np.arange(len(rows))
        self.long = np.zeros(len(rows))
        self.length = np.zeros(len(rows))
        return self.world.initial_state(rows)

    def step(self, truth, items, *, rng):
        out = self.world.step(truth, items, rng=rng)
        _, watch, cont = out[:3]
        self.long[self.alive] += watch >= 10.0
        self.length[self.alive] += 1
        self.alive = self.alive[np.flatnonzero(cont)]
        return out


@pytest.fixture(scope="module")
def reinforce_values(setup, tmp_path_factory):
    """True watch time per session (mean, 95% CI) of the logging policy and REINFORCE variants."""
    from simkit.agents.from_logs import decisions_from_logs, slate_size_of
    from simkit.agents.reinforce import REINFORCE

    world, sim, train, h, users = setup
    rows = pd.Index(world.user_ids).get_indexer(h.user_ids[users])
    logging = world.run_policy(
        world.logging_policy, N_SESSIONS, rng=np.random.default_rng(3), users=rows
    )
    lo_half = 1.96 * logging.watch_time_se
    values = {
        "logging": (logging.watch_time, logging.watch_time - lo_half, logging.watch_time + lo_half)
    }
    logged = decisions_from_logs(sim, train, n_candidates=K, rng=np.random.default_rng(0))
    bare = decisions_from_logs(
        sim, train, n_candidates=K, rng=np.random.default_rng(0), propensities="none"
    )
    k = slate_size_of(train)  # 1: the sample logs show one item per step
    variants = {
        "top-K, logged": (dict(correction="topk", top_k=k), logged),
        "no correction": (dict(correction="none"), logged),
        "top-K, estimated": (dict(correction="topk", top_k=k, propensity_source="estimated"), bare),
    }
    for name, (kw, records) in variants.items():
        agent = REINFORCE(**kw)
        agent.learn_from_logs(records, rng=np.random.default_rng(4), n_epochs=10)
        v = run_in_world(
            world, sim, AgentPolicy(agent, name), h, users, rng=np.random.default_rng(2),
            n_candidates=K,
        )  # fmt: skip
        values[name] = _ci(v.watch)
    print({n: tuple(round(x, 1) for x in v) for n, v in values.items()})
    _figure(
        "reinforce_from_logs_world.png",
        f"REINFORCE from the sample logs, true world, {N_SESSIONS} sessions each (95% CI)",
        {"watch time per session (s)": values},
        tmp_path_factory.mktemp("figures"),
    )
    return values


def test_reinforce_from_logs_beats_the_logging_policy_and_no_correction(reinforce_values) -> None:
    top, none, log = (reinforce_values[n] for n in ("top-K, logged", "no correction", "logging"))
    assert top[1] > log[2], f"top-K {top} does not beat the logging policy {log}"
    assert top[1] > none[2], f"top-K {top} does not beat the uncorrected variant {none}"


# measured (10 epochs, this test): logged 289.9 s, estimated 400.4 s (+38%); with 30 epochs
# logged 313.6 s, estimated 201.5 s (-36%): the estimated path is better or worse by far more
# than 10% depending on how long it trains, so the 10% bar is not met
@pytest.mark.xfail(strict=True, reason="estimated-beta path is not within 10% of the logged path")
def test_estimated_beta_path_is_within_ten_percent_of_logged(reinforce_values) -> None:
    top, est = reinforce_values["top-K, logged"], reinforce_values["top-K, estimated"]
    assert abs(est[0] / top[0] - 1) <= 0.10, f"estimated beta {est} vs logged {top}"


def test_dqn_beats_greedy_click_on_session_length_and_long_watches(setup, tmp_path) -> None:
    from simkit.agents.dqn import DQN
    from simkit.envs import SessionVectorEnv

    world, sim, _, h, users = setup
    env = SessionVectorEnv(sim, num_envs=16, n_candidates=K, max_episode_steps=200)
    agent = DQN(gamma=0.75)
    agent.learn_online(env, 20_000, rng=np.random.default_rng(0))
    agent.set_reward_prior(None)  # the adapter attaches the simulator's immediate values
    figures: dict[str, dict[str, tuple[float, float, float]]] = {
        "session length (steps)": {},
        "long watches (>= 10 s) per session": {},
    }
    for policy in (GreedyClickPolicy(), AgentPolicy(agent, "dqn (gamma 0.75)")):
        counting = _CountingWorld(world)
        v = run_in_world(
            counting,
            sim,
            policy,
            h,
            users,
            rng=np.random.default_rng(2),
            n_candidates=K,  # type: ignore[arg-type]
        )
        np.testing.assert_array_equal(counting.length, v.length)
        figures["session length (steps)"][policy.name] = _ci(v.length)
        figures["long watches (>= 10 s) per session"][policy.name] = _ci(counting.long)
    print(figures)
    _figure(
        "dqn_vs_greedy_world.png",
        f"DQN trained in the simulator vs greedy click model, true world, {N_SESSIONS} sessions",
        figures,
        tmp_path,
    )
    for panel in figures.values():
        greedy, dqn = panel["greedy-click"], panel["dqn (gamma 0.75)"]
        assert dqn[1] > greedy[2], f"DQN {dqn} does not beat greedy {greedy} outside the CIs"
