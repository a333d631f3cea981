"""The one table of trainable agents: name, class, defaults and how each learns.

``simkit train --agent NAME``, its ``--help``, :func:`simkit.agents.train.train_agent` and
:func:`simkit.agents.base.load_agent` read this table. Adding an agent takes its module (the agent
class with ``act``/``action_proba``/``save``/``load``, decorated with ``register_agent``) plus one
:class:`AgentSpec` line in :data:`AGENTS`. Classes are named as ``"module:Class"`` strings and
imported on first use, so listing the agents imports none of them.

How an agent is built for an env: ``cls.for_env(env, simulator_path=..., **defaults)`` when the
class defines ``for_env`` (agents that read the env, e.g. its simulator or column names), else
``cls(**defaults)``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from simkit.errors import ConfigError

__all__ = ["AGENTS", "AgentSpec", "agent_names", "agent_spec", "build_agent"]

LEARNS = ("none", "online", "logs", "online+logs")


@dataclass(frozen=True)
class AgentSpec:
    """One trainable agent.

    Parameters
    ----------
    name
        The CLI name (``simkit train --agent NAME``).
    target
        ``"module:Class"`` of the agent class.
    learns
        ``"none"`` (runs as it is), ``"online"`` (``learn_online`` in the env), ``"logs"``
        (``learn_from_logs``) or ``"online+logs"``.
    summary
        One line for ``--help``.
    defaults
        Config overrides of the agent for the session env.
    env
        The env id it trains in (``simkit/Session-v0`` unless said).
    """

    name: str
    target: str
    learns: str
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    env: str = "simkit/Session-v0"

    def __post_init__(self) -> None:
        if self.learns not in LEARNS:
            raise ValueError(f"AgentSpec.learns must be one of {LEARNS}; got {self.learns!r}")

    def load_class(self) -> type:
        """Import and return the agent class."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    @property
    def learns_online(self) -> bool:
        """Whether ``simkit train`` calls ``learn_online``."""
        return self.learns in ("online", "online+logs")


AGENTS: dict[str, AgentSpec] = {
    s.name: s
    for s in (
        AgentSpec(
            "random",
            "simkit.agents.random_agent:RandomAgent",
            "none",
            "uniform over the candidates",
        ),
        AgentSpec(
            "popular", "simkit.agents.baselines:PopularAgent", "none", "most shown in training"
        ),
        AgentSpec(
            "greedy",
            "simkit.agents.baselines:GreedyClickAgent",
            "none",
            "greedy on the fitted click model ('the production model')",
        ),
        # one ridge model over the candidate rows (p = d_c + 1) instead of the user x item outer
        # product (p ~ 800 on the sample simulator, 8 times slower per decision and slower to learn)
        AgentSpec(
            "linucb",
            "simkit.agents.linucb:LinUCB",
            "online",
            "LinUCB contextual bandit (Li et al. 2010)",
            {"features": "candidates"},
        ),
        AgentSpec(
            "lints",
            "simkit.agents.lints:LinTS",
            "online",
            "linear Thompson sampling (Agrawal and Goyal 2013)",
            {"features": "candidates", "propensity_samples": 100},
        ),
        # batch_size 256 (an update every ~35 sessions): on the sample simulator after 8,000 steps,
        # seeds 0-2, mean return 305-315 s against 216-281 with 128 and 219-252 with the default 512
        AgentSpec(
            "reinforce",
            "simkit.agents.reinforce:REINFORCE",
            "online+logs",
            "REINFORCE; top-K off-policy corrected when learning from logs (Chen et al. 2019)",
            {"batch_size": 256},
        ),
        AgentSpec(
            "dqn",
            "simkit.agents.dqn:DQN",
            "online",
            "RecoMind double DQN, prioritised replay, top-K softmax exploration, warm start",
        ),
        AgentSpec(
            "dual-critic",
            "simkit.agents.dual_critic:DualCritic",
            "online",
            "RLUR dual critic for retention (Cai et al. 2023); trains in simkit/Retention-v0",
            env="simkit/Retention-v0",
        ),
        AgentSpec(
            "drl-put",
            "simkit.agents.drl_put:DRLPUT",
            "online+logs",
            "DRL-PUT ad utility tuning (Pinterest 2025); trains in simkit/AdUtility-v0",
            env="simkit/AdUtility-v0",
        ),
    )
}
"""The registered agents, by name."""


def agent_names() -> tuple[str, ...]:
    """Names of the registered agents, in registration order."""
    return tuple(AGENTS)


def agent_spec(name: str) -> AgentSpec:
    """The :class:`AgentSpec` of ``name``.

    Raises
    ------
    ConfigError
        For an unknown name, listing the known ones.
    """
    try:
        return AGENTS[name]
    except KeyError:
        raise ConfigError(f"Unknown agent {name!r}; choose one of {', '.join(AGENTS)}.") from None


def build_agent(name: str, env: Any, *, simulator_path: str | os.PathLike[str] | None) -> Any:
    """A fresh agent ``name`` for ``env`` with the registered defaults."""
    spec = agent_spec(name)
    cls = spec.load_class()
    if hasattr(cls, "for_env"):
        return cls.for_env(env, simulator_path=simulator_path, **spec.defaults)
    return cls(**spec.defaults)


def class_for(class_name: str) -> type | None:
    """The registered class called ``class_name`` (imported on demand), or None."""
    for spec in AGENTS.values():
        if spec.target.rpartition(":")[2] == class_name:
            return spec.load_class()
    return None
