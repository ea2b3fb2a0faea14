"""Layers: the catalog the spec draws on, and the way in for a user's own.

>>> from llmasos import layers
>>> @layers.register("Scale")
... class Scale(layers.Layer):
...     def __init__(self, factor=2.0):
...         self.factor = factor
...     def output_shape(self, input_shape):
...         return input_shape
...     def call(self, ops, x):
...         return ops.mul(x, self.factor)
>>> "Scale" in layers.known_kinds()
True
>>> layers.unregister("Scale")

A registered layer is added by name (``model.add_layer("Scale", 3.0)``), trains in every
framework with the same numbers, is saved in ``.h5`` files by name with its ``__init__``
arguments, and exports to ONNX. A plugin package adds layers through the entry point group
``llmasos.layers`` (:mod:`.plugins`), found by name with no import by hand. See
:mod:`llmasos.layers.custom` for the details and :mod:`llmasos.ops` for the op set.
"""

from . import builtin, catalog, plugins  # noqa: F401 - importing builtin fills the catalog
from .catalog import builtin_kinds, get_kind, known_kinds, remove_kind as unregister
from .custom import INITIALIZERS, Layer, register

catalog.find_missing = plugins.find   # names the catalog lacks are looked for in installed plugins

__all__ = ["INITIALIZERS", "Layer", "builtin_kinds", "get_kind", "known_kinds", "register", "unregister"]
