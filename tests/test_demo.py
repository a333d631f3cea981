"""``simkit demo``: every stage runs, the report holds its sections, and it opens in Chromium.

The default suite runs the demo with a tiny budget in-process; ``simkit demo --quick`` itself runs
under ``-m slow``. The browser checks need headless Chromium and skip cleanly without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simkit.demo import QUICK, run_demo
from simkit.errors import ArtifactError

SECTIONS = ("fidelity", "learning-curves", "comparison", "retention", "drl-put", "timings")
TABLES = ("comparison-table", "retention-table", "drl-put-table", "timings-table")
AGENTS = ("random", "popular", "greedy", "linucb", "reinforce", "dqn")

TINY = replace(
    QUICK,
    users=200,
    n_estimators=20,
    validate_sessions=60,
    n_bootstrap=10,
    steps={name: 150 for name in QUICK.steps},
    baseline_episodes=4,
    eval_episodes=4,
    retention_episodes=2,
    trust_sessions=8,
    trust_ope_sessions=20,
    drl_put_steps=3,
)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    lines: list[str] = []
    result = run_demo(out, budget=TINY, echo=lines.append)
    assert result.report == out / "report.html"
    assert not result.not_run, result.not_run
    return out


def _check_report(out: Path) -> str:
    text = (out / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"<section id='{section}'>" in text, section
    for table in TABLES:
        assert f"id='{table}'" in text, table
    rows = re.search(r"id='comparison-table'>.*?</table>", text, flags=re.S)
    assert rows is not None
    for agent in AGENTS:  # one row per session agent, each with a trust verdict
        assert re.search(rf"<tr><td>{agent}</td>.*?(trusted|do not trust)", rows.group(0)), agent
    assert "dual-critic" in text.split("id='retention-table'")[1].split("</table>")[0]
    assert "DRL-PUT (argmax)" in text and "best static setting" in text
    assert 'src="http' not in text and "src='http" not in text  # self-contained
    assert text.count("data:image/png;base64,") >= 6
    return text


def test_tiny_demo_runs_every_stage_and_writes_the_sections(tiny_demo: Path) -> None:
    _check_report(tiny_demo)
    record = json.loads((tiny_demo / "demo.json").read_text())
    assert record["finished"] and record["not_run"] == {}
    assert {"fit", "validate", "train dual-critic", "DRL-PUT"} <= set(record["stages"])
    for agent in (*AGENTS, "dual-critic"):
        assert (tiny_demo / "runs" / agent / "run.json").is_file()


def test_a_failing_stage_is_reported_not_faked(tmp_path: Path, monkeypatch) -> None:
    import simkit.agents.train
    import simkit.demo as demo
    import simkit.validation

    def broken(what: str):  # type: ignore[no-untyped-def]
        def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError(f"{what} not ready")

        return fail

    monkeypatch.setattr(demo, "_drl_put", broken("ads world"))
    monkeypatch.setattr(simkit.validation, "validate", broken("validation"))
    monkeypatch.setattr(simkit.agents.train, "train_agent", broken("training"))
    lines: list[str] = []
    result = demo.run_demo(tmp_path / "d", budget=TINY, echo=lines.append)
    assert result.not_run["DRL-PUT"] == "RuntimeError: ads world not ready"
    assert result.not_run["validate"] == "RuntimeError: validation not ready"
    assert result.not_run["train dqn"] == "RuntimeError: training not ready"
    text = result.report.read_text()
    for section, stage in (
        ("fidelity", "validate"),
        ("drl-put", "DRL-PUT"),
        ("learning-curves", "train dqn"),
    ):
        body = text.split(f"<section id='{section}'>")[1].split("</section>")[0]
        assert f"Not run: <b>{stage}</b>: RuntimeError" in body, section
    assert "id='drl-put-table'" not in text and "id='comparison-table'" not in text
    assert any("DRL-PUT: NOT RUN" in line for line in lines)


def test_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="is not a demo folder"):
        run_demo(tmp_path, budget=TINY)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def _open_in_chromium(report: Path, tmp_path: Path) -> str:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("headless Chromium is not installed")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}"]
    url = report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,2400", url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shot.is_file(), res.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 2000 and float(np.std(pixels)) > 0.05  # not a blank page
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=300
    ).stdout
    return dom


def test_report_opens_in_headless_chromium_with_its_sections(
    tiny_demo: Path, tmp_path: Path
) -> None:
    dom = _open_in_chromium(tiny_demo / "report.html", tmp_path)
    for section in SECTIONS:
        assert re.search(rf"<section id=\"{section}\"", dom), section
    assert "<h1>simkit demo</h1>" in dom


@pytest.mark.slow
def test_quick_demo_from_the_cli(tmp_path: Path, capsys) -> None:
    from simkit.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report written to {out / 'report.html'}" in printed
    assert "not run: nothing" in printed
    _check_report(out)
    dom = _open_in_chromium(out / "report.html", tmp_path)
    assert all(f'<section id="{s}"' in dom for s in SECTIONS)
