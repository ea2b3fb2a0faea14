"""Data that ships with the install: scikit-learn's digits written as CSV files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import staged
from ..errors import DataError


def digits_csv(folder: str | os.PathLike) -> tuple[str, str]:
    """Write scikit-learn's bundled digits as ``digits_train.csv`` and ``digits_test.csv``.

    1,797 8x8 images: pixel columns ``p0``..``p63`` scaled to [0, 1] and a ``label`` column,
    shuffled with a fixed seed and split 80/20 (1,437 / 360 rows). Each file is written to a
    temporary name and renamed, so a crash never leaves half a file. Returns both paths.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError('the digits data comes with scikit-learn: pip install scikit-learn') from None
    import pandas as pd

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    frame = pd.DataFrame(data.data[order] / 16.0, columns=[f"p{i}" for i in range(data.data.shape[1])])
    frame["label"] = data.target[order].astype(np.int64)
    cut = int(0.8 * len(frame))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "digits_train.csv", folder / "digits_test.csv"
    for path, part in zip(paths, (frame.iloc[:cut], frame.iloc[cut:])):
        _write_atomically(path, lambda handle, part=part: part.to_csv(handle, index=False))
    return str(paths[0]), str(paths[1])


def _write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    with staged(path) as tmp, open(tmp, "w", newline="") as handle:
        write(handle)
