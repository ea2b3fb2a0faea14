"""Callbacks of :meth:`Model.train`, with Keras' hook names, and the loggers built on them.

>>> from llmasos.callbacks import TensorBoard, CSVLogger, ModelCheckpoint, ReduceLROnPlateau
>>> # model.train(X, y, epochs=5, metrics=["accuracy", "f1"], validation_split=0.1,
>>> #             callbacks=[TensorBoard("runs/"), CSVLogger("log.csv"),
>>> #                        ModelCheckpoint("best.h5", monitor="val_f1", save_best_only=True),
>>> #                        ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2)])

Every hook takes the model being trained first (llmasos' convention since its first callback;
Keras keeps it as ``self.model``): ``on_train_begin(model)``, ``on_epoch_begin(model, epoch)``,
``on_train_batch_begin(model, batch)``, ``on_train_batch_end(model, batch, logs)``,
``on_epoch_end(model, logs)``, ``on_test_begin(model)``, ``on_test_end(model, logs)`` (test is
evaluation: the validation pass of each epoch, and :meth:`Model.evaluate`), ``on_train_end(model)``.
``on_epoch_end`` and ``on_train_batch_end`` return True to stop training (Keras'
``model.stop_training = True``). Epochs are numbered from 1 and go on across train() calls.

Before ``on_train_begin`` the loop hands each callback a :class:`Run` (:attr:`Callback.run`): the
keys the epochs will log, the parameters of the call, and the learning-rate multiplier that
:class:`ReduceLROnPlateau` and :class:`LearningRateScheduler` set.

A callback that monitors a key (``monitor="val_f1"``) that the run does not log raises a
:class:`~llmasos.errors.TrainingError` naming the keys it logs: before training for a ``val_``
key of a run without validation, else at the first epoch's end (an earlier callback may add keys
to the logs, as in Keras); ``mode="auto"`` maximises accuracy, top-k accuracy, precision, recall, F1 and AUC and
minimises the rest (loss, MAE, RMSE, perplexity).

A loss that becomes NaN or infinite raises a :class:`~llmasos.errors.TrainingError` (Keras would
go on silently); with :class:`TerminateOnNaN` in the callbacks training stops at that batch
instead, as Keras' does, keeping the weights and the history so far.
"""

from __future__ import annotations

import csv
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import TrainingError
from .metrics import higher_is_better


@dataclass
class Run:
    """What the loop shares with its callbacks during one train() call.

    ``log_keys``: the keys every epoch's logs will hold; ``params``: the call's settings (epochs,
    batch size, loss, optimizer...); ``lr``: the learning rate of the last step; ``lr_scale``:
    the factor the loop multiplies the optimizer's rate (and its schedule) by, from the next step.
    """

    log_keys: list[str]
    params: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    lr: float = math.nan
    lr_scale: float = 1.0
    base_lr: Callable[[], float] = lambda: math.nan

    def improves_upwards(self, key: str) -> bool:
        return higher_is_better(key, self.metrics)


class Callback:
    """Base class: override the hooks you need (see the module's docstring)."""

    run: Run | None = None

    def set_run(self, run: Run) -> None:
        self.run = run

    def on_train_begin(self, model: Any) -> None:
        """Before the first epoch of each train() call (reset per-run state here)."""

    def on_epoch_begin(self, model: Any, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based, counting every epoch the model has trained)."""

    def on_train_batch_begin(self, model: Any, batch: int) -> None:
        """Before training batch ``batch`` (0-based within the epoch)."""

    def on_train_batch_end(self, model: Any, batch: int, logs: dict) -> bool:
        """After a training batch; ``logs``: ``{"batch", "size", "loss"}`` (that batch's mean loss)."""
        return False

    def on_epoch_end(self, model: Any, logs: dict) -> bool:
        """After an epoch and its validation; ``logs``: epoch, loss, metrics, val_*, lr, seconds."""
        return False

    def on_test_begin(self, model: Any) -> None:
        """Before an evaluation pass (each epoch's validation, or evaluate())."""

    def on_test_end(self, model: Any, logs: dict) -> None:
        """After an evaluation pass, with its results (unprefixed: loss, accuracy, ...)."""

    def on_train_end(self, model: Any) -> None:
        """After the last epoch of each train() call, stopped early or not (not when it raises)."""


def overrides(callback: Callback, hook: str) -> bool:
    """Whether ``callback`` implements ``hook`` (the loop skips per-batch work nobody asked for)."""
    return getattr(type(callback), hook) is not getattr(Callback, hook)


class _Monitor(Callback):
    """A callback watching one logged key for improvements, Keras' way."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        if mode not in ("auto", "min", "max"):
            raise TrainingError(f"mode must be auto, min or max, got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.sign = -1.0 if mode == "max" else 1.0
        self.best = math.inf

    def on_train_begin(self, model):
        keys = self.run.log_keys if self.run is not None else []
        # a validation key without validation fails now; any other missing key at the first epoch's
        # end, since a callback before this one may add it to the logs (Keras allows that)
        if self.monitor.startswith("val_") and self.monitor[4:] in keys and self.monitor not in keys:
            raise TrainingError(f"{type(self).__name__} monitors {self.monitor!r}, which this run never logs (no "
                                f"validation); it logs {', '.join(keys)}; pass validation= or validation_split=")
        if self.mode == "auto":
            upwards = self.run.improves_upwards(self.monitor) if self.run is not None else "acc" in self.monitor
            self.sign = -1.0 if upwards else 1.0
        self.best = math.inf            # of sign * value: lower is better

    def _value(self, logs: dict) -> float:
        if self.monitor not in logs:
            raise TrainingError(f"{type(self).__name__} monitors {self.monitor!r}, which the run does not log; it "
                                f"logs {', '.join(logs)} (metrics= adds metrics, validation= their val_ keys)")
        return self.sign * logs[self.monitor]

    def _improved(self, value: float) -> bool:
        return value < self.best - self.min_delta


class EarlyStopping(_Monitor):
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
        super().__init__(monitor, mode, min_delta)
        if restore_best_weights is not None:
            restore_best = restore_best_weights
        self.patience, self.restore_best = patience, restore_best
        self.on_train_begin(None)

    def on_train_begin(self, model):
        super().on_train_begin(model)
        self.best_epoch: int | None = None
        self.best_weights = None
        self.wait = 0
        self.first_epoch: int | None = None
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, model, logs):
        epoch, value = logs["epoch"], self._value(logs)
        if self.first_epoch is None:
            self.first_epoch = epoch
            if self.restore_best:     # until something improves, the first weights are the best
                self.best_weights, self.best_epoch = model.get_weights(), epoch
        self.wait += 1
        if self._improved(value):
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

    def __init__(self, path: str | os.PathLike, every: int = 1) -> None:
        if every < 1:
            raise TrainingError(f"checkpoint every must be >= 1, got {every}")
        self.path, self.every = os.fspath(path), every

    def on_epoch_end(self, model, logs):
        if logs["epoch"] % self.every == 0:
            model.save(self.path.format(epoch=logs["epoch"]))
        return False


class ModelCheckpoint(_Monitor):
    """Save the model (``.h5``, with its optimizer state) after each epoch, as Keras' callback:
    with ``save_best_only=True`` only when ``monitor`` improved on the best so far (in this train()
    call). ``path`` may name logged values: ``"ckpt-{epoch:02d}-{val_loss:.3f}.h5"``.

    >>> ModelCheckpoint("best.h5", monitor="val_f1", save_best_only=True).monitor
    'val_f1'
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", min_delta: float = 0.0) -> None:
        super().__init__(monitor, mode, min_delta)
        self.path, self.save_best_only = os.fspath(path), save_best_only
        self.saved: list[str] = []

    def on_train_begin(self, model):
        if self.save_best_only:
            super().on_train_begin(model)
        self.saved = []

    def on_epoch_end(self, model, logs):
        if self.save_best_only:
            value = self._value(logs)
            if not self._improved(value):
                return False
            self.best = value
        path = self.path.format(**logs)
        model.save(path)
        self.saved.append(path)
        return False


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` once ``monitor`` has not improved for ``patience``
    epochs (by more than ``min_delta``), never below ``min_lr``; after a reduction, wait
    ``cooldown`` epochs before counting again (Keras' semantics and defaults). The new rate applies
    from the next epoch, and to a schedule's rates alike (the loop scales the optimizer's rate).

    >>> ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2).factor
    0.5
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, mode: str = "auto",
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        if not 0.0 < factor < 1.0:
            raise TrainingError(f"ReduceLROnPlateau needs 0 < factor < 1, got {factor}")
        if patience < 0 or cooldown < 0 or min_lr < 0:
            raise TrainingError(f"patience, cooldown and min_lr must be >= 0, got {patience}, {cooldown}, {min_lr}")
        super().__init__(monitor, mode, min_delta)
        self.factor, self.patience, self.cooldown, self.min_lr = factor, patience, cooldown, min_lr

    def on_train_begin(self, model):
        super().on_train_begin(model)
        self.wait = self.cooldown_left = 0

    def on_epoch_end(self, model, logs):
        value = self._value(logs)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = logs["lr"]
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.run.lr_scale *= new / old
                    self.cooldown_left, self.wait = self.cooldown, 0
        return False


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)``, where ``epoch``
    counts from 0 as in Keras and ``lr`` is the rate in use. Over an Optimizer with its own
    schedule the result scales that schedule (its rate at the epoch's first step becomes the value).

    >>> LearningRateScheduler(lambda epoch, lr: lr * 0.5).schedule(0, 0.1)
    0.05
    """

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        self.schedule = schedule

    def on_epoch_begin(self, model, epoch):
        current = self.run.base_lr() * self.run.lr_scale
        value = float(self.schedule(epoch - 1, current))
        if not (math.isfinite(value) and value >= 0):
            raise TrainingError(f"LearningRateScheduler's function returned {value!r} for epoch {epoch - 1}; it must "
                                f"return a learning rate >= 0")
        base = self.run.base_lr()
        self.run.lr_scale = value / base if base > 0 else 1.0


class TerminateOnNaN(Callback):
    """Stop training at the batch whose loss is NaN or infinite, instead of raising (the default)."""

    def on_train_batch_end(self, model, batch, logs):
        if math.isfinite(logs["loss"]):
            return False
        warnings.warn(f"TerminateOnNaN: the loss became {logs['loss']} at batch {batch}; training stopped",
                      RuntimeWarning, stacklevel=2)
        return True


def _scalars(logs: dict) -> dict[str, float]:
    """The numbers worth logging: everything but the epoch number and the wall time."""
    return {k: float(v) for k, v in logs.items() if k not in ("epoch", "seconds") and isinstance(v, (int, float))}


class CSVLogger(Callback):
    """One row per epoch in a CSV file (``epoch`` then the logged keys, in the run's order), written
    as each epoch ends. ``append=True`` continues an existing file (its header is kept)."""

    def __init__(self, path: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        self.path, self.separator, self.append = os.fspath(path), separator, append

    def on_train_begin(self, model):
        self.keys = None
        if self.append and os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="", encoding="utf-8") as handle:
                self.keys = next(csv.reader(handle, delimiter=self.separator))
        elif not self.append:
            open(self.path, "w", encoding="utf-8").close()

    def on_epoch_end(self, model, logs):
        if self.keys is None:
            self.keys = list(logs)
            header = True
        else:
            header = False
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.keys, delimiter=self.separator, extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerow(logs)
        return False


class TensorBoard(Callback):
    """Event files TensorBoard reads, as Keras writes them: ``<log_dir>/train`` holds
    ``epoch_<key>`` scalars (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate``...),
    ``<log_dir>/validation`` the ``val_*`` ones under the same tags, step = epoch. With
    ``update_freq="batch"`` the batch losses go in as ``batch_loss`` too.

    Written with the ``tensorboard`` package's own event writer, so neither torch nor TensorFlow
    is needed; ``pip install tensorboard`` (the ``llmasos[tensorboard]`` extra).
    """

    def __init__(self, log_dir: str | os.PathLike = "logs", update_freq: str = "epoch") -> None:
        if update_freq not in ("epoch", "batch"):
            raise TrainingError(f"update_freq must be 'epoch' or 'batch', got {update_freq!r}")
        self.log_dir, self.update_freq = os.fspath(log_dir), update_freq
        self._writers: dict[str, Any] = {}
        self._batches = 0

    def _writer(self, split: str):
        if split not in self._writers:
            try:
                from tensorboard.summary.writer.event_file_writer import EventFileWriter
            except ImportError:
                raise TrainingError('TensorBoard needs the tensorboard package: pip install "llmasos[tensorboard]"') \
                    from None
            self._writers[split] = EventFileWriter(os.path.join(self.log_dir, split))
        return self._writers[split]

    def _scalar(self, split: str, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
        self._writer(split).add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def on_train_begin(self, model):
        self._writer("train")   # fail before training when tensorboard is missing

    def on_train_batch_end(self, model, batch, logs):
        if self.update_freq == "batch":
            self._batches += 1
            self._scalar("train", "batch_loss", logs["loss"], self._batches)
        return False

    def on_epoch_end(self, model, logs):
        for key, value in _scalars(logs).items():
            if key.startswith("val_"):
                self._scalar("validation", f"epoch_{key[4:]}", value, logs["epoch"])
            else:
                self._scalar("train", "epoch_learning_rate" if key == "lr" else f"epoch_{key}", value, logs["epoch"])
        for writer in self._writers.values():
            writer.flush()
        return False

    def on_train_end(self, model):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class MLflowLogger(Callback):
    """Log each epoch's values (step = epoch) and the call's parameters to an MLflow run through
    MLflow's own client: ``tracking_uri`` (default: MLflow's, from ``MLFLOW_TRACKING_URI``),
    ``experiment`` (created when missing; default MLflow's default experiment), ``run_name``.
    The run ends with the train() call; :attr:`run_id` names it. Needs ``pip install mlflow``
    (or ``mlflow-skinny``; the ``llmasos[mlflow]`` extra)."""

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None,
                 run_name: str | None = None) -> None:
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.run_id: str | None = None
        self._client = None

    def on_train_begin(self, model):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise TrainingError('MLflowLogger needs MLflow: pip install "llmasos[mlflow]"') from None
        self._client = client = MlflowClient(self.tracking_uri)
        experiment_id = "0"
        if self.experiment is not None:
            found = client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found is not None else client.create_experiment(self.experiment)
        run = client.create_run(experiment_id, run_name=self.run_name)
        self.run_id = run.info.run_id
        params = self.run.params if self.run is not None else {}
        for key, value in params.items():
            client.log_param(self.run_id, key, value)

    def on_epoch_end(self, model, logs):
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        values = [Metric(key, value, stamp, logs["epoch"]) for key, value in _scalars(logs).items() if math.isfinite(value)]
        self._client.log_batch(self.run_id, metrics=values)
        return False

    def on_train_end(self, model):
        if self._client is not None and self.run_id is not None:
            self._client.set_terminated(self.run_id)
