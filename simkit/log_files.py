"""Reading log and catalogue files (CSV, CSV.gz, parquet files and folders, frames) into pandas.

Split out of :mod:`simkit.logs`, which checks what this reads. CSV is streamed in blocks through
pyarrow (column types inferred from the first block), which halves the peak memory of a read; a
folder of parquet files is read file by file, and row numbers in messages name each row's file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from simkit.errors import LogError
from simkit.log_layout import Report, is_feature

if TYPE_CHECKING:
    from simkit.logs import LogSchema

__all__ = ["CSV_BLOCK", "load_table", "to_frame"]

CSV_BLOCK = 16 << 20  # bytes of CSV per block; column types are inferred from the first one


def to_frame(names: list[str], take: Callable[[int], Any], as_category: set[str]) -> pd.DataFrame:
    """Convert arrow columns one at a time (``take(i)`` hands over column ``i``), so that the peak
    stays near the frame's own size; text columns in ``as_category`` are dictionary-encoded."""
    columns = {}
    for i, name in enumerate(names):
        col = take(i)
        if name in as_category and (
            pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        ):
            col = col.dictionary_encode()
        s = col.to_pandas(split_blocks=True, self_destruct=True)
        if isinstance(s.dtype, pd.CategoricalDtype):  # sorted categories, as pandas makes them
            s = s.cat.reorder_categories(s.cat.categories.sort_values())
        columns[i] = s
    pa.default_memory_pool().release_unused()  # hand the decoding buffers back to the system
    return pd.DataFrame(columns, copy=False).set_axis(pd.Index(names, dtype=object), axis=1)


def load_table(source: Any, what: str, schema: LogSchema) -> tuple[pd.DataFrame, Report]:
    """Read ``source``; problems with the file itself raise :class:`LogError` at once."""
    if isinstance(source, pd.DataFrame):
        return source, Report("<DataFrame>" if what == "Log" else "<items DataFrame>")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path or a pandas DataFrame; got {type(source)}")
    path, name = Path(source), os.fspath(source)
    fix = "Check the path; simkit reads .csv, .csv.gz and .parquet files and folders of .parquet files."
    if not path.exists():
        raise LogError(f"{name}: {what} file must exist; got no file or folder at this path. {fix}")
    mapped = {v: k for k, v in schema.columns.items()}
    category = lambda c: is_feature(str(mapped.get(c, c))) or mapped.get(c, c) == "campaign_type"  # noqa: E731
    try:
        if path.is_dir() or name.lower().endswith(".parquet"):
            files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
            if not files:
                raise LogError(
                    f"{name}: {what} folder must contain .parquet files; got none. {fix}"
                )
            with contextlib.ExitStack() as stack:
                parts = [stack.enter_context(pq.ParquetFile(f, pre_buffer=False)) for f in files]
                # a pandas index saved with the data is no column, as in a DataFrame
                meta = [p.schema_arrow.pandas_metadata or {} for p in parts]
                index = {c for m in meta for c in m.get("index_columns", []) if isinstance(c, str)}
                names = list(dict.fromkeys(c for p in parts for c in p.schema_arrow.names))
                names = [c for c in names if c not in index]
                sizes = [p.metadata.num_rows for p in parts]

                def take(i: int) -> Any:  # column i of every file, nulls where a file lacks it
                    cols = [
                        p.read(columns=[names[i]])
                        if names[i] in p.schema_arrow.names
                        else pa.table({names[i]: pa.nulls(n)})
                        for p, n in zip(parts, sizes)
                    ]
                    return pa.concat_tables(cols, promote_options="permissive").column(0)

                frame = to_frame(names, take, {c for c in names if category(c)})
            starts = np.cumsum([0, *sizes[:-1]]) if path.is_dir() else None
            return frame, Report(name, starts, [f.name for f in files])
        if not name.lower().endswith((".csv", ".csv.gz")):
            raise LogError(f"{name}: {what} file must end in .csv, .csv.gz or .parquet. {fix}")
        try:  # streamed: only one block of text is held at a time
            options = pa_csv.ReadOptions(block_size=CSV_BLOCK)
            table = pa_csv.open_csv(path, read_options=options).read_all()
        except pa.ArrowInvalid:  # a type changing mid-file, ragged rows: pandas says where
            return pd.read_csv(path, low_memory=False), Report(name)
        names = table.column_names

        def pop(i: int) -> Any:
            nonlocal table
            col, table = table.column(0), table.remove_column(0)
            return col

        frame = to_frame(names, pop, {c for c in names if category(c)})
        return frame, Report(name)
    except pd.errors.EmptyDataError:
        raise LogError(f"{name}: Log must have at least one row; got an empty file.") from None
    except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as e:
        raise LogError(
            f"{name}: {what} file must be readable; got {type(e).__name__}: {e}. Check that the "
            "file is complete and in the format its name says."
        ) from None
