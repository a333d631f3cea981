"""Any trained agent as a validation policy: what ``simkit validate --agents`` and the trust check use.

The validation's rollouts (:mod:`simkit.validation.policies`) hand a policy the simulator, simkit's
state of each running session and the candidates' catalogue rows. :class:`AgentPolicy` turns that
into the very observation the agent saw in training (:class:`simkit.observation.ObservationLayout`,
the layout the session envs use) and returns the agent's ``action_proba`` for it, so a trained
agent is judged in the simulator and, on synthetic logs, in the true world, beside the built-in
policies.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.observation import ObservationLayout
from simkit.session import values_of_rows

__all__ = ["AgentPolicy", "load_agent_policies"]


class AgentPolicy:
    """A trained agent seen through the validation's :class:`~simkit.validation.policies.Policy`.

    Parameters
    ----------
    agent
        Any simkit agent (``action_proba(obs, rng=...)`` over the candidates).
    name
        The name shown in the report.
    seed
        Seed of the generator passed to ``action_proba`` (agents that sample to estimate their
        probabilities, e.g. LinTS).
    """

    def __init__(self, agent: Any, name: str, *, seed: int = 0) -> None:
        self.agent = agent
        self.name = name
        self._rng = np.random.default_rng(seed)
        self._layouts: dict[tuple[int, int], ObservationLayout] = {}

    def _layout(self, sim: Any, k: int) -> ObservationLayout:
        key = (id(sim), k)
        if key not in self._layouts:
            self._layouts[key] = ObservationLayout(sim, k)
        return self._layouts[key]

    def proba(self, ctx: Any) -> NDArray[np.float64]:
        """The agent's probability of each candidate, (n, K), rows summing to 1."""
        n, k = ctx.candidates.shape
        layout = self._layout(ctx.sim, k)
        if getattr(self.agent, "reward_prior", "no") is None and hasattr(
            self.agent, "set_reward_prior"
        ):  # a warm-started agent scores with the simulator's immediate values (not saved)
            sim = ctx.sim

            def prior(o: dict[str, NDArray]) -> NDArray[np.float64]:
                user, cands = np.asarray(o["user"]), np.asarray(o["candidates"])
                if cands.ndim == 2:
                    user, cands = user[None], cands[None]
                x = layout.click_features(user, cands)
                return values_of_rows(sim, x, layout.durations(cands))

            self.agent.set_reward_prior(prior)
        obs = layout.observe(ctx.state, ctx.candidates)
        out = np.empty((n, k))
        for i in range(n):
            p = np.asarray(
                self.agent.action_proba(
                    {"user": obs["user"][i], "candidates": obs["candidates"][i]}, rng=self._rng
                ),
                dtype=np.float64,
            )
            out[i] = p / p.sum()
        return out


def load_agent_policies(runs: list[str | os.PathLike[str]]) -> list[AgentPolicy]:
    """One :class:`AgentPolicy` per run folder (or saved agent folder), named after the folder.

    Raises
    ------
    simkit.errors.ArtifactError
        When a folder is neither a run folder nor a saved agent.
    """
    from simkit.agents.base import load_agent
    from simkit.agents.train import read_run

    out = []
    seen: set[str] = set()
    for run in runs:
        settings, agent_dir = read_run(run)
        name = Path(run).resolve().name
        agent_name = settings.get("agent")
        label = f"agent:{name}" if agent_name in (None, name) else f"agent:{name} ({agent_name})"
        while label in seen:
            label += "'"
        seen.add(label)
        out.append(AgentPolicy(load_agent(agent_dir), label))
    return out
