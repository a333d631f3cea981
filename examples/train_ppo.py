"""Train Stable-Baselines3 PPO in a fitted simkit simulator.

The session env's ``Dict`` observation is flattened with Gymnasium's ``FlattenObservation`` so that
PPO's MLP policy can read it; ``VecNormalize`` rescales observations and rewards (watch seconds).
Needs ``pip install stable-baselines3`` (not a simkit dependency)::

    python -m simkit fit data_samples/logs.parquet --items data_samples/items.parquet --out sim/
    python examples/train_ppo.py --simulator sim/ --timesteps 50000

It prints the mean return of the trained policy and of a uniformly random one on the same seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FlattenObservation

import simkit.envs  # noqa: F401  (registers simkit/Session-v0)


def make_env(simulator: str, **kwargs: Any) -> gym.Env:
    """``simkit/Session-v0`` with its observation flattened to one float32 vector."""
    return FlattenObservation(gym.make("simkit/Session-v0", simulator=simulator, **kwargs))


def evaluate(env: gym.Env, act: Any, n_episodes: int, seed: int) -> float:
    """Mean undiscounted return of ``act(obs) -> action`` over ``n_episodes`` seeded episodes."""
    returns = []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train, save and evaluate; returns the two mean returns."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", required=True, help="simulator folder ('simkit fit')")
    parser.add_argument("--timesteps", type=int, default=50_000)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/ppo_session", help="where to save the policy")
    args = parser.parse_args(argv)

    venv = make_vec_env(lambda: make_env(args.simulator), n_envs=args.n_envs, seed=args.seed)
    venv = VecNormalize(venv, norm_obs=True, norm_reward=True)
    n_steps = max(16, min(512, args.timesteps // args.n_envs))
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=n_steps,
        batch_size=min(64, n_steps * args.n_envs),
        seed=args.seed,
        verbose=0,
    )
    model.learn(total_timesteps=args.timesteps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "policy")
    venv.save(str(out / "vecnormalize.pkl"))

    venv.training = False
    env = make_env(args.simulator)
    rng = np.random.default_rng(args.seed)

    def ppo_act(obs: np.ndarray) -> int:
        action, _ = model.predict(venv.normalize_obs(obs[None]), deterministic=True)
        return int(action[0])

    def random_act(obs: np.ndarray) -> int:
        return int(rng.integers(env.action_space.n))

    result = {
        "mean_return": evaluate(env, ppo_act, args.eval_episodes, seed=10_000),
        "random_return": evaluate(env, random_act, args.eval_episodes, seed=10_000),
    }
    print(
        f"PPO mean return {result['mean_return']:.1f} vs random {result['random_return']:.1f} "
        f"over {args.eval_episodes} episodes; policy saved to {out}/"
    )
    return result


if __name__ == "__main__":
    main()
