"""The fidelity report: :class:`FidelityReport`, its verdict and its HTML, JSON and Markdown forms.

:func:`simkit.validation.validate` (in :mod:`.run`) fills a :class:`FidelityReport` with the
results of every check. Every gated figure is compared with a threshold of
:class:`~simkit.validation.gates.Gates`; :attr:`FidelityReport.passed` is true when no gate failed.
The HTML file is self-contained (the plots are PNGs embedded as base64, drawn with matplotlib's Agg
canvas); the JSON follows the documented schema ``report_schema.json`` beside this module.

References
----------
.. [1] Mitchell, Wu, Zaldivar et al. "Model cards for model reporting." FAT* 2019 (a shareable
   report of what a model was checked against).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from simkit.validation.confounding import ConfoundingResult
from simkit.validation.fidelity import ImpressionFidelity
from simkit.validation.gates import Gates, Metric
from simkit.validation.ranking import RankingResult
from simkit.validation.sessions import DISTRIBUTIONS, SessionFidelity

__all__ = ["EXPLAIN", "SCHEMA_PATH", "SCHEMA_VERSION", "FidelityReport", "explain"]

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("report_schema.json")


@dataclass(frozen=True, kw_only=True)
class FidelityReport:
    """Everything :func:`validate` measured, with the verdicts; renders to HTML, JSON, Markdown.

    Attributes
    ----------
    gates
        The thresholds the figures were held to.
    impression, sessions, ranking, confounding
        The checks' results (``ranking`` is None when there was no reference).
    logging_policy
        What the logging-policy model in the ranking is.
    source
        Held-out logs: file, rows, sessions, users.
    notes
        Anything the reader must know (users dropped, slates, ...).
    """

    gates: Gates
    impression: ImpressionFidelity
    sessions: SessionFidelity
    ranking: RankingResult | None
    confounding: ConfoundingResult
    logging_policy: str
    source: dict[str, Any]
    notes: tuple[str, ...] = ()
    simkit_version: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    # --------------------------------------------------------------------- figures

    @property
    def confounding_metric(self) -> Metric:
        """The confounding check as a gated figure (passes when it does not fire)."""
        c = self.confounding
        return Metric(
            key="confounding.gain",
            label="Held-out log-loss improvement from the logged propensity (relative)",
            section="confounding",
            value=c.gain,
            ci_low=c.ci_low,
            ci_high=c.ci_high,
            threshold=c.threshold if c.ran else None,
            direction="<=",
            passed=(not c.fired) if c.ran else None,
            note="gated on the interval's lower bound" if c.ran else "could not run",
        )

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """Every figure of the report, in section order."""
        ranking = self.ranking.metrics if self.ranking is not None else ()
        return (
            self.impression.metrics + self.sessions.metrics + ranking + (self.confounding_metric,)
        )

    @property
    def failed(self) -> tuple[Metric, ...]:
        """The gated figures that failed."""
        return tuple(m for m in self.metrics if m.passed is False)

    @property
    def passed(self) -> bool:
        """True when no gate failed."""
        return not self.failed

    def summary(self) -> str:
        """A few lines of plain text: the verdict, the failed gates, the warnings."""
        gated = [m for m in self.metrics if m.passed is not None]
        verdict = "PASSED" if self.passed else "FAILED"
        failed = f"; failed: {', '.join(m.label for m in self.failed)}" if self.failed else ""
        lines = [
            f"Fidelity {verdict}: {len(gated) - len(self.failed)} of {len(gated)} gates passed"
            f"{failed} ({self.source.get('sessions', 0):,} held-out sessions, "
            f"{self.source.get('rows', 0):,} rows)."
        ]
        for m in self.failed:
            ci = f" [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if math.isfinite(m.ci_low) else ""
            note = f"; {m.note}" if m.note.startswith("gated on") else ""
            lines.append(
                f"  FAILED {m.label}: {_fmt(m.value)}{ci} (gate {m.direction} "
                f"{_fmt(m.threshold)}{note})"
            )
            if explain(m.key):
                lines.append(f"    {explain(m.key)}")
        lines.extend(f"  {line}" for line in _ks_vs_mean(self.metrics))
        by_key = {m.key: m for m in self.metrics}
        for key in ("click_auc", "continue_auc", "watch_ks"):
            if key in by_key:
                m = by_key[key]
                lines.append(f"  {m.label}: {_fmt(m.value)} [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]")
        if self.ranking is None:
            lines.append("  Policy ranking: not run (no ground-truth world and no propensities).")
        lines.append("  Confounding: " + self.confounding.message)
        lines.extend("  Note: " + n for n in self.notes)
        return "\n".join(lines)

    # ------------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (NaN becomes None); see ``report_schema.json``."""
        ranking = None
        if self.ranking is not None:
            r = self.ranking
            ranking = {
                "reference": r.reference,
                "n_sessions": r.n_sessions,
                "n_candidates": r.n_candidates,
                "note": r.note,
                "policies": [
                    {
                        "name": p.name,
                        "is_logging_model": p.is_logging_model,
                        "withheld": p.withheld,
                        "session_ope": p.session_ope,
                        "sim": p.sim,
                        "sim_se": p.sim_se,
                        "reference": p.ref,
                        "reference_se": p.ref_se,
                        "relative_error": {
                            k: {"value": v[0], "ci_low": v[1], "ci_high": v[2]}
                            for k, v in p.rel_error.items()
                        },
                    }
                    for p in r.policies
                ],
            }
        imp = self.impression
        data = {
            "schema_version": SCHEMA_VERSION,
            "simkit_version": self.simkit_version,
            "created": self.created,
            "passed": self.passed,
            "source": self.source,
            "gates": asdict(self.gates),
            "metrics": [asdict(m) for m in self.metrics],
            "impression": {
                "n_rows": imp.n_rows,
                "n_sessions": imp.n_sessions,
                "click_rate": imp.click_rate,
                "continue_rate": imp.continue_rate,
                "reliability": asdict(imp.reliability),
                "watch_quantiles": imp.watch_quantiles,
            },
            "sessions": {
                "n_sessions": self.sessions.n_sessions,
                "driving": self.sessions.driving,
                "quantiles": self.sessions.ecdf,
            },
            "ranking": ranking,
            "logging_policy": self.logging_policy,
            "confounding": asdict(self.confounding),
            "notes": list(self.notes),
        }
        return _clean(data)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON report; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    # -------------------------------------------------------------------- Markdown

    def to_markdown(self, path: str | os.PathLike[str] | None = None) -> str:
        """The report as Markdown (written to ``path`` when given); returns the text."""
        lines = [
            "# simkit fidelity report",
            "",
            f"**{'PASSED' if self.passed else 'FAILED'}**: "
            + self.summary().splitlines()[0].split(": ", 1)[1],
            "",
            f"Held-out logs: `{self.source.get('file')}`; {self.source.get('rows', 0):,} rows, "
            f"{self.source.get('sessions', 0):,} sessions, {self.source.get('users', 0):,} users.",
            "",
        ]
        for note in self.notes:
            lines += [f"> {note}", ""]
        lines += ["## Figures", "", _md_table(self.metrics), ""]
        lines += ["## How the simulated sessions were driven", "", self.sessions.driving, ""]
        lines += ["## Policy ranking", ""]
        if self.ranking is None:
            lines += ["Not run: no ground-truth world and no logged propensities.", ""]
        else:
            lines += [f"Reference: {self.ranking.reference}.", ""]
            lines += [f"Logging policy: {self.logging_policy}.", ""]
            if self.ranking.note:
                lines += [self.ranking.note, ""]
            if _withheld_reasons(self.ranking):
                lines += [_withheld_summary(self.ranking), ""]
            if _which_check(self):
                lines += [_which_check(self), ""]
            lines += [_md_policies(self.ranking), ""]
        lines += ["## Confounding", "", self.confounding.message, ""]
        text = "\n".join(lines)
        if path is not None:
            Path(path).write_text(text)
        return text

    # ------------------------------------------------------------------------ HTML

    def to_html(self, path: str | os.PathLike[str] | None = None) -> str:
        """One self-contained HTML page (plots embedded); written to ``path`` when given."""
        text = _render_html(self)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


# one sentence per kind of gate: what a failure means and the usual fix (longest prefix wins)
EXPLAIN: dict[str, str] = {
    "click_auc": "The click model ranks held-out clicks barely better than chance; add informative "
    "user, item or ctx_ feature columns, fit on more logs, or raise the number of trees.",
    "click_log_loss": "The click model's probabilities are far from the held-out clicks; fit on "
    "more logs or check that the held-out logs come from the same product and period.",
    "click_ece": "Predicted click probabilities are off from the observed rates (see the "
    "reliability diagram); refit on more logs, or keep the isotonic calibration on.",
    "continue_auc": "The continuation model barely tells which sessions go on; give it user "
    "features or timestamps, or fit on more sessions.",
    "continue_ece": "Predicted probabilities of another step are off from the observed rates (see "
    "the continuation reliability diagram), so simulated sessions have the wrong length; refit "
    "on more sessions.",
    "watch_ks": "Sampled watch times of clicked items do not match the held-out ones; give items "
    "a duration column (watching is capped by it) or fit on more clicked rows.",
    "session_ks": "This per-session distribution differs beyond the noise floor between simulated "
    "and held-out sessions; check the continuation model for length and the click and watch "
    "models for engagement, or whether the held-out logs come from another period.",
    "session_mean": "The simulated mean differs from the held-out mean; a mean moves with the long "
    "tail that a KS distance hardly sees, so look at the tail of the ECDF and at the continuation "
    "model's calibration for long sessions.",
    "ranking.clear_pairs": "The simulator orders clearly separated policies differently from the "
    "reference; do not use it to choose among these policies until the models improve.",
    "ranking.kendall": "The simulator's ranking of the policies disagrees with the reference; do "
    "not use it to choose policies; check the confounding section and the per-policy errors.",
    "ranking.spearman": "The simulator's ranking of the policies disagrees with the reference; do "
    "not use it to choose policies; check the confounding section and the per-policy errors.",
    "ranking.mean_error": "Policy values in the simulator are off from the reference on average; "
    "trust its rankings more than its absolute values.",
    "ranking.max_error": "At least one policy's value in the simulator is far from the reference; "
    "look at which one in the policy table before trusting values of policies like it.",
    "ranking.logging_error": "Even the logging policy's value is off, so the simulator is biased "
    "where it has the most data; check the session figures first.",
    "confounding.gain": "The logged propensity predicts clicks beyond the simulator's features: "
    "the logging policy saw signals the logs do not keep, so values of policies far from it are "
    "biased; log those signals as user_ or ctx_ columns.",
    "return_ks": "Simulated gaps between sessions differ from the held-out ones; fit the return "
    "model on a longer log window.",
}


def explain(key: str) -> str:
    """One sentence on what a failed gate ``key`` means and the usual fix ("" when unknown).

    Examples
    --------
    >>> explain("session_ks.length").startswith("This per-session distribution")
    True
    """
    best = max((k for k in EXPLAIN if key == k or key.startswith(k + ".")), key=len, default="")
    return EXPLAIN.get(best, "")


def _ks_vs_mean(metrics: tuple[Metric, ...]) -> list[str]:
    """A sentence for each distribution whose KS passes while its mean gate fails."""
    by_key = {m.key: m for m in metrics}
    out = []
    for m in metrics:
        if not (m.key.startswith("session_mean.") and m.passed is False):
            continue
        ks = by_key.get("session_ks." + m.key.split(".", 1)[1])
        if ks is not None and ks.passed is True:
            out.append(
                f"{ks.label}: the KS distance passes while the mean fails. KS is the largest gap "
                "between the two distribution functions and barely moves when a few long sessions "
                "differ, while the mean follows them: the simulated tail is off."
            )
    return out


WITHHELD = "not enough overlap"


def _split_withheld(text: str) -> tuple[str, str]:
    """(``"PDIS session watch time"``, ``"ESS=1.2"``) for an estimate withheld for overlap."""
    head, _, rest = text.partition(": " + WITHHELD)
    return head.strip(), rest.strip(" ()")


def _withheld_reasons(r: RankingResult) -> dict[str, list[str]]:
    """Distinct withheld estimates (references and per-decision OPE), with their policies."""
    reasons: dict[str, list[str]] = {}
    for p in r.policies:
        if p.withheld:
            reasons.setdefault(p.withheld, []).append(p.name)
        for part in p.session_ope.split("; "):
            if WITHHELD in part:
                what, ess = _split_withheld(part)
                tag = f"{p.name} ({ess})" if ess else p.name
                reasons.setdefault(f"{what}: {WITHHELD}", []).append(tag)
    return reasons


def _which_check(report: FidelityReport) -> str:
    """Under an off-policy reference: how noisy it is and which check to believe ("" otherwise)."""
    r = report.ranking
    if r is None or not r.reference.startswith("off-policy"):
        return ""
    width = [
        1.96 * p.ref_se[k] / abs(p.ref[k])
        for p in r.policies
        if not p.withheld
        for k in ("watch", "clicks")
        if k in p.ref and p.ref[k] and np.isfinite(p.ref_se[k])
    ]
    if not width:
        return ""
    w = float(np.mean(width))
    c = report.confounding
    state = "it fired on these logs" if c.fired else "it is quiet on these logs"
    if not c.ran:
        state = "it could not run on these logs"
    if w <= report.gates.value_error_mean_max:
        return (
            f"The off-policy reference's 95% intervals span +-{w:.0%} of the policies' values on "
            "average, narrower than the value-error gate: the ranking's value errors can be "
            f"believed. The confounding check below ({state}) tells whether the logs bias them."
        )
    return (
        f"The off-policy reference is too noisy to gate on: its 95% intervals span +-{w:.0%} of "
        f"the policies' values on average, wider than the value-error gate "
        f"({report.gates.value_error_mean_max:.0%}), so the value-error gates read only the error "
        "beyond the intervals and a simulator far off can still pass them. Believe the "
        f"confounding check below ({state}) and, for a trained policy, its trust report "
        "('simkit trust SIM RUN --logs LOGS') over a passing ranking."
    )


def _withheld_summary(r: RankingResult) -> str:
    """One sentence per distinct withheld estimate, naming the policies it concerns."""
    parts = []
    for reason, names in _withheld_reasons(r).items():
        if (
            reason.endswith(WITHHELD)
            and ": " in reason
            and not any(p.withheld == reason for p in r.policies)
        ):
            what = reason.rsplit(": ", 1)[0]
            parts.append(
                f"{what} withheld ({WITHHELD}: too few logged decisions agree with the policy) "
                f"for {', '.join(names)}."
            )
        else:
            who = "every policy" if len(names) == len(r.policies) else ", ".join(names)
            parts.append(f"Reference withheld for {who}: {reason}.")
    return " ".join(parts)


def _shown_ope(text: str) -> str:
    """The per-decision OPE text of a policy row without the estimates summarised once."""
    return "; ".join(part for part in text.split("; ") if part and WITHHELD not in part)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _fmt(value: float | None) -> str:
    """A figure as the report prints it.

    Examples
    --------
    >>> _fmt(0.123456), _fmt(12345.6), _fmt(float("nan")), _fmt(None)
    ('0.1235', '12,346', '-', '-')
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _verdict(m: Metric) -> str:
    return {True: "pass", False: "FAIL", None: "-"}[m.passed]


def _md_table(metrics: tuple[Metric, ...]) -> str:
    rows = [
        "| figure | value | 95% CI | noise floor (sd) | gate | verdict | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        floor = (
            f"{_fmt(m.noise_floor)} ({_fmt(m.noise_floor_sd)})"
            if math.isfinite(m.noise_floor)
            else "-"
        )
        gate = f"{m.direction} {_fmt(m.threshold)}" if m.threshold is not None else "-"
        ci = f"[{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if math.isfinite(m.ci_low) else "-"
        rows.append(
            f"| {m.label} | {_fmt(m.value)} | {ci} | {floor} | {gate} | {_verdict(m)} "
            f"| {m.note.replace('|', chr(92) + '|')} |"
        )
    return "\n".join(rows)


def _md_policies(r: RankingResult) -> str:
    kinds = [k for k in ("watch", "clicks", "length") if k in r.policies[0].sim]
    head = "| policy | " + " | ".join(f"{k}: sim / reference (error)" for k in kinds) + " |"
    rows = [head, "|---|" + "---|" * len(kinds)]
    for p in r.policies:
        cells = []
        for k in kinds:
            err, lo, hi = p.rel_error[k]
            cells.append(f"{_fmt(p.sim[k])} / {_fmt(p.ref[k])} ({err:+.1%} [{lo:+.1%}, {hi:+.1%}])")
        name = p.name + (" (reference withheld)" if p.withheld else "")
        if _shown_ope(p.session_ope):
            name += f"; {_shown_ope(p.session_ope)}"
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------- HTML rendering

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#11692b;font-weight:600} .fail{color:#b00020;font-weight:700} .na{color:#888}
.banner{padding:.6em 1em;border-radius:6px;font-size:1.1em;margin:1em 0}
.banner.ok{background:#e6f4ea;border:1px solid #11692b}
.banner.bad{background:#fdecea;border:1px solid #b00020}
.warn{background:#fff4e5;border:1px solid #e08a00;padding:.6em 1em;border-radius:6px}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
"""


def _figure(name: str, caption: str, b64: str) -> str:
    return (
        f'<figure id="fig-{name}"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def _ecdf_plot(report: FidelityReport) -> str:
    from matplotlib.figure import Figure

    panels = [(k, DISTRIBUTIONS[k], report.sessions.ecdf.get(k)) for k in DISTRIBUTIONS]
    panels.append(
        (
            "watch_impression",
            "Watch time of clicked rows (s), per impression",
            report.impression.watch_quantiles or None,
        )
    )
    fig = Figure(figsize=(12, 6.5))
    axes = fig.subplots(2, 3).ravel()
    qs = np.linspace(0, 1, 101)
    for ax, (_, title, data) in zip(axes, panels):
        ax.set_title(title, fontsize=9)
        if not data:
            ax.text(0.5, 0.5, "not available", ha="center", va="center")
            continue
        ax.step(data["real"], qs, where="post", label="held-out", color="#222")
        ax.step(data["sim"], qs, where="post", label="simulated", color="#d9480f", ls="--")
        if title.endswith("(s)") or "watch" in title.lower():
            ax.set_xscale("symlog", linthresh=10)
        ax.set_ylabel("ECDF")
        ax.legend(fontsize=8, loc="lower right")
    axes[-1].axis("off")
    return _png(fig)


def _reliability_plot(report: FidelityReport) -> str:
    from matplotlib.figure import Figure

    panels = [("click", report.impression.reliability)]
    # the continuation model's diagram, when validation recorded it
    cont = getattr(report.impression, "continue_reliability", None)
    panels.append(("continuation", cont))
    fig = Figure(figsize=(9.6, 4.5))
    for ax, (name, rel) in zip(fig.subplots(1, 2), panels):
        what = "click" if name == "click" else "another-step"
        if rel is None or len(rel.mean_predicted) == 0:
            ax.set_title(f"{name} model", fontsize=10)
            ax.text(0.5, 0.5, "not available", ha="center", va="center")
            continue
        lo = 0.0 if name == "click" else min([*rel.mean_predicted, *rel.observed_rate]) * 0.95
        hi = max([*rel.mean_predicted, *rel.observed_rate, 0.05]) * 1.05
        hi = min(hi, 1.0)
        ax.plot([lo, hi], [lo, hi], color="#999", lw=1, label="perfect calibration")
        ax.plot(rel.mean_predicted, rel.observed_rate, "o-", color="#1c7ed6", label=f"{name} model")
        ax.set_title(f"{name} model", fontsize=10)
        ax.set_xlabel(f"mean predicted {what} probability (decile of predictions)")
        ax.set_ylabel(f"observed {what} rate")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.legend(fontsize=8)
    return _png(fig)


def _policy_plot(report: FidelityReport) -> str:
    from matplotlib.figure import Figure

    r = report.ranking
    assert r is not None
    kinds = [k for k in ("watch", "clicks") if k in r.policies[0].sim]
    fig = Figure(figsize=(11, 4))
    axes = np.atleast_1d(fig.subplots(1, len(kinds)))
    names = [p.name for p in r.policies]
    x = np.arange(len(names))
    for ax, kind in zip(axes, kinds):
        sim = [p.sim[kind] for p in r.policies]
        sim_se = [p.sim_se[kind] for p in r.policies]
        ref = [p.ref[kind] if not p.withheld else np.nan for p in r.policies]
        ref_se = [p.ref_se[kind] for p in r.policies]
        ax.bar(
            x - 0.2, sim, 0.4, yerr=1.96 * np.asarray(sim_se), label="simulator", color="#d9480f"
        )
        ax.bar(
            x + 0.2, ref, 0.4, yerr=1.96 * np.nan_to_num(ref_se), label="reference", color="#495057"
        )
        ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
        ax.set_title({"watch": "watch time", "clicks": "clicks"}[kind], fontsize=10)
        ax.legend(fontsize=8)
    return _png(fig)


def _html_table(metrics: tuple[Metric, ...]) -> str:
    head = (
        "<table id='figures'><thead><tr><th>section</th><th>figure</th><th>value</th>"
        "<th>95% CI</th><th>noise floor (sd)</th><th>gate</th><th>verdict</th><th>note</th>"
        "</tr></thead><tbody>"
    )
    rows = []
    for m in metrics:
        floor = (
            f"{_fmt(m.noise_floor)} ({_fmt(m.noise_floor_sd)})"
            if math.isfinite(m.noise_floor)
            else "-"
        )
        gate = f"{m.direction} {_fmt(m.threshold)}" if m.threshold is not None else "-"
        ci = f"[{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if math.isfinite(m.ci_low) else "-"
        cls = {True: "pass", False: "fail", None: "na"}[m.passed]
        rows.append(
            f"<tr data-key='{html.escape(m.key)}'><td>{m.section}</td><td>{html.escape(m.label)}"
            f"</td><td class='num'>{_fmt(m.value)}</td><td class='num'>{ci}</td>"
            f"<td class='num'>{floor}</td><td>{html.escape(gate)}</td>"
            f"<td class='{cls}'>{_verdict(m)}</td><td>{html.escape(m.note)}</td></tr>"
        )
    return head + "".join(rows) + "</tbody></table>"


def _html_policies(r: RankingResult) -> str:
    kinds = [k for k in ("watch", "clicks", "length") if k in r.policies[0].sim]
    head = (
        "<table id='policies'><thead><tr><th>policy</th>"
        + "".join(
            f"<th>{k}: simulator</th><th>{k}: reference</th><th>{k}: relative error [95% CI]</th>"
            for k in kinds
        )
        + "</tr></thead><tbody>"
    )
    rows = []
    for p in r.policies:
        cells = []
        for k in kinds:
            v, lo, hi = p.rel_error[k]
            ref = "withheld" if p.withheld else _fmt(p.ref[k])
            cells.append(
                f"<td class='num'>{_fmt(p.sim[k])}</td><td class='num'>{ref}</td>"
                f"<td class='num'>{v:+.1%} [{lo:+.1%}, {hi:+.1%}]</td>"
            )
        tag = " (logging-policy model)" if p.is_logging_model else ""
        if _shown_ope(p.session_ope):
            tag += f"<br><small>{html.escape(_shown_ope(p.session_ope))}</small>"
        rows.append(f"<tr><td>{html.escape(p.name)}{tag}</td>{''.join(cells)}</tr>")
    return head + "".join(rows) + "</tbody></table>"


def _render_html(report: FidelityReport) -> str:
    esc = html.escape
    ok = report.passed
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>simkit fidelity report</title><style>" + _CSS + "</style></head><body>",
        "<h1>simkit fidelity report</h1>",
        f"<p>Held-out logs <code>{esc(str(report.source.get('file')))}</code>: "
        f"{report.source.get('rows', 0):,} rows, {report.source.get('sessions', 0):,} sessions, "
        f"{report.source.get('users', 0):,} users. simkit {esc(report.simkit_version)}, "
        f"{esc(report.created)}.</p>",
        f"<div class='banner {'ok' if ok else 'bad'}' id='verdict'>"
        f"{esc(report.summary().splitlines()[0])}</div>",
    ]
    if report.failed:
        items = "".join(
            f"<li data-key='{esc(m.key)}'><b>{esc(m.label)}</b>: {_fmt(m.value)} (gate "
            f"{esc(m.direction)} {_fmt(m.threshold)}). {esc(explain(m.key))}</li>"
            for m in report.failed
        )
        parts.append(f"<ul id='failed-gates'>{items}</ul>")
    parts += [f"<p class='warn ks-mean'>{esc(n)}</p>" for n in _ks_vs_mean(report.metrics)]
    parts += [f"<p class='warn'>{esc(n)}</p>" for n in report.notes]
    if report.confounding.fired:
        parts.append(
            f"<p class='warn' id='confounding-warning'>{esc(report.confounding.message)}</p>"
        )
    parts += [
        "<h2>Every figure</h2>",
        "<p>Each KS distance stands beside its noise floor: the same statistic between two random "
        "halves of the held-out sessions, averaged over at least 30 splits (standard deviation in "
        "brackets). Intervals are percentile bootstraps over held-out sessions (users for the "
        "confounding check).</p>",
        _html_table(report.metrics),
        "<h2>Per-impression fidelity</h2>",
        f"<p>{report.impression.n_rows:,} held-out impressions replayed through the simulator's "
        f"state code; click rate {report.impression.click_rate:.3f}.</p>",
        _figure(
            "reliability",
            "Reliability diagrams on held-out data: the click model (impressions) and the "
            "continuation model (steps)",
            _reliability_plot(report),
        ),
        "<h2>Session-level fidelity</h2>",
        f"<p>{esc(report.sessions.driving)}</p>",
        _figure(
            "ecdf",
            "ECDFs, simulated (dashed) vs held-out (solid): session distributions "
            "and per-impression watch time",
            _ecdf_plot(report),
        ),
        "<h2>Policy ranking</h2>",
    ]
    if report.ranking is None:
        parts.append("<p>Not run: no ground-truth world and no logged propensities.</p>")
    else:
        r = report.ranking
        parts += [
            f"<p>Reference: {esc(r.reference)}. {r.n_sessions:,} sessions (decisions under OPE) "
            f"per policy, {r.n_candidates} uniformly drawn candidates per step. The logging policy "
            f"is {esc(report.logging_policy)}. {esc(r.note)}</p>",
            _figure(
                "policies",
                "Per-policy values: simulator vs reference (95% intervals)",
                _policy_plot(report),
            ),
            f"<p id='withheld'>{esc(_withheld_summary(r))}</p>" if _withheld_reasons(r) else "",
            f"<p id='which-check'>{esc(_which_check(report))}</p>" if _which_check(report) else "",
            _html_policies(r),
        ]
    parts += [
        "<h2>Confounding check</h2>",
        f"<p id='confounding'>{esc(report.confounding.message)}</p>",
    ]
    c = report.confounding
    if c.ran:
        parts.append(
            f"<p>Relative held-out log-loss improvement from the logged propensity: {c.gain:+.2%} "
            f"(95% CI [{c.ci_low:+.2%}, {c.ci_high:+.2%}], bootstrap over {c.n_users:,} users); "
            f"the check fires when the lower bound exceeds {c.threshold:.1%}.</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
