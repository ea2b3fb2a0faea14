"""The .h5 format: round trip, atomic writes, and clear errors for damaged or foreign files."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from llmasos import io
from llmasos.errors import ModelFileError
from llmasos.spec import ModelSpec


def small_file(seed: int = 0) -> io.ModelFile:
    spec = ModelSpec.sequential((3,)).add("Dense", 4, activation="relu", name="hidden.1").add("Dense", 2)
    rng = np.random.default_rng(seed)
    weights = {layer: {name: rng.standard_normal(shape).astype(np.float32) for name, shape in ws.items()}
               for layer, ws in spec.weight_shapes().items()}
    state = {"step": 7, "slots": {"m": weights, "v": {k: {n: a ** 2 for n, a in w.items()} for k, w in weights.items()}}}
    training = {"optimizer": {"name": "Adam", "lr": 0.01}, "loss": "mse", "epoch": 2, "step": 7, "seed": 3,
                "history": [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}], "state": state}
    return io.ModelFile(spec, weights, framework="torch", framework_version="x", metadata={"labels": ["a", "b"]},
                        training=training)


def test_round_trip_keeps_everything(tmp_path):
    original = small_file()
    path = tmp_path / "m.h5"
    io.write(path, original)
    loaded = io.read(path)
    assert loaded.spec == original.spec
    assert loaded.framework == "torch" and loaded.metadata == {"labels": ["a", "b"]}
    for layer, ws in original.weights.items():
        for name, value in ws.items():
            np.testing.assert_array_equal(loaded.weights[layer][name], value)
    assert loaded.training["epoch"] == 2 and loaded.training["history"][1]["loss"] == 0.5
    assert loaded.training["state"]["step"] == 7
    np.testing.assert_array_equal(loaded.training["state"]["slots"]["v"]["dense"]["bias"],
                                  original.training["state"]["slots"]["v"]["dense"]["bias"])


def test_file_holds_only_plain_data(tmp_path):
    path = tmp_path / "m.h5"
    io.write(path, small_file())
    kinds = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: kinds.append(obj.dtype) if isinstance(obj, h5py.Dataset) else None)
        attrs = dict(f.attrs)
    assert kinds and all(k == np.float32 for k in kinds)
    json.loads(attrs["spec"])  # the spec is JSON, not an object
    assert attrs["format"] == "llmasos"


def test_crash_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    io.write(path, small_file(seed=1))
    before = path.read_bytes()

    def explode(group, tree):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(io, "_write_tree", explode)
    with pytest.raises(KeyboardInterrupt):
        io.write(path, small_file(seed=2))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]  # no temporary file left behind


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "m.h5"
    io.write(path, small_file())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated|damaged"):
        io.read(path)


def test_foreign_hdf5_is_named(tmp_path):
    path = tmp_path / "keras.h5"
    with h5py.File(path, "w") as f:
        f.create_group("model_weights")
    with pytest.raises(ModelFileError, match="not an llmasos model.*model_weights"):
        io.read(path)


def test_not_hdf5_and_missing(tmp_path):
    (tmp_path / "x.h5").write_text("hello")
    with pytest.raises(ModelFileError, match="not a readable HDF5 file"):
        io.read(tmp_path / "x.h5")
    with pytest.raises(ModelFileError, match="no model file"):
        io.read(tmp_path / "missing.h5")
    with pytest.raises(ModelFileError, match="folder .* does not exist"):
        io.write(tmp_path / "nope" / "m.h5", small_file())


def test_newer_format_asks_for_upgrade(tmp_path):
    path = tmp_path / "m.h5"
    io.write(path, small_file())
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ModelFileError, match="format 99.*upgrade llmasos"):
        io.read(path)


def test_info_summarises(tmp_path):
    path = tmp_path / "m.h5"
    io.write(path, small_file())
    info = io.read_info(path)
    assert info["parameters"] == 3 * 4 + 4 + 4 * 2 + 2
    assert info["training"]["epoch"] == 2 and info["training"]["epochs_recorded"] == 2
    assert "hidden.1 (Dense)" in info["summary"]
