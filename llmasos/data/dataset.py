"""``Dataset``: batches and shuffles the rows of any source; ``TextDataset``: tokenised texts served
through it."""

from __future__ import annotations

import copy
import math
import os
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import DataError
from ..layout import conform
from .base import Block, InMemory
from .sources import open_source
from .text import class_ids, named_classes, read_texts, text_labels, tokenise

MODES = ("train", "test")
DTYPES = ("float32", "int64")

Ordered = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]  # (x, y, row order or None)


class Dataset:
    """Samples for training, validation or evaluation, from a file, a DataFrame or arrays.

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"a": [0.5, 1.5, 2.5], "b": [1, 2, 3], "label": [1, 0, 1]})
    >>> ds = Dataset(frame, mode="test")
    >>> ds.arrays()[0].tolist(), ds.labels_range()
    ([[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]], (0, 1))
    """

    def __new__(cls, *args: Any, text: str | None = None, **kwargs: Any) -> "Dataset":
        # Dataset(..., text="column") is a TextDataset, so there is one entry point for all data
        return super().__new__(TextDataset if text is not None and cls is Dataset else cls)

    def __init__(self, source: Any, y: Any = None, *, mode: str = "train", target: str | None = "label",
                 features: Sequence[str] | None = None, chunk_size: int | None = None,
                 shape: Sequence[int] | None = None, dtype: str = "float32", tokenizer: Any = None) -> None:
        if tokenizer is not None:
            raise DataError("tokenizer= is for texts: name the text column with text= as well")
        if mode not in MODES:
            raise DataError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        if dtype not in DTYPES:
            raise DataError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
        if chunk_size is not None and not _positive_int(chunk_size):
            raise DataError(f"chunk_size must be a positive number of rows, got {chunk_size!r}")
        self.mode = mode
        self.dtype = dtype
        # the file and options it was opened with (None for arrays and DataFrames), so another
        # process can open the same rows in the same order (train(nproc=...): llmasos.launch)
        self.origin = None if not isinstance(source, (str, os.PathLike)) or y is not None else {
            "source": os.path.abspath(source), "target": target, "features": None if features is None else list(features),
            "chunk_size": chunk_size, "shape": None if shape is None else list(shape), "dtype": dtype, "mode": mode}
        self._source = open_source(source, y, target, None if features is None else list(features), chunk_size)
        self.name = self._source.name
        if self._source.n_rows == 0:
            raise DataError(f"{self.name}: the dataset is empty (no rows)")
        self.feature_shape = _reshape_target(self._source.n_rows, self._source.row_shape, shape, self.name)
        self._label_stats: tuple[Any, Any, bool] | None = None
        if not self._source.streaming:
            self._load_whole()

    def _load_whole(self) -> None:
        # Small data is converted once, so every epoch only indexes ready arrays.
        x, y = next(self._source.blocks(0))
        if y is not None:
            self._label_stats = _label_stats(y, None)
        self._source = InMemory(*self._finish(x, y, 0), name=self.name, features=self._source.features)

    # -- what the training loop asks ---------------------------------------------------------

    def __len__(self) -> int:
        return self._source.n_rows

    @property
    def feature_names(self) -> list | None:
        """The feature columns' names, in order, for a CSV, Parquet or DataFrame source; else None."""
        return self._source.features

    @property
    def streaming(self) -> bool:
        """True when the data is read chunk by chunk from its file."""
        return self._source.streaming

    @property
    def has_labels(self) -> bool:
        return self._source.has_labels

    @property
    def label_dtype(self) -> np.dtype | None:
        """int64 (classes) or float32 (regression); None without labels."""
        if not self.has_labels:
            return None
        return np.dtype(np.int64 if self._stats()[2] else np.float32)

    def labels_range(self) -> tuple[Any, Any]:
        """(min, max) over all labels, e.g. to check them against a model's classes."""
        if not self.has_labels:
            raise DataError(f"{self.name}: the dataset has no labels (target=None or no label column)")
        low, high, _ = self._stats()
        return low, high

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int | None = None,
                epoch: int = 0) -> Iterator[Block]:
        """``(x, y)`` NumPy batches (``y`` None without labels) in file order; the last one may be
        smaller.

        ``shuffle=True`` (what the training loop asks for a ``mode="train"`` dataset) gives a
        shuffle drawn from ``(seed, epoch)`` instead: the same pair gives the same order, another
        epoch another order, ``seed=None`` a fresh random one.
        """
        if not _positive_int(batch_size):
            raise DataError(f"batch_size must be a positive int, got {batch_size!r}")
        rng = self._rng(seed, epoch) if shuffle else None
        pieces: list[Block] = []
        pending = 0
        for x, y, rows in self._ordered_blocks(rng):
            start = 0
            while start < len(x):
                take = min(batch_size - pending, len(x) - start)
                # Gathering per batch (not permuting the whole chunk) keeps one copy of the chunk.
                pick = slice(start, start + take) if rows is None else rows[start:start + take]
                pieces.append((x[pick], None if y is None else y[pick]))
                pending += take
                start += take
                if pending == batch_size:
                    yield _join(pieces)
                    pieces, pending = [], 0
        if pieces:
            yield _join(pieces)

    def arrays(self) -> Block:
        """The whole dataset ``(X, y)`` in file order (``y`` None without labels)."""
        parts = [(x, y) for x, y, _ in self._ordered_blocks(None)]
        return _join(parts)

    def __repr__(self) -> str:
        labels = self.label_dtype if self._label_stats is not None or not self.has_labels else "unscanned"
        return (f"Dataset({self.name!r}, mode={self.mode!r}, rows={len(self)}, feature_shape={self.feature_shape}, "
                f"labels={labels}{', streaming' if self.streaming else ''})")

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _rng(seed: int | None, epoch: int) -> np.random.Generator:
        if seed is None:
            return np.random.default_rng()
        if not (_natural(seed) and _natural(epoch)):
            raise DataError(f"seed and epoch must be non-negative ints, got seed={seed!r}, epoch={epoch!r}")
        return np.random.default_rng([seed, epoch])

    def _ordered_blocks(self, rng: np.random.Generator | None) -> Iterator[Ordered]:
        """Finished blocks in chunk order drawn from ``rng``, each with its row order (None: as stored)."""
        count = self._source.chunk_count
        order = range(count) if rng is None else rng.permutation(count)
        for index in order:
            for x, y, offset in self._source.blocks_at(int(index)):
                x, y = self._finish(x, y, offset)
                yield x, y, None if rng is None else rng.permutation(len(x))

    def _finish(self, x: np.ndarray, y: np.ndarray | None, offset: int) -> Block:
        x = _to_dtype(x, self.dtype, offset, self.name)
        if x.shape[1:] != self.feature_shape:
            x = x.reshape(len(x), *self.feature_shape)
        if y is not None:
            y = y.astype(self.label_dtype, copy=False)
        return x, y

    def _stats(self) -> tuple[Any, Any, bool]:
        if self._label_stats is None:
            # A streamed file is read once through; this also validates every cell up front.
            stats = None
            for index in range(self._source.chunk_count):
                for _, y, _ in self._source.blocks_at(index):
                    stats = _label_stats(y, stats)
            self._label_stats = stats
        return self._label_stats


class TextDataset(Dataset):
    """Texts tokenised once, and their labels, served as ``({input name: array}, labels)``
    batches; shuffling and batching are :class:`Dataset`'s, run over the row numbers.

    ``tokenizer`` is a zoo text model (its ``encode`` makes exactly its inputs, padded with its
    pad id and checked against its maximum length), a ``tokenizers.Tokenizer``, or the path of a
    ``tokenizer.json`` (``input_ids``, ``attention_mask`` and ``token_type_ids``, padded with 0).
    Text labels become class ids: in the order of the model's label names when it has them (a
    label not among them is a :class:`DataError`), else sorted; :attr:`classes` lists them. A
    model numbers every dataset it is given by its own labels (:meth:`with_classes`), so the ids
    never depend on which labels one dataset happens to hold.

    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> words = Tokenizer(models.WordLevel({"[PAD]": 0, "good": 1, "bad": 2, "film": 3}, unk_token="[PAD]"))
    >>> words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    >>> ds = Dataset(["good film", "bad"], ["pos", "neg"], text="review", tokenizer=words, mode="test")
    >>> ds.classes, [(x["input_ids"].tolist(), y.tolist()) for x, y in ds.batches(2)]
    (['neg', 'pos'], [([[1, 3], [2, 0]], [1, 0])])
    """

    classes: list[str] | None = None

    def __init__(self, source: Any, y: Any = None, *, text: str = "text", tokenizer: Any = None, mode: str = "train",
                 target: str | None = "label", features: Sequence[str] | None = None, chunk_size: int | None = None,
                 shape: Sequence[int] | None = None, dtype: str = "float32") -> None:
        unused = [name for name, value in (("features", features), ("chunk_size", chunk_size), ("shape", shape))
                  if value is not None]
        if unused or dtype != "float32":
            raise DataError(f"{', '.join(unused or ['dtype'])} do(es) not apply to texts (they are read whole and "
                            f"tokenised)")
        if tokenizer is None:
            raise DataError("texts need tokenizer=: a zoo text model, a tokenizers.Tokenizer or a tokenizer.json path")
        texts, labels, name = read_texts(source, y, text, target)
        self._names = text_labels(labels)  # each row's label, when the labels are text
        if self._names is not None:
            model_classes = named_classes((getattr(tokenizer, "metadata", None) or {}).get("labels"))
            self.classes = model_classes or sorted(set(self._names))
            labels = class_ids(self._names, self.classes, name)

        inputs = tokenise(tokenizer, texts)
        self.inputs, self.name, self.mode = inputs, name, mode
        rows = len(next(iter(inputs.values())))
        self.rows = Dataset(np.arange(rows)[:, None], labels, mode=mode, dtype="int64")
        self.feature_shape = next(iter(inputs.values())).shape[1:]

    def with_classes(self, classes: Sequence[str]) -> "TextDataset":
        """The same texts (sharing their tokens) with the labels numbered by ``classes``, a
        model's labels; a label not among them is a :class:`DataError` naming it. Numeric labels
        stay as they are.

        >>> from tokenizers import Tokenizer, models
        >>> words = Tokenizer(models.WordLevel({"a": 0}, unk_token="a"))
        >>> ds = Dataset(["a", "b"], ["pos", "neutral"], text="t", tokenizer=words)
        >>> ds.classes, ds.arrays()[1].tolist()
        (['neutral', 'pos'], [1, 0])
        >>> ds = ds.with_classes(["neg", "neutral", "pos"])
        >>> ds.classes, ds.arrays()[1].tolist()
        (['neg', 'neutral', 'pos'], [2, 1])
        """
        if self._names is None or list(classes) == self.classes:
            return self
        other = copy.copy(self)
        other.classes = list(classes)
        other.rows = Dataset(np.arange(len(self))[:, None], class_ids(self._names, other.classes, self.name),
                             mode=self.mode, dtype="int64")
        return other

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def streaming(self) -> bool:
        return False

    @property
    def has_labels(self) -> bool:
        return self.rows.has_labels

    @property
    def label_dtype(self) -> np.dtype | None:
        return self.rows.label_dtype

    def labels_range(self) -> tuple[Any, Any]:
        return self.rows.labels_range()

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int | None = None, epoch: int = 0):
        for rows, labels in self.rows.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch):
            yield {name: values[rows[:, 0]] for name, values in self.inputs.items()}, labels

    def arrays(self) -> tuple[dict[str, np.ndarray], "np.ndarray | None"]:
        return dict(self.inputs), self.rows.arrays()[1]

    def __repr__(self) -> str:
        return (f"TextDataset({self.name!r}, mode={self.mode!r}, rows={len(self)}, inputs={list(self.inputs)}, "
                f"length={self.feature_shape[0]}, labels={self.label_dtype})")


def _label_stats(y: np.ndarray, stats: tuple | None) -> tuple[Any, Any, bool]:
    """(min, max, all whole numbers) of ``y``, merged into ``stats`` from earlier blocks."""
    whole = y.dtype.kind in "biu" or bool(np.all(np.mod(y, 1) == 0))
    low, high = y.min(), y.max()
    if stats is not None:
        low, high, whole = min(low, stats[0]), max(high, stats[1]), whole and stats[2]
    if whole:
        return int(low), int(high), True
    return float(low), float(high), False


def _to_dtype(x: np.ndarray, dtype: str, offset: int, where: str) -> np.ndarray:
    if dtype == "float32":
        return x.astype(np.float32, copy=False)
    if x.dtype.kind == "f":
        fractional = np.mod(x.reshape(len(x), math.prod(x.shape[1:])), 1) != 0
        if fractional.any():
            row = int(np.argmax(fractional.any(axis=1)))
            raise DataError(f"{where}: dtype='int64' needs whole-number features; row {offset + row} "
                            f"holds {x[row].reshape(-1)[fractional[row]][0].item()!r}")
    return x.astype(np.int64, copy=False)


def _reshape_target(n_rows: int, row_shape: tuple, shape: Sequence[int] | None, where: str) -> tuple:
    """The row shape batches come out in: ``shape`` when the rows are flat (reshaped) or already
    that shape; any other layout is refused, as by the model (:func:`llmasos.layout.conform`)."""
    if shape is None:
        return tuple(int(d) for d in row_shape)
    try:
        shape = tuple(shape)
    except TypeError:
        raise DataError(f"shape must be a sequence of positive ints, e.g. (1, 28, 28), got {shape!r}") from None
    if not shape or not all(_positive_int(d) for d in shape):
        raise DataError(f"shape must be a sequence of positive ints, e.g. (1, 28, 28), got {shape!r}")
    shape = tuple(int(d) for d in shape)
    if len(row_shape) == 1 and math.prod(shape) != row_shape[0]:
        raise DataError(f"{where}: shape={shape} holds {math.prod(shape)} values per sample but each row has "
                        f"{math.prod(row_shape)} features (shape {tuple(row_shape)})")
    conform((n_rows, *row_shape), shape, f"{where}: shape={shape}")
    return shape


def _join(pieces: list[Block]) -> Block:
    if len(pieces) == 1:
        return pieces[0]
    x = np.concatenate([p[0] for p in pieces])
    y = None if pieces[0][1] is None else np.concatenate([p[1] for p in pieces])
    return x, y


def _natural(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def _positive_int(value: Any) -> bool:
    return _natural(value) and value > 0
