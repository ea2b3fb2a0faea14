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

from .. import atomic
from ..errors import ExportError
from .providers import check_file, external_files


@contextmanager
def staged(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`llmasos.atomic.staged` for ONNX files: a temporary file beside ``path``, renamed
    over it (with the ordinary file mode) when the block succeeds and removed, with any
    external-data file written next to it, when the block fails; a missing folder is an
    :class:`~llmasos.errors.ExportError`."""
    folder = Path(path).absolute().parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: the folder {folder} does not exist; create it first")
    with atomic.staged(path) as tmp:
        yield tmp


def file_size(path: str | os.PathLike) -> int:
    """Bytes of an ONNX file plus the external-data files it names."""
    path = Path(path)
    return path.stat().st_size + sum(f.stat().st_size for f in external_files(check_file(path), path.parent))
