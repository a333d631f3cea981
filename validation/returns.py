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

:func:`run_days_in_world` runs any policy (an agent through :class:`simkit.agents.policy.AgentPolicy`)
in the synthetic world over days, simkit's state kept alongside the world's across sessions: the
true retention of a policy trained in ``simkit/Retention-v0``.

Comparing censored values with equally censored values keeps the KS honest without a survival
estimate of the held-out gaps (Kaplan & Meier 1958 would be needed for the uncensored law).

References
----------
.. [1] Massey. "The Kolmogorov-Smirnov test for goodness of fit." JASA 1951.
.. [2] Kaplan, Meier. "Nonparametric estimation from incomplete observations." JASA 1958.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from simkit.candidates import uniform_candidates
from simkit.logs import Logs
from simkit.returns import ReturnModel, run_days, timed_sessions
from simkit.session import advance
from simkit.simulator import Simulator, UserBatch
from simkit.state import UserHistory, between_sessions, record_clicks
from simkit.validation.fidelity import percentile_interval
from simkit.validation.gates import Gates, Metric
from simkit.validation.policies import Policy, PolicyContext, choose

if TYPE_CHECKING:
    from simkit.synthetic import World
    from simkit.synthetic_time import RetentionValue

__all__ = ["return_fidelity", "run_days_in_world"]


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


def run_days_in_world(
    world: World,
    sim: Simulator,
    policy: Policy,
    world_users: NDArray[np.int64],
    sim_users: UserBatch,
    *,
    days: float,
    rng: np.random.Generator,
    n_candidates: int = 20,
) -> RetentionValue:
    """Run ``policy`` in the synthetic world over days, keeping simkit's state alongside the world's.

    The world's users (``world_users``, distinct 0-based rows) live their sessions and return gaps
    by the world's own return process (:func:`simkit.synthetic_time.run_timeline`, all users start
    a session at hour 0). simkit's state of each user (``sim_users``, aligned) moves with the
    world's responses (:func:`simkit.session.advance`), and between two sessions by
    :func:`simkit.state.between_sessions` with the gap the world took, exactly as in
    ``simkit/Retention-v0``; the policy sees that state and ``n_candidates`` uniform candidates,
    as in the env, so an agent trained in the simulator acts in the world on what it would see.

    Returns
    -------
    simkit.synthetic_time.RetentionValue
        The world's per-user and per-session figures (true sessions, gaps, watch).

    Raises
    ------
    ValueError
        When ``world_users`` repeat or do not align with ``sim_users``.
    """
    from simkit.synthetic_time import retention_value, run_timeline
    from simkit.threads import blas_threads

    world_users = np.asarray(world_users, dtype=np.int64)
    n = len(world_users)
    if len(np.unique(world_users)) != n or len(sim_users.rows) != n:
        raise ValueError(
            f"run_days_in_world needs distinct world users aligned with sim_users; got {n} world "
            f"users ({n - len(np.unique(world_users))} repeated) and {len(sim_users.rows)} "
            "simulator users."
        )
    cand_rng, choice_rng, response_rng, time_rng, gap_rng = rng.spawn(5)
    cat = sim.catalogue
    slot_of = np.full(world.config.n_users, -1, np.int64)
    slot_of[world_users] = np.arange(n)
    rows_of_world = cat.rows(world.item_ids)
    state = sim.initial_state(sim_users)
    hist = UserHistory.empty(n, cat.dim, cat.features.shape[1])
    k, m = sim.dynamics.shrinkage, sim.dynamics.prior
    hist.n_clicks[:] = np.expm1(sim_users.hist_n)
    hist.click_sum[:] = sim_users.z0 * (hist.n_clicks + k)[:, None] - k * m
    begun = np.zeros(n, dtype=bool)
    pending = np.zeros(n, dtype=bool)  # a later session whose gap is not in the record yet
    first_s, last_s = np.zeros(n), np.zeros(n)  # first and latest impression of the session
    served: dict[str, Any] = {}

    def chooser(wstate: Any) -> tuple[NDArray[np.int64], None]:
        slots = slot_of[wstate.user]
        again = slots[(wstate.step == 0) & begun[slots]]
        if len(again):  # the gap is added when its first impression is recorded
            sub = hist.take(again)
            nxt = between_sessions(
                state.take(again), sub, np.zeros(len(again)),
                (last_s[again] - first_s[again]) / 3600.0, dynamics=sim.dynamics,
                n_items=sim.n_items,
            )  # fmt: skip
            hist.put(again, sub)
            state.put(again, nxt)
            pending[again] = True
        begun[slots] = True
        cands = rows_of_world[
            uniform_candidates(len(slots), len(world.item_ids), n_candidates, rng=cand_rng)
        ]
        sub_state = state.take(slots)
        idx = choose(policy, PolicyContext(sim, sub_state, cands), rng=choice_rng)
        items = cands[np.arange(len(slots)), idx]
        served.update(slots=slots, state=sub_state, items=items)
        return world_rows_of_sim[items], None

    world_rows_of_sim = np.full(sim.n_items + 1, -1, np.int64)
    world_rows_of_sim[rows_of_world] = np.arange(len(world.item_ids))

    def record(session, step, items, click, watch, prop, p_click, p_cont, seconds) -> None:  # type: ignore[no-untyped-def]
        slots, sub_state = served["slots"], served["state"]
        opened = pending[slots] & (step == 0)
        later = slots[opened]
        if len(later):
            gap = (seconds[opened] - last_s[later]) / 3600.0
            hist.hours[later] += gap
            hist.gap_log_sum[later] += np.log1p(gap)
            hist.last_log_gap[later] = np.log1p(gap)
            pending[later] = False
        new = step == 0
        first_s[slots[new]] = seconds[new]
        last_s[slots] = seconds
        advance(sub_state, sim, served["items"][:, None], click[:, None], watch[:, None])
        state.put(slots, sub_state)
        record_clicks(hist, cat, slots, served["items"], click)

    with blas_threads(1):
        sessions = run_timeline(
            world, world_users, np.zeros(n), days * 24.0, chooser,
            streams=(response_rng, time_rng, gap_rng), record=record,
        )  # fmt: skip
    return retention_value(world_users, sessions, days=days)
