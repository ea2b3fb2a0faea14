"""Derived files (graph-optimised, fp16, int8) are compared with their source on sample inputs
before they are renamed into place: fp32 rewrites within to_onnx's tolerance, fp16 within a
relative bound, int8 reported; NaN or Inf always refused, leaving the old target untouched."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from llmasos import export
from llmasos.errors import VerificationError
from llmasos.export.validate import verify_derived


def _mlp(path, shift: float = 0.0, w1: float | None = None) -> None:
    """x (batch_size, 16) -> MatMul -> Relu -> MatMul -> y (batch_size, 10); random weights, the
    second shifted by ``shift``, the first all ``w1`` if given."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((16, 32)) * 0.3 if w1 is None else np.full((16, 32), w1)).astype(np.float32)
    w2 = (rng.standard_normal((32, 10)) * 0.3 + shift).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch_size", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch_size", 10])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


@pytest.fixture
def mlp(tmp_path):
    _mlp(tmp_path / "mlp.onnx")
    return tmp_path / "mlp.onnx"


def test_each_derived_writer_reports_its_verification(tmp_path, mlp):
    optimised = export.optimize(mlp, tmp_path / "opt.onnx").verification
    assert optimised.check == "fp32" and optimised.tolerance == 1e-5 and optimised.max_abs_diff <= 1e-5
    assert optimised.agreement == 1.0 and optimised.rows == 8

    half = export.to_fp16(mlp, tmp_path / "fp16.onnx")
    assert half.verification.check == "fp16" and half.verification.tolerance == 1e-2
    assert 0 < half.verification.relative_diff <= 1e-2 and half.verification.agreement >= 0.75
    assert "relative diff" in str(half) and "verified against the source" in str(half)

    int8 = export.quantize(mlp, tmp_path / "int8.onnx").verification
    assert int8.check == "int8" and int8.tolerance is None
    assert 0 < int8.max_abs_diff < 1 and 0.5 <= int8.agreement <= 1.0


def test_an_fp16_copy_that_overflows_is_refused_and_the_old_file_kept(tmp_path):
    # weights fp16 holds, outputs it cannot: y reaches ~1.5e5 > 65504, inf as a float16 output
    # (ONNX Runtime's CPU kernels compute inside in float32, so only the fp16 output overflows)
    _mlp(tmp_path / "big.onnx", w1=2e4)
    (tmp_path / "big.fp16.onnx").write_bytes(b"the old file")
    with pytest.raises(VerificationError, match="NaN or infinite"):
        export.to_fp16(tmp_path / "big.onnx", tmp_path / "big.fp16.onnx", keep_io_types=False)
    assert (tmp_path / "big.fp16.onnx").read_bytes() == b"the old file"
    assert sorted(os.listdir(tmp_path)) == ["big.fp16.onnx", "big.onnx"]  # no temporary left


def test_the_shared_check_bounds_fp32_and_fp16_and_reports_int8(tmp_path, mlp):
    _mlp(tmp_path / "drifted.onnx", shift=1e-3)      # a rewrite that changed the numbers slightly
    with pytest.raises(VerificationError, match="above the fp32 tolerance 1e-05") as caught:
        verify_derived(mlp, tmp_path / "drifted.onnx", "fp32")
    assert caught.value.max_abs_diff > 1e-5
    assert verify_derived(mlp, tmp_path / "drifted.onnx", "fp16").relative_diff < 1e-2
    reported = verify_derived(mlp, tmp_path / "drifted.onnx", "int8")
    assert reported.tolerance is None and reported.max_abs_diff == pytest.approx(caught.value.max_abs_diff)
