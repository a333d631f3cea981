"""A user's logs as REINFORCE's decision records, observed exactly as the session env observes.

Off-policy REINFORCE (Chen et al. 2019) learns from what a platform's logging policy showed. To
act in :class:`simkit.envs.SessionEnv` on what it learned from, the agent must see each logged
decision through the env's own observation: :func:`decisions_from_logs` replays the logs through
simkit's state (:func:`simkit.replay.replay`, capturing the state *before* each logged step, with
the items the session had shown so far) and builds the observation with the env's
:class:`simkit.observation.ObservationLayout`.

**Candidates.** A log records what was shown, not what else could have been. Each logged row
becomes one decision among ``K`` candidates: the logged item plus ``K - 1`` others drawn
uniformly without replacement from the rest of the simulator's catalogue, in a uniformly random
order (the env's default ``"uniform"`` sampler, and the candidates of validation's rollouts).
Given that the logged item is among them, uniform candidates are exactly the logged item plus
uniform others, so these are the candidate sets the env would offer in which the logged choice
was possible.

**Propensities.** A logged propensity ``b = beta(a|s)`` is a probability over the whole catalogue
of ``N`` items; the agent's softmax is over the ``K`` candidates. The record holds the logging
policy's probability of the item *among the candidates*, ``beta(a) / sum_{c in C} beta(c)``, with
the unlogged propensities of the other ``K - 1`` candidates replaced by their expectation under
uniform sampling, ``(K - 1) (1 - b) / (N - 1)``:

    beta_C(a|s) = b / (b + (1 - b) (K - 1) / (N - 1)),

which lies in (0, 1] and, for small ``b``, is about ``b (N - 1) / (K - 1) ~ b N / K``: the ratio ``pi(a|s, C) / beta_C`` then
estimates ``pi(a|s) / beta(a|s)`` for the agent's probability of showing ``a`` when offered
uniform candidates (``P(a in C) = K / N``). Without logged propensities the record has none, and
REINFORCE's behaviour head (``propensity_source="estimated"``) learns ``beta`` from the same
candidate sets: its softmax cross-entropy on (logged item, sampled others) estimates
``beta(a) / sum_{c in C} beta(c)``, the same quantity (McFadden 1978, sampling of alternatives).

**Returns.** Each row is credited with its own reward plus the discounted rewards of the later
steps of its session, ``R = r_row + sum_{t' > t} gamma^(t'-t) r_t'`` (a step's reward sums its
slate's rows). Rewards follow the env's: seconds watched (``"watch_time"``), clicks
(``"clicks"``) or watches longer than a threshold (``"long_watch"``).

References
----------
Chen, Beutel, Covington, Jain, Belletti, Chi. Top-K off-policy correction for a REINFORCE
recommender system. WSDM 2019. arXiv:1812.02353.
McFadden. Modelling the choice of residential location. In Spatial Interaction Theory and
Planning Models, 1978 (consistent estimation of a multinomial logit on sampled alternatives).
"""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from simkit.agents.base import DecisionLog, discounted_returns
from simkit.errors import ConfigError, LogError
from simkit.observation import ObservationLayout
from simkit.replay import (
    index_logs,
    replay,
    row_context,
    session_features,
    user_start_interest,
)

if TYPE_CHECKING:
    from simkit.logs import Logs
    from simkit.simulator import Simulator

__all__ = [
    "REWARDS",
    "LogsTrainResult",
    "train_from_logs",
    "candidate_propensity",
    "decisions_from_logs",
    "sample_candidates",
    "slate_size_of",
]

REWARDS = ("watch_time", "clicks", "long_watch")
"""Rewards a decision can be credited with (those of :class:`simkit.envs.SessionEnv`)."""

_CHUNK_CELLS = 1 << 22  # candidate cells (rows x K x features) observed at once


def candidate_propensity(
    propensity: NDArray[np.floating], n_candidates: int, n_items: int
) -> NDArray[np.float64]:
    """Logging probability of the logged item among ``n_candidates`` uniform candidates.

    ``b / (b + (1 - b) (K - 1) / (N - 1))`` for a catalogue-wide propensity ``b`` (see the module
    docstring); it equals ``b`` when ``K = N`` and is about ``b (N - 1) / (K - 1)`` for small ``b``.

    Examples
    --------
    >>> candidate_propensity(np.array([0.002, 1.0]), 20, 500).round(4).tolist()
    [0.0501, 1.0]
    """
    b = np.asarray(propensity, dtype=np.float64)
    others = (1.0 - b) * (n_candidates - 1) / max(n_items - 1, 1)
    return b / (b + others)


def sample_candidates(
    logged: NDArray[np.int64], n_items: int, k: int, *, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``k`` distinct catalogue rows per decision: the logged one plus uniform others, shuffled.

    Parameters
    ----------
    logged : ndarray of int, shape (n,)
        Catalogue row of each logged item (in ``range(n_items)``).
    n_items : int
        Catalogue size ``N``.
    k : int
        Candidates per decision, ``1 <= k <= N``.
    rng : numpy.random.Generator

    Returns
    -------
    candidates : ndarray of int, shape (n, k)
    action : ndarray of int, shape (n,)
        Column of the logged item in ``candidates``.

    Examples
    --------
    >>> c, a = sample_candidates(np.array([3, 7]), 10, 4, rng=np.random.default_rng(0))
    >>> c.shape, c[np.arange(2), a].tolist()
    ((2, 4), [3, 7])
    """
    logged = np.asarray(logged, dtype=np.int64)
    n = len(logged)
    if not 1 <= k <= n_items:
        raise ConfigError(f"n_candidates must lie in [1, {n_items}] (the catalogue); got {k}")
    others = np.empty((n, k - 1), np.int64)
    if 2 * (k - 1) > n_items - 1:  # dense: rank uniform keys over the rest of the catalogue
        step = max(1, _CHUNK_CELLS // n_items)
        for lo in range(0, n, step):
            keys = rng.random((min(step, n - lo), n_items - 1))
            others[lo : lo + step] = np.argpartition(keys, k - 2, axis=1)[:, : k - 1]
    else:  # sparse: draw with replacement and redraw repeats
        others[:] = rng.integers(n_items - 1, size=(n, k - 1))
        while True:
            srt = np.sort(others, axis=1)
            bad = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
            if bad.size == 0:
                break
            others[bad] = rng.integers(n_items - 1, size=(bad.size, k - 1))
    others += others >= logged[:, None]  # skip the logged row: uniform over the other N - 1
    action = rng.integers(k, size=n)
    rows = np.arange(n)
    cands = np.concatenate([logged[:, None], others], axis=1)
    cands[rows, 0] = cands[rows, action]  # swap the logged item into its random column
    cands[rows, action] = logged
    return cands, action


def slate_size_of(logs: Logs) -> int:
    """Most rows any logged step (``session_id``, ``step``) holds: the slate size (1: no slates)."""
    frame = logs.frame
    return int(frame.groupby(["session_id", "step"], sort=False).size().max())


def decisions_from_logs(
    simulator: Simulator,
    logs: Logs,
    *,
    n_candidates: int,
    rng: np.random.Generator,
    reward: str = "watch_time",
    gamma: float = 0.9,
    long_watch_threshold: float = 60.0,
    propensities: str = "auto",
) -> DecisionLog:
    """REINFORCE's decision records of ``logs``, observed as ``simulator``'s session env would.

    Parameters
    ----------
    simulator : Simulator
        The fitted simulator (catalogue, state dynamics, observation layout).
    logs : Logs
        The logs (:func:`simkit.logs.read_logs`); with or without a ``propensity`` column.
    n_candidates : int
        ``K``, candidates per decision (use the env's ``n_candidates``).
    rng : numpy.random.Generator
        Draws the other candidates and the logged item's column.
    reward : {"watch_time", "clicks", "long_watch"}
        What a row earns.
    gamma : float
        Discount of the later steps of the session in each row's return.
    long_watch_threshold : float
        Seconds a watch must exceed to count for ``reward="long_watch"``.
    propensities : {"auto", "logged", "none"}
        ``"auto"``: the logged ones when the logs have them; ``"none"``: leave them out (the agent
        must then estimate them, ``propensity_source="estimated"``).

    Returns
    -------
    DecisionLog
        One row per logged impression of an item the simulator knows: ``user`` (n, d_u) and
        ``candidates`` (n, K, d_c) float32 observations, ``action`` (the logged item's column),
        ``reward`` (the discounted return), ``propensity`` (:func:`candidate_propensity`, or
        None), ``slate_id`` (the logged step) and ``position``.

    Raises
    ------
    ConfigError
        For a bad ``reward``, ``gamma``, ``propensities`` or ``n_candidates``.
    LogError
        When ``propensities="logged"`` and the logs have none, or no row shows a known item.

    Warns
    -----
    UserWarning
        When rows show items outside the simulator's catalogue (they are left out, counted).

    Examples
    --------
    >>> log = decisions_from_logs(sim, logs, n_candidates=20,
    ...                           rng=np.random.default_rng(0))               # doctest: +SKIP
    >>> log.candidates.shape                                                  # doctest: +SKIP
    (106625, 20, 31)
    """
    problems = []
    if reward not in REWARDS:
        problems.append(f"reward must be one of {REWARDS}; got {reward!r}")
    if not 0.0 <= gamma <= 1.0:
        problems.append(f"gamma must lie in [0, 1]; got {gamma}")
    if propensities not in ("auto", "logged", "none"):
        problems.append(f"propensities must be 'auto', 'logged' or 'none'; got {propensities!r}")
    if not 1 <= n_candidates <= simulator.n_items:
        problems.append(
            f"n_candidates must lie in [1, {simulator.n_items}] (the simulator's catalogue); "
            f"got {n_candidates}"
        )
    if problems:
        raise ConfigError("decisions_from_logs: " + "; ".join(problems) + ".")
    has_prop = "propensity" in logs.frame and bool(logs.frame["propensity"].notna().all())
    if propensities == "logged" and not has_prop:
        raise LogError(
            "propensities='logged' needs a 'propensity' value on every row; the logs have "
            + ("none" if "propensity" not in logs.frame else "some rows without one")
            + ". Use propensities='none' and let the agent estimate them."
        )
    use_prop = has_prop and propensities != "none"

    sim, frame = simulator, logs.frame
    index = index_logs(frame, sim.catalogue)
    start, _ = user_start_interest(index, sim.catalogue, sim.dynamics)
    ufeat = session_features(frame, index.session_first_row, sim.spec.user_columns, sim.categories)
    context = row_context(frame, sim.spec.user_columns, sim.categories)
    _, states = replay(
        index,
        sim.catalogue,
        start,
        ufeat,
        sim.dynamics,
        capture=np.arange(index.n_steps),
        context=context,
    )
    assert states is not None

    known = np.flatnonzero(index.item_rows < sim.n_items)
    if known.size < index.n_rows:
        warnings.warn(
            f"{index.n_rows - known.size} of {index.n_rows} logged rows show items outside the "
            "simulator's catalogue; they are left out of the decision records (fit the simulator "
            "with an item catalogue that holds them to keep them).",
            stacklevel=2,
        )
    if known.size == 0:
        raise LogError("No logged row shows an item the simulator knows; nothing to learn from.")

    returns = _row_returns(index, reward, gamma, long_watch_threshold)
    cands, action = sample_candidates(index.item_rows[known], sim.n_items, n_candidates, rng=rng)
    layout = ObservationLayout(sim, n_candidates)
    step = index.step_of_row[known]
    user: NDArray[Any] = np.empty((known.size, len(layout.user_names)), np.float32)
    obs_c: NDArray[Any] = np.empty(
        (known.size, n_candidates, len(layout.candidate_names)), np.float32
    )
    chunk = max(1, _CHUNK_CELLS // (n_candidates * len(layout.candidate_names)))
    for lo in range(0, known.size, chunk):
        sl = slice(lo, lo + chunk)
        obs = layout.observe(states.take(step[sl]), cands[sl])
        user[sl], obs_c[sl] = obs["user"], obs["candidates"]

    prop: NDArray[np.float64] | None = None
    if use_prop:
        raw = frame["propensity"].to_numpy(dtype=np.float64)[known]
        prop = candidate_propensity(raw, n_candidates, sim.n_items)
    return DecisionLog(
        user=user,
        candidates=obs_c,
        action=action,
        reward=returns[known],
        propensity=prop,
        slate_id=step.astype(np.int64),
        position=index.position[known],
    )


def _row_returns(index: Any, reward: str, gamma: float, threshold: float) -> NDArray[np.float64]:
    """Each row's reward plus the discounted rewards of its session's later steps."""
    if reward == "watch_time":
        r = index.watch.astype(np.float64)
    elif reward == "clicks":
        r = index.clicked.astype(np.float64)
    else:
        r = (index.watch > threshold).astype(np.float64)
    step_r = np.bincount(index.step_of_row, weights=r, minlength=index.n_steps).astype(np.float64)
    step_return = discounted_returns(step_r, index.continued == 0, gamma)
    return r + (step_return - step_r)[index.step_of_row]


@dataclass(frozen=True, kw_only=True)
class LogsTrainResult:
    """What :func:`train_from_logs` produced.

    Attributes
    ----------
    agent : REINFORCE
    run_dir : Path
    losses : ndarray
        Loss of each update.
    evaluation : EvaluationResult
        The trained agent run in the simulator's session env.
    settings : dict
        What ``run.json`` holds.
    """

    agent: Any
    run_dir: Path
    losses: NDArray[np.float64]
    evaluation: Any
    settings: dict[str, Any]


def train_from_logs(
    simulator_dir: str | os.PathLike[str],
    logs: Logs,
    *,
    n_steps: int,
    out: str | os.PathLike[str],
    rng: np.random.Generator,
    n_candidates: int = 50,
    top_k: int | None = None,
    propensities: str = "auto",
    episodes: int = 200,
    overwrite: bool = False,
    progress: bool = False,
    record: dict[str, Any] | None = None,
) -> LogsTrainResult:
    """Train REINFORCE off-policy on ``logs`` with the top-K correction; evaluate it; write a run.

    What ``simkit train SIM --agent reinforce --logs LOGS`` runs: the logs become decision records
    (:func:`decisions_from_logs`, reward = seconds watched, returns discounted by the agent's
    ``gamma``), :meth:`simkit.agents.reinforce.REINFORCE.learn_from_logs` takes ``n_steps``
    updates with ``correction="topk"`` (``propensity_source="logged"`` when the logs carry
    propensities, else ``"estimated"`` by the behaviour head), and the agent then runs
    ``episodes`` sessions of ``simkit/Session-v0`` with the same ``n_candidates``.

    Parameters
    ----------
    simulator_dir : str or PathLike
        Simulator folder written by ``simkit fit``.
    logs : Logs
        The logs to learn from.
    n_steps : int
        Gradient updates (batches of logged decisions).
    out : str or PathLike
        Run folder: ``agent/``, ``loss.csv``, ``evaluation.csv`` (return and length of each
        evaluation episode) and ``run.json`` (written last).
    rng : numpy.random.Generator
        Candidates, initial weights, batches and the evaluation (separate streams).
    n_candidates : int
        Candidates per decision, in the records and in the evaluation env.
    top_k : int, optional
        K of the top-K correction; by default the logs' slate size.
    propensities : {"auto", "logged", "none"}
        See :func:`decisions_from_logs`.
    episodes : int
        Evaluation episodes in the simulator.
    overwrite, progress : bool
        Replace an existing run folder; show progress bars.
    record : dict, optional
        Extra settings for ``run.json`` (the CLI records its ``--seed``).

    Returns
    -------
    LogsTrainResult

    Raises
    ------
    ConfigError
        ``n_steps`` or ``top_k`` below 1, or bad settings of :func:`decisions_from_logs`.
    ArtifactError
        Missing simulator, or ``out`` exists and ``overwrite`` is false.
    """
    from simkit.agents.base import blas_threads, config_to_json, evaluate
    from simkit.agents.reinforce import REINFORCE
    from simkit.agents.train import RUN_FORMAT_VERSION, make_env
    from simkit.artifacts import atomic_folder, check_output_folder
    from simkit.simulator import Simulator

    if n_steps < 1:
        raise ConfigError(f"--steps (updates) must be at least 1; got {n_steps}.")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k must be at least 1; got {top_k}.")
    check_output_folder(out, overwrite=overwrite, kind="run")  # before the slow part
    sim_dir = Path(simulator_dir).resolve()
    sim = Simulator.load(sim_dir)
    cand_rng, learn_rng, eval_rng = rng.spawn(3)
    start = time.perf_counter()
    k = top_k or slate_size_of(logs)
    agent = REINFORCE(correction="topk", top_k=k)
    decisions = decisions_from_logs(
        sim,
        logs,
        n_candidates=n_candidates,
        rng=cand_rng,
        gamma=agent.config.gamma,
        propensities=propensities,
    )
    source = "logged" if decisions.propensity is not None else "estimated"
    agent = REINFORCE(agent.config, propensity_source=source)
    with blas_threads(1):
        losses = agent.learn_from_logs(decisions, rng=learn_rng, n_steps=n_steps, progress=progress)
    seconds = time.perf_counter() - start
    env = make_env(sim_dir, n_candidates=n_candidates)
    result = evaluate(env, agent, episodes, rng=eval_rng)
    from simkit import __version__

    settings = {
        "format": "simkit-run",
        "format_version": RUN_FORMAT_VERSION,
        "simkit_version": __version__,
        "agent": "reinforce",
        "agent_class": "REINFORCE",
        "learns": True,
        "learned_from": "logs",
        "logs": logs.source,
        "n_decisions": decisions.n_rows,
        "propensity_source": source,
        "top_k": k,
        "simulator": str(sim_dir),
        "n_steps": int(n_steps),
        "n_candidates": int(n_candidates),
        "env": "simkit/Session-v0",
        "reward": "watch_time",
        **dict(record or {}),
        "agent_config": config_to_json(agent.config),
        "evaluation": {
            "episodes": result.n_episodes,
            "mean_return": result.mean_return,
            "return_ci": list(result.return_ci),
            "mean_length": result.mean_length,
            "length_ci": list(result.length_ci),
        },
        "seconds": round(seconds, 3),
    }
    with atomic_folder(out, overwrite=overwrite, kind="run") as tmp:
        agent.save(tmp / "agent")
        _write_rows(tmp / "loss.csv", ("update", "loss"), enumerate(losses.tolist()))
        _write_rows(
            tmp / "evaluation.csv",
            ("episode", "return", "length"),
            zip(range(episodes), result.returns.tolist(), result.lengths.tolist()),
        )
        (tmp / "run.json").write_text(json.dumps(settings, indent=2))
    return LogsTrainResult(
        agent=agent, run_dir=Path(out), losses=losses, evaluation=result, settings=settings
    )


def _write_rows(path: Path, header: tuple[str, ...], rows: Any) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
