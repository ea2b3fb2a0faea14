"""What only the torch adapter owns: its inference-time memory plan (values freed after their last
use, relu and Add written in place) must never change a result."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos.adapters import get_backend
from llmasos.spec import ModelSpec

torch = pytest.importorskip("torch")   # skipped, not a collection error, where torch is not installed
pytestmark = pytest.mark.torch


def residual_spec() -> ModelSpec:
    """Values read again after an in-place candidate, views (Flatten, Dropout), an Add of a value
    with itself, and an output that is also an intermediate."""
    spec = ModelSpec.sequential((3, 6, 6))
    spec.add("Conv2D", 3, kernel_size=3, padding=1, name="c1")
    spec.add("BatchNorm", name="bn")
    spec.add("Activation", "relu", name="r1")             # in place into bn, which nothing reads later
    spec.add("Conv2D", 3, kernel_size=3, padding=1, name="c2")
    spec.add("Add", name="skip", inputs=["c2", "r1"])     # in place into c2
    spec.add("Activation", "relu", name="r2", inputs="skip")
    spec.add("Add", name="twice", inputs=["r2", "r2"])    # the same value twice: must not be in place
    spec.add("Activation", "relu", name="r3", inputs="c1")  # in place into c1: bn read it earlier
    spec.add("Dropout", 0.5, name="drop", inputs="twice")  # a view of its input in eval mode
    spec.add("Activation", "relu", name="r4", inputs="drop")
    spec.add("Add", name="out", inputs=["r4", "twice"])   # reads `twice` after its view was relu'd
    spec.add("Flatten", name="flat", inputs="r3")
    spec.add("Dense", 4, name="head")
    return spec.set_outputs(["out", "head", "r1"])


def test_inference_plan_matches_the_plain_forward():
    spec = residual_spec()
    model = get_backend("torch").build(spec, seed=0)
    module = model.native.eval()
    _, in_place = module.release, module.in_place
    planned = {layer.name for layer, flag in zip(spec.layers, in_place) if flag}
    # not `twice` (r2 twice), `r4` (drop is a view of twice) or `out` (r4 is not a fresh tensor)
    assert planned == {"r1", "skip", "r2", "r3"}
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    with torch.enable_grad():  # grad mode: nothing runs in place
        expected = [t.detach().numpy() for t in module(torch.from_numpy(x))]
    got = model.predict([x])  # inference mode: the memory plan applies
    for name, a, b in zip(spec.outputs, got, expected):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_predict_between_training_steps_keeps_frozen_batchnorm_statistics():
    """predict() switches to eval mode and back; a frozen BatchNorm must come back in eval mode,
    so the next training step does not move its running statistics."""
    from llmasos.optim import Optimizer

    spec = ModelSpec.sequential((4,)).add("Dense", 6, name="dense").add("BatchNorm", name="bn").add("Dense", 2)
    model = get_backend("torch").build(spec, seed=0)
    assert not model.module.training  # built for inference: predict needs no mode switch
    model.set_trainable({"bn"}, False)
    trainer = model.trainer(Optimizer("SGD", lr=0.1), "mse")
    x, y = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), np.zeros((8, 2), np.float32)
    trainer.train_step([x], y, 0.1)
    before = model.get_weights()["bn"]["moving_mean"].copy()
    model.predict([x])
    trainer.train_step([x], y, 0.1)
    np.testing.assert_array_equal(model.get_weights()["bn"]["moving_mean"], before)
