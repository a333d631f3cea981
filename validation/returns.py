"""Return-time fidelity: the simulator's gaps between sessions against held-out users.

Two figures, added to the session section of the report when the simulator has a return-time
model (:class:`simkit.returns.ReturnModel`):

- **return gap**: for every held-out session, a gap is drawn from the model at the session's end
  (the logs replayed causally by :func:`simkit.returns.timed_sessions`) and censored where the
  held-out one is, at the end of the log; the KS distance between these and the held-out
  ``min(gap, time left in the log)`` is shown beside its noise floor (KS between two random halves
  of the held-out users), and the mean of both (the mean gap restricted to the log) is compared;
- **sessions per user over the log's span**: each held-out user is simulated from the start of its
  first logged session to the end of the log (a record that began with the log, the logging-policy
  model choosing among uniform candidates, :func:`simkit.returns.run_days`) and the mean number of
  sessions is compared with the held-out one.

Comparing censored values with equally censored values keeps the KS honest without a survival
estimate of the held-out gaps (Kaplan & Meier 1958 would be needed for the uncensored law).

References
----------
.. [1] Massey. "The Kolmogorov-Smirnov test for goodness of fit." JASA 1951.
.. [2] Kaplan, Meier. "Nonparametric estimation from incomplete observations." JASA 1958.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from simkit.logs import Logs
from simkit.returns import ReturnModel, run_days, timed_sessions
from simkit.simulator import Simulator, UserBatch
from simkit.validation.fidelity import percentile_interval
from simkit.validation.gates import Gates, Metric
from simkit.validation.policies import Policy, PolicyContext, choose

__all__ = ["return_fidelity"]


def _ks(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(stats.ks_2samp(a, b).statistic)


def return_fidelity(
    sim: Simulator,
    holdout: Logs,
    policy: Policy,
    *,
    rng: np.random.Generator,
    gates: Gates | None = None,
    n_splits: int = 30,
    n_bootstrap: int = 200,
    n_candidates: int = 20,
) -> tuple[Metric, ...]:
    """Return-gap KS and mean, and sessions per user over the log's span (section ``session``).

    Parameters
    ----------
    sim
        A simulator with a return-time model (``sim.extras["return"]``).
    holdout
        Held-out logs with timestamps (users the simulator was not fitted on).
    policy
        The policy that runs the simulated users (the logging-policy model).
    rng
        Generator of the sampled gaps, the simulation and the splits.
    gates
        ``ks_margin`` and ``session_mean_tolerance``; ``Gates()`` when omitted.
    n_splits, n_bootstrap
        Half-splits behind the noise floor; resamples behind the intervals.
    n_candidates
        Uniform candidates per simulated step.

    Returns
    -------
    tuple of Metric
        ``return_ks.gap``, ``return_mean.gap`` and ``return_mean.sessions_per_user``.

    Raises
    ------
    simkit.returns.NoReturnModelError
        When the simulator has no return model or the logs have no timestamps.
    """
    from simkit.returns import return_model_of

    gates = gates or Gates()
    model: ReturnModel = return_model_of(sim, "the return-time figures")
    gap_rng, split_rng, sim_rng, choice_rng, boot_rng = rng.spawn(5)
    ts = timed_sessions(holdout, sim)
    real = ts.observed_hours
    fake = np.minimum(model.sample(ts.x, rng=gap_rng), ts.censor_hours)
    n_users = len(ts.user_ids)
    floors = []
    for _ in range(n_splits):
        half = split_rng.random(n_users) < 0.5
        side = half[ts.user]
        if side.all() or not side.any():
            continue
        floors.append(_ks(real[side], real[~side]))
    floor = np.asarray(floors) if floors else np.array([np.nan])
    boot = []
    for _ in range(n_bootstrap):
        pick = boot_rng.integers(n_users, size=n_users)
        w = np.bincount(pick, minlength=n_users)[ts.user]
        rows = np.repeat(np.arange(len(real)), w)
        boot.append((_ks(fake[rows], real[rows]), fake[rows].mean() / real[rows].mean() - 1.0))
    boot_arr = np.asarray(boot)
    ks = _ks(fake, real)
    lo, hi = percentile_interval(boot_arr[:, 0])
    metrics = [
        Metric.gated(
            key="return_ks.gap",
            label="KS: return gap (hours, censored at the end of the log as the held-out ones)",
            section="session",
            value=ks,
            ci_low=lo,
            ci_high=hi,
            noise_floor=float(floor.mean()),
            noise_floor_sd=float(floor.std(ddof=1)) if len(floor) > 1 else float("nan"),
            threshold=float(floor.mean()) + gates.ks_margin,
            note=f"{len(real):,} held-out sessions of {n_users:,} users, "
            f"{int(ts.censored.sum()):,} censored",
        )
    ]
    rel = float(fake.mean() / real.mean() - 1.0)
    lo, hi = percentile_interval(boot_arr[:, 1])
    metrics.append(_relative(
        "return_mean.gap", "Relative difference of means: return gap within the log (hours)",
        rel, lo, hi, gates, f"simulated {fake.mean():.4g} vs held-out {real.mean():.4g}",
    ))  # fmt: skip

    first = np.full(n_users, np.inf)
    np.minimum.at(first, ts.user, ts.start_hours)
    starts = first
    users = _new_users(sim, holdout, ts, n_users)
    days = ts.span_hours / 24.0

    def chooser(state, cands):  # type: ignore[no-untyped-def]
        return choose(policy, PolicyContext(sim, state, cands), rng=choice_rng)

    simulated = run_days(
        sim, chooser, users, days=days, rng=sim_rng, n_candidates=n_candidates,
        start_hours=starts,
    )  # fmt: skip
    real_n = ts.sessions_per_user.astype(np.float64)
    fake_n = simulated.sessions.astype(np.float64)
    ratios = []
    for _ in range(n_bootstrap):
        pick = boot_rng.integers(n_users, size=n_users)
        ratios.append(fake_n[pick].mean() / real_n[pick].mean() - 1.0)
    lo, hi = percentile_interval(np.asarray(ratios))
    metrics.append(_relative(
        "return_mean.sessions_per_user",
        f"Relative difference of means: sessions per user over the log's {days:.3g} days",
        float(fake_n.mean() / real_n.mean() - 1.0), lo, hi, gates,
        f"simulated {fake_n.mean():.4g} vs held-out {real_n.mean():.4g} "
        f"({policy.name} policy, users from their first logged session)",
    ))  # fmt: skip
    return tuple(metrics)


def _relative(
    key: str, label: str, rel: float, lo: float, hi: float, gates: Gates, note: str
) -> Metric:
    tol = gates.session_mean_tolerance
    return Metric(
        key=key,
        label=label,
        section="session",
        value=rel,
        ci_low=lo,
        ci_high=hi,
        threshold=tol,
        direction="<=",
        passed=bool(abs(rel) <= tol) if np.isfinite(rel) else None,
        note=note + " (|difference| gated)",
    )


def _new_users(sim: Simulator, holdout: Logs, ts, n_users: int) -> UserBatch:  # type: ignore[no-untyped-def]
    """Held-out users as new users: the population's mean interest, their own user features."""
    from simkit.replay import index_logs, session_features

    index = index_logs(holdout.frame, sim.catalogue)
    first = np.unique(index.user_of_session, return_index=True)[1]
    feats = session_features(
        holdout.frame, index.session_first_row[first], sim.spec.user_columns, sim.categories
    )
    return UserBatch(
        rows=np.full(n_users, -1, np.int64),
        z0=np.tile(sim.dynamics.prior, (n_users, 1)),
        hist_n=np.zeros(n_users),
        features=feats,
    )
