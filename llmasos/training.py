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
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from .callbacks import Callback, Run, overrides
from .errors import DataError, TrainingError
from .feeding import Feed
from .losses import get as get_loss
from .losses import resolve_loss  # noqa: F401  (its home is llmasos.losses; imported from here before)
from .metrics import Metric, batches_for, make_metrics

if TYPE_CHECKING:
    from .data import Dataset


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
        """Save the curves of the loss and every metric (train and validation) as an image; returns the path."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        metrics = [k for k in self.history if not k.startswith("val_") and k not in ("lr", "seconds")]
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
    resolved = get_loss(loss)
    what = {"cross_entropy": "cross-entropy", "binary_cross_entropy": "binary cross-entropy"}.get(
        resolved.name, f"the {resolved.name} loss")
    if resolved.task == "classes":
        if not np.issubdtype(dataset.label_dtype, np.integer):
            raise DataError(f"{what} needs integer class labels, got {dataset.label_dtype} labels "
                            f"from {low} to {high}")
        if low < 0 or (classes is not None and high >= classes):
            bad = low if low < 0 else high
            raise DataError(f"label {bad} is outside the model's classes 0..{classes - 1} (output_dim={classes})")
    elif resolved.task == "binary" and (low < 0 or high > 1):
        raise DataError(f"{what} needs labels in [0, 1], got values from {low} to {high}")


def _step(step_fn, inputs, y, weights, *lr):
    """A train or eval step, passing ``weights`` only when there are some (unweighted runs call
    the steps exactly as before)."""
    if weights is None:
        return step_fn(inputs, y, *lr)
    return step_fn(inputs, y, *lr, weights=weights)


def _results(total_loss: float, seen: int, metrics: list[Metric]) -> dict:
    return {"loss": total_loss / seen, **{m.name: m.result() for m in metrics}}


def run_epoch(trainer, feed: Feed, batch_size: int, *, shuffle: bool, seed: int | None, epoch: int, step: int,
              lr_at: Callable[[int], float], progress, metrics: list[Metric], make_batch, prepare,
              callbacks: list[Callback], owner: Any) -> tuple[dict, int, bool]:
    """One epoch of train steps; returns its logs, the next step and whether a callback stopped it."""
    begin = [c for c in callbacks if overrides(c, "on_train_batch_begin")]
    end = [c for c in callbacks if overrides(c, "on_train_batch_end")]
    for metric in metrics:
        metric.reset()
    total_loss, seen, stop = 0.0, 0, False
    for index, (x, y, weights) in enumerate(feed.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch)):
        for callback in begin:
            callback.on_train_batch_begin(owner, index)
        lr = lr_at(step)
        batch_loss, outputs = _step(trainer.train_step, prepare(x), y, weights, lr)
        total_loss += batch_loss
        seen += len(y)
        step += trainer.pending == 0     # an optimizer step was made (every accumulate-th micro-batch)
        if metrics:
            batch = make_batch(outputs, y)
            for metric in metrics:
                metric.update(batch)
        if end:
            logs = {"batch": index, "size": len(y), "loss": batch_loss / len(y)}
            for callback in end:
                stop = bool(callback.on_train_batch_end(owner, index, logs)) or stop
        if stop:
            break
        if not math.isfinite(batch_loss):
            raise TrainingError(f"the loss became {batch_loss} at step {step - 1}; lower the learning rate "
                                f"(it was {lr:g}) or check the data for extreme values (TerminateOnNaN stops instead)")
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
    if seen == 0:
        raise DataError("the training dataset is empty")
    step += trainer.flush()              # the epoch's last, incomplete group of micro-batches
    return _results(total_loss, seen, metrics), step, stop


def evaluate(trainer, feed: "Feed | Dataset", batch_size: int, *, loss: str, classes: int | None, prepare,
             metrics: list[Metric], callbacks: Iterable[Callback] = (), owner: Any = None) -> dict:
    """``{"loss": ..., <metric>: ...}`` over ``feed`` in order, in inference mode (the test hooks
    run around it)."""
    feed = feed if isinstance(feed, Feed) else Feed(feed)
    check_labels(feed.dataset, loss, classes)
    callbacks = list(callbacks)
    for callback in callbacks:
        callback.on_test_begin(owner)
    make_batch = batches_for(loss)
    for metric in metrics:
        metric.reset()
    total_loss, seen = 0.0, 0
    for x, y, weights in feed.batches(batch_size):
        batch_loss, outputs = _step(trainer.eval_step, prepare(x), y, weights)
        total_loss += batch_loss
        seen += len(y)
        if metrics:
            batch = make_batch(outputs, y)
            for metric in metrics:
                metric.update(batch)
    if seen == 0:
        raise DataError("the evaluation dataset is empty")
    results = _results(total_loss, seen, metrics)
    for callback in callbacks:
        callback.on_test_end(owner, results)
    return results


def fit(trainer, feed: Feed, *, owner: Any, prepare, classes: int | None, loss: str, optimizer, epochs: int,
        batch_size: int, validation: Feed | None, seed: int | None, metrics: Sequence | None,
        callbacks: list[Callback], progress: bool | None, history: History, start_epoch: int, start_step: int,
        after_epoch: Callable[[int, int], None], params: dict | None = None) -> History:
    """Train epochs ``start_epoch + 1`` to ``epochs`` (numbers count every epoch the model has
    trained), stepping on from ``start_step``.

    The loop is given what it needs and reaches into nothing: ``prepare`` turns a batch's inputs
    into the model's (``Model.shape_input``), ``classes`` checks labels, ``after_epoch(epoch,
    step)`` records progress, and ``owner`` (the model) is only handed to the callbacks.

    The learning-rate schedule is a function of the step count, whose horizon (``total_steps``
    of a cosine schedule, unless the Optimizer fixes it) is the step at which this call ends:
    an uninterrupted run and a resumed one see the same rates, and a continued call goes on from
    the step reached (no second warmup), decaying to its own end. Callbacks may scale it
    (:class:`~llmasos.callbacks.ReduceLROnPlateau`): the loop multiplies by ``run.lr_scale``.
    """
    steps_per_epoch = max(1, math.ceil(len(feed) / batch_size))
    # the schedule counts optimizer steps: one per `accumulate` micro-batches, and one for a last partial group
    total_steps = start_step + math.ceil(steps_per_epoch / trainer.accumulate) * (epochs - start_epoch)
    check_labels(feed.dataset, loss, classes)
    if validation is not None:
        check_labels(validation.dataset, loss, classes)
    train_metrics = make_metrics(metrics, loss)
    val_metrics = make_metrics(metrics, loss) if validation is not None else []
    names = ["loss", *(m.name for m in train_metrics)]
    shuffle = feed.mode == "train"
    step = start_step
    run = Run(log_keys=["epoch", *names, *(f"val_{n}" for n in names if validation is not None), "lr", "seconds"],
              params={"epochs": epochs, "batch_size": batch_size, "loss": loss, "seed": seed,
                      **{f"optimizer_{k}": v for k, v in optimizer.get_config().items()}, **(params or {})},
              metrics=train_metrics, base_lr=lambda: optimizer.lr_at(step, total_steps))
    for callback in callbacks:
        callback.set_run(run)
    for callback in callbacks:
        callback.on_train_begin(owner)
    for epoch in range(start_epoch + 1, epochs + 1):
        for callback in callbacks:
            callback.on_epoch_begin(owner, epoch)
        started = time.perf_counter()
        trainer.reseed(_epoch_seed(seed, epoch))
        bar = _progress(steps_per_epoch, epoch, epochs, progress)
        try:
            logs, step, stop = run_epoch(trainer, feed, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, step=step,
                                         lr_at=lambda s: optimizer.lr_at(s, total_steps) * run.lr_scale,
                                         progress=bar, metrics=train_metrics, make_batch=batches_for(loss),
                                         prepare=prepare,
                                         callbacks=callbacks, owner=owner)
            logs = {"epoch": epoch, **logs}
            if validation is not None:
                results = evaluate(trainer, validation, max(batch_size, 256), loss=loss, classes=classes,
                                   prepare=prepare, metrics=val_metrics, callbacks=callbacks, owner=owner)
                logs.update({f"val_{k}": v for k, v in results.items()})
            if bar is not None:
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "epoch"}, refresh=True)
        finally:
            if bar is not None:
                bar.close()
        run.lr = logs["lr"] = optimizer.lr_at(max(step - 1, 0), total_steps) * run.lr_scale
        logs["seconds"] = time.perf_counter() - started
        history.append(logs)
        after_epoch(epoch, step)
        for callback in callbacks:
            stop = bool(callback.on_epoch_end(owner, logs)) or stop
        if stop:
            break
    for callback in callbacks:
        callback.on_train_end(owner)
    return history


def _epoch_seed(seed: int | None, epoch: int) -> int | None:
    """Each epoch reseeds the framework (dropout) so a resumed run repeats the same randomness."""
    return None if seed is None else (seed * 1_000_003 + epoch) % (2**31 - 1)
