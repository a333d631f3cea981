"""The whole path in one command: ``simkit demo [--out DIR] [--quick]``.

On the bundled ``data_samples/`` the demo

1. fits a simulator on 80% of the users (:func:`simkit.fitters.fit_simulator`);
2. validates it on the held-out 20% (:func:`simkit.validation.validate`);
3. trains the bundled agents on short budgets (:func:`simkit.agents.train.train_agent`): random,
   popular, greedy, LinUCB, REINFORCE and DQN in ``simkit/Session-v0``, the dual critic in
   ``simkit/Retention-v0``, and DRL-PUT on ``data_samples/ads.parquet`` (the uniform exploration
   log of ``simkit/AdUtility-v0``'s world);
4. evaluates them on the same simulated users (:func:`simkit.agents.train.evaluate_runs`), with a
   trust verdict per agent (:func:`simkit.validation.trust.trust_report`);
5. writes one self-contained HTML page (``DIR/report.html``, every plot embedded): fidelity,
   learning curves, the agent comparison (table and chart), retention, DRL-PUT's CTR and revenue.

A step that fails (an agent or env not ready in this version) is shown in the report as not run,
with its error, instead of stopping the demo or being replaced by a made-up figure.

``--quick`` is a smoke run: 500 users, small models and a few hundred steps per agent. Its figures
show that every part runs, not what the agents can learn.

References
----------
The agents' papers are cited in their modules (:mod:`simkit.agents`); the figures of the report
are described in ``docs/report.md``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simkit.errors import ArtifactError, ConfigError

__all__ = ["DemoBudget", "DemoResult", "FULL", "QUICK", "find_samples", "run_demo"]

SESSION_AGENTS = ("random", "popular", "greedy", "linucb", "reinforce", "dqn")
"""Agents the demo trains in ``simkit/Session-v0``."""
RETENTION_AGENT = "dual-critic"


@dataclass(frozen=True, kw_only=True)
class DemoBudget:
    """How much work each stage of the demo does.

    Parameters
    ----------
    users : int or None
        Users of the sample log used (None: all 3,000).
    n_estimators : int
        LightGBM trees at most per response model (early stopping may use fewer).
    validate_sessions, n_bootstrap : int
        Sessions per policy in the fidelity ranking check, and bootstrap resamples.
    steps : mapping of str to int
        Training env steps per agent.
    baseline_episodes : int
        Episodes of the random and popular reference lines on each learning curve.
    eval_episodes, retention_episodes : int
        Evaluation episodes per agent in ``simkit/Session-v0`` and ``simkit/Retention-v0``.
    trust_sessions, trust_ope_sessions : int
        Simulated sessions per run behind each trust report, and held-out sessions behind its
        off-policy estimates.
    drl_put_steps : int
        DRL-PUT updates (mini-batches of 2,048 logged requests).
    """

    users: int | None
    n_estimators: int
    validate_sessions: int
    n_bootstrap: int
    steps: Mapping[str, int]
    baseline_episodes: int
    eval_episodes: int
    retention_episodes: int
    trust_sessions: int
    trust_ope_sessions: int
    drl_put_steps: int


QUICK = DemoBudget(
    users=500,
    n_estimators=60,
    validate_sessions=150,
    n_bootstrap=20,
    steps={
        "random": 200,
        "popular": 200,
        "greedy": 200,
        "linucb": 600,
        "reinforce": 600,
        "dqn": 400,
        "dual-critic": 400,
    },
    baseline_episodes=10,
    eval_episodes=20,
    retention_episodes=4,
    trust_sessions=20,
    trust_ope_sessions=40,
    drl_put_steps=20,
)
"""``simkit demo --quick``: a smoke run of every stage (under a minute on a quiet 2-core machine)."""

FULL = DemoBudget(
    users=None,
    n_estimators=2000,
    validate_sessions=4000,
    n_bootstrap=200,
    steps={
        "random": 2000,
        "popular": 2000,
        "greedy": 2000,
        "linucb": 4000,
        "reinforce": 8000,
        "dqn": 8000,
        "dual-critic": 12000,
    },
    baseline_episodes=100,
    eval_episodes=300,
    retention_episodes=60,
    trust_sessions=300,
    trust_ope_sessions=300,
    drl_put_steps=300,
)
"""``simkit demo``: short training budgets, the default fit and validation."""


@dataclass(frozen=True, kw_only=True)
class DemoResult:
    """What :func:`run_demo` wrote.

    Attributes
    ----------
    report : Path
        The HTML report.
    out : Path
        The demo folder (simulator, run folders, report).
    seconds : float
        Wall time of the whole demo.
    stages : dict of str to float
        Wall time of each stage.
    not_run : dict of str to str
        Stages or agents that failed, with their error.
    """

    report: Path
    out: Path
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)


def find_samples(data: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the sample logs: ``data``, else ``./data_samples``, else the repository's.

    Raises
    ------
    ConfigError
        When no folder holds ``logs.parquet``, ``items.parquet`` and ``ads.parquet``.
    """
    need = ("logs.parquet", "items.parquet", "ads.parquet")
    here = Path(__file__).resolve().parents[1] / "data_samples"
    tried = [Path(data)] if data is not None else [Path("data_samples"), here]
    for folder in tried:
        if all((folder / name).is_file() for name in need):
            return folder
    raise ConfigError(
        f"The demo needs a folder with {', '.join(need)}; none found in "
        f"{', '.join(str(t) for t in tried)}. Run it from a clone of the repository or pass "
        "--data DIR (the data_samples folder of the repository)."
    )


def _check_out(out: Path) -> None:
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "demo.json").exists())
    ):
        raise ArtifactError(
            f"{out} exists and is not a demo folder (no demo.json); refusing to write into it. "
            "Choose another --out folder."
        )


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


class _Stages:
    """Times each stage, records failures, and prints one line per stage."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.seconds: dict[str, float] = {}
        self.not_run: dict[str, str] = {}
        self.echo = echo

    def run(self, name: str, func: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            out = func()
        except Exception as exc:  # a part not ready: shown in the report, the demo goes on
            self.not_run[name] = f"{type(exc).__name__}: {exc}"
            self.echo(f"  {name}: NOT RUN ({type(exc).__name__}: {exc})")
            out = None
        took = time.perf_counter() - start
        self.seconds[name] = round(took, 2)
        if name not in self.not_run:
            self.echo(f"  {name}: {took:.1f} s")
        return out


def run_demo(
    out: str | os.PathLike[str] = "simkit-demo",
    *,
    quick: bool = False,
    data: str | os.PathLike[str] | None = None,
    seed: int = 0,
    budget: DemoBudget | None = None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Fit, validate, train, evaluate and report on the sample logs (see the module docstring).

    Parameters
    ----------
    out : str or PathLike
        Demo folder: ``sim/``, ``runs/NAME/``, ``report.html``, ``demo.json``. An earlier demo
        folder is replaced; any other non-empty folder is refused.
    quick : bool
        Use :data:`QUICK` instead of :data:`FULL`.
    data : str or PathLike, optional
        Folder of the sample logs (see :func:`find_samples`).
    seed : int
        Seed of the split, the fit, training and evaluation (each its own stream).
    budget : DemoBudget, optional
        Overrides the budget ``quick`` selects.
    echo : callable
        Receives one line per stage.

    Returns
    -------
    DemoResult

    Raises
    ------
    ConfigError
        No sample folder.
    ArtifactError
        ``out`` is a non-empty folder that is not a demo folder.

    Examples
    --------
    >>> res = run_demo("demo", quick=True)                                  # doctest: +SKIP
    >>> res.report                                                          # doctest: +SKIP
    PosixPath('demo/report.html')
    """
    from simkit.fitters import FitConfig, fit_simulator
    from simkit.logs import read_logs, split_logs

    b = budget or (QUICK if quick else FULL)
    samples = find_samples(data)
    out = Path(out)
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps({"format": "simkit-demo", "finished": False}))
    start = time.perf_counter()
    st = _Stages(echo)
    split_rng, fit_rng, val_rng, train_rng, eval_rng, trust_rng, ads_rng = np.random.default_rng(
        seed
    ).spawn(7)
    echo(f"simkit demo{' --quick' if quick else ''}: samples {samples}, output {out}")

    def load() -> Any:
        logs = read_logs(samples / "logs.parquet", items=samples / "items.parquet")
        if b.users is not None and b.users < logs.n_users:
            users = logs.frame["user_id"].unique()
            keep = split_rng.choice(users, size=b.users, replace=False)
            logs = logs.subset(logs.frame["user_id"].isin(keep).to_numpy())
        return logs, *split_logs(logs, by="user", holdout=0.2, rng=split_rng)

    loaded = st.run("read logs", load)
    if loaded is None:
        raise ConfigError(f"The sample logs in {samples} could not be read: {st.not_run}")
    logs, train, held_out = loaded
    sim_dir = out / "sim"

    def fit() -> Any:
        config = FitConfig(n_estimators=b.n_estimators)
        sim = fit_simulator(train, config, rng=fit_rng, holdout=held_out)
        sim.save(sim_dir, overwrite=True)
        return sim

    sim = st.run("fit", fit)
    if sim is None:
        raise ConfigError(f"The simulator could not be fitted: {st.not_run['fit']}")

    def validate_sim() -> Any:
        from simkit.validation import validate

        return validate(
            sim,
            held_out,
            rng=val_rng,
            n_sessions=b.validate_sessions,
            n_bootstrap=b.n_bootstrap,
        )

    fidelity = st.run("validate", validate_sim)

    runs: dict[str, Any] = {}
    (out / "runs").mkdir(exist_ok=True)
    for name in (*SESSION_AGENTS, RETENTION_AGENT):
        from simkit.agents.train import train_agent

        def train_one(name: str = name) -> Any:
            return train_agent(
                sim_dir,
                name,
                n_steps=b.steps[name],
                out=out / "runs" / name,
                rng=train_rng.spawn(1)[0],
                overwrite=True,
                baseline_episodes=b.baseline_episodes,
            )

        result = st.run(f"train {name}", train_one)
        if result is not None:
            runs[name] = result

    session_runs = [n for n in SESSION_AGENTS if n in runs]

    def evaluate_session() -> Any:
        from simkit.agents.train import evaluate_runs, plot_comparison

        res = evaluate_runs(
            sim_dir,
            [out / "runs" / n for n in session_runs],
            episodes=b.eval_episodes,
            rng=eval_rng,
            env_id="simkit/Session-v0",
        )
        plot_comparison(res, out / "evaluation.png")
        return res

    evaluation = st.run("evaluate (Session-v0)", evaluate_session) if session_runs else None

    def evaluate_retention() -> Any:
        from simkit.agents.train import evaluate_runs

        names = [n for n in ("random", "popular", "greedy", RETENTION_AGENT) if n in runs]
        return evaluate_runs(
            sim_dir,
            [out / "runs" / n for n in names],
            episodes=b.retention_episodes,
            rng=eval_rng.spawn(1)[0],
            env_id="simkit/Retention-v0",
        )

    retention = (
        st.run("evaluate (Retention-v0)", evaluate_retention) if RETENTION_AGENT in runs else None
    )

    trust: dict[str, Any] = {}

    def confounding() -> Any:
        from simkit.validation.confounding import confounding_check

        return confounding_check(sim, held_out, rng=trust_rng.spawn(1)[0])

    conf = st.run("confounding check", confounding)
    for name in runs:

        def trust_one(name: str = name) -> Any:
            from simkit.agents.policy import load_agent_policies
            from simkit.validation.trust import trust_report

            (policy,) = load_agent_policies([out / "runs" / name])
            return trust_report(
                sim,
                policy,
                held_out,
                rng=trust_rng.spawn(1)[0],
                n_sessions=b.trust_sessions,
                ope_sessions=b.trust_ope_sessions,
                confounding=conf if conf is not None else False,
            )

        report = st.run(f"trust {name}", trust_one)
        if report is not None:
            trust[name] = report

    ads = st.run("DRL-PUT", lambda: _drl_put(samples / "ads.parquet", out, b, ads_rng))

    html_text = _render(
        fidelity=fidelity,
        runs=runs,
        evaluation=evaluation,
        retention=retention,
        trust=trust,
        ads=ads,
        stages=st,
        budget=b,
        quick=quick,
        out=out,
        sizes=(logs.n_users, train.n_users, held_out.n_users, logs.n_rows),
        seconds=time.perf_counter() - start,
    )
    report_path = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text(html_text, encoding="utf-8")
    os.replace(tmp, report_path)
    seconds = time.perf_counter() - start
    (out / "demo.json").write_text(
        json.dumps(
            {
                "format": "simkit-demo",
                "finished": True,
                "quick": quick,
                "seed": seed,
                "seconds": round(seconds, 1),
                "stages": st.seconds,
                "not_run": st.not_run,
            },
            indent=2,
        )
    )
    return DemoResult(
        report=report_path, out=out, seconds=seconds, stages=st.seconds, not_run=st.not_run
    )


# --------------------------------------------------------------------------- DRL-PUT


def _drl_put(path: Path, out: Path, b: DemoBudget, rng: np.random.Generator) -> dict[str, Any]:
    """Train DRL-PUT on 80% of the ads log's users, gate it on the rest, and measure the truth.

    The true expected CTR and revenue per request come from the ads world that wrote the sample
    (:class:`simkit.ads_world.AdsWorld`, default configuration), over its whole population of
    (user, hour) requests: the learned settings, the logging policy (uniform over the 1,000
    settings) and the best single static setting.
    """
    import pandas as pd

    from simkit.ads_world import AdsWorld
    from simkit.agents.drl_put import DRLPUT

    frame = pd.read_parquet(path)
    users = frame["user_id"].unique()
    split_rng, train_rng, gate_rng = rng.spawn(3)
    held = split_rng.choice(users, size=max(1, len(users) // 5), replace=False)
    is_held = frame["user_id"].isin(held).to_numpy()
    agent = DRLPUT()
    losses = agent.learn_from_logs(frame[~is_held], rng=train_rng, n_steps=b.drl_put_steps)
    (out / "runs" / "drl-put").mkdir(parents=True, exist_ok=True)
    agent.save(out / "runs" / "drl-put" / "agent", overwrite=True)
    div, gain = agent.gates(frame[is_held], rng=gate_rng, n_bootstrap=min(1000, 10 * b.n_bootstrap))
    world = AdsWorld()
    s = world.summary()
    learned = agent.predict(world.population_features)
    n = len(learned)
    policies = {
        "logging (uniform over 1,000 settings)": np.full((n, 1000), 1e-3),
        f"best static setting (action {s['best_global_action']})": np.full(
            n, s["best_global_action"]
        ),
        "DRL-PUT (argmax)": learned,
    }
    table = world.action_table()
    cells = world.population["cell"].to_numpy()

    def per_request(metric: str, a: Any) -> Any:
        t = table[metric][cells]
        a = np.asarray(a)
        return (t * a).sum(axis=1) if a.ndim == 2 else t[np.arange(len(t)), a]

    rows = []
    for label, actions in policies.items():
        rows.append(
            {
                "policy": label,
                "ctr": float(per_request("click", actions).mean()),
                "revenue": float(per_request("revenue", actions).mean()),
                "reward": float(per_request("reward", actions).mean()),
            }
        )
    static = policies[list(policies)[1]]
    paired = {}
    for metric in ("click", "revenue"):
        d = per_request(metric, learned) - per_request(metric, static)
        base = float(per_request(metric, static).mean())
        half = 1.96 * float(d.std(ddof=1)) / math.sqrt(d.size)
        paired[metric] = (d.mean() / base, (d.mean() - half) / base, (d.mean() + half) / base)
    return {
        "losses": losses,
        "rows": rows,
        "paired": paired,
        "diversity": div,
        "gain": gain,
        "n_train": int((~is_held).sum()),
        "n_held": int(is_held.sum()),
        "normalised_gain": (rows[2]["reward"] - s["uniform"]) / (s["oracle"] - s["uniform"]),
    }


# --------------------------------------------------------------------------- HTML


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


def _not_run(stages: _Stages, prefix: str) -> str:
    items = [(k, v) for k, v in stages.not_run.items() if k.startswith(prefix)]
    return "".join(
        f"<p class='notrun'>Not run: <b>{html.escape(k)}</b>: {html.escape(v)}</p>"
        for k, v in items
    )


def _render(
    *,
    fidelity: Any,
    runs: dict[str, Any],
    evaluation: Any,
    retention: Any,
    trust: dict[str, Any],
    ads: Any,
    stages: _Stages,
    budget: DemoBudget,
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
