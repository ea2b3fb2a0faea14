"""Find a framework adapter by name, importing it (and its framework) only when first asked.

>>> canonical_framework("PyTorch")
'torch'
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from ..errors import FrameworkError, FrameworkNotInstalledError
from .base import Backend

# canonical name -> (adapter module, the package that must be importable, the pip extra)
FRAMEWORKS = {
    "torch": ("llmasos.adapters.torch", "torch", "torch"),
    "tf": ("llmasos.adapters.tf", "tensorflow", "tf"),
}
ALIASES = {"torch": "torch", "pytorch": "torch", "tf": "tf", "tensorflow": "tf", "keras": "tf"}
ENV_VAR = "LLMASOS_FRAMEWORK"


def canonical_framework(name: str) -> str:
    """Map an accepted spelling to the canonical name, or raise listing the accepted ones."""
    key = str(name).strip().lower()
    if key not in ALIASES:
        raise FrameworkError(f"unknown framework {name!r}; use one of: {', '.join(sorted(ALIASES))}")
    return ALIASES[key]


def is_installed(name: str) -> bool:
    return importlib.util.find_spec(FRAMEWORKS[canonical_framework(name)][1]) is not None


def installed_frameworks() -> list[str]:
    return [name for name in FRAMEWORKS if is_installed(name)]


def resolve_framework(name: str | None = None, config_value: str | None = None) -> str:
    """The framework to use: the argument, else the config's, else ``$LLMASOS_FRAMEWORK``,
    else the first one installed."""
    for candidate in (name, config_value, os.environ.get(ENV_VAR)):
        if candidate:
            return canonical_framework(candidate)
    found = installed_frameworks()
    if not found:
        raise FrameworkNotInstalledError(
            'no framework is installed; install one: pip install "llmasos[torch]" or pip install "llmasos[tf]"')
    return found[0]


def get_backend(name: str) -> Backend:
    """The adapter for ``name``; imports its framework on first use."""
    canonical = canonical_framework(name)
    module, package, extra = FRAMEWORKS[canonical]
    if importlib.util.find_spec(package) is None:
        raise FrameworkNotInstalledError(
            f"framework {canonical!r} needs the package {package!r}, which is not installed; "
            f'install it with: pip install "llmasos[{extra}]"')
    return importlib.import_module(module).BACKEND
