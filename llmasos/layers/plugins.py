"""Layers from plugin packages: the entry point group ``llmasos.layers``.

A package installed beside llmasos declares its layers by name, each a :class:`~llmasos.layers.Layer`
subclass as ``"module:Class"``::

    [project.entry-points."llmasos.layers"]
    Highway = "mypkg.layers:Highway"

Nothing is imported until a name the catalog lacks is asked for (``add_layer("Highway", ...)``,
or loading a ``.h5`` that uses it): then the entry points are read (once, with
:mod:`importlib.metadata`, through :mod:`llmasos.plugins`), and the declared module is imported
and its class registered under the declared name (a class already decorated with
``@layers.register`` under that name is taken as it is). A built-in name cannot be declared. A
plugin that fails to import is an :class:`~llmasos.errors.UnknownLayerError` naming the layer, its
entry point and distribution, raised when that layer is asked for and never before.
"""

from __future__ import annotations

from .. import plugins
from ..errors import UnknownLayerError
from .catalog import LayerKind, builtin_kinds, registered_kind
from .custom import Layer, register

GROUP = "llmasos.layers"
_declared: dict[str, plugins.Entry] | None = None   # lower-case name -> entry, read on first need


def find(name: str) -> type[LayerKind] | None:
    """The kind of the plugin layer ``name`` (case-insensitive), imported and registered now;
    None when no installed plugin declares it."""
    entry = _entries().get(name.lower())
    if entry is None:
        return None
    where = f"layer {entry.name!r} ({entry.origin})"
    cls = plugins.resolve(entry.value, where, UnknownLayerError)
    if ":" not in entry.value or not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise UnknownLayerError(f"{where} must name a subclass of llmasos.layers.Layer as 'module:Class', got {cls!r}")
    kind = registered_kind(entry.name)
    if kind is None:  # not decorated, or unregistered since: register the class under the declared name
        register(entry.name)(cls)
        kind = registered_kind(entry.name)
    elif getattr(kind, "layer_class", None) is not cls:
        raise UnknownLayerError(f"{where}: the name is registered to {kind.layer_class.__qualname__}, "
                                f"not to the declared {cls.__qualname__}")
    return kind


def _entries() -> dict[str, plugins.Entry]:
    global _declared
    if _declared is None:
        builtin = {name.lower() for name in builtin_kinds()}
        found: dict[str, plugins.Entry] = {}

        def taken(name: str) -> str | None:
            if name.lower() in builtin:
                return "a built-in layer"
            return found[name.lower()].origin if name.lower() in found else None

        for entry in plugins.declared(GROUP, taken, "layer"):
            found[entry.name.lower()] = entry
        _declared = found
    return _declared
