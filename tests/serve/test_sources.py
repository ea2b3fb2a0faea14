"""What the Deployer serves from: a .h5 (exported in a child process), and never a framework."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from llmasos.errors import ServeError
from llmasos.serve import Deployer

from .conftest import affine_model, infer_json, outputs_of

ROOT = Path(__file__).parents[2]


def test_serving_imports_neither_torch_nor_tensorflow(tmp_path):
    path = affine_model(tmp_path / "m.onnx")
    code = ("import sys, numpy as np; from llmasos import Deployer; import llmasos.serve.triton; "
            f"Deployer({str(path)!r}).predict(np.ones((1, 4), np.float32)); "
            "print([m for m in ('torch', 'tensorflow') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_nothing_to_serve(tmp_path):
    with pytest.raises(ServeError, match="does not exist"):
        Deployer(tmp_path / "missing.onnx")
    with pytest.raises(ServeError, match="no model.onnx found"):
        Deployer(tmp_path)
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ServeError, match="not an ONNX model"):
        Deployer(tmp_path / "bad.onnx")


def test_port_in_use(tmp_path):
    path = affine_model(tmp_path / "m.onnx")
    with Deployer(path, port=0) as first:
        with pytest.raises(ServeError, match="cannot listen"):
            Deployer(path, port=first.port).start()


@pytest.mark.torch
@pytest.mark.slow
def test_h5_is_exported_then_served(tmp_path, digits):
    from llmasos import Dataset, Model, Optimizer

    x_train, y_train, x_test, _ = digits
    model = Model(input_dim=64, output_dim=10, framework="torch")
    model.add_layer("Dense", 32, activation="relu")
    model.add_layer("Dense", 10, activation="softmax")
    model.train(Dataset(x_train[:256], y_train[:256], mode="train"), Optimizer("Adam", lr=0.01), epochs=1,
                batch_size=64, seed=0)
    model.save(tmp_path / "digits.h5")
    x = x_test[:5]
    with Deployer(tmp_path / "digits.h5", port=0) as deployer:
        input_name = httpx.get(f"{deployer.url}/v2/models/digits").json()["inputs"][0]["name"]
        response = httpx.post(f"{deployer.url}/v2/models/digits/infer", json=infer_json("digits", {input_name: x}))
        served = next(iter(outputs_of(response).values()))
    np.testing.assert_allclose(served, model.predict(x), rtol=0, atol=1e-5)


def test_llmasos_serve_command_stops_cleanly_on_sigterm(tmp_path):
    path = affine_model(tmp_path / "m.onnx")
    server = subprocess.Popen([sys.executable, "-m", "llmasos", "serve", str(path), "--port", "0"],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        for line in server.stderr:  # JSON log lines; the "serving" one carries the URL
            entry = json.loads(line)
            if entry["message"] == "serving":
                break
        x = np.ones((1, 4), np.float32)
        assert httpx.post(f"{entry['url']}/v2/models/m/infer", json=infer_json("m", {"x": x})).status_code == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
        assert any(json.loads(line)["message"] == "stopped" for line in server.stderr)
    finally:
        if server.poll() is None:
            server.kill()
