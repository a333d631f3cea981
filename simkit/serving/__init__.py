"""Serving: a trained policy as a self-contained artefact that logs exact propensities.

- :func:`load_policy` reads a policy folder written by ``simkit export`` (:mod:`.io`) and returns a
  :class:`ServedPolicy`, whose :meth:`~ServedPolicy.rank` returns a :class:`Decision`: the shown
  item or slate of each request and the exact probability of it, ready to log.
- :func:`export_policy` (:mod:`.export`) writes the folder from a trained agent; :mod:`.shadow`
  replays fresh logs against a policy (``simkit shadow``).

Importing this package and loading a linear or MLP policy imports numpy, :mod:`simkit.nn`,
:mod:`simkit.errors` and :mod:`simkit.artifacts` only; LightGBM is imported when a tree-model
policy is loaded. The export and shadow modules (which read agents, simulators and logs) are
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simkit.serving.io import FORMAT_VERSION, load_policy
from simkit.serving.policy import Decision, Exploration, InputError, ServedPolicy

if TYPE_CHECKING:
    from simkit.serving.export import export_policy

__all__ = [
    "FORMAT_VERSION",
    "Decision",
    "Exploration",
    "InputError",
    "ServedPolicy",
    "export_policy",
    "load_policy",
]


def __getattr__(name: str) -> Any:
    """``export_policy`` is imported on first use (it reads agents and simulators)."""
    if name == "export_policy":
        from simkit.serving.export import export_policy

        return export_policy
    raise AttributeError(f"module 'simkit.serving' has no attribute {name!r}")
