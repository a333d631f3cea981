"""Shared helpers of the Stable-Baselines3 examples: the env, seeded evaluation and baselines.

The agents act in ``simkit/ScoredSession-v0``: each step they output one weight per candidate
feature and the env shows the best-scoring candidate (see :class:`simkit.envs.ScoredSessionEnv`).
Baselines act on the same seeded episodes (the same users and candidate streams), so a paired
difference is the sharpest comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from simkit.envs import ScoredSessionEnv  # registers simkit/ScoredSession-v0

MAX_STEPS = 200  # the registered episode limit


def make_env(simulator: str, **kwargs: Any) -> gym.Env:
    """``simkit/ScoredSession-v0`` (argmax selection, flat summary observation)."""
    return gym.make("simkit/ScoredSession-v0", simulator=simulator, **kwargs)


def episode_returns(
    env: gym.Env, pick: Callable[[Any, Any], int], n_episodes: int, seed: int
) -> np.ndarray:
    """Undiscounted return of ``pick(obs, scored_env) -> candidate slot`` per seeded episode."""
    scored = env.unwrapped
    assert isinstance(scored, ScoredSessionEnv)
    out = np.empty(n_episodes)
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, _, _ = scored.step_candidate(pick(obs, scored))
            total += float(reward)
            steps += 1
            done = terminated or steps >= MAX_STEPS
        out[episode] = total
    return out


def baselines(env: gym.Env, n_episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Returns of a uniformly random slot and of the most popular candidate, per episode."""
    scored = env.unwrapped
    assert isinstance(scored, ScoredSessionEnv)
    rng = np.random.default_rng(seed)
    pop = scored.candidate_names.index("item_log_pop")
    return {
        "random": episode_returns(env, lambda o, e: int(rng.integers(e.k)), n_episodes, seed),
        "popular": episode_returns(
            env, lambda o, e: int(np.argmax(e._x[:, pop])), n_episodes, seed
        ),
    }


def interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and normal 95% interval of the mean."""
    m = float(np.mean(values))
    h = 1.96 * float(np.std(values, ddof=1)) / np.sqrt(len(values))
    return m, m - h, m + h


def compare(agent: np.ndarray, base: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean returns, their intervals, and the agent's paired gain over each baseline."""
    result: dict[str, float] = {}
    m, lo, hi = interval(agent)
    result.update(mean_return=m, mean_low=lo, mean_high=hi)
    for name, values in base.items():
        bm, blo, bhi = interval(values)
        dm, dlo, dhi = interval(agent - values)
        result.update(
            {
                f"{name}_return": bm,
                f"{name}_low": blo,
                f"{name}_high": bhi,
                f"gain_over_{name}": m / bm - 1.0 if bm > 0 else float("nan"),
                f"diff_{name}_low": dlo,
                f"diff_{name}_high": dhi,
            }
        )
    return result


def report(name: str, r: dict[str, float], n_episodes: int) -> str:
    """A few lines: each mean with its 95% interval, and the gains with the paired intervals."""
    lines = [
        f"{name} mean return {r['mean_return']:.1f} [{r['mean_low']:.1f}, {r['mean_high']:.1f}] "
        f"over {n_episodes} episodes"
    ]
    for base in ("random", "popular"):
        lines.append(
            f"  {base:<8} {r[f'{base}_return']:.1f} [{r[f'{base}_low']:.1f}, "
            f"{r[f'{base}_high']:.1f}]; gain {100 * r[f'gain_over_{base}']:+.0f}% "
            f"(paired difference 95% interval [{r[f'diff_{base}_low']:.1f}, "
            f"{r[f'diff_{base}_high']:.1f}])"
        )
    return "\n".join(lines)


def save_and_evaluate(model: Any, name: str, args: Any) -> dict[str, float]:
    """Save a trained SB3 ``model`` under ``args.out``, evaluate it greedily on seeded episodes
    beside the random and popular baselines, print the comparison and return it."""
    from pathlib import Path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "policy")
    env = make_env(args.simulator)

    def pick(obs: np.ndarray, scored: Any) -> int:
        action, _ = model.predict(obs, deterministic=True)
        return int(scored.choose(action)[0])

    agent = episode_returns(env, pick, args.eval_episodes, seed=10_000)
    result = compare(agent, baselines(env, args.eval_episodes, seed=10_000))
    print(report(name, result, args.eval_episodes))
    print(f"policy saved to {out}/")
    return result
