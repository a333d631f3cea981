"""Session-level fidelity: simulated sessions under the logging policy as the logs show it.

Every held-out session is simulated once, starting from the state replay would give it (the interest
of the user's *other* held-out sessions, :func:`simkit.replay.session_start_interest`). The items
are the logged ones, in the logged order (the logging policy as the logs show it); the responses,
the state transition (:func:`simkit.state.transition`) and the decision to go on come from the
simulator. When a simulated session outlives its logged one, further items are drawn from the
empirical distribution of the items logged for that user (all the user's held-out steps); the
global distribution was tried first and made simulated sessions too unpersonalised (a prototype's
fallback steps were clicked 12% less often than the replayed ones). Replaying logged items is biased when the logging policy
reacts to the responses (its later items were chosen after the *logged* clicks, not the simulated
ones), so this is a sanity check, not the detector of broken parts: the per-impression figures of
:mod:`.fidelity` are.

Four per-session distributions are compared with the held-out sessions: session length (steps),
total watch time, clicks and watch time per click (sessions with a click). Each KS distance comes
with its p-value, a bootstrap interval (held-out sessions resampled together with their simulated
twins), its noise floor (KS between two random halves of the held-out sessions, mean and spread
over ``n_splits`` splits) and the simulated and held-out means.

References
----------
.. [1] Massey. "The Kolmogorov-Smirnov test for goodness of fit." JASA 1951.
.. [2] Ie, Hsu, Mladenov et al. "RecSim: a configurable simulation platform for recommender
   systems." arXiv:1909.04847, 2019 (validating simulated sessions against logs).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from simkit.logs import Logs
from simkit.replay import (
    LogIndex,
    SessionStart,
    index_logs,
    replay,
    row_context,
    session_features,
    user_start_interest,
)
from simkit.session import Streams, step
from simkit.simulator import Simulator
from simkit.state import SessionState, initial_state
from simkit.validation.fidelity import (
    bootstrap_chunks,
    half_splits,
    percentile_interval,
    session_weights,
    weighted_ks,
)
from simkit.validation.gates import Gates, Metric

__all__ = [
    "DISTRIBUTIONS",
    "HeldoutSessions",
    "SessionFidelity",
    "SimulatedSessions",
    "heldout_sessions",
    "session_fidelity",
    "simulate_logged_sessions",
    "teacher_forced_states",
]

DISTRIBUTIONS = {
    "length": "Session length (steps)",
    "watch": "Total watch time per session (s)",
    "clicks": "Clicks per session",
    "watch_per_click": "Watch time per click (s, sessions with a click)",
}


@dataclass(frozen=True, kw_only=True)
class HeldoutSessions:
    """Held-out sessions as the simulator's state sees them (arrays over sessions or steps).

    Attributes
    ----------
    z0, hist_n, user_features
        Start state of each session from the user's other held-out sessions (per session).
    user_ids, user_of_session
        The users, and each session's user (code into ``user_ids``).
    user_z0, user_hist_n, user_features_by_user
        Start state of a *new* session of each user, from all the user's held-out sessions.
    step_offsets
        Session ``s`` owns steps ``step_offsets[s]:step_offsets[s + 1]`` of the per-step arrays.
    step_item
        Catalogue row per logged step (the first clicked item of a slate, else its first item).
    step_click, step_watch, step_propensity
        Per logged step: any click, total watch seconds, and the logged propensity of
        ``step_item`` (NaN when the logs have none).
    length, clicks, watch
        Logged steps, clicked rows and watch seconds per session.
    user_step_offsets, user_step_items
        The items of each user's held-out steps: user ``u`` owns
        ``user_step_items[user_step_offsets[u]:user_step_offsets[u + 1]]`` (the empirical item
        distribution of that user's logs).
    slates
        Whether some steps showed more than one item.
    index
        The log index the arrays come from (:func:`simkit.replay.index_logs`).
    context_index, step_context, row_context
        Positions of the ``ctx_`` columns in the state's user features, and their encoded logged
        value per step (its first row) and per row (None without ``ctx_`` columns).
    """

    z0: NDArray[np.float64]
    hist_n: NDArray[np.float64]
    user_features: NDArray[np.float32]
    user_ids: NDArray
    user_of_session: NDArray[np.int64]
    user_z0: NDArray[np.float64]
    user_hist_n: NDArray[np.float64]
    user_features_by_user: NDArray[np.float32]
    step_offsets: NDArray[np.int64]
    step_item: NDArray[np.int64]
    step_click: NDArray[np.int64]
    step_watch: NDArray[np.float64]
    step_propensity: NDArray[np.float64]
    length: NDArray[np.int64]
    clicks: NDArray[np.float64]
    watch: NDArray[np.float64]
    user_step_offsets: NDArray[np.int64]
    user_step_items: NDArray[np.int64]
    slates: bool
    index: LogIndex
    context_index: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    step_context: NDArray[np.float32] | None = None
    row_context: NDArray[np.float32] | None = None

    @property
    def n_sessions(self) -> int:
        """Number of held-out sessions."""
        return len(self.length)

    def start_state(self, sessions: NDArray[np.int64], n_items: int) -> SessionState:
        """Fresh simkit state of the given held-out sessions (replay's start)."""
        return initial_state(
            self.z0[sessions], self.hist_n[sessions], self.user_features[sessions], n_items
        )

    def fallback_items(
        self, sessions: NDArray[np.int64], *, rng: np.random.Generator
    ) -> NDArray[np.int64]:
        """One item per given session, drawn from its user's held-out items (with replacement)."""
        user = self.user_of_session[sessions]
        start = self.user_step_offsets[user]
        size = self.user_step_offsets[user + 1] - start
        return self.user_step_items[start + (rng.random(len(user)) * size).astype(np.int64)]

    def new_session_state(self, users: NDArray[np.int64], n_items: int) -> SessionState:
        """Fresh simkit state of a new session of each given user (code into ``user_ids``)."""
        return initial_state(
            self.user_z0[users],
            self.user_hist_n[users],
            self.user_features_by_user[users],
            n_items,
        )


def heldout_sessions(sim: Simulator, logs: Logs) -> HeldoutSessions:
    """Per-session and per-step arrays of held-out logs, in the simulator's catalogue rows.

    Parameters
    ----------
    sim
        The simulator (catalogue, embedding, user columns and the state's dynamics).
    logs
        Held-out logs.

    Returns
    -------
    HeldoutSessions
    """
    frame = logs.frame
    index = index_logs(frame, sim.catalogue)
    n_users = len(index.user_ids)
    # start interest: a session from the user's other sessions; a new session from all of them
    start, by_user = user_start_interest(index, sim.catalogue, sim.dynamics)
    ufeat = session_features(frame, index.session_first_row, sim.spec.user_columns, sim.categories)
    ctx_idx, ctx_rows = row_context(frame, sim.spec.user_columns, sim.categories)
    step_propensity = (
        frame["propensity"].to_numpy(dtype=np.float64)[index.step_row]
        if logs.has_propensity
        else np.full(index.n_steps, np.nan)
    )
    first_session_of_user = np.unique(index.user_of_session, return_index=True)[1]
    user_of_step = index.user_of_session[index.session_of_step]
    by_user_order = np.argsort(user_of_step, kind="stable")
    user_step_len = np.bincount(user_of_step, minlength=n_users)
    n_sessions = index.n_sessions
    return HeldoutSessions(
        z0=start.z0,
        hist_n=start.hist_n,
        user_features=ufeat,
        user_ids=index.user_ids,
        user_of_session=index.user_of_session,
        user_z0=by_user.z0,
        user_hist_n=by_user.hist_n,
        user_features_by_user=ufeat[first_session_of_user],
        step_offsets=index.session_first_step,
        step_item=index.step_item,
        step_click=index.step_click,
        step_watch=index.step_watch,
        step_propensity=step_propensity,
        length=index.session_length,
        clicks=np.bincount(
            index.session_of_row, weights=index.clicked, minlength=n_sessions
        ).astype(np.float64),
        watch=np.bincount(index.session_of_row, weights=index.watch, minlength=n_sessions).astype(
            np.float64
        ),
        user_step_offsets=np.r_[0, np.cumsum(user_step_len)].astype(np.int64),
        user_step_items=index.step_item[by_user_order],
        slates=index.slates,
        index=index,
        context_index=ctx_idx,
        step_context=None if ctx_rows is None else ctx_rows[index.step_first_row],
        row_context=ctx_rows,
    )


def teacher_forced_states(
    sim: Simulator, held: HeldoutSessions, steps: NDArray[np.int64]
) -> SessionState:
    """The simkit state before each given logged step, the logged responses driving the state.

    A call of :func:`simkit.replay.replay` with ``capture``; ``shown`` counts every item the
    session showed before the step (every slot of earlier slates).

    Parameters
    ----------
    sim
        The simulator (catalogue and dynamics).
    held
        From :func:`heldout_sessions`.
    steps
        Indices into the per-step arrays of ``held``.

    Returns
    -------
    SessionState
        The states before ``steps``, in that order.
    """
    start = SessionStart(held.z0, held.hist_n, held.user_of_session)
    _, states = replay(
        held.index,
        sim.catalogue,
        start,
        held.user_features,
        sim.dynamics,
        capture=np.asarray(steps, dtype=np.int64),
        context=(held.context_index, held.row_context),
    )
    assert states is not None
    return states


@dataclass(frozen=True, kw_only=True)
class SimulatedSessions:
    """Per-session totals of simulated sessions, one per held-out session (same order)."""

    length: NDArray[np.int64]
    clicks: NDArray[np.float64]
    watch: NDArray[np.float64]
    fallback_steps: int
    outlived: int
    truncated: int
    max_steps: int


def simulate_logged_sessions(
    sim: Simulator,
    held: HeldoutSessions,
    *,
    rng: np.random.Generator,
    max_steps: int | None = None,
) -> SimulatedSessions:
    """Simulate every held-out session with its logged items (see the module docstring).

    Parameters
    ----------
    sim
        The simulator.
    held
        From :func:`heldout_sessions`.
    rng
        Generator; fallback items, responses and continuation draw from their own streams.
    max_steps
        Truncation of a simulated session; default twice the longest held-out session, at least 200.

    Returns
    -------
    SimulatedSessions
    """
    item_rng, response_rng, cont_rng = rng.spawn(3)
    # clicks, then watch times, draw from one stream, as the sampled responses always did
    streams = Streams(
        users=item_rng, candidates=item_rng, click=response_rng, watch=response_rng, leave=cont_rng
    )
    n = held.n_sessions
    if max_steps is None:
        max_steps = max(200, 2 * int(held.length.max(initial=1)))
    if held.slates:
        return _simulate_slates(sim, held, streams, item_rng, max_steps)
    alive = np.arange(n)
    state = held.start_state(alive, sim.n_items)
    length = np.zeros(n, np.int64)
    clicks = np.zeros(n)
    watch = np.zeros(n)
    fallback = 0
    for t in range(max_steps):
        if len(alive) == 0:
            break
        logged = t < held.length[alive]
        items = np.empty(len(alive), np.int64)
        items[logged] = held.step_item[held.step_offsets[alive[logged]] + t]
        if not logged.all():
            items[~logged] = held.fallback_items(alive[~logged], rng=item_rng)
            fallback += int((~logged).sum())
        _set_context(sim, held, state, alive, logged, t, item_rng)
        result = step(sim, state, items, streams=streams)
        length[alive] += 1
        clicks[alive] += result.click[:, 0]
        watch[alive] += result.watch[:, 0]
        keep = np.flatnonzero(~result.terminated)
        alive = alive[keep]
        state = state.take(keep)
    return SimulatedSessions(
        length=length,
        clicks=clicks,
        watch=watch,
        fallback_steps=fallback,
        outlived=int((length > held.length).sum()),
        truncated=len(alive),
        max_steps=max_steps,
    )


def _set_context(
    sim: Simulator,
    held: HeldoutSessions,
    state: SessionState,
    alive: NDArray[np.int64],
    logged: NDArray[np.bool_],
    t: int,
    rng: np.random.Generator,
) -> None:
    """The context of step ``t``: the logged one, else drawn from the simulator's context model."""
    if held.step_context is None:
        return
    idx = held.context_index
    rows = np.flatnonzero(logged)
    st = held.step_offsets[alive[rows]] + t
    state.user_features[np.ix_(rows, idx)] = held.step_context[st]
    if sim.context is not None and not logged.all():
        sim.context.draw(state, np.flatnonzero(~logged), rng=rng)


def _simulate_slates(
    sim: Simulator,
    held: HeldoutSessions,
    streams: Streams,
    item_rng: np.random.Generator,
    max_steps: int,
) -> SimulatedSessions:
    """Logged slates shown as slates: each step shows its logged slate at the logged positions.

    The click model saw the logged positions, so its probabilities are per-slot marginals: a
    slate is clicked by ``simkit.session.step``'s rule ``"one"`` (at most one click, when the
    training logs never had more in a slate) or ``"independent"``. Slates of different sizes are
    stepped in groups of one size. A simulated session that outlives its logged one shows a
    random logged slate of the same user (with its positions).
    """
    idx = held.index
    n = held.n_sessions
    rule = str(sim.config.get("slate_clicks", "independent"))
    step_end = np.r_[idx.step_first_row[1:], idx.n_rows]
    step_size = step_end - idx.step_first_row
    user_steps = np.argsort(idx.user_of_session[idx.session_of_step], kind="stable")
    alive = np.arange(n)
    state = held.start_state(alive, sim.n_items)
    length = np.zeros(n, np.int64)
    clicks = np.zeros(n)
    watch = np.zeros(n)
    fallback = 0
    for t in range(max_steps):
        if len(alive) == 0:
            break
        logged = t < held.length[alive]
        st = np.empty(len(alive), np.int64)
        st[logged] = held.step_offsets[alive[logged]] + t
        if not logged.all():
            user = held.user_of_session[alive[~logged]]
            lo = held.user_step_offsets[user]
            size = held.user_step_offsets[user + 1] - lo
            pick = lo + (item_rng.random(len(user)) * size).astype(np.int64)
            st[~logged] = user_steps[pick]
            fallback += int((~logged).sum())
        _set_context(sim, held, state, alive, logged, t, item_rng)
        terminated = np.zeros(len(alive), dtype=bool)
        sizes = step_size[st]
        for k in np.unique(sizes):
            group = np.flatnonzero(sizes == k)
            rows = idx.step_first_row[st[group]][:, None] + np.arange(k)
            sub = state.take(group)
            result = step(
                sim,
                sub,
                idx.item_rows[rows],
                streams=streams,
                position=idx.position[rows],
                position_bias=sim.position_bias if k > 1 and rule == "cascade" else None,
                click_rule=rule if k > 1 else "cascade",
            )
            state.put(group, sub)
            clicks[alive[group]] += result.click.sum(axis=1)
            watch[alive[group]] += result.watch.sum(axis=1)
            terminated[group] = result.terminated
        length[alive] += 1
        keep = np.flatnonzero(~terminated)
        alive = alive[keep]
        state = state.take(keep)
    return SimulatedSessions(
        length=length,
        clicks=clicks,
        watch=watch,
        fallback_steps=fallback,
        outlived=int((length > held.length).sum()),
        truncated=len(alive),
        max_steps=max_steps,
    )


@dataclass(frozen=True, kw_only=True)
class SessionFidelity:
    """Session-level figures (see :func:`session_fidelity`)."""

    metrics: tuple[Metric, ...]
    ecdf: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    driving: str = ""
    n_sessions: int = 0


def _values(length: NDArray, clicks: NDArray, watch: NDArray) -> dict[str, NDArray]:
    """The compared per-session values (:data:`DISTRIBUTIONS`); watch per click is NaN without a click.

    Examples
    --------
    >>> v = _values(np.array([3, 1]), np.array([2.0, 0.0]), np.array([50.0, 0.0]))
    >>> v["watch_per_click"].tolist()
    [25.0, nan]
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        per_click = np.where(clicks > 0, watch / np.maximum(clicks, 1), np.nan)
    return {
        "length": length.astype(np.float64),
        "watch": watch,
        "clicks": clicks.astype(np.float64),
        "watch_per_click": per_click,
    }


def session_fidelity(
    sim: Simulator,
    holdout: Logs,
    *,
    rng: np.random.Generator,
    gates: Gates | None = None,
    held: HeldoutSessions | None = None,
    n_bootstrap: int = 200,
    n_splits: int = 30,
    max_steps: int | None = None,
) -> SessionFidelity:
    """Compare simulated sessions under the logged items with the held-out sessions.

    Parameters
    ----------
    sim
        The simulator.
    holdout
        Held-out logs.
    rng
        Generator for the simulation, the bootstrap and the noise-floor splits.
    gates
        Thresholds (``ks_margin``, ``session_mean_tolerance``); ``Gates()`` when omitted.
    held
        :func:`heldout_sessions` of ``holdout``, when already computed.
    n_bootstrap
        Bootstrap resamples of sessions behind each interval.
    n_splits
        Random half-splits behind each noise floor (at least 30).
    max_steps
        Truncation of simulated sessions (see :func:`simulate_logged_sessions`).

    Returns
    -------
    SessionFidelity
        A KS metric and a mean metric per distribution, the ECDF quantiles for the plots, and the
        sentence saying how the sessions were driven.

    Examples
    --------
    >>> res = session_fidelity(sim, holdout, rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> [m.key for m in res.metrics][:2]                                     # doctest: +SKIP
    ['session_ks.length', 'session_mean.length']
    """
    gates = gates or Gates()
    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2; got {n_splits}")
    sim_rng, boot_rng, split_rng = rng.spawn(3)
    held = held if held is not None else heldout_sessions(sim, holdout)
    simulated = simulate_logged_sessions(sim, held, rng=sim_rng, max_steps=max_steps)
    n = held.n_sessions
    real = _values(held.length, held.clicks, held.watch)
    fake = _values(simulated.length, simulated.clicks, simulated.watch)
    w_boot = session_weights(n, n_bootstrap, rng=boot_rng)
    halves = half_splits(n, n_splits, rng=split_rng)
    metrics: list[Metric] = []
    ecdf: dict[str, dict[str, list[float]]] = {}
    qs = np.linspace(0, 1, 101)
    skip: dict[str, str] = {}
    if sim.watch is None:
        why = "not measured: the simulator has no watch model (the logs have no dwell time)"
        skip.update(watch=why, watch_per_click=why)
    if sim.cont is None:
        skip["length"] = (
            "not measured: every session is one decision (the simulator has no continuation model)"
        )
    for key, label in DISTRIBUTIONS.items():
        if key in skip:
            metrics.append(
                Metric(
                    key=f"session_ks.{key}",
                    label=f"KS: {label}",
                    section="session",
                    value=np.nan,
                    note=skip[key],
                )
            )
            continue
        ir = np.flatnonzero(np.isfinite(real[key]))
        is_ = np.flatnonzero(np.isfinite(fake[key]))
        a, b = fake[key][is_], real[key][ir]
        if len(a) < 2 or len(b) < 2:
            metrics.append(
                Metric(key=f"session_ks.{key}", label=label, section="session", value=np.nan)
            )
            continue
        with warnings.catch_warnings():  # many ties: scipy falls back to the asymptotic p-value
            warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful")
            test = stats.ks_2samp(a, b)
        chunks = np.array_split(w_boot, bootstrap_chunks(w_boot, np.r_[ir, is_]))
        boot = np.concatenate([weighted_ks(a, w[:, is_], b, w[:, ir]) for w in chunks])
        lo, hi = percentile_interval(boot)
        floor = weighted_ks(b, halves[:, ir], b, 1.0 - halves[:, ir])
        f_mean, f_sd = float(floor.mean()), float(floor.std(ddof=1))
        metrics.append(
            Metric.gated(
                key=f"session_ks.{key}",
                label=f"KS: {label}",
                section="session",
                value=float(test.statistic),
                ci_low=lo,
                ci_high=hi,
                noise_floor=f_mean,
                noise_floor_sd=f_sd,
                threshold=f_mean + gates.ks_margin if np.isfinite(f_mean) else None,
                note=f"p-value {test.pvalue:.3g}; simulated mean {a.mean():.4g}, "
                f"held-out mean {b.mean():.4g}",
            )
        )
        real_mean = float(b.mean())
        rel = float(a.mean() / real_mean - 1.0) if real_mean else float("nan")
        with np.errstate(divide="ignore", invalid="ignore"):  # resamples without the values
            ma = (w_boot[:, is_] @ a) / w_boot[:, is_].sum(axis=1)
            mb = (w_boot[:, ir] @ b) / w_boot[:, ir].sum(axis=1)
            lo, hi = percentile_interval(ma / mb - 1.0)
        metrics.append(
            Metric(
                key=f"session_mean.{key}",
                label=f"Relative difference of means: {label}",
                section="session",
                value=rel,
                ci_low=lo,
                ci_high=hi,
                threshold=gates.session_mean_tolerance,
                direction="<=",
                passed=bool(abs(rel) <= gates.session_mean_tolerance) if np.isfinite(rel) else None,
                note=f"simulated {a.mean():.4g} vs held-out {real_mean:.4g} (|difference| gated)",
            )
        )
        ecdf[key] = {"sim": np.quantile(a, qs).tolist(), "real": np.quantile(b, qs).tolist()}
    total_steps = int(simulated.length.sum())
    driving = (
        f"Each of the {n:,} held-out sessions was simulated once from its user's start state "
        "(interest from the user's other held-out sessions), showing the logged items in the "
        "logged order (the logging policy as the logs show it); responses and leaving came from "
        f"the simulator. {simulated.outlived:,} simulated sessions "
        f"({simulated.outlived / max(n, 1):.1%}) outlived their logged session; their further "
        f"{simulated.fallback_steps:,} steps ({simulated.fallback_steps / max(total_steps, 1):.1%}"
        " of all simulated steps) showed items drawn from the empirical distribution of the "
        "items logged for that user in the held-out logs. Replaying logged items is biased when the logging policy reacts to clicks, "
        "so these figures are a sanity check; the per-impression figures detect broken models."
    )
    if simulated.truncated:
        driving += (
            f" {simulated.truncated:,} simulated sessions were cut at {simulated.max_steps} steps."
        )
    if held.slates:
        rule = sim.config.get("slate_clicks", "independent")
        driving += " Each logged slate was shown as a slate, at its logged positions; " + (
            "at most one item of a slate was clicked (as in the training logs)."
            if rule == "one"
            else "each slot was clicked on its own."
        )
    if sim.context is not None:
        driving += (
            " Logged steps kept their logged context (ctx_ columns); for further steps "
            + sim.context.description
            + "."
        )
    return SessionFidelity(metrics=tuple(metrics), ecdf=ecdf, driving=driving, n_sessions=n)
