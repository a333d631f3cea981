"""Mean return of the uniform random policy in ``simkit/Session-v0`` under fixed seeds.

A behaviour check rather than a speed figure: the same simulator folder and seeds must give the
same figure before and after a refactoring of the step (episodes seeded 1000, 1001, ...; the
action space seeded with the episode number).

    python benchmarks/random_return.py SIM_DIR [--episodes 600]
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np

import simkit.envs  # noqa: F401  (registers simkit/Session-v0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("simulator", help="simulator folder")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--candidates", type=int, default=50)
    args = parser.parse_args()
    env = gym.make("simkit/Session-v0", simulator=args.simulator, n_candidates=args.candidates)
    returns, lengths = [], []
    for episode in range(args.episodes):
        env.reset(seed=1000 + episode)
        env.action_space.seed(episode)
        done, total, n = False, 0.0, 0
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, n, done = total + float(reward), n + 1, terminated or truncated
        returns.append(total)
        lengths.append(n)
    r = np.asarray(returns)
    print(
        json.dumps(
            {
                "episodes": args.episodes,
                "mean_return": float(r.mean()),
                "se": float(r.std(ddof=1) / np.sqrt(len(r))),
                "mean_length": float(np.mean(lengths)),
            }
        )
    )


if __name__ == "__main__":
    main()
