"""Texts: a text column (of a CSV, Parquet file or DataFrame) or a list of strings, tokenised once;
text labels numbered as a model's classes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError
from ..texts import Tokens, tokenize
from .checks import quoted
from .tabular import read_csv


def read_texts(source: Any, y: Any, column: str, target: str | None,
               targets: bool = False) -> tuple[list[str], Any, str]:
    """The texts, the labels (None without) and a name for messages; with ``targets`` the
    ``target`` column holds target texts (a table's), checked as the texts are."""
    if targets and not hasattr(source, "columns") and not isinstance(source, (str, os.PathLike)):
        raise DataError("target_text= names a column of a table (a .csv/.parquet path or a DataFrame) holding the "
                        "target texts beside the source column text=")
    if isinstance(source, (list, tuple)):
        texts, labels, name = list(source), y, "texts"
    else:
        if y is not None:
            raise DataError("y= goes with a list of texts; a table names its label column with target=")
        frame, name = read_table(source, "texts", (column, target), "or a list of strings")
        texts = frame[column].tolist()
        labels = None if target is None else frame[target].to_numpy()
    non_empty_strings(texts, "text", name)
    if targets:
        labels = list(labels)
        non_empty_strings(labels, "target text", name)
    if labels is not None and len(labels) != len(texts):
        raise DataError(f"{name}: {len(texts)} texts but {len(labels)} labels")
    return texts, labels, name


def read_table(source: Any, what: str, columns: Sequence[str | None], alternatives: str = "") -> tuple[Any, str]:
    """A ``.csv``/``.parquet`` path or a DataFrame as a DataFrame holding ``columns`` (None
    entries skipped), and a name for messages."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() not in (".csv", ".parquet") or not path.is_file():
            raise DataError(f"{path}: {what} are read from an existing .csv or .parquet file, a DataFrame "
                            f"{alternatives}".rstrip())
        import pandas as pd

        frame = read_csv(path, str(path)) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
        name = str(path)
    elif hasattr(source, "columns"):
        frame, name = source, "the DataFrame"
    else:
        raise DataError(f"{what} come from a .csv/.parquet path, a DataFrame {alternatives}".rstrip() +
                        f", not {type(source).__name__}")
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise DataError(f"{name}: no column {quoted(missing)}; columns: {quoted(list(frame.columns))}")
    return frame, name


def non_empty_strings(values: Sequence[Any], what: str, name: str) -> None:
    """Raise a DataError naming the first of ``values`` that is not a non-empty string."""
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()), None)
    if bad is not None:
        raise DataError(f"{name}: {what} {bad} is {values[bad]!r}, not a non-empty string")


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


def tokenise(tokenizer: Any, texts: list[str], truncation: bool = False) -> Tokens:
    """The texts' tokens, unpadded: a zoo text model's inputs (checked against its maximum
    length), else ``input_ids``, ``attention_mask`` and ``token_type_ids`` from a
    ``tokenizers.Tokenizer`` or a ``tokenizer.json`` path."""
    if hasattr(tokenizer, "spec") and hasattr(tokenizer, "tokens"):  # a zoo text model knows its inputs
        return tokenizer.tokens(texts, truncation=truncation)
    if isinstance(tokenizer, (str, os.PathLike)):
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as err:  # tokenizers raises plain Exceptions for a missing or bad file
            raise DataError(f"{tokenizer}: not a tokenizers tokenizer.json ({err})") from None
    return tokenize(tokenizer, texts, {"input_ids": "int64", "attention_mask": "float32", "token_type_ids": "int64"})
