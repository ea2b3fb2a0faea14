"""New versions swap in while clients keep sending; broken or half-written ones never serve."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import numpy as np
import pytest

from llmasos.serve import Deployer

from .conftest import affine, affine_model, infer_json, outputs_of, wait_for

X = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)


def _version_answering(client: httpx.Client) -> int:
    response = client.post("/v2/models/m/infer", json=infer_json("m", {"x": X}))
    version = int(response.json()["model_version"])
    outputs = outputs_of(response)
    assert np.all(outputs["tag"] == version)  # both outputs from the same session
    np.testing.assert_allclose(outputs["y"], affine(X, version), atol=1e-5)
    return version


def _rename_in(root, version: int, content: bytes | None = None) -> None:
    """Build a version folder under a name the server ignores, then rename it into place."""
    staging = root / "m" / f".{version}.tmp"
    if content is None:
        affine_model(staging / "model.onnx", tag=float(version))
    else:
        staging.mkdir(parents=True)
        (staging / "model.onnx").write_bytes(content)
    staging.rename(root / "m" / str(version))


@pytest.mark.slow
def test_hot_reload_under_load_fails_no_request(tmp_path):
    affine_model(tmp_path / "m" / "1" / "model.onnx", tag=1.0)
    answers: dict[int, list[int]] = {i: [] for i in range(8)}
    failures: list[str] = []
    stop = threading.Event()

    def client_loop(i: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                try:
                    answers[i].append(_version_answering(client))
                except Exception as exc:  # any failure at all is what this test counts
                    failures.append(repr(exc))

    with Deployer(tmp_path, port=0, poll_s=0.1) as deployer:
        threads = [threading.Thread(target=client_loop, args=(i, deployer.url)) for i in range(8)]
        for thread in threads:
            thread.start()
        assert wait_for(lambda: all(answers.values()))  # every client has been answered by version 1
        _rename_in(tmp_path, 2)
        assert wait_for(lambda: deployer.repository.versions("m") == [2])
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    for seen in answers.values():
        assert seen == sorted(seen), "a client went back to the old version after the swap"
        assert seen[0] == 1 and seen[-1] == 2


def test_garbage_version_leaves_old_serving_and_is_logged(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="llmasos.serve")
    affine_model(tmp_path / "m" / "1" / "model.onnx", tag=1.0)
    with Deployer(tmp_path, port=0, poll_s=0.05) as deployer, httpx.Client(base_url=deployer.url) as client:
        _rename_in(tmp_path, 2, b"\x08\x07 this is not an onnx model \xff\xff" * 50)
        assert wait_for(lambda: any(getattr(r, "version", None) == 2 for r in caplog.records))
        assert _version_answering(client) == 1
        index = client.post("/v2/repository/index").json()
        assert any(row.get("version") == "2" and row["state"] == "UNAVAILABLE" and "not an ONNX" in row["reason"]
                   for row in index)
        # The live version's own file replaced by garbage: its loaded session keeps serving.
        (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"garbage")
        assert wait_for(lambda: sum(getattr(r, "version", None) == 1 for r in caplog.records) == 1)
        time.sleep(0.3)  # more polls: the same bytes are not tried again
        assert _version_answering(client) == 1
        failures = deployer.metrics.registry.get_sample_value(
            "llmasos_model_loads_total", {"model": "m", "result": "failure"})
        assert failures == 2
        assert client.get("/v2/health/ready").status_code == 200


def test_half_written_file_never_serves_and_loads_once_complete(tmp_path):
    affine_model(tmp_path / "m" / "1" / "model.onnx", tag=1.0)
    complete = affine_model(tmp_path / "elsewhere.onnx", tag=2.0).read_bytes()
    with Deployer(tmp_path, port=0, poll_s=0.05) as deployer, httpx.Client(base_url=deployer.url) as client:
        target = tmp_path / "m" / "2" / "model.onnx"
        target.parent.mkdir()
        target.write_bytes(complete[: len(complete) // 2])  # a writer that did not rename
        time.sleep(0.4)
        assert deployer.repository.versions("m") == [1] and _version_answering(client) == 1
        target.write_bytes(complete)
        assert wait_for(lambda: deployer.repository.versions("m") == [2])
        assert _version_answering(client) == 2


def test_load_and_unload_on_request(tmp_path):
    affine_model(tmp_path / "m" / "1" / "model.onnx", tag=1.0)
    with Deployer(tmp_path, port=0, poll_s=0, model_control=True, token="s3cret") as deployer, \
            httpx.Client(base_url=deployer.url, headers={"Authorization": "Bearer s3cret"}) as client:
        _rename_in(tmp_path, 2)
        assert _version_answering(client) == 1  # no polling: nothing changes by itself
        assert client.post("/v2/repository/models/m/load").json() == {"name": "m", "versions": ["2"]}
        assert _version_answering(client) == 2
        assert client.post("/v2/repository/models/m/unload").status_code == 200
        response = client.post("/v2/models/m/infer", json=infer_json("m", {"x": X}))
        assert response.status_code == 503 and "not loaded" in response.json()["error"]
        assert client.get("/v2/health/ready").status_code == 503
        assert client.post("/v2/repository/models/m/load").status_code == 200
        assert client.post("/v2/repository/models/nope/load").status_code == 404
        assert client.post("/v2/repository/models/nope/unload").status_code == 404
        _rename_in(tmp_path, 3, b"garbage")
        failed = client.post("/v2/repository/models/m/load")
        assert failed.status_code == 400 and "version 3" in failed.json()["error"]
        assert _version_answering(client) == 2


@pytest.mark.parametrize("policy, served", [("latest", [2]), ("latest:2", [1, 2]), ("all", [1, 2]),
                                            ("1", [1]), ([1, 2], [1, 2])])
def test_version_policy(tmp_path, policy, served):
    for version in (1, 2):
        affine_model(tmp_path / "m" / str(version) / "model.onnx", tag=float(version))
    deployer = Deployer(tmp_path, port=0, poll_s=0, version_policy=policy)
    assert deployer.repository.versions("m") == served
    assert int(deployer.predict(X, model="m")["tag"][0, 0]) == served[-1]


def test_bad_version_policy(tmp_path):
    from llmasos.errors import ServeError

    affine_model(tmp_path / "m" / "1" / "model.onnx")
    with pytest.raises(ServeError, match="version policy"):
        Deployer(tmp_path, version_policy="newest")
