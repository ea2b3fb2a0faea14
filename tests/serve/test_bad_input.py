"""Every bad request gets a clear 4xx as {"error": ...}, and the next good request still succeeds."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from llmasos.serve import Deployer

from .conftest import infer_json, outputs_of, type_examples

TOKEN = {"Authorization": "Bearer s3cret"}
X = np.ones((2, 4), np.float32)


def _json(body) -> dict:
    return {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json"}}


def _binary(header: dict, data: bytes, claimed: int | str | None = None) -> dict:
    raw = json.dumps(header).encode()
    return {"content": raw + data,
            "headers": {"Inference-Header-Content-Length": str(len(raw) if claimed is None else claimed)}}


def _input(**changes) -> dict:
    entry = {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.reshape(-1).tolist()}
    return {"inputs": [{**entry, **changes}]}


BINARY_X = {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}

BAD = {
    "malformed JSON": ("affine", {"content": b'{"inputs": [', "headers": {}}, 400),
    "JSON that is not an object": ("affine", _json([1, 2]), 400),
    "no inputs": ("affine", _json({"inputs": []}), 400),
    "unknown model": ("nope", _json(_input()), 404),
    "unknown version": ("affine/versions/7", _json(_input()), 404),
    "non-numeric version": ("affine/versions/latest", _json(_input()), 404),
    "missing input": ("types", _json(infer_json("types", {"f16": type_examples()["f16"]}, {"f16": "FP16"})), 400),
    "extra input": ("affine", _json({"inputs": _input()["inputs"] + _input(name="z")["inputs"]}), 400),
    "duplicate input": ("affine", _json({"inputs": _input()["inputs"] * 2}), 400),
    "wrong rank": ("affine", _json(_input(shape=[8])), 400),
    "wrong fixed dimension": ("affine", _json(_input(shape=[1, 8])), 400),
    "negative dimension": ("affine", _json(_input(shape=[-2, -4])), 400),
    "wrong datatype": ("affine", _json(_input(datatype="FP64")), 400),
    "unknown datatype": ("affine", _json(_input(datatype="FLOAT")), 400),
    "data shorter than shape": ("affine", _json(_input(data=[1.0] * 7)), 400),
    "data longer than shape": ("affine", _json(_input(data=[1.0] * 9)), 400),
    "ragged data": ("affine", _json(_input(data=[[1.0, 2.0], [3.0]])), 400),
    "strings for FP32": ("affine", _json(_input(data=["a"] * 8)), 400),
    "NaN": ("affine", {"content": json.dumps(_input(data=[float("nan")] * 8)).encode(), "headers": {}}, 400),
    "infinity": ("affine", {"content": json.dumps(_input(data=[float("inf")] * 8)).encode(), "headers": {}}, 400),
    "INT32 value out of range": ("types", _json({"inputs": [{"name": "i32", "shape": [1, 2], "datatype": "INT32",
                                                            "data": [2**40, 1]}]}), 400),
    "unknown output": ("affine", _json({**_input(), "outputs": [{"name": "nope"}]}), 400),
    "classification extension": ("affine", _json({**_input(), "outputs": [
        {"name": "y", "parameters": {"classification": 2}}]}), 501),
    "tensor over the element limit": ("affine", _json(_input(shape=[300, 4], data=[0.0])), 413),
    "body over the byte limit": ("affine", {"content": b" " * 5000 + json.dumps(_input()).encode(),
                                            "headers": {}}, 413),
    "binary header longer than body": ("affine", _binary({"inputs": [BINARY_X]}, X.tobytes(), claimed=10**6), 400),
    "binary header length not a number": ("affine", _binary({"inputs": [BINARY_X]}, X.tobytes(), claimed="ten"), 400),
    "binary header length cuts the JSON": ("affine", _binary({"inputs": [BINARY_X]}, X.tobytes(), claimed=20), 400),
    "binary size not the shape's": ("affine", _binary({"inputs": [{**BINARY_X, "parameters": {
        "binary_data_size": 28}}]}, X.tobytes()[:28]), 400),
    "binary data past the end": ("affine", _binary({"inputs": [BINARY_X]}, X.tobytes()[:16]), 400),
    "binary bytes nobody claims": ("affine", _binary({"inputs": [BINARY_X]}, X.tobytes() + b"xx"), 400),
    "binary BYTES length lies": ("types", _binary({"inputs": [{"name": "s", "shape": [1, 1], "datatype": "BYTES",
                                                               "parameters": {"binary_data_size": 6}}]},
                                                  b"\xff\x00\x00\x00ab"), 400),
}


@pytest.fixture(scope="module")
def guarded(repo):
    with Deployer(repo, port=0, poll_s=0, token="s3cret", max_body_bytes=4096,
                  max_tensor_elements=1000) as deployer:
        yield deployer


@pytest.mark.parametrize("case", list(BAD))
def test_bad_request_gets_4xx_then_server_keeps_serving(guarded, case):
    model, request, status = BAD[case]
    with httpx.Client(base_url=guarded.url, headers=TOKEN, timeout=10) as client:
        response = client.post(f"/v2/models/{model}/infer", **request)
        assert response.status_code == status, response.text
        assert isinstance(response.json()["error"], str) and response.json()["error"]
        good = client.post("/v2/models/affine/infer", json=infer_json("affine", {"x": X}))
        np.testing.assert_allclose(outputs_of(good)["y"], guarded.predict(X, model="affine")["y"])


def test_wrong_token_route_and_method(guarded):
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        assert client.post("/v2/models/affine/infer", json=infer_json("affine", {"x": X}),
                           headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/v3/whatever", headers=TOKEN).json() == {"error": "Not Found"}
        assert client.get("/v2/models/affine/infer", headers=TOKEN).status_code == 405
        assert client.post("/v2/models/affine/infer", json=infer_json("affine", {"x": X}),
                           headers=TOKEN).status_code == 200
        errors = client.get("/metrics", headers=TOKEN).text
        assert 'llmasos_errors_total{status="401"}' in errors


def test_predict_refuses_bad_input_in_process(guarded):
    from llmasos.errors import ServeError

    with pytest.raises(ServeError, match="NaN"):
        guarded.predict(np.full((1, 4), np.nan), model="affine")
    with pytest.raises(ServeError, match="shape"):
        guarded.predict(np.ones((1, 5)), model="affine")
    with pytest.raises(ServeError, match="say which model"):
        guarded.predict(X)


def test_chunked_body_over_the_limit(guarded):
    chunks = iter([b" " * 3000, b" " * 3000, json.dumps(_input()).encode()])  # no Content-Length
    with httpx.Client(base_url=guarded.url, headers=TOKEN, timeout=10) as client:
        assert client.post("/v2/models/affine/infer", content=chunks).status_code == 413
        assert client.post("/v2/models/affine/infer", json=infer_json("affine", {"x": X})).status_code == 200
