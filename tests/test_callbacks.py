"""llmasos.callbacks: Keras' hooks in order, the loggers read back with their own readers
(TensorBoard's EventAccumulator, MLflow's client on a local store, csv), ModelCheckpoint's best
file, learning-rate callbacks changing the rate the loop really uses, TerminateOnNaN, and monitors
that are never logged."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.datasets import load_iris

from llmasos import Model, Optimizer
from llmasos.callbacks import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler, MLflowLogger,
                               ModelCheckpoint, ReduceLROnPlateau, TensorBoard, TerminateOnNaN)
from llmasos.errors import TrainingError

from .conftest import framework_params


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(x))
    return x[order].astype(np.float32), y[order].astype(np.int64)


def _mlp(framework="torch"):
    model = Model(input_dim=4, output_dim=3, framework=framework)
    return model.add_layer("Dense", 8, activation="relu").add_layer("Dense", 3, activation="softmax").build(0)


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, model):
        self.calls.append("train_begin")

    def on_epoch_begin(self, model, epoch):
        self.calls.append(f"epoch_begin {epoch}")

    def on_train_batch_begin(self, model, batch):
        self.calls.append(f"batch_begin {batch}")

    def on_train_batch_end(self, model, batch, logs):
        self.calls.append(f"batch_end {batch} {logs['size']}")
        return False

    def on_test_begin(self, model):
        self.calls.append("test_begin")

    def on_test_end(self, model, logs):
        self.calls.append(f"test_end {sorted(logs)}")

    def on_epoch_end(self, model, logs):
        self.calls.append(f"epoch_end {logs['epoch']}")
        return False

    def on_train_end(self, model):
        self.calls.append("train_end")


@pytest.mark.parametrize("framework", framework_params())
def test_hooks_run_in_keras_order(framework, iris):
    x, y = iris
    recorder = Recorder()
    model = _mlp(framework)
    model.train(x[:100], y[:100], epochs=2, batch_size=64, validation=(x[100:], y[100:]), metrics=["f1"],
                callbacks=[recorder])
    epoch = ["batch_begin 0", "batch_end 0 64", "batch_begin 1", "batch_end 1 36", "test_begin",
             "test_end ['f1', 'loss']"]
    assert recorder.calls == ["train_begin", "epoch_begin 1", *epoch, "epoch_end 1", "epoch_begin 2", *epoch,
                              "epoch_end 2", "train_end"]
    recorder.calls = []
    model.evaluate(x, y, callbacks=[recorder])
    assert recorder.calls == ["test_begin", "test_end ['accuracy', 'loss']"]


@pytest.mark.parametrize("framework", framework_params())
def test_tensorboard_event_files_read_back(framework, iris, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = iris
    history = _mlp(framework).train(x, y, epochs=3, batch_size=32, validation_split=0.2, metrics=["accuracy", "auc"],
                                    callbacks=[TensorBoard(tmp_path / "runs", update_freq="batch")])
    train = EventAccumulator(str(tmp_path / "runs" / "train")).Reload()
    validation = EventAccumulator(str(tmp_path / "runs" / "validation")).Reload()
    assert {"epoch_loss", "epoch_accuracy", "epoch_auc", "epoch_learning_rate", "batch_loss"} <= set(
        train.Tags()["scalars"])
    for key in ("loss", "accuracy", "auc"):
        events = train.Scalars(f"epoch_{key}")
        assert [e.step for e in events] == [1, 2, 3]
        np.testing.assert_allclose([e.value for e in events], history[key], rtol=1e-6)
        np.testing.assert_allclose([e.value for e in validation.Scalars(f"epoch_{key}")], history[f"val_{key}"],
                                   rtol=1e-6)
    assert len(train.Scalars("batch_loss")) == 3 * 4        # 120 training rows in batches of 32


def test_csv_logger_writes_one_row_per_epoch(iris, tmp_path):
    x, y = iris
    path = tmp_path / "log.csv"
    history = _mlp().train(x, y, epochs=2, metrics=["accuracy", "f1"], validation_split=0.2,
                           callbacks=[CSVLogger(path)])
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "lr", "seconds"]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    np.testing.assert_allclose([float(r["val_f1"]) for r in rows], history["val_f1"], rtol=1e-12)


def test_mlflow_logger_local_store_reads_back(iris, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3.x keeps the file store behind this switch

    x, y = iris
    uri = (tmp_path / "mlruns").as_uri()
    logger = MLflowLogger(tracking_uri=uri, experiment="iris", run_name="mlp")
    history = _mlp().train(x, y, epochs=2, batch_size=16, metrics=["accuracy", "f1"],
                           optimizer=Optimizer("Adam", lr=0.01), callbacks=[logger])
    client = MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "mlp"
    assert run.data.params["batch_size"] == "16" and run.data.params["optimizer_lr"] == "0.01"
    for key in ("loss", "accuracy", "f1", "lr"):
        points = client.get_metric_history(logger.run_id, key)
        assert [p.step for p in points] == [1, 2]
        np.testing.assert_allclose([p.value for p in points], history[key], rtol=1e-9)


def test_model_checkpoint_keeps_the_best_by_a_metric(iris, tmp_path):
    x, y = iris
    checkpoint = ModelCheckpoint(tmp_path / "best-{epoch}.h5", monitor="val_f1", save_best_only=True)
    model = _mlp()
    history = model.train(x, y, epochs=6, batch_size=16, validation_split=0.3, metrics=["f1"], seed=0,
                          optimizer=Optimizer("SGD", lr=0.05), callbacks=[checkpoint])
    scores = history["val_f1"]
    improved = [e for e, s in enumerate(scores, 1) if s > max(scores[:e - 1], default=-1.0)]
    assert checkpoint.saved == [str(tmp_path / f"best-{e}.h5") for e in improved]
    best = Model.load(checkpoint.saved[-1])
    assert best.evaluate(x[105:], y[105:], metrics=["f1"])["f1"] == pytest.approx(max(scores), abs=1e-12)
    every = ModelCheckpoint(tmp_path / "every.h5")
    model.train(x, y, epochs=1, callbacks=[every])
    assert every.saved == [str(tmp_path / "every.h5")]


@pytest.mark.parametrize("framework", framework_params())
def test_reduce_lr_on_plateau_changes_the_rate_the_steps_use(framework, iris):
    x, y = iris
    a = _mlp(framework)
    b = _mlp(framework)
    b.set_weights(a.get_weights())
    # min_delta so large that nothing after epoch 1 improves: patience 1 halves the rate after epoch 2
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e9)
    history = a.train(x, y, epochs=3, batch_size=32, seed=0, optimizer=Optimizer("SGD", lr=0.1), callbacks=[plateau])
    assert history["lr"] == [0.1, 0.1, 0.05]
    # the same run by hand: two epochs at 0.1, one at 0.05 (plain SGD has no state to lose)
    b.train(x, y, epochs=2, batch_size=32, seed=0, optimizer=Optimizer("SGD", lr=0.1))
    b.train(x, y, epochs=1, batch_size=32, seed=0, optimizer=Optimizer("SGD", lr=0.05))
    for layer, weights in a.get_weights().items():
        for name, value in weights.items():
            np.testing.assert_allclose(value, b.get_weights()[layer][name], atol=1e-6)


def test_learning_rate_scheduler_sets_each_epoch_rate(iris):
    x, y = iris
    seen = []
    scheduler = LearningRateScheduler(lambda epoch, lr: seen.append((epoch, lr)) or 0.2 * 0.5 ** epoch)
    history = _mlp().train(x, y, epochs=3, optimizer=Optimizer("SGD", lr=0.1), callbacks=[scheduler])
    assert history["lr"] == pytest.approx([0.2, 0.1, 0.05])
    assert seen == [(0, pytest.approx(0.1)), (1, pytest.approx(0.2)), (2, pytest.approx(0.1))]


def test_nan_loss_raises_unless_terminate_on_nan(iris):
    x, y = iris
    model = Model(input_dim=4, output_dim=1, framework="torch").add_layer("Dense", 1)
    target = y.astype(np.float32) * 1e18
    with pytest.raises(TrainingError, match="the loss became inf"):
        model.train(x, target, epochs=2, optimizer=Optimizer("SGD", lr=1.0))
    model = Model(input_dim=4, output_dim=1, framework="torch").add_layer("Dense", 1)
    with pytest.warns(RuntimeWarning, match="TerminateOnNaN: the loss became"):
        history = model.train(x, target, epochs=3, optimizer=Optimizer("SGD", lr=1.0), callbacks=[TerminateOnNaN()])
    assert history["epoch"] == [1] and not np.isfinite(history["loss"][0])


def test_monitor_never_logged_is_a_clear_error(iris):
    x, y = iris
    model = _mlp()
    for callback in (EarlyStopping(monitor="val_f1"), ModelCheckpoint("x.h5", monitor="val_loss", save_best_only=True),
                     ReduceLROnPlateau(monitor="val_accuracy")):
        with pytest.raises(TrainingError, match=r"monitors 'val_\w+', which this run never logs \(no validation\); it "
                                                r"logs epoch, loss, accuracy, f1, lr, seconds"):
            model.train(x, y, epochs=1, metrics=["accuracy", "f1"], callbacks=[callback])
    assert len(model.history) == 0           # refused before any epoch
    with pytest.raises(TrainingError, match=r"monitors 'auc', which the run does not log; it logs epoch, loss, "
                                            r"accuracy, lr, seconds"):
        model.train(x, y, epochs=1, callbacks=[EarlyStopping(monitor="auc")])


def test_auto_mode_maximises_scores_and_minimises_losses():
    from llmasos.callbacks import Run

    for monitor, upwards in (("val_f1", True), ("auc", True), ("val_top5", True), ("val_loss", False),
                             ("rmse", False), ("val_perplexity", False)):
        stopper = EarlyStopping(monitor=monitor)
        stopper.set_run(Run(log_keys=["epoch", monitor.removeprefix("val_"), monitor]))
        stopper.on_train_begin(None)
        assert stopper.sign == (-1.0 if upwards else 1.0), monitor


def test_progress_bar_shows_the_metrics(iris, capsys):
    x, y = iris
    _mlp().train(x, y, epochs=1, validation_split=0.2, metrics=["f1", "auc"], progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "f1=" in err and "val_auc=" in err
