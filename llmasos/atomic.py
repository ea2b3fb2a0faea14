"""Files written whole or not at all, readable like any other file the user writes.

Every file llmasos writes (``.h5`` models, ONNX files, Triton repositories, manifests) goes
through :func:`staged`: a temporary file beside the target, renamed over it once complete, so a
reader sees the old file or the finished new one and a crash leaves the old one whole.
``tempfile.mkstemp`` creates its file with mode 0600, which would make every model unreadable to
a serving container running as another user; the finished file gets the mode ``open()`` would
have given it, ``0666 & ~umask`` (0644 under the usual umask 022).

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> with staged(os.path.join(folder, "notes.txt")) as tmp:
...     _ = tmp.write_text("done")
>>> os.listdir(folder), oct(os.stat(os.path.join(folder, "notes.txt")).st_mode & 0o777) == oct(file_mode())
(['notes.txt'], True)
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux
    ``/proc/self/status``): ``os.umask`` can only be read by setting it, which races with other
    threads creating files."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0o666 & ~umask``."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode a new folder gets from ``mkdir``: ``0o777 & ~umask`` (``mkdtemp`` gives 0700)."""
    return 0o777 & ~umask()


@contextmanager
def staged(path: str | os.PathLike, *, prefix: str | None = None, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside ``path``, renamed over it when the block succeeds, with the
    ordinary file mode and its bytes on disk (fsync) first; when the block fails it is removed,
    with any file whose name extends it (an external-data file written next to it), and the old
    ``path`` is untouched.

    The folder must exist (callers say so in their own error type). Beside, not in /tmp: a
    rename within one folder is atomic, so a model server polling the folder never sees a
    partial file.
    """
    target = Path(path)
    folder = target.absolute().parent
    fd, name = tempfile.mkstemp(prefix=f".{target.name}." if prefix is None else prefix, suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        for leftover in glob.glob(glob.escape(str(tmp)) + "*"):
            os.unlink(leftover)
