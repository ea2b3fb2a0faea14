"""Training zoo models: a small ResNet learns scikit-learn's digits (upsampled to 32x32 RGB) in each
framework, and ``freeze="backbone"`` trains the head alone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer, zoo

from ..conftest import FRAMEWORKS, framework_params

PAIRS = [pytest.param(a, b, marks=[getattr(pytest.mark, a), getattr(pytest.mark, b)], id=f"{a}->{b}")
         for a, b in itertools.product(FRAMEWORKS, repeat=2) if a != b]


def _images(x: np.ndarray) -> np.ndarray:
    """8x8 digits in [0, 1] -> (N, 3, 32, 32): each pixel 4x4, grey in all three channels."""
    big = np.kron(x.reshape(-1, 8, 8), np.ones((4, 4), np.float32))
    return np.ascontiguousarray(np.repeat(big[:, None], 3, axis=1), dtype=np.float32)


@pytest.mark.parametrize("framework", framework_params())
def test_small_resnet_learns_digits(framework, digits):
    x_train, y_train, x_test, y_test = digits
    model = zoo.load("resnet_tiny", framework, seed=0)
    # a cosine decay settles the BatchNorm statistics and weights (a constant rate ends noisier)
    model.train(Dataset(_images(x_train), y_train, mode="train"), Optimizer("Adam", lr=3e-3, schedule="cosine"),
                epochs=4, batch_size=32, seed=0, progress=False)
    result = model.evaluate(Dataset(_images(x_test), y_test, mode="test"))
    assert result["accuracy"] > 0.9, result


@pytest.mark.parametrize("framework", framework_params())
def test_frozen_backbone_trains_only_the_head(framework, digits):
    x_train, y_train, _, _ = digits
    model = zoo.load("resnet_tiny", framework, num_classes=10, freeze="backbone", seed=0)
    before = model.get_weights()
    model.train(Dataset(_images(x_train[:128]), y_train[:128], mode="train"), Optimizer("SGD", lr=0.1), epochs=1,
                batch_size=32, seed=0, progress=False)
    after = model.get_weights()
    for layer, values in before.items():
        for name, value in values.items():
            changed = not np.array_equal(value, after[layer][name])
            # the head trains; everything else, BatchNorm statistics included, stays as loaded
            assert changed == (layer == "fc"), f"{layer}/{name} changed={changed}"
    assert model.frozen == {layer.name for layer in model.spec.layers} - {"fc"}


@pytest.mark.parametrize("source, target", PAIRS)
def test_a_frozen_backbone_is_saved_and_loaded_with_the_model(source, target, digits, tmp_path):
    """freeze="backbone" was metadata only: after save/Model.load (or .to()) the backbone trained again."""
    x_train, y_train, _, _ = digits
    zoo.load("resnet_tiny", source, num_classes=10, freeze="backbone", input_size=16, seed=0).save(tmp_path / "m.h5")
    loaded = Model.load(tmp_path / "m.h5", framework=target)
    assert loaded.frozen == {layer.name for layer in loaded.spec.layers} - {"fc"}
    before = loaded.get_weights()
    small = _images(x_train[:32])[:, :, ::2, ::2]  # 16x16
    loaded.train(Dataset(small, y_train[:32], mode="train"), Optimizer("SGD", lr=0.1), epochs=1, batch_size=16,
                 seed=0, progress=False)
    after = loaded.get_weights()
    changed = {layer for layer, values in before.items()
               if any(not np.array_equal(v, after[layer][k]) for k, v in values.items())}
    assert changed == {"fc"}
    assert loaded.unfreeze().frozen == set()
    assert loaded.freeze("backbone").frozen == {layer.name for layer in loaded.spec.layers} - {"fc"}
