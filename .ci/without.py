"""Run pytest in this venv as if some of its distributions were not installed.

    python .ci/without.py torch,torchvision,triton --collect-only -q -m "not torch"

The interpreter restarts without its site-packages (``-S``) and gets instead a folder of links to
every entry of them except the files of the named distributions (from their RECORD), so the
packages are really absent: ``import torch`` fails and ``importlib.util.find_spec("torch")`` is
None. CI uses it to check what a single-framework environment (``tox -e tf``, ``tox -e torch``)
collects without installing a second venv. A name that is not installed is ignored.
"""

from __future__ import annotations

import site
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path


def hidden_entries(names: list[str]) -> set[str]:
    """Top-level site-packages entries that belong to the distributions ``names``."""
    entries: set[str] = set()
    for name in names:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        entries |= {file.parts[0] for file in files if file.parts[0] != ".."}
    return entries


def main() -> int:
    names, pytest_args = sys.argv[1].split(","), sys.argv[2:]
    site_packages = Path(site.getsitepackages()[0])
    drop = hidden_entries(names)
    with tempfile.TemporaryDirectory() as view:
        for entry in site_packages.iterdir():
            if entry.name not in drop:
                (Path(view) / entry.name).symlink_to(entry)
        code = ("import site, sys; site.addsitedir(sys.argv[1]); import pytest; "
                "sys.exit(pytest.main(sys.argv[2:]))")
        return subprocess.run([sys.executable, "-S", "-c", code, view, *pytest_args]).returncode


if __name__ == "__main__":
    sys.exit(main())
