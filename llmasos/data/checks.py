"""Checks shared by the sources: numeric, finite arrays with a sample axis; names in messages."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import DataError
from .base import Block


def check_arrays(x: np.ndarray, y: np.ndarray | None, offset: int, where: str) -> Block:
    """Arrays with a numeric dtype and only finite values, or a DataError naming the first bad row."""
    if x.ndim == 0:
        raise DataError(f"{where}: features must have a sample axis, got a scalar")
    x = unflat(x)
    if y is not None and len(y) != len(x):
        raise DataError(f"{where}: X has {len(x)} rows but y has {len(y)}")
    for what, values in (("X", x), ("y", y)):
        if values is None:
            continue
        if values.dtype.kind not in "biuf":
            raise DataError(f"{where}: {what} must be numeric (bool, int or float), got dtype {values.dtype}")
        if values.dtype.kind == "f":
            finite = np.isfinite(values.reshape(len(values), math.prod(values.shape[1:])))
            if not finite.all():
                row = int(np.argmin(finite.all(axis=1)))
                columns = np.flatnonzero(~finite.all(axis=0)).tolist() if values.ndim == 2 else None
                detail = f" in column(s) {quoted(columns)}" if columns else ""
                raise DataError(f"{where}: {what} has NaN or infinite values{detail}; "
                                f"first bad row: {offset + row} (rows count from 0)")
    return x, y


def unflat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), 1) if x.ndim == 1 else x


def quoted(items: Sequence) -> str:
    shown = ", ".join(map(repr, items[:20]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > 20 else "")
