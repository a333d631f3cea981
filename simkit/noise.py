"""When a figure is within noise: the words simkit uses for models indistinguishable from chance.

Shared by the fit summary (:mod:`simkit.fitters`) and the fidelity report
(:mod:`simkit.validation`), which must not import each other.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auc_noise", "auc_warning"]


def auc_noise(n_pos: int, n_neg: int) -> float:
    """Standard error of the AUC of an uninformative score (Mann-Whitney under the null):
    ``sqrt((n_pos + n_neg + 1) / (12 n_pos n_neg))``."""
    if n_pos < 1 or n_neg < 1:
        return float("inf")
    return float(np.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg)))


def auc_warning(name: str, auc: float, n_pos: int, n_neg: int, what: str) -> str | None:
    """A warning when a held-out AUC is within two null standard errors of 0.5, else None."""
    if not np.isfinite(auc):
        return None
    se = auc_noise(n_pos, n_neg)
    if abs(auc - 0.5) > 2 * se:
        return None
    return (
        f"The {name} model's held-out AUC {auc:.4f} is within noise of 0.5 (+-{2 * se:.4f}, two "
        f"standard errors of an uninformative score with {n_pos:,} {what} and {n_neg:,} without): "
        "it cannot be told from a model that ignores its features. Provide more logs, or do not "
        "trust what the simulator says about who clicks."
        if name == "click"
        else f"The {name} model's held-out AUC {auc:.4f} is within noise of 0.5 (+-{2 * se:.4f}, "
        f"two standard errors of an uninformative score with {n_pos:,} {what} and {n_neg:,} "
        "without): it cannot be told from a model that ignores its features."
    )
