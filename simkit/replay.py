"""Teacher forcing: the one log indexer and replay of logged sessions through :mod:`simkit.state`.

:func:`index_logs` turns a canonical log frame (sorted by session, step, position) into the arrays
every consumer needs: sessions, steps (rows sharing ``(session_id, step)`` form one slate), each
step's response reduced by the slate rule of :func:`simkit.session.reduce_slates` (the first
clicked item moves the state, else the first shown; the slate's watch time adds up), and the
repeat counter of every impression. :func:`replay` then advances all sessions together, one array
step per position in the session: the logged items and responses drive
:func:`simkit.state.transition`, and :func:`simkit.state.click_features` /
:func:`simkit.state.continue_features` record the rows the models learn from (and that validation
scores on held-out logs). A session starts from the interest of the user's *other* sessions
(:func:`session_start_interest`), so no session's own clicks leak into its start state.

Fitting and validation both replay through this module; :mod:`simkit.session` steps simulated users
through the same state code, and a contract test pins that stepping a logged session through
:func:`simkit.session.step` reproduces the rows of :func:`replay` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.session import reduce_slates
from simkit.state import (
    Catalogue,
    Dynamics,
    SessionState,
    click_features,
    continue_features,
    encode_column,
    initial_state,
    transition,
)

if TYPE_CHECKING:
    from simkit.logs import Logs
    from simkit.simulator import Simulator

__all__ = [
    "LogIndex",
    "PreparedLogs",
    "ReplayRows",
    "SessionStart",
    "index_logs",
    "prepare_logs",
    "replay",
    "replay_with",
    "row_context",
    "session_features",
    "session_start_interest",
    "user_start_interest",
]


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
    dynamics: Dynamics,
) -> SessionStart:
    """Initial interest of each session from the user's *other* sessions (leave-one-session-out).

    ``z0 = (sum of e_a over the user's clicks in other sessions + k m) / (their count + k)``, with
    ``m`` the population mean and ``k`` the shrinkage of ``dynamics``: users with little history
    stay near the mean, and no session's own clicks leak into its start state. A "session" without
    clicks of its own (e.g. one appended per user) gets the interest of all the user's clicks.
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
    k = dynamics.shrinkage
    z0 = (other_sum + k * dynamics.prior) / (other_n + k)[:, None]
    return SessionStart(z0=z0, hist_n=np.log1p(other_n), user_codes=user_of_session)


@dataclass(frozen=True)
class LogIndex:
    """A canonical log frame indexed by session and step (arrays over rows, steps or sessions).

    Attributes
    ----------
    session_of_row, step_of_row
        Session code (order of first appearance) and step number of each row (impression).
    step_first_row, session_of_step, t_of_step
        First row of each step, its session, and its position in the session (0, 1, ...).
    session_first_step
        Session ``s`` owns steps ``session_first_step[s]:session_first_step[s + 1]`` (one extra
        entry at the end).
    user_of_session, user_ids
        Each session's user (code into ``user_ids``).
    item_rows, clicked, watch, position, repeats
        Per row: catalogue row, click (0/1), watch seconds, slate position (0 without positions),
        and how often the session showed the item before this row.
    step_item, step_click, step_watch, step_row
        Per step after the slate rule: the catalogue row that moves the state, any click, total
        watch, and the row that item came from.
    continued
        Per step: 1 when another step follows in the session.
    """

    session_of_row: NDArray[np.int64]
    step_of_row: NDArray[np.int64]
    step_first_row: NDArray[np.int64]
    session_of_step: NDArray[np.int64]
    t_of_step: NDArray[np.int64]
    session_first_step: NDArray[np.int64]
    user_of_session: NDArray[np.int64]
    user_ids: NDArray
    item_rows: NDArray[np.int64]
    clicked: NDArray[np.int8]
    watch: NDArray[np.float64]
    position: NDArray[np.int64]
    repeats: NDArray[np.int64]
    step_item: NDArray[np.int64]
    step_click: NDArray[np.int64]
    step_watch: NDArray[np.float64]
    step_row: NDArray[np.int64]
    continued: NDArray[np.int8]

    @property
    def n_rows(self) -> int:
        """Impressions."""
        return len(self.item_rows)

    @property
    def n_steps(self) -> int:
        """Steps (slates)."""
        return len(self.step_first_row)

    @property
    def n_sessions(self) -> int:
        """Sessions."""
        return len(self.user_of_session)

    @property
    def session_length(self) -> NDArray[np.int64]:
        """Steps per session."""
        return np.diff(self.session_first_step)

    @property
    def slates(self) -> bool:
        """Whether some step showed more than one item."""
        return self.n_steps < self.n_rows

    @property
    def session_first_row(self) -> NDArray[np.int64]:
        """First row of each session."""
        return self.step_first_row[self.session_first_step[:-1]]


def index_logs(frame: pd.DataFrame, catalogue: Catalogue) -> LogIndex:
    """Index a canonical log frame (sorted by session, step, position) for replay."""
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
    continued = np.ones(n_steps, dtype=np.int8)
    continued[np.r_[session_first_step[1:] - 1, n_steps - 1] if n_steps else []] = 0

    item_rows = catalogue.rows(frame["item_id"].to_numpy())
    clicked = frame["clicked"].to_numpy().astype(np.int8)
    watch = frame["watch_time"].to_numpy(dtype=np.float64)
    repeats = frame.groupby([session_codes, item_rows], sort=False).cumcount().to_numpy()
    position = (
        frame["position"].to_numpy(dtype=np.int64)
        if "position" in frame
        else np.zeros(n_rows, np.int64)
    )
    step_row, step_click, step_watch = reduce_slates(clicked, watch, first_row)
    user_of_session, user_ids = pd.factorize(
        frame["user_id"].to_numpy()[first_row][session_first_step]
    )
    return LogIndex(
        session_of_row=session_codes,
        step_of_row=step_of_row,
        step_first_row=first_row,
        session_of_step=session_of_step,
        t_of_step=t_of_step,
        session_first_step=np.r_[session_first_step, n_steps].astype(np.int64),
        user_of_session=user_of_session.astype(np.int64),
        user_ids=np.asarray(user_ids),
        item_rows=item_rows,
        clicked=clicked,
        watch=watch,
        position=position,
        repeats=repeats.astype(np.int64),
        step_item=item_rows[step_row],
        step_click=step_click.astype(np.int64),
        step_watch=step_watch,
        step_row=step_row,
        continued=continued,
    )


def session_features(
    frame: pd.DataFrame,
    rows: NDArray[np.int64],
    columns: tuple[str, ...],
    categories: dict[str, list],
) -> NDArray[np.float32]:
    """Encoded ``columns`` at the given rows (one per session), NaN where a column is missing."""
    blocks = [
        (
            encode_column(frame[c].iloc[rows].reset_index(drop=True), categories.get(c))[0]
            if c in frame
            else np.full(len(rows), np.nan, np.float32)
        )
        for c in columns
    ]
    if not blocks:
        return np.empty((len(rows), 0), np.float32)
    return np.column_stack(blocks).astype(np.float32)


def row_context(
    frame: pd.DataFrame, user_columns: tuple[str, ...], categories: dict[str, list]
) -> tuple[NDArray[np.int64], NDArray[np.float32] | None]:
    """The ``ctx_`` columns among ``user_columns`` (their positions) and their encoded value on
    every row, (n_rows, C); ``None`` when there are none. Context belongs to the impression, so
    replay feeds each row its own value instead of the session's first."""
    from simkit.context import context_indices

    idx = context_indices(user_columns)
    if len(idx) == 0:
        return idx, None
    cols = tuple(user_columns[j] for j in idx)
    return idx, session_features(frame, np.arange(len(frame)), cols, categories)


def user_start_interest(
    index: LogIndex, catalogue: Catalogue, dynamics: Dynamics
) -> tuple[SessionStart, SessionStart]:
    """Start interest of each logged session (from the user's other sessions) and of a *new*
    session of each user (from all the user's sessions), as two :class:`SessionStart`."""
    n_sessions, n_users = index.n_sessions, len(index.user_ids)
    owner = np.r_[index.user_of_session, np.arange(n_users)]
    hit = index.clicked > 0
    both = session_start_interest(
        owner,
        index.session_of_row[hit],
        index.item_rows[hit],
        catalogue.embedding,
        dynamics,
    )
    return (
        SessionStart(both.z0[:n_sessions], both.hist_n[:n_sessions], index.user_of_session),
        SessionStart(both.z0[n_sessions:], both.hist_n[n_sessions:], np.arange(n_users)),
    )


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


def replay(
    index: LogIndex,
    catalogue: Catalogue,
    start: SessionStart,
    user_features: NDArray[np.float32],
    dynamics: Dynamics,
    *,
    capture: NDArray[np.int64] | None = None,
    context: tuple[NDArray[np.int64], NDArray[np.float32] | None] | None = None,
) -> tuple[ReplayRows, SessionState | None]:
    """Replay indexed logs through the state; optionally capture the state before some steps.

    Parameters
    ----------
    index
        From :func:`index_logs`.
    catalogue
        The item catalogue (embeddings, features, popularity).
    start, user_features
        Per session, in the order of ``index``'s session codes.
    dynamics
        The state's dynamics.
    capture
        Steps whose state *before* the step is wanted (e.g. for a logging-policy model). The
        captured state counts, in ``shown``, the items the session showed before that step, and
        holds that step's context.
    context
        :func:`row_context` of the log: each row's click features get the row's own ``ctx_``
        values, and the state (continuation features) holds the context of its last step.

    Returns
    -------
    rows, captured
        The model rows, and the captured states in the order of ``capture`` (None without it).
    """
    n_rows, n_steps = index.n_rows, index.n_steps
    t_of_step = index.t_of_step
    step_of_row, session_of_step = index.step_of_row, index.session_of_step
    state = initial_state(start.z0, start.hist_n, user_features, None)
    x_click = np.empty((n_rows, 0), np.float32)
    x_continue = np.empty((n_steps, 0), np.float32)
    row_t = t_of_step[step_of_row]
    row_order = np.argsort(row_t, kind="stable")
    step_order = np.argsort(t_of_step, kind="stable")
    max_t = int(t_of_step.max()) if n_steps else -1
    row_bounds = np.searchsorted(row_t[row_order], np.arange(max_t + 2))
    step_bounds = np.searchsorted(t_of_step[step_order], np.arange(max_t + 2))
    parts: list[SessionState] = []
    part_idx: list[NDArray[np.int64]] = []
    wanted_t = None if capture is None else t_of_step[np.asarray(capture, dtype=np.int64)]
    ctx_idx, ctx_rows = context if context is not None else (np.zeros(0, np.int64), None)
    for t in range(max_t + 1):
        rows = row_order[row_bounds[t] : row_bounds[t + 1]]
        steps = step_order[step_bounds[t] : step_bounds[t + 1]]
        if wanted_t is not None and capture is not None:
            pick = np.flatnonzero(wanted_t == t)
            if len(pick):
                taken = state.take(session_of_step[capture[pick]])
                if ctx_rows is not None:
                    first = index.step_first_row[capture[pick]]
                    taken.user_features[:, ctx_idx] = ctx_rows[first]
                parts.append(taken)
                part_idx.append(pick)
        row_state = state.take(index.session_of_row[rows])
        if ctx_rows is not None:
            row_state.user_features[:, ctx_idx] = ctx_rows[rows]
        feats = click_features(
            row_state,
            catalogue,
            index.item_rows[rows],
            repeats=index.repeats[rows],
            position=index.position[rows],
        )
        if x_click.shape[1] == 0:
            x_click = np.empty((n_rows, feats.shape[1]), np.float32)
        x_click[rows] = feats
        sessions = session_of_step[steps]
        sub = state.take(sessions)
        if ctx_rows is not None:
            sub.user_features[:, ctx_idx] = ctx_rows[index.step_first_row[steps]]
        transition(
            sub,
            catalogue.embedding,
            index.step_item[steps],
            index.step_click[steps],
            index.step_watch[steps],
            eta=dynamics.eta,
            watch_scale=dynamics.watch_scale,
        )
        state.put(sessions, sub)
        cont = continue_features(sub)
        if x_continue.shape[1] == 0:
            x_continue = np.empty((n_steps, cont.shape[1]), np.float32)
        x_continue[steps] = cont
    rows_out = ReplayRows(
        x_click=x_click,
        clicked=index.clicked,
        watch=index.watch,
        item_rows=index.item_rows,
        x_continue=x_continue,
        continued=index.continued,
        step_of_row=step_of_row,
        session_of_step=session_of_step,
    )
    if capture is None:
        return rows_out, None
    captured = _concat_states(parts, part_idx, len(capture))
    captured.shown = _shown_before(
        index, np.asarray(capture, dtype=np.int64), len(catalogue.duration)
    )
    return rows_out, captured


def _concat_states(parts: list[SessionState], idx: list[NDArray[np.int64]], n: int) -> SessionState:
    order = np.concatenate(idx) if idx else np.empty(0, np.int64)
    inverse = np.empty(n, np.int64)
    inverse[order] = np.arange(len(order))
    fields = {
        k: np.concatenate([getattr(p, k) for p in parts])[inverse]
        for k, v in SessionState.__dataclass_fields__.items()
        if k != "shown"
    }
    return SessionState(**fields, shown=None)  # type: ignore[arg-type]


def _shown_before(index: LogIndex, steps: NDArray[np.int64], n_columns: int) -> NDArray[np.int16]:
    """Per captured step, how often its session showed each catalogue row before the step."""
    shown = np.zeros((len(steps), n_columns), np.int16)
    sessions = index.session_of_step[steps]
    first = index.step_first_row[index.session_first_step[sessions]]
    end = index.step_first_row[steps]
    lengths = end - first
    if lengths.sum():
        owner = np.repeat(np.arange(len(steps)), lengths)
        rows = np.repeat(first - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(
            lengths.sum()
        )
        np.add.at(shown, (owner, index.item_rows[rows]), 1)
    return shown


@dataclass(frozen=True)
class PreparedLogs:
    """A log replayed through the state: model rows plus the codes that index them."""

    rows: ReplayRows
    session_codes: NDArray[np.int64]
    user_ids_of_session: NDArray
    duration_of_row: NDArray[np.float64]


def prepare_logs(
    logs: Logs,
    catalogue: Catalogue,
    user_columns: tuple[str, ...],
    categories: dict[str, list],
    dynamics: Dynamics,
) -> PreparedLogs:
    """Replay ``logs`` with each session starting from the user's other sessions (LOSO)."""
    index = index_logs(logs.frame, catalogue)
    start, _ = user_start_interest(index, catalogue, dynamics)
    ufeat = session_features(logs.frame, index.session_first_row, user_columns, categories)
    context = row_context(logs.frame, user_columns, categories)
    rows, _ = replay(index, catalogue, start, ufeat, dynamics, context=context)
    return PreparedLogs(
        rows=rows,
        session_codes=index.session_of_row,
        user_ids_of_session=index.user_ids[index.user_of_session],
        duration_of_row=catalogue.duration[rows.item_rows],
    )


def replay_with(sim: Simulator, logs: Logs) -> PreparedLogs:
    """Replay other logs (e.g. held-out users) with a fitted simulator's catalogue and state."""
    return prepare_logs(logs, sim.catalogue, sim.spec.user_columns, sim.categories, sim.dynamics)
