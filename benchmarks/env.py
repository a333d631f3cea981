"""Speed and memory of the session environments, as ratios to the model calls they make.

Run ``python benchmarks/env.py --simulator DIR`` (``--help`` for options; without ``--simulator``
it fits one on ``data_samples/``). It prints, in one run, with K = 50 candidates:

- **single env**: the median time of one ``gymnasium.make("simkit/Session-v0")`` step beside the
  time of its own model calls (click, watch when clicked, continuation) replayed through the
  single-row path on the very rows the steps built; the ratio step / calls, and steps/s;
- **vector env**: one step at N = 1024 against bare ``Booster.predict`` on the batches it built
  (click + continuation; ``all`` also counts watch time), for the three candidate samplers;
- with ``--items``: for catalogues of 500 to 10^6 items (the simulator's items resampled, with
  fresh ids, so the models see the same kind of rows), at N = 1024: the uniform sampler's step,
  its model time and the rest (the non-model cost), the interest sampler's step, the ratios the
  acceptance names, and the env's memory beyond the simulator (peak traced allocations while it
  is built and stepped).

Times are medians over repeats; the machine is shared, so read the ratios, which compare figures
taken side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import simkit.envs  # noqa: F401  (registers simkit/Session-v0)
import simkit.models as models
from simkit.envs import SessionVectorEnv
from simkit.simulator import Simulator
from simkit.state import Catalogue

REPO = Path(__file__).resolve().parents[1]
K = 50
MODELS = ("click", "watch", "cont")


def build_simulator(args: argparse.Namespace) -> Simulator:
    """Load ``--simulator`` or fit one on data_samples/ (else on synthetic logs)."""
    if args.simulator:
        return Simulator.load(args.simulator)
    from simkit.fitters import FitConfig, fit_simulator
    from simkit.logs import read_logs

    logs_path, items_path = REPO / "data_samples/logs.parquet", REPO / "data_samples/items.parquet"
    tmp = None
    if not (logs_path.exists() and items_path.exists()):
        from simkit.synthetic import write_samples

        tmp = tempfile.TemporaryDirectory()
        paths = write_samples(tmp.name, n_sessions=15000, rng=np.random.default_rng(0))
        logs_path, items_path = paths["logs.parquet"], paths["items.parquet"]
    print(f"fitting a simulator on {logs_path} ...", flush=True)
    sim = fit_simulator(
        read_logs(logs_path, items=items_path),
        FitConfig(n_estimators=50) if args.quick else FitConfig(),
        rng=np.random.default_rng(0),
    )
    if tmp is not None:
        tmp.cleanup()
    return sim


class Recorder:
    """Keep the rows each model is called with (both the single-row and the batch path)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[np.ndarray]] = {m: [] for m in MODELS}
        self.on = False
        self._orig = models._raw_predict
        self._names: dict[int, str] = {}

    def attach(self, sim: Simulator) -> None:
        self._names = {id(getattr(sim, m).booster): m for m in MODELS}
        orig, names = self._orig, self._names

        def recording(booster: Any, x: np.ndarray) -> np.ndarray:
            if self.on:
                self.rows[names[id(booster)]].append(np.array(x, copy=True))
            return orig(booster, x)

        models._raw_predict = recording

    def clear(self) -> None:
        for v in self.rows.values():
            v.clear()


def median(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``fn``."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return float(np.median(out))


# ---------------------------------------------------------------- single env


def single_env(sim: Simulator, rec: Recorder, n_steps: int) -> dict[str, float]:
    """Median single-env step vs its own model calls through the single-row path."""
    env = gym.make("simkit/Session-v0", simulator=sim, n_candidates=K)
    env.action_space.seed(0)
    env.reset(seed=0)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    for a in actions[:100]:
        if any(env.step(a)[2:4]):
            env.reset()
    step_t, call_t = [], []
    for a in actions:
        rec.clear()
        rec.on = True
        t = time.perf_counter()
        done = any(env.step(a)[2:4])
        step_t.append(time.perf_counter() - t)
        rec.on = False
        rows = {m: list(v) for m, v in rec.rows.items()}

        def calls(rows: dict[str, list[np.ndarray]] = rows) -> None:
            for m, batch in rows.items():
                fast = models._single_row(getattr(sim, m).booster)
                for x in batch:
                    fast.predict(x)

        call_t.append(median(calls, 3))
        if done:
            env.reset()
    step, call = float(np.median(step_t)), float(np.median(call_t))
    return {"step_us": 1e6 * step, "calls_us": 1e6 * call, "ratio": step / call, "rate": 1 / step}


# ---------------------------------------------------------------- vector env


def vector_overhead(
    sim: Simulator, rec: Recorder, n: int, n_steps: int, **kwargs: Any
) -> dict[str, float]:
    """Median vector step at ``n`` users vs bare predict on the batches the same steps built."""
    envs = SessionVectorEnv(sim, num_envs=n, n_candidates=K, max_episode_steps=200, **kwargs)
    envs.action_space.seed(0)
    envs.reset(seed=0)
    actions = [envs.action_space.sample() for _ in range(n_steps + 3)]
    for a in actions[:3]:
        envs.step(a)
    step_t, cc_t, watch_t = [], [], []
    for a in actions[3:]:
        rec.clear()
        rec.on = True
        t = time.perf_counter()
        envs.step(a)
        step_t.append(time.perf_counter() - t)
        rec.on = False
        rows = {m: list(v) for m, v in rec.rows.items()}

        def bare(names: tuple[str, ...], rows: dict = rows) -> None:
            for m in names:
                b = getattr(sim, m).booster
                for x in rows[m]:
                    b.predict(x, num_threads=models.predict_threads(len(x)))

        cc_t.append(median(lambda: bare(("click", "cont")), 3))
        watch_t.append(median(lambda: bare(("watch",)), 3))
    step, cc, watch = (float(np.median(v)) for v in (step_t, cc_t, watch_t))
    return {
        "step_ms": 1e3 * step,
        "predict_ms": 1e3 * cc,
        "model_ms": 1e3 * (cc + watch),
        "ratio": step / cc,
        "ratio_all": step / (cc + watch),
    }


# ---------------------------------------------------------------- large catalogues


def with_items(sim: Simulator, n_items: int, rng: np.random.Generator) -> Simulator:
    """``sim`` with its catalogue resampled to ``n_items`` items (fresh ids, same kind of rows)."""
    cat = sim.catalogue
    src = rng.integers(sim.n_items, size=n_items)
    jitter = 0.05 * rng.standard_normal((n_items, cat.dim))
    emb = np.vstack([cat.embedding[src] + jitter, cat.embedding[-1:]])
    big = Catalogue(
        item_ids=np.arange(n_items),
        embedding=emb,
        features=np.vstack([cat.features[src], cat.features[-1:]]),
        duration=np.concatenate([cat.duration[src], cat.duration[-1:]]),
        log_popularity=np.concatenate([cat.log_popularity[src], cat.log_popularity[-1:]]),
    )
    return dataclasses.replace(sim, catalogue=big)


def catalogue_table(sim: Simulator, rec: Recorder, sizes: list[int], n: int, n_steps: int) -> None:
    """The --items table."""
    print(f"\ncatalogue size at N={n}, K={K} (ms per step; non-model = step - model calls)")
    print(
        f"{'items':>9} {'uniform':>8} {'model':>7} {'non-model':>9} {'x500':>6} "
        f"{'interest':>9} {'int/uni':>7} {'build s':>7} {'env MB':>7}"
    )
    base = None
    for size in sizes:
        big = sim if size == sim.n_items else with_items(sim, size, np.random.default_rng(size))
        uni = vector_overhead(big, rec, n, n_steps)
        non_model = uni["step_ms"] - uni["model_ms"]
        base = non_model if base is None else base
        t = time.perf_counter()
        envs = SessionVectorEnv(big, num_envs=n, n_candidates=K, sampler="interest")
        build = time.perf_counter() - t
        envs.action_space.seed(0)
        envs.reset(seed=0)
        acts = [envs.action_space.sample() for _ in range(n_steps + 3)]
        for a in acts[:3]:
            envs.step(a)
        inter = []
        for a in acts[3:]:
            t = time.perf_counter()
            envs.step(a)
            inter.append(time.perf_counter() - t)
        del envs
        interest = 1e3 * float(np.median(inter))
        # memory: everything the env allocates while built and stepped (both samplers), traced
        tracemalloc.start()
        for sampler in ("uniform", "interest"):
            envs = SessionVectorEnv(big, num_envs=n, n_candidates=K, sampler=sampler)
            envs.reset(seed=0)
            for a in acts[:5]:
                envs.step(a)
            del envs
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"{size:>9,} {uni['step_ms']:>8.2f} {uni['model_ms']:>7.2f} {non_model:>9.2f} "
            f"{non_model / base:>6.2f} {interest:>9.2f} {interest / uni['step_ms']:>7.2f} "
            f"{build:>7.1f} {peak / 2**20:>7.0f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", help="simulator folder to load instead of fitting one")
    parser.add_argument("--quick", action="store_true", help="fit 50 trees per model")
    parser.add_argument("--steps", type=int, default=20, help="timed vector steps per figure")
    parser.add_argument("--single-steps", type=int, default=2000, help="timed single-env steps")
    parser.add_argument(
        "--items",
        nargs="*",
        type=int,
        help="print the catalogue table (default sizes 500 10000 100000 1000000)",
    )
    args = parser.parse_args(argv)

    sim = build_simulator(args)
    trees = {m: getattr(sim, m).booster.num_trees() for m in MODELS}
    print(f"simulator: {sim.n_items} items, d={sim.catalogue.dim}, trees {trees}")
    rec = Recorder()
    rec.attach(sim)

    r = single_env(sim, rec, args.single_steps)
    print(
        f"\nsingle env (gymnasium.make, K={K}): step {r['step_us']:.0f} us, its model calls "
        f"through the single-row path {r['calls_us']:.0f} us: ratio {r['ratio']:.1f} "
        f"({r['rate']:,.0f} steps/s)"
    )
    print("\none vector step at N=1024 vs bare Booster.predict on the same batches")
    print(f"{'sampler':<12} {'step ms':>8} {'pred ms':>8} {'ratio':>6} {'all':>6}")
    for sampler in ("uniform", "popularity", "interest"):
        v = vector_overhead(sim, rec, 1024, args.steps, sampler=sampler)
        print(
            f"{sampler:<12} {v['step_ms']:>8.2f} {v['predict_ms']:>8.2f} {v['ratio']:>6.2f} "
            f"{v['ratio_all']:>6.2f}",
            flush=True,
        )
    if args.items is not None:
        sizes = args.items or [sim.n_items, 10_000, 100_000, 1_000_000]
        catalogue_table(sim, rec, sizes, 1024, args.steps)


if __name__ == "__main__":
    main()
