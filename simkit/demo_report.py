"""The HTML of ``simkit demo``'s report: one self-contained page (plots embedded as PNG).

Rendering only; :mod:`simkit.demo` runs the stages and passes their results to
:func:`render_report`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["render_report"]


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(name: str, caption: str, b64: str) -> str:
    return (
        f'<figure id="fig-{name}"><img alt="{html.escape(caption)}" src="data:image/png;base64,'
        f'{b64}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def _table(head: list[str], rows: list[list[Any]], table_id: str) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table id='{table_id}'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _ci(ci: Any, digits: int) -> str:
    if ci is None:
        return "-"
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h2{border-bottom:2px solid #333;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4} figure img{max-width:100%;border:1px solid #eee}
.notrun{background:#fff4e5;border:1px solid #e08a00;padding:.6em 1em;border-radius:6px}
.fidelity{border-left:3px solid #ccc;padding-left:1em}
"""


def _fidelity_html(report: Any) -> str:
    """The body of the fidelity report (its own page is also written next to the demo's)."""
    page = report.to_html()
    body = re.search(r"<body>(.*)</body>", page, flags=re.S)
    inner = body.group(1) if body else page
    inner = inner.replace("<h1>", "<h3>").replace("</h1>", "</h3>")
    return f"<div class='fidelity'>{inner}</div>"


def _overlap(gain: Any) -> str:
    """Why a Relative_Gain gate failed for lack of overlap, if it did."""
    est = gain.policy
    if est.enough_overlap:
        return ""
    return (
        f" (its SNIPS estimate rests on an effective sample size of {est.ess:.0f} held-out "
        f"requests against the {est.min_ess:.0f} the gate needs: with 1,000 settings about one "
        "request in 1,000 matches the policy's choice, so the gate needs about 10^5 held-out "
        "requests)"
    )


def _not_run(stages: Any, prefix: str) -> str:
    items = [(k, v) for k, v in stages.not_run.items() if k.startswith(prefix)]
    return "".join(
        f"<p class='notrun'>Not run: <b>{html.escape(k)}</b>: {html.escape(v)}</p>"
        for k, v in items
    )


def render_report(
    *,
    fidelity: Any,
    runs: dict[str, Any],
    evaluation: Any,
    retention: Any,
    trust: dict[str, Any],
    ads: Any,
    stages: Any,
    budget: Any,
    quick: bool,
    out: Path,
    sizes: tuple[int, int, int, int],
    seconds: float,
) -> str:
    from simkit import __version__
    from simkit.agents.registry import AGENTS
    from simkit.agents.train import curve_figure

    esc = html.escape
    n_users, n_train, n_held, n_rows = sizes
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>simkit demo report</title><style>{_CSS}</style></head><body>",
        "<h1>simkit demo</h1>",
        f"<p id='summary'>simkit {esc(__version__)}, {'quick smoke run' if quick else 'full run'}"
        f" on the bundled sample: {n_rows:,} impressions of {n_users:,} users; the simulator is "
        f"fitted on {n_train:,} users and checked on the {n_held:,} held-out ones. Total time "
        f"{seconds:.0f} s.</p>",
    ]
    if quick:
        parts.append(
            "<p class='notrun'>Quick run: small models, a few hundred training steps and few "
            "evaluation episodes. The figures show that every stage runs, not what the agents "
            "can learn; run <code>simkit demo</code> for those.</p>"
        )
    if stages.not_run:
        parts.append(
            "<p class='notrun' id='not-run'>Not run in this version: "
            + "; ".join(esc(f"{k} ({v})") for k, v in stages.not_run.items())
            + "</p>"
        )

    # fidelity
    parts.append("<section id='fidelity'><h2>1. Fidelity of the simulator</h2>")
    if fidelity is not None:
        fidelity.to_html(out / "fidelity.html")
        parts.append(
            "<p>The fidelity report of the held-out users (also written alone as "
            "<code>fidelity.html</code>). docs/report.md explains every figure.</p>"
        )
        parts.append(_fidelity_html(fidelity))
    parts.append(_not_run(stages, "validate") + "</section>")

    # learning curves
    parts.append("<section id='learning-curves'><h2>2. Learning curves</h2>")
    parts.append(
        "<p>Return of every training episode against env steps, its moving average, and the "
        "random and most-popular policies' mean returns in the same simulator (dashed). In "
        "simkit/Session-v0 the return is the seconds watched in a session; in "
        "simkit/Retention-v0 (dual critic) it is clicks minus the days until each return, over "
        "the user's horizon.</p>"
    )
    for name, res in runs.items():
        if not res.settings["learns"]:
            continue  # random, popular and greedy: their level is in the comparison
        spec = AGENTS[name]
        fig = curve_figure(
            res.returns,
            res.end_steps,
            title=f"{name} ({spec.env}, {res.settings['n_steps']:,} steps)",
            baselines=res.settings.get("baselines") or {},
        )
        parts.append(
            _img(f"curve-{name}", f"{name}: {res.settings['learning_summary']}", _png(fig))
        )
    if ads is not None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 3.5))
        ax = fig.add_subplot()
        losses = np.asarray(ads["losses"])
        ax.plot(np.arange(1, len(losses) + 1), losses, ".-", ms=3)
        ax.set_xlabel("update (mini-batch of logged requests)")
        ax.set_ylabel("loss")
        ax.set_title("DRL-PUT training loss on data_samples/ads.parquet")
        parts.append(
            _img("curve-drl-put", "DRL-PUT: reward-weighted log-likelihood loss", _png(fig))
        )
    parts.append(_not_run(stages, "train") + "</section>")

    # comparison
    parts.append("<section id='comparison'><h2>3. Agent comparison (simkit/Session-v0)</h2>")
    if evaluation is not None:
        first = next(iter(evaluation.values()))
        parts.append(
            f"<p>Every agent meets the same {first.n_episodes:,} simulated users (95% "
            "intervals). The trust verdict asks whether the simulated result can be believed: "
            "coverage of the agent's choices by the held-out logs, the confounding check and, "
            "with an ensemble fit, the members' spread (simkit trust SIM RUN --logs; "
            "docs/report.md).</p>"
        )
        rows = []
        for label, r in evaluation.items():
            rep = trust.get(label)
            rows.append(
                [
                    label,
                    f"{runs[label].settings['n_steps']:,}" if label in runs else "-",
                    f"{r.mean_return:.1f}",
                    _ci(r.return_ci, 1),
                    f"{r.mean_length:.2f}",
                    "-" if r.click_rate is None else f"{r.click_rate:.3f}",
                    "-" if rep is None else f"{rep.coverage.pair:.0%}",
                    "not run" if rep is None else ("trusted" if rep.trusted else "do not trust"),
                    "" if rep is None else "; ".join(f.kind for f in rep.flags),
                ]
            )
        parts.append(
            _table(
                [
                    "agent",
                    "training steps",
                    "mean return (s)",
                    "95% CI",
                    "session length",
                    "click rate",
                    "coverage",
                    "trust verdict",
                    "flags",
                ],
                rows,
                "comparison-table",
            )
        )
        png = out / "evaluation.png"
        if png.is_file():
            b64 = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(_img("comparison", "Mean return, session length and click rate", b64))
        details = "".join(
            f"<details><summary>{esc(rep.verdict)}</summary><pre>{esc(rep.text())}</pre></details>"
            for rep in trust.values()
        )
        parts.append(f"<div id='trust'>{details}</div>")
    parts.append(
        _not_run(stages, "evaluate (Session")
        + _not_run(stages, "trust")
        + _not_run(stages, "confounding")
        + "</section>"
    )

    # retention
    parts.append("<section id='retention'><h2>4. Retention (simkit/Retention-v0)</h2>")
    if retention is not None:
        parts.append(
            "<p>Each episode is one simulated user over the env's horizon of days; the dual "
            "critic (RLUR, Cai et al. 2023) is trained on clicks minus return days, the others "
            "are the session agents run unchanged.</p>"
        )
        rows = []
        for label, r in retention.items():
            fig = r.retention.summary()
            cells = [label]
            for key, digits in (
                ("sessions_per_user", 2),
                ("return_days", 2),
                ("day1_retention", 3),
                ("watch_per_user", 0),
            ):
                mean, lo, hi = fig[key]
                cells += [f"{mean:.{digits}f}", _ci((lo, hi), digits)]
            rows.append(cells)
        parts.append(
            _table(
                [
                    "agent",
                    "sessions/user",
                    "95% CI",
                    "return days",
                    "95% CI",
                    "day-1 retention",
                    "95% CI",
                    "watch/user (s)",
                    "95% CI",
                ],
                rows,
                "retention-table",
            )
        )
    parts.append(_not_run(stages, "evaluate (Retention") + "</section>")

    # DRL-PUT
    parts.append(
        "<section id='drl-put'><h2>5. DRL-PUT: ad utility tuning (simkit/AdUtility-v0)</h2>"
    )
    if ads is not None:
        parts.append(
            f"<p>Trained on {ads['n_train']:,} uniformly explored requests of "
            f"data_samples/ads.parquet and gated on {ads['n_held']:,} requests of held-out "
            "users. The true expected figures per request come from the ads world that wrote the "
            "sample (simkit.ads_world.AdsWorld), over its whole request population; on your own "
            "ads logs only the off-policy gain below is available.</p>"
        )
        rows = [
            [r["policy"], f"{r['ctr']:.4f}", f"{r['revenue']:.4f}", f"{r['reward']:.4f}"]
            for r in ads["rows"]
        ]
        parts.append(
            _table(
                ["policy", "CTR (clicks per request)", "revenue per request", "reward per request"],
                rows,
                "drl-put-table",
            )
        )
        ctr, rev = ads["paired"]["click"], ads["paired"]["revenue"]
        g, d = ads["gain"], ads["diversity"]
        parts.append(
            "<ul>"
            f"<li>CTR against the best static setting: {ctr[0]:+.1%} (95% CI [{ctr[1]:+.1%}, "
            f"{ctr[2]:+.1%}]); revenue: {rev[0]:+.1%} ([{rev[1]:+.1%}, {rev[2]:+.1%}]).</li>"
            f"<li>Normalised gain (uniform 0, per-cell oracle 1): {ads['normalised_gain']:.3f}."
            "</li>"
            f"<li>Relative_Gain over the logging policy by SNIPS on held-out users: "
            f"{g.value:+.3f} (95% CI [{g.ci_low:+.3f}, {g.ci_high:+.3f}]), gate "
            f"{'passed' if g.passed else 'failed'}{_overlap(g)}; diversity: {d.n_distinct} distinct "
            f"settings, gate {'passed' if d.passed else 'failed'}.</li></ul>"
        )
    parts.append(_not_run(stages, "DRL-PUT") + "</section>")

    # timings
    rows = [[k, f"{v:.1f}"] for k, v in stages.seconds.items()]
    parts.append("<section id='timings'><h2>6. Time per stage</h2>")
    parts.append(_table(["stage", "seconds"], rows, "timings-table"))
    parts.append(
        f"<p>Budgets: {esc(json.dumps(dict(budget.steps)))} training steps; "
        f"{budget.eval_episodes} evaluation episodes per agent.</p></section>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)
