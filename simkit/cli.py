"""The ``simkit`` command line: ``synth``, ``check-log``, ``fit``, ``validate``, ``train``, ``evaluate``,
``export``, ``shadow``.

Every command has ``--help``. A user mistake (bad logs, a missing file, a tampered simulator)
prints one plain paragraph and exits 1, without a traceback; a usage error exits 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from simkit.errors import FidelityError, SimkitError

if TYPE_CHECKING:
    from simkit.logs import LogSchema

__all__ = ["main"]


def _cmd_synth(args: argparse.Namespace) -> int:
    import numpy as np

    from simkit.synthetic import WorldConfig, write_samples
    from simkit.synthetic_bandit import BanditWorldConfig
    from simkit.synthetic_lists import ListWorldConfig

    sized = {} if args.items is None else {"n_items": args.items}
    config: WorldConfig | ListWorldConfig | BanditWorldConfig
    if args.mode == "lists":
        config = ListWorldConfig(**sized)
    elif args.mode == "bandit":
        config = BanditWorldConfig(**sized)
    else:
        config = WorldConfig(
            confounded=args.confounded,
            misspecified=args.misspecified,
            hidden_embedding=args.mode == "hidden",
            log_days=args.log_days,
            **sized,
        )
    paths = write_samples(
        args.out,
        n_sessions=args.sessions,
        rng=np.random.default_rng(args.seed),
        config=config,
        chunk_users=args.chunk_users,
    )
    for path in paths.values():
        print(f"wrote {path}  ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def _format_quantiles(q: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in q.items())


def _cmd_check_log(args: argparse.Namespace) -> int:
    from simkit.logs import LogSchema, read_logs

    schema = LogSchema.from_toml(args.schema) if args.schema else None
    logs = read_logs(args.path, schema, items=args.items)
    d = logs.describe()
    print(f"{logs.source}: valid")
    print(f"  rows {d['rows']:,}   users {d['users']:,}   sessions {d['sessions']:,}")
    print(f"  click rate {d['click_rate']:.4f}")
    print(f"  session length: {_format_quantiles(d['session_length'])}")
    print(f"  watch time of clicked rows (s): {_format_quantiles(d['watch_time'])}")
    repairs = d.get("repairs") or {}
    if repairs:
        for what, count in repairs.items():
            print(f"  repaired: {what}: {count:,} rows")
    else:
        print("  repaired: nothing")
    ignored = d.get("ignored_columns") or []
    if ignored:
        print(f"  ignored columns: {', '.join(ignored)}")
    if not logs.dwell:
        print("  no dwell time: a click-only log (a simulator fitted on it has no watch model)")
    for text in logs.warnings:
        print(f"  warning: {text}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import numpy as np

    from simkit.artifacts import check_output_folder
    from simkit.errors import ConfigError
    from simkit.fitters import FitConfig, fit_simulator
    from simkit.fitters.fit import check_fittable
    from simkit.logs import LogSchema, read_logs, split_logs

    start = time.perf_counter()
    check_output_folder(args.out, overwrite=args.overwrite, kind="simulator")
    if not 0 < args.holdout < 1:
        raise ConfigError(f"--holdout must be in (0, 1); got {args.holdout}. Use e.g. 0.2.")
    schema = LogSchema.from_toml(args.schema) if args.schema else None
    logs = read_logs(args.logs, schema, items=args.items)
    check_fittable(logs)
    if logs.n_users < 2:
        raise ConfigError(
            f"{logs.source}: the fit holds out a share of users to measure the simulator, but the "
            f"log has {logs.n_users} user; provide logs of more users."
        )
    rng = np.random.default_rng(args.seed)
    split_rng, fit_rng = rng.spawn(2)
    train, holdout = split_logs(logs, by="user", holdout=args.holdout, rng=split_rng)
    check_fittable(train, whole=logs)
    simulator = fit_simulator(
        train,
        config=FitConfig(ensemble=args.ensemble),
        rng=fit_rng,
        holdout=holdout,
        progress=not args.quiet,
    )
    simulator.save(args.out, overwrite=args.overwrite)
    m = simulator.metrics
    took = time.perf_counter() - start

    def fig(key: str, why: str) -> str:
        value = m.get(key, float("nan"))
        return f"{value:.4f}" if value == value else f"not measured ({why})"

    print(f"fitted {args.out} from {logs.source}")
    print(
        f"  rows {train.n_rows:,} train / {holdout.n_rows:,} held out;  sessions {logs.n_sessions:,}"
    )
    no_cont = "one decision per session" if simulator.cont is None else "too few held-out steps"
    no_watch = "no dwell time in the log" if simulator.watch is None else "too few held-out clicks"
    print(
        f"  held-out click AUC {fig('click_auc', 'held-out rows need clicks and non-clicks')}   "
        f"continuation AUC {fig('continue_auc', no_cont)}"
    )
    print(f"  watch-time KS (sampled vs held-out clicked rows) {fig('watch_ks', no_watch)}")
    for text in [*logs.warnings, *m.get("warnings", [])]:
        print(f"  warning: {text}")
    print(f"  time {took:.1f} s")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from simkit.logs import read_logs
    from simkit.simulator import Simulator
    from simkit.validation import Gates, validate

    known = {f.name for f in dataclasses.fields(Gates)}
    overrides: dict[str, float] = {}
    problems = []
    for text in args.gates or []:
        name, _, value = text.partition("=")
        try:
            overrides[name.strip()] = float(value)
        except ValueError:
            problems.append(f"expected NAME=NUMBER (e.g. click_auc_min=0.65); got {text!r}")
    unknown = sorted(set(overrides) - known)
    if unknown:
        problems.append(
            f"unknown gate(s) {', '.join(unknown)}; known gates: {', '.join(sorted(known))}"
        )
    if problems:
        print("simkit validate: " + "; ".join(problems) + ".", file=sys.stderr)
        return 2
    from simkit.artifacts import check_output_file

    check_output_file(args.out, suffixes=(".json", ".md"))
    start = time.perf_counter()
    gates = Gates(**overrides)
    simulator = Simulator.load(args.simulator)
    holdout = read_logs(args.logs, _schema(args), items=args.items)
    extra = None
    if args.agents:
        from simkit.agents.policy import load_agent_policies

        extra = list(load_agent_policies(args.agents))
    report = validate(
        simulator,
        holdout,
        rng=np.random.default_rng(args.seed),
        progress=not args.quiet,
        gates=gates,
        n_sessions=args.sessions,
        policies=extra,  # type: ignore[arg-type]
    )
    report.to_html(args.out)
    base = str(args.out).removesuffix(".html")
    report.to_json(base + ".json")
    report.to_markdown(base + ".md")
    print(report.summary())
    print(f"report written to {args.out} (and {base}.json, {base}.md)")
    print(f"  time {time.perf_counter() - start:.1f} s")
    if args.strict and not report.passed:
        raise FidelityError(
            "Fidelity gates failed (see the report); exiting 1 because of --strict."
        )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from simkit.agents.train import train_agent

    if args.logs is not None or args.top_k is not None:
        return _train_from_logs(args)
    result = train_agent(
        args.simulator,
        args.agent,
        n_steps=args.steps,
        out=args.out,
        rng=np.random.default_rng(args.seed),
        n_candidates=args.candidates,
        overwrite=args.overwrite,
        progress=not args.quiet,
        record={"seed": args.seed},
    )
    returns, out = result.returns, result.run_dir
    verb = "trained" if result.settings["learns"] else "ran (no learning)"
    print(f"{verb} {args.agent} for {args.steps:,} steps in {args.simulator}")
    if len(returns):
        print(f"  {result.settings['learning_summary']}")
    else:
        print("  no episode completed: raise --steps")
    print(f"  wrote {out / 'agent'}, {out / 'curve.csv'}, {out / 'curve.png'}, {out / 'run.json'}")
    print(f"  time {result.seconds:.1f} s")
    return 0


def _train_from_logs(args: argparse.Namespace) -> int:
    import numpy as np

    from simkit.agents.from_logs import train_from_logs
    from simkit.errors import ConfigError
    from simkit.logs import read_logs

    if args.agent != "reinforce" or args.logs is None:
        raise ConfigError(
            "--logs (and --top-k) train REINFORCE off-policy from logs: use "
            "'simkit train SIM --agent reinforce --logs LOGS --steps UPDATES'; got --agent "
            f"{args.agent}" + ("" if args.logs else " without --logs") + "."
        )
    logs = read_logs(args.logs, _schema(args), items=args.items)
    result = train_from_logs(
        args.simulator,
        logs,
        n_steps=args.steps,
        out=args.out,
        rng=np.random.default_rng(args.seed),
        n_candidates=args.candidates,
        top_k=args.top_k,
        episodes=args.episodes,
        overwrite=args.overwrite,
        progress=not args.quiet,
        record={"seed": args.seed},
    )
    s, ev = result.settings, result.evaluation
    print(
        f"trained reinforce from {s['n_decisions']:,} logged decisions of {args.logs} "
        f"({args.steps:,} updates, top-K correction K={s['top_k']}, "
        f"{s['propensity_source']} propensities)"
    )
    print(
        f"  in the simulator: mean return {ev.mean_return:.1f} (95% CI "
        f"{ev.return_ci[0]:.1f}-{ev.return_ci[1]:.1f}) over {ev.n_episodes} sessions"
    )
    print(f"  wrote {result.run_dir / 'agent'}, loss.csv, evaluation.csv, run.json")
    return 0


def _cmd_trust(args: argparse.Namespace) -> int:
    """Print the trust report of a trained agent; exit 1 when it is flagged."""
    import json
    from pathlib import Path

    import numpy as np

    from simkit.agents.policy import load_agent_policies
    from simkit.logs import read_logs
    from simkit.simulator import Simulator
    from simkit.validation.trust import trust_report

    sim = Simulator.load(args.simulator)
    (policy,) = load_agent_policies([args.run])
    logs = read_logs(args.logs, _schema(args), items=args.items)
    report = trust_report(
        sim, policy, logs, rng=np.random.default_rng(args.seed), n_sessions=args.sessions
    )
    print(report.text())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2))
    return 0 if report.trusted else 1


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from simkit.agents.train import (
        evaluate_runs,
        format_retention_table,
        format_table,
        plot_comparison,
        write_table_csv,
    )
    from simkit.artifacts import check_output_file

    check_output_file(args.out, suffixes=(".csv",))
    results = evaluate_runs(
        args.simulator,
        args.agents,
        episodes=args.episodes,
        rng=np.random.default_rng(args.seed),
        n_candidates=args.candidates,
        progress=not args.quiet,
        env_id=None if args.env is None else f"simkit/{args.env.capitalize()}-v0",
    )
    print(format_table(results))
    retention = format_retention_table(results)
    if retention.count("\n"):
        print("retention over each user's horizon (simkit/Retention-v0):")
        print(retention)
    out = Path(args.out)
    plot_comparison(results, out)
    table = out.with_suffix(".csv")
    write_table_csv(results, table)
    print(f"bar chart written to {out} (table: {table})")
    if args.logs:
        from simkit.agents.train import trust_verdicts
        from simkit.logs import read_logs

        logs = read_logs(args.logs, _schema(args), items=args.items)
        reports = trust_verdicts(
            args.simulator, args.agents, logs, rng=np.random.default_rng(args.seed)
        )
        print(f"Trust verdicts (held-out logs {args.logs}; details: simkit trust SIM RUN --logs):")
        for report in reports.values():
            print(f"  {report.verdict}")
            print("".join(f"    FLAG ({f.kind}): {f.message}\n" for f in report.flags), end="")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import numpy as np

    from simkit.serving.export import export_policy

    overrides = {} if args.epsilon is None else {"epsilon": args.epsilon}
    out = export_policy(
        args.run,
        args.out,
        rng=np.random.default_rng(args.seed),
        exploration=overrides,
        ensemble_size=args.ensemble_size,
        overwrite=args.overwrite,
    )
    print(f"exported {args.run} to {out} (manifest.json, arrays.npz, SHA256SUMS)")
    return 0


def _cmd_shadow(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from simkit.serving import load_policy
    from simkit.serving.shadow import ShadowGates, read_decision_log, shadow_report, write_report

    known = {f.name for f in dataclasses.fields(ShadowGates)}
    overrides: dict[str, float] = {}
    for text in args.gates or []:
        name, _, value = text.partition("=")
        try:
            overrides[name.strip()] = float(value)
        except ValueError:
            overrides[""] = 0.0
        if name.strip() not in known:
            print(
                f"simkit shadow: expected NAME=NUMBER with NAME one of {sorted(known)}; "
                f"got {text!r}.",
                file=sys.stderr,
            )
            return 2
    policy = load_policy(args.policy)
    report = shadow_report(
        policy,
        read_decision_log(args.logs),
        rng=np.random.default_rng(args.seed),
        gates=ShadowGates(**overrides),
    )
    html_path, json_path = write_report(report, args.out)
    print(report.summary())
    print(f"report written to {html_path} (and {json_path})")
    if args.strict and not report.passed:
        raise FidelityError("Shadow gates failed (see the report); exiting 1 because of --strict.")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from simkit.demo import run_demo

    result = run_demo(args.out, quick=args.quick, data=args.data, seed=args.seed)
    print(f"report written to {result.report}  (open it in a browser)")
    print(f"  time {result.seconds:.1f} s; not run: {', '.join(result.not_run) or 'nothing'}")
    return 0


def _schema(args: argparse.Namespace) -> LogSchema | None:
    """The ``LogSchema`` of ``--schema`` (None without it)."""
    from simkit.logs import LogSchema

    return LogSchema.from_toml(args.schema) if getattr(args, "schema", None) else None


def _seed(text: str) -> int:
    """argparse type of ``--seed``: a whole number >= 0 (numpy's seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0; got {value}")
    return value


def _positive(text: str) -> int:
    """argparse type of counts: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1; got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from simkit.agents.registry import AGENTS

    parser = argparse.ArgumentParser(
        prog="simkit",
        description="Fit a user simulator from recommender logs, check its fidelity, train agents.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write synthetic logs with known ground truth")
    p.add_argument(
        "--sessions", type=_positive, default=15000, help="number of sessions (default 15000)"
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed of the world and its logs")
    p.add_argument("--out", required=True, help="folder to write logs.parquet, logs.csv.gz, items")
    p.add_argument("--confounded", action="store_true", help="logger sees the latent interest")
    p.add_argument("--misspecified", action="store_true", help="hidden fatigue in the truth")
    p.add_argument(
        "--mode",
        choices=("default", "hidden", "lists", "bandit"),
        default="default",
        help="default world; 'hidden': only category, duration and clickbait are logged; "
        "'lists': news-like impression lists as slates; 'bandit': a click-only bandit log",
    )
    p.add_argument("--items", type=_positive, help="catalogue size (the world's default otherwise)")
    p.add_argument(
        "--chunk-users",
        type=_positive,
        help="users generated at once (default: sized to bound memory)",
    )
    p.add_argument("--log-days", type=float, default=30.0, help="days the log window spans (30)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("check-log", help="validate a log file and print its summary")
    p.add_argument("path", help="CSV, CSV.gz, parquet file or folder of parquet files")
    p.add_argument("--schema", help="TOML file mapping your column names to simkit's")
    p.add_argument("--items", help="item catalogue (item_id, item_* features, duration)")
    p.set_defaults(func=_cmd_check_log)

    p = sub.add_parser("fit", help="fit a simulator from logs and save it as a folder")
    p.add_argument("logs", help="CSV, CSV.gz, parquet file or folder of parquet files")
    p.add_argument("--out", required=True, help="simulator folder to write")
    p.add_argument("--schema", help="TOML file mapping your column names to simkit's")
    p.add_argument("--items", help="item catalogue (item_id, item_* features, duration)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of users held out (0.2)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the split and the fit")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--ensemble",
        type=int,
        default=0,
        metavar="M",
        help="also fit M bootstrap members of each model (model uncertainty; 5 is usual; off)",
    )
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("trust", help="can a trained policy's simulated result be trusted?")
    p.add_argument("simulator", help="simulator folder (fitted with --ensemble M for spreads)")
    p.add_argument("run", help="run folder of a trained agent (simkit train --out)")
    p.add_argument("--logs", required=True, help="held-out logs (users the fit did not see)")
    p.add_argument("--items", help="item catalogue of the logs")
    p.add_argument("--schema", help="TOML file mapping the logs' column names to simkit's")
    p.add_argument("--sessions", type=_positive, default=500, help="simulated sessions (500)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of users, runs and checks (0)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=_cmd_trust)

    p = sub.add_parser("validate", help="fidelity report of a simulator against held-out logs")
    p.add_argument("simulator", help="simulator folder written by 'simkit fit'")
    p.add_argument("--logs", required=True, help="held-out logs")
    p.add_argument("--items", help="item catalogue")
    p.add_argument("--schema", help="TOML file mapping the logs' column names to simkit's")
    p.add_argument("--out", default="report.html", help="HTML report path (report.html)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the simulations and bootstraps")
    p.add_argument("--strict", action="store_true", help="exit 1 when a fidelity gate fails")
    p.add_argument(
        "--gates",
        nargs="+",
        metavar="NAME=VALUE",
        help="override gate thresholds, e.g. click_auc_min=0.65 ks_margin=0.03",
    )
    p.add_argument(
        "--sessions", type=_positive, default=4000, help="sessions per policy in the ranking (4000)"
    )
    p.add_argument(
        "--agents",
        nargs="+",
        metavar="RUN_DIR",
        help="trained agents (run folders of 'simkit train') to rank beside the built-in policies",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "train",
        help="train an agent in a fitted simulator and save it with its learning curve",
    )
    p.add_argument("simulator", metavar="SIM_DIR", help="simulator folder written by 'simkit fit'")
    p.add_argument(
        "--agent",
        required=True,
        metavar="NAME",
        help="; ".join(f"{name}: {spec.summary}" for name, spec in AGENTS.items()),
    )
    p.add_argument(
        "--steps", type=_positive, required=True, help="env steps (decisions) of training"
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the env and the agent (0)")
    p.add_argument("--candidates", type=int, default=50, help="candidates per step (50)")
    p.add_argument(
        "--logs",
        help="learn from these logs instead (reinforce only: off-policy, top-K corrected; "
        "--steps counts updates); then evaluate in the simulator",
    )
    p.add_argument("--items", help="item catalogue of --logs")
    p.add_argument("--schema", help="TOML file mapping the logs' column names to simkit's")
    p.add_argument(
        "--top-k", type=_positive, help="K of the top-K correction (default: the logs' slate size)"
    )
    p.add_argument(
        "--episodes", type=_positive, default=200, help="with --logs: evaluation sessions (200)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="compare trained agents in a simulator: table + bar chart")
    p.add_argument("simulator", metavar="SIM_DIR", help="simulator folder written by 'simkit fit'")
    p.add_argument(
        "--agents",
        nargs="+",
        required=True,
        metavar="RUN_DIR",
        help="run folders of 'simkit train'",
    )
    p.add_argument("--episodes", type=_positive, default=1000, help="episodes per agent (1000)")
    p.add_argument(
        "--env",
        choices=("session", "retention"),
        help="simkit/Session-v0 or simkit/Retention-v0 (default: where the runs were trained); "
        "retention adds sessions per user, return days and day-1 retention",
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed of the simulated users (0)")
    p.add_argument(
        "--candidates", type=int, help="candidates per step (default: the runs' own setting)"
    )
    p.add_argument(
        "--out",
        default="evaluation.png",
        help="bar chart PNG (evaluation.png); the table is also written beside it as CSV",
    )
    p.add_argument("--logs", help="held-out logs: also print each agent's trust verdict")
    p.add_argument("--items", help="item catalogue of --logs")
    p.add_argument("--schema", help="TOML file mapping the logs' column names to simkit's")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="write a trained agent as a serving policy folder")
    p.add_argument("run", metavar="RUN_DIR", help="run folder of 'simkit train' (or agent folder)")
    p.add_argument("--out", required=True, metavar="POLICY_DIR", help="policy folder to write")
    p.add_argument("--epsilon", type=float, help="serving-time exploration share (agent's own)")
    p.add_argument(
        "--ensemble-size", type=_positive, help="LinTS: frozen posterior draws to serve (exact)"
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed of a LinTS ensemble's draws (0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing policy folder")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("shadow", help="off-policy check of a served policy on fresh logs")
    p.add_argument("policy", metavar="POLICY_DIR", help="policy folder of 'simkit export'")
    p.add_argument("--logs", required=True, help="fresh decision log (.npz) the policy never saw")
    p.add_argument("--out", default="shadow.html", help="HTML report (shadow.html) + JSON beside")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the folds and bootstraps (0)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a gate fails")
    p.add_argument(
        "--gates",
        nargs="+",
        metavar="NAME=VALUE",
        help="override gates: min_ess_share, max_value_drop, min_agreement",
    )
    p.set_defaults(func=_cmd_shadow)

    p = sub.add_parser("demo", help="fit, validate, train and compare agents on the sample logs")
    p.add_argument("--out", default="simkit-demo", help="demo folder to write (simkit-demo)")
    p.add_argument("--quick", action="store_true", help="a smoke run of every stage (~1 minute)")
    p.add_argument("--data", help="folder of the sample logs (default: data_samples)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of every stage (0)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 data or fidelity failure, 2 usage)."""
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SimkitError as err:
        print(f"simkit {args.command}: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a path that is missing, a folder, not writable, ...
        where = f": {err.filename}" if err.filename else ""
        print(f"simkit {args.command}: {err.strerror or err}{where}", file=sys.stderr)
        return 1
