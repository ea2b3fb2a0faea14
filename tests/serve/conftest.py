"""Small ONNX models and a real server on a free loopback port, for the serving tests."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnx.helper as h
import pytest
from onnx import TensorProto, numpy_helper

from llmasos.serve import Deployer

WEIGHTS = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 9  # what this onnxruntime reads
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def affine_model(path: Path, tag: float = 1.0) -> Path:
    """``y = x @ W + tag`` and ``tag = x * 0 + tag`` on x [batch, 4]: versions differ by ``tag``."""
    graph = h.make_graph(
        [h.make_node("MatMul", ["x", "w"], ["xw"]), h.make_node("Add", ["xw", "t"], ["y"]),
         h.make_node("Mul", ["x", "zero"], ["x0"]), h.make_node("Add", ["x0", "t"], ["tag"])],
        "affine",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
         h.make_tensor_value_info("tag", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(WEIGHTS, "w"), numpy_helper.from_array(np.float32(tag), "t"),
         numpy_helper.from_array(np.float32(0), "zero")])
    return _save(graph, path)


def affine(x: np.ndarray, tag: float = 1.0) -> np.ndarray:
    """What :func:`affine_model` computes for ``y``."""
    return x @ WEIGHTS + np.float32(tag)


TYPES = {"f16": (TensorProto.FLOAT16, np.float16, "FP16"), "i64": (TensorProto.INT64, np.int64, "INT64"),
         "i32": (TensorProto.INT32, np.int32, "INT32"), "b": (TensorProto.BOOL, np.bool_, "BOOL"),
         "s": (TensorProto.STRING, object, "BYTES")}


def types_model(path: Path) -> Path:
    """Identity on five inputs of five datatypes, each [batch, 2]; outputs ``<name>_out``."""
    graph = h.make_graph(
        [h.make_node("Identity", [name], [f"{name}_out"]) for name in TYPES], "types",
        [h.make_tensor_value_info(name, t, ["batch", 2]) for name, (t, _, _) in TYPES.items()],
        [h.make_tensor_value_info(f"{name}_out", t, ["batch", 2]) for name, (t, _, _) in TYPES.items()])
    return _save(graph, path)


def type_examples(rows: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    return {"f16": rng.standard_normal((rows, 2)).astype(np.float16),
            "i64": rng.integers(-2**40, 2**40, (rows, 2)), "i32": rng.integers(-9, 9, (rows, 2)).astype(np.int32),
            "b": rng.random((rows, 2)) > 0.5,
            "s": np.array([[f"héllo {i}", ""] for i in range(rows)], dtype=object)}


def fixed_model(path: Path) -> Path:
    """Relu on a fixed [1, 4] input: no dynamic batch dimension."""
    graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "fixed",
                         [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return _save(graph, path)


def infer_json(name: str, inputs: dict[str, np.ndarray], datatypes: dict[str, str] | None = None,
               **extra) -> dict:
    """A JSON inference request body for ``inputs``."""
    datatypes = datatypes or {}
    return {"inputs": [{"name": k, "shape": list(v.shape), "datatype": datatypes.get(k, "FP32"),
                        "data": v.reshape(-1).tolist()} for k, v in inputs.items()], **extra}


def outputs_of(response: httpx.Response) -> dict[str, np.ndarray]:
    """The JSON outputs of a 200 response, as arrays shaped as the response says."""
    assert response.status_code == 200, response.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repository: affine (versions 1 and 2), types (1), fixed (1)."""
    root = tmp_path_factory.mktemp("repo")
    affine_model(root / "affine" / "1" / "model.onnx", tag=1.0)
    affine_model(root / "affine" / "2" / "model.onnx", tag=2.0)
    types_model(root / "types" / "1" / "model.onnx")
    fixed_model(root / "fixed" / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def server(repo):
    """A started Deployer on the repository, serving every version."""
    with Deployer(repo, port=0, version_policy="all", poll_s=0) as deployer:
        yield deployer


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def mlp_onnx(tmp_path_factory) -> tuple[Path, object]:
    """A digits-size torch MLP (64 -> 128 -> 10), exported with the dynamo exporter, and the module."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    torch.onnx.export(module, (torch.zeros(2, 64),), str(path), dynamo=True, external_data=False, verbose=False,
                      input_names=["input"], output_names=["output"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    return path, module


def wait_for(predicate, timeout_s: float = 10.0, every_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()

