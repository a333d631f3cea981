"""Train Stable-Baselines3 SAC in a fitted simkit simulator through the score-vector adapter.

SAC's continuous action is the score vector of ``simkit/ScoredSession-v0`` (one weight per
candidate feature; the env shows the best-scoring candidate). Off-policy, it learns from a replay
buffer with one gradient step every ``--train-freq`` env steps. Needs
``pip install simkit[examples]``::

    simkit fit data_samples/logs.parquet --items data_samples/items.parquet --out sim/
    python examples/train_sac.py --simulator sim/ --timesteps 20000

It prints the trained policy's mean return and those of a random and a most-popular policy on the
same seeded evaluation episodes, with 95% intervals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_env, save_and_evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train, save and evaluate; returns the mean returns, intervals and gains."""
    from stable_baselines3 import SAC

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", required=True, help="simulator folder ('simkit fit')")
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--train-freq", type=int, default=4)
    parser.add_argument("--eval-episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/sac_scored", help="where to save the policy")
    args = parser.parse_args(argv)

    env = make_env(args.simulator)
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=1e-3,
        buffer_size=max(1000, args.timesteps),
        learning_starts=min(1000, args.timesteps // 4),
        batch_size=128,
        gamma=0.95,
        train_freq=args.train_freq,
        gradient_steps=1,
        policy_kwargs={"net_arch": [64, 64]},
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=args.timesteps)
    return save_and_evaluate(model, "SAC", args)


if __name__ == "__main__":
    main()
