"""DRL-PUT's reward, offline gates and log reading (the agent is :mod:`simkit.agents.drl_put`).

The campaign-type reward (estimated revenue plus user value over engagement probabilities that are
min-max normalised per type and per batch), the Diversity and Relative_Gain gates the paper checks
on held-out requests before serving, and the reader of uniform-exploration ads logs.

References
----------
.. [1] Pinterest. "DRL-PUT: deep reinforcement learning for personalised utility tuning in ads
   ranking." 2025.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.ads_world import GAMMA, N_ACTIONS, USER_FEATURES
from simkit.errors import ConfigError, LogError
from simkit.validation.ope import Estimate, snips

__all__ = [
    "ENGAGEMENT_COLUMNS",
    "LOG_COLUMNS",
    "Diversity",
    "RelativeGain",
    "campaign_reward",
    "diversity",
    "minmax_normalise",
    "read_ads_log",
    "relative_gain",
]

F64 = NDArray[Any]
ENGAGEMENT_COLUMNS = ("p_click", "p_click30", "p_conversion")
LOG_COLUMNS = ("action", "campaign_type", "est_revenue", *ENGAGEMENT_COLUMNS)


# --------------------------------------------------------------------------- rewards


def minmax_normalise(p: F64, mask: NDArray[np.bool_] | None = None) -> F64:
    """Min-max scale each column of ``p`` to [0, 1] over the batch (rows in ``mask``).

    A column that is constant over the batch maps to 0 (no division by zero); rows outside
    ``mask`` map to 0.

    Parameters
    ----------
    p : ndarray, shape (n, k)
        One column per engagement type.
    mask : ndarray of bool, shape (n,), optional
        Rows that enter the minimum and maximum (default: all).

    Examples
    --------
    >>> minmax_normalise(np.array([[0.1, 0.5], [0.3, 0.5], [0.2, 0.5]]))
    array([[0. , 0. ],
           [1. , 0. ],
           [0.5, 0. ]])
    """
    p = np.asarray(p, dtype=np.float64)
    m = np.ones(len(p), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros_like(p)
    lo = p[m].min(axis=0)
    span = p[m].max(axis=0) - lo
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (p - lo) / safe, 0.0)
    return np.where(m[:, None], out, 0.0)


def campaign_reward(
    campaign_type: F64,
    est_revenue: F64,
    proba: F64,
    *,
    reward: str = "campaign",
    normalise: bool = True,
) -> F64:
    """DRL-PUT's campaign-type reward of a batch: revenue plus ``sum_k gamma_{c,k} p~_k``.

    Parameters
    ----------
    campaign_type : ndarray of int, shape (n,)
        0 click (CPC), 1 conversion (CPA), 2 impression (CPM); -1 when no ad was shown (reward 0).
    est_revenue : ndarray, shape (n,)
        Estimated revenue of the shown ad (bid times the probability of the paid action).
    proba : ndarray, shape (n, 3)
        Probabilities of click, click30 and conversion of the shown ad.
    reward : {"campaign", "revenue"}
        ``"revenue"`` drops the user value (every gamma 0).
    normalise : bool
        Min-max normalise each engagement type over the batch first (:func:`minmax_normalise`).

    Examples
    --------
    >>> campaign_reward(np.array([0, 1, 2, -1]), np.array([0.1, 0.2, 0.3, 0.0]),
    ...                 np.array([[0.2, 0.1, 0.0], [0.1, 0.05, 0.02], [0.3, 0.0, 0.0],
    ...                           [0.0, 0.0, 0.0]]))
    array([1.1, 0.9, 0.3, 0. ])
    """
    ctype = np.asarray(campaign_type, dtype=np.int64)
    shown = ctype >= 0
    rev = np.where(shown, np.asarray(est_revenue, dtype=np.float64), 0.0)
    if reward == "revenue":
        return rev
    if reward != "campaign":
        raise ConfigError(f"reward must be 'campaign' or 'revenue'; got {reward!r}")
    p = np.asarray(proba, dtype=np.float64)
    p = minmax_normalise(p, shown) if normalise else np.where(shown[:, None], p, 0.0)
    gamma = GAMMA[np.where(shown, ctype, 2)]  # impression rows have gamma 0: a safe filler
    return rev + np.where(shown, (gamma * p).sum(axis=1), 0.0)


# --------------------------------------------------------------------------- gates


@dataclass(frozen=True, kw_only=True)
class Diversity:
    """The Diversity gate: does the policy choose varied settings for different requests?

    Attributes
    ----------
    n_distinct : int
        Distinct joint actions chosen on the hold-out.
    entropy : float
        Entropy of the chosen-action histogram divided by ``log(n_distinct)`` (0 for one action).
    min_distinct : int
        Distinct actions the gate requires.
    passed : bool
    """

    n_distinct: int
    entropy: float
    min_distinct: int
    passed: bool


def diversity(actions: Any, *, min_distinct: int = 3) -> Diversity:
    """Diversity gate of the actions a deterministic policy chose on held-out requests.

    Examples
    --------
    >>> diversity([1, 1, 2, 3]).passed
    True
    """
    _, counts = np.unique(np.asarray(actions), return_counts=True)
    freq = counts / counts.sum()
    h = float(-(freq * np.log(freq)).sum() / math.log(len(freq))) if len(freq) > 1 else 0.0
    return Diversity(
        n_distinct=len(counts),
        entropy=h,
        min_distinct=min_distinct,
        passed=len(counts) >= min_distinct,
    )


@dataclass(frozen=True, kw_only=True)
class RelativeGain:
    """The Relative_Gain gate: ``V_SNIPS(pi) / V(logging) - 1`` with a bootstrap interval.

    Attributes
    ----------
    value, ci_low, ci_high : float
        Estimate and percentile 95% interval (stratified bootstrap: matched rows resampled,
        the baseline mean drawn from its normal approximation).
    policy : Estimate
        The SNIPS estimate of the policy's value.
    baseline : float
        Mean logged reward (the value of the uniform logging policy).
    passed : bool
        ``ci_low > 0`` and the SNIPS estimate has enough overlap.
    """

    value: float
    ci_low: float
    ci_high: float
    policy: Estimate
    baseline: float
    passed: bool


def relative_gain(
    reward: Any,
    target_action: Any,
    logged_action: Any,
    logged_propensity: Any,
    *,
    rng: np.random.Generator,
    n_bootstrap: int = 1000,
    min_ess: float = 100.0,
) -> RelativeGain:
    """Relative gain of a deterministic policy over the logging policy, by SNIPS.

    Parameters
    ----------
    reward : array-like, shape (n,)
        Logged rewards of held-out requests logged by the behaviour (uniform) policy.
    target_action, logged_action : array-like of int, shape (n,)
        The policy's choice and the logged action of each request.
    logged_propensity : array-like, shape (n,)
        Behaviour probability of the logged action.
    rng : numpy.random.Generator
        Bootstrap randomness.
    n_bootstrap : int
        Resamples of rows.
    min_ess : float
        Matched rows the SNIPS estimate needs (with 1000 actions about n/1000 rows match).

    Returns
    -------
    RelativeGain
    """
    r = np.asarray(reward, dtype=np.float64)
    match = (np.asarray(target_action) == np.asarray(logged_action)).astype(np.float64)
    est = snips(r, match, logged_propensity, rng=rng, n_bootstrap=0, min_ess=min_ess)
    w = match / np.asarray(logged_propensity, dtype=np.float64)
    base = float(r.mean())
    value = est.value / base - 1.0 if match.any() else math.nan
    # Resampling all n rows costs O(n) per draw; only the matched rows carry the SNIPS
    # numerator, so they are resampled (m rows) and the baseline mean, over many rows, is
    # drawn from its normal approximation (stratified bootstrap).
    n, hit = r.size, match > 0
    m = int(hit.sum())
    rm, wm = r[hit], w[hit]
    base_se = float(r.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    boots = np.full(n_bootstrap, math.nan)
    if m:
        idx = rng.integers(0, m, size=(n_bootstrap, m))
        num = (wm[idx] * rm[idx]).sum(axis=1) / wm[idx].sum(axis=1)
        boots = num / (base + base_se * rng.standard_normal(n_bootstrap)) - 1.0
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots.size else (math.nan, math.nan)
    return RelativeGain(
        value=float(value),
        ci_low=float(lo),
        ci_high=float(hi),
        policy=est,
        baseline=base,
        passed=bool(est.enough_overlap and lo > 0),
    )


# --------------------------------------------------------------------------- logs


def read_ads_log(logs: Any, feature_columns: tuple[str, ...] = USER_FEATURES) -> pd.DataFrame:
    """Read an ads log (DataFrame, parquet or CSV path) and check the columns DRL-PUT needs.

    Raises
    ------
    LogError
        Listing every missing column, non-finite value or action outside [0, 1000).
    """
    if isinstance(logs, (str, Path)):
        path = Path(logs)
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    elif isinstance(logs, pd.DataFrame):
        frame = logs
    else:
        raise TypeError(f"logs must be a DataFrame or a path; got {type(logs).__name__}")
    need = [*feature_columns, *LOG_COLUMNS, "propensity"]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise LogError(
            f"The ads log must have columns {need}; missing {missing} (found "
            f"{list(frame.columns)[:20]}). Write it with simkit.ads_world.AdsWorld.log_uniform "
            "or add the columns."
        )
    problems = []
    for c in need:
        bad = ~np.isfinite(frame[c].to_numpy(dtype=np.float64))
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            problems.append(f"column {c!r} has {bad.sum()} non-finite values (rows {rows})")
    a = frame["action"].to_numpy()
    bad = (a < 0) | (a >= N_ACTIONS)
    if bad.any():
        problems.append(f"'action' must lie in [0, {N_ACTIONS}); {bad.sum()} rows do not")
    if problems:
        raise LogError("The ads log has bad values: " + "; ".join(problems) + ".")
    return frame
