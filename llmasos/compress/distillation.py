"""Knowledge distillation (Hinton et al., 2015): a student learns the teacher's softened outputs.

>>> from llmasos import Model, Optimizer, compress                             # doctest: +SKIP
>>> history = compress.distill(teacher, student, (X, y), Optimizer("Adam", lr=1e-3), epochs=10,
...                            temperature=4.0, alpha=0.9, unlabeled=X_more)  # doctest: +SKIP

The teacher (a Model of either framework, an ``.h5`` or an ``.onnx``) runs once over the inputs in
inference mode; its logits become extra target columns, ``[label, *teacher_logits]``, and the
student trains through its ordinary ``train`` with the :class:`~llmasos.losses.Distillation` loss.
Since the teacher is frozen and sees no augmentation, its logits are the same whether computed per
batch or once, and a torch teacher teaches a TensorFlow student (or the reverse) with nothing to convert.
Rows without a label (label -1, ``unlabeled=`` inputs, a Dataset without a label column) learn from
the teacher alone, which is where distillation pays most.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..callbacks import Callback
from ..errors import DataError, SpecError
from ..losses import Distillation
from .teacher import Teacher

NO_LABEL = -1
"""The label of a row that has none: it learns from the teacher alone."""

HINT_ROWS = 1024
"""How many training rows the per-epoch ``hint_mse`` is measured on."""


def distill(teacher: Any, student: Any, data: Any, optimizer: Any = None, epochs: int = 10,
            temperature: float = 4.0, alpha: float = 0.9, *, unlabeled: Any = None, validation: Any = None,
            batch_size: int = 32, seed: int | None = None, hints: dict[str, str] | None = None,
            hint_weight: float = 1.0, **train_options: Any):
    """Train ``student`` (a Model) to imitate ``teacher`` on ``data``; returns the student's History.

    ``data`` is a Dataset (with or without labels), ``(X, y)`` with ``y`` = -1 where a row has no
    label, or ``X`` alone; ``unlabeled`` adds inputs without labels. A text Dataset
    (``bert.dataset(texts, labels)``, labels optional) is read as the model trains on it, each batch
    padded on its own, its labels numbered by the student's classes (the teacher's when the student
    names none; a teacher naming other classes is refused). The loss per row is
    ``alpha T² KL(softmax(t/T) ‖ softmax(s/T)) + (1 - alpha) CE(y, s)`` on logits (a final softmax of
    either model is left out), and ``T² KL`` alone for a row without a label. ``validation``
    (labelled) reports that loss on held-out rows; other keywords go to ``student.train``.
    Afterwards the student evaluates and trains with its own loss again.

    ``hints={"student_layer": "teacher_layer"}`` adds FitNets' hint term, ``hint_weight`` times the
    mean squared difference between the student layer's output, through a learned linear projection
    to the teacher layer's width, and the teacher layer's output (see :mod:`.hints`; the teacher
    must be a Model or an ``.h5``). The history then has ``hint_mse`` per epoch: that difference on
    (up to 1,024 of) the training rows at the epoch's end.
    """
    source = Teacher(teacher, framework=student.framework)
    texts = hasattr(data, "with_targets")     # a text Dataset: batched (and padded) per batch, as it trains
    if texts:
        if unlabeled is not None:
            raise DataError("unlabeled= adds arrays of inputs; texts without labels are a text Dataset of their "
                            "own (model.dataset(texts)): distil on it in a second call")
        data = _numbered(student, source, data)
        x, y = data, _labels_or_none(data.arrays()[1], len(data))
    else:
        x, y = _inputs_and_labels(data)
        if unlabeled is not None:
            more, _ = _inputs_and_labels(unlabeled)
            x, y = _concat(x, more), np.concatenate([y, np.full(_rows(more), NO_LABEL, np.int64)])
    layers: list[str] = []
    if hints is None:
        loss, trained = Distillation(temperature=temperature, alpha=alpha), student
    else:
        from .hints import HintDistillation, check_hints, hint_student

        hints = check_hints(hints, hint_weight)
        if source.model is None:
            source.outputs(x, [])          # raises: an .onnx teacher shows no inner layers
        trained, sizes = hint_student(student, source.model.spec, hints, seed)
        layers = list(hints.values())
        loss = HintDistillation(temperature=temperature, alpha=alpha, hint_weight=hint_weight,
                                classes=student.classes, sizes=sizes)
    targets = _targets(source, student, x, y, layers)
    val = None
    if validation is not None:
        if hasattr(validation, "with_targets"):
            validation = _numbered(student, source, validation)
            val = validation.with_targets(_targets(source, student, validation,
                                                   _labels_or_none(validation.arrays()[1], len(validation)), layers))
        else:
            vx, vy = _inputs_and_labels(validation)
            val = (vx, _targets(source, student, vx, vy, layers))
    train_data = (x.with_targets(targets),) if texts else (x, targets)
    tracker = [] if hints is None else [_HintTracker(x, targets, student.classes, sizes)]
    options = {**train_options, "callbacks": [*train_options.get("callbacks", ()), *tracker]}
    try:
        history = trained.train(*train_data, epochs=epochs, batch_size=batch_size, optimizer=optimizer, loss=loss,
                                seed=seed, validation=val, **options)
    finally:
        if trained is not student:
            from .hints import take_back

            take_back(student, trained)
        _back_to_classes(student, trained)
    if tracker and tracker[0].values:     # the epochs of this call are the history's last ones
        for logs, value in zip(history.epochs[-len(tracker[0].values):], tracker[0].values):
            logs["hint_mse"] = value
    student.history = history
    return history


class _HintTracker(Callback):
    """Each epoch's mean squared difference between the projected student hints and the teacher's,
    on up to :data:`HINT_ROWS` training rows, in inference mode."""

    def __init__(self, x: Any, targets: np.ndarray, classes: int, sizes: list[int]) -> None:
        rows = len(x) if hasattr(x, "batches") else min(_rows(x), HINT_ROWS)   # a Dataset: all its rows
        if not hasattr(x, "batches"):
            x = {k: v[:rows] for k, v in x.items()} if isinstance(x, dict) else x[:rows]
        self.x = x
        self.teacher = targets[:rows, 1 + classes:]
        self.classes = classes
        self.values: list[float] = []

    def on_epoch_end(self, model: Any, logs: dict) -> bool:
        projected = np.asarray(model.predict(self.x))[:, self.classes:]
        self.values.append(float(np.mean((projected - self.teacher) ** 2)))
        return False


def _back_to_classes(student: Any, trained: Any) -> None:
    """After distilling, ``evaluate`` and ``train`` use cross-entropy on the classes (the default of
    a last softmax; a student ending in plain logits would otherwise fall back to MSE), and so does
    the student saved and loaded again: the optimizer's settings stay, for the file's training
    record, but its state belongs to another loss, so a later ``train`` starts afresh (step 0)."""
    student._loss, student._trainer, student._pending_state = "cross_entropy", None, None
    student._optimizer, student._epoch, student._step = trained._optimizer, trained._epoch, 0


def _targets(teacher: Teacher, student: Any, x: Any, y: np.ndarray, layers: list[str]) -> np.ndarray:
    """``[label, *teacher_logits, *teacher_layers]`` per row (``layers``: the teacher's hint layers),
    after checking the teacher and labels fit the student."""
    logits, found = teacher.outputs(x, layers) if layers else (teacher.logits(x), [])
    classes = student.classes   # from the spec: building here would take the student's seed away
    if logits.ndim != 2 or logits.shape[-1] != classes:
        raise SpecError(f"the teacher gives {logits.shape[-1]} outputs per row but the student {classes}: "
                        f"distillation needs both to predict the same classes (give the student "
                        f"output_dim={logits.shape[-1]} and a last layer of that size)")
    labelled = y[y != NO_LABEL]
    if labelled.size and (labelled.min() < 0 or labelled.max() >= classes):
        bad = labelled.min() if labelled.min() < 0 else labelled.max()
        raise DataError(f"label {bad} is outside the student's classes 0..{classes - 1}; "
                        f"use {NO_LABEL} for a row without a label")
    return np.column_stack([y.astype(np.float32), logits, *found]).astype(np.float32)


def _numbered(student: Any, teacher: Teacher, data: Any) -> Any:
    """A text Dataset with its labels numbered as the student's classes (which it takes from the
    teacher, else from the data, when it names none), after checking the teacher names them alike."""
    from ..data.text import named_classes

    own = named_classes(student.metadata.get("labels"))
    theirs = named_classes(teacher.metadata.get("labels"))
    if own is not None and theirs is not None and own != theirs:
        raise SpecError(f"the teacher's classes {theirs} are not the student's {own} (in that order): distillation "
                        f"matches them by position; give the student the teacher's labels")
    if own is None and theirs is not None:
        student.metadata["labels"] = list(theirs)
    return student._numbered(data, fix=True)


def _labels_or_none(y: Any, rows: int) -> np.ndarray:
    return np.full(rows, NO_LABEL, np.int64) if y is None else np.asarray(y, np.int64)


def _inputs_and_labels(data: Any) -> tuple[Any, np.ndarray]:
    """Inputs and integer labels (-1 where none) from a Dataset, ``(X, y)`` or ``X``."""
    if hasattr(data, "arrays"):
        x, y = data.arrays()
    elif isinstance(data, tuple):
        if len(data) != 2:
            raise DataError(f"data is a Dataset, (X, y) or X; got a tuple of {len(data)}")
        x, y = data
    else:
        x, y = data, None
    rows = _rows(x)
    if y is None:
        return x, np.full(rows, NO_LABEL, np.int64)
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.mod(y, 1) == 0):
            raise DataError(f"distillation takes integer class labels (-1 for none), got {y.dtype} labels")
        y = y.astype(np.int64)
    if len(y) != rows:
        raise DataError(f"{rows} input rows but {len(y)} labels")
    return x, y.astype(np.int64)


def _rows(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _concat(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {k: np.concatenate([a[k], b[k]]) for k in a}
    return np.concatenate([np.asarray(a), np.asarray(b)])
