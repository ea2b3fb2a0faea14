"""``llmasos zoo list`` and ``llmasos zoo export``."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos.cli import main

from ..conftest import framework_params


def test_zoo_list_prints_the_table(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["Name", "Task", "Frameworks", "Params", "Input", "Pretrained", "weights"]
    assert "resnet18" in out and "11.7M" in out and "vgg16_bn-6c64b313.pth" in out


def test_zoo_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert main(["zoo", "export", "resnet18", "-o", str(tmp_path / "m.onnx"), "--pretrained"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no pretrained weights for resnet18") and "Traceback" not in err


@pytest.mark.parametrize("framework", framework_params())
def test_zoo_export_writes_verified_onnx(framework, tmp_path, capsys):
    import onnxruntime as ort

    path = tmp_path / "tiny.onnx"
    assert main(["zoo", "export", "resnet_tiny", "-o", str(path), "--framework", framework, "--num-classes", "4"]) == 0
    assert "verified" in capsys.readouterr().out
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: np.zeros((2, 3, 32, 32), np.float32)})[0]
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
