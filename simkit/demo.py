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

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simkit.demo_report import render_report
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

    html_text = render_report(
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
