"""Grouped convolution in TensorFlow on every CPU. Where oneDNN is off (AMD CPUs without AVX-512,
or ``TF_ENABLE_ONEDNN_OPTS=0`` anywhere) TensorFlow's fused Eigen convolution refuses groups; the
adapter must still give torch's numbers, and the ONNX file must still hold one grouped ``Conv``.
TensorFlow reads the variable when it is first imported, so each setting runs in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from llmasos import Model
from llmasos.spec import ModelSpec

from ..test_parity import random_inputs, randomized_weights

pytestmark = [pytest.mark.torch, pytest.mark.tf]

# Loads the torch-made .h5 in TensorFlow, predicts, exports; reports whether oneDNN was on.
SCRIPT = """
import json, sys
import numpy as np
from llmasos import Model, export
model = Model.load(sys.argv[1], framework="tf")
np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))
report = export.to_onnx(model, sys.argv[4])
from tensorflow.python.util import _pywrap_util_port
print(json.dumps({"onednn": bool(_pywrap_util_port.IsMklEnabled()), "verified": report.verified}))
"""


def _grouped_spec() -> ModelSpec:
    spec = ModelSpec.sequential((4, 9, 9))
    spec.add("Conv2D", 6, kernel_size=3, padding="same", groups=2, activation="relu")
    spec.add("Reshape", [6, -1]).add("Conv1D", 6, kernel_size=4, stride=2, padding=1, groups=3)
    return spec


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_grouped_conv_in_tf_matches_torch_with_onednn_off_and_on(tmp_path, onednn):
    spec = _grouped_spec()
    model = Model(spec=spec, framework="torch").build(seed=0)
    model.set_weights(randomized_weights(spec))
    model.save(tmp_path / "m.h5")
    x = random_inputs(spec, batch=3)[0]
    np.save(tmp_path / "x.npy", x)
    want = model.predict(x)

    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.h5"), str(tmp_path / "x.npy"),
                           str(tmp_path / "tf.npy"), str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == {"onednn": onednn == "1", "verified": True}
    np.testing.assert_allclose(np.load(tmp_path / "tf.npy"), want, atol=1e-5, rtol=0)

    convs = [node for node in onnx.load(str(tmp_path / "m.onnx")).graph.node if node.op_type == "Conv"]
    assert [next(a.i for a in node.attribute if a.name == "group") for node in convs] == [2, 3]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], want, atol=1e-5, rtol=0)
