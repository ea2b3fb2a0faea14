"""Every endpoint of the real server, JSON and binary, against Deployer.predict and onnxruntime."""

from __future__ import annotations

import json
import struct
import time

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from llmasos.serve import Deployer

from .conftest import TYPES, affine, infer_json, outputs_of, type_examples


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "llmasos" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_says_platform_dynamic_dims_and_provider(client):
    meta = client.get("/v2/models/affine").json()
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [-1, 3]}
    assert meta["providers"] == ["CPUExecutionProvider"]
    assert client.get("/v2/models/affine/versions/1").json()["versions"] == ["1", "2"]
    assert client.get("/v2/models/fixed").json()["inputs"][0]["shape"] == [1, 4]


def test_model_ready_both_forms(client):
    assert client.get("/v2/models/affine/ready").json() == {"name": "affine", "version": "2", "ready": True}
    assert client.get("/v2/models/affine/versions/1/ready").json()["version"] == "1"
    assert client.get("/v2/models/nope/ready").status_code == 404
    assert client.get("/v2/models/affine/versions/9/ready").status_code == 404


def test_infer_json_equals_predict_and_onnxruntime(client, server, repo):
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    body = client.post("/v2/models/affine/infer", json=infer_json("affine", {"x": x}, id="req-7"))
    assert body.json()["id"] == "req-7" and body.json()["model_version"] == "2"
    served = outputs_of(body)["y"]
    direct = ort.InferenceSession(str(repo / "affine" / "2" / "model.onnx")).run(["y"], {"x": x})[0]
    np.testing.assert_allclose(served, server.predict(x, model="affine")["y"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(served, direct, rtol=0, atol=1e-6)
    np.testing.assert_allclose(served, affine(x, 2.0), atol=1e-5)


def test_versions_form_infers_on_that_version(client):
    x = np.ones((1, 4), np.float32)
    response = client.post("/v2/models/affine/versions/1/infer", json=infer_json("affine", {"x": x}))
    assert response.json()["model_version"] == "1"
    np.testing.assert_allclose(outputs_of(response)["tag"], 1.0)


def test_output_selection(client):
    x = np.ones((1, 4), np.float32)
    response = client.post("/v2/models/affine/infer", json=infer_json("affine", {"x": x}, outputs=[{"name": "tag"}]))
    assert [o["name"] for o in response.json()["outputs"]] == ["tag"]


def _binary_request(inputs: dict[str, np.ndarray], datatypes: dict[str, str], binary_out: bool):
    chunks, entries = [], []
    for name, array in inputs.items():
        if array.dtype == object:
            chunk = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in array.reshape(-1))
        else:
            chunk = array.astype(array.dtype.newbyteorder("<")).tobytes()
        chunks.append(chunk)
        entries.append({"name": name, "shape": list(array.shape), "datatype": datatypes[name],
                        "parameters": {"binary_data_size": len(chunk)}})
    header = json.dumps({"inputs": entries, "parameters": {"binary_data_output": binary_out}}).encode()
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header))}


def _binary_outputs(response: httpx.Response) -> dict[str, np.ndarray]:
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    header, data = json.loads(response.content[:length]), memoryview(response.content)[length:]
    arrays, offset = {}, 0
    for out in header["outputs"]:
        size = out["parameters"]["binary_data_size"]
        chunk = data[offset:offset + size]
        offset += size
        if out["datatype"] == "BYTES":
            items, i = [], 0
            while i < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, i)
                items.append(bytes(chunk[i + 4:i + 4 + n]).decode())
                i += 4 + n
            arrays[out["name"]] = np.array(items, dtype=object).reshape(out["shape"])
        else:
            dtype = {"FP16": "<f2", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "?"}[out["datatype"]]
            arrays[out["name"]] = np.frombuffer(chunk, dtype).reshape(out["shape"])
    assert offset == len(data)
    return arrays


@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
def test_every_datatype_round_trips(client, server, binary_in, binary_out):
    inputs = type_examples(rows=3)
    datatypes = {name: dt for name, (_, _, dt) in TYPES.items()}
    if binary_in:
        content, headers = _binary_request(inputs, datatypes, binary_out)
        response = client.post("/v2/models/types/infer", content=content, headers=headers)
    else:
        body = infer_json("types", inputs, datatypes, parameters={"binary_data_output": binary_out})
        response = client.post("/v2/models/types/infer", json=body)
    outputs = _binary_outputs(response) if binary_out else outputs_of(response)
    expected = server.predict(inputs, model="types")
    for name, (_, dtype, datatype) in TYPES.items():
        served = outputs[f"{name}_out"]
        assert [o["datatype"] for o in _headers(response) if o["name"] == f"{name}_out"] == [datatype]
        assert served.tolist() == expected[f"{name}_out"].tolist() == inputs[name].tolist()


def _headers(response: httpx.Response) -> list[dict]:
    length = response.headers.get("inference-header-content-length")
    return json.loads(response.content[:int(length)] if length else response.content)["outputs"]


@pytest.mark.torch
def test_torch_mlp_served_equals_source_model(mlp_onnx):
    import torch

    path, module = mlp_onnx
    x = np.random.default_rng(2).random((5, 64), dtype=np.float32)
    with Deployer(path, port=0) as deployer, httpx.Client(base_url=deployer.url) as client:
        content, headers = _binary_request({"input": x}, {"input": "FP32"}, binary_out=True)
        served = _binary_outputs(client.post("/v2/models/mlp/infer", content=content, headers=headers))["output"]
        np.testing.assert_array_equal(served, deployer.predict(x))
    with torch.no_grad():
        source = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(served, source, rtol=0, atol=1e-5)


def test_repository_index_lists_versions(client):
    index = client.post("/v2/repository/index").json()
    assert {"name": "affine", "version": "1", "state": "READY"} in index
    assert {(row["name"], row["state"]) for row in index} >= {("types", "READY"), ("fixed", "READY")}


def test_metrics_count_requests_and_loaded_versions(client):
    client.post("/v2/models/affine/infer", json=infer_json("affine", {"x": np.ones((1, 4), np.float32)}))
    text = client.get("/metrics").text
    assert 'llmasos_model_version_loaded{model="affine",version="1"} 1.0' in text
    assert 'llmasos_requests_total{model="affine",version="2"}' in text
    assert 'llmasos_request_seconds_bucket{le="+Inf",model="affine"}' in text
    assert "llmasos_batch_size_count" in text


def test_bearer_token(repo):
    with Deployer(repo / "fixed" / "1" / "model.onnx", port=0, name="fixed", token="s3cret") as deployer:
        url = deployer.url
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200  # probes need no token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = httpx.get(f"{url}/v2/models/fixed", headers=headers)
            assert response.status_code == 401 and "token" in response.json()["error"]
            assert response.headers["www-authenticate"] == "Bearer"
        good = httpx.get(f"{url}/v2/models/fixed", headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_single_file_is_model_version_1(repo):
    with Deployer(repo / "affine" / "1" / "model.onnx", port=0, name="lin") as deployer:
        meta = httpx.get(f"{deployer.url}/v2/models/lin").json()
        assert meta["versions"] == ["1"] and meta["name"] == "lin"
        assert deployer.url.startswith("http://127.0.0.1:")


def test_no_delayed_ack_stall(client):
    """Twenty sequential requests on one connection: ~40 ms each if TCP_NODELAY were missing."""
    body = infer_json("affine", {"x": np.ones((1, 4), np.float32)})
    client.post("/v2/models/affine/infer", json=body)
    started = time.perf_counter()
    for _ in range(20):
        assert client.post("/v2/models/affine/infer", json=body).status_code == 200
    assert time.perf_counter() - started < 0.5
