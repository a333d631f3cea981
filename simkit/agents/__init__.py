"""Reference agents: baselines, linear bandits, off-policy REINFORCE, and their test envs.

Every agent follows :class:`~simkit.agents.base.Agent`: ``act(obs, *, rng)``, ``action_proba``,
``last_propensity``, ``save``/``load``. Observations are dicts ``{"user": (d_u,), "candidates":
(K, d_c)}``; actions index the candidates.

The names below are imported on first use (PEP 562 module ``__getattr__``), so importing one
submodule, e.g. :mod:`simkit.agents.registry`, does not import every agent and its dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_SOURCES = {
    "Agent": "base",
    "DecisionLog": "base",
    "EvaluationResult": "base",
    "OfflineLearner": "base",
    "OnlineLearner": "base",
    "discounted_returns": "base",
    "evaluate": "base",
    "load_agent": "base",
    "GreedyClickAgent": "baselines",
    "GreedyClickAgentConfig": "baselines",
    "PopularAgent": "baselines",
    "PopularAgentConfig": "baselines",
    "LinTS": "lints",
    "LinTSConfig": "lints",
    "LinUCB": "linucb",
    "LinUCBConfig": "linucb",
    "RandomAgent": "random_agent",
    "RandomAgentConfig": "random_agent",
    "REINFORCE": "reinforce",
    "REINFORCEConfig": "reinforce",
}

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


def __getattr__(name: str) -> Any:
    """Import ``name`` from its submodule on first access (PEP 562)."""
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'simkit.agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"simkit.agents.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))
