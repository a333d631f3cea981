"""Teacher forcing: replay logged sessions through :mod:`simkit.state` to get model rows.

All sessions advance together, one array step per position in the session: the logged items and
responses drive :func:`simkit.state.transition`, and :func:`simkit.state.click_features` /
:func:`simkit.state.continue_features` record the rows the models learn from (and that validation
scores on held-out logs). Rows sharing ``(session_id, step)`` form one slate: they see the same state,
and the state moves after the slate with its clicked item (the first by position) and total watch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.state import (
    Catalogue,
    click_features,
    continue_features,
    initial_state,
    transition,
)

__all__ = ["ReplayRows", "SessionStart", "replay_sessions", "session_start_interest"]


@dataclass(frozen=True)
class SessionStart:
    """Where each session starts: interest ``z0``, ``hist_n`` = log1p(history size), user row."""

    z0: NDArray[np.float64]
    hist_n: NDArray[np.float64]
    user_codes: NDArray[np.int64]


def session_start_interest(
    user_of_session: NDArray[np.int64],
    click_session_codes: NDArray[np.int64],
    click_item_rows: NDArray[np.int64],
    embedding: NDArray[np.float64],
    prior_mean: NDArray[np.float64],
    *,
    shrinkage: float,
) -> SessionStart:
    """Initial interest of each session from the user's *other* sessions (leave-one-session-out).

    ``z0 = (sum of e_a over the user's clicks in other sessions + k m) / (their count + k)``, with
    ``m`` the population mean and ``k = shrinkage``: users with little history stay near the mean,
    and no session's own clicks leak into its start state.
    """
    n_sessions = len(user_of_session)
    n_users = int(user_of_session.max()) + 1 if n_sessions else 0
    d = embedding.shape[1]
    sess_sum = np.zeros((n_sessions, d))
    np.add.at(sess_sum, click_session_codes, embedding[click_item_rows])
    sess_n = np.bincount(click_session_codes, minlength=n_sessions).astype(np.float64)
    user_sum = np.zeros((n_users, d))
    np.add.at(user_sum, user_of_session, sess_sum)
    user_n = np.bincount(user_of_session, weights=sess_n, minlength=n_users)
    other_sum = user_sum[user_of_session] - sess_sum
    other_n = user_n[user_of_session] - sess_n
    z0 = (other_sum + shrinkage * prior_mean) / (other_n + shrinkage)[:, None]
    return SessionStart(z0=z0, hist_n=np.log1p(other_n), user_codes=user_of_session)


@dataclass(frozen=True)
class ReplayRows:
    """Model rows of a replayed log.

    ``x_click`` has one row per impression in log order; ``x_continue`` one row per step (slate)
    with ``continued`` = another step follows in the session; ``step_of_row`` maps impressions to
    steps and ``session_of_step`` steps to sessions.
    """

    x_click: NDArray[np.float32]
    clicked: NDArray[np.int8]
    watch: NDArray[np.float64]
    item_rows: NDArray[np.int64]
    x_continue: NDArray[np.float32]
    continued: NDArray[np.int8]
    step_of_row: NDArray[np.int64]
    session_of_step: NDArray[np.int64]


def replay_sessions(
    frame: pd.DataFrame,
    catalogue: Catalogue,
    start: SessionStart,
    user_features: NDArray[np.float32],
    *,
    eta: float,
    watch_scale: float | None = None,
) -> ReplayRows:
    """Replay a canonical log frame (sorted by session, step, position) through the state.

    ``start`` and ``user_features`` are per session, in the order of ``session_id`` codes.
    """
    session_codes = pd.factorize(frame["session_id"], sort=False)[0].astype(np.int64)
    n_rows = len(frame)
    new_step = np.ones(n_rows, dtype=bool)
    step = frame["step"].to_numpy()
    new_step[1:] = (session_codes[1:] != session_codes[:-1]) | (step[1:] != step[:-1])
    step_of_row = np.cumsum(new_step) - 1
    first_row = np.flatnonzero(new_step)
    n_steps = len(first_row)
    session_of_step = session_codes[first_row]
    new_session = np.ones(n_steps, dtype=bool)
    new_session[1:] = session_of_step[1:] != session_of_step[:-1]
    session_first_step = np.flatnonzero(new_session)
    t_of_step = np.arange(n_steps) - np.repeat(
        session_first_step, np.diff(np.r_[session_first_step, n_steps])
    )
    last_step = np.r_[session_first_step[1:] - 1, n_steps - 1]
    continued = np.ones(n_steps, dtype=np.int8)
    continued[last_step] = 0

    item_rows = catalogue.rows(frame["item_id"].to_numpy())
    clicked = frame["clicked"].to_numpy().astype(np.int8)
    watch = frame["watch_time"].to_numpy(dtype=np.float64)
    repeats = frame.groupby([session_codes, item_rows], sort=False).cumcount().to_numpy()
    position = (
        frame["position"].to_numpy(dtype=np.int64)
        if "position" in frame
        else np.zeros(n_rows, np.int64)
    )

    # per-step response: total watch, any click, the first clicked item (else the first shown)
    step_watch = np.bincount(step_of_row, weights=watch, minlength=n_steps)
    step_click = np.bincount(step_of_row, weights=clicked, minlength=n_steps) > 0
    click_pos = np.where(clicked > 0, np.arange(n_rows), n_rows)
    first_click = np.minimum.reduceat(click_pos, first_row)
    step_item_row = np.where(first_click < n_rows, first_click, first_row)
    step_item = item_rows[step_item_row]

    state = initial_state(start.z0, start.hist_n, user_features, None)
    x_click = np.empty((n_rows, 0), np.float32)
    x_continue = np.empty((n_steps, 0), np.float32)
    row_order = np.argsort(t_of_step[step_of_row], kind="stable")
    row_t = t_of_step[step_of_row][row_order]
    step_order = np.argsort(t_of_step, kind="stable")
    step_t = t_of_step[step_order]
    max_t = int(t_of_step.max()) if n_steps else -1
    row_bounds = np.searchsorted(row_t, np.arange(max_t + 2))
    step_bounds = np.searchsorted(step_t, np.arange(max_t + 2))
    for t in range(max_t + 1):
        rows = row_order[row_bounds[t] : row_bounds[t + 1]]
        steps = step_order[step_bounds[t] : step_bounds[t + 1]]
        row_state = state.take(session_codes[rows])
        feats = click_features(
            row_state, catalogue, item_rows[rows], repeats=repeats[rows], position=position[rows]
        )
        if x_click.shape[1] == 0:
            x_click = np.empty((n_rows, feats.shape[1]), np.float32)
        x_click[rows] = feats
        sessions = session_of_step[steps]
        sub = state.take(sessions)
        transition(
            sub,
            catalogue.embedding,
            step_item[steps],
            step_click[steps].astype(np.int64),
            step_watch[steps],
            eta=eta,
            watch_scale=watch_scale,
        )
        state.put(sessions, sub)
        cont = continue_features(sub)
        if x_continue.shape[1] == 0:
            x_continue = np.empty((n_steps, cont.shape[1]), np.float32)
        x_continue[steps] = cont
    return ReplayRows(
        x_click=x_click,
        clicked=clicked,
        watch=watch,
        item_rows=item_rows,
        x_continue=x_continue,
        continued=continued,
        step_of_row=step_of_row,
        session_of_step=session_of_step,
    )
