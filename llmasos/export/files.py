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
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ExportError
from .providers import check_file, external_files


@contextmanager
def staged(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path``, renamed over it when the block succeeds and removed
    (with any external-data file written next to it) when the block fails.

    Beside, not in /tmp: a rename within one folder is atomic, so a reader — a model server
    polling the folder — sees the old file or the finished new one, never a partial one.
    """
    target = Path(path)
    folder = target.absolute().parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {target}: the folder {folder} does not exist; create it first")
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        for leftover in folder.glob(f"{tmp.name}*"):
            leftover.unlink()


def file_size(path: str | os.PathLike) -> int:
    """Bytes of an ONNX file plus the external-data files it names."""
    path = Path(path)
    return path.stat().st_size + sum(f.stat().st_size for f in external_files(check_file(path), path.parent))
