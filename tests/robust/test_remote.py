"""The query-only Square attack against a served model over HTTP (``llmasos robust --url ...
--model NAME``): a real Deployer on a free loopback port, the command in a subprocess, and the
report equal to Square's on the same ONNX file in process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmasos import robust
from llmasos.errors import AttackError
from llmasos.robust import Report

pytest.importorskip("torch")

pytestmark = pytest.mark.torch
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(cnn, tmp_path_factory):
    """``(server url, onnx path, csv path, x, y)``: the digits CNN served as ``digits``."""
    import pandas as pd

    from llmasos import export
    from llmasos.serve import Deployer

    model, x, y = cnn
    x, y = x[:48], y[:48]
    folder = tmp_path_factory.mktemp("remote")
    table = pd.DataFrame(x.reshape(len(x), -1), columns=[f"p{i}" for i in range(64)]).assign(label=y)
    table.to_csv(folder / "test.csv", index=False)
    export.to_onnx(model, str(folder / "digits.onnx"))
    with Deployer(folder / "digits.onnx", port=0) as server:
        yield server.url, folder / "digits.onnx", folder / "test.csv", x, y


def test_llmasos_robust_url_attacks_a_served_model_as_square_on_its_onnx_file(served, tmp_path):
    url, onnx_file, csv, x, y = served
    done = subprocess.run([sys.executable, "-m", "llmasos", "robust", "--url", url, "--model", "digits",
                           "--data", str(csv), "--eps", "0,0.2", "--queries", "100",
                           "--json", str(tmp_path / "report.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    over_http = Report.from_json((tmp_path / "report.json").read_text())
    in_process = robust.evaluate(str(onnx_file), (x, y), attacks=[robust.Square(queries=100)], eps=[0, 0.2])
    assert [row["attack"] for row in over_http.rows] == ["square", "square"]
    for remote_row, local_row in zip(over_http.rows, in_process.rows):
        assert remote_row["clean_accuracy"] == pytest.approx(local_row["clean_accuracy"], abs=1e-9)
        # the same seeded queries on the same ONNX Runtime graph: equal within a few points
        assert abs(remote_row["adversarial_accuracy"] - local_row["adversarial_accuracy"]) <= 0.05
        assert remote_row["mean_perturbation"] <= remote_row["eps"] + 1e-6
    attacked = over_http.rows[1]
    assert attacked["clean_accuracy"] > 0.9 and attacked["adversarial_accuracy"] < attacked["clean_accuracy"] - 0.3
    assert in_process.table().splitlines()[3].split()[0] in done.stdout


def test_the_remote_scorer_returns_the_served_scores_and_counts_its_requests(served):
    url, onnx_file, _, x, y = served
    import onnxruntime

    scores = robust.remote(url, "digits")
    assert scores.input_shape == (1, 8, 8)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(scores(x), expected, rtol=0, atol=1e-6)
    before = scores.requests
    robust.square(scores, x[:8], y[:8], eps=0.2, queries=20)
    # one request per query round for all examples still standing (the budget), and one that
    # reads the number of classes
    assert 2 <= scores.requests - before <= 20 + 1


def test_bad_servers_and_names_are_clear_errors(served):
    from llmasos.launch import free_ports

    url, *_ = served
    with pytest.raises(AttackError, match="answered 404"):
        robust.remote(url, "no-such-model")
    with pytest.raises(AttackError, match="cannot reach .* is the server running"):
        robust.remote(f"http://127.0.0.1:{free_ports(1)[0]}", "digits", timeout_s=5)
    with pytest.raises(AttackError, match="http://host:port"):
        robust.remote("127.0.0.1:8000", "digits")
