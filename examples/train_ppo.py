"""Train Stable-Baselines3 PPO in a fitted simkit simulator through the score-vector adapter.

``simkit/ScoredSession-v0`` turns the session into a task a standard MLP policy can learn: the
observation is one flat vector (the standardised user state and per-feature summaries of the K
candidates), and the action is a weight per candidate feature; the env shows the candidate with the
highest score. ``VecNormalize`` rescales the rewards (watch seconds). Needs
``pip install simkit[examples]`` (Stable-Baselines3 and PyTorch; not simkit dependencies)::

    simkit fit data_samples/logs.parquet --items data_samples/items.parquet --out sim/
    python examples/train_ppo.py --simulator sim/ --timesteps 50000

It prints the trained policy's mean return and those of a random and a most-popular policy on the
same 300 seeded evaluation episodes, with 95% intervals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_env, save_and_evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train, save and evaluate; returns the mean returns, intervals and gains."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", required=True, help="simulator folder ('simkit fit')")
    parser.add_argument("--timesteps", type=int, default=50_000)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--eval-episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/ppo_scored", help="where to save the policy")
    args = parser.parse_args(argv)

    venv = make_vec_env(lambda: make_env(args.simulator), n_envs=args.n_envs, seed=args.seed)
    venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=0.99)
    # rollouts of a multiple of 32 steps per env, so that minibatches of 128 divide the buffer
    n_steps = max(32, min(256, args.timesteps // args.n_envs // 32 * 32))
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=n_steps,
        batch_size=min(128, n_steps * args.n_envs),
        learning_rate=1e-3,
        gamma=0.99,
        ent_coef=0.0,
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=args.timesteps)
    return save_and_evaluate(model, "PPO", args)


if __name__ == "__main__":
    main()
