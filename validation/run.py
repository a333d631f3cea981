"""``validate``: run every fidelity check of a simulator against held-out logs.

:func:`validate` replays the held-out logs once and runs, each on its own random stream:

1. per-impression fidelity (:mod:`.fidelity`): click AUC, log loss, calibration with a reliability
   diagram, continuation AUC and calibration, watch-time KS beside its noise floor;
2. session-level fidelity (:mod:`.sessions`): KS, p-value and interval of four session
   distributions beside their noise floors, with the simulated and held-out means;
3. the policy-ranking check (:mod:`.ranking`, :mod:`.policies`) against the ground-truth world
   (``world=``) or off-policy estimates (logs with propensities);
4. the confounding check (:mod:`.confounding`).

It returns a :class:`~simkit.validation.report.FidelityReport`, which holds the verdicts against
:class:`~simkit.validation.gates.Gates` and renders to HTML, JSON and Markdown.

References
----------
.. [1] Mitchell, Wu, Zaldivar et al. "Model cards for model reporting." FAT* 2019 (a shareable
   report of what a model was checked against).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from simkit.logs import Logs
from simkit.simulator import Simulator
from simkit.validation.confounding import confounding_check
from simkit.validation.fidelity import impression_fidelity
from simkit.validation.gates import Gates
from simkit.validation.policies import Policy, default_policies, fit_logging_policy
from simkit.validation.ranking import (
    DEFAULT_ESTIMATORS,
    DEFAULT_SESSION_ESTIMATORS,
    DecisionEstimator,
    SessionEstimator,
    policy_ranking,
)
from simkit.validation.report import FidelityReport
from simkit.validation.sessions import heldout_sessions, session_fidelity

if TYPE_CHECKING:
    from simkit.synthetic import World

__all__ = ["validate"]


def _noise_notes(impression: object) -> list[str]:
    """Warnings for held-out AUCs within noise of 0.5."""
    from simkit.noise import auc_warning

    out = []
    by_key = {m.key: m for m in impression.metrics}  # type: ignore[attr-defined]
    n_rows = impression.n_rows  # type: ignore[attr-defined]
    n_clicks = int(round(impression.click_rate * n_rows)) if n_rows else 0  # type: ignore[attr-defined]
    if "click_auc" in by_key:
        w = auc_warning("click", by_key["click_auc"].value, n_clicks, n_rows - n_clicks, "clicks")
        if w:
            out.append(w)
    n_steps = getattr(impression, "n_steps", 0)
    if "continue_auc" in by_key and n_steps:
        n_cont = int(round(impression.continue_rate * n_steps))  # type: ignore[attr-defined]
        w = auc_warning(
            "continuation", by_key["continue_auc"].value, n_cont, n_steps - n_cont, "steps followed"
        )
        if w:
            out.append(w)
    return out


def validate(
    simulator: Simulator,
    holdout_logs: Logs,
    *,
    rng: np.random.Generator,
    progress: bool = False,
    world: World | None = None,
    policies: list[Policy] | None = None,
    default_policy_set: bool = True,
    gates: Gates | None = None,
    n_sessions: int = 4000,
    n_candidates: int = 20,
    n_bootstrap: int = 200,
    n_splits: int = 30,
    drop_training_users: bool = True,
    estimators: Sequence[DecisionEstimator] = DEFAULT_ESTIMATORS,
    session_estimators: Sequence[SessionEstimator] = DEFAULT_SESSION_ESTIMATORS,
) -> FidelityReport:
    """Check a simulator against held-out logs and return the fidelity report.

    Parameters
    ----------
    simulator
        The fitted simulator.
    holdout_logs
        Held-out logs (users the simulator was not fitted on), from :func:`simkit.logs.read_logs`.
    rng
        Generator; every check draws from its own spawned stream.
    progress
        Show progress bars.
    world
        The synthetic world the logs came from: the policy-ranking reference becomes the truth.
    policies
        Extra policies for the ranking check (:class:`simkit.validation.policies.Policy`).
    default_policy_set
        Include random, popular, greedy on clicks, greedy on watch time and the logging-policy model.
    gates
        Thresholds; ``Gates()`` when omitted.
    n_sessions
        Sessions per policy in the ranking check (at least 4,000 to judge a 10% value error).
    n_candidates
        Candidates offered per step in the ranking check.
    n_bootstrap
        Bootstrap resamples behind the intervals.
    n_splits
        Random half-splits behind each noise floor (at least 30).
    drop_training_users
        Drop held-out rows of users the simulator was fitted on (said in the report's notes).
    estimators, session_estimators
        Off-policy estimators of the ranking's reference when there is no world
        (:func:`simkit.validation.ranking.ope_reference`; the first per-decision one is the
        reference).

    Returns
    -------
    FidelityReport

    Raises
    ------
    TypeError
        When ``simulator`` or ``holdout_logs`` is of the wrong type.
    ConfigError
        When ``n_splits`` is below 30.

    Examples
    --------
    >>> report = validate(sim, holdout, rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> report.to_html("report.html"); print(report.summary())         # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from simkit.errors import ConfigError, LogError
    from simkit.replay import replay_with

    if not isinstance(simulator, Simulator):
        raise TypeError(f"simulator must be a simkit Simulator; got {type(simulator)}")
    if not isinstance(holdout_logs, Logs):
        raise TypeError(f"holdout_logs must be simkit Logs (read_logs); got {type(holdout_logs)}")
    if n_splits < 30:
        raise ConfigError(
            f"n_splits must be at least 30 (single half-splits vary by a factor of 1.7); got "
            f"{n_splits}."
        )
    gates = gates or Gates()
    notes: list[str] = []
    logs = holdout_logs
    if drop_training_users:
        seen = logs.frame["user_id"].isin(simulator.users.user_ids).to_numpy()
        if seen.all():
            notes.append(
                "Every held-out user is also in the simulator's training logs, so the figures "
                "are optimistic; validate on users held out of the fit (simkit fit holds out "
                "20% of users)."
            )
        elif seen.any():
            n_users = logs.frame.loc[seen, "user_id"].nunique()
            logs = logs.subset(~seen)
            notes.append(
                f"{n_users:,} users ({int(seen.sum()):,} rows) of these logs were in the "
                "simulator's training logs and were left out; the report covers the "
                f"{logs.n_users:,} other users."
            )
    missing = [c for c in simulator.spec.user_columns if c not in logs.frame.columns]
    if missing:
        raise LogError(
            f"{logs.source}: the held-out logs lack the columns {', '.join(map(repr, missing))}, "
            "which the simulator's models take as features (it was fitted on logs with them). "
            "Validate on held-out logs from the same source, with the same columns."
        )
    if logs.n_sessions < 10 or int(logs.frame["clicked"].sum()) < 2:
        raise LogError(
            f"{logs.source}: validation needs at least 10 held-out sessions with some clicks; got "
            f"{logs.n_sessions} sessions and {int(logs.frame['clicked'].sum())} clicks. Provide "
            "more held-out logs."
        )
    imp_rng, sess_rng, pol_rng, rank_rng, conf_rng = rng.spawn(5)
    bar = tqdm(total=6, desc="validate", disable=not progress, leave=False)
    prep = replay_with(simulator, logs)
    bar.update()
    impression = impression_fidelity(
        simulator,
        logs,
        rng=imp_rng,
        gates=gates,
        prepared=prep,
        n_bootstrap=n_bootstrap,
        n_splits=n_splits,
    )
    bar.update()
    held = heldout_sessions(simulator, logs)
    sessions = session_fidelity(
        simulator,
        logs,
        rng=sess_rng,
        gates=gates,
        held=held,
        n_bootstrap=n_bootstrap,
        n_splits=n_splits,
    )
    bar.update()
    logging_model = fit_logging_policy(simulator, held, rng=pol_rng)
    bar.update()
    chosen = (default_policies(logging_model) if default_policy_set else []) + list(policies or [])
    names = [p.name for p in chosen]
    if len(set(names)) < len(names):
        raise ConfigError(f"policy names must be unique; got {names}.")
    ranking = (
        policy_ranking(
            simulator,
            held,
            chosen,
            rng=rank_rng,
            world=world,
            gates=gates,
            n_sessions=n_sessions,
            n_candidates=n_candidates,
            progress=progress,
            estimators=estimators,
            session_estimators=session_estimators,
        )
        if chosen
        else None
    )
    bar.update()
    confounding = confounding_check(simulator, logs, rng=conf_rng, gates=gates, prepared=prep)
    bar.update()
    bar.close()
    notes.extend(f"Held-out logs: {w}" for w in logs.warnings)
    notes.extend(_noise_notes(impression))
    if simulator.watch is None:
        notes.append(
            "No watch time is measured: the simulator has no watch model because its training "
            "logs had no dwell time (rewards are clicks)."
        )
    if simulator.cont is None:
        notes.append(
            "No continuation or session length is measured: every training session was one "
            "decision, so the simulator has no continuation model (each session ends after one "
            "step)."
        )
    # --- return-time figures (simulators fitted from logs with timestamps)
    if simulator.extras.get("return") is not None and logs.has_timestamp:
        import dataclasses

        from simkit.validation.returns import return_fidelity

        sessions = dataclasses.replace(
            sessions,
            metrics=sessions.metrics
            + return_fidelity(
                simulator,
                logs,
                logging_model,
                rng=rng.spawn(1)[0],
                gates=gates,
                n_splits=n_splits,
                n_bootstrap=n_bootstrap,
            ),
        )
    if held.slates:
        notes.append(
            "The logs hold slates; session simulation shows each logged slate as a slate, at its "
            "logged positions."
        )
    from simkit import __version__

    return FidelityReport(
        gates=gates,
        impression=impression,
        sessions=sessions,
        ranking=ranking,
        confounding=confounding,
        logging_policy=logging_model.describe(),
        source={
            "file": logs.source,
            "rows": logs.n_rows,
            "sessions": logs.n_sessions,
            "users": logs.n_users,
            "has_propensity": logs.has_propensity,
            "simulator_train_rows": simulator.metrics.get("train_rows"),
        },
        notes=tuple(notes),
        simkit_version=str(__version__),
    )
