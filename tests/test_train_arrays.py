"""train(X, y) and evaluate(X, y) with Keras' meanings: the two call forms and what is refused,
validation_split (the last rows), class_weight and sample_weight (arrays or a column), metrics in
the History and evaluate; torch and TensorFlow give the same numbers (<= 1e-5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import f1_score

from llmasos import Dataset, Model, Optimizer
from llmasos.errors import DataError, TrainingError

from .conftest import FRAMEWORKS, framework_params


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(x))
    return x[order].astype(np.float32), y[order].astype(np.int64)


def _mlp(framework, seed=0):
    model = Model(input_dim=4, output_dim=3, framework=framework)
    model.add_layer("Dense", 8, activation="relu").add_layer("Dense", 3, activation="softmax")
    return model.build(seed)


def _softmax_ce(model, x, y):
    p = model.predict(x).astype(np.float64)
    return -np.log(p[np.arange(len(y)), y])


@pytest.mark.parametrize("framework", framework_params())
def test_arrays_train_as_the_same_dataset_does(framework, iris):
    x, y = iris
    a, b = _mlp(framework), _mlp(framework)
    b.set_weights(a.get_weights())
    ha = a.train(x, y, epochs=2, batch_size=16, seed=3, optimizer=Optimizer("SGD", lr=0.1))
    hb = b.train(Dataset(x, y, mode="train"), Optimizer("SGD", lr=0.1), epochs=2, batch_size=16, seed=3)
    assert ha["loss"] == hb["loss"] and ha["accuracy"] == hb["accuracy"]
    for layer, weights in a.get_weights().items():
        for name, value in weights.items():
            np.testing.assert_array_equal(value, b.get_weights()[layer][name])


@pytest.mark.parametrize("framework", framework_params())
def test_validation_split_holds_out_the_last_rows(framework, iris):
    x, y = iris
    model = _mlp(framework)
    history = model.train(x, y, epochs=1, batch_size=32, validation_split=0.2, seed=0,
                          metrics=["accuracy", "f1"])
    tail_x, tail_y = x[120:], y[120:]           # ceil(150 * 0.8) = 120 rows train
    after = model.evaluate(tail_x, tail_y, metrics=["accuracy", "f1"])
    assert history["val_loss"][0] == pytest.approx(after["loss"], rel=1e-6)
    assert history["val_f1"][0] == pytest.approx(f1_score(tail_y, model.predict(tail_x).argmax(1), average="macro"),
                                                 abs=1e-12)
    assert set(history.history) >= {"loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "lr"}


@pytest.mark.parametrize("framework", framework_params())
def test_sample_weight_weighs_each_sample_loss(framework, iris):
    x, y = iris
    model = _mlp(framework)
    weights = np.random.default_rng(0).uniform(0, 2, len(y)).astype(np.float32)
    result = model.evaluate(x, y, sample_weight=weights, batch_size=64)
    per_sample = _softmax_ce(model, x, y)
    # sum_over_batch_size per batch, then the batch sums over all rows: sum(w * l) / n
    assert result["loss"] == pytest.approx(float((weights * per_sample).sum() / len(y)), rel=1e-5)
    assert model.evaluate(x, y)["loss"] == pytest.approx(float(per_sample.mean()), rel=1e-5)


@pytest.mark.parametrize("framework", framework_params())
def test_class_weight_is_sample_weight_by_label(framework, iris):
    x, y = iris
    a, b = _mlp(framework), _mlp(framework)
    b.set_weights(a.get_weights())
    ha = a.train(x, y, epochs=2, batch_size=16, seed=0, class_weight={0: 1.0, 2: 3.0})
    hb = b.train(x, y, epochs=2, batch_size=16, seed=0, sample_weight=np.where(y == 2, 3.0, 1.0))
    assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-6)
    plain = _mlp(framework)
    plain.set_weights(b.get_weights())
    assert plain.train(x, y, epochs=1, seed=0)["loss"][-1] != pytest.approx(ha["loss"][-1], rel=1e-3)


@pytest.mark.parametrize("framework", framework_params())
def test_sample_weight_from_a_dataset_column(framework, iris):
    x, y = iris
    w = np.random.default_rng(2).uniform(0.5, 1.5, len(y)).astype(np.float32)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(w=w, label=y)
    a, b = _mlp(framework), _mlp(framework)
    b.set_weights(a.get_weights())
    ha = a.train(Dataset(frame, mode="train"), Optimizer("Adam", lr=0.01), epochs=2, seed=1, sample_weight="w")
    hb = b.train(x, y, epochs=2, seed=1, sample_weight=w, optimizer=Optimizer("Adam", lr=0.01))
    assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-6)
    with pytest.raises(TrainingError, match="sample_weight='weight' names no feature column.*a, b, c, d, w"):
        a.train(Dataset(frame, mode="train"), epochs=1, sample_weight="weight")


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.skipif(len(FRAMEWORKS) < 2, reason="needs torch and TensorFlow")
def test_torch_and_tf_agree_on_weighted_training_and_metrics(iris):
    x, y = iris
    torch_model = _mlp("torch")
    tf_model = torch_model.to("tf")
    options = dict(epochs=3, batch_size=16, seed=5, validation_split=0.2, class_weight={0: 2.0, 1: 1.0, 2: 0.5},
                   metrics=["accuracy", "f1", "auc", "top2", "perplexity"], optimizer=Optimizer("Adam", lr=0.01))
    ht, hf = torch_model.train(x, y, **options), tf_model.train(x, y, **options)
    for key in ("loss", "accuracy", "f1", "auc", "top2", "perplexity", "val_loss", "val_f1", "val_auc"):
        np.testing.assert_allclose(ht[key], hf[key], atol=1e-5, err_msg=key)
    for layer, weights in torch_model.get_weights().items():
        for name, value in weights.items():
            np.testing.assert_allclose(value, tf_model.get_weights()[layer][name], atol=1e-5)
    assert torch_model.evaluate(x, y, metrics=["f1_micro", "auc"]) == pytest.approx(
        tf_model.evaluate(x, y, metrics=["f1_micro", "auc"]), abs=1e-5)


@pytest.mark.torch
def test_ambiguous_or_bad_arguments_say_what_was_expected(iris):
    x, y = iris
    model = _mlp("torch")
    ds = Dataset(x, y, mode="train")
    with pytest.raises(TrainingError, match=r"train\(X, y\): the second argument is the labels y, got an Optimizer"):
        model.train(x, Optimizer("SGD", lr=0.1))
    with pytest.raises(TrainingError, match=r"a Dataset carries its own labels, so the second argument is the Optimizer"):
        model.train(ds, y)
    with pytest.raises(TrainingError, match=r"train\(X, y\) needs the labels y"):
        model.train(x)
    with pytest.raises(DataError, match=r"train\(\) takes arrays X with labels y"):
        model.train("not data", y)
    with pytest.raises(TrainingError, match="the optimizer is given twice"):
        model.train(ds, Optimizer("SGD", lr=0.1), optimizer=Optimizer("SGD", lr=0.1))
    with pytest.raises(TrainingError, match="validation_split splits arrays"):
        model.train(ds, validation_split=0.1)
    for bad in (0, 1, 1.5, -0.1, 0.0):
        with pytest.raises(TrainingError, match=r"validation_split must be a fraction between 0 and 1"):
            model.train(x, y, validation_split=bad)
    with pytest.raises(TrainingError, match="class_weight names class 3, but the model has classes 0..2"):
        model.train(x, y, class_weight={3: 2.0})
    with pytest.raises(TrainingError, match=r"class_weight names class\(es\) \[2\], which no training label holds"):
        model.train(x[y < 2], y[y < 2], class_weight={2: 2.0})
    with pytest.raises(TrainingError, match="unknown metric 'f3'; known: accuracy"):
        model.train(x, y, metrics=["accuracy", "f3"])
    with pytest.raises(TrainingError, match="unknown loss 'hinge'"):
        model.train(x, y, loss="hinge")
    with pytest.raises(TrainingError, match=r"sample_weight needs one weight per row \(150\), got 3"):
        model.train(x, y, sample_weight=[1.0, 2.0, 3.0])
    with pytest.raises(TrainingError, match=r"evaluate\(dataset\): a Dataset carries its own labels"):
        model.evaluate(ds, 128)
    assert len(model.history) == 0          # nothing trained on any of them


@pytest.mark.torch
def test_weight_column_of_a_streamed_csv(iris, tmp_path):
    x, y = iris
    w = np.random.default_rng(4).uniform(0.5, 1.5, len(y)).round(3).astype(np.float32)
    pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(w=w, label=y).to_csv(tmp_path / "iris.csv", index=False)
    streamed = Dataset(tmp_path / "iris.csv", mode="test", chunk_size=40)
    assert streamed.streaming and streamed.feature_names == ["a", "b", "c", "d", "w"]
    model = _mlp("torch")
    result = model.evaluate(streamed, sample_weight="w")
    frame = pd.read_csv(tmp_path / "iris.csv")
    per_sample = _softmax_ce(model, frame[["a", "b", "c", "d"]].to_numpy(np.float32), y)
    assert result["loss"] == pytest.approx(float((frame["w"].to_numpy() * per_sample).sum() / len(y)), rel=1e-5)
