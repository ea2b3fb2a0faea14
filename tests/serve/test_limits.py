"""The event loop stays free while a large request is decoded; the element limit counts a text
input's tokens; at most ``max_concurrent`` inference requests are served at once."""

from __future__ import annotations

import json
import select
import socket
import threading
import time

import httpx
import numpy as np
import onnx
import onnx.helper as h
import pytest
from onnx import TensorProto

from llmasos.export.metadata import TEXT_INPUTS, TOKENIZER
from llmasos.serve import Deployer, app

from .conftest import _save, affine, affine_model, infer_json, outputs_of, wait_for


def _raw_post(url: str, path: str, body: bytes, send: int | None = None) -> socket.socket:
    """A POST on a socket of its own, sending the first ``send`` bytes of ``body`` (all by default)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    sock.sendall(head + body[:send])
    return sock


def _status(sock: socket.socket) -> tuple[int, bytes]:
    """Read a whole response (the server closes the connection): status code and body."""
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    sock.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_health_answers_while_a_large_request_is_decoded(tmp_path):
    path = affine_model(tmp_path / "m.onnx")
    rows = 300_000  # 1.2 million numbers: seconds of JSON decoding, ~5 MB
    body = (b'{"inputs": [{"name": "x", "shape": [%d, 4], "datatype": "FP32", "data": [' % rows
            + b",".join([b"0.5"] * (rows * 4 - 1)) + b"]}]}")  # one number short: refused once decoded
    with Deployer(path, port=0) as deployer, httpx.Client(base_url=deployer.url) as client:
        # the client and its connection are made first: a cold client alone takes ~0.2 s, about
        # as long as the decoding, and the big answer could come before the check is even sent
        assert client.get("/v2/health/live").json() == {"live": True}
        big = _raw_post(deployer.url, "/v2/models/m/infer", body)  # returns once the body is sent
        time.sleep(0.1)  # the server has read the body's last bytes: it is decoding now (~0.5 s here)
        assert client.get("/v2/health/live").json() == {"live": True}
        # The server answers the big request as soon as it is decoded; had the decoding blocked
        # the event loop, that answer would have been written before the health check was read.
        assert select.select([big], [], [], 0)[0] == [], "the health check waited for the decoding"
        status, answer = _status(big)
    assert status == 400 and f"needs {rows * 4}" in json.loads(answer)["error"]


def test_at_most_max_concurrent_requests_then_503(tmp_path):
    path = affine_model(tmp_path / "m.onnx")
    x = np.ones((2, 4), np.float32)
    body = json.dumps(infer_json("m", {"x": x})).encode()
    with Deployer(path, port=0, max_concurrent=1) as deployer, httpx.Client(base_url=deployer.url) as client:
        slow = _raw_post(deployer.url, "/v2/models/m/infer", body, send=len(body) // 2)  # the rest later
        assert wait_for(lambda: deployer.metrics.registry.get_sample_value("llmasos_requests_in_flight") == 1)
        busy = client.post("/v2/models/m/infer", content=body)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "at most 1 inference requests at once (max_concurrent)" in busy.json()["error"]
        assert client.get("/v2/health/ready").status_code == 200  # probes are not inference requests
        slow.sendall(body[len(body) // 2:])
        status, answer = _status(slow)
        assert status == 200
        np.testing.assert_allclose(json.loads(answer)["outputs"][0]["data"], affine(x).reshape(-1), rtol=1e-6)
        np.testing.assert_allclose(outputs_of(client.post("/v2/models/m/infer", content=body))["y"], affine(x),
                                   rtol=1e-6)


def _binary(x: np.ndarray, datatype: str = "FP32") -> tuple[bytes, str]:
    header = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": datatype,
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    return header + x.tobytes(), str(len(header))


def test_what_a_batching_server_decodes_on_its_event_loop():
    # a trip to a worker thread costs more than viewing binary tensors in place: a 600 KB image stays
    image, length = _binary(np.zeros((1, 3, 224, 224), np.float32))
    assert app._inline_decode(image, length)
    big, length_big = _binary(np.zeros((300, 1024), np.float32))  # 1.2 MB of binary tensors
    strings = image[:int(length)].replace(b'"FP32"', b'"BYTES"') + image[int(length):]  # parsed one by one
    large_json = json.dumps(infer_json("m", {"x": np.zeros((1000, 4), np.float32)})).encode()
    assert not app._inline_decode(big, length_big) and not app._inline_decode(strings, length)
    assert not app._inline_decode(large_json, None) and app._inline_decode(large_json[:16 * 1024], None)


def test_large_requests_and_answers_with_dynamic_batching(tmp_path):
    """Bodies and answers over the inline sizes go through worker threads: same numbers."""
    path = affine_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    small = rng.standard_normal((3000, 4)).astype(np.float32)  # 12,000 numbers of JSON in, 12,000 out
    large = rng.standard_normal((70_000, 4)).astype(np.float32)  # 1.1 MB binary
    body, length = _binary(large)
    with Deployer(path, port=0, max_batch=8) as deployer, httpx.Client(base_url=deployer.url) as client:
        for x, content, headers in ((small, json.dumps(infer_json("m", {"x": small})).encode(), {}),
                                    (large, body, {"Inference-Header-Content-Length": length})):
            np.testing.assert_allclose(outputs_of(client.post("/v2/models/m/infer", content=content,
                                                              headers=headers))["y"], affine(x), rtol=1e-5)


# -- a text input's limit counts tokens -------------------------------------------------------------


def _text_model(path):
    """Sum of the token ids of each row, with a word-level tokenizer in the file: "a" is 1, "b" is 2."""
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    graph = h.make_graph(
        [h.make_node("ReduceSum", ["input_ids", "axes"], ["total"], keepdims=0)], "sum",
        [h.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [h.make_tensor_value_info("total", TensorProto.INT64, ["batch"])],
        [onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")])
    _save(graph, path)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {TOKENIZER: tokenizer.to_str(),
                                        TEXT_INPUTS: json.dumps({"inputs": ["input_ids"], "pad_id": 0})})
    onnx.save(model, str(path))
    return path


def _texts(texts: list[str]) -> dict:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def test_the_element_limit_counts_tokens_not_strings(tmp_path):
    path = _text_model(tmp_path / "sum.onnx")
    long = " ".join(["b"] * 600)
    with Deployer(path, port=0, max_tensor_elements=1000) as deployer, httpx.Client(base_url=deployer.url) as client:
        short = client.post("/v2/models/sum/infer", json=_texts(["a b a"] * 300))  # 900 tokens
        np.testing.assert_array_equal(outputs_of(short)["total"], [4] * 300)
        for texts, tokens in (([long, long], "2 texts padded to 600 tokens make 1,200"),
                              (["a"] * 2 + [long], "3 texts padded to 600 tokens make 1,800")):
            refused = client.post("/v2/models/sum/infer", json=_texts(texts))
            assert refused.status_code == 400, refused.text
            assert tokens in refused.json()["error"] and "the limit is 1,000" in refused.json()["error"]
        np.testing.assert_array_equal(deployer.predict([long]), [1200])  # 600 tokens alone fit
