"""Every way an export or a conversion can be asked for wrongly: a named error that says what
was wrong, and nothing half-written left behind."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from llmasos import Dataset, Model, export
from llmasos.errors import DataError, ExportError, ModelFileError, OnnxFileError, VerificationError
from llmasos.spec import ModelSpec

from ..conftest import framework_params


def _model(framework: str, spec: ModelSpec, seed: int = 0) -> Model:
    return Model(spec=spec, framework=framework).build(seed=seed)


def _conv(framework: str, seed: int = 0) -> Model:
    return _model(framework, ModelSpec.sequential((2, 9, 9)).add("Conv2D", 3, kernel_size=4, stride=2, padding="same")
                  .add("Flatten").add("Dense", 4), seed)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, digits_mlp):
    path = tmp_path_factory.mktemp("bad") / "digits.onnx"
    export.to_onnx(digits_mlp["model"], path)
    return path


@pytest.mark.parametrize("framework", framework_params())
def test_a_model_never_built_is_refused_unless_allowed(tmp_path, framework):
    model = Model(input_dim=4, framework=framework).add_layer("Dense", 2)
    with pytest.raises(ExportError, match="never built, trained or given weights.*allow_untrained=True"):
        export.to_onnx(model, tmp_path / "m.onnx")
    assert not model.built and list(tmp_path.iterdir()) == []
    assert export.to_onnx(model, tmp_path / "m.onnx", allow_untrained=True).verified


@pytest.mark.tf
def test_an_op_the_opset_lacks_names_the_layer_the_framework_and_the_op(tmp_path):
    spec = ModelSpec.sequential((5, 8)).add("Dense", 8).add("MultiHeadAttention", 2).add("LayerNorm")
    with pytest.raises(ExportError) as caught:
        export.to_onnx(_model("tf", spec), tmp_path / "m.onnx", opset=9)
    message = str(caught.value)
    assert "layer 'multi_head_attention' (MultiHeadAttention)" in message and "from tf at opset 9" in message
    assert "Einsum" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.torch
def test_an_opset_the_torch_exporter_cannot_write_is_an_error_not_a_surprise(tmp_path):
    with pytest.raises(ExportError, match="opset 9 was asked for but the torch exporter wrote opset 18"):
        export.to_onnx(_conv("torch"), tmp_path / "m.onnx", opset=9)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.torch
def test_torchscript_fallback_where_dynamo_freezes_a_dynamic_dimension(tmp_path):
    # the dynamo exporter unrolls nn.GRU over the example's length: the file would take one length
    # only, so the export falls back to the TorchScript exporter and the report says why
    import onnxruntime as ort

    spec = ModelSpec.sequential((None, 6)).add("Dense", 6).add("GRU", 4, return_sequences=True)
    model = _model("torch", spec)
    report = export.to_onnx(model, tmp_path / "m.onnx")
    assert "TorchScript fallback: the dynamo exporter fixed dynamic axes" in report.exporter
    assert report.inputs[0]["shape"][:2] == ["batch_size", "sequence_length"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    for length in (1, 9):
        x = np.random.default_rng(length).standard_normal((3, length, 6)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x), atol=1e-5)


@pytest.mark.parametrize("opset", [0, 99, "18", 18.0])
def test_an_impossible_opset_is_refused_before_any_work(tmp_path, digits_mlp, opset):
    with pytest.raises(ExportError, match=f"opset must be an int from 7 to .*got {opset!r}"):
        export.to_onnx(digits_mlp["model"], tmp_path / "m.onnx", opset=opset)


def test_a_missing_folder_is_named(tmp_path, digits_mlp, onnx_file):
    missing = tmp_path / "no" / "such"
    with pytest.raises(ExportError, match=f"the folder {missing} does not exist"):
        export.to_onnx(digits_mlp["model"], missing / "m.onnx")
    with pytest.raises(ExportError, match="does not exist"):
        export.quantize(onnx_file, missing / "m.int8.onnx")


def test_a_source_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(ExportError, match="expected an llmasos Model or the path of an .h5 file, got int"):
        export.to_onnx(3, tmp_path / "m.onnx")
    with pytest.raises(ModelFileError):
        export.to_onnx(tmp_path / "absent.h5", tmp_path / "m.onnx")


def test_a_file_that_is_not_onnx_is_named_by_every_reader(tmp_path, digits_mlp):
    fake = tmp_path / "fake.onnx"
    fake.write_text("this is not a protobuf")
    readers = [export.info, lambda p: export.quantize(p, tmp_path / "q.onnx"), lambda p: export.bench(p),
               lambda p: export.to_fp16(p, tmp_path / "h.onnx"), lambda p: export.optimize(p, tmp_path / "o.onnx"),
               lambda p: export.verify(digits_mlp["model"], p)]
    for read in readers:
        with pytest.raises(OnnxFileError, match="is not an ONNX model"):
            read(fake)
    with pytest.raises(OnnxFileError, match="no ONNX file at"):
        export.info(tmp_path / "absent.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.onnx"]


def test_missing_external_data_is_named(tmp_path, onnx_file):
    proto = onnx.load(str(onnx_file))
    onnx.save_model(proto, str(tmp_path / "big.onnx"), save_as_external_data=True, location="big.onnx.data",
                    size_threshold=0)
    assert export.info(tmp_path / "big.onnx")["size_bytes"] > (tmp_path / "big.onnx").stat().st_size
    (tmp_path / "big.onnx.data").unlink()
    for read in (export.info, lambda p: export.quantize(p, tmp_path / "q.onnx")):
        with pytest.raises(OnnxFileError, match=r"external-data file\(s\) \['big.onnx.data'\], missing beside it"):
            read(tmp_path / "big.onnx")


def test_calibration_rows_of_the_wrong_shape_are_refused_before_writing(tmp_path, onnx_file):
    wrong = Dataset(np.zeros((40, 63), np.float32), mode="test")
    with pytest.raises(DataError, match=r"calibration data: input 'input' expects shape \(batch, 64\), got \(32, 63\)"):
        export.quantize(onnx_file, tmp_path / "q.onnx", mode="static", calibration=wrong)
    assert list(tmp_path.iterdir()) == []


def test_quantisation_arguments_that_cannot_work(tmp_path, onnx_file, digits_mlp):
    with pytest.raises(ExportError, match="mode must be one of 'dynamic', 'static', got 'int4'"):
        export.quantize(onnx_file, tmp_path / "q.onnx", mode="int4")
    with pytest.raises(ExportError, match="mode='static' needs calibration=Dataset"):
        export.quantize(onnx_file, tmp_path / "q.onnx", mode="static")
    with pytest.raises(ExportError, match="only used by mode='static'"):
        export.quantize(onnx_file, tmp_path / "q.onnx", calibration=digits_mlp["train"])
    with pytest.raises(ExportError, match="level must be one of 'basic', 'extended', 'all'"):
        export.optimize(onnx_file, tmp_path / "o.onnx", level="max")


@pytest.mark.parametrize("framework", framework_params())
def test_a_file_that_computes_something_else_fails_verification(tmp_path, framework):
    export.to_onnx(_conv(framework, seed=0), tmp_path / "a.onnx")
    with pytest.raises(VerificationError, match=r"outputs differ by up to [0-9.e+-]+, above the tolerance 1e-05") \
            as caught:
        export.verify(_conv(framework, seed=1), tmp_path / "a.onnx")
    assert caught.value.max_abs_diff > caught.value.atol == 1e-5


@pytest.mark.parametrize("framework", framework_params())
def test_a_failed_verification_leaves_no_file(tmp_path, framework):
    with pytest.raises(VerificationError, match="above the tolerance 1e-15"):
        export.to_onnx(_conv(framework), tmp_path / "m.onnx", atol=1e-15)
    assert list(tmp_path.iterdir()) == []
