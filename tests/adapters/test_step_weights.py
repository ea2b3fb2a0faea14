"""Per-sample weights in the adapters' steps mean what Keras' ``sample_weight`` means: the loss is
``sum(w_i * l_i) / batch`` (Keras 3's ``sum_over_batch_size``), checked against Keras' own losses,
and a weighted training step gives the same numbers in torch and TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Optimizer
from llmasos.adapters import get_backend
from llmasos.spec import ModelSpec

pytestmark = [pytest.mark.torch, pytest.mark.tf]

CASES = {  # loss -> (final activation, units, Keras loss on the trainer's outputs)
    "cross_entropy": ("softmax", 4, lambda k: k.losses.SparseCategoricalCrossentropy(from_logits=True)),
    "binary_cross_entropy": ("sigmoid", 3, lambda k: k.losses.BinaryCrossentropy(from_logits=True)),
    "mse": ("linear", 3, lambda k: k.losses.MeanSquaredError()),
    "mae": ("linear", 3, lambda k: k.losses.MeanAbsoluteError()),
}


def _batch(loss: str, units: int, rng):
    x = rng.normal(size=(6, 5)).astype(np.float32)
    if loss == "cross_entropy":
        return x, rng.integers(0, units, 6)
    if loss == "binary_cross_entropy":
        return x, rng.integers(0, 2, (6, units)).astype(np.float32)
    return x, rng.normal(size=(6, units)).astype(np.float32)


@pytest.mark.parametrize("loss", list(CASES))
def test_weighted_loss_is_keras_sample_weight(loss):
    activation, units, keras_loss = CASES[loss]
    rng = np.random.default_rng(0)
    x, y = _batch(loss, units, rng)
    w = np.array([0.0, 1.0, 2.0, 0.5, 3.0, 1.0], np.float32)
    spec = ModelSpec.sequential((5,)).add("Dense", units, activation=activation)
    weights = get_backend("torch").build(spec, seed=0).get_weights()
    get_backend("tf")
    import keras  # after llmasos' TF adapter, which loads what must come before TensorFlow

    for framework in ("torch", "tf"):
        model = get_backend(framework).build(spec)
        model.set_weights(weights)
        trainer = model.trainer(Optimizer("SGD", lr=0.1), loss)
        loss_sum, outputs = trainer.eval_step([x], y, w)
        expected = float(keras_loss(keras)(y, outputs, sample_weight=w)) * len(y)
        assert loss_sum == pytest.approx(expected, rel=1e-5), framework
        plain, _ = trainer.eval_step([x], y)
        assert plain == pytest.approx(float(keras_loss(keras)(y, outputs)) * len(y), rel=1e-5), framework
        assert loss_sum != pytest.approx(plain, rel=1e-3)


def test_weighted_training_steps_agree_across_frameworks():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 4, 16)
    w = rng.uniform(0, 2, 16).astype(np.float32)
    spec = ModelSpec.sequential((5,)).add("Dense", 8, activation="relu").add("Dense", 4, activation="softmax")
    start = get_backend("torch").build(spec, seed=0).get_weights()
    results = {}
    for framework in ("torch", "tf"):
        model = get_backend(framework).build(spec)
        model.set_weights(start)
        trainer = model.trainer(Optimizer("Adam", lr=0.01), "cross_entropy")
        losses = [trainer.train_step([x], y, 0.01, w)[0] for _ in range(3)]
        results[framework] = losses, model.get_weights()
    np.testing.assert_allclose(results["tf"][0], results["torch"][0], rtol=1e-5)
    for layer, ws in results["torch"][1].items():
        for name, value in ws.items():
            np.testing.assert_allclose(results["tf"][1][layer][name], value, atol=1e-5)
    # a zero weight removes a sample from the gradient: training on the others alone is the same step
    keep = w > 0.5
    w_masked = np.where(keep, w, 0).astype(np.float32)
    for framework in ("torch", "tf"):
        a, b = get_backend(framework).build(spec), get_backend(framework).build(spec)
        a.set_weights(start)
        b.set_weights(start)
        a.trainer(Optimizer("SGD", lr=0.1), "cross_entropy").train_step([x], y, 0.1, w_masked)
        # the same gradient: the kept rows alone, weights scaled by (kept / batch) for the mean over 16
        scale = keep.sum() / len(y)
        b.trainer(Optimizer("SGD", lr=0.1), "cross_entropy").train_step([x[keep]], y[keep], 0.1,
                                                                          (w[keep] * scale).astype(np.float32))
        for layer, ws in a.get_weights().items():
            for name, value in ws.items():
                np.testing.assert_allclose(b.get_weights()[layer][name], value, atol=1e-6)
