"""What an exported file says about itself, and ``export.info`` reading it back."""

from __future__ import annotations

import json

import onnx
import pytest

import llmasos
from llmasos import export
from llmasos.spec import ModelSpec

from ..conftest import framework_params


@pytest.fixture(scope="module")
def exported_digits(tmp_path_factory, digits_mlp):
    path = tmp_path_factory.mktemp("metadata") / "digits.onnx"
    report = export.to_onnx(digits_mlp["h5"], path)     # from the .h5: its metadata must travel too
    return path, report


def test_metadata_props_say_what_the_file_is(exported_digits, digits_mlp):
    path, _ = exported_digits
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    model = digits_mlp["model"]
    assert props["llmasos_version"] == llmasos.__version__
    assert props["framework"] == model.framework and props["framework_version"]
    assert ModelSpec.from_json(props["spec"]) == model.spec
    assert json.loads(props["inputs"]) == [{"name": "input", "dtype": "float32", "shape": ["batch_size", 64], "layout": "NC"}]
    assert json.loads(props["outputs"])[0]["name"] == model.spec.outputs[0]
    assert json.loads(props["labels"]) == [str(i) for i in range(10)]
    assert json.loads(props["preprocessing"]) == {"scale": 1 / 16}
    assert proto.producer_name == "llmasos" and proto.graph.name == model.name


def test_info_gathers_shapes_ops_metadata_and_the_layer_table(exported_digits, digits_mlp):
    path, report = exported_digits
    details = export.info(path)
    assert details["inputs"] == report.inputs and details["outputs"] == report.outputs
    assert details["ops"] == report.op_counts and details["opset"] == {"ai.onnx": 18}
    assert details["weights"] == digits_mlp["model"].spec.parameter_count()
    assert details["size_bytes"] == path.stat().st_size == report.size_bytes
    assert details["labels"][3] == "3" and details["framework"] == digits_mlp["model"].framework
    assert "Total params: 4,810" in details["summary"]


@pytest.mark.parametrize("framework", framework_params())
def test_images_are_nchw_in_the_file_whatever_the_framework(tmp_path, exported, framework):
    _, path, _ = exported("conv-same-stride2-flatten-dense", framework)
    (image,) = export.info(path)["inputs"]
    assert image == {"name": "input", "dtype": "float32", "shape": ["batch_size", 3, 10, 10], "layout": "NCHW"}


def test_info_reads_files_llmasos_did_not_write(tmp_path):
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 3])])
    onnx.save(onnx.helper.make_model(graph, producer_name="elsewhere"), str(tmp_path / "relu.onnx"))
    details = export.info(tmp_path / "relu.onnx")
    assert details["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["n", 3]}]
    assert details["producer"] == "elsewhere" and "framework" not in details and "summary" not in details
