"""Log schema and reading: the one door logs come in through.

:func:`read_logs` turns a CSV, CSV.gz, parquet file, folder of parquet files or DataFrame into a
validated :class:`Logs`; :func:`split_logs` makes the held-out part validation uses. All problems of
a file are collected and raised once as one :class:`~simkit.errors.LogError` (a paragraph each,
prefixed by the file); repairs are counted in ``Logs.repairs``; nothing is silently dropped. Checks
are vectorised: no Python loop runs over rows or sessions.

Row numbers in messages are 1-based data rows (the header is not a row): the first line after a
CSV header, the first row of a parquet file (``part.parquet:1`` inside a folder), or the first row
of a DataFrame by position.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pandas.api import types as pdt

from simkit.errors import ConfigError, LogError
from simkit.log_files import load_table
from simkit.log_layout import (
    CANONICAL_COLUMNS,
    FEATURE_PREFIXES,
    N_SHOWN,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    Report,
    categorical_item_columns,
    check_item_columns,
    is_feature,
    lists_as_slates,
    log_warnings,
    quoted,
    values_text,
)

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "FEATURE_PREFIXES",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "LogSchema",
    "Logs",
    "lists_as_slates",
    "read_logs",
    "split_logs",
]

_CANONICAL = CANONICAL_COLUMNS
_IDS = ("user_id", "session_id", "item_id")
_TOML_KEYS = ("columns", "count_unclicked_watch_as_click", "item_catalogue")
_N_SHOWN = N_SHOWN
_FILL = "Fill in those cells or remove the rows before reading."
_NEEDED = tuple(c for c in REQUIRED_COLUMNS if c != "watch_time")


def _whole(v: NDArray[np.float64]) -> NDArray[np.bool_]:
    return np.isfinite(v) & (v >= 0) & (v == np.floor(v))


# column -> (what must hold, test on its non-NaN values, how to fix)
_RULES: dict[str, tuple[str, Callable[[NDArray[np.float64]], NDArray[np.bool_]], str]] = {
    "step": ("hold whole numbers >= 0", _whole, "Number each session's impressions 0, 1, 2, ..."),
    "position": ("hold whole numbers >= 0", _whole, "Number the slots of each slate 0, 1, 2, ..."),
    "clicked": (
        "contain only 0/1 or booleans",
        lambda v: (v == 0) | (v == 1),
        "Encode a click as 1 and no click as 0.",
    ),
    "watch_time": (
        "be finite and >= 0 (seconds)",
        lambda v: np.isfinite(v) & (v >= 0),
        "Use 0 for impressions without engagement and fix or remove the others.",
    ),
    "propensity": (
        "be in (0, 1]",
        lambda v: (v > 0) & (v <= 1),
        "Log the behaviour policy's probability of showing each item, or leave the column out.",
    ),
    "duration": (
        "be finite and > 0 (seconds)",
        lambda v: np.isfinite(v) & (v > 0),
        "Give each item's length in seconds, or leave the column out.",
    ),
    "timestamp": ("be finite", np.isfinite, "Fix or remove those rows."),
    "bid": ("be finite", np.isfinite, "Fix or remove those rows."),
}


class _ReadOnlyDict(dict):  # type: ignore[type-arg]
    """A dict that cannot change: hashable, and fine for ``json``, ``pickle`` and ``asdict``."""

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("this mapping is read-only; build a new object instead")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> Any:
        return type(self), (dict(self),)


@dataclass(frozen=True, kw_only=True)
class LogSchema:
    """How a user's log columns map onto simkit's canonical ones.

    Parameters
    ----------
    columns : Mapping[str, str]
        Canonical name -> your column name, e.g. ``{"clicked": "is_click"}``; unmapped columns
        keep their names. Keys are canonical names (``user_id`` ... ``campaign_type``, and
        ``duration`` for the catalogue) or features prefixed ``user_``, ``item_``, ``ctx_``.
    count_unclicked_watch_as_click : bool
        Count rows with ``watch_time > 0`` and ``clicked == 0`` as clicks (a counted repair)
        instead of rejecting them.
    item_catalogue : str or None
        Path of an item catalogue (``item_id`` + ``item_*`` features + optional ``duration``).

    Raises
    ------
    LogError
        An unknown canonical name, a column name that is not text, or one column mapped twice.

    Examples
    --------
    >>> LogSchema(columns={"clicked": "is_click"}).columns["clicked"]
    'is_click'
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    count_unclicked_watch_as_click: bool = False
    item_catalogue: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.columns, Mapping):
            raise TypeError(f"LogSchema.columns must be a mapping; got {type(self.columns)}")
        allowed = lambda k: isinstance(k, str) and (k in _CANONICAL or is_feature(k))  # noqa: E731
        problems = []
        if unknown := [k for k in self.columns if not allowed(k)]:
            problems.append(
                f"LogSchema.columns keys must be canonical names ({', '.join(_CANONICAL)}) or "
                f"features prefixed {', '.join(FEATURE_PREFIXES)}; got {quoted(unknown)}. "
                "Fix the spelling or map the column under its canonical name."
            )
        if bad := [v for v in self.columns.values() if not isinstance(v, str) or not v]:
            problems.append(f"LogSchema.columns values must be column names; got {quoted(bad)}.")
        targets = pd.Index(list(self.columns.values()), dtype=object)
        if twice := targets[targets.duplicated()].unique().tolist():
            problems.append(
                f"LogSchema.columns must map each of your columns once; got {quoted(twice)} "
                "mapped onto several canonical names. Map each column to one name."
            )
        if not isinstance(self.count_unclicked_watch_as_click, (bool, np.bool_)):
            got = self.count_unclicked_watch_as_click
            problems.append(f"count_unclicked_watch_as_click must be true or false; got {got!r}.")
        catalogue = self.item_catalogue
        if catalogue is not None and not isinstance(catalogue, (str, os.PathLike)):
            problems.append(f"item_catalogue must be a path; got {catalogue!r}.")
        if problems:
            raise LogError("\n\n".join(problems))
        if catalogue is not None:
            object.__setattr__(self, "item_catalogue", os.fspath(catalogue))
        object.__setattr__(self, "columns", _ReadOnlyDict(self.columns))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> LogSchema:
        """Load a schema from a TOML file.

        The file holds a ``[columns]`` table (``canonical = "your_name"``) and optionally the
        top-level keys ``count_unclicked_watch_as_click`` and ``item_catalogue`` (a path relative
        to the TOML file's folder).

        Raises
        ------
        LogError
            A missing or malformed file, a key this schema does not know, or a bad value.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "schema.toml"
        >>> _ = p.write_text('count_unclicked_watch_as_click = true\\n[columns]\\nclicked = "clk"\\n')
        >>> LogSchema.from_toml(p).columns["clicked"]
        'clk'
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LogError(
                f"{path}: Schema file must exist; got no file there. Check the path."
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise LogError(
                f"{path}: Schema file must be valid TOML; got {exc}. Fix the syntax."
            ) from None
        if unknown := [k for k in data if k not in _TOML_KEYS]:
            raise LogError(
                f"{path}: Schema keys must be among {', '.join(_TOML_KEYS)}; got unknown key "
                f"{quoted(unknown)}. Fix the spelling or remove the key."
            )
        columns, catalogue = data.get("columns", {}), data.get("item_catalogue")
        if not isinstance(columns, dict):
            raise LogError(f"{path}: 'columns' must be a table ([columns]); got {columns!r}.")
        try:
            return cls(
                columns=columns,
                count_unclicked_watch_as_click=data.get("count_unclicked_watch_as_click", False),
                item_catalogue=str(path.parent / catalogue)
                if isinstance(catalogue, str)
                else catalogue,
            )
        except LogError as exc:
            raise LogError(f"{path}: {exc}") from None


@dataclass(frozen=True, kw_only=True, eq=False)
class Logs:
    """Validated logs in canonical form, as :func:`read_logs` returns them.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per shown item: canonical columns first (``clicked`` int8, ``watch_time`` float64,
        ``step``/``position`` int64, ``propensity`` float64), then features, then ignored columns;
        sorted by session_id, step, position, with a fresh RangeIndex. Ids keep their values
        (whole numbers as int64, text as text).
    items : pandas.DataFrame or None
        The item catalogue: ``item_id`` + ``item_*`` features + optional ``duration``.
    schema : LogSchema
    source : str
        The file read, or ``"<DataFrame>"``.
    repairs : Mapping[str, int]
        What was repaired while reading -> number of rows.
    dwell : bool
        Whether the log has dwell time. A log without ``watch_time`` (or with that column empty in
        every row) is click-only: ``watch_time`` is 0.0 everywhere and a simulator fitted on it
        has no watch model (rewards are clicks).
    warnings : tuple of str
        What the log is read as, but may not mean: a paragraph each (e.g. impression lists laid
        out one per row, positive-only clicks, watch times beyond the item's duration).

    Examples
    --------
    >>> df = pd.DataFrame({"user_id": [1, 1], "session_id": [7, 7], "step": [0, 1],
    ...                    "item_id": [3, 4], "clicked": [1, 0], "watch_time": [12.0, 0.0]})
    >>> logs = read_logs(df)
    >>> logs.n_rows, logs.n_sessions, logs.describe()["click_rate"]
    (2, 1, 0.5)
    """

    frame: pd.DataFrame
    items: pd.DataFrame | None = None
    schema: LogSchema = field(default_factory=LogSchema)
    source: str = "<DataFrame>"
    repairs: Mapping[str, int] = field(default_factory=dict)
    dwell: bool = True
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.frame, pd.DataFrame):
            raise TypeError(f"Logs.frame must be a pandas DataFrame; got {type(self.frame)}")
        object.__setattr__(self, "repairs", _ReadOnlyDict(self.repairs))

    n_rows = property(lambda self: len(self.frame), doc="Number of rows (shown items).")
    n_users = property(lambda self: int(self.frame["user_id"].nunique()), doc="Distinct users.")
    n_sessions = property(lambda self: int(self.frame["session_id"].nunique()), doc="Sessions.")
    has_propensity = property(lambda self: "propensity" in self.frame.columns)
    has_position = property(lambda self: "position" in self.frame.columns)
    has_timestamp = property(lambda self: "timestamp" in self.frame.columns)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The ``user_``/``item_``/``ctx_`` feature columns, in frame order."""
        return tuple(c for c in self.frame.columns if is_feature(c))

    @property
    def ignored_columns(self) -> tuple[str, ...]:
        """Columns kept in the frame that simkit does not use."""
        return tuple(c for c in self.frame.columns if c not in _CANONICAL and not is_feature(c))

    def describe(self) -> dict[str, Any]:
        """A summary to print: sizes, click rate, quantiles, repairs and ignored columns.

        ``session_length`` counts steps per session (a slate counts once); ``watch_time`` holds
        the quantiles of ``watch_time`` over clicked rows (NaN when nothing was clicked).
        """
        f = self.frame
        q = {"min": 0.0, "25%": 0.25, "50%": 0.5, "75%": 0.75, "95%": 0.95, "max": 1.0}

        def quantiles(values: pd.Series) -> dict[str, float]:
            return {k: float(v) for k, v in zip(q, values.quantile(list(q.values())).to_numpy())}

        clicked = f["clicked"].to_numpy() == 1
        return {
            "source": self.source,
            "rows": self.n_rows,
            "users": self.n_users,
            "sessions": self.n_sessions,
            "items": int(f["item_id"].nunique()),
            "click_rate": float(clicked.mean()) if len(f) else float("nan"),
            "session_length": quantiles(f.groupby("session_id", sort=False)["step"].nunique()),
            "watch_time": quantiles(f["watch_time"][clicked]),
            "repairs": dict(self.repairs),
            "ignored_columns": list(self.ignored_columns),
            "dwell": self.dwell,
            "warnings": list(self.warnings),
        }

    def subset(self, rows: Any) -> Logs:
        """A new :class:`Logs` with the rows of a boolean mask, or of the given session ids.

        Examples
        --------
        >>> df = pd.DataFrame({"user_id": [1, 2], "session_id": [7, 8], "step": [0, 0],
        ...                    "item_id": [3, 4], "clicked": [1, 0], "watch_time": [12.0, 0.0]})
        >>> read_logs(df).subset([8]).n_rows
        1
        """
        values = np.asarray(rows)
        if values.dtype == bool and values.shape != (self.n_rows,):
            raise ValueError(f"subset mask must have {self.n_rows} entries; got {values.shape}")
        mask = values if values.dtype == bool else self.frame["session_id"].isin(values.ravel())
        return dataclasses.replace(self, frame=self.frame[np.asarray(mask)].reset_index(drop=True))


def _rename(frame: pd.DataFrame, schema: LogSchema, report: Report) -> pd.DataFrame | None:
    found = [str(c) for c in frame.columns]
    canonical = {v: k for k, v in schema.columns.items() if k != v}
    names = pd.Index([canonical.get(c, c) for c in found], dtype=object)
    report.yours = {k: v for v, k in canonical.items() if v in found}
    if twice := names[names.duplicated()].unique().tolist():
        report.add(
            f"Columns must have distinct names after mapping; got {quoted(twice)} more than once "
            f"(found columns: {quoted(found)}). Drop or rename one of each, or change the mapping."
        )
        return None
    return frame.set_axis(names, axis=1)


def _ident(col: pd.Series, name: str, report: Report) -> pd.Series | None:
    """An id column keeps its values: whole numbers become int64, text stays text."""
    nan = col.isna().to_numpy()
    if nan.any():
        report.bad(name, "have a value in every row", "NaN", nan, _FILL)
    kind = pdt.infer_dtype(col, skipna=True) if pdt.is_object_dtype(col.dtype) else None
    if kind in ("integer", "floating", "mixed-integer-float"):
        col = pd.to_numeric(col, errors="coerce")
    elif kind not in (None, "string", "empty"):  # several kinds in one column
        try:
            other = ~nan & col.str.len().isna().to_numpy()
        except AttributeError:
            other = ~nan
        got = f"values {values_text(col[other])} that are not text"
        report.bad(
            name, "hold only whole numbers or only text", got, other, "Convert it to one kind."
        )
        return None
    number = pdt.is_numeric_dtype(col.dtype) and not pdt.is_bool_dtype(col.dtype)
    if number and not pdt.is_signed_integer_dtype(col.dtype):  # floats, uint64
        v = col.to_numpy(np.float64, na_value=np.nan)
        frac = ~nan & ~(np.isfinite(v) & (v == np.floor(v)) & (np.abs(v) < 2.0**63))
        if frac.any():
            got = f"values {values_text(v[frac])}"
            report.bad(name, "hold whole numbers or text", got, frac, "Use the ids of your system.")
            return None
    if nan.any():
        return None
    return col.astype(np.int64) if number else col.astype("str") if kind == "string" else col


def _number(col: pd.Series, name: str, report: Report, *, complete: bool) -> pd.Series | None:
    """``col`` as numbers, after reporting text cells, NaN (when ``complete``) and rule breaks."""
    if pdt.is_datetime64_any_dtype(col.dtype) or pdt.is_timedelta64_dtype(col.dtype):
        every = np.ones(len(col), dtype=bool)
        report.bad(
            name, "be numeric", f"dates/times ({col.dtype})", every, "Use numbers (seconds)."
        )
        return None
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    num, text = col, np.zeros(len(col), dtype=bool)
    if not pdt.is_numeric_dtype(col.dtype):
        num = pd.to_numeric(col, errors="coerce")
        text = (num.isna() & col.notna()).to_numpy()
        if text.any():
            fix = "Fix those cells or convert the column to numbers before reading."
            report.bad(name, "be numeric", f"text values {values_text(col[text])}", text, fix)
    vals = num.to_numpy(np.float64, na_value=np.nan)
    nan = np.isnan(vals) & ~text
    ok = not text.any()
    if complete and nan.any():
        report.bad(name, "have a value in every row", "NaN", nan, _FILL)
        ok = False
    if name in _RULES:
        must, test, fix = _RULES[name]
        broken = ~np.isnan(vals) & ~test(vals)
        if broken.any():
            report.bad(name, must, f"values {values_text(vals[broken])}", broken, fix)
            ok = False
    return num if ok else None


def _timestamp(col: pd.Series, report: Report) -> pd.Series | None:
    """Numbers stay numbers (int64 or float64), dates become datetime64[ns], text is parsed."""
    if pdt.is_datetime64_any_dtype(col.dtype):
        nan = col.isna().to_numpy()
        if nan.any():
            report.bad("timestamp", "have a value in every row", "NaN", nan, _FILL)
        return None if nan.any() else col.dt.as_unit("ns")
    if not pdt.is_numeric_dtype(col.dtype):
        try:
            dates = pd.to_datetime(col.astype("str"), format="ISO8601", errors="coerce")
        except (ValueError, TypeError):  # e.g. mixed time zones: report as numbers instead
            dates = pd.Series(pd.NaT, index=col.index)
        if dates.notna().sum() > pd.to_numeric(col, errors="coerce").notna().sum():
            bad = (dates.isna() & col.notna()).to_numpy()
            if bad.any():
                got, fix = f"values {values_text(col[bad])}", "Fix those cells before reading."
                report.bad("timestamp", "hold numbers or ISO 8601 dates", got, bad, fix)
            return _timestamp(dates, report) if not bad.any() else None
    num = _number(col, "timestamp", report, complete=True)
    if num is None:
        return None
    return num.astype(np.int64 if pdt.is_integer_dtype(num.dtype) else np.float64)


def _sort_order(keys: list[NDArray[Any]]) -> tuple[NDArray[np.intp] | None, NDArray[np.bool_]]:
    """Stable row order sorting ``keys`` (None when sorted already), and, in that order, which rows
    repeat the previous row's key."""
    out_of_order, tied = np.zeros(len(keys[0]) - 1, dtype=bool), np.ones(len(keys[0]) - 1, bool)
    for k in keys:
        out_of_order |= tied & (k[1:] < k[:-1])
        tied &= k[1:] == k[:-1]
    if not out_of_order.any():
        return None, np.concatenate([[False], tied])
    lows, spans = [int(k.min()) for k in keys], [int(k.max()) - int(k.min()) + 1 for k in keys]
    if np.prod(spans, dtype=object) < 2**63:  # one int64 key sorts twice as fast as lexsort
        key = keys[0] - lows[0]
        for k, low, span in zip(keys[1:], lows[1:], spans[1:]):
            key = key * span + (k - low)
        order = np.argsort(key, kind="stable")
    else:
        order = np.lexsort(keys[::-1])
    tied[:] = True
    for k in keys:
        k = k[order]
        tied &= k[1:] == k[:-1]
    return order, np.concatenate([[False], tied])


def _codes(col: pd.Series, *, sort: bool) -> NDArray[Any]:
    return col.to_numpy() if col.dtype == np.int64 else pd.factorize(col, sort=sort)[0]


def _check_log(frame: pd.DataFrame, schema: LogSchema, report: Report) -> tuple[Any, dict, bool]:
    """The canonical frame, repairs and whether there is dwell time, or ``None`` after reporting
    every problem."""
    found = [str(c) for c in frame.columns]
    if (renamed := _rename(frame, schema, report)) is None:
        return None, {}, True
    frame, repairs, order = renamed, {}, None
    derive_step = "step" not in frame.columns and "timestamp" in frame.columns
    absent = [k for k, v in schema.columns.items() if v not in found]  # mapped, yet not there
    absent += [c for c in _NEEDED if c not in frame.columns and c not in absent]
    if absent := [c for c in absent if not (c == "step" and derive_step)]:
        missing = [
            f"'{c}'"
            + (f" (mapped from '{schema.columns[c]}')" if c in schema.columns else "")
            + (" (or 'timestamp' to derive it)" if c == "step" else "")
            for c in absent
        ]
        report.add(
            f"Log must have the columns {', '.join(_NEEDED)} and those the schema maps; "
            f"missing {', '.join(missing)} (found columns: {quoted(found)}). Rename those columns "
            "or map your names onto them with LogSchema(columns={'clicked': 'your_name', ...})."
        )
    if len(frame) == 0:
        report.add(
            "Log must have at least one row; got 0 rows. Check that it is the export you meant."
        )
        return None, {}, True
    # an optional column empty in every row (a source without dwell, propensities, ...) is absent
    for name in ("watch_time", *OPTIONAL_COLUMNS, "duration"):
        if name in frame.columns and frame[name].isna().all():
            frame = frame.drop(columns=name)
            what = (
                "watch_time empty in every row: read as a click-only log (no dwell time)"
                if name == "watch_time"
                else f"{name} empty in every row: column left out"
            )
            repairs[what] = len(frame)
    dwell = "watch_time" in frame.columns
    if (
        not dwell
    ):  # a click-only log (bandit logs have no dwell): no watch model, rewards are clicks
        frame = frame.assign(watch_time=np.zeros(len(frame)))
    clean: dict[str, Any] = {}  # canonical name -> checked column, or None when it is bad
    for name in (n for n in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if n in frame.columns):
        col = frame[name]
        if name in _IDS:
            clean[name] = _ident(col, name, report)
        elif name == "timestamp":
            clean[name] = _timestamp(col, report)
        elif name == "campaign_type":
            clean[name] = col.astype("category")
        else:
            complete = name in REQUIRED_COLUMNS or name in ("propensity", "position")
            clean[name] = _number(col, name, report, complete=complete)
    if "duration" in frame.columns:  # the item's length, logged per row (no catalogue needed)
        clean["duration"] = _number(frame["duration"], "duration", report, complete=False)
    ok = lambda *names: all(clean.get(n) is not None for n in names)  # noqa: E731
    if ok("clicked", "watch_time"):
        clicked = clean["clicked"].to_numpy(np.int8)
        unclicked = (clicked == 0) & (clean["watch_time"].to_numpy(np.float64) > 0)
        if unclicked.any() and schema.count_unclicked_watch_as_click:
            clicked = np.where(unclicked, np.int8(1), clicked)
            repairs["clicked set to 1 where watch_time > 0"] = int(unclicked.sum())
        elif unclicked.any():
            fix = (
                "Set clicked to 1 on those rows, or read with "
                "LogSchema(count_unclicked_watch_as_click=True) to count them as clicks."
            )
            got, must = "watch time > 0 with clicked = 0", "be 0 on rows that were not clicked"
            report.bad("watch_time", must, got, unclicked, fix)
        clean["clicked"] = pd.Series(clicked, index=frame.index)
    slates = "position" in clean
    if ok("session_id", "user_id", "position" if slates else "user_id") and (
        ok("step") or (derive_step and ok("timestamp"))
    ):
        sess = clean["session_id"]
        scodes = _codes(sess, sort=True)
        if derive_step:  # rank of the timestamp in its session; a slate shares one timestamp
            ranks = clean["timestamp"].groupby(scodes).rank(method="dense" if slates else "first")
            clean["step"] = ranks.astype(np.int64) - 1
            repairs["step derived from timestamp order"] = len(frame)
        for name in ("step", "position"):
            if name in clean:
                clean[name] = clean[name].astype(np.int64)
        keys = [scodes, *(clean[c].to_numpy() for c in ("step", "position") if c in clean)]
        order, repeat = _sort_order(keys)
        rows = np.arange(len(frame)) if order is None else order
        if repeat.any():
            key = "(session_id, step, position)" if slates else "(session_id, step)"
            fix = "give each slate item its own position" if slates else "give each its own step"
            report.add(
                f"Each {key} must appear once; got {report.rows(rows[repeat])} repeating an earlier "
                f"row's key. Remove the repeated rows or {fix}."
            )
        users, sorted_sess = _codes(clean["user_id"], sort=False)[rows], scodes[rows]
        switch = (sorted_sess[1:] == sorted_sess[:-1]) & (users[1:] != users[:-1])
        bad_sessions = np.unique(sorted_sess[1:][switch])
        del keys, rows, users, sorted_sess, switch  # keep the peak low for the sort below
        if n := len(bad_sessions):
            spanning = np.isin(scodes, bad_sessions)
            report.add(
                f"Each session must belong to one user; got {n} session{'s' if n > 1 else ''} with "
                f"several user_ids {values_text(sess[spanning])} in {report.rows(spanning)}. Give each "
                "user's sessions their own session_id."
            )
    if report.problems:
        return None, {}, dwell
    for name in ("watch_time", "propensity", "converted", "bid", "duration"):
        if name in clean:
            clean[name] = clean[name].astype(np.float64)
    for name in (c for c in frame.columns if is_feature(c)):
        text = pdt.is_string_dtype(frame[name].dtype) or pdt.is_object_dtype(frame[name].dtype)
        clean[name] = frame[name].astype("category") if text else frame[name]
    ignored = [frame[c] for c in frame.columns if c not in clean]
    out = pd.concat([*(col.rename(n) for n, col in clean.items()), *ignored], axis=1)
    out = out if order is None else out.take(order)
    return out.set_axis(pd.RangeIndex(len(out)), axis=0), repairs, dwell


def _check_catalogue(frame: pd.DataFrame, schema: LogSchema, report: Report) -> Any:
    """The checked item catalogue, or ``None`` after reporting its problems."""
    if (frame := _rename(frame, schema, report)) is None:
        return None
    if "item_id" not in frame.columns:
        report.add(
            f"Item catalogue must have the column 'item_id'; got columns {quoted(list(frame.columns))}."
            " Rename the id column or map it with LogSchema(columns={'item_id': 'your_name'})."
        )
        return None
    if (ids := _ident(frame["item_id"], "item_id", report)) is not None:
        repeat = ids.duplicated().to_numpy()
        if repeat.any():
            got = f"items {values_text(ids[repeat])} repeated"
            report.bad(
                "item_id", "be unique in the catalogue", got, repeat, "Keep one row per item."
            )
    out = frame.assign(item_id=ids)
    if "duration" in frame.columns:
        out["duration"] = _number(frame["duration"], "duration", report, complete=True)
    if report.problems:
        return None
    if "duration" in out.columns:
        out["duration"] = out["duration"].astype(np.float64)
    for name in (c for c in out.columns if is_feature(c)):
        if pdt.is_string_dtype(out[name].dtype) or pdt.is_object_dtype(out[name].dtype):
            out[name] = out[name].astype("category")
    return out.reset_index(drop=True)


def read_logs(source: Any, schema: LogSchema | None = None, *, items: Any = None) -> Logs:
    """Read and check logs, returning them in canonical form.

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A ``.csv``, ``.csv.gz`` or ``.parquet`` file, a folder of ``.parquet`` files (read in
        name order), or a DataFrame (left unchanged).
    schema : LogSchema, optional
        Column mapping and repair options; the identity mapping by default.
    items : str, os.PathLike or pandas.DataFrame, optional
        An item catalogue; defaults to ``schema.item_catalogue``.

    Returns
    -------
    Logs
        When ``step`` is absent it is derived from ``timestamp`` order within each session (rows
        of a slate share a timestamp when ``position`` is given; otherwise ties keep file order)
        and counted in ``repairs``. Text features become ``category``; other columns are kept and
        listed as ignored by :meth:`Logs.describe`.

    Raises
    ------
    LogError
        Every problem of the log and of the catalogue, a paragraph each, prefixed by the file.
    TypeError
        ``source`` is neither a path nor a DataFrame.

    Examples
    --------
    >>> df = pd.DataFrame({"uid": [1, 1], "session_id": [7, 7], "timestamp": [5.0, 9.0],
    ...                    "item_id": [3, 4], "clicked": [True, False], "watch_time": [12.0, 0.0]})
    >>> logs = read_logs(df, LogSchema(columns={"user_id": "uid"}))
    >>> logs.frame["step"].tolist(), dict(logs.repairs)
    ([0, 1], {'step derived from timestamp order': 2})
    """
    schema = LogSchema() if schema is None else schema
    if not isinstance(schema, LogSchema):
        raise TypeError(f"schema must be a LogSchema; got {type(schema)}")
    frame, report = load_table(source, "Log", schema)
    out, repairs, dwell = _check_log(frame, schema, report)
    del frame
    catalogue, problems = None, report.problems
    if (items := schema.item_catalogue if items is None else items) is not None:
        items_frame, items_report = load_table(items, "Item catalogue", schema)
        catalogue = _check_catalogue(items_frame, schema, items_report)
        problems = problems + items_report.problems
    notes: list[str] = []
    if out is not None:
        check_item_columns(out, report, notes)
        problems = report.problems + problems[len(report.problems) :]
    if problems:
        raise LogError("\n\n".join(problems))
    out = categorical_item_columns(out, notes)
    if catalogue is not None:
        catalogue = categorical_item_columns(catalogue, notes, log=False)
    warnings = log_warnings(out, catalogue, dwell, report.source)
    return Logs(
        frame=out,
        items=catalogue,
        schema=schema,
        source=report.source,
        repairs=repairs,
        dwell=dwell,
        warnings=tuple(notes + warnings),
    )


def split_logs(
    logs: Logs,
    *,
    by: Literal["session", "user", "time"] = "session",
    holdout: float = 0.2,
    rng: np.random.Generator | None = None,
) -> tuple[Logs, Logs]:
    """Split logs into a training part and a held-out part; sessions are never cut.

    Parameters
    ----------
    logs : Logs
    by : {"session", "user", "time"}
        ``"session"``: a random ``holdout`` fraction of sessions; ``"user"``: a random fraction of
        users, with all their sessions; ``"time"``: the latest fraction of sessions, ordered by
        their first timestamp, or by ``session_id`` when the logs have no timestamp (session ids
        must then grow with time). Ties keep ``session_id`` order.
    holdout : float
        Fraction of sessions (of users for ``"user"``) held out, in (0, 1); each side gets one at
        least.
    rng : numpy.random.Generator
        Required for ``"session"`` and ``"user"``; unused by ``"time"``.

    Returns
    -------
    tuple of Logs
        ``(train, held_out)``.

    Raises
    ------
    ConfigError
        Unknown ``by``, ``holdout`` outside (0, 1), or fewer than two sessions/users to split.

    Examples
    --------
    >>> df = pd.DataFrame({"user_id": [1, 2, 3], "session_id": [7, 8, 9], "step": [0, 0, 0],
    ...                    "item_id": [3, 4, 3], "clicked": [1, 0, 0], "watch_time": [5.0, 0, 0]})
    >>> train, held = split_logs(read_logs(df), by="user", rng=np.random.default_rng(0))
    >>> train.n_rows, held.n_rows
    (2, 1)
    """
    if by not in ("session", "user", "time"):
        raise ConfigError(f"split_logs by must be 'session', 'user' or 'time'; got {by!r}.")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise ConfigError(f"split_logs holdout must be in (0, 1); got {holdout!r}. Use e.g. 0.2.")
    if by != "time" and not isinstance(rng, np.random.Generator):
        raise TypeError(f"split_logs(by={by!r}) needs rng, a numpy Generator; got {type(rng)}")
    f, unit = logs.frame, "users" if by == "user" else "sessions"
    codes, uniques = pd.factorize(f["user_id" if by == "user" else "session_id"], sort=True)
    if (n := len(uniques)) < 2:
        raise ConfigError(f"split_logs(by={by!r}) needs at least 2 {unit}; got {n}.")
    n_held = min(max(round(holdout * n), 1), n - 1)
    held = np.zeros(n, dtype=bool)
    if by == "time":
        start = (
            f["timestamp"].groupby(codes).min().to_numpy() if logs.has_timestamp else np.arange(n)
        )
        held[np.argsort(start, kind="stable")[n - n_held :]] = True
    else:
        held[rng.permutation(n)[:n_held]] = True  # type: ignore[union-attr]
    mask = held[codes]
    return logs.subset(~mask), logs.subset(mask)
