"""Texts: a text column (of a CSV, Parquet file or DataFrame) or a list of strings, tokenised once;
text labels numbered as a model's classes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .checks import quoted
from .tabular import read_csv


def read_texts(source: Any, y: Any, column: str, target: str | None) -> tuple[list[str], Any, str]:
    """The texts, the labels (None without) and a name for messages."""
    if isinstance(source, (list, tuple)):
        texts, labels, name = list(source), y, "texts"
    else:
        if y is not None:
            raise DataError("y= goes with a list of texts; a table names its label column with target=")
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if path.suffix.lower() not in (".csv", ".parquet") or not path.is_file():
                raise DataError(f"{path}: texts are read from an existing .csv or .parquet file, a DataFrame or a list")
            import pandas as pd

            frame = read_csv(path, str(path)) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
            name = str(path)
        elif hasattr(source, "columns"):
            frame, name = source, "the DataFrame"
        else:
            raise DataError(f"texts come from a .csv/.parquet path, a DataFrame or a list of strings, not "
                            f"{type(source).__name__}")
        missing = [c for c in (column, target) if c is not None and c not in frame.columns]
        if missing:
            raise DataError(f"{name}: no column {quoted(missing)}; columns: {quoted(list(frame.columns))}")
        texts = frame[column].tolist()
        labels = None if target is None else frame[target].to_numpy()
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise DataError(f"{name}: text {bad} is {texts[bad]!r}, not a non-empty string")
    if labels is not None and len(labels) != len(texts):
        raise DataError(f"{name}: {len(texts)} texts but {len(labels)} labels")
    return texts, labels, name


def text_labels(labels: Any) -> list[str] | None:
    """Each row's label as a string when the labels are text; None for numbers or no labels."""
    if labels is None:
        return None
    values = np.asarray(labels)
    return [str(v) for v in values] if values.dtype.kind in "OUS" else None


def named_classes(labels: Any) -> list[str] | None:
    """A model's class names (its metadata ``labels``), or None when it names none: no list,
    or only the placeholders ``LABEL_0, LABEL_1, ...`` a new classification head has.

    >>> named_classes(["neg", "pos"]), named_classes(["LABEL_0", "LABEL_1"]), named_classes("imagenet-1k")
    (['neg', 'pos'], None, None)
    """
    if not isinstance(labels, (list, tuple)) or all(re.fullmatch(r"LABEL_\d+", str(label)) for label in labels):
        return None
    return [str(label) for label in labels]


def class_ids(names: list[str], classes: list[str], where: str) -> np.ndarray:
    """Class ids of ``names`` in the order of ``classes``."""
    index = {label: i for i, label in enumerate(classes)}
    unknown = sorted(set(names) - index.keys())
    if unknown:
        raise DataError(f"{where}: label(s) {quoted(unknown)} are not among the model's labels {quoted(classes)}; "
                        f"a model's class ids are fixed once (its labels, else its first training set)")
    return np.array([index[n] for n in names], np.int64)


def tokenise(tokenizer: Any, texts: list[str]) -> dict[str, np.ndarray]:
    if hasattr(tokenizer, "spec") and hasattr(tokenizer, "encode"):  # a zoo text model knows its inputs
        return tokenizer.encode(texts)
    if isinstance(tokenizer, (str, os.PathLike)):
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as err:  # tokenizers raises plain Exceptions for a missing or bad file
            raise DataError(f"{tokenizer}: not a tokenizers tokenizer.json ({err})") from None
    from ..texts import encode

    return encode(tokenizer, texts, {"input_ids": "int64", "attention_mask": "float32", "token_type_ids": "int64"})
