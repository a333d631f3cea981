"""Log columns and layout: canonical names, item-column rules, impression-list detection, warnings.

Split out of :mod:`simkit.logs` (which reads and checks logs and re-exports the public names here):
the column vocabulary, how a log's own item columns are read beside a catalogue, the detection of
impression lists laid out one row per step (with :func:`lists_as_slates` to re-encode them), and the
warnings ``check-log`` and ``fit`` print on suspicious but legal data.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pandas.api import types as pdt

from simkit.errors import LogError

__all__ = [
    "CANONICAL_COLUMNS",
    "FEATURE_PREFIXES",
    "N_SHOWN",
    "Report",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "categorical_item_columns",
    "check_item_columns",
    "fmt_value",
    "is_feature",
    "item_columns",
    "list_layout",
    "lists_as_slates",
    "log_warnings",
    "quoted",
    "values_text",
]

REQUIRED_COLUMNS = ("user_id", "session_id", "step", "item_id", "clicked", "watch_time")
OPTIONAL_COLUMNS = ("timestamp", "propensity", "position", "converted", "bid", "campaign_type")
FEATURE_PREFIXES = ("user_", "item_", "ctx_")
CANONICAL_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "duration")  # duration: catalogue only
N_SHOWN = 5  # examples shown in a message
#: names of integer item columns that are categories, not quantities (``item_cat``, ``item_genre``)
CATEGORY_NAME = r"(?:^|_)(?:cat|cats|category|categories|id|ids|type|kind|code|class|genre|group|topic|section|brand|label)$"


def is_feature(name: str) -> bool:
    """Whether ``name`` is a feature column (``user_``/``item_``/``ctx_``, not canonical)."""
    return name.startswith(FEATURE_PREFIXES) and name not in CANONICAL_COLUMNS


def quoted(names: list[Any], limit: int = 30) -> str:
    """``'a', 'b', ...``: up to ``limit`` names, quoted."""
    return ", ".join(repr(n) for n in names[:limit]) + (", ..." if len(names) > limit else "")


class Report:
    """The problems of one source, worded with its row numbers and the user's column names."""

    def __init__(self, source: str, starts: Any = None, names: list[str] | None = None) -> None:
        self.source, self.starts, self.names = source, starts, names or []
        self.problems: list[str] = []
        self.yours: dict[str, str] = {}  # canonical -> the user's name, where they differ

    def add(self, text: str) -> None:
        self.problems.append(f"{self.source}: {text}")

    def bad(self, name: str, must: str, got: str, where: NDArray[np.bool_], fix: str) -> None:
        yours = f" (your '{self.yours[name]}')" if name in self.yours else ""
        self.add(f"Column '{name}'{yours} must {must}; got {got} in {self.rows(where)}. {fix}")

    def rows(self, where: NDArray[Any]) -> str:
        idx = np.flatnonzero(where) if where.dtype == bool else np.sort(where)
        shown = idx[:N_SHOWN]
        if self.starts is None:
            labels = [str(i + 1) for i in shown]
        else:  # a folder of parquet files: name each row's file
            f = np.searchsorted(self.starts, shown, side="right") - 1
            labels = [f"{self.names[j]}:{i - self.starts[j] + 1}" for i, j in zip(shown, f)]
        s, more = ("" if len(idx) == 1 else "s"), (", ..." if len(idx) > N_SHOWN else "")
        return f"{len(idx)} row{s} (row{s} {', '.join(labels)}{more})"


def fmt_value(v: Any) -> str:
    if isinstance(v, (bool, np.bool_, int, np.integer)):
        return str(v if isinstance(v, (bool, np.bool_)) else int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if np.isfinite(v) and float(v).is_integer() else repr(float(v))
    return repr(v if isinstance(v, str) else str(v))


def values_text(values: Any) -> str:
    """``{a, b, ...}``: the first few distinct values, sorted when they can be."""
    uniq = pd.unique(np.asarray(values))
    try:
        uniq = np.sort(uniq)
    except TypeError:  # mixed kinds: keep the order of appearance
        pass
    more = ", ..." if len(uniq) > N_SHOWN else ""
    return "{" + ", ".join(fmt_value(v) for v in uniq[:N_SHOWN]) + more + "}"


def item_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("item_") and c != "item_id"]


def check_item_columns(frame: pd.DataFrame, report: Any, notes: list[str]) -> None:
    """A log's ``duration`` must be one value per item (an error otherwise); ``item_*`` columns
    that vary within an item are noted (the fit uses each item's first value)."""
    ids = frame["item_id"]
    if "duration" in frame.columns:
        d = frame["duration"]
        n_values = d.groupby(ids, sort=False).nunique()
        several = n_values[n_values > 1].index
        if len(several):
            rows = ids.isin(several).to_numpy()
            report.bad(
                "duration",
                "be the same on every row of an item (it is the item's length)",
                f"{len(several)} items with several values ({values_text(several)})",
                rows,
                "Give each item one duration, or put the durations in an item catalogue.",
            )
    varying = [
        c for c in item_columns(frame) if (frame[c].groupby(ids, sort=False).nunique() > 1).any()
    ]
    if varying:
        notes.append(
            f"The item columns {quoted(varying)} change between rows of one item; an item column "
            "describes the item, so the simulator uses each item's first value. Put per-impression "
            "values in ctx_ columns instead."
        )


def categorical_item_columns(
    frame: pd.DataFrame | None, notes: list[str], *, log: bool = True
) -> pd.DataFrame | None:
    """Whole-number item columns named as categories (``item_cat``, ``item_genre``, ...) become
    categories: their codes are labels, not quantities."""

    if frame is None:
        return None
    turned = []
    for c in item_columns(frame):
        col = frame[c]
        if re.search(CATEGORY_NAME, c[len("item_") :]) and pdt.is_integer_dtype(col.dtype):
            turned.append(c)
    if not turned:
        return frame
    out = frame.assign(**{c: frame[c].astype("category") for c in turned})
    where = "log" if log else "item catalogue"
    notes.append(
        f"The whole-number {where} columns {quoted(turned)} are read as categories (their names "
        "say they label a kind, not a quantity). Rename a column if it is a quantity."
    )
    return out


#: names of a column that identifies an impression list (one per row layout)
LIST_NAME = r"impression|(?:^|_)list(?:_|$)|(?:^|_)slate(?:_|$)|(?:^|_)page_?view"


def list_layout(frame: pd.DataFrame) -> str | None:
    """A warning when the rows are impression lists laid out one per row, else None.

    Lists are found by a column naming them (``ctx_impression_id``, ``list_id``, ...), or by rows
    of a session sharing a timestamp; they are per-row lists when several steps share one list
    and each list has at most one click.
    """

    n_rows = len(frame)
    steps_per_row = frame.groupby(["session_id", "step"], sort=False).ngroups / max(n_rows, 1)
    if steps_per_row < 0.999:  # slates already: rows of a step share it
        return None
    candidates = [
        c
        for c in frame.columns
        if c not in CANONICAL_COLUMNS and re.search(LIST_NAME, str(c), flags=re.IGNORECASE)
    ]
    found = []
    for c in candidates:
        found.append((f"column '{c}'", frame[c]))
    if "timestamp" in frame.columns:
        found.append(("rows sharing a timestamp", frame["timestamp"]))
    for label, key in found:
        if key.isna().any():
            continue
        groups = frame.groupby([frame["session_id"], key], sort=False, observed=True)
        size = groups.size().to_numpy()
        clicks = groups["clicked"].sum().to_numpy()
        if len(size) == 0 or np.median(size) < 2 or (size > 1).mean() < 0.5:
            continue
        if (clicks <= 1).mean() < 0.99:
            continue
        slot = next(
            (c for c in frame.columns if re.search(r"slot|rank|position", str(c), re.I)), None
        )
        slot_hint = f"'{slot}'" if slot else "the row's rank in its list"
        col_arg = label.split("'")[1] if label.startswith("column") else None
        call = (
            f"simkit.logs.lists_as_slates(frame, list_column='{col_arg}'"
            + (f", slot_column='{slot}')" if slot else ")")
            if col_arg
            else "simkit.logs.lists_as_slates(frame, list_column='timestamp')"
        )
        return (
            f"The rows look like impression lists laid out one row per step: {label} groups "
            f"{len(size):,} lists of {int(size.min())}-{int(size.max())} rows (median "
            f"{int(np.median(size))}) with at most one click each, but every row is its own step. "
            "Read this way, the state's counters (n_clicks, steps_since_click) tell the click model "
            "whether the list's one click already happened, and the continuation model learns "
            "'leaving' at every row. Encode each list as a slate: step = the list's index in its "
            f"session, position = the row's slot in the list ({slot_hint}); e.g. {call}."
        )
    return None


def log_warnings(
    frame: pd.DataFrame, catalogue: pd.DataFrame | None, dwell: bool, source: str
) -> list[str]:
    out = []
    clicked = frame["clicked"].to_numpy() > 0
    if len(frame) and clicked.all():
        out.append(
            f"Every row is a click ({len(frame):,} rows): the log holds no impression that was not "
            "clicked, so no click model can be fitted (it learns from both) and a click rate "
            "cannot be read from it. Log every shown item, with clicked = 0 when it was not "
            "clicked; a stream of clicks alone is not an impression log."
        )
    lists = list_layout(frame)
    if lists:
        out.append(lists)
    if catalogue is not None:
        in_log = item_columns(frame) + (["duration"] if "duration" in frame.columns else [])
        both = [c for c in in_log if c in catalogue.columns]
        only = [c for c in in_log if c not in catalogue.columns]
        if in_log:
            out.append(
                "The log has item columns of its own beside the item catalogue: "
                + (f"{quoted(only)} are used for the log's items; " if only else "")
                + (
                    f"{quoted(both)} are in both, and the catalogue's values are used"
                    if both
                    else ""
                )
                + "."
            )
    if dwell:
        duration = None
        if catalogue is not None and "duration" in catalogue.columns:
            table = catalogue.set_index("item_id")["duration"]
            duration = table.reindex(frame["item_id"]).to_numpy(np.float64)
        if "duration" in frame.columns and (duration is None or np.isnan(duration).all()):
            duration = frame["duration"].to_numpy(np.float64)
        if duration is not None:
            watch = frame["watch_time"].to_numpy(np.float64)
            over = clicked & np.isfinite(duration) & (watch > duration * 1.001 + 0.01)
            if over.any():
                ratio = float(np.max(watch[over] / duration[over]))
                rows = np.flatnonzero(over)[:N_SHOWN] + 1
                out.append(
                    f"watch_time exceeds the item's duration on {int(over.sum()):,} rows (up to "
                    f"{ratio:.1f}x; rows {', '.join(map(str, rows))}{', ...' if over.sum() > N_SHOWN else ''} "
                    "of the sorted log). Check that both are in seconds and that duration is the "
                    "item's length; the simulator never simulates a watch beyond the duration."
                )
    return out


def lists_as_slates(
    frame: pd.DataFrame, *, list_column: str, slot_column: str | None = None
) -> pd.DataFrame:
    """Re-encode impression lists laid out one row per step as slates.

    Rows sharing ``(session_id, list_column)`` become one step (numbered 0, 1, ... in the order
    the lists first appear in each session, by ``step`` then row order), and ``position`` is the
    row's slot: ``slot_column`` when given (ranked 0, 1, ... within the list), else the row's
    order within the list.

    Examples
    --------
    >>> df = pd.DataFrame({"user_id": 1, "session_id": 1, "step": [0, 1, 2, 3],
    ...                    "ctx_impression_id": [5, 5, 6, 6], "item_id": [1, 2, 3, 4],
    ...                    "clicked": [0, 1, 0, 0], "watch_time": [0.0, 9.0, 0.0, 0.0]})
    >>> out = lists_as_slates(df, list_column="ctx_impression_id")
    >>> out[["step", "position"]].values.tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    """
    for c in ("session_id", list_column, *([slot_column] if slot_column else [])):
        if c not in frame.columns:
            raise LogError(f"lists_as_slates: the frame has no column {c!r}.")
    f = frame.copy()
    if "step" in f.columns:
        f = f.sort_values(["session_id", "step"], kind="stable")
    key = [f["session_id"], f[list_column]]
    first = f.groupby(key, sort=False, observed=True).cumcount() == 0
    f["step"] = (
        first.astype(np.int64).groupby(f["session_id"], sort=False).cumsum() - 1
    ).to_numpy()
    f["step"] = f.groupby(key, sort=False, observed=True)["step"].transform("first").to_numpy()
    if slot_column:
        f["position"] = (
            f.groupby(["session_id", "step"], sort=False)[slot_column]
            .rank(method="first")
            .astype(np.int64)
            .to_numpy()
            - 1
        )
    else:
        f["position"] = f.groupby(["session_id", "step"], sort=False).cumcount().to_numpy()
    drop = [c for c in (list_column, slot_column) if c and c not in ("position", "timestamp")]
    return f.drop(columns=drop).reset_index(drop=True)
