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
from ..texts import Tokens
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

    # keyword -> the subclass Dataset(..., keyword=column) opens (text=, audio=); each registers
    # itself, so this module imports none of them
    _kinds: dict[str, type["Dataset"]] = {}

    def __init_subclass__(cls, keyword: str | None = None, **options: Any) -> None:
        super().__init_subclass__(**options)
        if keyword is not None:
            Dataset._kinds[keyword] = cls

    def __new__(cls, *args: Any, text: Any = None, audio: str | None = None, **kwargs: Any) -> "Dataset":
        # one entry point for all data: Dataset(..., text="column") is a TextDataset and
        # Dataset(..., audio="column") an AudioDataset (whose transcripts are its text=)
        if cls is not Dataset:
            return super().__new__(cls)
        kind = "audio" if audio is not None else "text" if text is not None else None
        return super().__new__(cls._kinds[kind] if kind else cls)

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


class TextDataset(Dataset, keyword="text"):
    """Texts tokenised once, and their labels, served as ``({input name: array}, labels)``
    batches, each padded to its own longest text (not the corpus's); shuffling and batching are
    :class:`Dataset`'s, run over the row numbers.

    ``tokenizer`` is a zoo text model (its ``tokens`` make exactly its inputs, padded with its
    pad id and checked against its maximum length), a ``tokenizers.Tokenizer``, or the path of a
    ``tokenizer.json`` (``input_ids``, ``attention_mask`` and ``token_type_ids``, padded with 0).
    Text labels become class ids: in the order of the model's label names when it has them (a
    label not among them is a :class:`DataError`), else sorted; :attr:`classes` lists them. A
    model numbers every dataset it is given by its own labels (:meth:`with_classes`), so the ids
    never depend on which labels one dataset happens to hold.

    ``task="causal-lm"`` makes each text its own labels (a language model learns the next token):
    the ids, with -100 where a batch is padded, so the loss leaves padding out. A text longer
    than the model takes is an error unless ``truncation=True`` (cut to the model's maximum).
    ``bucket=True`` groups texts of similar length into the shuffled training batches (the rows
    of 50 batches at a time sorted by length, then the batches shuffled), so less is padded;
    unshuffled reading (evaluation, prediction) keeps the file's order.

    ``target_text="de"`` names a column of target texts for a sequence-to-sequence zoo model
    (Marian): the labels are the target ids padded with -100 per batch, and each batch carries
    the ``decoder_input_ids`` teacher forcing feeds, the labels shifted right behind the
    decoder's start token (as transformers makes them from ``labels=``)::

        mt.train(Dataset(pairs, text="en", target_text="de", tokenizer=mt), Optimizer("AdamW", lr=5e-5))

    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> words = Tokenizer(models.WordLevel({"[PAD]": 0, "good": 1, "bad": 2, "film": 3}, unk_token="[PAD]"))
    >>> words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    >>> ds = Dataset(["good film", "bad"], ["pos", "neg"], text="review", tokenizer=words, mode="test")
    >>> ds.classes, [(x["input_ids"].tolist(), y.tolist()) for x, y in ds.batches(2)]
    (['neg', 'pos'], [([[1, 3], [2, 0]], [1, 0])])
    >>> [x["input_ids"].tolist() for x, _ in ds.batches(1)]     # each batch padded on its own
    [[[1, 3]], [[2]]]
    >>> lm = Dataset(["good film", "bad"], text=0, tokenizer=words, task="causal-lm", mode="test")
    >>> lm.arrays()[1].tolist()
    [[1, 3], [2, -100]]
    """

    classes: list[str] | None = None
    TASKS = (None, "causal-lm")

    def __init__(self, source: Any, y: Any = None, *, text: Any = "text", tokenizer: Any = None, mode: str = "train",
                 target: str | None = "label", target_text: str | None = None, task: str | None = None,
                 truncation: bool = False, bucket: bool = False, features: Sequence[str] | None = None, chunk_size: int | None = None,
                 shape: Sequence[int] | None = None, dtype: str = "float32") -> None:
        unused = [name for name, value in (("features", features), ("chunk_size", chunk_size), ("shape", shape))
                  if value is not None]
        if unused or dtype != "float32":
            raise DataError(f"{', '.join(unused or ['dtype'])} do(es) not apply to texts (they are read whole and "
                            f"tokenised)")
        if tokenizer is None:
            raise DataError("texts need tokenizer=: a zoo text model, a tokenizers.Tokenizer or a tokenizer.json path")
        if task not in self.TASKS:
            raise DataError(f"task must be one of {', '.join(map(repr, self.TASKS))} for texts, got {task!r}")
        if task == "causal-lm":
            if y is not None:
                raise DataError("task='causal-lm' takes no labels: each text is its own (the next token is learnt)")
            target = None
        self.targets: Tokens | None = None  # the target texts' ids (target_text=)
        if target_text is not None:
            texts, targets, name = read_texts(source, y, text, target_text, targets=True)
            if task is not None or not hasattr(tokenizer, "decoder_input_ids"):
                raise DataError(f"target_text= is for a sequence-to-sequence zoo model as tokenizer= (marian), "
                                f"without task=; got {type(tokenizer).__name__}" + (f" and task={task!r}" if task else ""))
            self.targets, labels = tokenizer.tokens(targets, truncation=truncation, target=True), None
            self._decoder_inputs = tokenizer.decoder_input_ids
        else:
            texts, labels, name = read_texts(source, y, text, target)
        self._names = text_labels(labels)  # each row's label, when the labels are text
        if self._names is not None:
            model_classes = named_classes((getattr(tokenizer, "metadata", None) or {}).get("labels"))
            self.classes = model_classes or sorted(set(self._names))
            labels = class_ids(self._names, self.classes, name)

        self.tokens = tokenise(tokenizer, texts, truncation)
        self.task, self.bucket, self.name, self.mode = task, bool(bucket), name, mode
        self.rows = Dataset(np.arange(len(self.tokens))[:, None], labels, mode=mode, dtype="int64")
        self.feature_shape = (int(self.tokens.lengths.max()),)

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

    def with_targets(self, targets: np.ndarray) -> "TextDataset":
        """The same texts (sharing their tokens, batched and padded the same way) with one numeric
        target row per text in place of the labels: a distillation's ``[label, *teacher_logits]``
        (see :func:`llmasos.compress.distill`). Nothing renumbers them afterwards."""
        targets = np.asarray(targets, dtype=np.float32)
        if len(targets) != len(self) or self._sequences is not None:
            raise DataError(f"with_targets takes one target row per text of a dataset with class labels or none; "
                            f"got {len(targets)} rows for {len(self)} texts"
                            + (" whose labels are token sequences" if self._sequences is not None else ""))
        other = copy.copy(self)
        other._names, other.classes = None, None
        other.rows = Dataset(np.arange(len(self))[:, None], targets, mode=self.mode, dtype="int64")
        return other

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """Every text's inputs, padded to the longest text of all."""
        return self.tokens.pad()

    @property
    def streaming(self) -> bool:
        return False

    @property
    def has_labels(self) -> bool:
        return self._sequences is not None or self.rows.has_labels

    @property
    def label_dtype(self) -> np.dtype | None:
        return np.dtype(np.int64) if self._sequences is not None else self.rows.label_dtype

    def labels_range(self) -> tuple[Any, Any]:
        if self._sequences is not None:
            ids = self._sequences.values["input_ids"]
            return int(ids.min()), int(ids.max())
        return self.rows.labels_range()

    @property
    def _sequences(self) -> Tokens | None:
        """The token sequences the labels come from: the targets, a causal LM's own texts, else None."""
        return self.targets if self.targets is not None else self.tokens if self.task == "causal-lm" else None

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int | None = None, epoch: int = 0):
        for rows, labels in buckets(self.rows, self.tokens.lengths, batch_size, self.bucket and shuffle, seed, epoch,
                                    shuffle):
            yield self._batch(rows, labels)

    def _batch(self, rows: np.ndarray, labels: np.ndarray | None) -> tuple[dict[str, np.ndarray], Any]:
        x = self.tokens.pad(rows)
        if self._sequences is not None:
            labels = self._sequences.labels(rows)
        if self.targets is not None:
            x["decoder_input_ids"] = self._decoder_inputs(labels)
        return x, labels

    def arrays(self) -> tuple[dict[str, np.ndarray], "np.ndarray | None"]:
        return self._batch(np.arange(len(self)), self.rows.arrays()[1])

    def __repr__(self) -> str:
        return (f"TextDataset({self.name!r}, mode={self.mode!r}, rows={len(self)}, inputs={list(self.tokens.values)}, "
                f"longest={self.feature_shape[0]}, labels={self.label_dtype}"
                f"{', task=' + repr(self.task) if self.task else ''}"
                f"{', targets=' + str(len(self.targets)) if self.targets is not None else ''})")


BUCKET_BATCHES = 50   # batches whose rows are sorted by length together when bucketing


def buckets(rows: Dataset, lengths: np.ndarray, batch_size: int, bucket: bool, seed: int | None, epoch: int,
            shuffle: bool) -> Iterator[tuple[np.ndarray, "np.ndarray | None"]]:
    """``(row numbers, labels)`` batches of ``rows`` (a dataset of row numbers); with ``bucket``,
    the rows of :data:`BUCKET_BATCHES` shuffled batches at a time sorted by ``lengths`` and cut
    into batches again, which then come in a shuffled order (the same for the same seed and epoch)."""
    window = BUCKET_BATCHES if bucket else 1
    order = Dataset._rng(seed, epoch) if bucket else None
    for numbers, labels in rows.batches(batch_size * window, shuffle=shuffle, seed=seed, epoch=epoch):
        numbers = numbers[:, 0]
        if not bucket:
            yield numbers, labels
            continue
        by_length = np.argsort(lengths[numbers], kind="stable")
        groups = [by_length[start:start + batch_size] for start in range(0, len(numbers), batch_size)]
        for index in order.permutation(len(groups)):
            group = groups[index]
            yield numbers[group], None if labels is None else labels[group]


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
