"""No silently wrong answers: datasets are read in file order outside training, layouts other
than the spec's are refused (not reshaped), a second train() trains, EarlyStopping means what
Keras' means."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmasos import Dataset, Model, Optimizer
from llmasos.errors import DataError
from llmasos.export.feeds import GraphInput
from llmasos.export.quantization import DatasetReader
from llmasos.callbacks import Callback, EarlyStopping

from .conftest import framework_params

CHANNELS_LAST = r"channels-last .*x\.transpose\(0, 3, 1, 2\)"


def mlp(framework: str, hidden: int = 32) -> Model:
    model = Model(input_dim=64, output_dim=10, framework=framework)
    return model.add_layer("Dense", hidden, activation="relu").add_layer("Dense", 10, activation="softmax")


def image_model(framework: str) -> Model:
    model = Model(input_shape=(3, 32, 32), output_dim=10, framework=framework)
    model.add_layer("Conv2D", 4, kernel_size=3, stride=4, activation="relu")
    return model.add_layer("Flatten").add_layer("Dense", 10, activation="softmax")


def _same_weights(a, b) -> bool:
    return all(np.array_equal(a[layer][name], b[layer][name]) for layer in a for name in a[layer])


def digits_csv(path, x, y):
    frame = pd.DataFrame(x, columns=[f"p{i}" for i in range(x.shape[1])])
    frame["label"] = y
    frame.to_csv(path, index=False)
    return path


# -- 1. every reader but train() reads in file order ---------------------------------------------


@pytest.mark.parametrize("framework", framework_params())
def test_predict_and_evaluate_read_a_training_dataset_in_file_order(framework, digits, tmp_path):
    x, y = digits[2], digits[3]
    model = mlp(framework)
    model.train(Dataset(digits[0][:256], digits[1][:256]), epochs=1, seed=0, progress=False)
    expected = model.predict(x, batch_size=64)
    csv = digits_csv(tmp_path / "test.csv", x, y)
    sources = {"in memory": Dataset(x, y, mode="train"),
               "streamed csv": Dataset(csv, mode="train", chunk_size=50)}
    reference = model.evaluate(Dataset(x, y, mode="test"))
    for name, ds in sources.items():
        np.testing.assert_array_equal(model.predict(ds, batch_size=64), expected, err_msg=name)
        assert model.evaluate(ds) == reference, name


def test_calibration_reads_in_file_order(digits):
    x = digits[2]
    reader = DatasetReader(Dataset(x, mode="train"), [GraphInput("input", np.dtype("float32"), ("batch", 64))],
                           rows=len(x))
    fed = []
    while (batch := reader.get_next()) is not None:
        fed.append(batch["input"])
    np.testing.assert_array_equal(np.concatenate(fed), x)


@pytest.mark.parametrize("framework", framework_params())
def test_train_shuffles_a_training_dataset_and_reads_a_test_one_in_order(framework, digits):
    """One epoch of SGD on a mode="train" dataset ends where one on the same rows, put in the
    order batches(shuffle=True, seed, epoch=1) gives and read in file order (mode="test"), ends."""
    x, y = digits[0][:96], digits[1][:96]
    order = np.concatenate([rows for rows, _ in Dataset(np.arange(96)[:, None], y).batches(
        96, shuffle=True, seed=3, epoch=1)])[:, 0].astype(int)
    assert order.tolist() != list(range(96))

    def weights_after(ds):
        model = mlp(framework, hidden=8).build(seed=0)
        model.train(ds, Optimizer("SGD", lr=0.1), epochs=1, batch_size=16, seed=3, progress=False)
        return model.get_weights()

    shuffled = weights_after(Dataset(x, y, mode="train"))
    assert _same_weights(shuffled, weights_after(Dataset(x[order], y[order], mode="test")))
    assert not _same_weights(shuffled, weights_after(Dataset(x, y, mode="test")))


# -- 2. layouts: only flat rows are reshaped -------------------------------------------------------


@pytest.mark.parametrize("framework", framework_params())
def test_channels_last_images_are_refused_with_the_transpose(framework):
    rng = np.random.default_rng(0)
    nchw = rng.random((6, 3, 32, 32), dtype=np.float32)
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
    labels = np.arange(6) % 10
    model = image_model(framework)
    with pytest.raises(DataError, match=r"input 'input' expects shape \(batch, 3, 32, 32\) \(channels first: batch, "
                                        r"channels, height, width\), got \(6, 32, 32, 3\), which is " + CHANNELS_LAST):
        model.predict(nhwc)
    with pytest.raises(DataError, match=CHANNELS_LAST):
        model.train(Dataset(nhwc, labels), epochs=1, progress=False)
    with pytest.raises(DataError, match=r"arrays: shape=\(3, 32, 32\) expects .*got \(6, 32, 32, 3\), which is "
                                        + CHANNELS_LAST):
        Dataset(nhwc, labels, shape=(3, 32, 32))
    # The transpose the message gives is the right one; flat rows are still reshaped.
    expected = model.predict(nhwc.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(model.predict(nchw.reshape(6, -1)), expected)
    flat = Dataset(nchw.reshape(6, 3072), labels, shape=(3, 32, 32), mode="test")
    np.testing.assert_array_equal(flat.arrays()[0], nchw)
    np.testing.assert_array_equal(model.predict(flat), expected)


@pytest.mark.parametrize("shape", [(5, 32, 3, 32), (5, 1, 3072), (5, 3, 1024)])
def test_other_shapes_of_the_right_size_are_refused_naming_the_layout(shape):
    model = image_model(None)         # refused before any framework runs
    values = np.zeros(shape, np.float32)
    message = (r"expects shape \(batch, 3, 32, 32\) \(channels first: batch, channels, height, width\), got "
               + rf"\({', '.join(map(str, shape))}\); only flat rows \(batch, 3072\) are reshaped to it$")
    with pytest.raises(DataError, match=message):
        model.predict(values)
    with pytest.raises(DataError, match=message):
        Dataset(values, np.zeros(5, np.int64), shape=(3, 32, 32))


# -- 3. a second train() trains ---------------------------------------------------------------------


@pytest.mark.parametrize("framework", framework_params())
def test_a_second_train_call_trains_more_epochs(framework, digits):
    """3 + 3 epochs continue one run: epoch numbers 4..6, the optimizer's state and step count
    kept, so (constant learning rate, fixed seed) the weights equal those of one 6-epoch run."""
    ds = Dataset(digits[0][:300], digits[1][:300])
    model, whole = mlp(framework).build(seed=0), mlp(framework).build(seed=0)
    model.train(ds, Optimizer("Adam", lr=0.01), epochs=3, batch_size=64, seed=1, progress=False)
    after_first = model.get_weights()
    history = model.train(ds, Optimizer("Adam", lr=0.01), epochs=3, batch_size=64, seed=1, progress=False)
    assert len(history) == 6 and history["epoch"] == [1, 2, 3, 4, 5, 6]
    assert model.history is history
    assert not np.array_equal(model.get_weights()["dense"]["kernel"], after_first["dense"]["kernel"])
    whole.train(ds, Optimizer("Adam", lr=0.01), epochs=6, batch_size=64, seed=1, progress=False)
    for layer, weights in whole.get_weights().items():
        for name, value in weights.items():
            np.testing.assert_allclose(model.get_weights()[layer][name], value, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{layer}/{name}")
    # Without an optimizer the one in use goes on; the schedule's horizon is this call's last step.
    cosine = Optimizer("SGD", lr=0.1, schedule="cosine")
    model.train(ds, cosine, epochs=1, batch_size=64, seed=1, progress=False)
    history = model.train(ds, epochs=2, batch_size=64, seed=1, progress=False)
    steps = int(np.ceil(300 / 64))
    assert history["epoch"][-3:] == [7, 8, 9]
    assert history["lr"][-2] == pytest.approx(cosine.lr_at(2 * steps - 1, 3 * steps))
    assert history["lr"][-1] == pytest.approx(cosine.lr_at(3 * steps - 1, 3 * steps))


# -- EarlyStopping as Keras 3 ------------------------------------------------------------------------


class Scripted(Callback):
    """Puts ``values[i]`` in the logs as ``"score"`` at the i-th epoch of each train() call, and
    keeps every epoch's weights (EarlyStopping, after it, monitors the score)."""

    def __init__(self, values):
        self.values, self.weights = values, {}

    def on_train_begin(self, model):
        self.index = 0

    def on_epoch_end(self, model, logs):
        logs["score"] = self.values[self.index]
        self.index += 1
        self.weights[logs["epoch"]] = model.get_weights()
        return False


@pytest.mark.parametrize("framework", framework_params())
def test_early_stopping_follows_keras(framework, digits):
    """Scores 1.0, 0.8, 0.75, 0.85, 0.5 with patience=2, min_delta=0.1 (Keras' rule: an
    improvement is a score below best - min_delta; stop when `wait` epochs without one reach
    patience): epoch 2 improves (0.8 < 0.9), 3 (0.75 > 0.7) and 4 do not -> wait 2 -> stop after
    epoch 4; the weights of epoch 2 come back."""
    ds = Dataset(digits[0][:128], digits[1][:128])
    model = mlp(framework, hidden=8)
    script = Scripted([1.0, 0.8, 0.75, 0.85, 0.5, 0.45])
    stopper = EarlyStopping(patience=2, monitor="score", min_delta=0.1, restore_best_weights=True)
    history = model.train(ds, Optimizer("SGD", lr=0.1), epochs=6, batch_size=32, seed=0, progress=False,
                          callbacks=[script, stopper])
    assert history["epoch"] == [1, 2, 3, 4]
    assert stopper.stopped_epoch == 4 and stopper.best_epoch == 2
    assert _same_weights(model.get_weights(), script.weights[2])

    # Not stopped early: the best epoch's weights still come back at the end (Keras 3).
    script = Scripted([1.0, 0.5, 0.9, 0.95])
    stopper = EarlyStopping(patience=10, monitor="score", restore_best=True)
    history = model.train(ds, epochs=4, batch_size=32, seed=0, progress=False, callbacks=[script, stopper])
    assert history["epoch"][-4:] == [5, 6, 7, 8] and stopper.stopped_epoch is None
    assert _same_weights(model.get_weights(), script.weights[6])
    assert not _same_weights(model.get_weights(), script.weights[8])

    # The same instance in the next train() starts afresh: worse scores than the last call's
    # best do not stop it, and it stops by its own count (patience=1: the first epoch without
    # an improvement, here the third of this call).
    stopper.patience = 1
    script.values = [2.0, 1.9, 1.95, 1.0]
    history = model.train(ds, epochs=4, batch_size=32, seed=0, progress=False, callbacks=[script, stopper])
    assert history["epoch"][-3:] == [9, 10, 11]
    assert stopper.stopped_epoch == 11 and stopper.best_epoch == 10
    assert _same_weights(model.get_weights(), script.weights[10])
