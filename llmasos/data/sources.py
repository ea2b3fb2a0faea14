"""Which reader a source goes to: a DataFrame, a path by its suffix, or arrays."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from . import base
from .arrays import h5_chunks, npy_chunks, npz_arrays
from .base import InMemory, Source
from .checks import check_arrays
from .tabular import CsvChunks, ParquetChunks, feature_columns, frame_arrays, read_csv

_SUFFIXES = (".csv", ".parquet", ".h5", ".hdf5", ".npy", ".npz")


def open_source(source: Any, y: Any, target: str | None, features: list[str] | None, chunk_size: int | None) -> Source:
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        if y is None:
            cols = feature_columns(list(source.columns), target, features, "DataFrame")
            return InMemory(*frame_arrays(source, cols, target, 0, "DataFrame"), name="DataFrame", features=cols)
        # Labels given apart, scikit-learn style: every column (or features=) is a feature.
        cols = feature_columns(list(source.columns), None, features, "DataFrame")
        x, _ = frame_arrays(source, cols, None, 0, "DataFrame")
        return InMemory(*check_arrays(x, np.asarray(y), 0, "DataFrame"), name="DataFrame", features=cols)
    if isinstance(source, (str, os.PathLike)):
        return _open_path(Path(source), y, target, features, chunk_size)
    if features is not None:
        raise DataError("features= selects named columns; it applies to CSV, Parquet and DataFrame sources")
    x = np.asarray(source)
    return InMemory(*check_arrays(x, None if y is None else np.asarray(y), 0, "arrays"), name="arrays")


def _open_path(path: Path, y: Any, target: str | None, features: list[str] | None, chunk_size: int | None) -> Source:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; supported: {', '.join(_SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if y is not None and suffix != ".npy":
        raise DataError(f"{path}: y= is for arrays and .npy files; a {suffix} file names its labels with target=")
    if features is not None and suffix not in (".csv", ".parquet"):
        raise DataError(f"{path}: features= selects named columns; it applies to CSV, Parquet and DataFrame sources")
    stream = chunk_size is not None or path.stat().st_size > base.STREAM_BYTES
    if suffix == ".csv":
        if stream:
            return CsvChunks(path, target, features, chunk_size)
        frame = read_csv(path, str(path))
        cols = feature_columns(list(frame.columns), target, features, str(path))
        return InMemory(*frame_arrays(frame, cols, target, 0, str(path)), name=str(path), features=cols)
    if suffix == ".parquet":
        chunks = ParquetChunks(path, target, features, chunk_size)
        return chunks if stream else _whole(chunks)
    if suffix in (".h5", ".hdf5"):
        chunks = h5_chunks(path, target, chunk_size)
    elif suffix == ".npz":
        return npz_arrays(path, target)
    else:
        chunks = npy_chunks(path, y, chunk_size, stream)
    return chunks if stream else _whole(chunks)


def _whole(chunks: Source) -> InMemory:
    parts = [(x, y) for index in range(chunks.chunk_count) for x, y in chunks.blocks(index)]
    x = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, *chunks.row_shape))
    y = np.concatenate([p[1] for p in parts]) if parts and chunks.has_labels else None
    return InMemory(x, y, name=chunks.name, features=chunks.features)
