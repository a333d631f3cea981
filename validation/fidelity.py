"""Per-impression fidelity on held-out logs, and the weighted statistics every check bootstraps with.

The held-out logs are replayed through the simulator's own state code
(:func:`simkit.replay.replay_with`: each session starts from the user's other held-out sessions and
the logged items and responses drive :func:`simkit.state.transition`), so each held-out impression
gets exactly the features the simulator would see. On those rows:

- click: AUC, log loss (beside the base-rate log loss) and expected calibration error (ECE) with a
  reliability diagram;
- continuation: AUC and ECE on the state after each logged step;
- watch time: the Kolmogorov-Smirnov distance between watch times sampled from the simulator at the
  clicked rows and the held-out watch times, beside its noise floor (the same KS between two random
  halves of the held-out sessions' clicked rows, averaged over ``n_splits`` splits).

Every figure has a percentile bootstrap 95% interval over held-out *sessions* (impressions of one
session are not independent). Calibration error and KS distance are biased upward under
resampling, so their intervals can sit above the point estimate. The bootstrap is vectorised: each
resample is a vector of session counts, and every statistic is computed as a weighted statistic
under those counts (log loss and ECE from :mod:`simkit.metrics`). The figures are
:class:`~simkit.validation.gates.Metric` objects held to :class:`~simkit.validation.gates.Gates`.

References
----------
.. [1] Efron, Tibshirani. "An Introduction to the Bootstrap." Chapman & Hall 1993 (percentile
   intervals; resampling clusters).
.. [2] Naeini, Cooper, Hauskrecht. "Obtaining well calibrated probabilities using Bayesian binning."
   AAAI 2015 (expected calibration error).
.. [3] Guo, Pleiss, Sun, Weinberger. "On calibration of modern neural networks." ICML 2017
   (reliability diagrams).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import sparse, stats

from simkit.logs import Logs
from simkit.metrics import calibration_bins, weighted_ece, weighted_log_loss
from simkit.replay import PreparedLogs, replay_with
from simkit.simulator import Simulator
from simkit.validation.gates import Gates, Metric

__all__ = [
    "ImpressionFidelity",
    "Reliability",
    "bootstrap_chunks",
    "half_splits",
    "impression_fidelity",
    "ks_noise_floor",
    "percentile_interval",
    "reliability",
    "session_weights",
    "weighted_auc",
    "weighted_ks",
]


@dataclass(frozen=True, kw_only=True)
class Reliability:
    """Reliability diagram data: per quantile bin of the prediction, mean prediction and rate."""

    mean_predicted: tuple[float, ...]
    observed_rate: tuple[float, ...]
    count: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ImpressionFidelity:
    """Per-impression figures of a simulator on held-out logs (see :func:`impression_fidelity`)."""

    metrics: tuple[Metric, ...]
    reliability: Reliability
    n_rows: int
    n_sessions: int
    click_rate: float
    continue_rate: float
    watch_quantiles: dict[str, list[float]] = field(default_factory=dict)
    n_steps: int = 0
    continue_reliability: Reliability | None = None


# ------------------------------------------------------------------ weighted statistics


def session_weights(
    n_sessions: int, n_resamples: int, *, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Bootstrap resamples of sessions as count vectors, shape (n_resamples, n_sessions)."""
    draws = rng.integers(n_sessions, size=(n_resamples, n_sessions))
    offsets = (np.arange(n_resamples) * n_sessions)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_sessions)
    return counts.reshape(n_resamples, n_sessions).astype(np.float64)


def half_splits(n_sessions: int, n_splits: int, *, rng: np.random.Generator) -> NDArray[np.float64]:
    """Random halves of sessions as 0/1 weights, shape (n_splits, n_sessions); 1 = first half."""
    keys = rng.random((n_splits, n_sessions))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return (ranks < n_sessions // 2).astype(np.float64)


def weighted_auc(y: NDArray, p: NDArray[np.float64], w: NDArray[np.float64]) -> NDArray[np.float64]:
    """ROC AUC of scores ``p`` for labels ``y`` under each row of weights ``w`` (shape (B, n)).

    Ties count one half, as in the Mann-Whitney statistic.

    Examples
    --------
    >>> float(weighted_auc(np.array([0, 1, 1]), np.array([0.1, 0.4, 0.2]), np.ones((1, 3)))[0])
    1.0
    """
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    uniq, group = np.unique(p, return_inverse=True)
    y = np.asarray(y) > 0
    n, g = len(p), len(uniq)
    pos = sparse.csr_matrix((y.astype(np.float64), (np.arange(n), group)), shape=(n, g))
    neg = sparse.csr_matrix(((~y).astype(np.float64), (np.arange(n), group)), shape=(n, g))
    wp = np.asarray((pos.T @ w.T).T)
    wn = np.asarray((neg.T @ w.T).T)
    below = np.cumsum(wn, axis=1) - wn
    num = (wp * (below + 0.5 * wn)).sum(axis=1)
    den = wp.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def weighted_ks(
    a: NDArray[np.float64],
    wa: NDArray[np.float64],
    b: NDArray[np.float64],
    wb: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Two-sample KS distance between weighted samples, for each row of weights (shape (B, n)).

    ``sup_x |F_a(x) - F_b(x)|`` with weighted empirical CDFs; with unit weights it equals
    :func:`scipy.stats.ks_2samp`'s statistic (ties handled by evaluating at each distinct value).

    Examples
    --------
    >>> a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0, 5.0])
    >>> float(weighted_ks(a, np.ones((1, 3)), b, np.ones((1, 4)))[0])
    0.5
    """
    values = np.concatenate([a, b])
    uniq, group = np.unique(values, return_inverse=True)
    n, g = len(values), len(uniq)
    wa, wb = np.atleast_2d(wa), np.atleast_2d(wb)
    sign = np.r_[np.ones(len(a)), np.zeros(len(b))]
    ia = sparse.csr_matrix((sign, (np.arange(n), group)), shape=(n, g))
    ib = sparse.csr_matrix((1 - sign, (np.arange(n), group)), shape=(n, g))
    full_a = np.hstack([wa, np.zeros((wa.shape[0], len(b)))])
    full_b = np.hstack([np.zeros((wb.shape[0], len(a))), wb])
    ca = np.cumsum(np.asarray((ia.T @ full_a.T).T), axis=1)
    cb = np.cumsum(np.asarray((ib.T @ full_b.T).T), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fa = ca / ca[:, -1:]
        fb = cb / cb[:, -1:]
    return np.abs(fa - fb).max(axis=1)


def bootstrap_chunks(w: NDArray, session_of: NDArray, cells: int = 2_000_000) -> int:
    """Number of chunks to split bootstrap weights into so that each holds about ``cells`` cells.

    Parameters
    ----------
    w : numpy.ndarray of shape (B, n_sessions)
        Bootstrap weights of sessions (:func:`session_weights`).
    session_of : numpy.ndarray of shape (n,)
        Session of each row the weights are expanded to.
    cells : int, default 2_000_000
        Target number of row weights per chunk (bounds the memory of ``w[:, session_of]``).

    Returns
    -------
    int
        At least 1; pass it to ``numpy.array_split(w, ...)``.

    Examples
    --------
    >>> bootstrap_chunks(np.ones((200, 10)), np.zeros(50_000, np.int64))
    5
    """
    return max(1, int(np.ceil(w.shape[0] * len(session_of) / cells)))


def percentile_interval(values: NDArray[np.float64]) -> tuple[float, float]:
    """The 2.5% and 97.5% percentiles of finite bootstrap values (NaN when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [2.5, 97.5])
    return float(lo), float(hi)


def ks_noise_floor(
    values: NDArray[np.float64],
    session_of_value: NDArray[np.int64],
    n_sessions: int,
    *,
    n_splits: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Mean and standard deviation of the KS between two random halves of the sessions."""
    halves = half_splits(n_sessions, n_splits, rng=rng)[:, session_of_value]
    ks = weighted_ks(values, halves, values, 1.0 - halves)
    return float(ks.mean()), float(ks.std(ddof=1))


def reliability(y: NDArray, p: NDArray[np.float64], *, n_bins: int = 10) -> Reliability:
    """Reliability diagram data over quantile bins of ``p``."""
    p = np.asarray(p, dtype=np.float64)
    b = calibration_bins(p, n_bins=n_bins)
    count = np.bincount(b, minlength=n_bins)
    keep = count > 0
    mean_p = np.bincount(b, weights=p, minlength=n_bins)[keep] / count[keep]
    rate = np.bincount(b, weights=np.asarray(y, np.float64), minlength=n_bins)[keep] / count[keep]
    return Reliability(
        mean_predicted=tuple(float(v) for v in mean_p),
        observed_rate=tuple(float(v) for v in rate),
        count=tuple(int(c) for c in count[keep]),
    )


# ------------------------------------------------------------------------- the check


def impression_fidelity(
    sim: Simulator,
    holdout: Logs,
    *,
    rng: np.random.Generator,
    gates: Gates | None = None,
    prepared: PreparedLogs | None = None,
    n_bootstrap: int = 200,
    n_splits: int = 30,
) -> ImpressionFidelity:
    """Click, continuation and watch-time fidelity of ``sim`` on held-out logs.

    Parameters
    ----------
    sim
        The simulator.
    holdout
        Held-out logs (users the simulator was not fitted on).
    rng
        Generator for the sampled watch times, the bootstrap and the noise-floor splits.
    gates
        Thresholds; ``Gates()`` when omitted.
    prepared
        The held-out logs already replayed with :func:`simkit.replay.replay_with` (saves a replay).
    n_bootstrap
        Bootstrap resamples of sessions behind each interval.
    n_splits
        Random half-splits behind each noise floor (at least 30: single splits vary a lot).

    Returns
    -------
    ImpressionFidelity

    Examples
    --------
    >>> fid = impression_fidelity(sim, holdout, rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> [m.key for m in fid.metrics][:2]                                        # doctest: +SKIP
    ['click_auc', 'click_log_loss']
    """
    gates = gates or Gates()
    watch_rng, boot_rng, split_rng = rng.spawn(3)
    prep = prepared if prepared is not None else replay_with(sim, holdout)
    r = prep.rows
    n_sessions = int(prep.session_codes.max()) + 1 if len(prep.session_codes) else 0
    y = r.clicked.astype(np.float64)
    p = sim.click.proba(r.x_click)
    w_sessions = session_weights(n_sessions, n_bootstrap, rng=boot_rng)
    out: list[Metric] = []

    def add(key, label, stat, session_of, *, threshold=None, direction="<=", **kw) -> None:
        value = float(stat(np.ones((1, len(session_of))))[0])
        boot = np.concatenate(
            [
                stat(w[:, session_of])
                for w in np.array_split(w_sessions, bootstrap_chunks(w_sessions, session_of))
            ]
        )
        lo, hi = percentile_interval(boot)
        out.append(
            Metric.gated(
                key=key,
                label=label,
                section="impression",
                value=value,
                ci_low=lo,
                ci_high=hi,
                threshold=threshold,
                direction=direction,
                **kw,
            )
        )

    base_rate = float(y.mean()) if len(y) else float("nan")
    add(
        "click_auc",
        "Click AUC (held-out impressions)",
        lambda w: weighted_auc(y, p, w),
        prep.session_codes,
        threshold=gates.click_auc_min,
        direction=">=",
    )
    base_ll = float(weighted_log_loss(y, np.full_like(p, base_rate), np.ones((1, len(y))))[0])
    add(
        "click_log_loss",
        "Click log loss",
        lambda w: weighted_log_loss(y, p, w),
        prep.session_codes,
        note=f"base-rate log loss {base_ll:.4f}",
    )
    add(
        "click_ece",
        "Click calibration error (ECE, 10 quantile bins)",
        lambda w: weighted_ece(y, p, w),
        prep.session_codes,
        threshold=gates.click_ece_max,
    )

    def absent(key: str, label: str, why: str) -> None:
        out.append(Metric(key=key, label=label, section="impression", value=np.nan, note=why))

    yc = r.continued.astype(np.float64)
    cont_rel = None
    if sim.cont is None:
        why = (
            "not measured: every session is one decision (the simulator has no continuation model)"
        )
        absent("continue_auc", "Continuation AUC (held-out steps)", why)
        absent("continue_ece", "Continuation calibration error (ECE)", why)
    else:
        pc = sim.cont.proba(r.x_continue)
        cont_rel = reliability(yc, pc)
        add(
            "continue_auc",
            "Continuation AUC (held-out steps)",
            lambda w: weighted_auc(yc, pc, w),
            r.session_of_step,
            threshold=gates.continue_auc_min,
            direction=">=",
        )
        add(
            "continue_ece",
            "Continuation calibration error (ECE)",
            lambda w: weighted_ece(yc, pc, w),
            r.session_of_step,
            threshold=gates.continue_ece_max,
        )

    hit = np.flatnonzero(r.clicked > 0)
    quantiles: dict[str, list[float]] = {}
    watch_label = "Watch time KS (sampled vs held-out, clicked rows)"
    if sim.watch is None:
        absent(
            "watch_ks",
            watch_label,
            "not measured: the simulator has no watch model (the logs have no dwell time)",
        )
    elif len(hit) < 2:
        absent("watch_ks", watch_label, f"not measured: {len(hit)} held-out clicks")
    else:
        sampled = sim.watch.sample(r.x_click[hit], prep.duration_of_row[hit], rng=watch_rng)
        real = r.watch[hit]
        sess = prep.session_codes[hit]
        floor, floor_sd = ks_noise_floor(real, sess, n_sessions, n_splits=n_splits, rng=split_rng)
        ks = float(stats.ks_2samp(sampled, real).statistic)
        boot = [
            weighted_ks(sampled, w[:, sess], real, w[:, sess])
            for w in np.array_split(w_sessions, bootstrap_chunks(w_sessions, sess))
        ]
        lo, hi = percentile_interval(np.concatenate(boot))
        out.append(
            Metric.gated(
                key="watch_ks",
                label="Watch time KS (sampled vs held-out, clicked rows)",
                section="impression",
                value=ks,
                ci_low=lo,
                ci_high=hi,
                noise_floor=floor,
                noise_floor_sd=floor_sd,
                threshold=floor + gates.ks_margin if np.isfinite(floor) else None,
                note=f"mean sampled {sampled.mean():.1f} s vs held-out {real.mean():.1f} s"
                + ("" if np.isfinite(floor) else "; no noise floor (too few sessions): not gated"),
            )
        )
        qs = np.linspace(0, 1, 101)
        quantiles = {
            "sim": np.quantile(sampled, qs).tolist(),
            "real": np.quantile(real, qs).tolist(),
        }
    return ImpressionFidelity(
        metrics=tuple(out),
        reliability=reliability(y, p),
        n_rows=len(y),
        n_sessions=n_sessions,
        click_rate=base_rate,
        continue_rate=float(yc.mean()) if len(yc) else float("nan"),
        watch_quantiles=quantiles,
        n_steps=len(yc),
        continue_reliability=cont_rel,
    )
