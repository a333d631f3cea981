"""Reference agents: baselines, linear bandits, off-policy REINFORCE, and their test envs.

Every agent follows :class:`~simkit.agents.base.Agent`: ``act(obs, *, rng)``, ``action_proba``,
``last_propensity``, ``save``/``load``. Observations are dicts ``{"user": (d_u,), "candidates":
(K, d_c)}``; actions index the candidates.
"""

from __future__ import annotations

from simkit.agents.base import (
    Agent,
    DecisionLog,
    EvaluationResult,
    OfflineLearner,
    OnlineLearner,
    discounted_returns,
    evaluate,
    load_agent,
)
from simkit.agents.baselines import (
    GreedyClickAgent,
    GreedyClickAgentConfig,
    PopularAgent,
    PopularAgentConfig,
)
from simkit.agents.lints import LinTS, LinTSConfig
from simkit.agents.linucb import LinUCB, LinUCBConfig
from simkit.agents.random_agent import RandomAgent, RandomAgentConfig
from simkit.agents.reinforce import REINFORCE, REINFORCEConfig

__all__ = [
    "Agent",
    "DecisionLog",
    "EvaluationResult",
    "GreedyClickAgent",
    "GreedyClickAgentConfig",
    "LinTS",
    "LinTSConfig",
    "LinUCB",
    "LinUCBConfig",
    "OfflineLearner",
    "OnlineLearner",
    "PopularAgent",
    "PopularAgentConfig",
    "REINFORCE",
    "REINFORCEConfig",
    "RandomAgent",
    "RandomAgentConfig",
    "discounted_returns",
    "evaluate",
    "load_agent",
]
