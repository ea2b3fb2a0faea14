"""Metrics of a training run, computed in NumPy from each batch's outputs, in streaming form.

The adapters return the outputs of every step (logits for the classification losses); every
metric here is updated from them batch by batch (:meth:`Metric.update`) and read once at the end
(:meth:`Metric.result`), once for all frameworks, so a metric is the same number whichever
framework trained the model.

Names (``train(metrics=[...])``, ``evaluate(metrics=[...])``) and what they compute:

* ``accuracy`` — cross-entropy: the arg-max is the label; binary cross-entropy: the share of each
  sample's output units on the right side of 0 (as before: Keras' ``binary_accuracy``).
* ``top_k_accuracy`` (k=5, Keras' default) or ``top3``, ``top5_accuracy``…: the label is among the
  k highest outputs.
* ``precision``, ``recall``, ``f1``: ``"binary"`` (the positive class, label 1) for two classes
  (one sigmoid output or two softmax outputs, as scikit-learn's default), else ``"macro"``; ``f1_binary``, ``f1_macro``, ``f1_micro`` (the same for
  precision and recall) choose. Counts are kept exactly (a confusion matrix), so the results are
  scikit-learn's (``zero_division=0``; macro averages over the classes present in the labels or
  the predictions, as scikit-learn does).
* ``auc``: area under the ROC curve, exact: the scores of every sample are kept (``n × classes``
  floats) and ranked at the end (Mann-Whitney with mid-ranks for ties, which equals scikit-learn's
  trapezoids). Binary for one sigmoid output or two classes, else one-vs-rest macro over softmax
  probabilities (classes without positive samples are left out, as AUC is undefined for them).
  Exactness over Keras' 200 thresholds: the number agrees with scikit-learn to rounding, and a
  validation set's scores are small next to the model.
* ``mae``, ``rmse``: over all output values of a regression model (Keras' meaning: the square
  root of the mean over every value).
* ``perplexity``: ``exp`` of the mean token cross-entropy computed from the logits (labels of
  -100 are left out, as in Hugging Face's losses).

Streaming metrics are equal in both frameworks because the same NumPy code reads the same
outputs; ``tests/test_metrics.py`` checks each against scikit-learn on the same predictions.

>>> import numpy as np
>>> m = make_metrics(["accuracy", "f1"], "cross_entropy")
>>> logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])
>>> for metric in m: metric.update(Batch(logits, np.array([0, 0, 2])))
>>> {metric.name: round(metric.result(), 4) for metric in m}
{'accuracy': 0.6667, 'f1': 0.5556}
"""

from __future__ import annotations

import math
import re
from typing import Iterable

import numpy as np

from .errors import TrainingError
from .losses import get as get_loss

IGNORE_INDEX = -100   # token labels left out of perplexity and token accuracy (Hugging Face's value)


def output_kind(loss: object) -> str:
    """What a loss's outputs are, from its ``task`` (:mod:`llmasos.losses`): ``"classes"`` (logits
    over classes on the last axis; a sequence cross-entropy's tokens too), ``"binary"`` (one logit
    per unit), ``"values"`` (regression) or ``"sequence"`` (CTC: label sequences, no per-token metric).

    >>> output_kind("cross_entropy"), output_kind("focal(multiclass=False)"), output_kind("huber")
    ('classes', 'binary', 'values')
    """
    resolved = get_loss(loss)
    if resolved.task == "sequence":
        return "classes" if resolved.name == "sequence_cross_entropy" else "sequence"
    return resolved.task


def is_classification(loss: object) -> bool:
    return output_kind(loss) in ("classes", "binary")


def batches_for(loss: object):
    """``(outputs, target) -> Batch`` for ``loss``: the kind of its outputs, and a causal LM's shift
    (position t's logits against label t+1) and ignore index, so metrics read what the loss reads."""
    resolved, kind = get_loss(loss), output_kind(loss)
    shift = bool(resolved.params.get("shift", False))
    ignore = resolved.params.get("ignore_index", IGNORE_INDEX)

    def make(outputs: np.ndarray, target: np.ndarray) -> Batch:
        if shift:
            outputs, target = outputs[:, :-1], np.asarray(target)[:, 1:]
        return Batch(outputs, target, kind, ignore)
    return make


class Batch:
    """One step's outputs and labels, with what several metrics share computed once (arg-max,
    probabilities): ``accuracy`` and ``f1`` on the same batch take one arg-max."""

    def __init__(self, outputs: np.ndarray, target: np.ndarray, kind: str = "classes",
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.outputs, self.target, self.kind, self.ignore_index = outputs, np.asarray(target), kind, ignore_index
        self._cache: dict[str, np.ndarray] = {}

    def _get(self, key: str, make) -> np.ndarray:
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = make()
        return value

    @property
    def logits(self) -> np.ndarray:
        """Class logits as rows (sequence outputs flattened to tokens), ignored tokens dropped."""
        return self._tokens()[0]

    @property
    def labels(self) -> np.ndarray:
        return self._tokens()[1]

    def _tokens(self) -> tuple[np.ndarray, np.ndarray]:
        if "tokens" not in self._cache:
            if self.outputs.ndim == 2 and self.target.ndim == 1:     # the common case: rows of logits, one label each
                self._cache["tokens"] = (self.outputs, self.target)  # type: ignore[assignment]
                return self._cache["tokens"]  # type: ignore[return-value]
            logits = self.outputs.reshape(-1, self.outputs.shape[-1])
            labels = self.target.reshape(-1)
            if logits.shape[0] != labels.shape[0]:
                raise TrainingError(f"class outputs of shape {self.outputs.shape} need one label per row, got labels "
                                    f"of shape {self.target.shape}")
            if self.outputs.ndim > 2 and labels.size and labels.min() < 0:
                keep = labels != self.ignore_index
                logits, labels = logits[keep], labels[keep]
            self._cache["tokens"] = (logits, labels)  # type: ignore[assignment]
        return self._cache["tokens"]  # type: ignore[return-value]

    @property
    def predicted(self) -> np.ndarray:
        """Predicted class ids: the arg-max, or each unit's side of 0 for binary outputs."""
        if self.kind == "binary":
            return self._get("predicted", lambda: (self.outputs > 0).astype(np.int64))
        return self._get("predicted", lambda: self.logits.argmax(axis=1))

    @property
    def truth(self) -> np.ndarray:
        """Labels as class ids, shaped as :attr:`predicted`."""
        if self.kind == "binary":
            return self._get("truth", lambda: (self.target.reshape(self.outputs.shape) > 0.5).astype(np.int64))
        return self.labels

    def confusion(self) -> np.ndarray:
        """Counts of (label, prediction) pairs, flat: ``[label * classes + predicted]`` (single-label)."""
        def make():
            classes = 2 if self.kind == "binary" else self.outputs.shape[-1]
            pairs = self.truth.reshape(-1) * classes + self.predicted.reshape(-1)
            return np.bincount(pairs, minlength=classes * classes)
        return self._get("confusion", make)

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax (classes) or sigmoid (binary) of the outputs, in float64."""
        def make():
            if self.kind == "binary":
                return 1.0 / (1.0 + np.exp(-self.outputs.astype(np.float64)))
            shifted = self.logits.astype(np.float64) - self.logits.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            return e / e.sum(axis=1, keepdims=True)
        return self._get("probabilities", make)


class Metric:
    """A streaming metric: :meth:`reset`, :meth:`update` per batch, :meth:`result` at the end.

    ``kinds`` lists the output kinds (see :func:`output_kind`) it applies to; ``higher_is_better``
    decides ``mode="auto"`` of the callbacks that monitor it."""

    name: str = ""
    kinds: tuple[str, ...] = ("classes", "binary", "values")
    higher_is_better = True

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, batch: Batch) -> None:
        raise NotImplementedError

    def result(self) -> float:
        raise NotImplementedError


class Accuracy(Metric):
    kinds = ("classes", "binary")

    def __init__(self, name: str = "accuracy") -> None:
        self.name = name
        self.reset()

    def reset(self):
        self.correct = self.count = 0.0

    def update(self, batch):
        if batch.kind == "binary":   # each sample counts the share of its units that are right
            hits = batch.predicted == batch.truth
            self.correct += float(hits.reshape(len(hits), -1).mean(axis=1).sum())
            self.count += len(hits)
        else:
            self.correct += float(np.count_nonzero(batch.predicted == batch.labels))
            self.count += len(batch.labels)

    def result(self):
        return self.correct / self.count if self.count else math.nan


class TopKAccuracy(Metric):
    kinds = ("classes",)

    def __init__(self, k: int = 5, name: str | None = None) -> None:
        if not isinstance(k, int) or k < 1:
            raise TrainingError(f"top-k accuracy needs k >= 1, got {k!r}")
        self.k, self.name = k, name or f"top{k}_accuracy"
        self.reset()

    def reset(self):
        self.correct = self.count = 0

    def update(self, batch):
        logits, labels = batch.logits, batch.labels
        true = np.take_along_axis(logits, labels[:, None], axis=1)
        # rank of the label's score: how many classes score strictly higher
        self.correct += int(np.count_nonzero((logits > true).sum(axis=1) < self.k))
        self.count += len(labels)

    def result(self):
        return self.correct / self.count if self.count else math.nan


AVERAGES = ("binary", "macro", "micro")


class _Counts(Metric):
    """Precision, recall and F1 from exact per-class true/false positive and false negative counts."""

    kinds = ("classes", "binary")
    score = ""

    def __init__(self, average: str | None = None, name: str | None = None) -> None:
        if average is not None and average not in AVERAGES:
            raise TrainingError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
        self.average = average
        self.name = name or (self.score if average is None else f"{self.score}_{average}")
        self.reset()

    def reset(self):
        self.counts = None       # single-label: the flat confusion matrix; multilabel: (tp, fp, fn) per unit
        self.multilabel = False

    def update(self, batch):
        predicted = batch.predicted
        if batch.kind == "binary" and predicted.reshape(len(predicted), -1).shape[1] > 1:
            self.multilabel = True   # one binary problem per unit: counts per unit
            predicted, truth = predicted.reshape(len(predicted), -1), batch.truth.reshape(len(predicted), -1)
            counts = np.stack([(predicted & truth).sum(axis=0), (predicted & (1 - truth)).sum(axis=0),
                               ((1 - predicted) & truth).sum(axis=0)])
        else:
            counts = batch.confusion()   # one bincount per batch, shared by every counting metric
        # the first batch's counts are copied: the batch's cached array is shared with other metrics
        self.counts = counts.copy() if self.counts is None else np.add(self.counts, counts, out=self.counts)

    def _tallies(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-class true positives, false positives, false negatives, and whether the class occurs."""
        if self.multilabel:
            tp, fp, fn = self.counts
            return tp, fp, fn, np.ones(len(tp), dtype=bool)
        classes = math.isqrt(len(self.counts))
        confusion = self.counts.reshape(classes, classes)
        tp = np.diagonal(confusion)
        predicted, labelled = confusion.sum(axis=0), confusion.sum(axis=1)
        return tp, predicted - tp, labelled - tp, (predicted + labelled) > 0

    def _average(self) -> str:
        if self.average is not None:
            return self.average
        return "binary" if len(self.counts) == 4 and not self.multilabel else "macro"

    def result(self):
        if self.counts is None:
            return math.nan
        average = self._average()
        tp, fp, fn, present = self._tallies()
        tp, fp, fn = (a.astype(np.float64) for a in (tp, fp, fn))
        if average == "binary":
            if self.multilabel or len(tp) != 2:
                raise TrainingError(f"{self.name}: average='binary' needs two classes (one sigmoid output or two "
                                    f"softmax outputs), got {len(tp)}; use macro or micro")
            tp, fp, fn = tp[1:], fp[1:], fn[1:]
        elif average == "micro":
            tp, fp, fn = tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True)
        else:
            tp, fp, fn = tp[present], fp[present], fn[present]
        return float(np.mean(self._formula(tp, fp, fn))) if len(tp) else math.nan

    @staticmethod
    def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)   # zero_division=0


class Precision(_Counts):
    score = "precision"

    def _formula(self, tp, fp, fn):
        return self._ratio(tp, tp + fp)


class Recall(_Counts):
    score = "recall"

    def _formula(self, tp, fp, fn):
        return self._ratio(tp, tp + fn)


class F1(_Counts):
    score = "f1"

    def _formula(self, tp, fp, fn):
        return self._ratio(2 * tp, 2 * tp + fp + fn)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Exact ROC AUC of ``scores`` for the boolean labels ``positive`` (mid-ranks for ties);
    nan when one of the two classes is missing.

    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.75
    """
    n_pos = int(np.count_nonzero(positive))
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    # mid-ranks: every run of equal scores shares the mean of its ranks (1-based)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], len(ordered))
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class AUC(Metric):
    kinds = ("classes", "binary")

    def __init__(self, name: str = "auc") -> None:
        self.name = name
        self.reset()

    def reset(self):
        self.scores: list[np.ndarray] = []
        self.truth: list[np.ndarray] = []
        self.kind = "classes"

    def update(self, batch):
        self.kind = batch.kind
        if batch.kind == "binary":
            # logits rank as their sigmoid does, without the float saturation of probabilities
            self.scores.append(batch.outputs.reshape(len(batch.outputs), -1).astype(np.float64))
            self.truth.append(batch.truth.reshape(len(batch.outputs), -1))
        else:
            self.scores.append(batch.probabilities)
            self.truth.append(batch.labels)

    def result(self):
        if not self.scores:
            return math.nan
        scores, truth = np.concatenate(self.scores), np.concatenate(self.truth)
        if self.kind == "binary":
            values = [roc_auc(scores[:, j], truth[:, j] > 0) for j in range(scores.shape[1])]
        elif scores.shape[1] == 2:
            values = [roc_auc(scores[:, 1], truth == 1)]
        else:   # one-vs-rest, macro over the classes that have positive samples
            values = [roc_auc(scores[:, c], truth == c) for c in np.unique(truth)]
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan


class _Errors(Metric):
    kinds = ("values",)
    higher_is_better = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset()

    def reset(self):
        self.total = 0.0
        self.count = 0

    def _differences(self, batch: Batch) -> np.ndarray:
        outputs = batch.outputs
        target = batch.target
        if target.size != outputs.size:
            raise TrainingError(f"{self.name} compares outputs of shape {outputs.shape} with targets of the same size, "
                                f"got targets of shape {target.shape}")
        return outputs.astype(np.float64).reshape(-1) - target.astype(np.float64).reshape(-1)

    def result(self):
        return self._finish(self.total / self.count) if self.count else math.nan

    def _finish(self, mean: float) -> float:
        return mean


class MAE(_Errors):
    def __init__(self, name: str = "mae") -> None:
        super().__init__(name)

    def update(self, batch):
        d = self._differences(batch)
        self.total += float(np.abs(d).sum())
        self.count += d.size


class RMSE(_Errors):
    def __init__(self, name: str = "rmse") -> None:
        super().__init__(name)

    def update(self, batch):
        d = self._differences(batch)
        self.total += float(np.dot(d, d))
        self.count += d.size

    def _finish(self, mean):
        return math.sqrt(mean)


class Perplexity(Metric):
    kinds = ("classes",)
    higher_is_better = False

    def __init__(self, name: str = "perplexity") -> None:
        self.name = name
        self.reset()

    def reset(self):
        self.total = 0.0
        self.count = 0

    def update(self, batch):
        logits, labels = batch.logits.astype(np.float64), batch.labels
        top = logits.max(axis=1)
        log_z = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        self.total += float((log_z - logits[np.arange(len(labels)), labels]).sum())
        self.count += len(labels)

    def result(self):
        return math.exp(self.total / self.count) if self.count else math.nan


_FIXED = {"accuracy": Accuracy, "acc": Accuracy, "auc": AUC, "mae": MAE, "mean_absolute_error": MAE,
          "rmse": RMSE, "root_mean_squared_error": RMSE, "perplexity": Perplexity, "ppl": Perplexity}
_COUNTS = {"precision": Precision, "recall": Recall, "f1": F1}
KNOWN = ("accuracy", "top_k_accuracy", "top<k>[_accuracy]", "precision[_binary|_macro|_micro]",
         "recall[_binary|_macro|_micro]", "f1[_binary|_macro|_micro]", "auc", "mae", "rmse", "perplexity")


def get(spec: "str | Metric") -> Metric:
    """A fresh metric from its name (see the module's list) or a :class:`Metric` itself.

    >>> get("top3").name, get("f1_micro").average
    ('top3', 'micro')
    """
    if isinstance(spec, Metric):
        return spec
    if not isinstance(spec, str):
        raise TrainingError(f"a metric is a name or an llmasos.metrics.Metric, got {type(spec).__name__}")
    key = spec.lower().replace("-", "_")
    if key in _FIXED:
        return _FIXED[key](name=spec)
    if key == "top_k_accuracy":
        return TopKAccuracy(5, name=spec)
    top = re.fullmatch(r"top_?(\d+)(_accuracy)?", key)
    if top:
        return TopKAccuracy(int(top.group(1)), name=spec)
    score, _, average = key.partition("_")
    if score in _COUNTS and (not average or average in AVERAGES):
        return _COUNTS[score](average or None, name=spec)
    raise TrainingError(f"unknown metric {spec!r}; known: {', '.join(KNOWN)} (or an llmasos.metrics.Metric)")


def default_names(loss: object) -> list[str]:
    """The metrics reported when ``metrics=`` is not given: accuracy for classification."""
    return ["accuracy"] if get_loss(loss).task in ("classes", "binary") else []


def make_metrics(specs: Iterable["str | Metric"] | None, loss: object) -> list[Metric]:
    """Fresh metrics for a run with ``loss``; each must apply to its outputs, names must differ."""
    kind = output_kind(loss)
    metrics = [get(s) for s in (default_names(loss) if specs is None else specs)]
    names = [m.name for m in metrics]
    for metric in metrics:
        if kind not in metric.kinds:
            what = {"classes": "class logits", "binary": "binary (sigmoid) outputs", "values": "regression values",
                    "sequence": "label sequences (CTC)"}
            raise TrainingError(f"metric {metric.name!r} applies to {' or '.join(what[k] for k in metric.kinds)}; the "
                                f"loss {getattr(loss, 'name', loss)!r} gives {what[kind]}")
        if metric.name == "loss" or names.count(metric.name) > 1:
            raise TrainingError(f"metric names must be unique and not 'loss', got {names}")
        metric.reset()
    return metrics


def higher_is_better(key: str, metrics: Iterable[Metric] = ()) -> bool:
    """Whether a logged key improves upwards (``val_`` ignored): a metric says; loss and unknown
    keys improve downwards, except names that say accuracy, AUC, F1, precision or recall."""
    name = key[4:] if key.startswith("val_") else key
    for metric in metrics:
        if metric.name == name:
            return metric.higher_is_better
    try:
        return get(name).higher_is_better
    except TrainingError:
        return "acc" in name
