"""Export of every layer kind from each framework, verified by ONNX Runtime and by onnx's
reference evaluator; torch- and TF-made files that cannot be told apart; dynamic dimensions."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from llmasos import Model, export
from llmasos.layers import builtin_kinds
from llmasos.spec import ModelSpec

from ..conftest import framework_params
from ..test_parity import SPECS, random_inputs, randomized_weights
from .conftest import REFERENCE_BUGS, case_params


def _run(path, inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), inputs)})


def test_every_layer_kind_has_an_export_case():
    used = {layer.kind for make in SPECS.values() for layer in make().layers}
    assert used == set(builtin_kinds()), f"layer kinds never exported: {sorted(set(builtin_kinds()) - used)}"


@pytest.mark.parametrize("case, framework", case_params())
def test_export_matches_the_model_in_onnxruntime(exported, case, framework):
    model, path, report = exported(case, framework)
    assert report.verified and report.atol == 1e-5 and report.max_abs_diff <= report.atol
    onnx.checker.check_model(str(path), full_check=True)
    assert sum(report.op_counts.values()) == len(onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("case, framework", case_params(REFERENCE_BUGS))
def test_export_matches_the_model_in_the_reference_evaluator(exported, case, framework):
    model, path, _ = exported(case, framework)
    assert export.verify(model, path, runtime="reference") <= 1e-5


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.parametrize("case", sorted(SPECS))
def test_torch_and_tf_files_look_the_same_and_agree(exported, case):
    (_, torch_path, _), (_, tf_path, _) = exported(case, "torch"), exported(case, "tf")
    torch_info, tf_info = export.info(torch_path), export.info(tf_path)
    for key in ("inputs", "outputs", "opset"):
        assert torch_info[key] == tf_info[key], key
    assert [o["name"] for o in torch_info["outputs"]] == SPECS[case]().outputs
    inputs = random_inputs(SPECS[case](), batch=4, seed=7)
    for a, b in zip(_run(torch_path, inputs), _run(tf_path, inputs)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("framework", framework_params())
@pytest.mark.parametrize("case", ["conv-same-stride2-flatten-dense", "embedding-lstm", "functional-skip-two-outputs"])
def test_batch_is_dynamic(exported, case, framework):
    model, path, _ = exported(case, framework)
    for batch in (1, 64):
        inputs = random_inputs(model.spec, batch=batch, seed=batch)
        expected = model.compiled.predict(inputs)
        for want, got in zip(expected, _run(path, inputs)):
            assert got.shape[0] == batch
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def _text_model(framework: str) -> Model:
    spec = ModelSpec.sequential((None,), dtype="int64", name="ids")
    spec.add("Embedding", 16, vocab_size=50).add("MultiHeadAttention", 2, causal=True).add("LayerNorm")
    spec.add("Dense", 5, name="logits")
    model = Model(spec=spec, framework=framework).build(seed=0)
    model.set_weights(randomized_weights(spec))
    return model


@pytest.mark.parametrize("framework", framework_params())
def test_sequence_length_is_dynamic_for_text_models(tmp_path, framework):
    model = _text_model(framework)
    report = export.to_onnx(model, tmp_path / "text.onnx")
    assert report.inputs == [{"name": "ids", "dtype": "int64", "shape": ["batch_size", "sequence_length"], "layout": "NL"}]
    assert report.outputs[0]["shape"] == ["batch_size", "sequence_length", 5]
    rng = np.random.default_rng(0)
    for length in (1, 3, 17):
        ids = rng.integers(0, 50, size=(2, length))
        np.testing.assert_allclose(_run(tmp_path / "text.onnx", [ids])[0], model.predict(ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("framework", framework_params())
def test_opset_can_be_chosen(tmp_path, exported, framework):
    model, _, _ = exported("conv1d-layernorm", framework)
    report = export.to_onnx(model, tmp_path / "m.onnx", opset=17)
    written = onnx.load(str(tmp_path / "m.onnx")).opset_import
    assert report.opset == 17 and {o.version for o in written if o.domain in ("", "ai.onnx")} == {17}


@pytest.mark.parametrize("framework", framework_params())
def test_export_from_an_h5_file_and_with_a_sample(tmp_path, exported, framework):
    model, _, _ = exported("reshape", framework)
    h5 = model.save(tmp_path / "m.h5")
    sample = random_inputs(model.spec, batch=5, seed=3)[0]
    report = export.to_onnx(h5, tmp_path / "m.onnx", sample=sample)
    assert report.framework == framework and report.max_abs_diff <= 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5", "m.onnx"]  # no temporary file left
