"""How long does the fidelity report take, and which check costs what?

Fits a simulator on the bundled ``data_samples/`` (80% of users, as ``simkit fit`` does), then
times :func:`simkit.validation.validate` on the whole log (the training users are dropped, so the
report covers the held-out 20%) and each of its checks on their own. Figures are wall seconds and
each check's share of the total; the acceptance target is ``simkit validate`` under 60 s on the
project's 2-core machine.

Usage::

    python benchmarks/validate.py [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from simkit.fitters import FitConfig, fit_simulator
from simkit.logs import read_logs, split_logs
from simkit.replay import replay_with
from simkit.validation import (
    confounding_check,
    default_policies,
    fit_logging_policy,
    heldout_sessions,
    impression_fidelity,
    policy_ranking,
    session_fidelity,
    validate,
)

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    split_rng, fit_rng, val_rng = rng.spawn(3)
    logs = read_logs(SAMPLES / "logs.parquet", items=SAMPLES / "items.parquet")
    train, held = split_logs(logs, by="user", holdout=0.2, rng=split_rng)
    t = time.perf_counter()
    sim = fit_simulator(train, FitConfig(), rng=fit_rng)
    print(f"fit: {time.perf_counter() - t:.1f} s on {train.n_rows:,} rows")

    t = time.perf_counter()
    validate(sim, logs, rng=val_rng)
    total = time.perf_counter() - t
    print(f"validate (training users dropped): {total:.1f} s on {held.n_rows:,} held-out rows")

    parts: dict[str, float] = {}
    t = time.perf_counter()
    prep = replay_with(sim, held)
    parts["replay"] = time.perf_counter() - t
    t = time.perf_counter()
    impression_fidelity(sim, held, rng=np.random.default_rng(0), prepared=prep)
    parts["per-impression"] = time.perf_counter() - t
    t = time.perf_counter()
    h = heldout_sessions(sim, held)
    session_fidelity(sim, held, rng=np.random.default_rng(0), held=h)
    parts["sessions"] = time.perf_counter() - t
    t = time.perf_counter()
    model = fit_logging_policy(sim, h, rng=np.random.default_rng(0))
    parts["logging-policy model"] = time.perf_counter() - t
    t = time.perf_counter()
    policy_ranking(sim, h, default_policies(model), rng=np.random.default_rng(0))
    parts["ranking (OPE reference)"] = time.perf_counter() - t
    t = time.perf_counter()
    confounding_check(sim, held, rng=np.random.default_rng(0), prepared=prep)
    parts["confounding"] = time.perf_counter() - t
    whole = sum(parts.values())
    for name, seconds in parts.items():
        print(f"  {name:26s} {seconds:6.1f} s  {seconds / whole:6.1%}")


if __name__ == "__main__":
    main()
