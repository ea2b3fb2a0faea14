"""``Dataset``: rows from CSV, Parquet, HDF5, NumPy or pandas, served as NumPy batches.

>>> import numpy as np
>>> ds = Dataset(np.arange(12.0).reshape(6, 2), np.array([0, 1, 0, 1, 0, 1]), mode="test")
>>> len(ds), ds.feature_shape, ds.label_dtype
(6, (2,), dtype('int64'))
>>> [(x.shape, y.tolist()) for x, y in ds.batches(4)]
[((4, 2), [0, 1, 0, 1]), ((2, 2), [0, 1])]

Sources:

* a path to ``.csv`` or ``.parquet``: one row per sample, a label column named by ``target``
  ("label" by default; ``target=None`` for no labels), every other column (or ``features=``) a
  numeric feature;
* a path to ``.h5``/``.hdf5`` or ``.npz``: arrays ``x`` (features, any shape after the sample
  axis) and ``y`` (or an array named by ``target``);
* a path to ``.npy`` holding the features, with ``y=`` the labels (an array or another ``.npy``);
* a pandas DataFrame (like a CSV), or NumPy arrays ``Dataset(X, y)``;
* texts: ``Dataset("reviews.csv", text="review", target="sentiment", tokenizer=model)`` reads a
  text column (of a CSV, Parquet file or DataFrame, or a list of strings with ``y=`` labels) and
  tokenises it once with a zoo text model's tokenizer (its inputs, padding and length limit) or a
  ``tokenizers.Tokenizer`` (or the path of a ``tokenizer.json``); see :class:`TextDataset`.

Images stay arrays in channels-first layout ``(N, C, H, W)``; ``shape=(1, 28, 28)`` reshapes flat
rows (784 CSV columns) into images. Only flat rows are reshaped: arrays of any other shape than
``shape`` (channels-last ``(N, 28, 28, 1)`` images, say) are refused with the layout expected.
Features come out float32 (``dtype="int64"`` for integer ids), labels int64 when every label is
a whole number (classes) and float32 otherwise (regression).

Only ``Model.train`` shuffles: it reads a ``mode="train"`` dataset in a new order every epoch
(the same order for the same ``(seed, epoch)``) and a ``mode="test"`` one in file order.
Everything else — ``predict``, ``evaluate``, validation, export calibration, :meth:`Dataset.batches`
unless asked with ``shuffle=True`` — reads every dataset in file order, whatever its mode.

Large files stream instead of loading whole: CSVs over 256 MB, Parquet files over 256 MB (by row
groups), HDF5 and ``.npy`` files over 256 MB (by slices), or any of them when ``chunk_size=N``
rows is given. A streamed file is read one chunk at a time, so memory stays near one chunk plus a
batch. Shuffling a streamed file is a *buffered* shuffle: each epoch visits the chunks in a random
order and the rows of each chunk in a random order, so a batch holds rows from one chunk (two at
a chunk boundary). Streaming a CSV first counts its rows in one cheap pass (CSV fields must not
contain line breaks), and the first use of a streamed file's labels reads it once through to learn
their type and range, which also checks every cell before training starts.
"""

from __future__ import annotations

import copy
import math
import os
import re
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .atomic import staged
from .errors import DataError
from .layout import conform

MODES = ("train", "test")
DTYPES = ("float32", "int64")
STREAM_BYTES = 256 * 2**20    # files above this size stream unless chunk_size says otherwise
CHUNK_BYTES = 32 * 2**20      # default size of a streamed CSV chunk, in bytes of text
_SCAN_BYTES = 2**18            # block size of the CSV row-counting pass (memory stays near 2 blocks)
_SUFFIXES = (".csv", ".parquet", ".h5", ".hdf5", ".npy", ".npz")
_WHITESPACE = np.array([9, 10, 13, 32], dtype=np.uint8)

Block = tuple[np.ndarray, "np.ndarray | None"]                   # (x, y)
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
        self._source = _open(source, y, target, None if features is None else list(features), chunk_size)
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
        self._source = _InMemory(*self._finish(x, y, 0), name=self.name)

    # -- what the training loop asks ---------------------------------------------------------

    def __len__(self) -> int:
        return self._source.n_rows

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
        texts, labels, name = _texts(source, y, text, target)
        self._names = _text_labels(labels)  # each row's label, when the labels are text
        if self._names is not None:
            model_classes = named_classes((getattr(tokenizer, "metadata", None) or {}).get("labels"))
            self.classes = model_classes or sorted(set(self._names))
            labels = _number(self._names, self.classes, name)

        inputs = _tokenise(tokenizer, texts)
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
        other.rows = Dataset(np.arange(len(self))[:, None], _number(self._names, other.classes, self.name),
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


def _texts(source: Any, y: Any, column: str, target: str | None) -> tuple[list[str], Any, str]:
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

            frame = _read_csv(path, str(path)) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
            name = str(path)
        elif hasattr(source, "columns"):
            frame, name = source, "the DataFrame"
        else:
            raise DataError(f"texts come from a .csv/.parquet path, a DataFrame or a list of strings, not "
                            f"{type(source).__name__}")
        missing = [c for c in (column, target) if c is not None and c not in frame.columns]
        if missing:
            raise DataError(f"{name}: no column {_names(missing)}; columns: {_names(list(frame.columns))}")
        texts = frame[column].tolist()
        labels = None if target is None else frame[target].to_numpy()
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise DataError(f"{name}: text {bad} is {texts[bad]!r}, not a non-empty string")
    if labels is not None and len(labels) != len(texts):
        raise DataError(f"{name}: {len(texts)} texts but {len(labels)} labels")
    return texts, labels, name


def _text_labels(labels: Any) -> list[str] | None:
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


def _number(names: list[str], classes: list[str], where: str) -> np.ndarray:
    """Class ids of ``names`` in the order of ``classes``."""
    index = {label: i for i, label in enumerate(classes)}
    unknown = sorted(set(names) - index.keys())
    if unknown:
        raise DataError(f"{where}: label(s) {_names(unknown)} are not among the model's labels {_names(classes)}; "
                        f"a model's class ids are fixed once (its labels, else its first training set)")
    return np.array([index[n] for n in names], np.int64)


def _tokenise(tokenizer: Any, texts: list[str]) -> dict[str, np.ndarray]:
    if hasattr(tokenizer, "spec") and hasattr(tokenizer, "encode"):  # a zoo text model knows its inputs
        return tokenizer.encode(texts)
    if isinstance(tokenizer, (str, os.PathLike)):
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as err:  # tokenizers raises plain Exceptions for a missing or bad file
            raise DataError(f"{tokenizer}: not a tokenizers tokenizer.json ({err})") from None
    from .texts import encode

    return encode(tokenizer, texts, {"input_ids": "int64", "attention_mask": "float32", "token_type_ids": "int64"})


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


# -- sources: rows in file order, in chunks that can be read in any order -----------------------


class _Source:
    name: str
    n_rows: int
    row_shape: tuple
    has_labels: bool
    streaming: bool = True
    chunk_count: int

    def blocks(self, index: int) -> Iterator[Block]:
        """Validated raw ``(x, y)`` blocks of chunk ``index``."""
        for x, y, _ in self.blocks_at(index):
            yield x, y

    def blocks_at(self, index: int) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        """Like :meth:`blocks`, with the row number of each block's first row."""
        raise NotImplementedError


class _InMemory(_Source):
    streaming = False
    chunk_count = 1

    def __init__(self, x: np.ndarray, y: np.ndarray | None, name: str) -> None:
        self.x, self.y, self.name = x, y, name
        self.n_rows = len(x)
        self.row_shape = tuple(x.shape[1:])
        self.has_labels = y is not None

    def blocks_at(self, index):
        yield self.x, self.y, 0


class _CsvChunks(_Source):
    """A CSV read as byte ranges of ``chunk_rows`` rows each, found by one counting pass."""

    def __init__(self, path: Path, target: str | None, features: list[str] | None, chunk_rows: int | None) -> None:
        self.path, self.name = path, str(path)
        self.columns = list(_read_csv(path, self.name, nrows=0).columns)
        self.features = _feature_columns(self.columns, target, features, self.name)
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
        frame = _read_csv(BytesIO(text), self.name, header=None)
        expected = min(self.chunk_rows, self.n_rows - offset)
        if frame.shape != (expected, len(self.columns)):
            raise DataError(f"{self.name}: rows {offset}..{offset + expected - 1} parse as {frame.shape[0]} rows of "
                            f"{frame.shape[1]} fields, expected {expected} rows of {len(self.columns)} "
                            f"(the header's); a streamed CSV also cannot have line breaks inside fields")
        frame.columns = self.columns
        x, y = _frame_arrays(frame, self.features, self.target, offset, self.name)
        yield x, y, offset


class _ParquetChunks(_Source):
    """A Parquet file read row group by row group, in ``chunk_rows`` slices when given."""

    def __init__(self, path: Path, target: str | None, features: list[str] | None, chunk_rows: int | None) -> None:
        import pyarrow.parquet as pq

        self.name = str(path)
        try:
            self.file = pq.ParquetFile(path)
        except Exception as err:  # pyarrow raises its own error types for foreign or truncated files
            raise DataError(f"{self.name}: not a readable Parquet file ({err})") from None
        columns = list(self.file.schema_arrow.names)
        self.features = _feature_columns(columns, target, features, self.name)
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
            x, y = _frame_arrays(batch.to_pandas(), self.features, self.target, offset, self.name)
            yield x, y, offset
            offset += len(x)


class _ArrayChunks(_Source):
    """Arrays that can be sliced without loading them whole (HDF5 datasets, memory-mapped .npy)."""

    def __init__(self, name: str, read: Callable[[int, int], Block], n_rows: int, row_shape: tuple,
                 has_labels: bool, chunk_rows: int | None, row_bytes: int) -> None:
        self.name, self.read, self.n_rows, self.row_shape, self.has_labels = name, read, n_rows, row_shape, has_labels
        self.chunk_rows = chunk_rows or max(1, CHUNK_BYTES // max(row_bytes, 1))
        self.chunk_count = math.ceil(n_rows / self.chunk_rows)

    def blocks_at(self, index):
        start = index * self.chunk_rows
        x, y = self.read(start, min(start + self.chunk_rows, self.n_rows))
        yield _check_arrays(np.asarray(x), None if y is None else np.asarray(y), start, self.name) + (start,)


def _open(source: Any, y: Any, target: str | None, features: list[str] | None, chunk_size: int | None) -> _Source:
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        if y is None:
            cols = _feature_columns(list(source.columns), target, features, "DataFrame")
            return _InMemory(*_frame_arrays(source, cols, target, 0, "DataFrame"), name="DataFrame")
        # Labels given apart, scikit-learn style: every column (or features=) is a feature.
        cols = _feature_columns(list(source.columns), None, features, "DataFrame")
        x, _ = _frame_arrays(source, cols, None, 0, "DataFrame")
        return _InMemory(*_check_arrays(x, np.asarray(y), 0, "DataFrame"), name="DataFrame")
    if isinstance(source, (str, os.PathLike)):
        return _open_path(Path(source), y, target, features, chunk_size)
    if features is not None:
        raise DataError("features= selects named columns; it applies to CSV, Parquet and DataFrame sources")
    x = np.asarray(source)
    return _InMemory(*_check_arrays(x, None if y is None else np.asarray(y), 0, "arrays"), name="arrays")


def _open_path(path: Path, y: Any, target: str | None, features: list[str] | None, chunk_size: int | None) -> _Source:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; supported: {', '.join(_SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if y is not None and suffix != ".npy":
        raise DataError(f"{path}: y= is for arrays and .npy files; a {suffix} file names its labels with target=")
    if features is not None and suffix not in (".csv", ".parquet"):
        raise DataError(f"{path}: features= selects named columns; it applies to CSV, Parquet and DataFrame sources")
    stream = chunk_size is not None or path.stat().st_size > STREAM_BYTES
    if suffix == ".csv":
        if stream:
            return _CsvChunks(path, target, features, chunk_size)
        frame = _read_csv(path, str(path))
        cols = _feature_columns(list(frame.columns), target, features, str(path))
        return _InMemory(*_frame_arrays(frame, cols, target, 0, str(path)), name=str(path))
    if suffix == ".parquet":
        chunks = _ParquetChunks(path, target, features, chunk_size)
        return chunks if stream else _whole(chunks)
    if suffix in (".h5", ".hdf5"):
        chunks = _h5_chunks(path, target, chunk_size)
    elif suffix == ".npz":
        return _npz(path, target)
    else:
        chunks = _npy_chunks(path, y, chunk_size, stream)
    return chunks if stream else _whole(chunks)


def _whole(chunks: _Source) -> _InMemory:
    parts = [(x, y) for index in range(chunks.chunk_count) for x, y in chunks.blocks(index)]
    x = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, *chunks.row_shape))
    y = np.concatenate([p[1] for p in parts]) if parts and chunks.has_labels else None
    return _InMemory(x, y, name=chunks.name)


def _h5_chunks(path: Path, target: str | None, chunk_size: int | None) -> _ArrayChunks:
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
            return _unflat(handle[x_key][start:stop]), None if y_key is None else handle[y_key][start:stop]

    return _ArrayChunks(name, read, n_rows, row_shape, y_key is not None, chunk_size, row_bytes)


def _npy_chunks(path: Path, y: Any, chunk_size: int | None, stream: bool) -> _ArrayChunks:
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
        return _unflat(np.array(x[start:stop])), None if y is None else np.array(y[start:stop])

    return _ArrayChunks(name, read, n_rows, row_shape, y is not None, chunk_size, row_bytes)


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        # allow_pickle=False: an object array from a stranger's file must not run code.
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: not a readable numeric .npy file ({err})") from None


def _npz(path: Path, target: str | None) -> _InMemory:
    name = str(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            x_key, y_key = _array_keys(list(archive.files), target, name)
            x, y = archive[x_key], None if y_key is None else archive[y_key]
    except (ValueError, OSError) as err:
        raise DataError(f"{name}: not a readable numeric .npz file ({err})") from None
    return _InMemory(*_check_arrays(x, y, 0, name), name=name)


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


def _unflat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), 1) if x.ndim == 1 else x


# -- CSV specifics ------------------------------------------------------------------------------


def _read_csv(source: Any, where: str, **options: Any):
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
    return max(1, CHUNK_BYTES * lines // max(len(sample), 1))


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


# -- checking and converting ---------------------------------------------------------------------


def _feature_columns(columns: list, target: str | None, features: list[str] | None, where: str) -> list:
    if target is not None and target not in columns:
        raise DataError(f"{where}: label column {target!r} not found; columns found: {_names(columns)}. "
                        f"Pass target='<column>' to name it, or target=None for a dataset without labels")
    if features is None:
        chosen = [c for c in columns if c != target]
    else:
        missing = [f for f in features if f not in columns]
        if missing:
            raise DataError(f"{where}: feature column(s) {_names(missing)} not found; columns found: {_names(columns)}")
        if target in features:
            raise DataError(f"{where}: the label column {target!r} is also listed in features=")
        chosen = list(features)
    if not chosen:
        raise DataError(f"{where}: no feature columns; columns found: {_names(columns)}")
    return chosen


def _frame_arrays(frame, features: list, target: str | None, offset: int, where: str) -> Block:
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


def _check_arrays(x: np.ndarray, y: np.ndarray | None, offset: int, where: str) -> Block:
    """Arrays with a numeric dtype and only finite values, or a DataError naming the first bad row."""
    if x.ndim == 0:
        raise DataError(f"{where}: features must have a sample axis, got a scalar")
    x = _unflat(x)
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
                detail = f" in column(s) {_names(columns)}" if columns else ""
                raise DataError(f"{where}: {what} has NaN or infinite values{detail}; "
                                f"first bad row: {offset + row} (rows count from 0)")
    return x, y


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


def _names(items: Sequence) -> str:
    shown = ", ".join(map(repr, items[:20]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > 20 else "")
