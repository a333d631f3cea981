"""A new user's first hour, from the CLI: their own column names, a string user id, a folder of
parquet files and a schema TOML through check-log, fit, validate, train, evaluate and export.

The README's "Your own logs" walkthrough describes these steps and the message of a bad mapping.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simkit.cli import main
from simkit.synthetic import World, WorldConfig

RENAME = {
    "user_id": "uid",
    "session_id": "visit",
    "step": "rank",
    "timestamp": "ts",
    "item_id": "video",
    "clicked": "is_click",
    "watch_time": "seconds_watched",
    "propensity": "p_logged",
}

SCHEMA = "[columns]\n" + "".join(f'{k} = "{v}"\n' for k, v in RENAME.items())


@pytest.fixture(scope="module")
def own_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``logs/`` (two parquet files), ``items.parquet`` and ``schema.toml``."""
    root = tmp_path_factory.mktemp("own")
    world = World(WorldConfig(n_users=300, n_items=100), rng=np.random.default_rng(3))
    frame = world.generate_logs(1200, rng=np.random.default_rng(4))
    frame["user_id"] = "u" + frame["user_id"].astype(str).str.zfill(4)  # a string id
    frame = frame.rename(columns=RENAME)
    (root / "logs").mkdir()
    half = frame["visit"] < frame["visit"].median()
    frame[half].to_parquet(root / "logs" / "part-0.parquet", index=False)
    frame[~half].to_parquet(root / "logs" / "part-1.parquet", index=False)
    world.items.rename(columns={"item_id": "video"}).to_parquet(root / "items.parquet", index=False)
    (root / "schema.toml").write_text(SCHEMA)
    return root


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _fitted(own_logs: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """``simkit fit`` with the schema, once per module (the later tests reuse the folder)."""
    sim = own_logs / "sim"
    if not (sim / "manifest.json").is_file():
        code, out, err = _run(
            ["fit", str(own_logs / "logs"), "--out", str(sim), "--quiet", "--schema"]
            + [str(own_logs / "schema.toml"), "--items", str(own_logs / "items.parquet")],
            capsys,
        )
        assert code == 0, err
        assert re.search(r"held-out click AUC 0\.\d+", out), out
    return sim


def test_walkthrough_from_check_log_to_export(
    own_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs, items, schema = own_logs / "logs", own_logs / "items.parquet", own_logs / "schema.toml"
    common = ["--schema", str(schema), "--items", str(items)]

    code, out, err = _run(["check-log", str(logs), *common], capsys)
    assert code == 0, err
    n_users = pd.concat(pd.read_parquet(p) for p in logs.glob("*.parquet"))["uid"].nunique()
    assert "valid" in out and f"users {n_users}" in out

    sim = _fitted(own_logs, capsys)

    runs = tmp_path / "runs"
    for agent, steps in (("popular", 200), ("reinforce", 400)):
        code, out, err = _run(
            ["train", str(sim), "--agent", agent, "--steps", str(steps), "--quiet"]
            + ["--out", str(runs / agent)],
            capsys,
        )
        assert code == 0, err
        assert json.loads((runs / agent / "run.json").read_text())["agent"] == agent

    png = tmp_path / "evaluation.png"
    code, out, err = _run(
        ["evaluate", str(sim), "--agents", str(runs / "popular"), str(runs / "reinforce")]
        + ["--episodes", "8", "--quiet", "--out", str(png)],
        capsys,
    )
    assert code == 0, err
    assert "reinforce" in out and png.is_file() and png.with_suffix(".csv").is_file()

    policy = tmp_path / "policy"
    code, out, err = _run(["export", str(runs / "reinforce"), "--out", str(policy)], capsys)
    assert code == 0, err
    assert (policy / "SHA256SUMS").is_file()


def test_walkthrough_validate_with_the_schema(
    own_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs, items, schema = own_logs / "logs", own_logs / "items.parquet", own_logs / "schema.toml"
    report = tmp_path / "report.html"
    code, out, err = _run(
        ["validate", str(_fitted(own_logs, capsys)), "--logs", str(logs), "--schema", str(schema)]
        + ["--items", str(items), "--sessions", "100", "--quiet", "--out", str(report)],
        capsys,
    )
    assert code == 0, err
    assert report.is_file()


def test_bad_column_mapping_gives_the_documented_message(
    own_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "schema.toml"
    bad.write_text(SCHEMA.replace('user_id = "uid"', 'user_id = "user"'))
    code, out, err = _run(["check-log", str(own_logs / "logs"), "--schema", str(bad)], capsys)
    assert code == 1 and out == ""
    # the README quotes this sentence ("Your own logs")
    assert "missing 'user_id' (mapped from 'user')" in err
    assert "found columns: 'uid'" in err and "Traceback" not in err
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "missing 'user_id' (mapped from 'user')" in readme
