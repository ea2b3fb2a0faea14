"""int8 quantisation fits the CPU it targets: x86 without VNNI gets 7-bit weights (its u8s8
kernels saturate on full-range ones), VNNI/AMX and ARM full 8-bit ones; "auto" picks this
machine's, an explicit target wins, and the file's metadata says which."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_dequantize_linear import DequantizeLinear_23

from llmasos import Dataset, Model, export
from llmasos.cli import main
from llmasos.cpu import CPU, detect
from llmasos.errors import ExportError
from llmasos.export.int8_target import TARGETS, for_cpu
from llmasos.spec import ModelSpec

from ..conftest import FRAMEWORKS

LENGTH, VOCAB = 32, 500


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A one-block transformer encoder (83k parameters, random weights) as ONNX, and 64 rows of
    random tokens: small, yet full-range int8 weights saturate on AVX2 (88.7% top-1 kept)."""
    spec = ModelSpec.sequential((LENGTH,), dtype="int64", name="ids")
    spec.add("Embedding", 64, vocab_size=VOCAB, name="embed")
    spec.add("MultiHeadAttention", 2, name="attn", inputs="embed").add("Add", name="res1", inputs=["embed", "attn"])
    spec.add("LayerNorm", name="ln1").add("Dense", 256, activation="gelu").add("Dense", 64, name="ffn2")
    spec.add("Add", name="res2", inputs=["ln1", "ffn2"]).add("LayerNorm").add("Dense", 16, name="tags")
    path = tmp_path_factory.mktemp("int8") / "encoder.onnx"
    export.to_onnx(Model(spec=spec, framework=FRAMEWORKS[0]).build(seed=0), path)
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(64, LENGTH))
    return path, ids


def _int8_weights(path) -> np.ndarray:
    values = [onnx.numpy_helper.to_array(t).ravel() for t in onnx.load(str(path)).graph.initializer
              if t.data_type == onnx.TensorProto.INT8]
    return np.concatenate(values).astype(np.int64)


def test_auto_picks_this_cpus_target_and_records_it(encoder, tmp_path):
    report = export.quantize(encoder[0], tmp_path / "int8.onnx")
    cpu = detect()
    target = for_cpu(cpu)
    assert export.info(tmp_path / "int8.onnx")["llmasos.int8"] == {
        "mode": "dynamic", "target": target, "reduce_range": TARGETS[target], "weight_type": "int8",
        "activation_type": "uint8", "per_channel": False, "detected_on": str(cpu)}
    assert report.method == "int8 dynamic"


def test_auto_keeps_fp32_top1_on_this_cpu(encoder, tmp_path):
    path, ids = encoder
    export.quantize(path, tmp_path / "int8.onnx")
    change = export.compare(path, tmp_path / "int8.onnx", Dataset(ids, mode="test", dtype="int64"), batch_size=32)
    assert change["agreement"] >= 0.98, (detect(), change)


class DequantizeLinear(DequantizeLinear_23):
    """onnx.reference has no DequantizeLinear for opset 18 files (it starts at 19, same meaning)."""
    op_domain = ""


def test_vnni_format_keeps_fp32_top1_where_products_accumulate_in_32_bits(encoder, tmp_path):
    """onnx's reference evaluator multiplies integers exactly, as VNNI and AMX do: what the
    "vnni" format gives there, measurable on any CPU."""
    path, ids = encoder
    export.quantize(path, tmp_path / "vnni.onnx", target="vnni")
    fp32 = export.load(path).run(None, {"ids": ids})[0]
    exact = ReferenceEvaluator(str(tmp_path / "vnni.onnx"), new_ops=[DequantizeLinear]).run(None, {"ids": ids})[0]
    assert np.mean(exact.argmax(-1) == fp32.argmax(-1)) >= 0.98


@pytest.mark.parametrize("target, seven_bit", sorted(TARGETS.items()))
def test_an_explicit_target_sets_the_weight_range_and_is_recorded(encoder, tmp_path, target, seven_bit):
    export.quantize(encoder[0], tmp_path / "int8.onnx", target=target)
    record = export.info(tmp_path / "int8.onnx")["llmasos.int8"]
    assert (record["target"], record["reduce_range"], record["detected_on"]) == (target, seven_bit, None)
    largest = np.abs(_int8_weights(tmp_path / "int8.onnx")).max()
    assert largest <= 64 if seven_bit else largest > 100


def test_the_command_line_takes_a_target(tmp_path, digits_mlp):
    out = tmp_path / "m.onnx"
    assert main(["export", str(digits_mlp["h5"]), "-o", str(out), "--quantize", "dynamic",
                 "--int8-target", "avx512", "--no-verify"]) == 0
    assert export.info(tmp_path / "m.int8.onnx")["llmasos.int8"]["target"] == "avx512"


@pytest.mark.parametrize("bad", ["sse4", "AVX2", "", None])
def test_an_unknown_target_is_refused_before_anything_is_written(encoder, tmp_path, bad):
    with pytest.raises(ExportError, match=r"target must be 'auto' .* 'avx2', 'avx512', 'vnni', 'arm64'"):
        export.quantize(encoder[0], tmp_path / "int8.onnx", target=bad)
    assert not (tmp_path / "int8.onnx").exists()


@pytest.mark.parametrize("arch, flags, target", [
    ("x86_64", ("avx2",), "avx2"),                                   # AMD EPYC (Zen 2/3)
    ("x86_64", ("avx2", "avx512f"), "avx512"),                       # Skylake-SP: AVX-512, no VNNI
    ("x86_64", ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), "vnni"),   # Zen 4, Cascade Lake+
    ("x86_64", ("avx2", "avx_vnni"), "vnni"),                        # Alder Lake
    ("x86_64", ("avx2", "avx512f", "amx_tile", "amx_int8"), "vnni"),
    ("x86_64", (), "avx2"),                                          # older x86: pmaddubsw saturates too
    ("aarch64", (), "arm64"),
    ("arm64", (), "arm64"),
])
def test_each_cpu_gets_the_format_that_does_not_saturate_there(arch, flags, target):
    assert for_cpu(CPU(model="test", cores=2, arch=arch, flags=flags)) == target
