"""Policies for the ranking check, runnable both in a :class:`~simkit.simulator.Simulator` and in
the synthetic :class:`~simkit.synthetic.World`.

A policy sees a :class:`PolicyContext`: the simulator (its models and catalogue), simkit's state of
each running session and ``K`` candidate items (simulator catalogue rows) drawn uniformly without
replacement from the catalogue each step; it returns its choice distribution over the candidates
(:meth:`Policy.proba`, rows summing to 1). A deterministic policy returns one-hot rows.

In the simulator the state is the simulator's own. In the world, a simkit state is kept *alongside*
the world's true state: it starts like replay starts a session of that user (interest from the
user's held-out sessions) and moves with :func:`simkit.state.transition` on the responses the world
produced, so a policy that reads simkit's state (greedy on the click model, the logging-policy model)
acts in the world on exactly what it would see in deployment.

Built-in policies: uniform random, most popular (training impressions), greedy on the click model,
greedy on expected watch time (click probability x predicted watch), and :class:`LoggingPolicyModel`
(a conditional-logit model of the logging policy fitted on the held-out logs).

References
----------
.. [1] McFadden. "Conditional logit analysis of qualitative choice behavior." In Frontiers in
   Econometrics, 1973 (the logging-policy model).
.. [2] Ie, Hsu, Mladenov et al. "RecSim: a configurable simulation platform for recommender
   systems." arXiv:1909.04847, 2019 (comparing policies in a simulator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

from simkit.candidates import uniform_candidates
from simkit.session import Streams, advance, immediate_values, step
from simkit.simulator import Simulator
from simkit.state import SessionState
from simkit.validation.sessions import HeldoutSessions, teacher_forced_states

if TYPE_CHECKING:
    from simkit.synthetic import World

__all__ = [
    "GreedyClickPolicy",
    "GreedyWatchPolicy",
    "LoggingPolicyModel",
    "Policy",
    "PolicyContext",
    "PopularPolicy",
    "RandomPolicy",
    "SessionValues",
    "choose",
    "default_policies",
    "fit_logging_policy",
    "run_in_simulator",
    "run_in_world",
]


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may look at: the simulator, simkit's state and the candidates.

    Attributes
    ----------
    sim
        The simulator (models, catalogue with embeddings and popularity).
    state
        simkit's state of each running session (in the world: kept alongside the true state).
    candidates
        Simulator catalogue rows offered to each session, shape (n, K).
    """

    sim: Simulator
    state: SessionState
    candidates: NDArray[np.int64]


@runtime_checkable
class Policy(Protocol):
    """A policy over ``K`` candidates: ``proba(ctx)`` gives its choice distribution, (n, K)."""

    @property
    def name(self) -> str:
        """Unique name shown in the report."""
        ...

    def proba(self, ctx: PolicyContext) -> NDArray[np.float64]:
        """Probability of choosing each candidate, shape (n, K), rows summing to 1."""
        ...


def _one_hot(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """Probability 1 on each row's highest score.

    Examples
    --------
    >>> _one_hot(np.array([[0.1, 0.7, 0.2]])).tolist()
    [[0.0, 1.0, 0.0]]
    """
    out = np.zeros_like(scores, dtype=np.float64)
    out[np.arange(len(scores)), np.argmax(scores, axis=1)] = 1.0
    return out


def _softmax(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row-wise softmax of scores.

    Examples
    --------
    >>> _softmax(np.array([[0.0, np.log(3.0)]])).round(3).tolist()
    [[0.25, 0.75]]
    """
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class RandomPolicy:
    """Uniform over the candidates."""

    name: str = "random"

    def proba(self, ctx: PolicyContext) -> NDArray[np.float64]:
        """Uniform choice distribution."""
        k = ctx.candidates.shape[1]
        return np.full(ctx.candidates.shape, 1.0 / k)


@dataclass(frozen=True)
class PopularPolicy:
    """The candidate with the most training impressions."""

    name: str = "popular"

    def proba(self, ctx: PolicyContext) -> NDArray[np.float64]:
        """One-hot on the most popular candidate."""
        return _one_hot(ctx.sim.catalogue.log_popularity[ctx.candidates].astype(np.float64))


@dataclass(frozen=True)
class GreedyClickPolicy:
    """The candidate with the highest click probability under the simulator's click model."""

    name: str = "greedy-click"

    def proba(self, ctx: PolicyContext) -> NDArray[np.float64]:
        """One-hot on the most clickable candidate."""
        return _one_hot(ctx.sim.click_proba(ctx.state, ctx.candidates))


@dataclass(frozen=True)
class GreedyWatchPolicy:
    """The candidate with the highest expected watch (:func:`simkit.session.immediate_values`)."""

    name: str = "greedy-watch"

    def proba(self, ctx: PolicyContext) -> NDArray[np.float64]:
        """One-hot on the candidate with the largest ``p_click x E[watch | click]``."""
        return _one_hot(immediate_values(ctx.sim, ctx.state, ctx.candidates, reward="watch_time"))


@dataclass(frozen=True)
class LoggingPolicyModel:
    """A conditional-logit model of the logging policy, restricted to the candidates.

    ``score(state, item) = alpha[item] + beta_dot * (z . e_item) + beta_shown * [item shown in the
    session]``, and ``proba`` is the softmax of the scores over the candidates. The per-item
    intercepts absorb everything static the logger scored items by (popularity, quality, any item
    feature); ``z . e`` lets it follow the session's interest, ``shown`` its repeat avoidance. Fit
    with :func:`fit_logging_policy`.
    """

    alpha: NDArray[np.float64]
    beta_dot: float
    beta_shown: float
    n_decisions: int
    name: str = "logging-model"

    def scores(self, state: SessionState, items: NDArray[np.int64], emb: NDArray) -> NDArray:
        """Scores of catalogue rows ``items`` (n, K) in ``state``."""
        dot = np.einsum("nd,nkd->nk", state.z, emb[items])
        shown = (
            np.take_along_axis(state.shown, items, axis=1) > 0  # type: ignore[arg-type]
            if state.shown is not None
            else np.zeros(items.shape, dtype=bool)
        )
        return self.alpha[items] + self.beta_dot * dot + self.beta_shown * shown

    def proba(self, ctx: PolicyContext) -> NDArray[np.float64]:
        """Softmax of the fitted scores over the candidates."""
        return _softmax(self.scores(ctx.state, ctx.candidates, ctx.sim.catalogue.embedding))

    def describe(self) -> str:
        """One sentence for the report."""
        return (
            "a conditional-logit model of the logging policy fitted on "
            f"{self.n_decisions:,} held-out decisions: a per-item intercept (everything static "
            f"the logger used), {self.beta_dot:+.2f} x (interest . item embedding) and "
            f"{self.beta_shown:+.2f} if the item was already shown in the session; softmax over "
            "the candidates"
        )


def fit_logging_policy(
    sim: Simulator,
    held: HeldoutSessions,
    *,
    rng: np.random.Generator,
    max_decisions: int = 5000,
    l2: float = 1e-3,
) -> LoggingPolicyModel:
    """Fit :class:`LoggingPolicyModel` by maximum likelihood on logged decisions.

    Each logged step is a choice among the whole catalogue; the states come from teacher forcing
    (:func:`simkit.validation.sessions.teacher_forced_states`). Penalised (``l2`` on the intercepts)
    and solved with L-BFGS.

    Parameters
    ----------
    sim
        The simulator (catalogue and state code).
    held
        Held-out sessions.
    rng
        Generator for the subsample of decisions.
    max_decisions
        Logged steps used at most (a uniform subsample beyond that).
    l2
        Ridge penalty on the item intercepts (keeps unseen items finite).

    Returns
    -------
    LoggingPolicyModel
    """
    n_steps = len(held.step_item)
    steps = np.arange(n_steps)
    if n_steps > max_decisions:
        steps = np.sort(rng.choice(n_steps, size=max_decisions, replace=False))
    state = teacher_forced_states(sim, held, steps)
    chosen = held.step_item[steps]
    n_items = sim.n_items
    emb = sim.catalogue.embedding[:n_items]
    dot = np.einsum("nd,id->ni", state.z, emb)
    shown = (state.shown[:, :n_items] > 0).astype(np.float64)
    keep = chosen < n_items
    dot, shown, chosen = dot[keep], shown[keep], chosen[keep]
    m = len(chosen)
    counts = np.bincount(chosen, minlength=n_items).astype(np.float64)
    rows = np.arange(m)

    def loss(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        alpha, bd, bs = theta[:n_items], theta[n_items], theta[n_items + 1]
        s = alpha[None, :] + bd * dot + bs * shown
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        z = e.sum(axis=1, keepdims=True)
        prob = e / z
        ll = s[rows, chosen].sum() - np.log(z).sum()
        g_alpha = counts - prob.sum(axis=0)
        g_bd = dot[rows, chosen].sum() - (prob * dot).sum()
        g_bs = shown[rows, chosen].sum() - (prob * shown).sum()
        value = -ll / m + 0.5 * l2 * (alpha**2).sum()
        grad = -np.r_[g_alpha, g_bd, g_bs] / m + np.r_[l2 * alpha, 0.0, 0.0]
        return float(value), grad

    theta0 = np.r_[np.log((counts + 0.5) / (counts + 0.5).sum()), 0.0, 0.0]
    res = optimize.minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 300})
    alpha = np.r_[res.x[:n_items], res.x[:n_items].min()]
    return LoggingPolicyModel(
        alpha=alpha,
        beta_dot=float(res.x[n_items]),
        beta_shown=float(res.x[n_items + 1]),
        n_decisions=m,
    )


def default_policies(logging_model: LoggingPolicyModel | None = None) -> list[Policy]:
    """Random, popular, greedy on clicks, greedy on watch time, and the logging-policy model."""
    out: list[Policy] = [RandomPolicy(), PopularPolicy(), GreedyClickPolicy(), GreedyWatchPolicy()]
    if logging_model is not None:
        out.append(logging_model)
    return out


def choose(policy: Policy, ctx: PolicyContext, *, rng: np.random.Generator) -> NDArray[np.int64]:
    """Sample one candidate index per session from ``policy.proba(ctx)``."""
    prob = np.asarray(policy.proba(ctx), dtype=np.float64)
    if prob.shape != ctx.candidates.shape:
        raise ValueError(
            f"policy {policy.name!r} returned probabilities of shape {prob.shape}; expected "
            f"{ctx.candidates.shape} (one row per session, one column per candidate)."
        )
    cum = np.cumsum(prob, axis=1)
    draw = rng.random(len(prob))[:, None] * cum[:, -1:]
    return np.minimum((cum <= draw).sum(axis=1), prob.shape[1] - 1)


@dataclass(frozen=True, kw_only=True)
class SessionValues:
    """Per-session totals of a policy's run (arrays over sessions)."""

    watch: NDArray[np.float64]
    clicks: NDArray[np.float64]
    length: NDArray[np.float64]


def run_in_simulator(
    sim: Simulator,
    policy: Policy,
    held: HeldoutSessions,
    users: NDArray[np.int64],
    *,
    rng: np.random.Generator,
    n_candidates: int = 20,
    max_steps: int = 200,
) -> SessionValues:
    """Run ``policy`` in the simulator for one session per entry of ``users``.

    Parameters
    ----------
    sim
        The simulator.
    policy
        The policy.
    held
        Held-out sessions (each user's start state).
    users
        User codes into ``held.user_ids``, one per session.
    rng
        Generator: candidates, choices, responses and continuation draw from their own streams.
        Runs of different policies from copies of one generator share candidates and users.
    n_candidates
        Candidates per step, uniform without replacement over the catalogue.
    max_steps
        Truncation of a session.

    Returns
    -------
    SessionValues
    """
    cand_rng, choice_rng, response_rng, cont_rng = rng.spawn(4)
    streams = Streams(
        users=cand_rng, candidates=cand_rng, click=response_rng, watch=response_rng, leave=cont_rng
    )
    n = len(users)
    alive = np.arange(n)
    state = held.new_session_state(np.asarray(users), sim.n_items)
    out = SessionValues(watch=np.zeros(n), clicks=np.zeros(n), length=np.zeros(n))
    for _ in range(max_steps):
        if len(alive) == 0:
            break
        cands = uniform_candidates(len(alive), sim.n_items, n_candidates, rng=cand_rng)
        idx = choose(policy, PolicyContext(sim, state, cands), rng=choice_rng)
        result = step(sim, state, cands[np.arange(len(alive)), idx], streams=streams)
        out.watch[alive] += result.watch[:, 0]
        out.clicks[alive] += result.click[:, 0]
        out.length[alive] += 1
        keep = np.flatnonzero(~result.terminated)
        alive, state = alive[keep], state.take(keep)
    return out


def run_in_world(
    world: World,
    sim: Simulator,
    policy: Policy,
    held: HeldoutSessions,
    users: NDArray[np.int64],
    *,
    rng: np.random.Generator,
    n_candidates: int = 20,
    max_steps: int | None = None,
) -> SessionValues:
    """Run ``policy`` in the synthetic world, keeping simkit's state alongside the true one.

    The world's users are matched by id (``held.user_ids``); simkit's state of each session starts
    like replay's (the user's held-out sessions) and moves with :func:`simkit.state.transition` on
    the world's responses. Candidates are drawn uniformly from the world's items and mapped to the
    simulator's catalogue rows for the policy.

    Parameters
    ----------
    world
        The synthetic world the logs came from.
    sim, policy, held, users, rng, n_candidates
        As :func:`run_in_simulator`.
    max_steps
        Truncation; the world's ``max_steps`` by default.

    Returns
    -------
    SessionValues

    Raises
    ------
    ValueError
        When a held-out user is not one of the world's users.
    """
    import pandas as pd

    cand_rng, choice_rng, response_rng = rng.spawn(3)
    world_rows = pd.Index(world.user_ids).get_indexer(held.user_ids[np.asarray(users)])
    if (world_rows < 0).any():
        raise ValueError(
            f"{int((world_rows < 0).sum())} sessions belong to users the world does not have; "
            "pass the world the held-out logs were generated from."
        )
    max_steps = max_steps or world.config.max_steps
    sim_row_of_world = sim.catalogue.rows(world.item_ids)
    n_world_items = len(world.item_ids)
    n = len(users)
    alive = np.arange(n)
    truth = world.initial_state(world_rows)
    state = held.new_session_state(np.asarray(users), sim.n_items)
    out = SessionValues(watch=np.zeros(n), clicks=np.zeros(n), length=np.zeros(n))
    for _ in range(max_steps):
        if len(alive) == 0:
            break
        cands_w = uniform_candidates(len(alive), n_world_items, n_candidates, rng=cand_rng)
        cands = sim_row_of_world[cands_w]
        idx = choose(policy, PolicyContext(sim, state, cands), rng=choice_rng)
        rows = np.arange(len(alive))
        click, watch, cont, _, _ = world.step(truth, cands_w[rows, idx], rng=response_rng)
        advance(state, sim, cands[rows, idx][:, None], click[:, None], watch[:, None])
        out.watch[alive] += watch
        out.clicks[alive] += click
        out.length[alive] += 1
        keep = np.flatnonzero(cont)
        alive, truth, state = alive[keep], truth.take(keep), state.take(keep)
    return out
