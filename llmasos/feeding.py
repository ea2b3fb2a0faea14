"""What the training loop reads: a Dataset's batches with each sample's weight, and arrays made
into datasets (``train(X, y, validation_split=..., class_weight=..., sample_weight=...)``), with
Keras' meanings:

* ``validation_split=f`` holds out the *last* ``f`` of the rows, before any shuffling
  (``int(ceil(n * (1 - f)))`` rows train, as Keras splits them);
* ``class_weight={class: weight}`` weighs each sample by its label's weight (classes not named
  weigh 1); a class the model does not have, or that no label holds, is an error;
* ``sample_weight``: one weight per row (an array, or the name of a Dataset column, which then is
  not a feature); with ``class_weight`` both multiply.

A weight scales its sample's loss, ``sum(w_i * l_i) / batch`` (Keras' ``sum_over_batch_size``);
metrics are not weighted (Keras' ``metrics``, not ``weighted_metrics``).

>>> import numpy as np
>>> feed = Feed(Dataset(np.eye(3, dtype=np.float32), np.array([0, 1, 1]), mode="test"),
...             class_weight=ClassWeights({1: 3.0}, classes=2))
>>> [w.tolist() for _, _, w in feed.batches(2)]
[[1.0, 3.0], [3.0]]
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from .data import Dataset
from .errors import DataError, TrainingError
from .optim import Optimizer

Batch = tuple[Any, np.ndarray, "np.ndarray | None"]     # (x, y, per-sample weights or None)


class ClassWeights:
    """``{class: weight}`` as a lookup table over the model's ``classes`` (None: unknown, the
    labels decide); class names are allowed when the labels are named (``names``)."""

    def __init__(self, mapping: Mapping[Any, float], classes: int | None, names: Sequence[str] | None = None) -> None:
        if not isinstance(mapping, Mapping) or not mapping:
            raise TrainingError(f"class_weight maps classes to weights, e.g. {{0: 1.0, 1: 3.0}}; got {mapping!r}")
        ids: dict[int, float] = {}
        for key, weight in mapping.items():
            if isinstance(key, str):
                if names is None or key not in names:
                    raise TrainingError(f"class_weight names class {key!r}, which the labels do not have"
                                        + (f"; classes: {', '.join(names)}" if names else "; use class ids (0, 1, ...)"))
                key = list(names).index(key)
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
                raise TrainingError(f"class_weight keys are class ids (ints >= 0) or class names, got {key!r}")
            if classes is not None and key >= classes:
                raise TrainingError(f"class_weight names class {key}, but the model has classes 0..{classes - 1}")
            if not (isinstance(weight, (int, float, np.number)) and math.isfinite(weight) and weight >= 0):
                raise TrainingError(f"class_weight[{key}] must be a finite number >= 0, got {weight!r}")
            ids[int(key)] = float(weight)
        self.ids = ids
        self.table = np.ones(max(ids) + 1 if classes is None else max(classes, 2), dtype=np.float32)
        for key, weight in ids.items():
            self.table[key] = weight

    def check(self, dataset: Dataset) -> None:
        """Every named class must occur among ``dataset``'s labels (else its weight means nothing)."""
        if not dataset.has_labels:
            raise TrainingError("class_weight needs labels; the dataset has none")
        present: set = set()
        for _, y in dataset.batches(65_536):
            y = np.asarray(y)
            if y.ndim > 1 and y.shape[1:] != (1,):
                raise TrainingError(f"class_weight needs one class label per sample, got labels of shape {y.shape[1:]} "
                                    f"per sample")
            present.update(np.unique(y).tolist())
        missing = sorted(k for k in self.ids if k not in present)
        if missing:
            raise TrainingError(f"class_weight names class(es) {missing}, which no training label holds; the labels "
                                f"hold {sorted(present)}")

    def __call__(self, y: np.ndarray) -> np.ndarray:
        labels = np.asarray(y).reshape(len(y), -1)[:, 0].astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.table)):
            bad = int(labels.min() if labels.min() < 0 else labels.max())
            raise DataError(f"label {bad} has no class weight (classes 0..{len(self.table) - 1})")
        return self.table[labels]


class Feed:
    """``dataset``'s batches as ``(x, y, weights)``: weights from ``row_weights`` (one per row, in
    the dataset's row order), ``weight_column`` (a feature column index taken out of ``x``) and
    ``class_weight``, multiplied; None when none is given. Shuffling is the dataset's own: the same
    seed gives the same order with weights or without."""

    def __init__(self, dataset: Dataset, *, row_weights: np.ndarray | None = None, weight_column: int | None = None,
                 class_weight: ClassWeights | None = None) -> None:
        self.dataset = dataset
        self.class_weight = class_weight
        self.weight_column = weight_column
        self.row_weights = None
        if row_weights is not None:
            row_weights = _weights(row_weights, len(dataset), "sample_weight")
            if dataset.streaming or isinstance(dataset.arrays()[0], dict):
                raise TrainingError("sample_weight as an array needs rows held in memory (arrays, a DataFrame, a small "
                                    "file); for a streamed file name a weight column: sample_weight='column'")
            self.row_weights = row_weights
            self._x, self._y = dataset.arrays()
            self._rows = Dataset(np.arange(len(dataset), dtype=np.int64)[:, None], mode=dataset.mode, dtype="int64")

    @property
    def mode(self) -> str:
        return self.dataset.mode

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int | None = None,
                epoch: int = 0) -> Iterator[Batch]:
        if self.row_weights is not None:
            # the row numbers batched and shuffled as the dataset would be, then gathered
            for rows, _ in self._rows.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch):
                rows = rows[:, 0]
                y = self._y[rows]
                yield self._x[rows], y, self._weigh(y, self.row_weights[rows])
            return
        for x, y in self.dataset.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch):
            weights = None
            if self.weight_column is not None:
                flat = x.reshape(len(x), -1)
                weights = _weights(flat[:, self.weight_column], len(x), "the sample_weight column")
                x = np.delete(flat, self.weight_column, axis=1)
            yield x, y, self._weigh(y, weights)

    def _weigh(self, y: np.ndarray, weights: np.ndarray | None) -> np.ndarray | None:
        if self.class_weight is None:
            return weights
        by_class = self.class_weight(y)
        return by_class if weights is None else by_class * weights


def _weights(values: Any, n: int, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if len(values) != n:
        raise TrainingError(f"{what} needs one weight per row ({n}), got {len(values)}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise TrainingError(f"{what} must hold finite weights >= 0")
    return values


def split(x: Any, y: Any, weights: Any, fraction: float) -> tuple[tuple, tuple]:
    """Keras' ``validation_split``: the last ``fraction`` of the rows, taken before shuffling.

    >>> (xt, yt, _), (xv, yv, _) = split(np.arange(10), np.arange(10), None, 0.25)
    >>> xt.tolist(), xv.tolist()
    ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise TrainingError(f"validation_split must be a fraction between 0 and 1 (exclusive), got {fraction!r}")
    n = len(y)
    at = int(math.ceil(n * (1.0 - fraction)))
    if at == 0 or at == n:
        raise TrainingError(f"validation_split={fraction} of {n} rows leaves {'no training' if at == 0 else 'no validation'} "
                            f"rows; pass a fraction that leaves rows on both sides")

    def part(a: Any, rows: slice) -> Any:
        return None if a is None else (a.iloc[rows] if hasattr(a, "iloc") else np.asarray(a)[rows])

    head, tail = slice(0, at), slice(at, n)
    return (part(x, head), part(y, head), part(weights, head)), (part(x, tail), part(y, tail), part(weights, tail))


class Inputs(NamedTuple):
    """What ``train()``'s arguments come to: datasets, the optimizer, and per-row weights (an
    array, or a column name for ``train``)."""

    train: Dataset
    validation: Dataset | None
    optimizer: Optimizer | None
    weights: Any
    validation_weights: Any


def _is_dataset(value: Any) -> bool:
    return hasattr(value, "batches")


def _is_arrays(value: Any) -> bool:
    return isinstance(value, (np.ndarray, list)) or hasattr(value, "iloc") or hasattr(value, "__array__")


def as_datasets(x: Any, y: Any, *, optimizer: Optimizer | None, validation: Any, validation_split: float | None,
                sample_weight: Any) -> Inputs:
    """Sort out the two forms of ``train()``, refusing what could mean either:

    * ``train(dataset, optimizer)``: a Dataset carries its labels, so a second argument is the
      Optimizer (the form llmasos has always had);
    * ``train(X, y)``: arrays (or a DataFrame) and their labels, Keras' form; the optimizer is
      then given as ``optimizer=``.

    ``validation`` is a Dataset or a tuple ``(X, y)`` / ``(X, y, sample_weight)``."""
    if _is_dataset(x):
        if isinstance(y, Optimizer):
            if optimizer is not None:
                raise TrainingError("the optimizer is given twice (second argument and optimizer=); give it once")
            optimizer, y = y, None
        if y is not None:
            raise TrainingError(f"train(dataset, optimizer): a Dataset carries its own labels, so the second argument "
                                f"is the Optimizer, got {type(y).__name__}; for arrays call train(X, y)")
        if validation_split is not None:
            raise TrainingError("validation_split splits arrays (train(X, y, validation_split=0.1)), as in Keras; with a "
                                "Dataset pass validation=Dataset(...)")
        train, weights = x, sample_weight
    elif _is_arrays(x):
        if isinstance(y, Optimizer):
            raise TrainingError("train(X, y): the second argument is the labels y, got an Optimizer; pass the optimizer "
                                "as optimizer=, or train(Dataset(X, y), optimizer)")
        if y is None or _is_dataset(y):
            raise TrainingError("train(X, y) needs the labels y as an array beside the arrays X; or pass a Dataset, "
                                "which carries its labels: train(Dataset(X, y), optimizer)")
        if isinstance(sample_weight, str):
            raise TrainingError("sample_weight names a column only with a Dataset; with arrays give one weight per row")
        weights = sample_weight
        if validation_split is not None:
            if validation is not None:
                raise TrainingError("give validation= or validation_split=, not both")
            (x, y, weights), (xv, yv, wv) = split(x, y, sample_weight, validation_split)
            validation = (xv, yv, wv)
        train = Dataset(x, y, mode="train")
    else:
        raise DataError(f"train() takes arrays X with labels y (train(X, y)), or an llmasos Dataset (train(dataset, "
                        f"optimizer)); got {type(x).__name__}")
    validation_weights = None
    if isinstance(validation, tuple):
        if len(validation) not in (2, 3):
            raise TrainingError(f"validation= takes a Dataset or a tuple (X, y) or (X, y, sample_weight), got a tuple "
                                f"of {len(validation)}")
        validation_weights = validation[2] if len(validation) == 3 else None
        validation = Dataset(validation[0], validation[1], mode="test")
    elif validation is not None and not _is_dataset(validation):
        raise TrainingError(f"validation= takes a Dataset or a tuple (X, y), got {type(validation).__name__}")
    return Inputs(train, validation, optimizer, weights, validation_weights)


def feed(dataset: Dataset, weights: Any = None, class_weight: ClassWeights | None = None) -> Feed:
    """A :class:`Feed` over ``dataset`` with ``weights``: None, one per row, or a column's name."""
    if isinstance(weights, str):
        names = getattr(dataset, "feature_names", None)
        if not names or weights not in names:
            raise TrainingError(f"sample_weight={weights!r} names no feature column of the dataset"
                                + (f"; its columns: {', '.join(map(str, names))}" if names else
                                   " (it has no named columns: give one weight per row)"))
        if len(dataset.feature_shape) != 1:
            raise TrainingError("sample_weight as a column needs flat rows (shape= reshapes them)")
        return Feed(dataset, weight_column=list(names).index(weights), class_weight=class_weight)
    return Feed(dataset, row_weights=weights, class_weight=class_weight)
