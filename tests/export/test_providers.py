"""Execution providers: short names, fallback that warns and names the package, what really runs."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnx.helper as h
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from llmasos import export
from llmasos.errors import OnnxFileError, ProviderError
from llmasos.export.providers import CPU, SHORT_NAMES, resolve, session

AVAILABLE = ort.get_available_providers()
ABSENT = next(short for short, name in SHORT_NAMES.items() if name not in AVAILABLE)  # e.g. cuda


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    graph = h.make_graph([h.make_node("Add", ["x", "b"], ["y"])], "g",
                         [h.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
                         [numpy_helper.from_array(np.ones(2, np.float32), "b")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("providers") / "add.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture
def pretend_available(monkeypatch):
    """Make ONNX Runtime claim providers this machine lacks (it then falls back to CPU itself)."""
    def pretend(*names: str) -> None:
        monkeypatch.setattr(ort, "get_available_providers", lambda: [*names, *AVAILABLE])
    return pretend


def test_providers_lists_this_machine_by_short_and_real_name():
    assert export.providers()["cpu"] == CPU
    assert set(export.providers().values()) == set(AVAILABLE)


def test_every_short_name_is_an_onnxruntime_provider():
    assert set(SHORT_NAMES.values()) <= set(ort.get_all_providers())
    assert SHORT_NAMES["rocm"] == "MIGraphXExecutionProvider"  # ROCm's own provider left in ORT 1.23


def test_resolve_always_ends_on_cpu():
    assert resolve("cpu") == [(CPU, {})]
    assert resolve([]) == [(CPU, {})]
    assert resolve(["CPUExecutionProvider", "cpu"]) == [(CPU, {})]


@pytest.mark.skipif("CUDAExecutionProvider" in AVAILABLE, reason="CUDA is installed here")
def test_missing_provider_warns_with_package_or_raises_when_strict():
    with pytest.warns(RuntimeWarning, match="onnxruntime-gpu"):
        assert resolve("cuda,cpu") == [(CPU, {})]
    with pytest.raises(ProviderError, match="onnxruntime-gpu"):
        resolve(["cuda", "cpu"], strict=True)


@pytest.mark.skipif("MIGraphXExecutionProvider" in AVAILABLE, reason="MIGraphX is installed here")
def test_rocm_names_migraphx_and_its_package():
    with pytest.raises(ProviderError, match="MIGraphX.*1.23"):
        resolve("rocm", strict=True)


def test_unknown_provider_is_an_error_even_without_strict():
    with pytest.raises(ProviderError, match="unknown execution provider 'tpu'.*openvino"):
        resolve(["tpu", "cpu"])


def test_provider_options_pass_through(pretend_available):
    pretend_available("OpenVINOExecutionProvider", "QNNExecutionProvider")
    assert resolve([("openvino", {"device_type": "NPU"}), ("qnn", {"backend_type": "htp"})]) == [
        ("OpenVINOExecutionProvider", {"device_type": "NPU"}),
        ("QNNExecutionProvider", {"backend_type": "htp"}), (CPU, {})]
    assert resolve(("openvino", {"device_type": "GPU"})) == [("OpenVINOExecutionProvider", {"device_type": "GPU"}),
                                                           (CPU, {})]


def test_session_runs_on_cpu(model_path):
    sess = export.load(model_path)
    assert sess.get_providers() == [CPU]
    np.testing.assert_array_equal(sess.run(None, {"x": np.zeros((2, 2), np.float32)})[0], np.ones((2, 2)))


def test_silent_fallback_is_reported(model_path, pretend_available):
    pretend_available(SHORT_NAMES[ABSENT])  # ORT accepts the name, then quietly runs on CPU
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ORT's own warning
        with pytest.warns(RuntimeWarning, match=f"{SHORT_NAMES[ABSENT]} was not used.*{CPU}"):
            assert session(model_path, [ABSENT, "cpu"]).get_providers() == [CPU]
        with pytest.raises(ProviderError, match="not used"):
            session(model_path, [ABSENT], strict=True)


def test_provider_that_fails_to_initialise(model_path, pretend_available, monkeypatch):
    pretend_available("QNNExecutionProvider")
    real = ort.InferenceSession

    def failing(path, sess_options=None, providers=(), provider_options=()):
        if "QNNExecutionProvider" in providers:
            raise RuntimeError("libQnnHtp.so: cannot open shared object file")
        return real(path, sess_options=sess_options, providers=providers, provider_options=provider_options)

    monkeypatch.setattr(ort, "InferenceSession", failing)
    with pytest.warns(RuntimeWarning, match="QNNExecutionProvider failed to initialise.*libQnnHtp"):
        assert session(model_path, [("qnn", {"backend_type": "htp"}), "cpu"]).get_providers() == [CPU]
    with pytest.raises(ProviderError, match="QNNExecutionProvider failed to initialise"):
        session(model_path, ["qnn", "cpu"], strict=True)


def test_bad_files(tmp_path, model_path):
    with pytest.raises(OnnxFileError, match="no ONNX file"):
        session(tmp_path / "missing.onnx")
    with pytest.raises(OnnxFileError, match="folder"):
        session(tmp_path)
    (tmp_path / "text.onnx").write_text("name,label\n1,2\n")
    with pytest.raises(OnnxFileError, match="not an ONNX model"):
        session(tmp_path / "text.onnx")
    model = onnx.load(str(model_path))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.data", size_threshold=0)
    assert session(tmp_path / "ext.onnx").get_providers() == [CPU]
    (tmp_path / "ext.data").unlink()
    with pytest.raises(OnnxFileError, match="ext.data"):
        session(tmp_path / "ext.onnx")


@pytest.mark.parametrize("short, name", [
    pytest.param("cuda", "CUDAExecutionProvider", marks=pytest.mark.gpu),
    pytest.param("tensorrt", "TensorrtExecutionProvider", marks=pytest.mark.gpu),
    ("openvino", "OpenVINOExecutionProvider")])
def test_real_accelerator_provider(model_path, short, name):
    if name not in AVAILABLE:
        pytest.skip(f"{name} is not in this ONNX Runtime ({', '.join(AVAILABLE)}); install the package "
                    "that brings it to run this test")
    options = {"device_type": "CPU"} if short == "openvino" else {}  # OpenVINO's CPU device runs anywhere
    sess = session(model_path, [(short, options), "cpu"], strict=True)
    assert sess.get_providers()[0] == name
    np.testing.assert_allclose(sess.run(None, {"x": np.zeros((2, 2), np.float32)})[0], 1.0)
