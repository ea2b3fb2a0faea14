"""Names a package loads on first use (PEP 562), so importing the package costs nothing until
one of them is asked for.

>>> from llmasos import lazy
>>> __getattr__, __dir__ = lazy.attributes("llmasos.compress", {"shrink": "shrinking"})
>>> __getattr__("shrink").__name__, __dir__()[:2]
('shrink', ['Comparison', 'NO_LABEL'])
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def attributes(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A ``__getattr__`` and a ``__dir__`` for ``package``: ``names`` maps each public name to the
    submodule (relative to the package) that defines it. A name is imported once, then kept in the
    package; ``__dir__`` lists the package's ``__all__``. Name the submodules apart from the names
    they define: an imported submodule becomes an attribute of its package and would hide them."""

    def get(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{names[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def listing() -> list[str]:
        return sorted(sys.modules[package].__all__)

    return get, listing
