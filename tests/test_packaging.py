"""What the package declares matches what CI tests."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_requires_python_is_the_python_the_suite_runs_on():
    # Python 3.10 was declared but never tested (and asyncio's TimeoutError hung batched requests
    # there): the lowest Python a user may install on is the one CI runs these tests with.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert declared == f">={sys.version_info.major}.{sys.version_info.minor}"
