"""The notebooks are committed clean: no outputs, no execution counts (CI executes them in a pass
of its own, ``LLMASOS_QUICK=1 python -m pytest --nbmake notebooks/``, see ``.ci/run``)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def dirty_cells(notebook: dict) -> list[str]:
    """Where a notebook carries results: cells with outputs or an execution count."""
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {index}: outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index}: execution_count {cell['execution_count']}")
    return found


def test_the_issue_notebooks_are_there():
    names = {path.stem[:2] for path in NOTEBOOKS}
    assert {f"{n:02d}" for n in range(1, 13)} <= names, [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert dirty_cells(notebook) == [], f"{path.name}: clear it (Kernel > Restart and Clear Outputs) before committing"


def test_a_notebook_with_outputs_is_caught():
    cell = {"cell_type": "code", "source": "1 + 1", "metadata": {}, "execution_count": 3,
            "outputs": [{"output_type": "execute_result", "data": {"text/plain": "2"}, "execution_count": 3}]}
    assert dirty_cells({"cells": [cell]}) == ["cell 0: outputs", "cell 0: execution_count 3"]
    assert dirty_cells({"cells": [{**cell, "outputs": [], "execution_count": None}]}) == []


def test_the_default_run_does_not_execute_notebooks():
    """``python -m pytest`` collects tests/ and llmasos/ only; notebooks run with --nbmake in CI."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "notebooks" not in " ".join(options["testpaths"])
    assert "--nbmake" not in options["addopts"]
