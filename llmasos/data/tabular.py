"""Tables: CSV and Parquet files (streamed in chunks when large) and pandas DataFrames."""

from __future__ import annotations

import math
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from . import base
from .base import Block, Source
from .checks import quoted

_SCAN_BYTES = 2**18            # block size of the CSV row-counting pass (memory stays near 2 blocks)
_WHITESPACE = np.array([9, 10, 13, 32], dtype=np.uint8)


class CsvChunks(Source):
    """A CSV read as byte ranges of ``chunk_rows`` rows each, found by one counting pass."""

    def __init__(self, path: Path, target: str | None, features: list[str] | None, chunk_rows: int | None) -> None:
        self.path, self.name = path, str(path)
        self.columns = list(read_csv(path, self.name, nrows=0).columns)
        self.features = feature_columns(self.columns, target, features, self.name)
        self.target = target
        self.has_labels = target is not None
        self.row_shape = (len(self.features),)
        with open(path, "rb") as handle:
            data_start = len(handle.readline())
        self.chunk_rows = chunk_rows or _rows_per_chunk(path, data_start)
        self.ranges, self.n_rows = _index_csv(path, data_start, self.chunk_rows)
        self.chunk_count = len(self.ranges)

    def blocks_at(self, index):
        start, stop = self.ranges[index]
        with open(self.path, "rb") as handle:
            handle.seek(start)
            text = handle.read(stop - start)
        offset = index * self.chunk_rows
        # No names=: pandas would silently turn surplus fields into an index; count them instead.
        frame = read_csv(BytesIO(text), self.name, header=None)
        expected = min(self.chunk_rows, self.n_rows - offset)
        if frame.shape != (expected, len(self.columns)):
            raise DataError(f"{self.name}: rows {offset}..{offset + expected - 1} parse as {frame.shape[0]} rows of "
                            f"{frame.shape[1]} fields, expected {expected} rows of {len(self.columns)} "
                            f"(the header's); a streamed CSV also cannot have line breaks inside fields")
        frame.columns = self.columns
        x, y = frame_arrays(frame, self.features, self.target, offset, self.name)
        yield x, y, offset


class ParquetChunks(Source):
    """A Parquet file read row group by row group, in ``chunk_rows`` slices when given."""

    def __init__(self, path: Path, target: str | None, features: list[str] | None, chunk_rows: int | None) -> None:
        import pyarrow.parquet as pq

        self.name = str(path)
        try:
            self.file = pq.ParquetFile(path)
        except Exception as err:  # pyarrow raises its own error types for foreign or truncated files
            raise DataError(f"{self.name}: not a readable Parquet file ({err})") from None
        columns = list(self.file.schema_arrow.names)
        self.features = feature_columns(columns, target, features, self.name)
        self.target = target
        self.has_labels = target is not None
        self.row_shape = (len(self.features),)
        meta = self.file.metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.starts = np.concatenate(([0], np.cumsum(sizes)))[:-1].astype(int).tolist()
        self.sizes = sizes
        self.n_rows = int(sum(sizes))
        self.chunk_count = len(sizes)
        self.chunk_rows = chunk_rows

    def blocks_at(self, index):
        wanted = self.features + ([self.target] if self.target is not None else [])
        offset = self.starts[index]
        step = self.chunk_rows or max(self.sizes[index], 1)
        for batch in self.file.iter_batches(batch_size=step, row_groups=[index], columns=wanted):
            x, y = frame_arrays(batch.to_pandas(), self.features, self.target, offset, self.name)
            yield x, y, offset
            offset += len(x)


def read_csv(source: Any, where: str, **options: Any):
    import pandas as pd

    try:
        return pd.read_csv(source, **options)
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: the dataset is empty (the file has no header or rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{where}: not a readable CSV file ({err})") from None


def _rows_per_chunk(path: Path, data_start: int) -> int:
    """Rows that make about CHUNK_BYTES of text, estimated from the first megabyte."""
    with open(path, "rb") as handle:
        handle.seek(data_start)
        sample = handle.read(2**20)
    lines = max(sample.count(b"\n"), 1)
    return max(1, base.CHUNK_BYTES * lines // max(len(sample), 1))


def _index_csv(path: Path, data_start: int, chunk_rows: int) -> tuple[list[tuple[int, int]], int]:
    """Byte ranges holding ``chunk_rows`` data rows each, and the number of rows.

    Lines holding only whitespace are skipped, as pandas skips them, so ranges and counts match
    what ``pd.read_csv`` parses. Works on blocks with NumPy: a 2 GB file takes seconds, and
    memory stays near two blocks whatever the file's size.
    """
    boundaries: list[int] = []      # byte just after the last row of each full chunk
    rows = 0
    carry = b""                     # the unfinished last line of the previous block
    position = data_start           # file offset of carry's first byte
    with open(path, "rb") as handle:
        handle.seek(data_start)
        while block := handle.read(_SCAN_BYTES):
            text = carry + block
            buf = np.frombuffer(text, dtype=np.uint8)
            ends = np.flatnonzero(buf == 10)
            if not len(ends):
                carry = text
                continue
            starts = np.concatenate(([0], ends[:-1] + 1))
            has_text = ~np.isin(buf[starts], _WHITESPACE)
            for line in np.flatnonzero(~has_text):    # rare: lines that start with whitespace
                has_text[line] = bool(text[starts[line]:ends[line]].strip())
            counts = rows + np.cumsum(has_text)
            full = has_text & (counts % chunk_rows == 0)
            boundaries.extend((position + ends[full] + 1).tolist())
            rows = int(counts[-1])
            carry = text[ends[-1] + 1:]
            position += int(ends[-1]) + 1
    rows += bool(carry.strip())     # a last row without a final newline
    count = math.ceil(rows / chunk_rows)
    starts = [data_start, *boundaries][:count]
    stops = [*boundaries, path.stat().st_size][:count]
    return list(zip(starts, stops)), rows


def feature_columns(columns: list, target: str | None, features: list[str] | None, where: str) -> list:
    if target is not None and target not in columns:
        raise DataError(f"{where}: label column {target!r} not found; columns found: {quoted(columns)}. "
                        f"Pass target='<column>' to name it, or target=None for a dataset without labels")
    if features is None:
        chosen = [c for c in columns if c != target]
    else:
        missing = [f for f in features if f not in columns]
        if missing:
            raise DataError(f"{where}: feature column(s) {quoted(missing)} not found; columns found: {quoted(columns)}")
        if target in features:
            raise DataError(f"{where}: the label column {target!r} is also listed in features=")
        chosen = list(features)
    if not chosen:
        raise DataError(f"{where}: no feature columns; columns found: {quoted(columns)}")
    return chosen


def frame_arrays(frame, features: list, target: str | None, offset: int, where: str) -> Block:
    """Feature and label arrays (float64) of a DataFrame, or a DataError naming every bad column."""
    columns = features + ([target] if target is not None else [])
    sub = frame[columns]
    try:
        values = sub.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        values = None       # a column holds text; _bad_cells says which and where
    if values is None or not np.isfinite(values).all():
        raise DataError(_bad_cells(sub, offset, where))
    if target is None:
        return values, None
    return values[:, :-1], values[:, -1]


def _bad_cells(sub, offset: int, where: str) -> str:
    import pandas as pd

    found = []
    for position, column in enumerate(sub.columns):
        cells = sub.iloc[:, position]
        numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(numbers)
        if bad.any():
            row = int(np.argmax(bad))
            found.append((offset + row, column, cells.iloc[row]))
    shown = ", ".join(f"{column!r} at row {row} ({_cell(value)})" for row, column, value in found[:10])
    more = f" and {len(found) - 10} more" if len(found) > 10 else ""
    first = min((row for row, _, _ in found), default=offset)
    return (f"{where}: every feature and label cell must be a finite number; missing, NaN or non-numeric cells "
            f"in column(s) {shown}{more}; first bad row: {first} (rows count from 0, header excluded)")


def _cell(value: Any) -> str:
    import pandas as pd

    if isinstance(value, str) or not pd.isna(value):
        return "infinite" if isinstance(value, float) and math.isinf(value) else repr(value)
    return "missing or NaN"
