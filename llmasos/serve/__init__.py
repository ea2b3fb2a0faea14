"""Serving: ONNX Runtime behind the Open Inference Protocol (KServe/Triton "v2") over HTTP.

>>> from llmasos.serve import Deployer
>>> Deployer.__name__
'Deployer'

``Deployer(path).deploy()`` serves a ``.h5``, an ``.onnx`` file or a model repository;
``write_triton_repo`` and ``write_kserve_manifest`` hand the same artifact to Triton or KServe.
Nothing here imports torch or TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Deployer": "llmasos.serve.deployer",
    "write_triton_repo": "llmasos.serve.triton",
    "write_kserve_manifest": "llmasos.serve.triton",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'llmasos.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
