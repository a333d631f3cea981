"""Fidelity validation: does the simulator behave like the held-out users?

Installed as ``simkit.validation``. :func:`validate` (:mod:`.run`) runs every check and returns a
:class:`FidelityReport` (:mod:`.report`; HTML, JSON, Markdown) whose figures are :class:`Metric`
objects held to :class:`Gates` (:mod:`.gates`): per-impression fidelity (:mod:`.fidelity`),
session-level fidelity beside noise floors (:mod:`.sessions`), the policy-ranking check
(:mod:`.ranking` with the policies of :mod:`.policies`), the confounding check
(:mod:`.confounding`). The off-policy estimators live in :mod:`.ope` (single action; built on
:mod:`.ope_kernel`), :mod:`.ope_slate` and :mod:`.ope_sequential`. Importing this package does not
import :mod:`simkit.fitters`.
"""

from __future__ import annotations

from simkit.validation.confounding import ConfoundingResult, confounding_check
from simkit.validation.fidelity import ImpressionFidelity, impression_fidelity
from simkit.validation.gates import Gates, Metric
from simkit.validation.policies import (
    GreedyClickPolicy,
    GreedyWatchPolicy,
    LoggingPolicyModel,
    Policy,
    PolicyContext,
    PopularPolicy,
    RandomPolicy,
    default_policies,
    fit_logging_policy,
    run_in_simulator,
    run_in_world,
)
from simkit.validation.ranking import PolicyResult, RankingResult, policy_ranking
from simkit.validation.report import SCHEMA_PATH, FidelityReport
from simkit.validation.run import validate
from simkit.validation.sessions import (
    HeldoutSessions,
    SessionFidelity,
    heldout_sessions,
    session_fidelity,
)

__all__ = [
    "SCHEMA_PATH",
    "ConfoundingResult",
    "FidelityReport",
    "Gates",
    "GreedyClickPolicy",
    "GreedyWatchPolicy",
    "HeldoutSessions",
    "ImpressionFidelity",
    "LoggingPolicyModel",
    "Metric",
    "Policy",
    "PolicyContext",
    "PolicyResult",
    "PopularPolicy",
    "RandomPolicy",
    "RankingResult",
    "SessionFidelity",
    "confounding_check",
    "default_policies",
    "fit_logging_policy",
    "heldout_sessions",
    "impression_fidelity",
    "policy_ranking",
    "run_in_simulator",
    "run_in_world",
    "session_fidelity",
    "validate",
]
