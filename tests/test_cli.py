"""The command line: synth, check-log, fit; user mistakes exit 1 with one paragraph, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simkit.cli import main


def test_synth_then_check_log(tmp_path, capsys) -> None:
    assert main(["synth", "--sessions", "300", "--seed", "1", "--out", str(tmp_path)]) == 0
    assert main(["check-log", str(tmp_path / "logs.csv.gz")]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "click rate" in out and "repaired: nothing" in out


def test_check_log_on_bad_data_exits_1_without_traceback(tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,session_id,step,item_id,clicked,watch_time\n1,1,0,5,2,0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "simkit", "check-log", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "Column 'clicked' must contain only 0/1" in proc.stderr


def test_missing_file_exits_1(tmp_path, capsys) -> None:
    assert main(["check-log", str(tmp_path / "nope.parquet")]) == 1
    assert "nope.parquet" in capsys.readouterr().err


def test_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit"])
    assert exc.value.code == 2


def test_fit_writes_a_simulator_and_prints_its_summary(tmp_path, capsys) -> None:
    main(["synth", "--sessions", "1500", "--seed", "2", "--out", str(tmp_path)])
    out = tmp_path / "sim"
    code = main(
        [
            "fit",
            str(tmp_path / "logs.parquet"),
            "--items",
            str(tmp_path / "items.parquet"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "held-out click AUC" in text and "watch-time KS" in text
    assert (out / "manifest.json").is_file()
    assert main(["fit", str(tmp_path / "logs.parquet"), "--out", str(out), "--quiet"]) == 1
