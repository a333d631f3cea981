"""Training diagnostics: each warning provoked and silent, the NaN guards, the run-folder files."""

from __future__ import annotations

import re

import numpy as np
import pytest

from simkit.diagnostics import (
    Diagnostics,
    DiagnosticWarning,
    TrainingDiverged,
    diagnosing,
    entropy,
    observe_reward,
    record,
    weight_stats,
)
from simkit.errors import TrainingDivergedError


def _feed(diag: Diagnostics, n: int, **series: np.ndarray) -> None:
    with diagnosing(diag):
        for i in range(n):
            record(**{k: float(v[i]) for k, v in series.items()})


def test_cap_share_warning_fires_above_a_third_and_not_below() -> None:
    loud, quiet = Diagnostics(), Diagnostics()
    _feed(loud, 40, cap_share=np.full(40, 0.45))
    _feed(quiet, 40, cap_share=np.full(40, 0.2))
    (msg,) = loud.warnings()
    assert "45% of the importance weights sat at the cap" in msg and "Fix:" in msg
    assert quiet.warnings() == []


def test_entropy_collapse_warning_early_but_not_for_a_slow_decline() -> None:
    collapse, slow = Diagnostics(), Diagnostics()
    early = np.r_[np.linspace(3.0, 0.05, 10), np.full(90, 0.05)]
    _feed(collapse, 100, entropy=early)
    _feed(slow, 100, entropy=np.linspace(3.0, 0.2, 100))  # below 10% only late
    (msg,) = collapse.warnings()
    assert "entropy collapsed early" in msg and "update" in msg and "entropy_coef" in msg
    assert slow.warnings() == []


def test_reward_variance_warning_on_constant_rewards_only() -> None:
    const, varied = Diagnostics(), Diagnostics()
    with diagnosing(const):
        observe_reward(np.full(200, 3.0))
    with diagnosing(varied):
        observe_reward(np.random.default_rng(0).exponential(size=200))
    (msg,) = const.warnings()
    assert "reward variance is near zero" in msg and "200 rewards" in msg
    assert varied.warnings() == []


def test_nan_quantity_stops_with_update_and_name() -> None:
    diag = Diagnostics()
    with diagnosing(diag):
        observe_reward([1.0, 2.0])
        record(critic_loss=0.5)
        with pytest.raises(
            TrainingDiverged, match=re.escape("update 2 (env step 2): the critic loss is nan")
        ):
            record(critic_loss=float("nan"))


def test_nan_reward_stops_training_with_the_step(tiny_simulator) -> None:
    from simkit.agents.reinforce import REINFORCE
    from simkit.agents.train import EpisodeRecorder
    from simkit.envs import SessionEnv

    calls = {"n": 0}

    def reward(click: int, watch: float, info: dict) -> float:
        calls["n"] += 1
        return float("nan") if calls["n"] == 7 else watch

    env = EpisodeRecorder(SessionEnv(tiny_simulator, n_candidates=5, reward=reward))
    agent = REINFORCE()
    with diagnosing(Diagnostics()), pytest.raises(TrainingDivergedError) as err:
        agent.learn_online(env, 200, rng=np.random.default_rng(0))
    assert "env step 7" in str(err.value) and "the reward is nan" in str(err.value)


def test_helpers_and_files(tmp_path) -> None:
    assert weight_stats([1.0, 1.0], cap=5.0) == {"cap_share": 0.0, "ess_share": 1.0}
    assert entropy([[1.0, 0.0]]) == 0.0
    diag = Diagnostics()
    _feed(diag, 30, entropy=np.linspace(2, 1, 30), td_error=np.ones(30))
    with diagnosing(diag):
        observe_reward(np.full(60, 1.0))
    with pytest.warns(DiagnosticWarning, match="reward variance is near zero"):
        messages = diag.finish(tmp_path)
    assert len(messages) == 1
    assert {p.name for p in tmp_path.iterdir()} == {
        "diagnostics.csv",
        "diagnostics.json",
        "diagnostics.png",
    }
    assert (tmp_path / "diagnostics.csv").read_text().splitlines()[0] == (
        "update,env_step,entropy,td_error"
    )
