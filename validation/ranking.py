"""Policy-ranking check: does the simulator order and value policies as the reference does?

A set of policies (:mod:`.policies`) runs in the simulator for sessions of the held-out users and
the same policies are valued by a reference:

- the ground-truth world, when the logs are synthetic (``world=``): each policy runs in the world
  itself, from the same users, with simkit's state kept alongside the true one;
- otherwise, with logged propensities, off-policy estimates from the held-out logs
  (:mod:`.ope`): the reference is the per-decision value (watch time, clicks per decision) of each
  policy at the logged states, by SNIPS (or the first of the estimators passed in), and the
  simulator's figure is its own per-decision value at the same states (the direct method with the
  simulator's models). Estimates without enough overlap are withheld (and the policy leaves the
  comparison).

Figures, for session watch time and clicks per session (per decision under OPE): the share of
*clearly different* pairs (reference values more than ``Gates.clear_pair_gap`` apart, relative to
the larger, and more than two standard errors of their difference, which matters for noisy
off-policy references) that the simulator orders the same way; Kendall's tau; Spearman's rho (reported, never
gated: over near-ties it measures noise); the relative value error of every policy with a bootstrap
interval; the mean and the largest absolute relative error; and the logging-policy model's error.

References
----------
.. [1] Kendall. "A new measure of rank correlation." Biometrika 1938.
.. [2] Swaminathan, Joachims. "The self-normalized estimator for counterfactual learning."
   NeurIPS 2015 (SNIPS).
.. [3] Dudík, Langford, Li. "Doubly robust policy evaluation and learning." ICML 2011 (DM).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from simkit.errors import ConfigError
from simkit.simulator import Simulator
from simkit.validation.fidelity import percentile_interval
from simkit.validation.gates import Gates, Metric
from simkit.validation.ope import Estimate, snips
from simkit.validation.ope_sequential import pdis
from simkit.validation.policies import (
    LoggingPolicyModel,
    Policy,
    PolicyContext,
    SessionValues,
    run_in_simulator,
    run_in_world,
)
from simkit.validation.sessions import HeldoutSessions, teacher_forced_states

if TYPE_CHECKING:
    from simkit.synthetic import World

__all__ = [
    "DEFAULT_ESTIMATORS",
    "DEFAULT_SESSION_ESTIMATORS",
    "DecisionEstimator",
    "PolicyResult",
    "RankingResult",
    "SessionEstimator",
    "ope_reference",
    "policy_ranking",
    "ranking_metrics",
    "target_proba",
]

#: A per-decision off-policy estimator: ``f(reward, target_proba_of_logged, logged_propensity, *,
#: rng, n_bootstrap) -> Estimate``, e.g. :func:`~simkit.validation.ope.snips` or ``ips``.
DecisionEstimator = Callable[..., Estimate]
#: A session estimator: ``f(reward, target_proba_of_logged, logged_propensity, session_id, *, step,
#: rng, n_bootstrap) -> Estimate``, e.g. :func:`~simkit.validation.ope_sequential.pdis`.
SessionEstimator = Callable[..., Estimate]
#: The per-decision reference of the ranking under OPE (the first one is the reference).
DEFAULT_ESTIMATORS: tuple[DecisionEstimator, ...] = (snips,)
#: Whole-session estimates shown beside each policy under OPE, never gated.
DEFAULT_SESSION_ESTIMATORS: tuple[SessionEstimator, ...] = (pdis,)

VALUES = {"watch": "session watch time", "clicks": "clicks per session"}


@dataclass(frozen=True, kw_only=True)
class PolicyResult:
    """One policy's simulated and reference values (means) with the relative errors.

    ``sim``, ``ref``: value kind (``"watch"``, ``"clicks"``, ``"length"``) -> mean; ``ref_se``
    their standard errors; ``rel_error`` -> ``(value, ci_low, ci_high)`` of ``sim / ref - 1``;
    ``withheld`` says why a reference value is missing (e.g. not enough overlap);
    ``session_ope`` is the per-decision IS estimate of the session watch time under OPE, or the
    reason it is withheld.
    """

    name: str
    sim: dict[str, float]
    sim_se: dict[str, float]
    ref: dict[str, float]
    ref_se: dict[str, float]
    rel_error: dict[str, tuple[float, float, float]]
    is_logging_model: bool = False
    withheld: str = ""
    session_ope: str = ""


@dataclass(frozen=True, kw_only=True)
class RankingResult:
    """The ranking check: per-policy values and the summary figures."""

    reference: str
    policies: tuple[PolicyResult, ...]
    metrics: tuple[Metric, ...]
    n_sessions: int
    n_candidates: int
    note: str = ""


def _se(x: NDArray[np.float64]) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _boot_means(x: NDArray[np.float64], n_bootstrap: int, rng: np.random.Generator) -> NDArray:
    idx = rng.integers(len(x), size=(n_bootstrap, len(x)))
    return x[idx].mean(axis=1)


def _result(
    name: str,
    sim: SessionValues,
    ref: SessionValues,
    *,
    n_bootstrap: int,
    rng: np.random.Generator,
    is_logging: bool,
) -> PolicyResult:
    out_sim, out_sim_se, out_ref, out_ref_se, rel = {}, {}, {}, {}, {}
    for kind in ("watch", "clicks", "length"):
        a, b = getattr(sim, kind), getattr(ref, kind)
        out_sim[kind], out_sim_se[kind] = float(a.mean()), _se(a)
        out_ref[kind], out_ref_se[kind] = float(b.mean()), _se(b)
        with np.errstate(divide="ignore", invalid="ignore"):
            point = out_sim[kind] / out_ref[kind] - 1.0
            boot = _boot_means(a, n_bootstrap, rng) / _boot_means(b, n_bootstrap, rng) - 1.0
        lo, hi = percentile_interval(boot)
        rel[kind] = (float(point), lo, hi)
    return PolicyResult(
        name=name,
        sim=out_sim,
        sim_se=out_sim_se,
        ref=out_ref,
        ref_se=out_ref_se,
        rel_error=rel,
        is_logging_model=is_logging,
    )


def _excess(rel: tuple[float, float, float]) -> float:
    """Distance of a relative-error interval from zero (0 when it covers zero)."""
    _, lo, hi = rel
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0.0 <= hi:
        return 0.0 if np.isfinite(lo) and np.isfinite(hi) else abs(rel[0])
    return min(abs(lo), abs(hi))


def ranking_metrics(
    policies: tuple[PolicyResult, ...],
    *,
    gates: Gates,
    kinds: dict[str, str] = VALUES,
    beyond_noise: bool = False,
) -> tuple[Metric, ...]:
    """Clear-pair share, Kendall, Spearman and relative errors over policies with a reference.

    The value errors are the point errors with their 95% intervals. With ``beyond_noise`` (noisy
    off-policy references) only their gates read each policy's error beyond its 95% interval
    (zero when the interval covers zero); the figure stays the point error, never zero.
    """
    out: list[Metric] = []
    usable = [p for p in policies if not p.withheld]
    for kind, words in kinds.items():
        sim = np.array([p.sim[kind] for p in usable])
        ref = np.array([p.ref[kind] for p in usable])
        se = np.nan_to_num(np.array([p.ref_se[kind] for p in usable]))
        clear = correct = 0
        for i, j in combinations(range(len(usable)), 2):
            gap = abs(ref[i] - ref[j])
            noise = 2.0 * np.hypot(se[i], se[j])
            if gap > gates.clear_pair_gap * max(abs(ref[i]), abs(ref[j])) and gap > noise:
                clear += 1
                correct += int(np.sign(sim[i] - sim[j]) == np.sign(ref[i] - ref[j]))
        share = correct / clear if clear else float("nan")
        out.append(
            Metric.gated(
                key=f"ranking.clear_pairs.{kind}",
                label=f"Clearly different pairs ordered correctly ({words})",
                section="ranking",
                value=share,
                threshold=gates.clear_pairs_min,
                direction=">=",
                note=f"{correct} of {clear} pairs more than {gates.clear_pair_gap:.0%} apart "
                "(and more than 2 standard errors of the reference)",
            )
        )
        enough = len(usable) >= 3
        tau = stats.kendalltau(sim, ref).statistic if enough else float("nan")
        rho = stats.spearmanr(sim, ref).statistic if enough else float("nan")
        out.append(
            Metric(
                key=f"ranking.kendall.{kind}",
                label=f"Kendall's tau ({words})",
                section="ranking",
                value=float(tau),
                note=f"{len(usable)} policies",
            )
        )
        out.append(
            Metric(
                key=f"ranking.spearman.{kind}",
                label=f"Spearman's rho ({words}; reported, not gated)",
                section="ranking",
                value=float(rho),
            )
        )
        out += _error_metrics(usable, kind, words, gates, beyond_noise)
        logging = [p for p in usable if p.is_logging_model]
        if logging and not beyond_noise:
            value, lo, hi = logging[0].rel_error[kind]
            out.append(
                Metric.gated(
                    key=f"ranking.logging_error.{kind}",
                    label=f"Logging-policy model: relative value error ({words})",
                    section="ranking",
                    value=abs(value),
                    ci_low=min(abs(lo), abs(hi)) if lo * hi > 0 else 0.0,
                    ci_high=max(abs(lo), abs(hi)),
                    threshold=gates.logging_value_error_max,
                    note=f"signed error {value:+.1%}, 95% CI [{lo:+.1%}, {hi:+.1%}]",
                )
            )
    return tuple(out)


def _abs_interval(rel: tuple[float, float, float]) -> tuple[float, float]:
    """The interval of ``|error|`` from a signed relative error's interval."""
    _, lo, hi = rel
    return (min(abs(lo), abs(hi)) if lo * hi > 0 else 0.0), max(abs(lo), abs(hi))


def _error_metrics(
    usable: list[PolicyResult], kind: str, words: str, gates: Gates, beyond_noise: bool
) -> list[Metric]:
    """Mean and largest relative value error: point errors with their 95% intervals.

    The figures are always the point errors ``|sim / ref - 1|``; with ``beyond_noise`` only the
    gates read the error beyond each policy's 95% interval (0 when it covers zero), and the note
    gives that figure.
    """
    nan = float("nan")
    point = np.array([abs(p.rel_error[kind][0]) for p in usable])
    bounds = np.array([_abs_interval(p.rel_error[kind]) for p in usable]).reshape(-1, 2)
    gate_on = np.array([_excess(p.rel_error[kind]) for p in usable]) if beyond_noise else point
    if not len(point):
        return [
            Metric(key=f"ranking.{name}_error.{kind}", label=label, section="ranking", value=nan)
            for name, label in (
                ("mean", f"Mean relative value error ({words})"),
                ("max", f"Largest relative value error ({words})"),
            )
        ]
    worst = int(np.nanargmax(point)) if np.isfinite(point).any() else 0
    out = []
    for name, label, value, (lo, hi), gated, threshold, where in (
        (
            "mean",
            f"Mean relative value error ({words})",
            float(point.mean()),
            (float(bounds[:, 0].mean()), float(bounds[:, 1].mean())),
            float(gate_on.mean()),
            gates.value_error_mean_max,
            f"over {len(point)} policies; interval: the policies' intervals averaged",
        ),
        (
            "max",
            f"Largest relative value error ({words})",
            float(point[worst]),
            (float(bounds[worst, 0]), float(bounds[worst, 1])),
            float(gate_on.max()),
            gates.value_error_max_max,
            f"policy {usable[worst].name}, signed {usable[worst].rel_error[kind][0]:+.1%}",
        ),
    ):
        if not beyond_noise:
            out.append(
                Metric.gated(
                    key=f"ranking.{name}_error.{kind}",
                    label=label,
                    section="ranking",
                    value=value,
                    ci_low=lo,
                    ci_high=hi,
                    threshold=threshold,
                    note=where,
                )
            )
            continue
        out.append(
            Metric(
                key=f"ranking.{name}_error.{kind}",
                label=label,
                section="ranking",
                value=value,
                ci_low=lo,
                ci_high=hi,
                threshold=threshold,
                passed=bool(gated <= threshold) if np.isfinite(gated) else None,
                note=f"gated on the error beyond the off-policy reference's 95% interval, "
                f"{gated:.1%} (the reference is too noisy to gate on the point error); {where}",
            )
        )
    return out


def policy_ranking(
    sim: Simulator,
    held: HeldoutSessions,
    policies: list[Policy],
    *,
    rng: np.random.Generator,
    world: World | None = None,
    gates: Gates | None = None,
    n_sessions: int = 4000,
    n_candidates: int = 20,
    n_bootstrap: int = 500,
    progress: bool = False,
    estimators: Sequence[DecisionEstimator] = DEFAULT_ESTIMATORS,
    session_estimators: Sequence[SessionEstimator] = DEFAULT_SESSION_ESTIMATORS,
) -> RankingResult | None:
    """Run ``policies`` in the simulator and compare them with the reference.

    Parameters
    ----------
    sim
        The simulator.
    held
        Held-out sessions (:func:`simkit.validation.sessions.heldout_sessions`).
    policies
        Policies to compare (:func:`simkit.validation.policies.default_policies` plus any).
    rng
        Generator: users, runs and bootstrap draw from their own streams; all policies share
        users and candidate draws (common random numbers).
    world
        The synthetic world the logs came from: the reference is then the truth.
    gates
        Thresholds; ``Gates()`` when omitted.
    n_sessions
        Sessions per policy (users drawn as the held-out sessions are: users with more sessions
        more often).
    n_candidates
        Candidates per step.
    n_bootstrap
        Bootstrap resamples behind the relative-error intervals.
    progress
        Show a progress bar over the policies.
    estimators, session_estimators
        The off-policy estimators of the reference without a world (see :func:`ope_reference`).

    Returns
    -------
    RankingResult, or None when there is no reference (no world and no propensities).
    """
    from tqdm.auto import tqdm

    gates = gates or Gates()
    user_rng, run_rng, boot_rng, ope_rng = rng.spawn(4)
    if world is None:
        if np.isnan(held.step_propensity).any():
            return None
        return ope_reference(
            sim,
            held,
            policies,
            rng=ope_rng,
            gates=gates,
            n_candidates=n_candidates,
            progress=progress,
            estimators=estimators,
            session_estimators=session_estimators,
        )
    sessions = user_rng.integers(held.n_sessions, size=n_sessions)
    users = held.user_of_session[sessions]
    base = run_rng.spawn(1)[0]
    results = []
    for policy in tqdm(policies, desc="policies", disable=not progress, leave=False):
        s_rng, w_rng = copy_rng(base), copy_rng(base)
        simulated = run_in_simulator(sim, policy, held, users, rng=s_rng, n_candidates=n_candidates)
        truth = run_in_world(world, sim, policy, held, users, rng=w_rng, n_candidates=n_candidates)
        results.append(
            _result(
                policy.name,
                simulated,
                truth,
                n_bootstrap=n_bootstrap,
                rng=boot_rng,
                is_logging=isinstance(policy, LoggingPolicyModel),
            )
        )
    res = tuple(results)
    return RankingResult(
        reference="ground-truth world (each policy run in the world that generated the logs)",
        policies=res,
        metrics=ranking_metrics(res, gates=gates),
        n_sessions=n_sessions,
        n_candidates=n_candidates,
    )


def copy_rng(rng: np.random.Generator) -> np.random.Generator:
    """An independent copy of ``rng`` in its current state.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> twin = copy_rng(rng)
    >>> bool(rng.random() == twin.random())
    True
    """
    import copy

    return copy.deepcopy(rng)


def _target_proba(
    sim: Simulator,
    policy: Policy,
    state,
    logged: NDArray[np.int64],
    *,
    n_candidates: int,
    n_draws: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Monte Carlo of a policy over uniform candidate sets at given states.

    Returns ``pi(logged | s)`` (estimated with candidate sets forced to contain the logged item,
    times the chance ``K / N`` that it is offered), and the policy's expected click probability and
    expected watch (click probability x predicted watch) under the simulator, per state.
    """
    n, n_items = len(logged), sim.n_items
    k = min(n_candidates, n_items)
    pi = np.zeros(n)
    q_click = np.zeros(n)
    q_watch = np.zeros(n)
    for _ in range(n_draws):
        cands = np.argpartition(rng.random((n, n_items)), k, axis=1)[:, :k]
        # forced set: replace a random slot by the logged item unless it is there already
        forced = cands.copy()
        has = (forced == logged[:, None]).any(axis=1)
        slot = rng.integers(k, size=n)
        forced[~has, slot[~has]] = logged[~has]
        prob = policy.proba(PolicyContext(sim, state, forced))
        pi += (prob * (forced == logged[:, None])).sum(axis=1)
        prob = policy.proba(PolicyContext(sim, state, cands))
        x = sim.click_features(state, cands)
        p = sim.click.proba(x).reshape(cands.shape)
        q_click += (prob * p).sum(axis=1)
        if sim.watch is not None:  # no watch model (no dwell): no watch value
            w = sim.watch.predict_log(x).reshape(cands.shape)
            cap = sim.catalogue.duration[cands]
            q_watch += (prob * p * sim.watch.mean_from_prediction(w, cap)).sum(axis=1)
    return pi / n_draws * k / n_items, q_click / n_draws, q_watch / n_draws


target_proba = _target_proba
"""Public name of the Monte Carlo of a policy's probability of the logged items and its simulated
per-decision values at logged states (the trust report's off-policy estimates use it)."""


def ope_reference(
    sim: Simulator,
    held: HeldoutSessions,
    policies: list[Policy],
    *,
    rng: np.random.Generator,
    gates: Gates,
    n_candidates: int = 20,
    max_sessions: int = 300,
    n_draws: int = 4,
    n_bootstrap: int = 300,
    progress: bool = False,
    estimators: Sequence[DecisionEstimator] = DEFAULT_ESTIMATORS,
    session_estimators: Sequence[SessionEstimator] = DEFAULT_SESSION_ESTIMATORS,
) -> RankingResult:
    """Per-decision values: the simulator's (direct method) against off-policy estimates.

    See the module docstring. Up to ``max_sessions`` held-out sessions are used whole; the target
    probability of each logged item is a Monte Carlo over ``n_draws`` candidate sets. Estimates
    whose effective sample size is below the OPE module's minimum are withheld ("not enough
    overlap") and those policies leave the comparison.

    Parameters
    ----------
    estimators : sequence of DecisionEstimator, default (snips,)
        Per-decision estimators; the first is the reference the simulator is compared with, the
        others are shown beside each policy.
    session_estimators : sequence of SessionEstimator, default (pdis,)
        Estimators of the session watch time, shown beside each policy, never gated.

    Returns
    -------
    RankingResult

    Raises
    ------
    ConfigError
        When ``estimators`` is empty.
    """
    if not estimators:
        raise ConfigError("ope_reference needs at least one per-decision estimator; got none.")
    from tqdm.auto import tqdm

    pick_rng, mc_rng, boot_rng = rng.spawn(3)
    sessions = np.arange(held.n_sessions)
    if held.n_sessions > max_sessions:
        sessions = np.sort(pick_rng.choice(held.n_sessions, size=max_sessions, replace=False))
    length = held.length[sessions]
    first = np.repeat(held.step_offsets[sessions], length)
    t_all = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    order = np.argsort(t_all, kind="stable")
    steps = (first + t_all)[order]
    state = teacher_forced_states(sim, held, steps)
    t_of_step = t_all[order]
    session_of_step = np.repeat(sessions, length)[order]
    logged = held.step_item[steps]
    prop = held.step_propensity[steps]
    rewards = {"watch": held.step_watch[steps], "clicks": held.step_click[steps].astype(float)}
    kinds = {"watch": "watch time per decision", "clicks": "clicks per decision"}
    results = []
    for policy in tqdm(policies, desc="policies (OPE)", disable=not progress, leave=False):
        pi, q_click, q_watch = _target_proba(
            sim, policy, state, logged, n_candidates=n_candidates, n_draws=n_draws, rng=mc_rng
        )
        sims = {"watch": q_watch, "clicks": q_click}
        ref, ref_se, s_mean, s_se, rel = {}, {}, {}, {}, {}
        withheld = ""
        beside = []
        for kind, r in rewards.items():
            est, *others = (
                f(r, np.clip(pi, 0.0, 1.0), prop, rng=boot_rng, n_bootstrap=n_bootstrap)
                for f in estimators
            )
            beside += [f"{e.name} {kinds[kind]}: {e.display_value}" for e in others]
            if not est.enough_overlap:
                withheld = f"{est.name}: {est.display_value}"
            ref[kind] = est.value
            ref_se[kind] = (est.ci_high - est.ci_low) / 3.92
            s_mean[kind] = float(sims[kind].mean())
            s_se[kind] = _se(sims[kind])
            point = s_mean[kind] / ref[kind] - 1.0 if ref[kind] else float("nan")
            lo = s_mean[kind] / est.ci_high - 1.0 if est.ci_high > 0 else float("nan")
            hi = s_mean[kind] / est.ci_low - 1.0 if est.ci_low > 0 else float("nan")
            rel[kind] = (float(point), float(lo), float(hi))
        for f in session_estimators:
            session = f(
                rewards["watch"],
                np.clip(pi, 0.0, 1.0),
                prop,
                session_of_step,
                step=t_of_step,
                rng=boot_rng,
                n_bootstrap=n_bootstrap,
            )
            beside.append(f"{session.name} session watch time: {session.display_value}")
        results.append(
            PolicyResult(
                name=policy.name,
                sim=s_mean,
                sim_se=s_se,
                ref=ref,
                ref_se=ref_se,
                rel_error=rel,
                is_logging_model=isinstance(policy, LoggingPolicyModel),
                withheld=withheld,
                session_ope="; ".join(beside),
            )
        )
    res = tuple(results)
    reference_name = getattr(estimators[0], "__name__", "the first estimator").upper()
    return RankingResult(
        reference=(
            f"off-policy estimates ({reference_name}) of the per-decision value at the logged "
            "states; the simulator's figure is its own per-decision value at the same states"
        ),
        policies=res,
        metrics=ranking_metrics(res, gates=gates, kinds=kinds, beyond_noise=True),
        n_sessions=len(steps),
        n_candidates=n_candidates,
        note=f"Per-decision values at {len(steps):,} logged decisions of {len(sessions):,} "
        "held-out sessions. Off-policy estimates of whole sessions (per-decision importance "
        "sampling) rarely have the overlap to mean anything; they are shown beside each policy, "
        "or withheld when their effective sample size is below the minimum, and never gated.",
    )
