"""Safe defaults: model control is off unless asked for, and then needs the token; the token comes
from an argument, a file or $LLMASOS_TOKEN; serving beyond loopback without one is warned about."""

from __future__ import annotations

import logging

import httpx
import numpy as np
import pytest

from llmasos.cli import main
from llmasos.errors import ServeError
from llmasos.serve import Deployer

from .conftest import affine_model, infer_json, outputs_of

X = np.ones((2, 4), np.float32)


@pytest.fixture
def model_path(tmp_path):
    return affine_model(tmp_path / "repo" / "m" / "1" / "model.onnx").parents[2]


@pytest.fixture(autouse=True)
def no_token_in_environment(monkeypatch):
    monkeypatch.delenv("LLMASOS_TOKEN", raising=False)


def _infer(client: httpx.Client, **headers) -> httpx.Response:
    return client.post("/v2/models/m/infer", json=infer_json("m", {"x": X}), headers=headers)


def test_model_control_is_off_by_default(model_path):
    with Deployer(model_path, port=0, poll_s=0) as deployer, httpx.Client(base_url=deployer.url) as client:
        for action in ("unload", "load"):
            refused = client.post(f"/v2/repository/models/m/{action}")
            assert refused.status_code == 403 and "model control is off" in refused.json()["error"]
        assert deployer.repository.versions("m") == [1]
        assert outputs_of(_infer(client))["tag"][0, 0] == 1.0  # still serving
        assert client.post("/v2/repository/index").status_code == 200  # reading the index is fine


def test_model_control_needs_a_token(model_path):
    with pytest.raises(ServeError, match="model control .* needs a token"):
        Deployer(model_path, port=0, model_control=True)


def test_model_control_with_the_token(model_path):
    with Deployer(model_path, port=0, poll_s=0, model_control=True, token="s3cret") as deployer, \
            httpx.Client(base_url=deployer.url) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = client.post("/v2/repository/models/m/unload", headers=headers)
            assert refused.status_code == 401 and "token" in refused.json()["error"]
        assert deployer.repository.versions("m") == [1]
        good = {"Authorization": "Bearer s3cret"}
        assert client.post("/v2/repository/models/m/unload", headers=good).status_code == 200
        assert deployer.repository.versions("m") == []
        assert client.post("/v2/repository/models/m/load", headers=good).json() == {"name": "m", "versions": ["1"]}
        assert outputs_of(_infer(client, **good))["tag"][0, 0] == 1.0


def _requires(deployer: Deployer, token: str) -> None:
    with httpx.Client(base_url=deployer.url) as client:
        assert _infer(client).status_code == 401
        assert _infer(client, Authorization="Bearer wrong").status_code == 401
        assert _infer(client, Authorization=f"Bearer {token}").status_code == 200


def test_token_from_the_environment(model_path, monkeypatch):
    monkeypatch.setenv("LLMASOS_TOKEN", "from-env")
    with Deployer(model_path, port=0, poll_s=0) as deployer:
        _requires(deployer, "from-env")


def test_token_from_a_file(model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMASOS_TOKEN", "from-env")  # the file wins
    (tmp_path / "token").write_text("from-file\n")
    with Deployer(model_path, port=0, poll_s=0, token_file=tmp_path / "token", model_control=True) as deployer:
        _requires(deployer, "from-file")


@pytest.mark.parametrize("options, message", [
    ({"token": "a", "token_file": "t"}, "not both"),
    ({"token_file": "missing"}, "cannot read the token file"),
    ({"token_file": "empty"}, "empty token"),
    ({"token": ""}, "empty token"),
])
def test_bad_token_sources(model_path, tmp_path, options, message):
    (tmp_path / "empty").write_text("\n")
    options = {k: (tmp_path / v if k == "token_file" else v) for k, v in options.items()}
    with pytest.raises(ServeError, match=message):
        Deployer(model_path, **options)


def test_an_empty_environment_token_is_refused(model_path, monkeypatch):
    monkeypatch.setenv("LLMASOS_TOKEN", "")
    with pytest.raises(ServeError, match="LLMASOS_TOKEN gives an empty token"):
        Deployer(model_path)


@pytest.mark.parametrize("host, token, warned", [
    ("0.0.0.0", None, True), ("::", None, True), ("192.0.2.7", None, True), ("example.org", None, True),
    ("0.0.0.0", "s3cret", False), ("127.0.0.1", None, False), ("localhost", None, False), ("::1", None, False),
])
def test_serving_beyond_loopback_without_a_token_warns(model_path, caplog, host, token, warned):
    caplog.set_level(logging.WARNING, logger="llmasos.serve")
    Deployer(model_path, host=host, token=token)  # constructed, never started: nothing listens
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warnings) == warned, warnings
    if warned:
        assert f"serving on {host} without a token" in warnings[0] and "LLMASOS_TOKEN" in warnings[0]


def test_cli_model_control_without_a_token(model_path, capsys):
    assert main(["serve", str(model_path), "--model-control", "--port", "0"]) == 2
    assert "model control" in capsys.readouterr().err
