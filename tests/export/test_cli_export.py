"""The command line: ``llmasos export``, ``info`` and ``bench`` on real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmasos import export
from llmasos.cli import main
from llmasos.data import digits_csv


def _run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_export_with_dynamic_int8_and_fp16_copies(capsys, tmp_path, digits_mlp):
    train_csv, test_csv = digits_csv(tmp_path)
    out = tmp_path / "digits.onnx"
    status, printed, err = _run(capsys, "export", digits_mlp["h5"], "-o", out, "--quantize", "dynamic", "--fp16",
                                "--eval", test_csv)
    assert status == 0, err
    assert {p.name for p in tmp_path.glob("*.onnx")} == {"digits.onnx", "digits.int8.onnx", "digits.fp16.onnx"}
    assert "verified: max abs diff" in printed and "int8 dynamic" in printed and "fp16" in printed
    assert printed.count("accuracy") == 2
    assert export.info(tmp_path / "digits.int8.onnx")["optimization"] == ["int8 dynamic"]


def test_export_with_static_int8_from_a_calibration_csv(capsys, tmp_path, digits_mlp):
    train_csv, _ = digits_csv(tmp_path)
    status, printed, err = _run(capsys, "export", digits_mlp["h5"], "-o", tmp_path / "m.onnx", "--quantize", "static",
                                "--calibration", train_csv, "--no-verify")
    assert status == 0, err
    assert "not verified" in printed and (tmp_path / "m.int8-qdq.onnx").is_file()


def test_info_and_bench_print_what_they_found(capsys, tmp_path, digits_mlp):
    export.to_onnx(digits_mlp["h5"], tmp_path / "m.onnx")
    status, printed, _ = _run(capsys, "info", tmp_path / "m.onnx")
    assert status == 0
    assert f"framework: {digits_mlp['model'].framework}" in printed and "layout=NC" in printed
    assert "ops:" in printed and "Total params: 4,810" in printed
    status, printed, _ = _run(capsys, "bench", tmp_path / "m.onnx", "--batch", "1,4", "--seconds", "0.05")
    assert status == 0 and "CPUExecutionProvider" in printed and "samples/s" in printed


def test_command_line_mistakes_exit_2_with_a_message(capsys, tmp_path, digits_mlp):
    status, _, err = _run(capsys, "export", digits_mlp["h5"], "-o", tmp_path / "m.onnx", "--quantize", "static")
    assert status == 2 and "--quantize static needs --calibration" in err
    status, _, err = _run(capsys, "bench", tmp_path / "m.onnx", "--batch", "0,x")
    assert status == 2 and "batch sizes are positive ints" in err
    status, _, err = _run(capsys, "export", digits_mlp["h5"], "-o", tmp_path / "no" / "m.onnx")
    assert status == 2 and err.startswith("error: cannot write")


@pytest.mark.slow
def test_export_runs_as_a_real_process(tmp_path, digits_mlp):
    done = subprocess.run([sys.executable, "-m", "llmasos", "export", str(digits_mlp["h5"]), "-o",
                           str(tmp_path / "m.onnx")], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout and (tmp_path / "m.onnx").is_file()


def test_export_writes_a_triton_repository_and_kserve_manifest(capsys, tmp_path, digits_mlp):
    import onnx
    import yaml

    repo, manifest = tmp_path / "repo", tmp_path / "isvc.yaml"
    status, printed, err = _run(capsys, "export", digits_mlp["h5"], "-o", tmp_path / "digits.onnx", "--triton-repo",
                                repo, "--name", "digits", "--kserve", manifest, "--storage-uri", "s3://models/repo")
    assert status == 0, err
    config = (repo / "digits" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "max_batch_size: 32" in config and "dynamic_batching" in config
    onnx.checker.check_model(str(repo / "digits" / "1" / "model.onnx"))
    service = yaml.safe_load(manifest.read_text())
    assert service["kind"] == "InferenceService"
    assert service["spec"]["predictor"]["model"]["storageUri"] == "s3://models/repo"
    status, _, err = _run(capsys, "export", digits_mlp["h5"], "-o", tmp_path / "x.onnx", "--kserve", manifest)
    assert status == 2 and "--kserve needs --storage-uri" in err


def test_export_external_data_writes_each_file_with_its_data_file(capsys, tmp_path, digits_mlp):
    out = tmp_path / "digits.onnx"
    status, printed, err = _run(capsys, "export", digits_mlp["h5"], "-o", out, "--external-data", "--fp16")
    assert status == 0, err
    assert sorted(p.name for p in tmp_path.glob("digits.*")) == [
        "digits.fp16.onnx", "digits.fp16.onnx.data", "digits.onnx", "digits.onnx.data"]
    assert "verified: max abs diff" in printed
    assert export.info(out)["size_bytes"] == out.stat().st_size + (tmp_path / "digits.onnx.data").stat().st_size
