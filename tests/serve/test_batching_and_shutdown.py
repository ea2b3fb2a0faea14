"""Dynamic batching merges concurrent requests with identical results; shutdown loses none."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import onnx
import onnx.helper as h
import pytest
from onnx import TensorProto, numpy_helper

from llmasos.serve import Deployer

from .conftest import affine, affine_model, fixed_model, infer_json, outputs_of, wait_for


def _concurrently(url: str, inputs: list[np.ndarray], model: str = "m") -> list[httpx.Response]:
    """Send one request per input, all at once, each from its own thread."""
    responses: list[httpx.Response | None] = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def send(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            start.wait()
            responses[i] = client.post(f"/v2/models/{model}/infer", json=infer_json(model, {"x": inputs[i]}))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def _sample(deployer: Deployer, name: str) -> float:
    return deployer.metrics.registry.get_sample_value(name, {"model": "m"}) or 0.0


def test_dynamic_batching_merges_concurrent_requests(tmp_path):
    path = affine_model(tmp_path / "m.onnx", tag=3.0)
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((rows, 4)).astype(np.float32) for rows in (1, 2, 3, 1, 2, 1, 1, 3)]
    with Deployer(path, port=0, max_batch=16, batch_timeout_ms=200) as deployer:
        assert httpx.get(f"{deployer.url}/v2/models/m").json()["dynamic_batching"] is True
        responses = _concurrently(deployer.url, inputs)
        runs, rows = _sample(deployer, "llmasos_batch_size_count"), _sample(deployer, "llmasos_batch_size_sum")
        for x, response in zip(inputs, responses):
            served = outputs_of(response)["y"]
            np.testing.assert_allclose(served, deployer.predict(x)["y"], rtol=0, atol=1e-6)
            np.testing.assert_allclose(served, affine(x, 3.0), atol=1e-5)
    assert rows == sum(len(x) for x in inputs)
    assert runs < len(inputs), "no two requests were merged"


def test_no_batching_without_a_dynamic_first_dimension(tmp_path):
    with Deployer(fixed_model(tmp_path / "m.onnx"), port=0, max_batch=16) as deployer:
        assert httpx.get(f"{deployer.url}/v2/models/m").json()["dynamic_batching"] is False
        responses = _concurrently(deployer.url, [np.full((1, 4), i - 2.0, np.float32) for i in range(4)])
        assert [outputs_of(r)["y"].max() for r in responses] == [0, 0, 0, 1]


def test_one_bad_request_does_not_sink_its_batch(tmp_path):
    table = np.arange(30, dtype=np.float32).reshape(10, 3)
    graph = h.make_graph([h.make_node("Gather", ["table", "x"], ["y"], axis=0)], "lookup",
                         [h.make_tensor_value_info("x", TensorProto.INT64, ["batch", 1])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 3])],
                         [numpy_helper.from_array(table, "table")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "m.onnx"))
    inputs = [np.array([[i]]) for i in (1, 2, 99, 3)]  # 99 is past the table's end
    with Deployer(tmp_path / "m.onnx", port=0, max_batch=16, batch_timeout_ms=300) as deployer:
        responses = [httpx.Response(0)] * 4
        barrier = threading.Barrier(4)

        def send(i: int) -> None:
            barrier.wait()
            body = infer_json("m", {"x": inputs[i]}, {"x": "INT64"})
            responses[i] = httpx.post(f"{deployer.url}/v2/models/m/infer", json=body, timeout=30)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [r.status_code for r in responses] == [200, 200, 400, 200]
    for i in (0, 1, 3):
        np.testing.assert_array_equal(outputs_of(responses[i])["y"], table[inputs[i][:, 0]][:, None])


@pytest.mark.slow
def test_graceful_shutdown_finishes_accepted_requests(tmp_path):
    path = affine_model(tmp_path / "m.onnx", tag=5.0)
    inputs = [np.full((1, 4), i, np.float32) for i in range(6)]
    deployer = Deployer(path, port=0, max_batch=64, batch_timeout_ms=1500).start()  # requests wait 1.5 s
    results: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: results.extend(_concurrently(deployer.url, inputs)))
    sender.start()
    in_flight = "llmasos_requests_in_flight"
    assert wait_for(lambda: deployer.metrics.registry.get_sample_value(in_flight) == len(inputs))
    deployer.stop()  # while all six wait in the batcher
    sender.join()
    assert [r.status_code for r in results] == [200] * len(inputs)
    for x, response in zip(inputs, results):
        np.testing.assert_allclose(outputs_of(response)["y"], affine(x, 5.0), atol=1e-5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{deployer.url}/v2/health/live")
