"""Speed of the reference agents and of simkit's numpy nets.

Prints, best of ``--repeat`` runs (CPU seconds beside wall seconds show how much other work on the
machine slowed a run):

- REINFORCE policy updates/s from logs (SlateMNLEnv: 100 candidates, batch 512, linear and MLP
  towers);
- LinUCB and LinTS decisions/s (``act`` + ``update`` on pre-drawn LinearBanditEnv observations,
  disjoint d=10 K=20 and joint over 20 of 200 items);
- updates/s of a numpy MLP 64-256-256-50 (ReLU, batch 256, MSE, Adam) in float64 and float32,
  beside the same net in torch when torch is importable (skipped otherwise);
- with ``--simulator PATH`` (a folder written by ``simkit fit``), in the session env over that
  simulator (K=50 candidates, the CLI's agent settings): REINFORCE policy updates/s on batches of
  256 env steps and its online env steps/s (act + step + update), LinUCB decisions/s (``act`` +
  ``update`` on pre-drawn observations) and its online env steps/s, and the env's own steps/s
  under a random policy for reference.

Each figure is measured with numpy's BLAS limited to 1 and to ``--threads`` threads, and the ratio
is printed: on two busy cores a second BLAS thread can make small products far slower.

The workloads come from :func:`workloads`.

Run: ``python benchmarks/agents.py [--repeat 3] [--threads 2] [--quick] [--simulator PATH]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from simkit import nn
from simkit.agents import REINFORCE, DecisionLog, LinTS, LinUCB, RandomAgent, discounted_returns
from simkit.agents.registry import AGENTS
from simkit.agents.testenvs import LinearBanditEnv, SlateMNLEnv
from simkit.agents.train import make_env


def timed(fn: Callable[[], int], repeat: int) -> tuple[float, float, float]:
    """Best (units/s by wall time, wall s, CPU s) over ``repeat`` runs of ``fn`` (returns units)."""
    best = (0.0, 0.0, 0.0)
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        units = fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if units / wall > best[0]:
            best = (units / wall, wall, cpu)
    return best


def workloads(args: argparse.Namespace) -> dict[str, Any]:
    """Inputs of every benchmark: observations, logs. A ``--simulator`` option adds its own."""
    rng = np.random.default_rng(0)
    n_obs = 1000 if args.quick else 3000
    out: dict[str, Any] = {}
    for model in ("disjoint", "joint"):
        env = LinearBanditEnv(model=model, world_seed=0)
        obs, _ = env.reset(seed=0)
        observations = [obs]
        for _ in range(n_obs - 1):
            observations.append(env.reset()[0])
        out[f"bandit_{model}"] = (observations, rng.normal(size=n_obs))
    slate_env = SlateMNLEnv()
    out["slate_logs"] = slate_env.sample_logs(20_000 if args.quick else 100_000, rng=rng)
    if args.simulator:
        out |= simulator_workloads(args.simulator, n_obs, rng)
    return out


def simulator_workloads(path: str, n_obs: int, rng: np.random.Generator) -> dict[str, Any]:
    """The session env over the simulator at ``path`` and ``n_obs`` steps of a random policy."""
    env = make_env(path, n_candidates=50)
    obs, _ = env.reset(seed=0)
    k = obs["candidates"].shape[0]
    observations, actions, rewards, ends = [], [], [], []
    for _ in range(n_obs):
        action = int(rng.integers(k))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        ends.append(terminated or truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    rewards_arr = np.asarray(rewards, dtype=np.float64)
    # what an online REINFORCE update sees: per-step candidates and discounted returns
    logs = DecisionLog(
        user=np.stack([o["user"] for o in observations]).astype(np.float64),
        candidates=np.stack([o["candidates"] for o in observations]).astype(np.float64),
        action=np.asarray(actions, dtype=np.int64),
        reward=discounted_returns(rewards_arr, np.asarray(ends), 0.9),
    )
    return {"sim_env": env, "sim_obs": (observations, rewards_arr), "sim_logs": logs}


def bench_reinforce(data: dict[str, Any], repeat: int, steps: int) -> dict[str, float]:
    logs = data["slate_logs"]
    results = {}
    for label, kw in (
        ("linear towers (E=16)", {}),
        ("MLP towers 64-16", {"hidden": (64,), "learning_rate": 1e-3}),
    ):

        def run(kw: dict[str, Any] = kw) -> int:
            # blas_threads=None: the benchmark, not the agent, sets the thread count
            agent = REINFORCE(correction="topk", batch_size=512, blas_threads=None, **kw)
            agent.learn_from_logs(logs, rng=np.random.default_rng(0), n_steps=steps)
            return steps

        results[f"REINFORCE updates/s, {label}"] = timed(run, repeat)
    return results


def bench_bandits(data: dict[str, Any], repeat: int) -> dict[str, float]:
    results = {}
    makers: dict[str, Callable[[], Any]] = {
        "LinUCB disjoint d=10 K=20": lambda: LinUCB(model="disjoint", intercept=False),
        "LinUCB joint product (p=11)": lambda: LinUCB(model="joint", features="product"),
        "LinUCB joint outer (p=121)": lambda: LinUCB(model="joint", features="outer"),
        "LinTS disjoint, M=1000 propensities": lambda: LinTS(model="disjoint"),
        "LinTS disjoint, no propensities": lambda: LinTS(model="disjoint", propensity_samples=0),
        "LinTS joint product, M=1000": lambda: LinTS(model="joint", features="product"),
    }
    for label, make in makers.items():
        key = "bandit_disjoint" if "disjoint" in label else "bandit_joint"
        observations, rewards = data[key]

        def run(
            make: Callable[[], Any] = make, observations: Any = observations, rewards: Any = rewards
        ) -> int:
            agent, rng = make(), np.random.default_rng(0)
            for obs, r in zip(observations, rewards):
                agent.update(obs, agent.act(obs, rng=rng), r)
            return len(observations)

        results[f"{label}: decisions/s"] = timed(run, repeat)
    return results


def bench_simulator(
    data: dict[str, Any], repeat: int, steps: int
) -> dict[str, tuple[float, float, float]]:
    """Agents in the session env over a fitted simulator (``--simulator``)."""
    if "sim_env" not in data:
        return {}
    env, logs = data["sim_env"], data["sim_logs"]
    observations, rewards = data["sim_obs"]
    online_steps = max(steps * 4, 1000)
    results = {}
    # the online update: plain REINFORCE on batches of 256 steps, batch-mean baseline
    pg = {**AGENTS["reinforce"].defaults, "blas_threads": None}

    def updates() -> int:
        agent = REINFORCE(correction="none", train_on="all", offline_baseline="batch_mean", **pg)
        agent.learn_from_logs(logs, rng=np.random.default_rng(0), n_steps=steps)
        return steps

    def pg_online() -> int:
        REINFORCE(**pg).learn_online(env, online_steps, rng=np.random.default_rng(0))
        return online_steps

    ucb = AGENTS["linucb"].defaults

    def decisions() -> int:
        agent, rng = LinUCB(**ucb), np.random.default_rng(0)
        for obs, r in zip(observations, rewards):
            agent.update(obs, agent.act(obs, rng=rng), r)
        return len(observations)

    def ucb_online() -> int:
        LinUCB(**ucb).learn_online(env, online_steps, rng=np.random.default_rng(0))
        return online_steps

    def env_only() -> int:
        agent, rng = RandomAgent(), np.random.default_rng(0)
        obs, _ = env.reset(seed=0)
        for _ in range(online_steps):
            obs, _, terminated, truncated, _ = env.step(agent.act(obs, rng=rng))
            if terminated or truncated:
                obs, _ = env.reset()
        return online_steps

    k, d_c = logs.candidates.shape[1:]
    results[f"sim: REINFORCE updates/s (batch 256, K={k}, d_c={d_c})"] = timed(updates, repeat)
    results["sim: REINFORCE online env steps/s"] = timed(pg_online, repeat)
    results[f"sim: LinUCB decisions/s (p={d_c + 1})"] = timed(decisions, repeat)
    results["sim: LinUCB online env steps/s"] = timed(ucb_online, repeat)
    results["sim: env steps/s, random policy"] = timed(env_only, repeat)
    return results


def bench_mlp(repeat: int, steps: int) -> dict[str, float]:
    results = {}
    sizes = [64, 256, 256, 50]
    for dtype in ("float64", "float32"):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(256, 64)).astype(dtype)
        y = rng.normal(size=(256, 50)).astype(dtype)

        def run(dtype: str = dtype, x: Any = x, y: Any = y) -> int:
            net = nn.mlp(sizes, rng=np.random.default_rng(1), dtype=dtype)
            opt = nn.Adam(net.parameters(), lr=1e-3)
            for _ in range(steps):
                _, g = nn.mse_loss(net.forward(x), y)
                net.backward(g)
                opt.step()
            return steps

        results[f"numpy MLP 64-256-256-50 {dtype}: updates/s"] = timed(run, repeat)
    return results


def bench_torch(repeat: int, steps: int, threads: int) -> dict[str, float]:
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(threads)
    results = {}
    for dtype in (torch.float64, torch.float32):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(256, 64, dtype=dtype, generator=gen)
        y = torch.randn(256, 50, dtype=dtype, generator=gen)
        net = torch.nn.Sequential(
            torch.nn.Linear(64, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 50),
        ).to(dtype)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def run(net: Any = net, opt: Any = opt, x: Any = x, y: Any = y) -> int:
            for _ in range(steps):
                opt.zero_grad()
                torch.nn.functional.mse_loss(net(x), y).backward()
                opt.step()
            return steps

        results[f"torch MLP 64-256-256-50 {str(dtype)[6:]}: updates/s"] = timed(run, repeat)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads of the 2nd column")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    parser.add_argument(
        "--simulator", metavar="PATH", help="simulator folder: add figures in its session env"
    )
    args = parser.parse_args(argv)
    data = workloads(args)
    steps = 100 if args.quick else 500
    table: dict[str, dict[int, tuple[float, float, float]]] = {}
    for threads in (1, args.threads):
        with threadpool_limits(threads, user_api="blas"):
            figures = {}
            figures |= bench_reinforce(data, args.repeat, steps)
            figures |= bench_bandits(data, args.repeat)
            figures |= bench_simulator(data, args.repeat, steps)
            figures |= bench_mlp(args.repeat, steps)
            figures |= bench_torch(args.repeat, steps, threads)
        for name, value in figures.items():
            table.setdefault(name, {})[threads] = value
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not importable: torch figures skipped")
    t2 = args.threads
    print(f"{'benchmark':<50} {'1 BLAS thread':>24} {f'{t2} BLAS threads':>24} {'ratio':>6}")
    for name, by_threads in table.items():
        cells = []
        for t in (1, t2):
            rate, wall, cpu = by_threads[t]
            cells.append(f"{rate:>10,.0f} ({wall:.2f}s/{cpu:.2f}cpu)")
        ratio = by_threads[t2][0] / by_threads[1][0]
        print(f"{name:<50} {cells[0]:>24} {cells[1]:>24} {ratio:>6.2f}")
    names = list(table)
    for dtype in ("float64", "float32"):
        np_name = f"numpy MLP 64-256-256-50 {dtype}: updates/s"
        torch_name = f"torch MLP 64-256-256-50 {dtype}: updates/s"
        if torch_name in names:
            for t in (1, t2):
                ratio = table[np_name][t][0] / table[torch_name][t][0]
                print(f"numpy/torch speed, {dtype}, {t} thread(s): {ratio:.2f}")


if __name__ == "__main__":
    main()
