"""RecoMind DQN ablations on ClickbaitSessionEnv: warm start vs random init, exploration variants.

RecoMind (2025) reports that the warm start reaches a target faster than random initialisation and
that softmax exploration over the top-K Q-values beats plain epsilon-greedy. This script runs both
comparisons on :class:`simkit.agents.clickbait_env.ClickbaitSessionVectorEnv` (gamma 0.95, 10 items,
greedy 2.37 clicks per session, optimum 8.75) and prints one row per configuration:

- ``final``: exact value (DP over step x patience) of the greedy policy after training, mean and
  range over seeds;
- ``steps to greedy``: first evaluation point (every ``--eval-every`` env steps, plus step 0) where
  the greedy policy's value reaches the greedy baseline 2.37 (``-`` if never);
- ``steps to 0.65 opt``: the same for 0.65 x optimum (5.69), the acceptance bar.

Usage: ``python benchmarks/dqn_ablation.py [--steps 100000] [--seeds 3] [--num-envs 8]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from simkit.agents.base import blas_threads
from simkit.agents.clickbait_env import ClickbaitSessionVectorEnv
from simkit.agents.dqn import DQN

GREEDY = 2.3701
CONFIGS = {
    "warm start, top-K softmax (25%, u=0.1)": {},
    "random init, top-K softmax (25%, u=0.1)": {"warm_start": False},
    "warm start, epsilon-greedy": {"exploration": "epsilon_greedy"},
    "random init, epsilon-greedy": {"exploration": "epsilon_greedy", "warm_start": False},
    "warm start, top-K K=5, u=0 (trap)": {"top_k": 5, "uniform_share": 0.0},
    "warm start, top-K K=5, u=0.1": {"top_k": 5},
}


def run(overrides: dict, seed: int, n_steps: int, num_envs: int, every: int) -> dict:
    env = ClickbaitSessionVectorEnv(num_envs)
    agent = DQN(gamma=0.95, **overrides)
    opt = env.optimal_value()
    curve: list[tuple[int, float]] = []
    next_eval = [0]

    def value(a: DQN) -> float:
        eps, a.epsilon = a.epsilon, 0.0
        v = env.policy_value(env.policy_table(a.action_proba))
        a.epsilon = eps
        return v

    def record(a: DQN, steps: int) -> None:
        if steps >= next_eval[0]:
            curve.append((steps, value(a)))
            next_eval[0] += every

    agent.learn_online(env, n_steps, rng=np.random.default_rng(seed), callback=record)
    curve.append((n_steps, value(agent)))

    def first(th: float) -> int | None:
        return next((s for s, v in curve if v >= th - 1e-9), None)

    return {"final": curve[-1][1], "to_greedy": first(GREEDY), "to_bar": first(0.65 * opt)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument(
        "--config", type=int, action="append", help="run only these rows (0-based; repeatable)"
    )
    parser.add_argument("--no-header", action="store_true")
    args = parser.parse_args()
    rows = [list(CONFIGS)[i] for i in args.config] if args.config else list(CONFIGS)
    if not args.no_header:
        print_header(args)
    with blas_threads(1):
        for name in rows:
            run_row(name, CONFIGS[name], args)


def print_header(args: argparse.Namespace) -> None:
    print(
        f"ClickbaitSessionEnv, gamma=0.95, {args.steps} env steps, {args.seeds} seeds, "
        f"{args.num_envs} sessions per vector step; greedy 2.37, optimum 8.75, bar 5.69"
    )
    head = f"{'config':<42} {'final (mean, min-max)':>24} {'steps to greedy':>18} {'steps to 0.65 opt':>20}"
    print(head)
    print("-" * len(head))


def run_row(name: str, overrides: dict, args: argparse.Namespace) -> None:
    t0 = time.process_time()
    res = [
        run(overrides, seed, args.steps, args.num_envs, args.eval_every)
        for seed in range(args.seeds)
    ]
    final = np.array([r["final"] for r in res])

    def fmt(key: str) -> str:
        return "/".join("-" if r[key] is None else f"{r[key] // 1000}k" for r in res)

    print(
        f"{name:<42} {final.mean():>8.2f} ({final.min():.2f}-{final.max():.2f})     "
        f"{fmt('to_greedy'):>18} {fmt('to_bar'):>20}"
        f"   [{time.process_time() - t0:.0f} s cpu]",
        flush=True,
    )


if __name__ == "__main__":
    main()
