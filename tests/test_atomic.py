"""Written files get the ordinary mode (``0666 & ~umask``), not mkstemp's 0600, so a serving
container running as another user can read them: .h5 files, ONNX files (exported and derived),
Triton repositories and KServe manifests, under umask 022 and 077."""

from __future__ import annotations

import os
import stat

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from llmasos import atomic, export, io
from llmasos.spec import ModelSpec


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _mlp(path) -> None:
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch_size", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch_size", 3])], weights)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_umask_is_read_without_changing_it(umask):
    assert atomic.umask() == umask
    assert os.umask(umask) == umask  # still what the fixture set
    assert atomic.file_mode() == 0o666 & ~umask and atomic.folder_mode() == 0o777 & ~umask


def test_written_files_get_the_ordinary_mode(umask, tmp_path):
    want_file, want_folder = 0o666 & ~umask, 0o777 & ~umask
    spec = ModelSpec.sequential((2,)).add("Dense", 1)
    io.write(tmp_path / "m.h5", io.ModelFile(spec, {"dense": {"kernel": np.ones((2, 1), "f4"),
                                                              "bias": np.zeros(1, "f4")}}))
    assert _mode(tmp_path / "m.h5") == want_file

    _mlp(tmp_path / "src.onnx")
    os.chmod(tmp_path / "src.onnx", 0o600)  # a source made private must not make its copies private
    export.optimize(tmp_path / "src.onnx", tmp_path / "opt.onnx", level="basic")
    assert _mode(tmp_path / "opt.onnx") == want_file

    from llmasos.serve.triton import write_kserve_manifest, write_triton_repo

    model_dir = write_triton_repo(tmp_path / "opt.onnx", tmp_path / "repo", "mlp")
    assert _mode(model_dir / "1") == want_folder
    assert _mode(model_dir / "1" / "model.onnx") == want_file and _mode(model_dir / "config.pbtxt") == want_file
    assert _mode(write_kserve_manifest(tmp_path / "isvc.yaml", "mlp", "s3://b/repo")) == want_file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isvc.yaml", "m.h5", "opt.onnx", "repo", "src.onnx"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic.staged(target) as tmp:
        tmp.write_text("new")
        (tmp.parent / (tmp.name + ".data")).write_text("side file")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["notes.txt"]
