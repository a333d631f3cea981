"""Project errors: every user mistake surfaces as a :class:`SimkitError` subclass."""

from __future__ import annotations

__all__ = [
    "SimkitError",
    "LogError",
    "ArtifactError",
    "ConfigError",
    "FidelityError",
    "TrainingDivergedError",
]


class SimkitError(Exception):
    """Base class of the errors simkit raises for user mistakes and bad data."""


class LogError(SimkitError, ValueError):
    """Logs that cannot be used as given: the message says what, where and how to fix it."""


class ArtifactError(SimkitError):
    """A simulator or agent folder that is missing, tampered with, or from a newer format."""


class ConfigError(SimkitError, ValueError):
    """A configuration value outside its allowed range."""


class FidelityError(SimkitError):
    """A fidelity gate failed (raised by ``simkit validate --strict``)."""


class TrainingDivergedError(SimkitError):
    """Training met a NaN or infinite value and stopped; the message names the step and value."""
