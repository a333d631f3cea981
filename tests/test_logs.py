"""Tests of simkit.logs: every bad input's exact message, round trips, schema, splits, properties."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simkit.log_files
import simkit.logs
from simkit.errors import ConfigError, LogError
from simkit.logs import REQUIRED_COLUMNS, Logs, LogSchema, read_logs, split_logs

D = "<DataFrame>: "
FOUND = "'user_id', 'session_id', 'step', 'item_id', 'clicked', 'watch_time'"
MUST_HAVE = (
    "Log must have the columns user_id, session_id, step, item_id, clicked and those "
    "the schema maps; missing "
)
RENAME = (
    "Rename those columns or map your names onto them with "
    "LogSchema(columns={'clicked': 'your_name', ...})."
)
FILL = "Fill in those cells or remove the rows before reading."
CLICK_FIX = "Encode a click as 1 and no click as 0."
WATCH_FIX = "Use 0 for impressions without engagement and fix or remove the others."


def base() -> pd.DataFrame:
    """Eight valid rows: three users, four sessions."""
    return pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2, 3, 3],
            "session_id": [10, 10, 10, 20, 20, 21, 30, 30],
            "step": [0, 1, 2, 0, 1, 0, 0, 1],
            "item_id": [100, 101, 102, 100, 103, 101, 104, 100],
            "clicked": [1, 0, 1, 0, 1, 0, 1, 0],
            "watch_time": [30.0, 0.0, 12.5, 0.0, 4.0, 0.0, 60.0, 0.0],
        }
    )


def long(n: int = 45) -> pd.DataFrame:
    """``n`` valid rows, five per session, nothing clicked."""
    i = np.arange(n)
    return pd.DataFrame(
        {
            "user_id": i // 5,
            "session_id": i // 5,
            "step": i % 5,
            "item_id": i,
            "clicked": np.zeros(n, dtype=int),
            "watch_time": np.zeros(n),
        }
    )


def edit(frame: pd.DataFrame, **columns: object) -> pd.DataFrame:
    return frame.assign(**columns)


def at(frame: pd.DataFrame, column: str, rows: list[int], value: object) -> pd.DataFrame:
    """Set 1-based ``rows`` of ``column`` to ``value`` (the column becomes object when needed)."""
    out = frame.copy()
    values = out[column].astype(object)
    values.iloc[[r - 1 for r in rows]] = value
    out[column] = values if isinstance(value, str) or value is None else pd.to_numeric(values)
    return out


# (id, frame, schema, exact message) - every LogError case of DESIGN.md's Logs section and more
CASES = [
    (
        "missing-columns",
        base().drop(columns=["clicked", "watch_time"]),
        None,
        f"{D}{MUST_HAVE}'clicked' (found columns: 'user_id', 'session_id', 'step', "
        f"'item_id'). {RENAME}",
    ),
    (
        "missing-step-without-timestamp",
        base().drop(columns=["step"]),
        None,
        f"{D}{MUST_HAVE}'step' (or 'timestamp' to derive it) (found columns: 'user_id', "
        f"'session_id', 'item_id', 'clicked', 'watch_time'). {RENAME}",
    ),
    (
        "mapped-column-absent",
        base(),
        LogSchema(columns={"clicked": "clk"}),
        f"{D}{MUST_HAVE}'clicked' (mapped from 'clk') (found columns: {FOUND}). {RENAME}",
    ),
    (
        "empty-log",
        base().iloc[:0],
        None,
        f"{D}Log must have at least one row; got 0 rows. Check that it is the export you meant.",
    ),
    (
        "nan-in-required-id",
        at(base(), "item_id", [2, 5], np.nan),
        None,
        f"{D}Column 'item_id' must have a value in every row; got NaN in 2 rows (rows 2, 5). {FILL}",
    ),
    (
        "nan-in-required-number",
        at(base(), "clicked", [8], np.nan),
        None,
        f"{D}Column 'clicked' must have a value in every row; got NaN in 1 row (row 8). {FILL}",
    ),
    (
        "clicked-outside-01",
        at(at(long(), "clicked", [4, 40], -1), "clicked", [9, 18, 41], 2),
        None,
        f"{D}Column 'clicked' must contain only 0/1 or booleans; got values {{-1, 2}} in 5 rows "
        f"(rows 4, 9, 18, 40, 41). {CLICK_FIX}",
    ),
    (
        "more-than-five-rows",
        at(long(), "clicked", [1, 2, 3, 4, 5, 6, 7], 3),
        None,
        f"{D}Column 'clicked' must contain only 0/1 or booleans; got values {{3}} in 7 rows "
        f"(rows 1, 2, 3, 4, 5, ...). {CLICK_FIX}",
    ),
    (
        "watch-time-negative-or-infinite",
        at(at(base(), "watch_time", [2], -1.0), "watch_time", [4], np.inf),
        None,
        f"{D}Column 'watch_time' must be finite and >= 0 (seconds); got values {{-1, inf}} in 2 "
        f"rows (rows 2, 4). {WATCH_FIX}",
    ),
    (
        "propensity-outside-0-1",
        at(at(edit(base(), propensity=0.5), "propensity", [3], 0.0), "propensity", [7], 1.5),
        None,
        f"{D}Column 'propensity' must be in (0, 1]; got values {{0, 1.5}} in 2 rows (rows 3, 7). "
        "Log the behaviour policy's probability of showing each item, or leave the column out.",
    ),
    (
        "propensity-nan",
        at(edit(base(), propensity=0.5), "propensity", [1], np.nan),
        None,
        f"{D}Column 'propensity' must have a value in every row; got NaN in 1 row (row 1). {FILL}",
    ),
    (
        "duplicate-session-step",
        at(base(), "step", [2], 0),
        None,
        f"{D}Each (session_id, step) must appear once; got 1 row (row 2) repeating an earlier row's "
        "key. Remove the repeated rows or give each its own step.",
    ),
    (
        "duplicate-session-step-position",
        edit(base(), step=[0, 0, 0, 0, 1, 0, 0, 1], position=0),
        None,
        f"{D}Each (session_id, step, position) must appear once; got 2 rows (rows 2, 3) repeating "
        "an earlier row's key. Remove the repeated rows or give each slate item its own position.",
    ),
    (
        "session-spans-users",
        edit(base(), session_id=[10, 10, 10, 20, 20, 10, 30, 30], step=[0, 1, 2, 0, 1, 3, 0, 1]),
        None,
        f"{D}Each session must belong to one user; got 1 session with several user_ids {{10}} in 4 "
        "rows (rows 1, 2, 3, 6). Give each user's sessions their own session_id.",
    ),
    (
        "watch-time-on-unclicked-row",
        at(at(base(), "watch_time", [2], 5.0), "watch_time", [8], 1.0),
        None,
        f"{D}Column 'watch_time' must be 0 on rows that were not clicked; got watch time > 0 with "
        "clicked = 0 in 2 rows (rows 2, 8). Set clicked to 1 on those rows, or read with "
        "LogSchema(count_unclicked_watch_as_click=True) to count them as clicks.",
    ),
    (
        "text-in-watch-time",
        at(at(base(), "watch_time", [2], "abc"), "watch_time", [4], "n/a"),
        None,
        f"{D}Column 'watch_time' must be numeric; got text values {{'abc', 'n/a'}} in 2 rows "
        "(rows 2, 4). Fix those cells or convert the column to numbers before reading.",
    ),
    (
        "dates-in-watch-time",
        edit(base(), watch_time=pd.to_datetime(["2024-01-01"] * 8).as_unit("s")),
        None,
        f"{D}Column 'watch_time' must be numeric; got dates/times (datetime64[s]) in 8 rows (rows "
        "1, 2, 3, 4, 5, ...). Use numbers (seconds).",
    ),
    (
        "ids-of-two-kinds",
        edit(base(), user_id=pd.Series(["u1", "u1", "u1", 2, 2, 2, "u3", "u3"], dtype=object)),
        None,
        f"{D}Column 'user_id' must hold only whole numbers or only text; got values {{2}} that are "
        "not text in 3 rows (rows 4, 5, 6). Convert it to one kind.",
    ),
    (
        "fractional-id",
        at(base(), "item_id", [1], 100.5),
        None,
        f"{D}Column 'item_id' must hold whole numbers or text; got values {{100.5}} in 1 row (row "
        "1). Use the ids of your system.",
    ),
    (
        "fractional-step",
        at(base(), "step", [3], 1.5),
        None,
        f"{D}Column 'step' must hold whole numbers >= 0; got values {{1.5}} in 1 row (row 3). "
        "Number each session's impressions 0, 1, 2, ...",
    ),
    (
        "unparseable-timestamp",
        edit(base(), timestamp=[f"2024-01-01T00:00:0{i}" for i in range(8)]).pipe(
            at, "timestamp", [2], "garbage"
        ),
        None,
        f"{D}Column 'timestamp' must hold numbers or ISO 8601 dates; got values {{'garbage'}} in 1 "
        "row (row 2). Fix those cells before reading.",
    ),
    (
        "message-uses-the-users-name",
        at(base().rename(columns={"clicked": "clk"}), "clk", [1], 5),
        LogSchema(columns={"clicked": "clk"}),
        f"{D}Column 'clicked' (your 'clk') must contain only 0/1 or booleans; got values {{5}} in 1 "
        f"row (row 1). {CLICK_FIX}",
    ),
    (
        "two-columns-one-name",
        edit(base(), uid=1),
        LogSchema(columns={"user_id": "uid"}),
        f"{D}Columns must have distinct names after mapping; got 'user_id' more than once (found "
        f"columns: {FOUND}, 'uid'). Drop or rename one of each, or change the mapping.",
    ),
    (
        "all-problems-in-one-error",
        at(at(base(), "clicked", [1], 2), "watch_time", [3], -2.0).pipe(at, "step", [2], 0),
        None,
        f"{D}Column 'clicked' must contain only 0/1 or booleans; got values {{2}} in 1 row (row 1). "
        f"{CLICK_FIX}\n\n"
        f"{D}Column 'watch_time' must be finite and >= 0 (seconds); got values {{-2}} in 1 row "
        f"(row 3). {WATCH_FIX}\n\n"
        f"{D}Each (session_id, step) must appear once; got 1 row (row 2) repeating an earlier row's "
        "key. Remove the repeated rows or give each its own step.",
    ),
]


@pytest.mark.parametrize(
    ("frame", "schema", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_raises_log_error_with_exact_message(frame, schema, message):
    with pytest.raises(LogError, match=f"^{re.escape(message)}$"):
        read_logs(frame, schema)


def test_bad_rows_are_numbered_as_in_the_file(tmp_path):
    csv = tmp_path / "log.csv"
    at(at(base(), "watch_time", [2], "abc"), "clicked", [6], 4).to_csv(csv, index=False)
    expected = (
        f"{csv}: Column 'clicked' must contain only 0/1 or booleans; got values {{4}} in 1 row "
        f"(row 6). {CLICK_FIX}\n\n{csv}: Column 'watch_time' must be numeric; got text values "
        "{'abc'} in 1 row (row 2). Fix those cells or convert the column to numbers before reading."
    )
    with pytest.raises(LogError, match=f"^{re.escape(expected)}$"):
        read_logs(csv)


def test_rows_of_a_folder_name_their_file(tmp_path):
    base().iloc[:4].to_parquet(tmp_path / "a.parquet")
    at(base().iloc[4:], "clicked", [2], 7).to_parquet(tmp_path / "b.parquet")
    expected = (
        f"{tmp_path}: Column 'clicked' must contain only 0/1 or booleans; got values {{7}} in 1 "
        f"row (row b.parquet:2). {CLICK_FIX}"
    )
    with pytest.raises(LogError, match=f"^{re.escape(expected)}$"):
        read_logs(tmp_path)


def test_text_after_the_first_block_of_a_csv_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(simkit.log_files, "CSV_BLOCK", 1 << 12)  # types come from the first 4 kB
    frame = long(2000).astype({"watch_time": object})
    frame.loc[1990, "watch_time"] = "oops"
    frame.to_csv(tmp_path / "big.csv", index=False)
    with pytest.raises(LogError, match=re.escape("got text values {'oops'} in 1 row (row 1991)")):
        read_logs(tmp_path / "big.csv")


def test_file_problems(tmp_path):
    fix = "Check the path; simkit reads .csv, .csv.gz and .parquet files and folders of .parquet files."
    cases = {
        tmp_path / "nope.csv": f"Log file must exist; got no file or folder at this path. {fix}",
        tmp_path / "log.json": f"Log file must end in .csv, .csv.gz or .parquet. {fix}",
        tmp_path / "empty": f"Log folder must contain .parquet files; got none. {fix}",
        tmp_path / "zero.csv": "Log must have at least one row; got an empty file.",
        tmp_path / "header.csv": "Log must have at least one row; got 0 rows. Check that it is the "
        "export you meant.",
    }
    (tmp_path / "log.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "zero.csv").write_text("")
    (tmp_path / "header.csv").write_text(",".join(REQUIRED_COLUMNS) + "\n")
    for path, message in cases.items():
        with pytest.raises(LogError, match=f"^{re.escape(f'{path}: {message}')}$"):
            read_logs(path)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(
        LogError, match=re.escape(f"{tmp_path / 'broken.parquet'}: Log file must be readable; got ")
    ):
        read_logs(tmp_path / "broken.parquet")
    with pytest.raises(TypeError, match="Log must be a path or a pandas DataFrame"):
        read_logs(42)


def test_catalogue_problems_join_the_logs_problems():
    items = pd.DataFrame({"item_id": [100, 101, 100], "duration": [30.0, -5.0, 10.0]})
    expected = (
        f"{D}Column 'clicked' must contain only 0/1 or booleans; got values {{2}} in 1 row (row 1). "
        f"{CLICK_FIX}\n\n<items DataFrame>: Column 'item_id' must be unique in the catalogue; got "
        "items {100} repeated in 1 row (row 3). Keep one row per item.\n\n<items DataFrame>: Column "
        "'duration' must be finite and > 0 (seconds); got values {-5} in 1 row (row 2). Give each "
        "item's length in seconds, or leave the column out."
    )
    with pytest.raises(LogError, match=f"^{re.escape(expected)}$"):
        read_logs(at(base(), "clicked", [1], 2), items=items)
    no_id = (
        "<items DataFrame>: Item catalogue must have the column 'item_id'; got columns 'id'. Rename "
        "the id column or map it with LogSchema(columns={'item_id': 'your_name'})."
    )
    with pytest.raises(LogError, match=f"^{re.escape(no_id)}$"):
        read_logs(base(), items=pd.DataFrame({"id": [1]}))


def test_catalogue_is_read_and_typed(tmp_path):
    items = pd.DataFrame(
        {"item_id": [104, 100, 101], "item_genre": ["b", "a", "b"], "duration": [1, 2, 3]}
    )
    items.to_csv(tmp_path / "items.csv", index=False)
    logs = read_logs(base(), LogSchema(item_catalogue=str(tmp_path / "items.csv")))
    assert logs.items is not None
    assert list(logs.items.columns) == ["item_id", "item_genre", "duration"]
    assert logs.items["duration"].dtype == np.float64
    assert isinstance(logs.items["item_genre"].dtype, pd.CategoricalDtype)


def test_unclicked_watch_counts_as_click_when_the_schema_says_so():
    frame = at(at(base(), "watch_time", [2], 5.0), "watch_time", [8], 1.0)
    logs = read_logs(frame, LogSchema(count_unclicked_watch_as_click=True))
    assert dict(logs.repairs) == {"clicked set to 1 where watch_time > 0": 2}
    assert logs.frame["clicked"].tolist() == [1, 1, 1, 0, 1, 0, 1, 1]


def test_step_is_derived_from_timestamps():
    frame = base().drop(columns="step").assign(timestamp=[5.0, 3.0, 9.0, 1.0, 2.0, 7.0, 4.0, 4.5])
    logs = read_logs(frame)
    assert logs.repairs["step derived from timestamp order"] == 8
    assert logs.frame["item_id"].tolist() == [101, 100, 102, 100, 103, 101, 104, 100]
    assert logs.frame["step"].tolist() == [0, 1, 2, 0, 1, 0, 0, 1]
    slates = frame.assign(
        timestamp=[1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0], position=[0, 1, 0, 0, 1, 0, 0, 1]
    )
    assert read_logs(slates).frame["step"].tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    dates = frame.assign(timestamp=[f"2024-05-0{d}T10:00:00" for d in (5, 3, 9, 1, 2, 7, 4, 6)])
    logs = read_logs(dates)
    assert logs.frame["timestamp"].dtype == "datetime64[ns]"
    assert logs.frame["item_id"].tolist() == [101, 100, 102, 100, 103, 101, 104, 100]


def round_trip_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 60
    session = np.repeat(np.arange(12), 5)
    clicked = rng.random(n) < 0.4
    return pd.DataFrame(
        {
            "user_id": np.array(["u1", "u2", "u3", "u4"])[session % 4],
            "session_id": session + 1000,
            "step": np.tile(np.arange(5), 12),
            "item_id": rng.integers(0, 20, n),
            "clicked": clicked,
            "watch_time": np.where(clicked, rng.integers(1, 100, n) / 4, 0.0),
            "timestamp": session * 100.0 + np.tile(np.arange(5), 12),
            "propensity": rng.integers(1, 9, n) / 8,
            "position": 0,
            "user_segment": np.array(["young", "old", "mid"])[session % 3],
            "item_len": rng.integers(1, 5, n) * 1.5,
            "ctx_hour": rng.integers(0, 24, n),
            "note": "kept",
        }
    ).sample(frac=1.0, random_state=3)  # shuffled: reading sorts


def test_every_format_reads_the_same_frame(tmp_path):
    frame = round_trip_frame()
    expected = read_logs(frame).frame
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_csv(tmp_path / "log.csv.gz", index=False)
    frame.to_parquet(tmp_path / "log.parquet")
    (tmp_path / "parts").mkdir()
    frame.iloc[:25].to_parquet(tmp_path / "parts" / "part-0.parquet")
    frame.iloc[25:].to_parquet(tmp_path / "parts" / "part-1.parquet")
    for name in ["log.csv", "log.csv.gz", "log.parquet", "parts"]:
        logs = read_logs(tmp_path / name)
        assert logs.source == str(tmp_path / name)
        pd.testing.assert_frame_equal(logs.frame, expected)
    pd.testing.assert_frame_equal(read_logs(expected).frame, expected)  # reading is idempotent


def test_canonical_frame_and_logs_api():
    frame = round_trip_frame()
    before = frame.copy()
    logs = read_logs(frame)
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched
    f = logs.frame
    assert list(f.columns[:6]) == list(REQUIRED_COLUMNS)
    assert (f["clicked"].dtype, f["watch_time"].dtype, f["step"].dtype) == (
        np.int8,
        np.float64,
        np.int64,
    )
    assert (f["position"].dtype, f["propensity"].dtype) == (np.int64, np.float64)
    assert isinstance(f.index, pd.RangeIndex)
    assert f[["session_id", "step", "position"]].equals(
        f[["session_id", "step", "position"]]
        .sort_values(["session_id", "step", "position"])
        .reset_index(drop=True)
    )
    assert f["user_id"].iloc[0] == "u1" and f["session_id"].iloc[0] == 1000
    assert isinstance(f["user_segment"].dtype, pd.CategoricalDtype)
    assert (logs.n_rows, logs.n_users, logs.n_sessions) == (60, 4, 12)
    assert logs.feature_columns == ("user_segment", "item_len", "ctx_hour")
    assert logs.ignored_columns == ("note",)
    assert logs.has_propensity and logs.has_position and logs.has_timestamp
    summary = logs.describe()
    assert summary["rows"] == 60 and summary["ignored_columns"] == ["note"]
    assert summary["session_length"] == {
        "min": 5.0,
        "25%": 5.0,
        "50%": 5.0,
        "75%": 5.0,
        "95%": 5.0,
        "max": 5.0,
    }
    assert summary["click_rate"] == pytest.approx(frame["clicked"].mean())
    assert summary["watch_time"]["min"] > 0  # over clicked rows only
    assert np.isnan(
        read_logs(base().assign(clicked=0, watch_time=0.0)).describe()["watch_time"]["max"]
    )
    part = logs.subset([1000, 1003])
    assert (
        part.n_sessions == 2
        and part.source == logs.source
        and isinstance(part.frame.index, pd.RangeIndex)
    )
    assert logs.subset(f["clicked"].to_numpy() == 1).frame["clicked"].eq(1).all()


def test_schema_mapping_and_toml(tmp_path):
    mine = base().rename(columns={"user_id": "uid", "clicked": "is_click"}).assign(age=[30] * 8)
    toml = tmp_path / "schema.toml"
    toml.write_text(
        'count_unclicked_watch_as_click = true\nitem_catalogue = "items.csv"\n\n'
        '[columns]\nuser_id = "uid"\nclicked = "is_click"\nuser_age = "age"\n'
    )
    schema = LogSchema.from_toml(toml)
    assert dict(schema.columns) == {"user_id": "uid", "clicked": "is_click", "user_age": "age"}
    assert schema.count_unclicked_watch_as_click
    assert schema.item_catalogue == str(tmp_path / "items.csv")
    logs = read_logs(mine, LogSchema(columns=schema.columns))
    assert logs.feature_columns == ("user_age",)
    pd.testing.assert_frame_equal(logs.frame.drop(columns="user_age"), read_logs(base()).frame)
    bad = tmp_path / "bad.toml"
    bad.write_text("colums = {}\n")
    expected = (
        f"{bad}: Schema keys must be among columns, count_unclicked_watch_as_click, "
        "item_catalogue; got unknown key 'colums'. Fix the spelling or remove the key."
    )
    with pytest.raises(LogError, match=f"^{re.escape(expected)}$"):
        LogSchema.from_toml(bad)
    bad.write_text('[columns]\nclicks = "c"\n')
    with pytest.raises(
        LogError,
        match=re.escape(f"{bad}: LogSchema.columns keys must be canonical names (user_id, "),
    ):
        LogSchema.from_toml(bad)
    bad.write_text("[columns\n")
    with pytest.raises(LogError, match=re.escape(f"{bad}: Schema file must be valid TOML")):
        LogSchema.from_toml(bad)
    with pytest.raises(LogError, match="Schema file must exist"):
        LogSchema.from_toml(tmp_path / "none.toml")
    with pytest.raises(LogError, match=re.escape("got 'a' mapped onto several canonical names")):
        LogSchema(columns={"user_id": "a", "session_id": "a"})


def test_schema_is_read_only_hashable_and_serialisable():
    schema = LogSchema(columns={"clicked": "clk"}, item_catalogue=Path("items.csv"))
    assert schema.item_catalogue == "items.csv"
    assert hash(schema) == hash(LogSchema(columns={"clicked": "clk"}, item_catalogue="items.csv"))
    assert json.loads(json.dumps(dataclasses.asdict(schema)))["columns"] == {"clicked": "clk"}
    assert pickle.loads(pickle.dumps(schema)) == schema
    with pytest.raises(TypeError, match="read-only"):
        schema.columns["user_id"] = "uid"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        schema.count_unclicked_watch_as_click = True  # type: ignore[misc]


def split_fixture() -> Logs:
    rng = np.random.default_rng(11)
    n_sessions = 400
    lengths = rng.integers(1, 6, n_sessions)
    session = np.repeat(np.arange(n_sessions), lengths)
    frame = pd.DataFrame(
        {
            "user_id": (np.arange(n_sessions) % 80)[session],
            "session_id": session,
            "step": np.concatenate([np.arange(k) for k in lengths]),
            "item_id": rng.integers(0, 30, len(session)),
            "clicked": 0,
            "watch_time": 0.0,
            "timestamp": rng.permutation(n_sessions)[session] * 10.0,
        }
    )
    return read_logs(frame)


@pytest.mark.parametrize("by", ["session", "user", "time"])
def test_split_logs_properties(by):
    logs = split_fixture()
    train, held = split_logs(logs, by=by, holdout=0.25, rng=np.random.default_rng(1))
    key = "user_id" if by == "user" else "session_id"
    assert train.n_rows + held.n_rows == logs.n_rows
    assert set(train.frame[key]).isdisjoint(held.frame[key])  # whole users/sessions, disjoint
    merged = (
        pd.concat([train.frame, held.frame])
        .sort_values(["session_id", "step"])
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(merged, logs.frame)  # covers everything
    units = logs.n_users if by == "user" else logs.n_sessions
    assert held.frame[key].nunique() == round(0.25 * units)
    again, _ = split_logs(logs, by=by, holdout=0.25, rng=np.random.default_rng(1))
    pd.testing.assert_frame_equal(again.frame, train.frame)  # same seed, same split
    if by == "time":  # the latest sessions are held out
        first = logs.frame.groupby("session_id")["timestamp"].min()
        assert (
            first[held.frame["session_id"].unique()].min()
            > first[train.frame["session_id"].unique()].max()
        )
    else:
        other, _ = split_logs(logs, by=by, holdout=0.25, rng=np.random.default_rng(2))
        assert not other.frame.equals(train.frame)


def test_time_split_without_timestamps_holds_out_the_last_session_ids():
    logs = read_logs(base())
    train, held = split_logs(logs, by="time", holdout=0.5)
    assert sorted(held.frame["session_id"].unique()) == [21, 30]
    assert sorted(train.frame["session_id"].unique()) == [10, 20]


def test_split_logs_rejects_bad_arguments():
    logs = split_fixture()
    with pytest.raises(
        ConfigError, match=re.escape("split_logs holdout must be in (0, 1); got 1.0.")
    ):
        split_logs(logs, holdout=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="split_logs by must be"):
        split_logs(logs, by="day", rng=np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs rng"):
        split_logs(logs, by="user", rng=None)
    with pytest.raises(ConfigError, match="needs at least 2 sessions"):
        split_logs(read_logs(base().iloc[:1]), rng=np.random.default_rng(0))


# -- Hypothesis: any malformed frame gives a valid Logs or a LogError, never another exception --

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "a", "1", "2.5", "x y", "2024-01-01", "inf"]),
)
COLUMNS = [*REQUIRED_COLUMNS, "timestamp", "propensity", "position", "user_seg", "other"]


@st.composite
def malformed_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 7))
    i = np.arange(n)
    frame = pd.DataFrame(
        {
            "user_id": i // 3,
            "session_id": i // 3,
            "step": i % 3,
            "item_id": i % 4,
            "clicked": i % 2,
            "watch_time": (i % 2) * 3.0,
            "timestamp": i * 1.0,
            "propensity": 0.5,
            "position": 0,
            "user_seg": np.array(["a", "b"])[i % 2],
            "other": i,
        }
    )
    frame = frame.drop(columns=draw(st.lists(st.sampled_from(COLUMNS[2:]), unique=True)))
    ops = st.tuples(
        st.sampled_from(["set", "drop", "repeat", "text"]),
        st.sampled_from(COLUMNS),
        st.integers(0, 6),
        ODD_VALUES,
    )
    for op, column, row, value in draw(st.lists(ops, max_size=4)):
        if column not in frame.columns or (op != "drop" and row >= len(frame)):
            continue
        if op == "drop":
            frame = frame.drop(columns=column)
        elif op == "repeat":
            frame = pd.concat([frame, frame.iloc[[row]]], ignore_index=True)
        elif op == "text":
            frame[column] = frame[column].astype(str)
        else:
            values = frame[column].astype(object)
            values.iloc[row] = value
            frame[column] = values
    return frame


def assert_valid(logs: Logs) -> None:
    f = logs.frame
    assert set(REQUIRED_COLUMNS) <= set(f.columns) and len(f) > 0
    assert not f[list(REQUIRED_COLUMNS)].isna().any().any()
    assert f["clicked"].dtype == np.int8 and f["clicked"].isin([0, 1]).all()
    watch = f["watch_time"].to_numpy()
    assert f["watch_time"].dtype == np.float64 and np.isfinite(watch).all() and (watch >= 0).all()
    assert ((watch == 0) | (f["clicked"] == 1)).all()
    keys = ["session_id", "step", *(["position"] if logs.has_position else [])]
    assert not f.duplicated(keys).any()
    assert (f.groupby("session_id")["user_id"].nunique() == 1).all()
    if logs.has_propensity:
        assert ((f["propensity"] > 0) & (f["propensity"] <= 1)).all()
    assert isinstance(f.index, pd.RangeIndex)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed_frames())
def test_malformed_frames_give_logs_or_log_error(frame):
    try:
        logs = read_logs(frame)
    except LogError as error:
        assert str(error).startswith(D)
    else:
        assert_valid(logs)
