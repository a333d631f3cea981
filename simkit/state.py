"""The user state and its transition: the one implementation that fitting and simulation share.

A session's state is an interest vector ``z`` over item embeddings plus history counters. After an
item ``a`` is shown with response (click ``c``, watch ``w``), ``z <- (1 - eta) z + eta e_a`` when
``c = 1``; the counters (step, clicks, watch so far, steps since the last click, last watch, last
click, repeats of an item) move with it. :func:`features` turns (state, candidates) into the model
features whose ordered names are frozen into a simulator's manifest.

Fitting replays every logged session through :func:`transition` (teacher forcing, all sessions at
once, one array step per position in the session); the environments run the same function on
simulated responses. A change here changes both, never one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.shown import ShownMemory

__all__ = [
    "COUNTER_NAMES",
    "CONTINUE_NAMES",
    "Catalogue",
    "Dynamics",
    "FeatureSpec",
    "HISTORY_NAMES",
    "SessionState",
    "ShownMemory",
    "click_features",
    "continue_features",
    "encode_column",
    "initial_state",
    "item_embeddings_from_clicks",
    "item_embeddings_from_features",
    "long_term_interest",
    "record_clicks",
    "return_feature_names",
    "return_features",
    "transition",
    "UserHistory",
    "between_sessions",
]

COUNTER_NAMES = (
    "dot",
    "cos",
    "z_norm",
    "step",
    "n_clicks",
    "log_watch_total",
    "steps_since_click",
    "log_last_watch",
    "last_click",
    "repeats",
    "hist_n",
    "item_log_pop",
    "position",
)
CONTINUE_NAMES = (
    "z_norm",
    "step",
    "n_clicks",
    "log_watch_total",
    "steps_since_click",
    "log_last_watch",
    "last_click",
    "hist_n",
)


def encode_column(values: pd.Series, categories: list | None = None) -> tuple[NDArray, list | None]:
    """Encode a feature column as float32: numbers as they are, text/categories as codes.

    Unknown categories become NaN, which LightGBM treats as missing. Returns the encoded array and
    the category list (``None`` for numeric columns).
    """
    is_cat = (
        categories is not None
        or isinstance(values.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(values.dtype)
        or values.dtype == object
    )
    if not is_cat:
        return values.to_numpy(dtype=np.float32, na_value=np.nan), None
    text = values.astype("string")
    if categories is None:
        categories = sorted(text.dropna().unique().tolist())
    codes = pd.Categorical(text, categories=categories).codes.astype(np.float32)
    codes[codes < 0] = np.nan
    return codes, categories


@dataclass(frozen=True, kw_only=True)
class Dynamics:
    """The parameters of the state's dynamics, shared by fitting, replay, envs and validation.

    Parameters
    ----------
    eta
        Interest update rate after a click, in (0, 1).
    watch_scale
        When set, the update rate of a click is ``eta * min(1, watch / watch_scale)``.
    prior_mean
        Population mean interest ``m`` (length ``d``) that start interests are shrunk toward.
    shrinkage
        Pseudo-count ``k`` of the start interest: ``z0 = (sum of e_a + k m) / (n + k)``.

    Raises
    ------
    ValueError
        When a parameter is out of range.
    """

    eta: float
    prior_mean: tuple[float, ...]
    shrinkage: float
    watch_scale: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.eta, (int, float)) and 0 < self.eta < 1):
            problems.append(f"eta must be in (0, 1); got {self.eta!r}")
        if not (isinstance(self.shrinkage, (int, float)) and self.shrinkage >= 0):
            problems.append(f"shrinkage must be a number >= 0; got {self.shrinkage!r}")
        if self.watch_scale is not None and not (
            isinstance(self.watch_scale, (int, float)) and self.watch_scale > 0
        ):
            problems.append(f"watch_scale must be None or > 0; got {self.watch_scale!r}")
        prior = np.asarray(self.prior_mean, dtype=np.float64)
        if prior.ndim != 1 or not np.all(np.isfinite(prior)):
            problems.append("prior_mean must be a 1-D sequence of finite numbers")
        if problems:
            raise ValueError("Invalid Dynamics: " + "; ".join(problems) + ".")
        object.__setattr__(self, "prior_mean", tuple(float(v) for v in prior))

    @property
    def prior(self) -> NDArray[np.float64]:
        """``prior_mean`` as an array."""
        return np.asarray(self.prior_mean, dtype=np.float64)

    def to_json(self) -> dict[str, object]:
        """Plain JSON-ready dict (the manifest's ``dynamics`` entry)."""
        return {
            "eta": float(self.eta),
            "watch_scale": None if self.watch_scale is None else float(self.watch_scale),
            "prior_mean": list(self.prior_mean),
            "shrinkage": float(self.shrinkage),
        }

    @classmethod
    def from_json(cls, data: object) -> Dynamics:
        """Inverse of :meth:`to_json`; raises ``ValueError`` on a wrong type or missing key."""
        if not isinstance(data, dict):
            raise ValueError(f"dynamics must be a JSON object; got {type(data).__name__}")
        missing = sorted({"eta", "prior_mean", "shrinkage"} - set(data))
        unknown = sorted(set(data) - {"eta", "prior_mean", "shrinkage", "watch_scale"})
        if missing or unknown:
            raise ValueError(f"dynamics keys: missing {missing}, unknown {unknown}")
        if not isinstance(data["prior_mean"], list):
            raise ValueError("dynamics.prior_mean must be a list of numbers")
        return cls(
            eta=data["eta"],
            prior_mean=tuple(data["prior_mean"]),
            shrinkage=data["shrinkage"],
            watch_scale=data.get("watch_scale"),
        )


@dataclass
class Catalogue:
    """Items as the state sees them. Row ``n_items`` is the stand-in for items never seen in training.

    Attributes
    ----------
    item_ids
        Original ids, shape (n_items,).
    embedding
        Item embeddings ``E``, shape (n_items + 1, d); the last row is the mean embedding.
    features
        Item feature columns for the models, shape (n_items + 1, n_item_features), NaN in the last row.
    duration
        Item durations in seconds (NaN when unknown), shape (n_items + 1,).
    log_popularity
        ``log1p`` of training impressions, shape (n_items + 1,).
    """

    item_ids: NDArray
    embedding: NDArray[np.float64]
    features: NDArray[np.float32]
    duration: NDArray[np.float64]
    log_popularity: NDArray[np.float32]

    def rows(self, item_ids: NDArray) -> NDArray[np.int64]:
        """Row of each id in the catalogue; unseen ids map to the stand-in row."""
        ids = pd.Index(self.item_ids)
        rows = ids.get_indexer(np.asarray(item_ids))
        rows[rows < 0] = len(self.item_ids)
        return rows.astype(np.int64)

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        return int(self.embedding.shape[1])


def item_embeddings_from_features(features: NDArray[np.float64], dim: int) -> NDArray[np.float64]:
    """Embeddings from numeric item features: standardised, reduced to at most ``dim`` by SVD.

    Each embedding is scaled so that the average squared norm is 1.
    """
    x = np.nan_to_num(np.asarray(features, dtype=np.float64))
    x = x - x.mean(axis=0)
    sd = x.std(axis=0)
    x = x[:, sd > 0] / sd[sd > 0]
    if x.shape[1] > dim:
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        x = u[:, :dim] * s[:dim]
    scale = np.sqrt(np.mean(np.sum(x**2, axis=1))) or 1.0
    return x / scale


def item_embeddings_from_clicks(
    user_rows: NDArray[np.int64],
    item_rows: NDArray[np.int64],
    n_users: int,
    n_items: int,
    dim: int,
    *,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Item embeddings by implicit matrix factorisation: truncated SVD of users x items clicks.

    The click counts are log-damped and row-normalised (BM25-like weighting), so heavy users do not
    dominate. Items never clicked get the zero vector (they carry no signal). Scaled to an average
    squared norm of 1 over clicked items.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import svds

    m = csr_matrix(
        (np.ones(len(user_rows)), (user_rows, item_rows)), shape=(n_users, n_items)
    ).tocsr()
    m.sum_duplicates()
    m.data = np.log1p(m.data)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    m = csr_matrix(m.multiply(1.0 / norms[:, None]))
    k = max(1, min(dim, min(m.shape) - 1))
    v0 = rng.uniform(-1, 1, size=min(m.shape))
    _, s, vt = svds(m, k=k, v0=v0)
    order = np.argsort(-s)
    emb = vt[order].T * np.sqrt(s[order])
    # fix the sign of each factor so the result does not depend on the solver's choice
    emb *= np.where(emb.sum(axis=0) < 0, -1.0, 1.0)
    clicked = np.bincount(item_rows, minlength=n_items) > 0
    scale = np.sqrt(np.mean(np.sum(emb[clicked] ** 2, axis=1))) if clicked.any() else 1.0
    out = np.zeros((n_items, dim))
    out[:, :k] = emb / (scale or 1.0)
    return out


@dataclass
class SessionState:
    """State of many sessions at once (arrays over sessions).

    ``user_features`` holds the encoded user and context columns, constant through a session.
    ``shown`` maps (session, catalogue row) to how often the item was shown in the session: a
    :class:`ShownMemory` (sized by session length) for simulated sessions, or a dense int16 matrix
    (sessions x catalogue rows) where replay captures states of logged sessions.
    """

    z: NDArray[np.float64]
    hist_n: NDArray[np.float64]
    user_features: NDArray[np.float32]
    step: NDArray[np.int64]
    n_clicks: NDArray[np.int64]
    watch_total: NDArray[np.float64]
    steps_since_click: NDArray[np.int64]
    last_watch: NDArray[np.float64]
    last_click: NDArray[np.int64]
    shown: ShownMemory | NDArray[np.int16] | None

    @property
    def n(self) -> int:
        """Number of sessions."""
        return int(self.z.shape[0])

    def take(self, rows: NDArray[np.int64]) -> SessionState:
        """Sub-state of the given sessions (copies)."""
        parts: dict[str, Any] = {
            k: (None if v is None else v[rows].copy()) for k, v in self.__dict__.items()
        }
        return SessionState(**parts)

    def put(self, rows: NDArray[np.int64], other: SessionState) -> None:
        """Overwrite the given sessions with ``other`` (used for autoreset in vector envs)."""
        for k, v in self.__dict__.items():
            if v is not None:
                v[rows] = getattr(other, k)


def initial_state(
    z0: NDArray[np.float64],
    hist_n: NDArray[np.float64],
    user_features: NDArray[np.float32],
    n_items: int | None,
) -> SessionState:
    """Fresh sessions starting from interest ``z0``; with ``n_items``, an empty repeat memory.

    ``n_items`` (the catalogue size, or None for no repeat memory) only fixes the memory's nominal
    shape; its storage grows with the session (see :class:`ShownMemory`).
    """
    n = len(z0)
    return SessionState(
        z=np.array(z0, dtype=np.float64),
        hist_n=np.asarray(hist_n, dtype=np.float64).copy(),
        user_features=np.asarray(user_features, dtype=np.float32).reshape(n, -1).copy(),
        step=np.zeros(n, np.int64),
        n_clicks=np.zeros(n, np.int64),
        watch_total=np.zeros(n),
        steps_since_click=np.zeros(n, np.int64),
        last_watch=np.zeros(n),
        last_click=np.zeros(n, np.int64),
        shown=None if n_items is None else ShownMemory(n, n_items + 1),
    )


def transition(
    state: SessionState,
    embedding: NDArray[np.float64],
    items: NDArray[np.int64],
    click: NDArray[np.int64],
    watch: NDArray[np.float64],
    *,
    eta: float,
    watch_scale: float | None = None,
) -> None:
    """Move ``state`` in place after showing catalogue rows ``items`` with the given responses.

    ``z <- (1 - eta_i) z + eta_i e_a`` for clicked sessions, with ``eta_i = eta`` or, when
    ``watch_scale`` is given, ``eta * min(1, watch / watch_scale)``.
    """
    clicked = np.asarray(click) > 0
    if clicked.any():
        rate = np.full(int(clicked.sum()), eta)
        if watch_scale:
            rate = eta * np.minimum(1.0, np.asarray(watch)[clicked] / watch_scale)
        state.z[clicked] = (1 - rate[:, None]) * state.z[clicked] + rate[:, None] * embedding[
            items[clicked]
        ]
    if state.shown is not None:
        state.shown[np.arange(state.n), items] += 1
    state.step += 1
    state.n_clicks += clicked
    state.watch_total += watch
    state.steps_since_click = np.where(clicked, 0, state.steps_since_click + 1)
    state.last_watch = np.asarray(watch, dtype=np.float64).copy()
    state.last_click = clicked.astype(np.int64)


@dataclass(frozen=True)
class FeatureSpec:
    """The frozen layout of the model features: names and which are categorical."""

    user_columns: tuple[str, ...]
    item_columns: tuple[str, ...]
    dim: int

    @property
    def click_names(self) -> tuple[str, ...]:
        """Ordered names of the click / watch model features."""
        emb = tuple(f"emb_{k}" for k in range(self.dim))
        return self.user_columns + self.item_columns + emb + COUNTER_NAMES

    @property
    def continue_names(self) -> tuple[str, ...]:
        """Ordered names of the continuation model features."""
        return self.user_columns + CONTINUE_NAMES


def click_features(
    state: SessionState,
    catalogue: Catalogue,
    items: NDArray[np.int64],
    *,
    repeats: NDArray[np.int64] | None = None,
    position: NDArray[np.int64] | None = None,
) -> NDArray[np.float32]:
    """Features of showing catalogue rows ``items`` (shape (n, K)) to each session: (n*K, F).

    ``repeats`` overrides the repeat counter (replay computes it from the log directly).
    """
    n = state.n
    items = np.asarray(items, dtype=np.int64).reshape(n, -1)
    k = items.shape[1]
    emb = catalogue.embedding[items]  # (n, K, d)
    dot = np.einsum("nd,nkd->nk", state.z, emb)
    z_norm = np.linalg.norm(state.z, axis=1)
    e_norm = np.linalg.norm(emb, axis=2)
    cos = dot / np.maximum(z_norm[:, None] * e_norm, 1e-9)
    if repeats is None:
        if isinstance(state.shown, ShownMemory):
            repeats = state.shown.count(items).astype(np.int64)
        elif state.shown is not None:
            repeats = np.take_along_axis(state.shown, items, axis=1).astype(np.int64)
        else:
            repeats = np.zeros((n, k), np.int64)
    if position is None:
        position = np.zeros((n, k), np.int64)
    n_user = state.user_features.shape[1]
    n_item = catalogue.features.shape[1]
    d = catalogue.dim
    out = np.empty((n, k, n_user + n_item + d + len(COUNTER_NAMES)), dtype=np.float32)
    out[:, :, :n_user] = state.user_features[:, None, :]
    out[:, :, n_user : n_user + n_item] = catalogue.features[items]
    c0 = n_user + n_item + d
    out[:, :, n_user + n_item : c0] = emb
    counters = (
        dot,
        cos,
        z_norm[:, None],
        state.step[:, None],
        state.n_clicks[:, None],
        np.log1p(state.watch_total)[:, None],
        state.steps_since_click[:, None],
        np.log1p(state.last_watch)[:, None],
        state.last_click[:, None],
        np.asarray(repeats).reshape(n, k),
        state.hist_n[:, None],
        catalogue.log_popularity[items],
        np.asarray(position).reshape(n, k),
    )
    for j, value in enumerate(counters):
        out[:, :, c0 + j] = value
    return out.reshape(n * k, -1)


def continue_features(state: SessionState) -> NDArray[np.float32]:
    """Features of the continuation model on the state after a transition: (n, F)."""
    cols = (
        np.linalg.norm(state.z, axis=1),
        state.step,
        state.n_clicks,
        np.log1p(state.watch_total),
        state.steps_since_click,
        np.log1p(state.last_watch),
        state.last_click,
        state.hist_n,
    )
    out = np.empty((state.n, state.user_features.shape[1] + len(cols)), dtype=np.float32)
    out[:, : state.user_features.shape[1]] = state.user_features
    for j, value in enumerate(cols):
        out[:, state.user_features.shape[1] + j] = value
    return out


# --------------------------------------------------------------------------- between sessions

HISTORY_NAMES = ("sessions_per_day",)
"""History columns of :func:`return_features` (after the continuation features and item means)."""
RATE_PRIOR_DAYS = 7.0
"""Days of the pseudo-record (one session) behind the sessions-per-day rate of a user's record."""


@dataclass
class UserHistory:
    """What users carry from one session to the next (arrays over users).

    The long-term interest is the shrunk mean of every item clicked so far
    (:func:`long_term_interest`); the session's clicked-item features and the user's record of
    sessions and gaps feed the return-time model (:func:`return_features`).

    Attributes
    ----------
    click_sum, n_clicks
        Embeddings of the clicked items summed over all sessions so far (current included), and
        their count.
    item_sum, session_clicks
        Catalogue features of the items clicked in the current session (NaN as 0) summed, and
        their count.
    n_sessions
        Sessions started so far, the current one included.
    hours
        Hours from the start of the record to the start of the current session.
    gap_log_sum, n_gaps, last_log_gap
        ``log1p`` of the gaps (hours) between those sessions summed, their count, and the latest
        (NaN before the first gap).
    """

    click_sum: NDArray[np.float64]
    n_clicks: NDArray[np.float64]
    item_sum: NDArray[np.float64]
    session_clicks: NDArray[np.float64]
    n_sessions: NDArray[np.float64]
    hours: NDArray[np.float64]
    gap_log_sum: NDArray[np.float64]
    n_gaps: NDArray[np.float64]
    last_log_gap: NDArray[np.float64]

    @classmethod
    def empty(cls, n: int, dim: int, n_item_features: int) -> UserHistory:
        """Users with no past: one session started, at hour 0 of their record."""
        return cls(
            click_sum=np.zeros((n, dim)),
            n_clicks=np.zeros(n),
            item_sum=np.zeros((n, n_item_features)),
            session_clicks=np.zeros(n),
            n_sessions=np.ones(n),
            hours=np.zeros(n),
            gap_log_sum=np.zeros(n),
            n_gaps=np.zeros(n),
            last_log_gap=np.full(n, np.nan),
        )

    @property
    def n(self) -> int:
        """Number of users."""
        return len(self.n_clicks)

    def take(self, rows: NDArray[np.int64]) -> UserHistory:
        """Sub-history of the given users (copies)."""
        return UserHistory(**{k: v[rows].copy() for k, v in self.__dict__.items()})

    def put(self, rows: NDArray[np.int64], other: UserHistory) -> None:
        """Overwrite the given users with ``other``."""
        for k, v in self.__dict__.items():
            v[rows] = getattr(other, k)


def record_clicks(
    history: UserHistory,
    catalogue: Catalogue,
    users: NDArray[np.int64],
    items: NDArray[np.int64],
    click: NDArray,
) -> None:
    """Add the clicked ones of shown catalogue rows ``items`` to the ``users`` rows of ``history``.

    ``users``, ``items`` and ``click`` are flat and aligned (one entry per shown item; a user may
    appear several times). Every clicked item counts, as in the start interest of
    :func:`simkit.replay.session_start_interest`.
    """
    hit = np.asarray(click).ravel() > 0
    rows = np.asarray(users, dtype=np.int64).ravel()[hit]
    shown = np.asarray(items, dtype=np.int64).ravel()[hit]
    if len(rows) == 0:
        return
    np.add.at(history.click_sum, rows, catalogue.embedding[shown])
    np.add.at(history.n_clicks, rows, 1.0)
    np.add.at(history.item_sum, rows, np.nan_to_num(catalogue.features[shown].astype(np.float64)))
    np.add.at(history.session_clicks, rows, 1.0)


def long_term_interest(history: UserHistory, dynamics: Dynamics) -> NDArray[np.float64]:
    """``(sum of e_a over every click so far + k m) / (their count + k)``, as a start interest."""
    k = dynamics.shrinkage
    return (history.click_sum + k * dynamics.prior) / (history.n_clicks + k)[:, None]


def between_sessions(
    state: SessionState,
    history: UserHistory,
    gap_hours: NDArray[np.float64],
    session_hours: NDArray[np.float64],
    *,
    dynamics: Dynamics,
    n_items: int | None,
) -> SessionState:
    """The causal transition between sessions: the state each user's next session starts from.

    After a session of ``session_hours`` and a gap of ``gap_hours``, ``history`` moves in place
    (one more session and gap, the session's clicked-item sums cleared) and the next session
    starts from the long-term interest ``z0 = (sum of e_a + k m) / (n + k)`` over every item
    clicked so far, with ``hist_n = log1p(n)`` and fresh counters: only what came before the
    session enters it (the user's later sessions never do, unlike the leave-one-session-out start
    interest that click fitting uses). User features are kept.
    """
    gap = np.asarray(gap_hours, dtype=np.float64)
    history.hours += np.asarray(session_hours, dtype=np.float64) + gap
    history.n_sessions += 1.0
    history.gap_log_sum += np.log1p(gap)
    history.n_gaps += 1.0
    history.last_log_gap = np.log1p(gap)
    history.item_sum[:] = 0.0
    history.session_clicks[:] = 0.0
    z0 = long_term_interest(history, dynamics)
    return initial_state(z0, np.log1p(history.n_clicks), state.user_features, n_items)


def return_feature_names(spec: FeatureSpec) -> tuple[str, ...]:
    """Ordered names of the return-time features: continuation features, item means, history."""
    means = tuple(f"mean_{c}" for c in spec.item_columns)
    state = tuple(c for c in spec.continue_names if c != "hist_n")
    return state + means + HISTORY_NAMES


def return_features(x_continue: NDArray[np.float32], history: UserHistory) -> NDArray[np.float32]:
    """Features of the return-time model at the end of a session: (n, F).

    ``x_continue`` are the continuation features of the state after the session's last step
    (:func:`continue_features`) without ``hist_n`` (a click count that keeps growing, unlike any
    training value, once a simulated user outlives the log); then the mean catalogue features of the items clicked in the
    session (NaN without a click) and the user's record as one rate: sessions per day of record
    with a prior of :data:`RATE_PRIOR_DAYS` days (events over exposure, the censored time since
    the last return included, as the maximum-likelihood rate of a Poisson process). Counts of
    gaps and the completed gaps themselves are left out: a log's window completes only the
    shorter gaps and caps the count, so they shift once a simulated user's record runs past the
    log's span.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        means = history.item_sum / history.session_clicks[:, None]
    means[history.session_clicks == 0] = np.nan
    cols = (history.n_sessions / (history.hours / 24.0 + RATE_PRIOR_DAYS),)
    x = np.asarray(x_continue, np.float32)
    hist_col = x.shape[1] - len(CONTINUE_NAMES) + CONTINUE_NAMES.index("hist_n")
    x = np.delete(x, hist_col, axis=1)
    return np.column_stack([x, means, *cols]).astype(np.float32)
