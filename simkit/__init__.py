"""simkit: fit a user simulator from recommender logs, check its fidelity, train RL agents in it.

The core package re-exports core names only; ``simkit.fitters``, ``simkit.envs``,
``simkit.validation`` and ``simkit.agents`` are imported explicitly by whoever needs them.
"""

from __future__ import annotations

from simkit.errors import ArtifactError, ConfigError, FidelityError, LogError, SimkitError

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "ConfigError",
    "FidelityError",
    "LogError",
    "SimkitError",
    "__version__",
]
