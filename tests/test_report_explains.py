"""The report explains itself: failed gates named and explained, KS vs mean, withheld estimates
summarised once, Markdown pipes, continuation reliability, learning curves and their summary,
and a headless-Chromium look at a failing report's banner."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simkit.agents.train import curve_figure, learning_summary
from simkit.validation.confounding import ConfoundingResult
from simkit.validation.fidelity import ImpressionFidelity, Reliability
from simkit.validation.gates import Gates, Metric
from simkit.validation.report import (
    EXPLAIN,
    FidelityReport,
    _md_policies,
    _md_table,
    _reliability_plot,
    _withheld_summary,
    explain,
)
from simkit.validation.sessions import SessionFidelity

NAN = float("nan")


def _metric(key: str, label: str, value: float, threshold: float, direction: str = "<=") -> Metric:
    return Metric.gated(
        key=key,
        label=label,
        section="session" if key.startswith("session") else "impression",
        value=value,
        threshold=threshold,
        direction=direction,
    )


def _report(metrics: tuple[Metric, ...]) -> FidelityReport:
    rel = Reliability(mean_predicted=np.array([0.1, 0.3]), observed_rate=np.array([0.12, 0.28]),
                      count=np.array([10, 10]))  # fmt: skip
    return FidelityReport(
        gates=Gates(),
        impression=ImpressionFidelity(
            metrics=metrics,
            reliability=rel,
            n_rows=0,
            n_sessions=0,
            click_rate=NAN,
            continue_rate=NAN,
        ),  # fmt: skip
        sessions=SessionFidelity(metrics=()),
        ranking=None,
        confounding=ConfoundingResult(
            ran=False,
            fired=False,
            gain=NAN,
            ci_low=NAN,
            ci_high=NAN,
            threshold=0.005,
            log_loss_without=NAN,
            log_loss_with=NAN,
            n_rows=0,
            n_users=0,
            message="",
        ),  # fmt: skip
        logging_policy="",
        source={"sessions": 10, "rows": 100},
    )


FAILING = (
    _metric("click_auc", "Click AUC", 0.52, 0.6, ">="),
    _metric("session_ks.length", "Session length KS", 0.02, 0.05),
    _metric("session_mean.length", "Session length mean", 4.0, 1.0),
    _metric("watch_ks", "Watch time KS", 0.01, 0.05),
)


def test_banner_names_the_failed_gates() -> None:
    first = _report(FAILING).summary().splitlines()[0]
    assert first.startswith("Fidelity FAILED: 2 of 4 gates passed; failed: Click AUC, ")
    assert "Session length mean" in first and "Watch time KS" not in first


def test_each_failed_gate_says_what_it_means_and_the_fix() -> None:
    text = _report(FAILING).summary()
    assert explain("click_auc") in text and explain("session_mean.length") in text
    # every key family the validation produces has its sentence
    for key in ("click_auc", "click_log_loss", "click_ece", "continue_auc", "continue_ece",
                "watch_ks", "session_ks.watch", "session_mean.clicks", "ranking.kendall.watch",
                "ranking.spearman.clicks", "ranking.clear_pairs.watch", "ranking.mean_error.watch",
                "ranking.max_error.watch", "ranking.logging_error.watch", "confounding.gain",
                "return_ks.gap"):  # fmt: skip
        assert explain(key), key
    assert explain("session_ks.length") == EXPLAIN["session_ks"]
    assert explain("unknown") == ""
    html = _report(FAILING).to_html()
    assert "id='failed-gates'" in html and html.count("<li data-key=") == 2


def test_ks_passing_while_the_mean_fails_is_explained() -> None:
    text = _report(FAILING).summary()
    assert "Session length KS: the KS distance passes while the mean fails" in text
    ok_mean = (FAILING[1], _metric("session_mean.length", "Session length mean", 0.5, 1.0))
    assert "passes while the mean fails" not in _report(ok_mean).summary()


def test_markdown_keeps_the_absolute_value_bars() -> None:
    m = Metric.gated(key="session_mean.length", label="mean", section="session", value=1.0,
                     threshold=2.0, note="simulated 3 vs held-out 2 (|difference| gated)")  # fmt: skip
    table = _md_table((m,))
    assert r"(\|difference\| gated)" in table and "/difference/" not in table


def _policy(name: str, withheld: str = "", session_ope: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        name=name, withheld=withheld, session_ope=session_ope, is_logging_model=False,
        sim={"watch": 1.0}, ref={"watch": 1.0}, rel_error={"watch": (0.0, -0.1, 0.1)},
    )  # fmt: skip


def test_withheld_estimates_are_summarised_once() -> None:
    ope = "PDIS session watch time: not enough overlap (ESS={})"
    r = SimpleNamespace(
        policies=[_policy(n, session_ope=ope.format(e)) for n, e in (("a", 1.5), ("b", 2.0))]
    )
    table = _md_policies(r)  # type: ignore[arg-type]
    summary = _withheld_summary(r)  # type: ignore[arg-type]
    assert "not enough overlap" not in table
    assert summary.count("not enough overlap") == 1
    assert "a (ESS=1.5)" in summary and "b (ESS=2.0)" in summary
    r2 = SimpleNamespace(policies=[_policy(n, withheld="SNIPS: not enough overlap") for n in "xy"])
    assert (
        _withheld_summary(r2) == "Reference withheld for every policy: SNIPS: not enough overlap."
    )  # type: ignore[arg-type]
    assert "withheld:" not in _md_policies(r2)  # type: ignore[arg-type]


def test_continuation_reliability_diagram_is_drawn_when_recorded() -> None:
    report = _report(FAILING)
    assert "continuation model (steps)" in report.to_html()
    rel = Reliability(mean_predicted=np.array([0.6, 0.8]), observed_rate=np.array([0.55, 0.85]),
                      count=np.array([5, 5]))  # fmt: skip
    with_cont = SimpleNamespace(impression=SimpleNamespace(
        reliability=report.impression.reliability, continue_reliability=rel))  # fmt: skip
    without = SimpleNamespace(impression=SimpleNamespace(reliability=rel))
    assert _reliability_plot(with_cont) != _reliability_plot(without)  # type: ignore[arg-type]


# ---------------------------------------------------------------- learning curves


def test_learning_curve_labels_its_cut_axis_and_draws_baselines() -> None:
    rng = np.random.default_rng(0)
    returns = np.r_[rng.exponential(50.0, 500), [5000.0, 8000.0]]
    steps = np.arange(1, len(returns) + 1) * 20
    fig = curve_figure(returns, steps, title="t", baselines={"random": 40.0, "popular": 55.0})
    ax = fig.axes[0]
    assert "axis cut at the 98th percentile" in ax.get_ylabel()
    labels = [line.get_label() for line in ax.get_lines()]
    assert "random: 40.0" in labels and "popular: 55.0" in labels
    flat = curve_figure(np.full(50, 3.0), np.arange(50), title="t")
    assert "cut" not in flat.axes[0].get_ylabel()


def test_learning_summary_says_whether_the_change_is_outside_noise() -> None:
    rng = np.random.default_rng(1)
    noise = rng.exponential(80.0, 200)
    assert learning_summary(noise).endswith("within noise.")
    learned = noise + np.linspace(0, 300, 200)
    assert "outside noise" in learning_summary(learned)
    ordered = np.sort(noise)  # a non-learning agent whose long episodes ended last
    text = learning_summary(ordered, learns=False)
    assert "outside noise" in text and "This agent does not learn" in text
    assert learning_summary(np.array([])).startswith("no episode completed")


# ---------------------------------------------------------------- a person's look


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "headless_shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed")
def test_chromium_shows_a_failing_banner_naming_the_gates(tmp_path: Path) -> None:
    from PIL import Image

    page = tmp_path / "report.html"
    _report(FAILING).to_html(page)
    base = [str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    banner = re.search(r"<div class=\"banner bad\" id=\"verdict\">(.*?)</div>", dom, re.S)
    assert banner is not None, dom[:500]
    assert "failed: Click AUC, Session length mean" in banner.group(1)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1200,700", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    banner_red = np.all(np.abs(pixels.astype(int) - [0xFD, 0xEC, 0xEA]) <= 2, axis=1)
    assert banner_red.mean() > 0.01  # the red banner is on the first screen
