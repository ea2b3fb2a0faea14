"""Model end to end in each framework: the seed example, a CNN, losses, callbacks, resume, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer
from llmasos.errors import DataError, SpecError, TrainingError
from llmasos.callbacks import EarlyStopping

from .conftest import framework_params


def seed_mlp(framework: str) -> Model:
    model = Model(input_dim=64, output_dim=10, framework=framework)
    model.add_layer("Dense", 128, activation="relu")
    model.add_layer("Dense", 10, activation="softmax")
    return model


@pytest.mark.parametrize("framework", framework_params())
def test_seed_example_learns_digits(framework, digits, tmp_path):
    x_train, y_train, x_test, y_test = digits
    model = seed_mlp(framework)
    history = model.train(Dataset(x_train, y_train, mode="train"), Optimizer("Adam", lr=0.001), epochs=10,
                          batch_size=32, validation=Dataset(x_test, y_test, mode="test"), seed=0)
    result = model.evaluate(Dataset(x_test, y_test, mode="test"))
    assert result["accuracy"] >= 0.95, result
    assert len(history) == 10 and history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] == pytest.approx(result["accuracy"])
    probabilities = model.predict(x_test)
    assert probabilities.shape == (len(x_test), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert history.plot(str(tmp_path / "curves.png")) and (tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("framework", framework_params())
def test_small_cnn_learns_digit_images(framework, digits):
    x_train, y_train, x_test, y_test = digits
    images = lambda x: x.reshape(-1, 1, 8, 8)  # noqa: E731 - NCHW at the boundary
    model = Model(input_shape=(1, 8, 8), output_dim=10, framework=framework)
    model.add_layer("Conv2D", 16, kernel_size=3, padding="same", activation="relu")
    model.add_layer("BatchNorm")
    model.add_layer("Conv2D", 32, kernel_size=3, stride=2, padding="same", activation="relu")
    model.add_layer("MaxPool2D", 2)
    model.add_layer("Flatten")
    model.add_layer("Dense", 10, activation="softmax")
    model.train(Dataset(images(x_train), y_train, mode="train"), Optimizer("Adam", lr=0.003), epochs=8, seed=0)
    assert model.evaluate(Dataset(images(x_test), y_test, mode="test"))["accuracy"] >= 0.95


@pytest.mark.parametrize("framework", framework_params())
def test_softmax_is_applied_once(framework, digits):
    """evaluate()'s loss must equal cross-entropy of predict()'s probabilities; a second softmax
    (or none) during training would make them differ."""
    x_train, y_train, x_test, y_test = digits
    model = seed_mlp(framework)
    model.train(Dataset(x_train, y_train), Optimizer("Adam", lr=0.01), epochs=2, seed=1)
    probabilities = model.predict(x_test).astype(np.float64)
    expected = -np.mean(np.log(probabilities[np.arange(len(y_test)), y_test]))
    assert model.evaluate(Dataset(x_test, y_test, mode="test"))["loss"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("framework", framework_params())
def test_sigmoid_output_trains_with_binary_cross_entropy(framework, digits):
    x_train, y_train, x_test, y_test = digits
    pick = lambda x, y: (x[y < 2], (y[y < 2]).astype(np.float32))  # noqa: E731
    (xa, ya), (xb, yb) = pick(x_train, y_train), pick(x_test, y_test)
    model = Model(input_dim=64, output_dim=1, framework=framework).add_layer("Dense", 1, activation="sigmoid")
    model.train(Dataset(xa, ya), Optimizer("SGD", lr=0.5), epochs=5, seed=0)
    p = model.predict(xb)[:, 0].astype(np.float64)
    expected = -np.mean(yb * np.log(p) + (1 - yb) * np.log(1 - p))
    result = model.evaluate(Dataset(xb, yb, mode="test"))
    assert result["loss"] == pytest.approx(expected, rel=1e-4)
    assert result["accuracy"] >= 0.98


@pytest.mark.parametrize("framework", framework_params())
def test_regression_uses_mse(framework):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], dtype=np.float32) + 0.3)[:, None]
    model = Model(input_dim=3, output_dim=1, framework=framework).add_layer("Dense", 1)
    model.train(Dataset(x, y), Optimizer("SGD", lr=0.1), epochs=20, batch_size=16, seed=0)
    result = model.evaluate(Dataset(x, y, mode="test"))
    assert set(result) == {"loss"} and result["loss"] < 1e-3


@pytest.mark.parametrize("framework", framework_params())
def test_schedule_and_early_stopping(framework, digits):
    x_train, y_train, x_test, y_test = digits
    model = seed_mlp(framework)
    optimizer = Optimizer("SGD", lr=0.1, momentum=0.9, schedule="cosine", warmup_steps=5)
    stopper = EarlyStopping(patience=0, monitor="val_loss", min_delta=10.0)  # nothing improves by 10
    history = model.train(Dataset(x_train, y_train), optimizer, epochs=6, batch_size=64,
                          validation=Dataset(x_test, y_test, mode="test"), seed=0, callbacks=[stopper])
    assert len(history) == 2 and stopper.stopped_epoch == 2
    steps = int(np.ceil(len(x_train) / 64))
    assert history["lr"][0] == pytest.approx(optimizer.lr_at(steps - 1, steps * 6))
    assert history["lr"][1] < history["lr"][0]


@pytest.mark.torch
def test_killed_run_resumes_to_the_same_weights(tmp_path, digits):
    """A run killed after epoch 2 and resumed from its checkpoint ends where an uninterrupted one
    ends (torch, fixed seed, with dropout so the random stream matters too)."""
    x_train, y_train = digits[0][:600], digits[1][:600]
    np.savez(tmp_path / "data.npz", x=x_train, y=y_train)
    script = textwrap.dedent(f"""
        import os, sys, numpy as np
        from llmasos import Model, Dataset, Optimizer
        from llmasos.callbacks import Callback, Checkpoint
        data = np.load({str(tmp_path / 'data.npz')!r})
        ds = Dataset(data["x"], data["y"], mode="train")
        def fresh():
            m = Model(input_dim=64, output_dim=10, framework="torch")
            m.add_layer("Dense", 32, activation="relu").add_layer("Dropout", 0.3).add_layer("Dense", 10, activation="softmax")
            return m
        class Kill(Callback):
            def on_epoch_end(self, model, logs):
                if logs["epoch"] == 2:
                    os._exit(17)
        opt = Optimizer("Adam", lr=0.01, schedule="cosine")
        if sys.argv[1] == "full":
            m = fresh(); m.train(ds, opt, epochs=4, batch_size=32, seed=5)
            m.save({str(tmp_path / 'full.h5')!r})
        elif sys.argv[1] == "killed":
            fresh().train(ds, opt, epochs=4, batch_size=32, seed=5,
                          callbacks=[Checkpoint({str(tmp_path / 'ckpt.h5')!r}), Kill()])
        else:
            m = fresh(); m.train(ds, epochs=4, batch_size=32, resume={str(tmp_path / 'ckpt.h5')!r})
            m.save({str(tmp_path / 'resumed.h5')!r})
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = {mode: subprocess.run([sys.executable, "-c", script, mode], env=env, capture_output=True, text=True,
                                 timeout=300) for mode in ("full", "killed", "resume")}
    assert runs["killed"].returncode == 17, runs["killed"].stderr
    assert runs["full"].returncode == 0 and runs["resume"].returncode == 0, runs["resume"].stderr
    full, resumed = Model.load(tmp_path / "full.h5"), Model.load(tmp_path / "resumed.h5")
    assert [e["epoch"] for e in resumed.history.epochs] == [1, 2, 3, 4]
    for layer, weights in full.get_weights().items():
        for name, value in weights.items():
            np.testing.assert_array_equal(resumed.get_weights()[layer][name], value, err_msg=f"{layer}/{name}")


@pytest.mark.parametrize("framework", framework_params())
def test_bad_training_arguments(framework, digits):
    x, y = digits[0][:64], digits[1][:64]
    model = seed_mlp(framework)
    with pytest.raises(TrainingError, match="epochs must be a positive int, got 0"):
        model.train(Dataset(x, y), epochs=0)
    with pytest.raises(TrainingError, match="learning rate must be a positive number, got lr=-0.1"):
        Optimizer("Adam", lr=-0.1)
    with pytest.raises(TrainingError, match="unknown optimizer 'Adamax'; known: SGD, Adam, AdamW, RMSprop"):
        Optimizer("Adamax")
    with pytest.raises(DataError, match=r"label 12 is outside the model's classes 0\.\.9"):
        model.train(Dataset(x, np.where(y == 3, 12, y)), epochs=1)
    with pytest.raises(DataError, match=r"input 'input' expects shape \(batch, 64\), got \(2, 5\)"):
        model.predict(np.zeros((2, 5), np.float32))


@pytest.mark.parametrize("framework", framework_params())
def test_structure_errors(framework, digits):
    model = Model(input_dim=64, output_dim=3, framework=framework).add_layer("Dense", 10, activation="softmax")
    with pytest.raises(SpecError, match=r"output_dim=3 but the last layer 'dense' outputs 10"):
        model.build()
    model = seed_mlp(framework).build()
    with pytest.raises(SpecError, match="already built"):
        model.add_layer("Dense", 3)


@pytest.mark.parametrize("framework", framework_params())
def test_freezing_layers_keeps_their_weights(framework, digits):
    x, y = digits[0][:256], digits[1][:256]
    model = seed_mlp(framework).build(seed=0)
    before = model.get_weights()
    model.compiled.set_trainable({"dense"}, False)
    model.train(Dataset(x, y), Optimizer("Adam", lr=0.01), epochs=1, seed=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after["dense"]["kernel"], before["dense"]["kernel"])
    assert not np.array_equal(after["dense_1"]["kernel"], before["dense_1"]["kernel"])


def test_a_float_mask_or_float_ids_are_refused_with_what_to_pass():
    from llmasos.spec import ModelSpec

    spec = ModelSpec().add_input("input_ids", (5,), "int64").add_input("attention_mask", (5,), "int64")
    spec.add("Embedding", 8, vocab_size=20, name="embed", inputs="input_ids")
    spec.add("Attention", 2, name="attention", inputs=["embed", "embed", "embed", "attention_mask"])
    model = Model(spec=spec.set_outputs("attention"), framework="torch")
    ids, mask = np.ones((1, 5), np.int64), np.ones((1, 5), np.float32)
    with pytest.raises(DataError, match=r"input 'attention_mask' takes an int64 mask \(0/1\), as tokenizers return "
                                        r"it; got float32: pass attention_mask.astype\('int64'\)"):
        model.shape_input({"input_ids": ids, "attention_mask": mask})
    with pytest.raises(DataError, match="input 'input_ids' takes integer ids, got float32"):
        model.shape_input({"input_ids": ids.astype(np.float32), "attention_mask": mask.astype(np.int64)})
    assert [a.dtype for a in model.shape_input({"input_ids": ids, "attention_mask": mask.astype(np.int64)})] == [
        np.int64, np.int64]
