"""Models whose weights live in an external-data file (over 2 GiB; forced here on a small model):
exported, loaded, verified, derived, served and copied into a Triton repository with the data
file beside them; and a file naming data outside its folder is refused everywhere."""

from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import pytest

from llmasos import Deployer, Model, export
from llmasos.errors import OnnxFileError, ServeError
from llmasos.export.files import needs_external_data

from ..conftest import framework_params


def _locations(path) -> set[str]:
    proto = onnx.load(str(path), load_external_data=False)
    return {entry.value for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
            for entry in t.external_data if entry.key == "location"}


def test_the_threshold_is_the_protobuf_limit():
    assert not needs_external_data(500_000_000) and needs_external_data(600_000_000)  # 2.0 GB vs 2.4 GB float32


@pytest.mark.parametrize("framework", framework_params())
def test_a_model_forced_to_external_data_exports_loads_serves_and_goes_to_triton(framework, tmp_path, digits):
    x = digits[2][:5]
    model = Model(input_dim=64, output_dim=10, framework=framework)
    model.add_layer("Dense", 32, activation="relu").add_layer("Dense", 10, activation="softmax").build(seed=0)
    folder = tmp_path / "models"
    folder.mkdir()
    report = export.to_onnx(model, folder / "digits.onnx", external_data=True)
    assert sorted(os.listdir(folder)) == ["digits.onnx", "digits.onnx.data"]  # no temporary left behind
    assert _locations(folder / "digits.onnx") == {"digits.onnx.data"}
    data_bytes = (folder / "digits.onnx.data").stat().st_size
    assert data_bytes >= 64 * 32 * 4 and report.size_bytes == data_bytes + (folder / "digits.onnx").stat().st_size

    # exporting again replaces both files, and the data is not appended twice
    export.to_onnx(model, folder / "digits.onnx", external_data=True)
    assert (folder / "digits.onnx.data").stat().st_size == data_bytes

    expected = model.predict(x)
    session = export.load(folder / "digits.onnx")
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, atol=1e-5, rtol=0)
    assert export.verify(model, folder / "digits.onnx") <= 1e-5
    served = Deployer(folder / "digits.onnx").predict(x)
    served = served[model.spec.outputs[0]] if isinstance(served, dict) else served
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=0)

    # a derived file of an external-data source keeps its weights outside too
    export.optimize(folder / "digits.onnx", folder / "digits.opt.onnx", level="basic")
    assert _locations(folder / "digits.opt.onnx") == {"digits.opt.onnx.data"}

    from llmasos.serve.triton import write_triton_repo

    model_dir = write_triton_repo(folder / "digits.onnx", tmp_path / "repo", "digits")
    # Triton's form for a model of several files: the version folder holds a folder model.onnx
    assert sorted(os.listdir(model_dir / "1" / "model.onnx")) == ["digits.onnx.data", "model.onnx"]
    served = Deployer(tmp_path / "repo").predict(x, model="digits")
    served = served[model.spec.outputs[0]] if isinstance(served, dict) else served
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=0)


def _mlp_with_external_data(folder) -> None:
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((64, 10), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch_size", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch_size", 10])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, location="model.onnx.data",
                    size_threshold=0)


@pytest.mark.parametrize("location", ["../secret", "/etc/passwd", "sub/../../secret"])
def test_a_location_outside_the_models_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    _mlp_with_external_data(folder)
    shutil.copy(folder / "model.onnx.data", tmp_path / "secret")  # it exists: only the rule refuses it
    proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save_model(proto, str(folder / "model.onnx"))
    message = f"names external data at '{location}', outside its folder"
    with pytest.raises(OnnxFileError, match=message):
        export.load(folder / "model.onnx")
    with pytest.raises(OnnxFileError, match=message):
        export.info(folder / "model.onnx")
    with pytest.raises(OnnxFileError, match=message):
        export.optimize(folder / "model.onnx", tmp_path / "opt.onnx")
    with pytest.raises(ServeError, match=message):
        Deployer(folder / "model.onnx")
    from llmasos.serve.triton import write_triton_repo

    with pytest.raises(OnnxFileError, match=message):
        write_triton_repo(folder / "model.onnx", tmp_path / "repo", "m")
    assert not (tmp_path / "opt.onnx").exists() and not (tmp_path / "repo").exists()


def test_a_symbolic_link_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    _mlp_with_external_data(folder)
    shutil.move(folder / "model.onnx.data", tmp_path / "elsewhere.data")
    os.symlink(tmp_path / "elsewhere.data", folder / "model.onnx.data")
    with pytest.raises(OnnxFileError, match="outside its folder"):
        export.load(folder / "model.onnx")


def _digits_onnx(folder, digits, external_data: bool):
    model = Model(input_dim=64, output_dim=10, framework="torch")
    model.add_layer("Dense", 32, activation="relu").add_layer("Dense", 10, activation="softmax").build(seed=0)
    export.to_onnx(model, folder / "digits.onnx", external_data=external_data)
    return model.predict(digits[2][:5])


def _derive_each(folder):
    """quantize, to_fp16 and optimize of folder/digits.onnx, each checked for external data."""
    export.quantize(folder / "digits.onnx", folder / "digits.int8.onnx")
    export.to_fp16(folder / "digits.onnx", folder / "digits.fp16.onnx")
    export.optimize(folder / "digits.onnx", folder / "digits.opt.onnx")
    for name in ("digits.int8.onnx", "digits.fp16.onnx", "digits.opt.onnx"):
        assert _locations(folder / name) == {f"{name}.data"}, name


@pytest.mark.parametrize("external_source", [True, False], ids=["source-external", "past-the-limit"])
def test_derived_files_write_external_data(tmp_path, digits, monkeypatch, external_source):
    folder = tmp_path / "models"
    folder.mkdir()
    expected = _digits_onnx(folder, digits, external_data=external_source)
    if not external_source:  # an inline source whose weights pass a (lowered) limit
        from llmasos.export import files

        assert _locations(folder / "digits.onnx") == set()
        monkeypatch.setattr(files, "EXTERNAL_DATA_BYTES", 4096)
    _derive_each(folder)
    names = ["digits.onnx", "digits.int8.onnx", "digits.fp16.onnx", "digits.opt.onnx"]
    data = [f"{name}.data" for name in names[1:]] + (["digits.onnx.data"] if external_source else [])
    # nothing else in the folder (no temporary, no stray data file) and nothing written beside it
    assert sorted(os.listdir(folder)) == sorted(names + data) and os.listdir(tmp_path) == ["models"]
    x = digits[2][:5]
    for name, atol in (("digits.opt.onnx", 1e-5), ("digits.fp16.onnx", 1e-2), ("digits.int8.onnx", 0.1)):
        got = export.load(folder / name).run(None, {"input": x})[0]
        np.testing.assert_allclose(got, expected, atol=atol, rtol=0)


def test_tensorflow_writes_external_data_in_the_torch_layout(tmp_path, digits):
    pytest.importorskip("tensorflow")
    model = Model(input_shape=(1, 8, 8), output_dim=10, framework="tf")
    model.add_layer("Conv2D", 8, kernel_size=3, activation="relu").add_layer("Flatten")
    model.add_layer("Dense", 10, activation="softmax").build(seed=0)
    report = export.to_onnx(model, tmp_path / "cnn.onnx", external_data=True)  # tf2onnx's large-model path
    assert sorted(os.listdir(tmp_path)) == ["cnn.onnx", "cnn.onnx.data"]     # not tf2onnx's zip
    assert _locations(tmp_path / "cnn.onnx") == {"cnn.onnx.data"}
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-5
    assert "product" not in np.__dict__  # the NumPy 2 shim for tf2onnx is gone again
    x = digits[2][:5].reshape(-1, 1, 8, 8)
    got = export.load(tmp_path / "cnn.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.predict(x), atol=1e-5, rtol=0)
