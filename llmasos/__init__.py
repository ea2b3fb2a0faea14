"""llmasos: describe a model once, train it in PyTorch or TensorFlow, ship it as ONNX.

>>> from llmasos import Model
>>> model = Model(input_dim=4, output_dim=3, framework="torch")   # a spec: torch loads only to build it
>>> "Total params: 15" in model.add_layer("Dense", 3, activation="softmax").summary()
True

Importing llmasos imports neither torch nor TensorFlow: public names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Model": "llmasos.model",
    "Dataset": "llmasos.data",
    "Optimizer": "llmasos.optim",
    "History": "llmasos.training",
    "EarlyStopping": "llmasos.callbacks",
    "Checkpoint": "llmasos.callbacks",
    "Deployer": "llmasos.serve",
    "ModelSpec": "llmasos.spec",
}
_SUBMODULES = ("export", "zoo", "errors", "layers", "ops", "robust", "compress", "energy")

__all__ = [*_LAZY, *_SUBMODULES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"llmasos.{name}")
    else:
        raise AttributeError(f"module 'llmasos' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
