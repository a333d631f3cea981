"""How much does ``fit_simulator`` cost beyond the LightGBM training it cannot avoid?

Generates a synthetic log of about 1 million rows, then in one run measures:

* wall seconds of ``fit_simulator`` (replay, embeddings, three models, users, mixture);
* wall seconds of bare ``lightgbm.train`` with the same parameters on the same feature matrices,
  for the same number of boosting rounds each model actually ran (its trees plus the early-stopping
  patience), without validation sets;
* their ratio (target: at most 1.5) and the peak memory of the fitting process (target: < 4 GB);
* wall seconds of an ensemble fit (``fit_simulator`` plus ``--members`` bootstrap members of the
  three models, ``simkit fit --ensemble M``) beside the single fit: the ratio's target is at
  most M x 1.2.

Usage::

    python benchmarks/fit.py [--sessions 140000] [--seed 0] [--members 5]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

from simkit.fitters import FitConfig, fit_simulator_with_rows
from simkit.fitters.ensemble import fit_ensemble
from simkit.fitters.models import _LightGBMEstimator
from simkit.logs import read_logs
from simkit.synthetic import World, WorldConfig


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(path: Path, items: Path, members: int) -> None:
    """Child process: read, fit, then bare LightGBM on the same rows; peak memory is this process's."""
    logs = read_logs(path, items=items)
    print(f"log: {logs.n_rows:,} rows, {logs.n_sessions:,} sessions")
    before_mb = _peak_mb()
    config = FitConfig()
    t = time.perf_counter()
    fitted = fit_simulator_with_rows(logs, config, rng=np.random.default_rng(2))
    sim, prep = fitted.simulator, fitted.prepared
    fit_s = time.perf_counter() - t
    fit_peak = _peak_mb()

    est = _LightGBMEstimator(**config.model_kwargs(0))
    rows = prep.rows
    hit = rows.clicked > 0
    jobs = [
        ("click", "binary", rows.x_click, rows.clicked.astype(np.float64), sim.click.booster),
        ("watch", "regression", rows.x_click[hit], np.log1p(rows.watch[hit]), sim.watch.booster),
        (
            "continue",
            "binary",
            rows.x_continue,
            rows.continued.astype(np.float64),
            sim.cont.booster,
        ),
    ]
    bare_s = 0.0
    for name, objective, x, y, booster in jobs:
        params = est.lgb_params(0) | {"objective": objective}
        rounds = booster.current_iteration() + est.early_stopping_rounds
        t = time.perf_counter()
        lgb.train(params, lgb.Dataset(x, y, params={"verbosity": -1}), num_boost_round=rounds)
        took = time.perf_counter() - t
        bare_s += took
        print(
            f"  bare lightgbm.train {name:9s}: {rounds:5d} rounds on {len(y):,} rows, {took:6.1f} s"
        )

    print(f"fit_simulator wall:            {fit_s:8.1f} s")
    print(f"bare lightgbm.train wall:      {bare_s:8.1f} s")
    print(f"ratio fit / bare:              {fit_s / bare_s:8.2f}   (target <= 1.5)")
    print(
        f"peak memory of the fitting process: {fit_peak:.0f} MB (after reading the log "
        f"{before_mb:.0f} MB; target < 4096 MB)"
    )
    # the ensemble fit: the single fit above plus M members on bootstrap resamples of users
    t = time.perf_counter()
    fit_ensemble(fitted, logs, n_members=members, config=config, rng=np.random.default_rng(3))
    members_s = time.perf_counter() - t
    ensemble_s = fit_s + members_s
    print(f"ensemble fit, M = {members}:           {ensemble_s:8.1f} s (members {members_s:.1f} s)")
    print(
        f"ratio ensemble / single fit:   {ensemble_s / fit_s:8.2f}   (target <= M x 1.2 = "
        f"{members * 1.2:.1f}; per member {members_s / members / fit_s:.2f} x a single fit)"
    )
    print(f"peak memory after the ensemble: {_peak_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=140_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--members", type=int, default=5, help="ensemble size M (5)")
    parser.add_argument("--child", nargs=2, metavar=("LOGS", "ITEMS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _measure(Path(args.child[0]), Path(args.child[1]), args.members)
        return

    world = World(WorldConfig(n_users=30_000), rng=np.random.default_rng(args.seed))
    with tempfile.TemporaryDirectory() as tmp:
        logs_path, items_path = Path(tmp) / "logs.parquet", Path(tmp) / "items.parquet"
        world.generate_logs(args.sessions, rng=np.random.default_rng(args.seed + 1)).to_parquet(
            logs_path, index=False
        )
        world.items.to_parquet(items_path, index=False)
        # a fresh process, so that the peak memory is the fit's and not the log generator's
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(logs_path),
                str(items_path),
                "--members",
                str(args.members),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
