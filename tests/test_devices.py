"""Devices by one set of names in both frameworks: what is not here is a clear error listing what
is, "auto" falls back to the CPU, moving keeps weights and optimizer state, and nothing about the
device reaches the .h5 (GPU runs: tests/test_gpu.py)."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer, zoo
from llmasos.adapters import get_backend
from llmasos.devices import choose, is_device, parse
from llmasos.errors import DeviceError

from .conftest import framework_params


def test_names():
    assert parse("GPU:1") == "cuda:1" and parse(" cpu ") == "cpu"
    assert choose("auto", ["cpu", "cuda:0", "cuda:1"]) == "cuda:0"
    assert choose("auto", ["cpu", "mps"]) == "mps"
    assert is_device("cuda:3") and not is_device("tf") and not is_device("torch")
    with pytest.raises(DeviceError, match="unknown device 'tpu'; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"):
        parse("tpu")


@pytest.mark.parametrize("framework", framework_params())
def test_absent_device_is_an_error_listing_the_present_ones(framework, tmp_path):
    present = get_backend(framework).devices()
    assert present[0] == "cpu"
    missing = f"cuda:{len(present) + 3}"
    with pytest.raises(DeviceError, match=rf"device '{missing}' is not available to this framework; available: cpu"):
        Model(input_dim=4, output_dim=2, framework=framework, device=missing).add_layer("Dense", 2).build()
    if "cuda:0" not in present:
        model = Model(input_dim=4, output_dim=2, framework=framework, device="auto").add_layer("Dense", 2)
        assert model.build().compiled.predict([np.ones((1, 4), np.float32)])[0].shape == (1, 2)
        with pytest.raises(DeviceError, match="available: cpu"):
            model.to("cuda")


@pytest.mark.parametrize("framework", framework_params())
def test_to_keeps_weights_and_optimizer_state(framework, digits, tmp_path):
    x, y = digits[0][:128], digits[1][:128]
    model = Model(input_dim=64, output_dim=10, framework=framework, device="cpu")
    model.add_layer("Dense", 10, activation="softmax")
    optimizer = Optimizer("Adam", lr=0.01)
    model.train(Dataset(x, y), optimizer, epochs=1, seed=0, progress=False)
    before, state = model.get_weights(), model._trainer.get_state()
    assert model.to("cpu") is model and model.device == "cpu"
    np.testing.assert_array_equal(model.get_weights()["dense"]["kernel"], before["dense"]["kernel"])
    model.train(Dataset(x, y), optimizer, epochs=1, seed=0, progress=False)   # continues from the kept state
    assert model._trainer.get_state()["step"] == 2 * state["step"]
    path = model.save(tmp_path / "m.h5")
    again = Model.load(path, device="auto")
    assert again.device == "auto"
    np.testing.assert_allclose(again.predict(x[:4]), model.predict(x[:4]), atol=1e-6)


@pytest.mark.torch
def test_zoo_load_takes_a_device():
    model = zoo.load("resnet_tiny", framework="torch", seed=0, device="cpu")
    assert next(model.backend_model.parameters()).device.type == "cpu"
    with pytest.raises(DeviceError, match="available: cpu"):
        zoo.load("resnet_tiny", framework="torch", seed=0, device="cuda:7")
