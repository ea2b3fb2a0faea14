"""The framework-neutral training loop: epochs, batches, schedules, metrics, callbacks.

Adapters only run single steps (:class:`llmasos.adapters.base.Trainer`); everything a user sees
across an epoch — the batch order, the learning rate of each step, the progress bar, the
``History``, early stopping and checkpoints — is decided here once for every framework.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .adapters.base import LOSSES
from .errors import DataError, TrainingError
from .metrics import correct_count

if TYPE_CHECKING:
    from .data import Dataset
    from .model import Model


def resolve_loss(final_activation: str, loss: str | None) -> str:
    """The loss for a model: chosen from its last activation unless ``loss`` says otherwise.

    >>> resolve_loss("softmax", None), resolve_loss("sigmoid", None), resolve_loss("linear", None)
    ('cross_entropy', 'binary_cross_entropy', 'mse')
    """
    if loss is not None:
        key = str(loss).lower().replace("-", "_")
        aliases = {"crossentropy": "cross_entropy", "categorical_cross_entropy": "cross_entropy",
                   "sparse_categorical_crossentropy": "cross_entropy", "bce": "binary_cross_entropy",
                   "binary_crossentropy": "binary_cross_entropy", "mean_squared_error": "mse",
                   "mean_absolute_error": "mae", "l1": "mae"}
        key = aliases.get(key, key)
        if key not in LOSSES:
            raise TrainingError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        return key
    return {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy"}.get(final_activation, "mse")


class History:
    """Per-epoch metrics of a training run.

    >>> h = History([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
    >>> h["loss"]
    [0.5, 0.25]
    """

    def __init__(self, epochs: Iterable[dict] = ()) -> None:
        self.epochs: list[dict] = list(epochs)

    def append(self, logs: dict) -> None:
        self.epochs.append(dict(logs))

    @property
    def history(self) -> dict[str, list]:
        """Keras-style: metric name -> list of per-epoch values."""
        keys = [k for k in (self.epochs[0] if self.epochs else {}) if k != "epoch"]
        return {k: [e.get(k) for e in self.epochs] for k in keys}

    def __getitem__(self, key: str) -> list:
        return [e[key] for e in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        return f"History({len(self)} epochs, last={last})"

    def to_json(self) -> str:
        return json.dumps(self.epochs)

    @classmethod
    def from_json(cls, text: str) -> "History":
        return cls(json.loads(text))

    def plot(self, path: str) -> str:
        """Save loss and accuracy curves (train and validation) as an image; returns the path."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        metrics = [m for m in ("loss", "accuracy") if m in self.history]
        fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
        epochs = self["epoch"]
        for ax, metric in zip(axes[0], metrics):
            ax.plot(epochs, self[metric], label=f"train {metric}")
            if f"val_{metric}" in self.history:
                ax.plot(epochs, self[f"val_{metric}"], label=f"validation {metric}")
            ax.set_xlabel("epoch")
            ax.set_title(metric)
            ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


class Callback:
    """Hooks of a :meth:`Model.train` call, as Keras' callbacks: :meth:`on_train_begin` when the
    call starts, :meth:`on_epoch_end` after every epoch (return True to stop training),
    :meth:`on_train_end` when the call finishes (not when it raises)."""

    def on_train_begin(self, model: "Model") -> None:
        """Before the first epoch of each train() call (reset per-run state here)."""

    def on_epoch_end(self, model: "Model", logs: dict) -> bool:
        return False

    def on_train_end(self, model: "Model") -> None:
        """After the last epoch of each train() call, stopped early or not."""


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs in a row without an improvement of ``monitor`` greater than
    ``min_delta`` over the best value so far, as Keras' ``EarlyStopping``: ``patience=2`` stops
    at the second epoch that does not improve (``patience=0`` at the first).

    With ``restore_best=True`` (alias ``restore_best_weights``) the weights of the best epoch are
    put back when training ends, whether it stopped early or ran all its epochs. Each train()
    call starts afresh (best value, wait and best weights are reset), so one instance can be
    passed to several calls.

    >>> stopper = EarlyStopping(patience=2, monitor="loss", restore_best=False)
    >>> stopper.on_train_begin(None)
    >>> [stopper.on_epoch_end(None, {"epoch": e, "loss": v}) for e, v in enumerate([3, 2, 2.5, 2.1], 1)]
    [False, False, False, True]
    >>> stopper.stopped_epoch, stopper.best_epoch
    (4, 2)
    """

    def __init__(self, patience: int = 3, monitor: str = "val_loss", mode: str = "auto",
                 min_delta: float = 0.0, restore_best: bool = True, *,
                 restore_best_weights: bool | None = None) -> None:
        if patience < 0:
            raise TrainingError(f"patience must be >= 0, got {patience}")
        if mode not in ("auto", "min", "max"):
            raise TrainingError(f"mode must be auto, min or max, got {mode!r}")
        if restore_best_weights is not None:
            restore_best = restore_best_weights
        self.patience, self.monitor, self.min_delta, self.restore_best = patience, monitor, abs(min_delta), restore_best
        self.sign = -1.0 if mode == "max" or (mode == "auto" and "acc" in monitor) else 1.0
        self.on_train_begin(None)

    def on_train_begin(self, model):
        self.best = math.inf            # of sign * value: lower is better
        self.best_epoch: int | None = None
        self.best_weights = None
        self.wait = 0
        self.first_epoch: int | None = None
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, model, logs):
        if self.monitor not in logs:
            raise TrainingError(f"EarlyStopping monitors {self.monitor!r}, which is not among {sorted(logs)}; "
                                f"pass validation= to train() to get val_* metrics")
        epoch, value = logs["epoch"], self.sign * logs[self.monitor]
        if self.first_epoch is None:
            self.first_epoch = epoch
            if self.restore_best:     # until something improves, the first weights are the best
                self.best_weights, self.best_epoch = model.get_weights(), epoch
        self.wait += 1
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_weights = model.get_weights()
            return False
        # Keras never stops on a run's first epoch (there is nothing to compare it with).
        if self.wait >= self.patience and epoch > self.first_epoch:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model):
        if self.restore_best and self.best_weights is not None:
            model.set_weights(self.best_weights)


class Checkpoint(Callback):
    """Save the model with its optimizer state every ``every`` epochs, for ``train(resume=path)``.

    ``path`` may contain ``{epoch}`` to keep one file per checkpoint.

    ```python
    model.train(train, epochs=20, callbacks=[Checkpoint("ckpt-{epoch}.h5", every=5)])
    model.train(train, epochs=20, resume="ckpt-15.h5")    # a killed run goes on to epoch 20
    ```
    """

    def __init__(self, path: str, every: int = 1) -> None:
        if every < 1:
            raise TrainingError(f"checkpoint every must be >= 1, got {every}")
        self.path, self.every = str(path), every

    def on_epoch_end(self, model, logs):
        if logs["epoch"] % self.every == 0:
            model.save(self.path.format(epoch=logs["epoch"]))
        return False


def _progress(total: int, epoch: int, epochs: int, show: bool | None):
    show = sys.stderr.isatty() if show is None else show
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=True)


def check_labels(dataset: "Dataset", loss: str, classes: int | None) -> None:
    """Reject labels a loss cannot take before any step runs, naming the bad value and the allowed
    range (once per dataset: a streamed file is read through once and its statistics cached)."""
    if not dataset.has_labels:
        raise DataError("the dataset has no labels; set target= to the label column")
    low, high = dataset.labels_range()
    if loss == "cross_entropy":
        if not np.issubdtype(dataset.label_dtype, np.integer):
            raise DataError(f"cross-entropy needs integer class labels, got {dataset.label_dtype} labels "
                            f"from {low} to {high}")
        if low < 0 or (classes is not None and high >= classes):
            bad = low if low < 0 else high
            raise DataError(f"label {bad} is outside the model's classes 0..{classes - 1} (output_dim={classes})")
    elif loss == "binary_cross_entropy" and (low < 0 or high > 1):
        raise DataError(f"binary cross-entropy needs labels in [0, 1], got values from {low} to {high}")


def run_epoch(trainer, batches, step: int, lr_at, progress, loss: str, shape_input) -> tuple[dict, int]:
    total_loss = correct = seen = 0.0
    for x, y in batches:
        lr = lr_at(step)
        batch_loss, outputs = trainer.train_step(shape_input(x), y, lr)
        if not math.isfinite(batch_loss):
            raise TrainingError(f"the loss became {batch_loss} at step {step}; lower the learning rate "
                                f"(it was {lr:g}) or check the data for extreme values")
        total_loss += batch_loss
        correct += correct_count(loss, outputs, y)
        seen += len(y)
        step += 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
    if seen == 0:
        raise DataError("the training dataset is empty")
    logs = {"loss": total_loss / seen}
    if loss in ("cross_entropy", "binary_cross_entropy"):
        logs["accuracy"] = correct / seen
    return logs, step


def evaluate(trainer, dataset: "Dataset", batch_size: int, loss: str, classes: int | None, shape_input) -> dict:
    check_labels(dataset, loss, classes)
    total_loss = correct = seen = 0.0
    for x, y in dataset.batches(batch_size):
        batch_loss, outputs = trainer.eval_step(shape_input(x), y)
        total_loss += batch_loss
        correct += correct_count(loss, outputs, y)
        seen += len(y)
    if seen == 0:
        raise DataError("the evaluation dataset is empty")
    out = {"loss": total_loss / seen}
    if loss in ("cross_entropy", "binary_cross_entropy"):
        out["accuracy"] = correct / seen
    return out


def fit(model: "Model", trainer, dataset: "Dataset", *, loss: str, optimizer, epochs: int, batch_size: int,
        validation: "Dataset | None", seed: int | None, callbacks: list[Callback], progress: bool | None,
        history: History, start_epoch: int, start_step: int) -> History:
    """Train epochs ``start_epoch + 1`` to ``epochs`` (numbers count every epoch the model has
    trained), stepping on from ``start_step``.

    The learning-rate schedule is a function of the step count, whose horizon (``total_steps``
    of a cosine schedule, unless the Optimizer fixes it) is the step at which this call ends:
    an uninterrupted run and a resumed one see the same rates, and a continued call goes on from
    the step reached (no second warmup), decaying to its own end.
    """
    steps_per_epoch = max(1, math.ceil(len(dataset) / batch_size))
    total_steps = start_step + steps_per_epoch * (epochs - start_epoch)
    classes = model.classes
    check_labels(dataset, loss, classes)
    if validation is not None:
        check_labels(validation, loss, classes)
    shuffle = dataset.mode == "train"
    step = start_step
    for callback in callbacks:
        callback.on_train_begin(model)
    for epoch in range(start_epoch + 1, epochs + 1):
        started = time.perf_counter()
        trainer.reseed(_epoch_seed(seed, epoch))
        bar = _progress(steps_per_epoch, epoch, epochs, progress)
        try:
            batches = dataset.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch)
            logs, step = run_epoch(trainer, batches, step, lambda s: optimizer.lr_at(s, total_steps), bar, loss,
                                   model.shape_input)
        finally:
            if bar is not None:
                bar.close()
        logs = {"epoch": epoch, **logs}
        if validation is not None:
            logs.update({f"val_{k}": v for k, v in
                         evaluate(trainer, validation, max(batch_size, 256), loss, classes, model.shape_input).items()})
        logs["lr"] = optimizer.lr_at(max(step - 1, 0), total_steps)
        logs["seconds"] = time.perf_counter() - started
        history.append(logs)
        model._after_epoch(epoch, step)
        stop = False
        for callback in callbacks:
            stop = callback.on_epoch_end(model, logs) or stop
        if stop:
            break
    for callback in callbacks:
        callback.on_train_end(model)
    return history


def _epoch_seed(seed: int | None, epoch: int) -> int | None:
    """Each epoch reseeds the framework (dropout) so a resumed run repeats the same randomness."""
    return None if seed is None else (seed * 1_000_003 + epoch) % (2**31 - 1)
