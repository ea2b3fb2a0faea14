"""Every public name has a docstring with an example: ``llmasos.__all__`` and the public names of
``llmasos.export``, ``llmasos.zoo`` and ``llmasos.serve`` (what the API reference shows). An
example is a doctest (``>>>``, run by the default ``--doctest-modules`` pass) or a fenced code block
(for what needs a framework, a file or a server; the notebooks run those paths)."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = ("llmasos", "llmasos.export", "llmasos.zoo", "llmasos.serve")


def public_names() -> list[tuple[str, str]]:
    return [(module, name) for module in MODULES for name in importlib.import_module(module).__all__
            if not name.startswith("__")]


def has_example(obj: object) -> bool:
    doc = inspect.getdoc(obj) or ""
    return ">>>" in doc or "```" in doc


@pytest.mark.parametrize("module, name", public_names(), ids=lambda value: value)
def test_public_name_has_a_docstring_with_an_example(module, name):
    obj = getattr(importlib.import_module(module), name)
    assert has_example(obj), (f"{module}.{name} needs a docstring with an example ('>>>' doctest or a ```python "
                              f"block): it is in the API reference (docs/reference)")


def test_the_check_tells_an_example_from_prose():
    def documented():
        """Add one.

        >>> 1 + 1
        2
        """

    def prose_only():
        """Add one, as the name says."""

    assert has_example(documented) and not has_example(prose_only) and not has_example(lambda: None)
