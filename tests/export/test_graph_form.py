"""The form exported graphs are written in: GELU as ONNX Runtime's fusion matches it (the same
bits), projections of one tensor packed into one MatMul, no intermediate shapes."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from llmasos.export.graph_form import conform_for_runtime, gelu_for_fusion, pack_projections, unpack_projections

WIDTH = 16


def _dense_gelu(half_first: bool = True) -> onnx.ModelProto:
    """x @ w + b over a sequence (a 2-D x would become a Gemm), then GELU written as torch's dynamo exporter writes it: x * (0.5 * (1 + erf(x / √2)))."""
    rng = np.random.default_rng(0)
    half = ["half", "one_plus"] if half_first else ["one_plus", "half"]
    nodes = [helper.make_node("MatMul", ["input", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["x"]),
             helper.make_node("Div", ["x", "sqrt2"], ["scaled"]), helper.make_node("Erf", ["scaled"], ["erf"]),
             helper.make_node("Add", ["erf", "one"], ["one_plus"]), helper.make_node("Mul", half, ["half_product"]),
             helper.make_node("Mul", ["x", "half_product"], ["output"])]
    weights = [numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.standard_normal(WIDTH).astype(np.float32), "b"),
               numpy_helper.from_array(np.array(math.sqrt(2), np.float32), "sqrt2"),
               numpy_helper.from_array(np.array(1.0, np.float32), "one"),
               numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "length", WIDTH])
    graph = helper.make_graph(nodes, "gelu", [value("input")], [value("output")], weights, value_info=[value("x")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _session(model: onnx.ModelProto, level: ort.GraphOptimizationLevel, dump: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    if dump:
        options.optimized_model_filepath = dump
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_gelu_rewrite_gives_the_same_bits_and_onnx_runtime_fuses_it(tmp_path):
    for half_first in (True, False):
        before, after = _dense_gelu(half_first), _dense_gelu(half_first)
        assert gelu_for_fusion(after.graph) == 1
        onnx.checker.check_model(after, full_check=True)
        x = np.random.default_rng(1).standard_normal((2, 7, WIDTH)).astype(np.float32) * 3
        unfused = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        want = _session(before, unfused).run(None, {"input": x})[0]
        np.testing.assert_array_equal(_session(after, unfused).run(None, {"input": x})[0], want)
        for model, fused in ((before, False), (after, True)):
            dump = str(tmp_path / "opt.onnx")
            _session(model, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, dump)
            ops = [n.op_type for n in onnx.load(dump).graph.node]
            assert ("BiasGelu" in ops) is fused and ("Erf" in ops) is not fused


def test_a_gelu_whose_parts_are_used_elsewhere_or_other_constants_is_left_alone():
    shared = _dense_gelu()
    shared.graph.output.append(helper.make_tensor_value_info("half_product", TensorProto.FLOAT, ["batch", "length", WIDTH]))
    assert gelu_for_fusion(shared.graph) == 0
    other = _dense_gelu()
    next(t for t in other.graph.initializer if t.name == "half").CopyFrom(
        numpy_helper.from_array(np.array(0.25, np.float32), "half"))
    assert gelu_for_fusion(other.graph) == 0


def test_conform_for_runtime_drops_intermediate_shapes_only():
    model = _dense_gelu()
    conform_for_runtime(model.graph)
    assert len(model.graph.value_info) == 0
    assert [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == ["batch", "length", WIDTH]


def _projections() -> onnx.ModelProto:
    """x read by three MatMul + bias Adds (one bias written first), a bias-less MatMul, and a
    MatMul whose weight another MatMul reads too; all summed into one output."""
    rng = np.random.default_rng(2)
    widths = {"q": WIDTH, "k": WIDTH, "v": 2 * WIDTH, "plain": WIDTH, "tied": WIDTH}
    nodes, weights, ends = [], [], []
    for role, width in widths.items():
        weight = "shared" if role == "tied" else f"w_{role}"
        if role != "tied":
            weights.append(numpy_helper.from_array(rng.standard_normal((WIDTH, width)).astype(np.float32), weight))
        nodes.append(helper.make_node("MatMul", ["x", weight], [f"{role}_mm"]))
        end = f"{role}_mm"
        if role in ("q", "k", "v"):
            weights.append(numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), f"b_{role}"))
            pair = [f"b_{role}", end] if role == "k" else [end, f"b_{role}"]
            nodes.append(helper.make_node("Add", pair, [role]))
            end = role
        ends.append(end)
    nodes.append(helper.make_node("MatMul", ["x", "shared"], ["tied_again"]))
    nodes.append(helper.make_node("Concat", [*ends, "tied_again"], ["y"], axis=-1))
    weights.append(numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32), "shared"))
    graph = helper.make_graph(nodes, "projections",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length", WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length", 7 * WIDTH])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_projections_of_one_tensor_are_packed_into_one_matmul_with_the_same_numbers():
    before, packed = _projections(), _projections()
    assert pack_projections(packed.graph) == 1
    onnx.checker.check_model(packed, full_check=True)
    ops = [(n.op_type, list(n.input)) for n in packed.graph.node]
    # q, k, v: one MatMul, one Add, one Split; the bias-less MatMul alone is left, as are both readers of the tied weight
    assert [op for op, _ in ops].count("MatMul") == 4 and [op for op, _ in ops].count("Split") == 1
    assert [op for op, _ in ops].count("Add") == 1
    sizes = next(t for t in packed.graph.initializer if t.name.endswith("_sizes"))
    assert numpy_helper.to_array(sizes).tolist() == [WIDTH, WIDTH, 2 * WIDTH]
    names = {t.name for t in packed.graph.initializer}
    assert not names & {"w_q", "w_k", "w_v", "b_q", "b_k", "b_v"} and {"w_plain", "shared"} <= names
    x = np.random.default_rng(3).standard_normal((2, 5, WIDTH)).astype(np.float32)
    plain = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = _session(before, plain).run(None, {"x": x})[0]
    np.testing.assert_allclose(_session(packed, plain).run(None, {"x": x})[0], want, rtol=1e-6, atol=1e-6)

    assert unpack_projections(packed.graph) == 1
    onnx.checker.check_model(packed, full_check=True)
    assert sorted(n.op_type for n in packed.graph.node) == sorted(n.op_type for n in before.graph.node)
    assert len(packed.graph.initializer) == len(before.graph.initializer)
    np.testing.assert_allclose(_session(packed, plain).run(None, {"x": x})[0], want, rtol=1e-6, atol=1e-6)


def test_projections_stay_apart_below_opset_13():
    model = _projections()
    conform_for_runtime(model.graph, opset=12)
    assert "Split" not in [n.op_type for n in model.graph.node]
    conform_for_runtime(model.graph)
    assert [n.op_type for n in model.graph.node].count("Split") == 1
