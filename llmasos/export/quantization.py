"""INT8 quantisation with ONNX Runtime's tools: dynamic, or static (QDQ) with calibration data.

Usage::

    from llmasos import Dataset, export
    export.quantize("model.onnx", "model.int8.onnx", mode="dynamic")
    export.quantize("model.onnx", "model.qdq.onnx", mode="static",
                    calibration=Dataset("train.csv", mode="test"),
                    eval_data=Dataset("test.csv", mode="test"))

Dynamic quantisation stores int8 weights and quantises activations at run time
(``DynamicQuantizeLinear`` + ``MatMulInteger``): no data needed, best for MatMul-heavy models
(transformers, MLPs). Static quantisation fixes activation ranges from calibration data and
writes QuantizeLinear/DequantizeLinear pairs (QDQ, signed int8 both sides, ONNX Runtime's
recommended CPU format), which also covers convolutions. Both first run ONNX Runtime's
pre-processing (graph clean-up and shape inference; the symbolic shape pass needs sympy and is
skipped, as it only matters for transformer fusions with dynamic shapes).

The int8 format depends on the CPU the file will run on (``target``, :mod:`.int8_target`): x86
without VNNI saturates on full-range int8 weights, so there weights get 7 bits. The default,
``"auto"``, takes this machine's CPU; give the deployment's when it differs::

    export.quantize("model.onnx", "model.int8.onnx", target="vnni")   # for a server with VNNI or AMX

The file's ``llmasos.int8`` metadata records the choice (``llmasos info`` prints it).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from ..errors import DataError, ExportError
from .feeds import GraphInput, feed, graph_inputs
from .files import data_file, derived_external_data, save
from .int8_target import choose
from .metadata import INT8
from .providers import check_file
from .transform import OptimizationReport, derive

if TYPE_CHECKING:
    from ..data import Dataset

MODES = ("dynamic", "static")
CALIBRATION_BATCH = 32


def quantize(src: str | os.PathLike, dst: str | os.PathLike, mode: str = "dynamic",
             calibration: "Dataset | None" = None, *, per_channel: bool = False, target: str = "auto",
             calibration_rows: int = 1024, eval_data: "Dataset | None" = None) -> OptimizationReport:
    """Write an INT8 copy of ``src`` at ``dst``; returns size, latency and, with ``eval_data``,
    the metric change against ``src``.

    ``mode="static"`` needs ``calibration``, a Dataset of typical inputs (labels ignored), of
    which the first ``calibration_rows`` rows are used; rows of the wrong shape are a
    :class:`~llmasos.errors.DataError` before anything is written. ``per_channel`` gives each
    output channel of a weight its own scale (more accurate, slightly slower). ``target`` is the
    CPU the file is for: "auto" (this machine's), "avx2", "avx512" (without VNNI: 7-bit weights),
    "vnni" (AVX-512 VNNI, AVX-VNNI or AMX: 8-bit) or "arm64" (8-bit).

    ```python
    report = export.quantize("model.onnx", "model.int8.onnx", eval_data=Dataset("test.csv", mode="test"))
    report.size_ratio, report.speedup(32), report.metric["change"]        # (0.26, 2.0, 0.0)
    export.quantize("model.onnx", "model.qdq.onnx", mode="static", calibration=Dataset("calib.csv", mode="test"))
    ```
    """
    if mode not in MODES:
        raise ExportError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    chosen = choose(target)
    if mode == "dynamic" and calibration is not None:
        raise ExportError("calibration data is only used by mode='static'; dynamic quantisation needs none")
    if mode == "static":
        if calibration is None:
            raise ExportError("mode='static' needs calibration=Dataset(...): typical inputs to measure "
                              "activation ranges on (a few hundred rows)")
        reader = DatasetReader(calibration, graph_inputs(check_file(src)), calibration_rows)
    method = f"int8 {mode}" + (" QDQ" if mode == "static" else "") + (" per-channel" if per_channel else "")
    record = {"mode": mode, "target": chosen.target, "reduce_range": chosen.reduce_range,
              "weight_type": "int8", "activation_type": "uint8" if mode == "dynamic" else "int8",
              "per_channel": per_channel, "detected_on": chosen.detected_on}

    def write(source: str, output: str) -> None:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

        external = derived_external_data(source)  # each tool writes <file>.data beside its file
        with tempfile.TemporaryDirectory() as folder:
            prepared = _preprocess(source, Path(folder) / "prepared.onnx", mode == "dynamic", external)
            if mode == "dynamic":
                quantize_dynamic(prepared, output, weight_type=QuantType.QInt8, per_channel=per_channel,
                                 reduce_range=chosen.reduce_range, op_types_to_quantize=DYNAMIC_OPS,
                                 use_external_data_format=external)
            else:
                quantize_static(prepared, output, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                                reduce_range=chosen.reduce_range, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8, use_external_data_format=external)

    return derive(src, dst, method, write, eval_data, check="int8", metadata={INT8: record})


# What dynamic int8 quantises. Not Conv: ONNX Runtime's CPU ConvInteger takes only uint8 weights
# (quantise a CNN statically instead). Gemm has no dynamic int8 form: it is split into MatMul + Add.
DYNAMIC_OPS = ["MatMul", "Attention", "LSTM", "Gather"]


def _preprocess(source: str, target: Path, split_gemm: bool, external: bool) -> str:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(source, str(target), skip_symbolic_shape=True, save_as_external_data=external,
                      all_tensors_to_one_file=True, external_data_location=data_file(target).name)
    if split_gemm:
        # after pre-processing, whose graph optimisation fuses MatMul + Add back into Gemm
        model = onnx.load(str(target))
        _split_gemm(model.graph)
        save(model, target, external)
    return str(target)


def _split_gemm(graph: onnx.GraphProto) -> None:
    """Rewrite ``Gemm(A, B, C)`` with a constant B used by no other node as ``MatMul(A, B) + C``
    (B transposed in place when ``transB``), so dynamic quantisation reaches the linear layers
    that exporters write as Gemm."""
    weights = {t.name: t for t in graph.initializer}
    uses = Counter(name for node in graph.node for name in node.input)
    nodes = []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in weights or uses[node.input[1]] > 1 or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        b = weights[node.input[1]]
        if attrs.get("transB", 0):
            b.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(b).T.copy(), b.name))
        if len(node.input) > 2 and node.input[2]:
            product = f"{node.output[0]}_matmul"
            nodes.append(onnx.helper.make_node("MatMul", node.input[:2], [product], name=f"{node.name}_matmul"))
            nodes.append(onnx.helper.make_node("Add", [product, node.input[2]], node.output, name=f"{node.name}_add"))
        else:
            nodes.append(onnx.helper.make_node("MatMul", node.input[:2], node.output, name=f"{node.name}_matmul"))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # inferred shapes of the old graph (a transposed B); the quantiser re-infers


class DatasetReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a Dataset: ``get_next()`` returns a
    feed dict per batch, then None. The first batch is checked against the model's input when the
    reader is made, so a shape mistake fails before calibration starts."""

    def __init__(self, dataset: "Dataset", inputs: list[GraphInput], rows: int) -> None:
        if not hasattr(dataset, "batches"):
            raise DataError(f"calibration must be an llmasos Dataset, got {type(dataset).__name__}")
        self.inputs = inputs
        feed(inputs, next(iter(dataset.batches(CALIBRATION_BATCH)))[0], where="calibration data")
        self._batches = islice(dataset.batches(CALIBRATION_BATCH), -(-rows // CALIBRATION_BATCH))

    def get_next(self) -> dict[str, Any] | None:
        x = next(self._batches, (None, None))[0]
        return None if x is None else feed(self.inputs, x, where="calibration data")
