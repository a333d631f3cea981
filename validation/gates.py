"""The report-wide gate types: :class:`Gates` (the thresholds) and :class:`Metric` (one verdict).

Every check of :mod:`simkit.validation` reports its figures as :class:`Metric` objects, each compared
with a threshold of :class:`Gates`; :class:`~simkit.validation.report.FidelityReport` fails when any
gated figure fails. A figure that could not be computed (NaN) or has no threshold carries
``passed=None``: it is shown, never counted as a pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simkit.errors import ConfigError

__all__ = ["Gates", "Metric"]


@dataclass(frozen=True, kw_only=True)
class Gates:
    """Pass/fail thresholds of the fidelity report (all configurable).

    Parameters
    ----------
    click_auc_min, continue_auc_min
        Smallest acceptable held-out AUC of the click and continuation models. A model that ignores
        its features (shuffled labels, a constant) scores 0.5.
    click_ece_max, continue_ece_max
        Largest acceptable expected calibration error (10 quantile bins).
    ks_margin
        Every KS distance (watch time, and each session-level distribution) must lie within its
        noise floor plus this margin.
    session_mean_tolerance
        Each simulated session mean must be within this relative distance of the held-out mean.
    clear_pair_gap
        Two policies are *clearly different* when their reference values differ by more than this
        share of the larger one.
    clear_pairs_min
        Smallest acceptable share of clearly different pairs the simulator orders correctly.
    value_error_mean_max, value_error_max_max
        Largest acceptable mean and largest relative value error over the policies.
    logging_value_error_max
        Largest acceptable relative value error of the logging-policy model.
    confounding_min_gain
        The confounding check fires when the lower 95% bound of the relative held-out log-loss
        improvement from the logged propensity exceeds this (0.5%: refit noise alone moved a
        placebo column's improvement by up to 0.25% at 50k rows, see :mod:`.confounding`).
    """

    click_auc_min: float = 0.6
    click_ece_max: float = 0.02
    continue_auc_min: float = 0.55
    continue_ece_max: float = 0.02
    ks_margin: float = 0.05
    session_mean_tolerance: float = 0.10
    clear_pair_gap: float = 0.10
    clear_pairs_min: float = 1.0
    value_error_mean_max: float = 0.10
    value_error_max_max: float = 0.20
    logging_value_error_max: float = 0.10
    confounding_min_gain: float = 0.005

    def __post_init__(self) -> None:
        bad = [k for k, v in self.__dict__.items() if not np.isfinite(v) or v < 0]
        if bad:
            raise ConfigError(
                f"Gates must be finite and non-negative; got {', '.join(bad)}. Use e.g. Gates()."
            )


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One figure of the report: value, interval, noise floor, threshold and verdict.

    Parameters
    ----------
    key
        Stable identifier (``"click_auc"``, ``"session_ks.length"``, ...).
    label
        What it is, in words.
    section
        ``"impression"``, ``"session"``, ``"ranking"`` or ``"confounding"``.
    value, ci_low, ci_high
        Point estimate and its bootstrap 95% interval (NaN when not computed).
    noise_floor, noise_floor_sd
        The same statistic between two random halves of the held-out data (mean and standard
        deviation over the splits); NaN when the figure has none.
    threshold, direction
        The gate: ``value <= threshold`` (``"<="``) or ``value >= threshold`` (``">="``); no
        threshold means the figure is reported, not gated.
    passed
        The verdict, or None for figures that are not gated or could not be computed.
    note
        Extra context (e.g. simulated vs held-out means).
    """

    key: str
    label: str
    section: str
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    noise_floor: float = float("nan")
    noise_floor_sd: float = float("nan")
    threshold: float | None = None
    direction: str = "<="
    passed: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("<=", ">="):
            raise ValueError(f"Metric.direction must be '<=' or '>='; got {self.direction!r}")

    @classmethod
    def gated(cls, *, threshold: float | None, **kwargs: object) -> Metric:
        """A metric whose verdict is ``value <direction> threshold`` (None when value is NaN).

        Examples
        --------
        >>> m = Metric.gated(key="click_auc", label="Click AUC", section="impression", value=0.58,
        ...                  threshold=0.6, direction=">=")
        >>> m.passed
        False
        """
        value = float(kwargs["value"])  # type: ignore[arg-type]
        direction = str(kwargs.get("direction", "<="))
        passed: bool | None = None
        if threshold is not None and np.isfinite(value):
            passed = bool(value <= threshold) if direction == "<=" else bool(value >= threshold)
        return cls(threshold=threshold, passed=passed, **kwargs)  # type: ignore[arg-type]
