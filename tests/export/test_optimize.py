"""INT8 (dynamic and static QDQ), fp16, ONNX Runtime optimisation, pruning and benchmarking on a
digits classifier trained with llmasos, each judged by the task metric on held-out data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from llmasos import Dataset, Model, Optimizer, export
from llmasos.export.benchmark import format_table

from ..conftest import framework_params


@pytest.fixture(scope="module")
def fp32(tmp_path_factory, digits_mlp):
    path = tmp_path_factory.mktemp("optimize") / "digits.onnx"
    export.to_onnx(digits_mlp["h5"], path, sample=digits_mlp["test"])   # verified on real rows
    return path


def _ops(path) -> set[str]:
    return set(export.info(path)["ops"])


@pytest.mark.parametrize("framework", framework_params())
def test_dynamic_int8_loses_at_most_one_point(tmp_path, digits_mlp, framework):
    source = tmp_path / f"{framework}.onnx"
    export.to_onnx(Model.load(digits_mlp["h5"], framework=framework), source)
    report = export.quantize(source, tmp_path / "int8.onnx", eval_data=digits_mlp["test"])
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= _ops(tmp_path / "int8.onnx")
    assert report.metric["metric"] == "accuracy" and report.metric["reference"] > 0.9
    assert report.metric["change"] >= -0.01
    assert report.size_ratio < 0.6 and set(report.latency_ms) == {1, 32}
    assert export.info(tmp_path / "int8.onnx")["optimization"] == ["int8 dynamic"]


def test_static_qdq_quantisation_calibrates_on_a_dataset(tmp_path, fp32, digits_mlp):
    report = export.quantize(fp32, tmp_path / "qdq.onnx", mode="static", calibration=digits_mlp["train"],
                             calibration_rows=256, eval_data=digits_mlp["test"])
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(tmp_path / "qdq.onnx")
    assert report.method == "int8 static QDQ" and report.metric["change"] >= -0.02
    assert "accuracy" in str(report) and "points" in str(report)


def test_static_quantisation_reshapes_flat_calibration_rows_for_image_models(tmp_path, digits):
    x_train, y_train, _, _ = digits
    model = Model(input_shape=(1, 8, 8), output_dim=10).add_layer("Conv2D", 4, kernel_size=3, activation="relu")
    model.add_layer("Flatten").add_layer("Dense", 10, activation="softmax").build(seed=0)
    export.to_onnx(model, tmp_path / "cnn.onnx")
    calibration = Dataset(x_train[:64], y_train[:64], mode="test")       # flat 64-pixel rows
    export.quantize(tmp_path / "cnn.onnx", tmp_path / "cnn.qdq.onnx", mode="static", calibration=calibration)
    assert "QuantizeLinear" in _ops(tmp_path / "cnn.qdq.onnx")


def test_fp16_keeps_the_predicted_class_and_float32_io(tmp_path, fp32, digits_mlp):
    report = export.to_fp16(fp32, tmp_path / "fp16.onnx", eval_data=digits_mlp["test"])
    assert report.metric["agreement"] >= 0.99 and report.size_ratio < 0.8
    details = export.info(tmp_path / "fp16.onnx")
    assert details["inputs"][0]["dtype"] == details["outputs"][0]["dtype"] == "float32"
    export.to_fp16(fp32, tmp_path / "fp16io.onnx", keep_io_types=False)
    assert export.info(tmp_path / "fp16io.onnx")["inputs"][0]["dtype"] == "float16"
    assert export.bench(tmp_path / "fp16io.onnx", batches=(2,), seconds=0.01)[0]["batch"] == 2


@pytest.mark.parametrize("level", ["basic", "all"])
def test_onnxruntime_optimisation_keeps_the_outputs(tmp_path, fp32, digits_mlp, level):
    report = export.optimize(fp32, tmp_path / "opt.onnx", level=level, eval_data=digits_mlp["test"])
    assert report.metric["agreement"] == 1.0 and report.metric["max_abs_diff"] < 1e-5
    assert export.info(tmp_path / "opt.onnx")["framework"] == digits_mlp["model"].framework  # metadata kept


def test_compare_reports_the_metric_of_both_files(tmp_path, fp32, digits_mlp):
    result = export.compare(fp32, fp32, digits_mlp["test"])
    assert result["change"] == 0.0 and result["agreement"] == 1.0 and result["rows"] == len(digits_mlp["test"])
    x, _ = digits_mlp["test"].arrays()
    unlabelled = export.compare(fp32, fp32, Dataset(x, mode="test"))
    assert "metric" not in unlabelled and unlabelled["agreement"] == 1.0


def test_pruning_zeroes_kernels_in_any_framework_and_survives_export(tmp_path, digits_mlp):
    model = Model.load(digits_mlp["h5"])
    before = model.evaluate(digits_mlp["test"])["accuracy"]
    assert model.prune(0.5) == pytest.approx(0.5, abs=1e-3)
    model.train(digits_mlp["train"], Optimizer("Adam", lr=0.001), epochs=1, seed=0, progress=False)
    assert model.prune(0.5) == pytest.approx(0.5, abs=1e-3)     # fine-tuning regrew some; prune again
    assert model.evaluate(digits_mlp["test"])["accuracy"] >= before - 0.03
    export.to_onnx(model, tmp_path / "pruned.onnx")
    kernels = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "pruned.onnx")).graph.initializer
               if t.dims and len(t.dims) == 2]
    zeros = sum(int(np.count_nonzero(k == 0)) for k in kernels) / sum(k.size for k in kernels)
    assert zeros == pytest.approx(0.5, abs=1e-3)


@pytest.mark.tf
def test_pruning_is_the_same_in_tensorflow(digits_mlp):
    source, tf_model = Model.load(digits_mlp["h5"]), Model.load(digits_mlp["h5"], framework="tf")
    assert source.prune(0.3) == tf_model.prune(0.3)
    for layer, weights in source.get_weights().items():
        np.testing.assert_array_equal(weights["kernel"], tf_model.get_weights()[layer]["kernel"])


def test_bench_reports_latency_and_throughput_per_batch(fp32):
    rows = export.bench(fp32, providers=["cpu"], batches=(1, 4), seconds=0.05)
    assert [r["batch"] for r in rows] == [1, 4] and rows[0]["provider"] == "CPUExecutionProvider"
    assert all(r["median_ms"] > 0 and r["samples_per_s"] > 0 for r in rows)
    assert "samples/s" in format_table(rows)
