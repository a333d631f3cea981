"""The one batched step of simulated users: responses, the slate rule, transition, leaving.

Every loop that moves users through a simulator calls :func:`step`: the Gymnasium envs, the
validation's simulated sessions and policy rollouts, agents' evaluations. A step shows each of ``n``
sessions a slate of ``s`` catalogue rows and

1. scores the click model on :func:`simkit.state.click_features` rows (every slot scored at the
   given positions; position 0 by default, the examination of later slots coming from the cascade);
2. samples the clicks (one item: a Bernoulli draw; slates: a cascade with examination
   probabilities ``position_bias``, stopping at the first click) and the watch time of clicked
   slots, or takes logged responses instead (teacher forcing);
3. reduces the slate to one state move by :func:`reduce_slates` (the first clicked item, else the
   first shown; the watch times add up) and applies :func:`simkit.state.transition`, counting every
   shown slot in the repeat memory;
4. scores the continuation model on :func:`simkit.state.continue_features` of the moved state and
   samples who leaves.

Replay (:mod:`simkit.replay`) reduces logged slates with the same :func:`reduce_slates`, and a
contract test pins that stepping a logged session with its logged responses reproduces replay's
model rows exactly. Nothing here imports gymnasium.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from simkit.state import SessionState, continue_features, transition

if TYPE_CHECKING:
    from simkit.simulator import Simulator

__all__ = [
    "REWARDS",
    "StepResult",
    "Streams",
    "advance",
    "immediate_values",
    "reduce_slates",
    "reward_of",
    "step",
    "values_of_rows",
]

REWARDS = ("watch_time", "clicks", "long_watch")


@dataclass(frozen=True)
class Streams:
    """Independent random streams, one per stochastic part.

    Draws are batched over the sessions that need them, in session order, so a batch of one
    session consumes each stream exactly like a single-session run: the same seed gives the same
    trajectory in the single and the vector env.
    """

    users: np.random.Generator
    candidates: np.random.Generator
    click: np.random.Generator
    watch: np.random.Generator
    leave: np.random.Generator

    @classmethod
    def spawn(cls, rng: np.random.Generator) -> Streams:
        """Five child generators of ``rng`` (its own state is not advanced)."""
        return cls(*rng.spawn(5))


@dataclass(frozen=True)
class StepResult:
    """What one step did (arrays over sessions; slots last).

    Attributes
    ----------
    items
        Catalogue rows shown, (n, s).
    x_click
        Click-model rows of the shown slots in the state before the step, (n * s, F).
    p_click, examined, click, watch
        Per slot: click probability, whether the slot was examined, click (0/1), watch seconds.
    x_continue
        Continuation-model rows of the state after the transition, (n, F_c).
    p_continue, terminated
        Per session: probability of another step, and whether the user left.
    """

    items: NDArray[np.int64]
    x_click: NDArray[np.float32]
    p_click: NDArray[np.float64]
    examined: NDArray[np.bool_]
    click: NDArray[np.int64]
    watch: NDArray[np.float64]
    x_continue: NDArray[np.float32]
    p_continue: NDArray[np.float64]
    terminated: NDArray[np.bool_]


def reduce_slates(
    clicked: NDArray, watch: NDArray[np.float64], first_row: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.float64]]:
    """The slate rule: which shown row moves the state, whether the slate was clicked, its watch.

    Rows ``first_row[i]:first_row[i + 1]`` form slate ``i`` (in position order); the state moves
    with the first clicked row, else the first shown row, and the slate's watch times add up.

    Parameters
    ----------
    clicked, watch
        Per shown row: click (0/1) and watch seconds.
    first_row
        First row of each slate (increasing, starting at 0).

    Returns
    -------
    moved_row, any_click, total_watch
        Per slate.

    Examples
    --------
    >>> reduce_slates(np.array([0, 1, 1, 0]), np.array([0.0, 5.0, 2.0, 0.0]), np.array([0, 3]))
    (array([1, 3]), array([ True, False]), array([7., 0.]))
    """
    clicked = np.asarray(clicked)
    n_rows, n_slates = len(clicked), len(first_row)
    if n_slates == 0:
        return np.empty(0, np.int64), np.empty(0, bool), np.empty(0)
    slate_of_row = np.repeat(np.arange(n_slates), np.diff(np.r_[first_row, n_rows]))
    total = np.bincount(slate_of_row, weights=watch, minlength=n_slates).astype(np.float64)
    click_pos = np.where(clicked > 0, np.arange(n_rows), n_rows)
    first_click = np.minimum.reduceat(click_pos, first_row)
    any_click = first_click < n_rows
    return np.where(any_click, first_click, first_row).astype(np.int64), any_click, total


def advance(
    state: SessionState,
    sim: Simulator,
    items: NDArray[np.int64],
    click: NDArray,
    watch: NDArray[np.float64],
) -> None:
    """Move ``state`` in place after showing slates ``items`` (n, s) with the given responses.

    The slate is reduced by :func:`reduce_slates`, the state moves by
    :func:`simkit.state.transition`, and every shown slot counts in the repeat memory.
    """
    n, s = items.shape
    first = np.arange(n, dtype=np.int64) * s
    moved, any_click, total = reduce_slates(
        np.asarray(click).ravel(), np.asarray(watch, dtype=np.float64).ravel(), first
    )
    flat = items.ravel()
    transition(
        state,
        sim.catalogue.embedding,
        flat[moved],
        any_click.astype(np.int64),
        total,
        eta=sim.dynamics.eta,
        watch_scale=sim.dynamics.watch_scale,
    )
    if s > 1 and state.shown is not None:
        # transition() counts the item that moved the state; the slate's other slots were shown too
        others = np.ones(n * s, dtype=bool)
        others[moved] = False
        state.shown[np.repeat(np.arange(n), s)[others], flat[others]] += 1


def step(
    sim: Simulator,
    state: SessionState,
    items: NDArray[np.int64],
    *,
    streams: Streams | None = None,
    position: NDArray[np.int64] | None = None,
    position_bias: NDArray[np.float64] | None = None,
    active: NDArray[np.int64] | None = None,
    logged_click: NDArray | None = None,
    logged_watch: NDArray[np.float64] | None = None,
    click_rule: str = "cascade",
) -> StepResult:
    """Show slates ``items`` (n, s) to ``n`` sessions, respond, move ``state`` in place.

    Parameters
    ----------
    sim
        The simulator.
    state
        The sessions' state; moved in place.
    items
        Catalogue rows to show, (n, s) (or (n,) for one item each).
    streams
        Random streams for sampled responses and leaving; ``None`` with logged responses (then
        nobody is sampled to leave and ``terminated`` is all False).
    position
        Slate position fed to the click model per slot (zeros by default).
    position_bias
        Examination probability of each slot for the cascade (slates of more than one item).
    active
        Sessions that draw random numbers (all when None); the others get no click and are
        meant to be overwritten by the caller (vector autoreset).
    logged_click, logged_watch
        Logged responses (n, s) to use instead of sampling (teacher forcing).
    click_rule
        How a slate of more than one item is clicked. ``"cascade"`` (the envs): every slot is
        scored at ``position`` (0 by default), examined with ``position_bias`` and the scan stops
        at the first click. The two others replay *logged* slates whose click model saw the logged
        positions (``position``), so its probabilities are already the per-slot marginals:
        ``"independent"`` draws each slot on its own (a bandit page), ``"one"`` draws at most one
        click per slate, slot ``j`` with probability ``p_j`` (impression lists with one click).

    Without a continuation model (one decision per session) every session terminates after the
    step; without a watch model the watch times are zeros.

    Returns
    -------
    StepResult

    Raises
    ------
    ValueError
        When neither streams nor logged responses are given, or a slate needs a position bias.
    """
    items = np.asarray(items, dtype=np.int64)
    items = items.reshape(len(items), -1) if items.ndim == 1 else items
    n, s = items.shape
    forced = logged_click is not None
    if not forced and streams is None:
        raise ValueError("step() needs streams to sample responses, or logged_click/logged_watch.")
    x = sim.click_features(state, items, position)
    p_click = sim.click.proba(x).reshape(n, s)
    act = np.arange(n) if active is None else np.asarray(active, dtype=np.int64)
    m = len(act)
    if forced:
        click = np.asarray(logged_click, dtype=np.int64).reshape(n, s)
        watch = np.asarray(
            np.zeros((n, s)) if logged_watch is None else logged_watch, dtype=np.float64
        ).reshape(n, s)
        examined = np.ones((n, s), dtype=bool)
    else:
        assert streams is not None
        click = np.zeros((n, s), np.int64)
        examined = np.zeros((n, s), dtype=bool)
        if click_rule not in ("cascade", "independent", "one"):
            raise ValueError(
                f"click_rule must be 'cascade', 'independent' or 'one'; got {click_rule!r}."
            )
        if s == 1:
            examined[act] = True
            click[act, 0] = streams.click.random(m) < p_click[act, 0]
        elif click_rule == "independent":
            examined[act] = True
            click[act] = streams.click.random((m, s)) < p_click[act]
        elif click_rule == "one":
            examined[act] = True
            p = p_click[act]
            cum = np.cumsum(p, axis=1)
            cum = cum / np.maximum(cum[:, -1:], 1.0)  # more than one click expected: normalise
            u = streams.click.random(m)
            slot = (cum < u[:, None]).sum(axis=1)
            hit = slot < s
            click[act[hit], slot[hit]] = 1
        else:
            if position_bias is None:
                raise ValueError(
                    "A slate of more than one item needs position_bias for its cascade."
                )
            ex = streams.click.random((m, s)) < position_bias[:s]
            hit = ex & (streams.click.random((m, s)) < p_click[act])
            first = np.where(hit.any(axis=1), hit.argmax(axis=1), s)
            before = np.arange(s) <= first[:, None]  # the cascade stops at the first click
            examined[act] = ex & before
            click[act] = hit & before
        watch = np.zeros((n, s))
        hit_rows, hit_slots = np.nonzero(click)
        if len(hit_rows):
            watch[hit_rows, hit_slots] = sim.sample_watch(
                x[hit_rows * s + hit_slots], items[hit_rows, hit_slots], rng=streams.watch
            )
    advance(state, sim, items, click, watch)
    x_cont = continue_features(state)
    terminated = np.zeros(n, dtype=bool)
    if sim.cont is None:  # one decision per session: a contextual bandit
        p_continue = np.zeros(n)
        if not forced:
            terminated[act] = True
    else:
        p_continue = sim.cont.proba(x_cont)
        if not forced and streams is not None:
            terminated[act] = streams.leave.random(m) >= p_continue[act]
    return StepResult(
        items=items,
        x_click=x,
        p_click=p_click,
        examined=examined,
        click=click,
        watch=watch,
        x_continue=x_cont,
        p_continue=p_continue,
        terminated=terminated,
    )


def reward_of(
    kind: str, click: NDArray, watch: NDArray[np.float64], *, long_watch_threshold: float = 60.0
) -> NDArray[np.float64]:
    """Reward per session summed over the slate: ``watch_time``, ``clicks`` or ``long_watch``.

    Examples
    --------
    >>> reward_of("long_watch", np.array([[1, 1]]), np.array([[90.0, 10.0]]))
    array([1.])
    """
    if kind == "watch_time":
        return np.asarray(watch, dtype=np.float64).sum(axis=1)
    if kind == "clicks":
        return np.asarray(click).sum(axis=1).astype(np.float64)
    if kind == "long_watch":
        return (np.asarray(watch) > long_watch_threshold).sum(axis=1).astype(np.float64)
    raise ValueError(f"reward must be one of {REWARDS}; got {kind!r}.")


def immediate_values(
    sim: Simulator,
    state: SessionState,
    candidates: NDArray[np.int64],
    *,
    reward: str = "watch_time",
    long_watch_threshold: float = 60.0,
) -> NDArray[np.float64]:
    """Expected immediate reward of showing each candidate (n, K) alone, under the fitted models.

    ``watch_time``: ``p(click) x E[watch | click]`` with ``E`` the mean of the fitted (censored,
    duration-capped) watch distribution; ``clicks``: ``p(click)``; ``long_watch``:
    ``p(click) x P(watch > threshold | click)`` estimated from the same distribution's quantiles.
    This is the one definition of "greedy on expected watch" (policies, agents' warm starts and
    the direct method all use it).
    """
    candidates = np.asarray(candidates, dtype=np.int64).reshape(state.n, -1)
    x = sim.click_features(state, candidates)
    return values_of_rows(
        sim,
        x,
        sim.catalogue.duration[candidates],
        reward=reward,
        long_watch_threshold=long_watch_threshold,
    )


def values_of_rows(
    sim: Simulator,
    x: NDArray[np.float32],
    duration: NDArray[np.float64],
    *,
    reward: str = "watch_time",
    long_watch_threshold: float = 60.0,
) -> NDArray[np.float64]:
    """:func:`immediate_values` from click-model rows ``x`` (n * K, F) and durations (n, K)."""
    shape = np.shape(duration)
    p = sim.click.proba(x).reshape(shape)
    if reward == "clicks" or sim.watch is None:  # no watch model (no dwell): rewards are clicks
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}; got {reward!r}.")
        return p
    pred = sim.watch.predict_log(x).reshape(shape)
    cap = duration
    if reward == "watch_time":
        return p * sim.watch.mean_from_prediction(pred, cap)
    if reward == "long_watch":
        share = sim.watch.share_above(pred, cap, long_watch_threshold)
        return p * share
    raise ValueError(f"reward must be one of {REWARDS}; got {reward!r}.")
