"""Files written whole or not at all, readable like any other file the user writes.

Every file llmasos writes (``.h5`` models, ONNX files, Triton repositories, manifests) goes
through :func:`staged`: a temporary file beside the target, renamed over it once complete, so a
reader sees the old file or the finished new one and a crash leaves the old one whole.
``tempfile.mkstemp`` creates its file with mode 0600, which would make every model unreadable to
a serving container running as another user; the finished file gets the mode ``open()`` would
have given it, ``0666 & ~umask`` (0644 under the usual umask 022).

A temporary file is named ``.<target>.tmp-XXXXXXXX`` and locked (``flock``) by its writer. A
writer killed before the rename leaves it behind; the next write of the same target removes it
(only names of that pattern, only unlocked ones, and only once they are some seconds old, so a
concurrent writer of the same file is never disturbed).

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
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be removed there, which protects it instead
    fcntl = None

# A writer's temporary file younger than this is never removed by another writer: it covers the
# moment between creating the file and locking it, and the rename after unlocking it.
STALE_AFTER_S = 10.0


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


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def _locked(path: str) -> bool:
    """Whether a live writer holds ``path`` (a missing file is held by nobody)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock


def remove_stale(path: str | os.PathLike) -> list[str]:
    """Remove the temporary files that killed writers of ``path`` left beside it (with the files
    whose names extend them, such as external data); returns their names."""
    target = Path(path).absolute()
    # mkstemp's random part is 8 characters of [a-z0-9_]; anything after it was written next to it
    pattern = re.compile(re.escape(_temp_prefix(target)) + r"[a-z0-9_]{8}")
    removed, now = [], time.time()
    with os.scandir(target.parent) as entries:
        candidates = [(entry, pattern.match(entry.name)) for entry in entries]
    for entry, match in candidates:
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < STALE_AFTER_S:
                continue
            if _locked(os.path.join(target.parent, match.group())):
                continue
            os.unlink(entry.path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
        removed.append(entry.name)
    return removed


@contextmanager
def staged(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file ``.<name>.tmp-XXXXXXXX`` beside ``path``, renamed over it when the block
    succeeds, with the ordinary file mode and its bytes on disk (fsync) first; when the block
    fails it is removed, with any file whose name extends it (an external-data file written next
    to it), and the old ``path`` is untouched. Leftovers of earlier writers killed mid-write are
    removed first (:func:`remove_stale`).

    The folder must exist (callers say so in their own error type). Beside, not in /tmp: a
    rename within one folder is atomic, so a model server polling the folder never sees a
    partial file. The writer holds an ``flock`` on the file until the rename; a library that
    locks the files it writes (HDF5) must be told not to lock this one.
    """
    target = Path(path)
    folder = target.absolute().parent
    remove_stale(target)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix="", dir=folder)
    tmp = Path(name)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
        os.chmod(tmp, file_mode())
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        # Unlocked (closed) before the rename, so readers that lock (HDF5) never meet our lock on
        # the finished file; touched first, so it is too young for another writer to take as stale.
        os.utime(tmp)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    finally:
        if fd >= 0:
            os.close(fd)
        for leftover in glob.glob(glob.escape(str(tmp)) + "*"):
            os.unlink(leftover)
