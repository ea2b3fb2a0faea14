"""Writing files so that a failure leaves nothing half-written behind.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> with staged(os.path.join(folder, "model.onnx")) as tmp:
...     _ = tmp.write_bytes(b"done")
>>> os.listdir(folder)
['model.onnx']
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx

from .. import atomic
from ..errors import ExportError
from .providers import check_file, external_files, graphs


# Protobuf cannot serialise a message of 2 GiB or more: weights beyond this go to an external-data
# file (Optimum and torch's exporter decide the same way), leaving room for the graph itself.
EXTERNAL_DATA_BYTES = 2**31 - 2**26
DATA_SUFFIX = ".data"       # model.onnx -> model.onnx.data, as torch's exporter names it


def data_file(path: str | os.PathLike) -> Path:
    """Where the external data of the ONNX file ``path`` goes: ``<name>.data`` beside it."""
    return Path(f"{os.fspath(path)}{DATA_SUFFIX}")


def needs_external_data(parameters: int) -> bool:
    """Whether float32 weights of ``parameters`` values are too many for one protobuf file."""
    return parameters * 4 >= EXTERNAL_DATA_BYTES


def uses_external_data(proto: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for g in graphs(proto.graph) for t in g.initializer)


def derived_external_data(source: str | os.PathLike) -> bool:
    """Whether a file made from the ONNX file ``source`` (quantised, fp16, optimised) is written
    with external data: when ``source`` is, or when its weights are near the limit. The tools
    writing such a file are asked for external data too, as they would fail on the limit."""
    return Path(source).stat().st_size >= EXTERNAL_DATA_BYTES or uses_external_data(check_file(source))


def too_large(proto: onnx.ModelProto) -> bool:
    """Whether the weights held in ``proto`` are too many bytes for one protobuf file."""
    return sum(t.ByteSize() for g in graphs(proto.graph) for t in g.initializer) >= EXTERNAL_DATA_BYTES


def save(proto: onnx.ModelProto, path: str | os.PathLike, external_data: bool) -> None:
    """Write ``proto`` (its weights in memory) at ``path``; with ``external_data`` the tensors of
    1 KiB or more go to :func:`data_file` beside it, rewritten whole (onnx appends otherwise)."""
    data = data_file(path)
    data.unlink(missing_ok=True)
    if external_data:
        onnx.save_model(proto, os.fspath(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
    else:
        onnx.save_model(proto, os.fspath(path))


@contextmanager
def staged(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`llmasos.atomic.staged` for ONNX files: a temporary file beside ``path``, renamed
    over it (with the ordinary file mode) when the block succeeds and removed, with any
    external-data file written next to it, when the block fails; a missing folder is an
    :class:`~llmasos.errors.ExportError`.

    External data written as the temporary's :func:`data_file` moves to ``path``'s, and the file
    is rewritten to name it, just before the file itself is renamed in (a reader polling the
    folder should still take versions renamed in whole, as Triton's repositories are).
    """
    target = Path(path)
    folder = target.absolute().parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: the folder {folder} does not exist; create it first")
    with atomic.staged(target) as tmp:
        yield tmp
        if data_file(tmp).exists():
            _adopt_data(tmp, target)


def _adopt_data(tmp: Path, target: Path) -> None:
    proto = onnx.load(os.fspath(tmp), load_external_data=False)
    old, new = data_file(tmp), data_file(target)
    for tensor in (t for graph in graphs(proto.graph) for t in graph.initializer):
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old.name:
                entry.value = new.name
    onnx.save_model(proto, os.fspath(tmp))
    old.chmod(atomic.file_mode())
    with open(old, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(old, new)


def file_size(path: str | os.PathLike) -> int:
    """Bytes of an ONNX file plus the external-data files it names."""
    path = Path(path)
    return path.stat().st_size + sum(f.stat().st_size for f in external_files(check_file(path), path.parent))
