"""Arrays: HDF5 datasets and ``.npy`` files (sliced without loading them whole when large) and
``.npz`` archives."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DataError
from . import base
from .base import Block, InMemory, Source
from .checks import check_arrays, unflat


class ArrayChunks(Source):
    """Arrays that can be sliced without loading them whole (HDF5 datasets, memory-mapped .npy)."""

    def __init__(self, name: str, read: Callable[[int, int], Block], n_rows: int, row_shape: tuple,
                 has_labels: bool, chunk_rows: int | None, row_bytes: int) -> None:
        self.name, self.read, self.n_rows, self.row_shape, self.has_labels = name, read, n_rows, row_shape, has_labels
        self.chunk_rows = chunk_rows or max(1, base.CHUNK_BYTES // max(row_bytes, 1))
        self.chunk_count = math.ceil(n_rows / self.chunk_rows)

    def blocks_at(self, index):
        start = index * self.chunk_rows
        x, y = self.read(start, min(start + self.chunk_rows, self.n_rows))
        yield check_arrays(np.asarray(x), None if y is None else np.asarray(y), start, self.name) + (start,)


def h5_chunks(path: Path, target: str | None, chunk_size: int | None) -> ArrayChunks:
    import h5py

    name = str(path)
    try:
        with h5py.File(path, "r") as handle:
            keys = [k for k in handle if isinstance(handle[k], h5py.Dataset)]
            x_key, y_key = _array_keys(keys, target, name)
            x_set = handle[x_key]
            n_rows, row_shape, row_bytes = _array_layout(x_set.shape, x_set.dtype, name)
            y_shape = None if y_key is None else handle[y_key].shape
            if y_shape is not None and y_shape[:1] != (n_rows,):
                raise DataError(f"{name}: {x_key!r} has {n_rows} rows but {y_key!r} has shape {y_shape}")
    except OSError as err:
        raise DataError(f"{name}: not a readable HDF5 file ({err})") from None

    def read(start: int, stop: int) -> Block:
        with h5py.File(path, "r") as handle:
            return unflat(handle[x_key][start:stop]), None if y_key is None else handle[y_key][start:stop]

    return ArrayChunks(name, read, n_rows, row_shape, y_key is not None, chunk_size, row_bytes)


def npy_chunks(path: Path, y: Any, chunk_size: int | None, stream: bool) -> ArrayChunks:
    name = str(path)
    x = _load_npy(path, stream)
    if isinstance(y, (str, os.PathLike)):
        y = _load_npy(Path(y), stream)
    elif y is not None:
        y = np.asarray(y)
    n_rows, row_shape, row_bytes = _array_layout(x.shape, x.dtype, name)
    if y is not None and len(y) != n_rows:
        raise DataError(f"{name}: X has {n_rows} rows but y has {len(y)}")

    def read(start: int, stop: int) -> Block:
        # np.array copies the slice out of the memory map, so only this chunk is resident.
        return unflat(np.array(x[start:stop])), None if y is None else np.array(y[start:stop])

    return ArrayChunks(name, read, n_rows, row_shape, y is not None, chunk_size, row_bytes)


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        # allow_pickle=False: an object array from a stranger's file must not run code.
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: not a readable numeric .npy file ({err})") from None


def npz_arrays(path: Path, target: str | None) -> InMemory:
    name = str(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            x_key, y_key = _array_keys(list(archive.files), target, name)
            x, y = archive[x_key], None if y_key is None else archive[y_key]
    except (ValueError, OSError) as err:
        raise DataError(f"{name}: not a readable numeric .npz file ({err})") from None
    return InMemory(*check_arrays(x, y, 0, name), name=name)


def _array_keys(keys: list[str], target: str | None, where: str) -> tuple[str, str | None]:
    found = ", ".join(map(repr, keys)) or "none"
    x_key = next((k for k in ("x", "X") if k in keys), None)
    if x_key is None:
        raise DataError(f"{where}: no features array 'x'; arrays found: {found}")
    if target is None:
        return x_key, None
    y_key = target if target in keys else "y" if "y" in keys else None
    if y_key is None:
        raise DataError(f"{where}: no label array {target!r} or 'y'; arrays found: {found}. "
                        f"Pass target='<name>' to name it, or target=None for a dataset without labels")
    return x_key, y_key


def _array_layout(shape: tuple, dtype: np.dtype, where: str) -> tuple[int, tuple, int]:
    if len(shape) == 0:
        raise DataError(f"{where}: features must have a sample axis, got a scalar")
    row_shape = tuple(shape[1:]) or (1,)
    return int(shape[0]), row_shape, math.prod(row_shape) * np.dtype(dtype).itemsize
