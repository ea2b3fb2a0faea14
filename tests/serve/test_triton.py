"""Triton repositories and KServe manifests for an ONNX file; the Deployer serves the same layout."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import yaml

from llmasos.errors import OnnxFileError, ServeError
from llmasos.serve import Deployer, write_kserve_manifest, write_triton_repo

from .conftest import affine, affine_model, fixed_model, types_model

AFFINE_CONFIG = '''name: "digits"
platform: "onnxruntime_onnx"
max_batch_size: 32
input [
  {
    name: "x"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
output [
  {
    name: "y"
    data_type: TYPE_FP32
    dims: [ 3 ]
  },
  {
    name: "tag"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
dynamic_batching {
  max_queue_delay_microseconds: 5000
}
'''


def test_triton_repo_config_and_layout(tmp_path):
    model_dir = write_triton_repo(affine_model(tmp_path / "a.onnx", tag=2.0), tmp_path / "repo", "digits")
    assert (model_dir / "config.pbtxt").read_text() == AFFINE_CONFIG
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt"]
    x = np.ones((2, 4), np.float32)
    deployer = Deployer(tmp_path / "repo", poll_s=0)
    np.testing.assert_allclose(deployer.predict(x, model="digits")["y"], affine(x, 2.0), atol=1e-5)


def test_triton_repo_without_batching_and_with_strings(tmp_path):
    fixed = write_triton_repo(fixed_model(tmp_path / "f.onnx"), tmp_path / "repo")
    text = (fixed / "config.pbtxt").read_text()
    assert 'name: "f"' in text and "max_batch_size: 0" in text and "dims: [ 1, 4 ]" in text
    assert "dynamic_batching" not in text
    with pytest.raises(ServeError, match="dynamic first dimension"):
        write_triton_repo(tmp_path / "f.onnx", tmp_path / "repo", "f2", max_batch=8)
    types = write_triton_repo(types_model(tmp_path / "t.onnx"), tmp_path / "repo", max_batch=4)
    assert "TYPE_STRING" in (types / "config.pbtxt").read_text()


def test_new_version_and_existing_version(tmp_path):
    source = affine_model(tmp_path / "a.onnx")
    write_triton_repo(source, tmp_path / "repo", "m")
    write_triton_repo(source, tmp_path / "repo", "m", version=2)
    assert sorted(p.name for p in (tmp_path / "repo" / "m").iterdir()) == ["1", "2", "config.pbtxt"]
    with pytest.raises(ServeError, match="already exists"):
        write_triton_repo(source, tmp_path / "repo", "m", version=2)
    with pytest.raises(OnnxFileError):
        write_triton_repo(tmp_path / "missing.onnx", tmp_path / "repo", "m", version=3)


def test_external_data_takes_the_folder_form(tmp_path):
    source = affine_model(tmp_path / "src" / "big.onnx", tag=4.0)
    model = onnx.load(str(source))
    onnx.save(model, str(source), save_as_external_data=True, location="big.onnx.data", size_threshold=0)
    model_dir = write_triton_repo(source, tmp_path / "repo", "big")
    assert sorted(p.name for p in (model_dir / "1" / "model.onnx").iterdir()) == ["big.onnx.data", "model.onnx"]
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(Deployer(tmp_path / "repo", poll_s=0).predict(x)["y"], affine(x, 4.0), atol=1e-5)


def test_kserve_manifest(tmp_path):
    path = write_kserve_manifest(tmp_path / "isvc.yaml", "digits", "s3://bucket/repo", gpus=1)
    manifest = yaml.safe_load(path.read_text())
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1" and manifest["kind"] == "InferenceService"
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "onnx"} and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "s3://bucket/repo" and model["runtime"] == "kserve-tritonserver"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    with pytest.raises(ServeError, match="DNS label"):
        write_kserve_manifest(tmp_path / "bad.yaml", "Digits_Model", "s3://bucket/repo")
