"""Sweep the dual-critic agent's settings on the calibrated retention test problem (AGENTS.md §4.6).

For every setting and seed: train on ``RetentionTestVectorEnv`` for each budget, evaluate the
stochastic policy on 2,000 fresh users, and print return days, day-1 retention and clicks per
session next to the acceptance lines: R1 (return days <= 1.15 x best constant, day-1 >= 0.65), R2
(alpha = 0: return days >= 2.5, clicks/session >= 4.0). The last column says whether the row passes
R1 (or R2 for alpha = 0).

    python benchmarks/dual_critic_sweep.py        # the agent's defaults and alpha = 0, seeds 0-7
    python benchmarks/dual_critic_sweep.py --alpha 0.8 0.9 --retention-lambda 0.9 0.5 \
        --budget 60000 120000 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from simkit.agents.dual_critic import DualCritic, DualCriticConfig
from simkit.agents.retention_problem import RetentionTestVectorEnv, evaluate_retention

BEST_CONSTANT_DAYS = 1.71
DEFAULTS = DualCriticConfig()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.0, DEFAULTS.alpha])
    parser.add_argument(
        "--retention-lambda", type=float, nargs="+", default=[DEFAULTS.retention_lambda]
    )
    parser.add_argument("--actor-lr", type=float, nargs="+", default=[DEFAULTS.actor_lr])
    parser.add_argument("--kappa", type=float, nargs="+", default=[DEFAULTS.soft_kappa])
    parser.add_argument("--entropy", type=float, nargs="+", default=[DEFAULTS.entropy_coef])
    parser.add_argument("--budget", type=int, nargs="+", default=[120_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument(
        "--every-request",
        action="store_true",
        help="R3 ablation: discount retention by gamma on every request, not only across sessions",
    )
    parser.add_argument(
        "--no-group-advantages",
        action="store_true",
        help="normalise the retention advantage over the whole batch, not within each user group",
    )
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--eval-users", type=int, default=2000)
    args = parser.parse_args()
    print(
        f"{'alpha':>5} {'ret_lam':>7} {'act_lr':>6} {'kappa':>5} {'entropy':>7} {'budget':>7} "
        f"{'seed':>4} "
        f"{'days':>5} {'day1':>5} {'clicks':>6} {'train_s':>7}  pass"
    )
    for alpha, lam, lr, kappa, entropy in itertools.product(
        args.alpha, args.retention_lambda, args.actor_lr, args.kappa, args.entropy
    ):
        passes = []
        for budget, seed in itertools.product(args.budget, args.seeds):
            agent = DualCritic(
                alpha=alpha,
                retention_lambda=lam,
                actor_lr=lr,
                soft_kappa=kappa,
                entropy_coef=entropy,
                discount_every_request=args.every_request,
                group_advantages=not args.no_group_advantages,
            )
            t0 = time.perf_counter()
            agent.learn_online(
                RetentionTestVectorEnv(args.num_envs), budget, rng=np.random.default_rng(seed)
            )
            seconds = time.perf_counter() - t0
            res = evaluate_retention(
                RetentionTestVectorEnv(200),
                agent,
                args.eval_users,
                rng=np.random.default_rng(seed + 100),
            )
            if alpha == 0.0:
                ok = res.return_days >= 2.5 and res.clicks_per_session >= 4.0
            else:
                ok = res.return_days <= 1.15 * BEST_CONSTANT_DAYS and res.day1_retention >= 0.65
            passes.append(ok)
            print(
                f"{alpha:5.2f} {lam:7.2f} {lr:6.3f} {kappa:5.1f} {entropy:7.3f} {budget:7d} {seed:4d} "
                f"{res.return_days:5.2f} {res.day1_retention:5.2f} "
                f"{res.clicks_per_session:6.2f} {seconds:7.1f}  {'yes' if ok else 'NO'}",
                flush=True,
            )
        print(
            f"# alpha {alpha} ret_lam {lam} lr {lr} kappa {kappa} entropy {entropy}: "
            f"{sum(passes)}/{len(passes)} pass"
        )


if __name__ == "__main__":
    main()
