"""The .h5 format: round trip, atomic writes, and clear errors for damaged, foreign or hostile files
(checked before anything is built, in bounded memory)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from llmasos import atomic, io
from llmasos.errors import ModelFileError
from llmasos.spec import ModelSpec

from .conftest import framework_params


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


# -- hostile and broken files: refused with a ModelFileError before anything is built ----------------


def _write_raw(path, spec: ModelSpec, weights: dict) -> None:
    """A file holding ``weights`` whatever the spec says (the writer does not check: a stranger's
    file need not come from llmasos)."""
    io.write(path, io.ModelFile(spec, weights, framework="torch"))


def _load_limited(path, memory_gb: int = 3) -> str:
    """``Model.load(path)`` in a child process whose address space is capped at ``memory_gb``:
    what it raised, as ``Type: message``."""
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({memory_gb} << 30, {memory_gb} << 30))
        from llmasos import Model
        try:
            Model.load({str(path)!r})
        except BaseException as exc:
            print(type(exc).__name__ + ": " + str(exc))
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return done.stdout.strip() or done.stderr.strip()[-2000:]


@pytest.mark.parametrize("spec, why", [
    (ModelSpec.sequential((3,)).add("Dense", 10 ** 10), "40,000,000,000 parameters"),
    (ModelSpec.sequential((10 ** 12,)).add("Dense", 2), "2,000,000,000,002 parameters"),
    (ModelSpec.sequential((10 ** 12,)).add("Dropout", 0.5), "1,000,000,000,000 values in 'input' per example"),
], ids=["dense-1e10-units", "input-1e12-features", "input-1e12-no-weights"])
def test_a_spec_asking_for_huge_layers_is_refused_in_bounded_memory(tmp_path, spec, why):
    path = tmp_path / "hostile.h5"
    tiny = {layer: {name: np.ones([1] * len(shape), np.float32) for name, shape in ws.items()}
            for layer, ws in spec.weight_shapes().items()}
    _write_raw(path, spec, tiny)
    raised = _load_limited(path)
    assert raised.startswith("ModelFileError") and why in raised and "max_elements=None" in raised, raised
    with pytest.raises(ModelFileError, match=why):
        io.read(path)


def test_the_size_bound_can_be_lifted_and_still_checks_shapes(tmp_path):
    spec = ModelSpec.sequential((3,)).add("Dense", 10 ** 10)
    _write_raw(tmp_path / "m.h5", spec, {"dense": {"kernel": np.ones((3, 1), "f4"), "bias": np.zeros(1, "f4")}})
    with pytest.raises(ModelFileError, match=r"dense/kernel has shape \(3, 1\), the model needs \(3, 10000000000\)"):
        io.read(tmp_path / "m.h5", max_elements=None)


@pytest.mark.parametrize("change, message", [
    (lambda w: w["dense"].update(kernel=np.ones((2, 2), "f4")), r"hidden|dense/kernel has shape \(2, 2\), the model needs \(4, 2\)"),
    (lambda w: w["dense"].pop("bias"), "missing dense/bias"),
    (lambda w: w.update(extra={"kernel": np.ones(1, "f4")}), "unexpected extra/kernel"),
], ids=["wrong-shape", "missing", "unknown"])
def test_weights_that_do_not_fit_the_spec(tmp_path, change, message):
    model_file = small_file()
    change(model_file.weights)
    io.write(tmp_path / "m.h5", model_file)
    with pytest.raises(ModelFileError, match=message):
        io.read(tmp_path / "m.h5")


def test_an_optimizer_slot_that_does_not_fit_is_refused(tmp_path):
    model_file = small_file()
    model_file.training["state"]["slots"]["v"]["dense"]["kernel"] = np.ones((9,), "f4")
    io.write(tmp_path / "m.h5", model_file)
    with pytest.raises(ModelFileError, match=r"slot v/dense/kernel has shape \(9,\), the model's weight \(4, 2\)"):
        io.read(tmp_path / "m.h5")


@pytest.mark.parametrize("framework", framework_params())
def test_nonfinite_weights_are_refused_unless_asked_for(tmp_path, framework):
    from llmasos import Model

    model_file = small_file()
    model_file.weights["dense"]["bias"][1] = np.nan
    model_file.weights["hidden.1"]["kernel"][0, 0] = np.inf
    io.write(tmp_path / "nan.h5", model_file)
    with pytest.raises(ModelFileError, match=r"weights dense/bias, hidden\.1/kernel hold NaN or infinity.*allow_nonfinite=True"):
        Model.load(tmp_path / "nan.h5", framework=framework)
    model = Model.load(tmp_path / "nan.h5", framework=framework, allow_nonfinite=True)
    assert np.isnan(model.predict(np.ones((2, 3), np.float32))[:, 1]).all()
    assert np.isnan(model.get_weights()["dense"]["bias"][1])


def test_nonfinite_optimizer_state_is_refused(tmp_path):
    model_file = small_file()
    model_file.training["state"]["slots"]["v"]["dense"]["bias"][0] = np.inf
    io.write(tmp_path / "m.h5", model_file)
    with pytest.raises(ModelFileError, match="optimizer slots v dense/bias hold NaN or infinity"):
        io.read(tmp_path / "m.h5")
    assert io.read(tmp_path / "m.h5", allow_nonfinite=True).training["state"]["slots"]["v"]["dense"]["bias"][0] == np.inf


def _spec_attr(path, text: str) -> None:
    io.write(path, small_file())
    with h5py.File(path, "a") as f:
        f.attrs["spec"] = text


def _spec_dict():
    return json.loads(small_file().spec.to_json())


def _with_layer(**changes) -> str:
    spec = _spec_dict()
    spec["layers"][0].update(changes)
    return json.dumps(spec)


@pytest.mark.parametrize("spec_text, message", [
    ("{not json", "invalid model spec.*not valid JSON"),
    (_with_layer(kind="Teleport"), "uses a layer this process does not know: layer 'hidden.1' is a 'Teleport'"),
    (_with_layer(config={"units": -4, "activation": "relu"}), "invalid model spec.*units"),
    (json.dumps({**_spec_dict(), "inputs": [{"name": "input", "shape": [-3]}]}), "invalid model spec.*positive ints"),
    (json.dumps({"layers": []}), "invalid model spec.*inputs, layers and outputs"),
], ids=["bad-json", "unknown-layer", "negative-units", "negative-input", "no-inputs"])
def test_a_bad_spec_is_named(tmp_path, spec_text, message):
    _spec_attr(tmp_path / "m.h5", spec_text)
    with pytest.raises(ModelFileError, match=message):
        io.read(tmp_path / "m.h5")


def test_empty_file_and_keras2_file(tmp_path):
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a readable HDF5 file"):
        io.read(tmp_path / "empty.h5")
    with h5py.File(tmp_path / "keras2.h5", "w") as f:  # what Keras 2's model.save("x.h5") writes
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
        f.create_group("model_weights").create_group("dense").create_dataset("kernel:0", data=np.ones((3, 2)))
    with pytest.raises(ModelFileError, match="not an llmasos model.*model_weights.*Keras"):
        io.read(tmp_path / "keras2.h5")


def test_weights_stored_as_something_else_than_floats(tmp_path):
    io.write(tmp_path / "m.h5", small_file())
    with h5py.File(tmp_path / "m.h5", "a") as f:
        del f["weights/dense/bias"]
        f["weights/dense"].create_dataset("bias", data=np.array([b"a", b"b"]))
    with pytest.raises(ModelFileError, match="weights/dense/bias should be an array of floats"):
        io.read(tmp_path / "m.h5")


# -- a save killed mid-write --------------------------------------------------------------------------


def _killed_save(path) -> None:
    """Save over ``path`` in a child process that is killed (SIGKILL) half-way through writing."""
    code = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from llmasos import io
        from llmasos.spec import ModelSpec
        real = io._write_tree
        def write_then_die(group, tree):
            real(group, tree)
            os.kill(os.getpid(), signal.SIGKILL)
        io._write_tree = write_then_die
        spec = ModelSpec.sequential((3,)).add("Dense", 2)
        io.write({str(path)!r}, io.ModelFile(spec, {{"dense": {{"kernel": np.zeros((3, 2), "f4"),
                                                               "bias": np.zeros(2, "f4")}}}}))
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_a_killed_save_keeps_the_old_file_and_the_next_save_removes_its_leftover(tmp_path):
    path = tmp_path / "m.h5"
    io.write(path, small_file(seed=1))
    before = path.read_bytes()
    _killed_save(path)
    assert path.read_bytes() == before
    leftovers = [name for name in os.listdir(tmp_path) if name != "m.h5"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".m.h5.tmp-"), leftovers
    (tmp_path / "other.h5").write_bytes(b"x")
    (tmp_path / ".other.h5.tmp-abcdefgh").write_bytes(b"x")  # another target's: not this save's business

    io.write(path, small_file(seed=3))  # seconds after the kill: it could be a live writer's, so kept
    assert leftovers[0] in os.listdir(tmp_path)
    old = time.time() - 2 * atomic.STALE_AFTER_S
    for name in os.listdir(tmp_path):
        os.utime(tmp_path / name, (old, old))
    io.write(path, small_file(seed=4))
    assert sorted(os.listdir(tmp_path)) == [".other.h5.tmp-abcdefgh", "m.h5", "other.h5"]
    np.testing.assert_array_equal(io.read(path).weights["dense"]["bias"], small_file(seed=4).weights["dense"]["bias"])


def test_a_concurrent_writers_temporary_file_is_left_alone(tmp_path):
    path = tmp_path / "m.onnx"
    old = time.time() - 2 * atomic.STALE_AFTER_S
    with atomic.staged(path) as tmp:  # a writer still at work (exporting, verifying) on an old file
        tmp.write_bytes(b"first")
        (tmp_path / (tmp.name + ".data")).write_bytes(b"its external data")
        for name in os.listdir(tmp_path):
            os.utime(tmp_path / name, (old, old))
        with atomic.staged(path) as other:  # a second writer of the same file meanwhile
            other.write_bytes(b"second")
        assert tmp.read_bytes() == b"first" and (tmp_path / (tmp.name + ".data")).exists()
        assert path.read_bytes() == b"second"
    assert path.read_bytes() == b"first"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
