"""Peak memory and time of the synthetic log generator against the catalogue size (issue 21).

Each catalogue size runs in a fresh process, so the peak resident set is that run's own:

    python benchmarks/synth.py --sessions 15000 --items 500 5000 50000

prints one line per size: items, sessions and rows generated, seconds, peak RSS in MB, and the
peak as a multiple of the smallest catalogue's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _one(items: int, sessions: int, seed: int, chunk_users: int | None) -> dict[str, float]:
    import numpy as np

    from simkit.synthetic import World, WorldConfig

    world_rng, logs_rng = np.random.default_rng(seed).spawn(2)
    start = time.perf_counter()
    world = World(WorldConfig(n_items=items), rng=world_rng)
    rows = 0
    n_sessions = 0
    for frame in world.iter_logs(sessions, rng=logs_rng, chunk_users=chunk_users):
        rows += len(frame)
        n_sessions += frame["session_id"].nunique()
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "items": items,
        "sessions": n_sessions,
        "rows": rows,
        "seconds": seconds,
        "peak_mb": peak_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=15000)
    parser.add_argument("--items", type=int, nargs="+", default=[500, 5000, 50000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-users", type=int, default=None)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.items[0], args.sessions, args.seed, args.chunk_users)))
        return
    base = None
    print(
        f"{'items':>8} {'sessions':>9} {'rows':>9} {'seconds':>8} {'peak MB':>8} {'x smallest':>10}"
    )
    for items in args.items:
        cmd = [sys.executable, __file__, "--one", "--sessions", str(args.sessions)]
        cmd += ["--items", str(items), "--seed", str(args.seed)]
        if args.chunk_users:
            cmd += ["--chunk-users", str(args.chunk_users)]
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        base = base or out["peak_mb"]
        print(
            f"{out['items']:>8,} {out['sessions']:>9,} {out['rows']:>9,} {out['seconds']:>8.1f} "
            f"{out['peak_mb']:>8.0f} {out['peak_mb'] / base:>10.2f}"
        )


if __name__ == "__main__":
    main()
