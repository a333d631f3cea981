"""Speed of the session environments, and their overhead over the bare LightGBM predictions.

Run ``python benchmarks/env.py`` (``--help`` for options). It loads ``--simulator DIR`` or fits one
(default :class:`~simkit.fitters.FitConfig`, ``--quick`` for 50 trees) on
``data_samples/logs.parquet`` + ``data_samples/items.parquet``, or on synthetic logs written to a
temporary folder when those are absent, then prints, with K = 50 candidates:

- single env (``gymnasium.make``) steps/s;
- vector env user-steps/s at N = 1, 64, 1024;
- the ratio of one vector step at N = 1024 to the bare ``Booster.predict`` time of its models on
  the very feature batches that step built (click + continuation; also with watch time), for the
  three candidate samplers and for several thread settings (numpy's BLAS threads vs LightGBM's
  OpenMP threads).

Times are medians over interleaved repeats, as wall-clock and as process CPU time: the CPU figure
is steadier on a shared machine, the wall figure is what a training loop sees.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import simkit.envs  # noqa: F401  (registers simkit/Session-v0)
import simkit.models
from simkit.envs import _core
from simkit.simulator import Simulator

REPO = Path(__file__).resolve().parents[1]
K = 50


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
        paths = write_samples(tmp.name, n_sessions=args.sessions, rng=np.random.default_rng(0))
        logs_path, items_path = paths["logs.parquet"], paths["items.parquet"]
    print(f"fitting a simulator on {logs_path} ...", flush=True)
    t0 = time.perf_counter()
    config = FitConfig(n_estimators=50) if args.quick else FitConfig()
    sim = fit_simulator(
        read_logs(logs_path, items=items_path), config, rng=np.random.default_rng(0)
    )
    print(f"  fitted in {time.perf_counter() - t0:.0f} s")
    if args.save:
        sim.save(args.save, overwrite=True)
    if tmp is not None:
        tmp.cleanup()
    return sim


class Recorder:
    """Wrap the boosters' ``predict`` to keep the feature batches a step passes to them."""

    def __init__(self, sim: Simulator) -> None:
        self.batches: dict[str, list[tuple[np.ndarray, dict]]] = {
            "click": [],
            "watch": [],
            "cont": [],
        }
        self.on = False
        for name, model in (("click", sim.click), ("watch", sim.watch), ("cont", sim.cont)):
            self._wrap(name, model.booster)

    def _wrap(self, name: str, booster: Any) -> None:
        original = booster.predict

        def predict(x: np.ndarray, *a: Any, **kw: Any) -> np.ndarray:
            if self.on:
                self.batches[name].append((x, kw))
            return original(x, *a, **kw)

        booster.predict = predict
        booster._bare_predict = original


def median_times(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds of ``fn``."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def single_env_rate(sim: Simulator, n_steps: int) -> float:
    env = gym.make("simkit/Session-v0", simulator=sim, n_candidates=K)
    env.action_space.seed(0)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return n_steps / (time.perf_counter() - t0)


def vector_env(sim: Simulator, n: int, **kwargs: Any) -> gym.vector.VectorEnv:
    envs = gym.make_vec(
        "simkit/Session-v0",
        num_envs=n,
        vectorization_mode="vector_entry_point",
        simulator=sim,
        n_candidates=K,
        **kwargs,
    )
    envs.action_space.seed(0)
    envs.reset(seed=0)
    return envs


def vector_rate(sim: Simulator, n: int, n_steps: int) -> float:
    envs = vector_env(sim, n)
    actions = [envs.action_space.sample() for _ in range(n_steps)]
    for a in actions[:5]:
        envs.step(a)
    t0 = time.perf_counter()
    for a in actions:
        envs.step(a)
    return n * n_steps / (time.perf_counter() - t0)


def overhead(
    sim: Simulator, rec: Recorder, n: int, n_steps: int, **kwargs: Any
) -> dict[str, float]:
    """Step time at ``n`` users vs bare predict on the batches the same steps built."""
    envs = vector_env(sim, n, **kwargs)
    actions = [envs.action_space.sample() for _ in range(n_steps + 5)]
    for a in actions[:5]:
        envs.step(a)
    step_wall, step_cpu, pred = [], [], {"click": [], "watch": [], "cont": []}
    for a in actions[5:]:
        for v in rec.batches.values():
            v.clear()
        rec.on = True
        w, c = time.perf_counter(), time.process_time()
        envs.step(a)
        step_wall.append(time.perf_counter() - w)
        step_cpu.append(time.process_time() - c)
        rec.on = False
        for name, model in (("click", sim.click), ("watch", sim.watch), ("cont", sim.cont)):
            batches = rec.batches[name]

            def bare(model: Any = model, batches: list = batches) -> None:
                for x, kw in batches:
                    model.booster._bare_predict(x, **kw)

            pred[name].append(median_times(bare, 3))
    med = {k: np.median(np.array(v), axis=0) for k, v in pred.items()}
    cc_wall = med["click"][0] + med["cont"][0]
    cc_cpu = med["click"][1] + med["cont"][1]
    sw, sc = float(np.median(step_wall)), float(np.median(step_cpu))
    return {
        "step_ms": 1e3 * sw,
        "step_cpu_ms": 1e3 * sc,
        "predict_ms": 1e3 * cc_wall,
        "predict_cpu_ms": 1e3 * cc_cpu,
        "watch_ms": 1e3 * med["watch"][0],
        "ratio": sw / cc_wall,
        "ratio_cpu": sc / cc_cpu,
        "ratio_all": sw / (cc_wall + med["watch"][0]),
    }


@contextlib.contextmanager
def settings(blas: int | None, lgbm: int | None, env_blas_limit: bool) -> Iterator[None]:
    """Process BLAS threads (None: as loaded), LightGBM predict threads (None: simkit's rule),
    and whether the env scopes its own matrix products to one BLAS thread."""
    saved_threads, saved_ctx = simkit.models.predict_threads, _core.one_blas_thread
    if lgbm is not None:
        simkit.models.predict_threads = lambda n_rows: lgbm
    if not env_blas_limit:
        _core.one_blas_thread = contextlib.nullcontext  # type: ignore[assignment]
    try:
        with threadpool_limits(blas, user_api="blas") if blas else contextlib.nullcontext():
            yield
    finally:
        simkit.models.predict_threads = saved_threads
        _core.one_blas_thread = saved_ctx


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", help="simulator folder to load instead of fitting one")
    parser.add_argument("--save", help="save the fitted simulator here for later runs")
    parser.add_argument("--quick", action="store_true", help="fit 50 trees per model")
    parser.add_argument("--sessions", type=int, default=15000, help="synthetic sessions to fit on")
    parser.add_argument("--steps", type=int, default=40, help="timed vector steps per figure")
    args = parser.parse_args(argv)

    sim = build_simulator(args)
    trees = {m: getattr(sim, m).booster.num_trees() for m in ("click", "watch", "cont")}
    print(f"simulator: {sim.n_items} items, d={sim.catalogue.dim}, trees {trees}")
    blas = [f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()]
    print(f"thread pools as loaded: {', '.join(blas)}")
    rec = Recorder(sim)

    print(f"\nsingle env (gymnasium.make, K={K}): {single_env_rate(sim, 2000):,.0f} steps/s")
    for n in (1, 64, 1024):
        steps = max(args.steps, 2000 // n)
        print(f"vector env N={n:>4}: {vector_rate(sim, n, steps):>10,.0f} user-steps/s")

    print("\none vector step at N=1024 vs bare Booster.predict on the same batches")
    print("(ratio = step / (click + continue predict); ratio_all also counts the watch model)")
    header = f"{'setting':<44} {'step ms':>8} {'pred ms':>8} {'ratio':>6} {'cpu':>6} {'all':>6}"
    print(header)
    rows = [
        ("uniform, defaults", {}, {}),
        ("popularity, defaults", {"sampler": "popularity"}, {}),
        ("interest, defaults", {"sampler": "interest"}, {}),
        ("slate_size=5, uniform, defaults", {"slate_size": 5}, {}),
        ("uniform, LightGBM 2 threads", {}, {"lgbm": 2}),
        ("interest, BLAS 1 thread process-wide", {"sampler": "interest"}, {"blas": 1}),
        ("interest, no env BLAS limit (2 threads)", {"sampler": "interest"}, {"limit": False}),
    ]
    for label, kwargs, s in rows:
        with settings(s.get("blas"), s.get("lgbm"), s.get("limit", True)):
            r = overhead(sim, rec, 1024, args.steps, **kwargs)
        print(
            f"{label:<44} {r['step_ms']:>8.2f} {r['predict_ms']:>8.2f} {r['ratio']:>6.2f} "
            f"{r['ratio_cpu']:>6.2f} {r['ratio_all']:>6.2f}"
        )


if __name__ == "__main__":
    main()
