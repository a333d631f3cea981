"""Speed and peak memory of ``read_logs`` on a generated 5-million-row log.

Writes the log as parquet (rows in time order, so sessions interleave and must be sorted; and rows
already sorted by session) and as CSV.gz to a temporary folder, then reads each in its own
subprocess so that memory peaks do not mix. Prints rows/s (best of ``--repeat`` runs; the CPU
seconds show how much other work on the machine slowed the wall time) and the peak resident memory
that ``read_logs`` added, as a ratio of the resulting frame's in-memory size
(``frame.memory_usage(deep=True).sum()``). The peak is the process's high-water mark ``VmHWM``
after the read minus before it, taken after a warm-up read of a small file of the same format so
that one-time costs (lazy imports, thread pools) are not counted; Linux ``ru_maxrss`` is no use
here, as it survives ``exec`` from the parent process that built the log. Targets: parquet >= 1
million rows/s, peak < 3x the frame.

Run: ``python benchmarks/read_logs.py [--rows 5000000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq


def make_log(n_rows: int, *, rng: np.random.Generator) -> pd.DataFrame:
    """A realistic log: geometric session lengths, Zipf items, propensities, two text features."""
    lengths = rng.geometric(0.1, size=n_rows // 5)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n_rows) + 1]
    lengths[-1] -= lengths.sum() - n_rows
    n_sessions = len(lengths)
    session_id = np.repeat(np.arange(n_sessions, dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    step = np.arange(n_rows) - np.repeat(starts, lengths)
    user_of_session = rng.integers(0, n_sessions // 5 + 1, size=n_sessions)
    session_start = np.sort(rng.uniform(0, 30 * 86400, size=n_sessions))
    clicked = (rng.random(n_rows) < 0.12).astype(np.int8)
    segments = np.array([f"seg_{i}" for i in range(8)])
    categories = np.array([f"cat_{i}" for i in range(24)])
    item_id = np.minimum(rng.zipf(1.3, size=n_rows), 50_000) - 1
    return pd.DataFrame(
        {
            "user_id": user_of_session[session_id],
            "session_id": session_id,
            "step": step,
            "item_id": item_id,
            "clicked": clicked,
            "watch_time": np.where(clicked == 1, rng.exponential(40.0, n_rows), 0.0),
            "timestamp": session_start[session_id] + step * 20.0 + rng.uniform(0, 5, n_rows),
            "propensity": rng.uniform(0.01, 1.0, n_rows),
            "user_segment": segments[user_of_session[session_id] % 8],
            "item_category": categories[item_id % 24],
            "ctx_hour": rng.integers(0, 24, n_rows).astype(np.int8),
        }
    )


def high_water_mark() -> int:
    """Peak resident memory of this process so far, in bytes (Linux ``VmHWM``)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def child(path: str, warm_up: str) -> None:
    """Read ``path`` once and print one JSON line of figures (run in a fresh process).

    A small file of the same format is read first, so that one-time costs (lazy imports, thread
    pools) do not count as the peak of reading the big one.
    """
    from simkit.logs import read_logs

    read_logs(warm_up)
    before = high_water_mark()
    t0, cpu0 = time.perf_counter(), time.process_time()
    logs = read_logs(path)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = high_water_mark() - before
    size = int(logs.frame.memory_usage(deep=True).sum())
    print(
        json.dumps(
            {"rows": logs.n_rows, "seconds": seconds, "cpu": cpu, "peak": peak, "frame": size}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per format")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    rng = np.random.default_rng(20240501)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        log = make_log(args.rows, rng=rng)
        files = {
            "parquet (time order)": Path(tmp, "time.parquet"),
            "parquet (session order)": Path(tmp, "session.parquet"),
            "csv.gz (time order)": Path(tmp, "time.csv.gz"),
        }
        by_time = pa.Table.from_pandas(log.sort_values("timestamp"), preserve_index=False)
        pq.write_table(by_time, files["parquet (time order)"])
        pq.write_table(
            pa.Table.from_pandas(log, preserve_index=False), files["parquet (session order)"]
        )
        with gzip.open(files["csv.gz (time order)"], "wb", compresslevel=1) as out:
            pa_csv.write_csv(by_time, out)
        small = make_log(1000, rng=rng)
        for path in files.values():
            small_path = path.with_name("small_" + path.name)
            if path.suffix == ".parquet":
                small.to_parquet(small_path, index=False)
            else:
                small.to_csv(small_path, index=False)
        del log, by_time
        print(f"generated and wrote {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        print(
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work slows wall time)"
        )
        print(f"best wall time and largest peak of {args.repeat} runs per format")
        print(
            f"{'format':<26}{'rows/s':>12}{'seconds':>9}{'cpu s':>7}{'frame MB':>10}{'peak MB':>9}"
            f"{'peak/frame':>12}"
        )
        for name, path in files.items():
            runs = []
            for _ in range(args.repeat):
                warm_up = path.with_name("small_" + path.name)
                command = [sys.executable, __file__, "--child", str(path), str(warm_up)]
                run = subprocess.run(command, capture_output=True, text=True, check=True)
                runs.append(json.loads(run.stdout.strip().splitlines()[-1]))
            best, peak = min(runs, key=lambda r: r["seconds"]), max(r["peak"] for r in runs)
            print(
                f"{name:<26}{best['rows'] / best['seconds']:>12,.0f}{best['seconds']:>9.2f}"
                f"{best['cpu']:>7.2f}{best['frame'] / 2**20:>10.0f}{peak / 2**20:>9.0f}"
                f"{peak / best['frame']:>12.2f}"
            )


if __name__ == "__main__":
    main()
