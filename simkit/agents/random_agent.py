"""Uniform random baseline: every candidate equally likely.

The floor every learning agent must beat, and the uniform logging policy whose logs make
inverse-propensity estimators behave best.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.agents.base import Observation, SavableAgent, observation_parts, register_agent
from simkit.errors import ConfigError

__all__ = ["RandomAgent", "RandomAgentConfig"]


@dataclass(frozen=True, kw_only=True)
class RandomAgentConfig:
    """Settings of :class:`RandomAgent`.

    Parameters
    ----------
    slate_size : int
        1 to pick one candidate; ``k > 1`` to show ``k`` distinct candidates in random order.
    """

    slate_size: int = 1

    def __post_init__(self) -> None:
        if self.slate_size < 1:
            raise ConfigError(f"slate_size must be at least 1; got {self.slate_size}")


@register_agent
class RandomAgent(SavableAgent):
    """Show candidates uniformly at random.

    Parameters
    ----------
    config : RandomAgentConfig, optional
    **overrides
        Config fields, e.g. ``RandomAgent(slate_size=5)``.

    Attributes
    ----------
    last_propensity : float or ndarray
        ``1/K`` (per shown item for a slate: the per-draw probability ``1/K``).
    last_slate_propensity : float
        Probability of the whole ordered slate, ``1 / (K (K-1) ... (K-k+1))``.

    Examples
    --------
    >>> agent = RandomAgent()
    >>> obs = {"user": np.zeros(2), "candidates": np.eye(4)}
    >>> agent.act(obs, rng=np.random.default_rng(0)) in range(4), agent.last_propensity
    (True, 0.25)
    """

    Config = RandomAgentConfig

    def __init__(self, config: RandomAgentConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or RandomAgentConfig(), **overrides)
        self.last_propensity: float | NDArray[np.float64] | None = None
        self.last_slate_propensity: float | None = None

    def act(self, obs: Observation, *, rng: np.random.Generator) -> Any:
        """Pick one candidate (or a slate of distinct ones) uniformly at random."""
        _, cands = observation_parts(obs)
        k, size = cands.shape[0], self.config.slate_size
        if size == 1:
            self.last_propensity = 1.0 / k
            self.last_slate_propensity = 1.0 / k
            return int(rng.integers(k))
        if size > k:
            raise ConfigError(f"slate_size {size} exceeds the {k} candidates offered")
        slate = rng.choice(k, size=size, replace=False)
        self.last_propensity = np.full(size, 1.0 / k)
        self.last_slate_propensity = float(1.0 / np.prod(np.arange(k - size + 1, k + 1)))
        return slate

    def action_proba(
        self, obs: Observation, *, rng: np.random.Generator | None = None
    ) -> NDArray[np.float64]:
        """Uniform ``1/K`` over the candidates."""
        _, cands = observation_parts(obs)
        return np.full(cands.shape[0], 1.0 / cands.shape[0])

    def _get_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        return {}, {}

    def _set_state(self, arrays: dict[str, NDArray[Any]], state: dict[str, Any]) -> None:
        pass
