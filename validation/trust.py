"""Can a trained policy's simulated result be trusted? The trust report of one policy.

Simulator-trained policies fail in three known ways: they go where the logs never went
(distribution shift), the logger knew things the models cannot see (confounding), or they exploit
a model error instead of pleasing users (reward hacking). :func:`trust_report` sets out, for one
policy and held-out logs:

- its simulated session value and its gain over the logging policy (a conditional-logit model of
  it, :func:`~simkit.validation.policies.fit_logging_policy`), with paired bootstrap intervals;
- its coverage (:mod:`.coverage`): the share of its chosen (state, item) pairs the logs support;
- its value and gain under each ensemble member (:mod:`simkit.uncertainty`), and the members'
  spread of the chosen items' immediate value;
- the confounding verdict of these logs (:func:`.confounding.confounding_check`);
- per-decision off-policy estimates (SNIPS) with their effective sample size, or the statement
  that the ESS is below the minimum.

It flags the result in plain words, with the figures, when the coverage is low, when the members
disagree (with each other or with the simulator), or when the logs are confounded.

References
----------
.. [1] Levine, Kumar, Tucker, Fu. "Offline reinforcement learning: tutorial, review, and
   perspectives on open problems." arXiv:2005.01643, 2020.
.. [2] Yu, Thomas, Yu et al. "MOPO: model-based offline policy optimization." NeurIPS 2020.
.. [3] Swaminathan, Joachims. "The self-normalized estimator for counterfactual learning."
   NeurIPS 2015 (SNIPS).
.. [4] Huang, Oosterhuis, de Rijke, van Hoof. "Keeping dataset biases out of the simulation."
   RecSys 2020.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.logs import Logs
from simkit.simulator import Simulator
from simkit.threads import blas_threads
from simkit.uncertainty import has_ensemble, members
from simkit.validation.confounding import ConfoundingResult, confounding_check
from simkit.validation.coverage import Coverage, policy_coverage
from simkit.validation.fidelity import percentile_interval
from simkit.validation.ope import Estimate, snips
from simkit.validation.policies import Policy, fit_logging_policy, run_in_simulator
from simkit.validation.ranking import copy_rng, target_proba
from simkit.validation.sessions import heldout_sessions, teacher_forced_states

__all__ = ["TrustFlag", "TrustReport", "TrustThresholds", "trust_report"]


@dataclass(frozen=True, kw_only=True)
class TrustThresholds:
    """When the trust report flags a result.

    Parameters
    ----------
    min_coverage : float, default 0.7
        Flag when fewer of the policy's chosen (state, item) pairs than this share are supported.
    max_relative_spread : float, default 0.3
        Flag when the members' standard deviation of the chosen items' immediate value exceeds
        this share of their mean (per decision, averaged; free of simulation noise).
    max_member_gap : float, default 0.25
        Flag when the simulator's own immediate value of the chosen items exceeds the members'
        mean by more than this share of it (the simulator promises what its members do not).
    max_gain_drop : float, default 0.5
        Flag a positive simulated gain when under some member the gain falls by more than this
        share of it.
    """

    min_coverage: float = 0.7
    max_relative_spread: float = 0.3
    max_member_gap: float = 0.25
    max_gain_drop: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_coverage", "max_relative_spread", "max_member_gap", "max_gain_drop"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"TrustThresholds.{name} must be a number >= 0; got {v!r}.")


@dataclass(frozen=True)
class TrustFlag:
    """One reason not to trust the result: ``kind`` (``coverage``, ``members``, ``confounding``)
    and a plain-words ``message`` with the figures."""

    kind: str
    message: str


@dataclass(frozen=True, kw_only=True)
class TrustReport:
    """The trust report of one policy (see the module docstring).

    Values are mean session watch seconds (clicks per session in ``clicks``), intervals are 95%
    percentile bootstrap intervals over sessions, gains are paired (the same users and candidates).
    """

    policy: str
    value: float
    value_ci: tuple[float, float]
    clicks: float
    logging_value: float
    gain: float
    gain_ci: tuple[float, float]
    coverage: Coverage
    member_values: tuple[float, ...]
    member_gains: tuple[float, ...]
    confounding: ConfoundingResult | None
    ope: tuple[Estimate, ...]
    ope_simulated: tuple[float, ...]
    flags: tuple[TrustFlag, ...]
    n_sessions: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def trusted(self) -> bool:
        """No flag was raised."""
        return not self.flags

    @property
    def verdict(self) -> str:
        """One line: trusted, or the kinds of flags raised."""
        if self.trusted:
            return f"{self.policy}: no reason found to doubt the simulated result"
        kinds = ", ".join(f.kind for f in self.flags)
        return f"{self.policy}: do not trust the simulated result ({kinds})"

    def text(self) -> str:
        """The report in plain words."""
        lo, hi = self.value_ci
        glo, ghi = self.gain_ci
        lines = [
            f"Trust report for {self.policy} ({self.n_sessions:,} simulated sessions)",
            f"- simulated value: {self.value:.4g} watch seconds per session "
            f"(95% CI [{lo:.4g}, {hi:.4g}]); {self.clicks:.3g} clicks per session",
            f"- gain over the logging policy ({self.logging_value:.4g}): {self.gain:+.4g} "
            f"(95% CI [{glo:+.4g}, {ghi:+.4g}])",
            f"- coverage: {self.coverage.describe()}",
        ]
        if self.member_values:
            vals = ", ".join(f"{v:.4g}" for v in self.member_values)
            gains = ", ".join(f"{g:+.4g}" for g in self.member_gains)
            lines.append(f"- value under each ensemble member: {vals} (gains {gains})")
            if np.isfinite(self.coverage.value_spread):
                cov = self.coverage
                lines.append(
                    f"- chosen items' immediate value per decision: members' mean "
                    f"{cov.value_mean:.3g}, spread {cov.value_spread:.3g}; the simulator's own "
                    f"{cov.value_main:.3g}"
                )
        else:
            lines.append("- no ensemble members (fit with --ensemble M to judge model uncertainty)")
        if self.confounding is not None:
            c = self.confounding
            fig = (
                f" (log-loss gain {c.gain:.2%}, 95% CI [{c.ci_low:.2%}, {c.ci_high:.2%}])"
                if c.ran
                else ""
            )
            lines.append(f"- confounding: {'FIRED' if c.fired else 'quiet'}{fig}: {c.message}")
        for est, sim_v in zip(self.ope, self.ope_simulated):
            if est.enough_overlap:
                lines.append(
                    f"- off-policy {est.name} per-decision value: {est.value:.4g} "
                    f"(95% CI [{est.ci_low:.4g}, {est.ci_high:.4g}], ESS {est.ess:.0f}); "
                    f"the simulator's own: {sim_v:.4g}"
                )
            else:
                lines.append(
                    f"- off-policy {est.name}: withheld, its effective sample size {est.ess:.1f} "
                    f"is below the minimum {est.min_ess:.0f}"
                )
        lines += [f"- note: {n}" for n in self.notes]
        lines.append(f"Verdict: {self.verdict}")
        lines += [f"  FLAG ({f.kind}): {f.message}" for f in self.flags]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        cov = self.coverage
        return {
            "policy": self.policy,
            "value": self.value,
            "value_ci": list(self.value_ci),
            "logging_value": self.logging_value,
            "gain": self.gain,
            "gain_ci": list(self.gain_ci),
            "coverage": {
                "pair": cov.pair,
                "item": cov.item,
                "state": cov.state,
                "value_spread": cov.value_spread,
            },
            "member_values": list(self.member_values),
            "member_gains": list(self.member_gains),
            "confounding_fired": None if self.confounding is None else self.confounding.fired,
            "ope": [
                {"name": e.name, "value": e.value, "ess": e.ess, "enough_overlap": e.enough_overlap}
                for e in self.ope
            ],
            "flags": [{"kind": f.kind, "message": f.message} for f in self.flags],
            "trusted": self.trusted,
        }


def _interval(
    x: NDArray[np.float64], rng: np.random.Generator, n: int = 500
) -> tuple[float, float]:
    idx = rng.integers(len(x), size=(n, len(x)))
    return percentile_interval(x[idx].mean(axis=1))


def trust_report(
    simulator: Simulator,
    policy: Policy,
    logs: Logs,
    *,
    rng: np.random.Generator,
    n_sessions: int = 500,
    n_candidates: int = 20,
    thresholds: TrustThresholds | None = None,
    confounding: ConfoundingResult | None | bool = True,
    ope_sessions: int = 300,
) -> TrustReport:
    """How far a policy's simulated result can be believed (see the module docstring).

    Parameters
    ----------
    simulator : Simulator
        The simulator the policy was trained in (with ensemble members to judge model spread).
    policy : Policy
        The policy (:class:`simkit.agents.policy.AgentPolicy` for a trained agent).
    logs : Logs
        Held-out logs (users the simulator was not fitted on); propensities enable the
        confounding check and the off-policy estimates.
    rng : numpy.random.Generator
        Users, runs, bootstrap and the checks draw from their own streams.
    n_sessions : int, default 500
        Simulated sessions per run (the policy, the logging policy, each member).
    n_candidates : int, default 20
        Candidates per step.
    thresholds : TrustThresholds, optional
        When to flag.
    confounding : ConfoundingResult, bool, default True
        True runs :func:`~simkit.validation.confounding.confounding_check`; a result already
        computed for these logs is used as is; False or None skips it.
    ope_sessions : int, default 300
        Held-out sessions behind the off-policy estimates.

    Returns
    -------
    TrustReport

    Examples
    --------
    >>> rep = trust_report(sim, AgentPolicy(agent, "dqn"), holdout,
    ...                    rng=np.random.default_rng(0))               # doctest: +SKIP
    >>> print(rep.text())                                              # doctest: +SKIP
    """
    th = thresholds or TrustThresholds()
    # small matrix products beside LightGBM's threads: one BLAS thread (see simkit.threads)
    with blas_threads(1):
        report = _measure(
            simulator, policy, logs, rng, n_sessions, n_candidates, confounding, ope_sessions
        )
    return _with_flags(report, th)


def _measure(
    simulator: Simulator,
    policy: Policy,
    logs: Logs,
    rng: np.random.Generator,
    n_sessions: int,
    n_candidates: int,
    confounding: ConfoundingResult | None | bool,
    ope_sessions: int,
) -> TrustReport:
    user_rng, run_rng, boot_rng, conf_rng, log_rng, ope_rng = rng.spawn(6)
    held = heldout_sessions(simulator, logs)
    users = held.user_of_session[user_rng.integers(held.n_sessions, size=n_sessions)]
    base = run_rng.spawn(1)[0]
    logging = fit_logging_policy(simulator, held, rng=log_rng)
    ensemble = has_ensemble(simulator)
    n_steps = len(held.step_item)
    ref_steps = user_rng.choice(n_steps, size=min(n_steps, 20_000), replace=False)
    reference = teacher_forced_states(simulator, held, np.sort(ref_steps)).z
    cov, values = policy_coverage(
        simulator,
        policy,
        held,
        users,
        rng=copy_rng(base),
        n_candidates=n_candidates,
        spread=ensemble,
        reference_states=reference,
    )
    logged = run_in_simulator(
        simulator, logging, held, users, rng=copy_rng(base), n_candidates=n_candidates
    )
    diff = values.watch - logged.watch
    value, gain = float(values.watch.mean()), float(diff.mean())
    member_values: list[float] = []
    member_gains: list[float] = []
    if ensemble:
        for m in members(simulator):
            mv = run_in_simulator(
                m, policy, held, users, rng=copy_rng(base), n_candidates=n_candidates
            )
            ml = run_in_simulator(
                m, logging, held, users, rng=copy_rng(base), n_candidates=n_candidates
            )
            member_values.append(float(mv.watch.mean()))
            member_gains.append(float((mv.watch - ml.watch).mean()))
    conf: ConfoundingResult | None = None
    if isinstance(confounding, ConfoundingResult):
        conf = confounding
    elif confounding is True:
        conf = confounding_check(simulator, logs, rng=conf_rng)
    ope, ope_sim, notes = _off_policy(simulator, policy, held, ope_rng, n_candidates, ope_sessions)
    return TrustReport(
        policy=policy.name,
        value=value,
        value_ci=_interval(values.watch, boot_rng),
        clicks=float(values.clicks.mean()),
        logging_value=float(logged.watch.mean()),
        gain=gain,
        gain_ci=_interval(diff, boot_rng),
        coverage=cov,
        member_values=tuple(member_values),
        member_gains=tuple(member_gains),
        confounding=conf,
        ope=ope,
        ope_simulated=ope_sim,
        flags=(),
        n_sessions=n_sessions,
        notes=tuple(notes),
    )


def _off_policy(
    sim: Simulator,
    policy: Policy,
    held: Any,
    rng: np.random.Generator,
    n_candidates: int,
    max_sessions: int,
) -> tuple[tuple[Estimate, ...], tuple[float, ...], list[str]]:
    """SNIPS of the per-decision watch and clicks at logged states, and the simulator's own."""
    if np.isnan(held.step_propensity).any():
        return (), (), ["no off-policy estimates: the held-out logs carry no propensities"]
    pick_rng, mc_rng, boot_rng = rng.spawn(3)
    sessions = np.arange(held.n_sessions)
    if held.n_sessions > max_sessions:
        sessions = np.sort(pick_rng.choice(held.n_sessions, size=max_sessions, replace=False))
    length = held.length[sessions]
    first = np.repeat(held.step_offsets[sessions], length)
    steps = first + np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    state = teacher_forced_states(sim, held, steps)
    logged = held.step_item[steps]
    pi, q_click, q_watch = target_proba(
        sim, policy, state, logged, n_candidates=n_candidates, n_draws=4, rng=mc_rng
    )
    prop = held.step_propensity[steps]
    pi = np.clip(pi, 0.0, 1.0)
    watch = snips(held.step_watch[steps], pi, prop, rng=boot_rng, n_bootstrap=300)
    clicks = snips(held.step_click[steps].astype(float), pi, prop, rng=boot_rng, n_bootstrap=300)
    watch = _renamed(watch, "SNIPS (watch per decision)")
    clicks = _renamed(clicks, "SNIPS (clicks per decision)")
    return (watch, clicks), (float(q_watch.mean()), float(q_click.mean())), []


def _renamed(est: Estimate, name: str) -> Estimate:
    import dataclasses

    return dataclasses.replace(est, name=name)


def _with_flags(report: TrustReport, th: TrustThresholds) -> TrustReport:
    import dataclasses

    flags = []
    cov = report.coverage
    gain_words = f"its simulated gain of {report.gain:+.4g} watch seconds per session over the logging policy"
    if cov.pair < th.min_coverage:
        flags.append(
            TrustFlag(
                "coverage",
                f"Low coverage: only {cov.pair:.0%} of the policy's chosen (state, item) pairs are "
                f"supported by the logs (minimum {th.min_coverage:.0%}; items shown at least "
                f"{cov.min_impressions} times: {cov.item:.0%}, typical states: {cov.state:.0%}). "
                f"The policy goes where the logs rarely went, so {gain_words} is extrapolation. "
                "Likely fix: constrain the policy to logged items, train with "
                "uncertainty_penalty, or collect logs that show these items.",
            )
        )
    if report.member_values:
        mg = np.asarray(report.member_gains)
        centre = abs(cov.value_mean) if np.isfinite(cov.value_mean) and cov.value_mean else 1.0
        rel_spread = cov.value_spread / centre
        gap = (cov.value_main - cov.value_mean) / centre
        drop = (report.gain - float(mg.min())) / report.gain if report.gain > 0 else 0.0
        reasons = []
        if rel_spread > th.max_relative_spread:
            reasons.append(
                f"their spread of the chosen items' immediate value is {cov.value_spread:.3g}, "
                f"{rel_spread:.0%} of its mean {cov.value_mean:.3g} (at most "
                f"{th.max_relative_spread:.0%})"
            )
        if gap > th.max_member_gap:
            reasons.append(
                f"the simulator values the chosen items at {cov.value_main:.3g} per decision, "
                f"{gap:.0%} above the members' mean {cov.value_mean:.3g} (at most "
                f"{th.max_member_gap:.0%})"
            )
        if drop > th.max_gain_drop:
            reasons.append(
                f"under member {int(mg.argmin()) + 1} the gain falls to {mg.min():+.4g} "
                f"({drop:.0%} below the simulated gain; at most {th.max_gain_drop:.0%})"
            )
        if reasons:
            vals = ", ".join(f"{v:.4g}" for v in report.member_values)
            flags.append(
                TrustFlag(
                    "members",
                    "Ensemble members disagree (member spread): "
                    + "; ".join(reasons)
                    + f". Session values under the {len(mg)} members: {vals}. The result rests "
                    f"on what the models do not know, so {gain_words} may be a model error the "
                    "policy exploits. Likely fix: train with uncertainty_penalty, or collect logs "
                    "where the members disagree.",
                )
            )
    conf = report.confounding
    if conf is not None and conf.fired:
        flags.append(
            TrustFlag(
                "confounding",
                f"Confounded logs: the confounding check fired (the logged propensity improves a "
                f"held-out click model by {conf.gain:.2%}, 95% CI [{conf.ci_low:.2%}, "
                f"{conf.ci_high:.2%}], above {conf.threshold:.2%}). {conf.message} So "
                f"{gain_words} is not to be trusted from these logs; believe this check over a "
                "passing ranking check whose off-policy reference is too noisy to gate on.",
            )
        )
    return dataclasses.replace(report, flags=tuple(flags))
