"""``simkit train`` and ``simkit evaluate`` on a small simulator: run folders, tables, errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _env_fixtures import env_simulator_dir

from simkit.agents import load_agent
from simkit.agents.registry import AGENTS
from simkit.artifacts import seal
from simkit.cli import main

STEPS = 300
AGENT_NAMES = tuple(n for n, spec in AGENTS.items() if spec.env == "simkit/Session-v0")


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    return env_simulator_dir(tmp_path_factory)


def train(sim_dir, agent: str, out, *extra: str) -> int:
    args = ["train", str(sim_dir), "--agent", agent, "--steps", str(STEPS), "--out", str(out)]
    return main([*args, "--candidates", "20", "--seed", "3", "--quiet", *extra])


@pytest.fixture(scope="module")
def runs(sim_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name in AGENT_NAMES:
        assert train(sim_dir, name, root / name) == 0, name
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_train_writes_a_run_folder(runs, sim_dir, name) -> None:
    run = runs[name]
    for file in ("run.json", "curve.csv", "curve.png", "agent/manifest.json"):
        assert (run / file).is_file(), file
    settings = json.loads((run / "run.json").read_text())
    assert settings["agent"] == name and settings["n_steps"] == STEPS
    assert settings["n_candidates"] == 20 and settings["seed"] == 3
    assert settings["simulator"] == str(sim_dir.resolve())
    with open(run / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == settings["episodes"] > 0
    steps = [int(r["end_step"]) for r in rows]
    assert steps == sorted(steps) and steps[-1] <= STEPS
    assert sum(int(r["length"]) for r in rows) == steps[-1]
    agent = load_agent(run / "agent")
    assert type(agent).__name__ == settings["agent_class"]


def test_train_prints_a_summary(sim_dir, tmp_path, capsys) -> None:
    assert train(sim_dir, "reinforce", tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "trained reinforce for 300 steps" in out and "episodes; mean return" in out


def test_train_is_reproducible_from_its_seed(sim_dir, runs, tmp_path) -> None:
    assert train(sim_dir, "reinforce", tmp_path / "again") == 0
    first = (runs["reinforce"] / "curve.csv").read_text()
    assert (tmp_path / "again" / "curve.csv").read_text() == first
    assert train(sim_dir, "reinforce", tmp_path / "other", "--seed", "4") == 0
    assert (tmp_path / "other" / "curve.csv").read_text() != first


def test_train_overwrite(sim_dir, tmp_path, capsys) -> None:
    assert train(sim_dir, "random", tmp_path / "run") == 0
    assert train(sim_dir, "random", tmp_path / "run") == 1
    assert "already exists" in capsys.readouterr().err
    assert train(sim_dir, "random", tmp_path / "run", "--overwrite") == 0
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    assert train(sim_dir, "random", other, "--overwrite") == 1
    assert "is not a run folder" in capsys.readouterr().err
    assert (other / "todo.txt").is_file()


def test_evaluate_prints_a_table_and_writes_a_chart(sim_dir, runs, tmp_path, capsys) -> None:
    chart = tmp_path / "out" / "cmp.png"
    chart.parent.mkdir()  # outputs are checked before the work: the folder must exist
    args = ["evaluate", str(sim_dir), "--agents", *map(str, runs.values())]
    assert main([*args, "--episodes", "20", "--out", str(chart), "--quiet"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["agent", "mean", "return"]
    for name in AGENT_NAMES:
        assert any(row.split()[0] == name for row in rows), name
    assert "20 episodes per agent" in out
    assert chart.is_file() and chart.stat().st_size > 0
    with open(chart.with_suffix(".csv")) as f:
        table = list(csv.DictReader(f))
    assert [r["agent"] for r in table] == list(AGENT_NAMES)
    for r in table:
        assert float(r["return_lo"]) <= float(r["mean_return"]) <= float(r["return_hi"])
        assert 0 <= float(r["click_rate"]) <= 1


def test_evaluate_gives_every_agent_the_same_users(sim_dir, runs, tmp_path) -> None:
    """The same agent twice gets identical figures: both meet the same simulated users."""
    from simkit.agents.train import evaluate_runs

    twice = [runs["greedy"], tmp_path / "greedy"]
    shutil.copytree(runs["greedy"], twice[1])
    res = evaluate_runs(sim_dir, twice, episodes=10, rng=np.random.default_rng(0))
    first, second = res.values()
    np.testing.assert_array_equal(first.returns, second.returns)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "{sim}", "--agent", "nosuchagent", "--steps", "5", "--out", "{tmp}/r"],
            "nosuch",
        ),
        (
            ["train", "{tmp}/nosim", "--agent", "random", "--steps", "5", "--out", "{tmp}/r"],
            "nosim",
        ),
        (
            ["train", "{sim}", "--agent", "random", "--steps", "5", "--out", "{tmp}/r"]
            + ["--candidates", "100000"],
            "n_candidates",
        ),
        (["evaluate", "{sim}", "--agents", "{tmp}/missing", "--episodes", "5"], "missing"),
        (["evaluate", "{sim}", "--agents", "{tmp}", "--episodes", "5"], "not a run folder"),
        (["evaluate", "{sim}", "--agents", "{run}", "--episodes", "1"], "--episodes"),
    ],
)
def test_user_mistakes_exit_1_with_one_paragraph(
    sim_dir, runs, tmp_path, capsys, argv, message
) -> None:
    fill = {"sim": str(sim_dir), "tmp": str(tmp_path), "run": str(runs["random"])}
    assert main([a.format(**fill) for a in argv]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_agent_class_in_a_folder_exits_1(sim_dir, runs, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["random"], run)
    manifest = json.loads((run / "agent" / "manifest.json").read_text())
    manifest["agent"] = "MysteryAgent"  # a class this simkit does not know, sealed as if saved so
    (run / "agent" / "manifest.json").write_text(json.dumps(seal(manifest)))
    assert main(["evaluate", str(sim_dir), "--agents", str(run), "--episodes", "5"]) == 1
    assert "MysteryAgent" in capsys.readouterr().err


def test_train_error_has_no_traceback(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "simkit", "train", str(tmp_path / "nosim")]
        + ["--agent", "random", "--steps", "5", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "does not exist" in proc.stderr


def test_validate_ranks_trained_agents_beside_the_built_in_policies(
    runs, sim_dir, tmp_path
) -> None:
    import pandas as pd

    frame = pd.read_parquet(sim_dir.parent / "logs" / "logs.parquet")
    # the same world's behaviour, as users the simulator never saw
    frame = frame[frame["user_id"] % 5 == 0].copy()
    frame["user_id"] += 10**6
    frame["session_id"] += 10**7
    held = tmp_path / "held.parquet"
    frame.to_parquet(held)
    out = tmp_path / "report.html"
    argv = ["validate", str(sim_dir), "--logs", str(held), "--out", str(out), "--quiet"]
    argv += ["--items", str(sim_dir.parent / "logs" / "items.parquet"), "--sessions", "200"]
    assert main([*argv, "--agents", str(runs["reinforce"]), str(runs["greedy"])]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    names = [p["name"] for p in report["ranking"]["policies"]]
    assert "agent:reinforce" in names and "agent:greedy" in names, names
    assert "agent:reinforce" in out.read_text() and "agent:greedy" in out.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "{sim}", "--agent", "random", "--steps", "0", "--out", "{tmp}/r"], "--steps"),
        (
            [
                "train",
                "{sim}",
                "--agent",
                "random",
                "--steps",
                "5",
                "--out",
                "{tmp}/r",
                "--seed",
                "-1",
            ],
            "--seed",
        ),
        (["validate", "{sim}", "--logs", "x.parquet", "--sessions", "0"], "--sessions"),
        (["fit", "x.parquet", "--out", "{tmp}/s", "--seed", "-1"], "--seed"),
    ],
)
def test_bad_numbers_are_usage_errors(sim_dir, tmp_path, capsys, argv, message) -> None:
    fill = {"sim": str(sim_dir), "tmp": str(tmp_path)}
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(**fill) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "must be a whole number" in err and "Traceback" not in err
