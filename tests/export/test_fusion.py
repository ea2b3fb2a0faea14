"""export.optimize on transformers: ONNX Runtime's transformer fusions (one Attention op per
block, as Optimum's O2 gives) on a small BERT, the same numbers for any padding, and a rewrite
that is slower than its source never kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from llmasos import export, zoo
from llmasos.errors import ExportError
from llmasos.export import transform
from llmasos.export.fusion import split_unsqueezes

BERT = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 128}  # random_feed times length 128


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("fusion") / "bert.onnx"
    export.to_onnx(zoo.load("bert", "torch", config=BERT), path)
    return path


def _padded(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Padding on the right, on the left and between tokens: the fused mask must take them all."""
    mask = np.ones((3, 12), np.int64)
    mask[0, 8:], mask[1, :5], mask[2, 3:6] = 0, 0, 0
    return {"input_ids": rng.integers(0, 100, (3, 12)), "attention_mask": mask,
            "token_type_ids": np.zeros((3, 12), np.int64)}


def _run(path, feed) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


@pytest.mark.torch
def test_a_bert_export_fuses_into_one_attention_op_per_block(tmp_path, bert_onnx):
    target = tmp_path / "bert.opt.onnx"
    report = export.optimize(bert_onnx, target, max_slowdown=None)
    ops = export.info(target)["ops"]
    assert report.method == "onnxruntime transformer fusions"
    assert ops.get("com.microsoft.Attention") == BERT["num_hidden_layers"]
    # on CPU residual Adds stay apart from their LayerNormalization: ONNX Runtime's CPU SkipLayerNormalization is slower
    assert "com.microsoft.SkipLayerNormalization" not in ops
    assert ops.get("LayerNormalization") == 2 * BERT["num_hidden_layers"] + 1
    assert "Softmax" not in ops and "Erf" not in ops  # attention and GELU are all fused
    feed = _padded(np.random.default_rng(0))
    np.testing.assert_allclose(_run(target, feed), _run(bert_onnx, feed), atol=1e-5)
    assert export.info(target)["optimization"] == ["onnxruntime transformer fusions"]


@pytest.mark.torch
def test_a_rewrite_slower_than_its_source_is_not_kept(tmp_path, bert_onnx):
    # every latency ratio is above 0: each rewrite counts as slower, and the source graph is kept
    report = export.optimize(bert_onnx, tmp_path / "same.onnx", max_slowdown=0.0)
    assert report.method.startswith("none: slower after onnxruntime transformer fusions")
    assert "onnxruntime all optimisation" in report.method
    assert export.info(tmp_path / "same.onnx")["ops"] == export.info(bert_onnx)["ops"]
    # the kept copy is the source: its speed-up is 1, not the noise between two timings of one graph
    assert report.latency_ms == report.source_latency_ms
    assert all(report.speedup(batch) == 1.0 for batch in report.latency_ms)


@pytest.mark.torch
def test_optimize_times_its_source_once_whatever_it_tries(tmp_path, bert_onnx, monkeypatch):
    # three rewrites are tried (fusions, plain optimisation, the copy): the source is timed beside the first only,
    # and the copy takes the source's figures
    timed = []
    real = transform._latencies

    def counting(*paths):
        timed.append(paths)
        return real(*paths)

    monkeypatch.setattr(transform, "_latencies", counting)
    report = export.optimize(bert_onnx, tmp_path / "same.onnx", max_slowdown=0.0)
    assert report.method.startswith("none: slower after")
    assert len(timed) == 2            # the copy at the end is not timed: it is the source
    assert [Path(bert_onnx) in paths for paths in timed] == [True, False]
    assert set(report.source_latency_ms) == set(report.latency_ms) == set(transform.LATENCY_BATCHES)


@pytest.mark.torch
def test_a_bert_export_is_in_the_form_onnx_runtime_fuses_fast(tmp_path, bert_onnx):
    # GELU with its bias becomes one BiasGelu in a default session; no recorded intermediate shapes,
    # so residual Add + LayerNormalization stay two kernels (ONNX Runtime's CPU SkipLayerNormalization is slower)
    assert len(onnx.load(bert_onnx).graph.value_info) == 0
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "session.onnx")
    ort.InferenceSession(str(bert_onnx), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(tmp_path / "session.onnx").graph.node]
    assert ops.count("BiasGelu") == BERT["num_hidden_layers"] and "Erf" not in ops
    assert "SkipLayerNormalization" not in ops
    assert ops.count("LayerNormalization") == 2 * BERT["num_hidden_layers"] + 1


@pytest.mark.torch
def test_transformer_true_refuses_a_file_without_attention(tmp_path, bert_onnx):
    plain = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]))
    onnx.save(plain, tmp_path / "relu.onnx")
    with pytest.raises(ExportError, match="not a transformer"):
        export.optimize(tmp_path / "relu.onnx", tmp_path / "o.onnx", transformer=True)
    report = export.optimize(bert_onnx, tmp_path / "plain.onnx", transformer=False, max_slowdown=None)
    assert report.method == "onnxruntime all optimisation"


def test_split_unsqueezes_keeps_the_result(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="u")], "g",
        [helper.make_tensor_value_info("x", TensorProto.INT64, ["b", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
        [numpy_helper.from_array(np.array([2, 1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    split_unsqueezes(model.graph)
    assert [n.op_type for n in model.graph.node] == ["Unsqueeze", "Unsqueeze"]
    onnx.save(model, tmp_path / "split.onnx")
    x = np.arange(6).reshape(2, 3)
    assert _run(tmp_path / "split.onnx", {"x": x}).shape == (2, 1, 1, 3)
