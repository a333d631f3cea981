"""Gymnasium environments over a fitted :class:`~simkit.simulator.Simulator`.

Importing this package registers ``simkit/Session-v0`` (``max_episode_steps=200`` through
Gymnasium's ``TimeLimit``), whose ``vector_entry_point`` is the native
:class:`SessionVectorEnv`, and ``simkit/ScoredSession-v0`` (:class:`ScoredSessionEnv`: the agent
outputs a score vector over candidate features, for agents of other libraries)::

    import gymnasium as gym
    import simkit.envs

    env = gym.make("simkit/Session-v0", simulator="sim/")
    envs = gym.make_vec("simkit/Session-v0", num_envs=256, simulator="sim/",
                        vectorization_mode="vector_entry_point")
"""

from __future__ import annotations

import gymnasium as gym

from simkit.envs._core import EnvConfig
from simkit.envs.scored import ScoredSessionEnv
from simkit.envs.session import SessionEnv
from simkit.envs.vector import SessionVectorEnv

__all__ = [
    "EnvConfig",
    "SCORED_ID",
    "SESSION_ID",
    "ScoredSessionEnv",
    "SessionEnv",
    "SessionVectorEnv",
]

SESSION_ID = "simkit/Session-v0"
SCORED_ID = "simkit/ScoredSession-v0"

if SESSION_ID not in gym.registry:
    gym.register(
        id=SESSION_ID,
        entry_point="simkit.envs.session:SessionEnv",
        vector_entry_point="simkit.envs.vector:SessionVectorEnv",
        max_episode_steps=200,
    )
if SCORED_ID not in gym.registry:
    gym.register(
        id=SCORED_ID, entry_point="simkit.envs.scored:ScoredSessionEnv", max_episode_steps=200
    )
if "simkit/AdUtility-v0" not in gym.registry:
    gym.register(id="simkit/AdUtility-v0", entry_point="simkit.envs.ads:AdUtilityEnv")
if "simkit/Retention-v0" not in gym.registry:
    gym.register(
        id="simkit/Retention-v0",
        entry_point="simkit.envs.retention:RetentionEnv",
        vector_entry_point="simkit.envs.retention:RetentionVectorEnv",
    )
