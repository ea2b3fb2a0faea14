"""Model families: the name an ``.h5`` is saved under, mapped to the class that restores it.

A family is a :class:`~llmasos.model.Model` subclass whose models need more than a spec and
weights to come back (a config, a tokenizer, generation). :meth:`Model.save` writes its name in
the file's metadata (``"family"``), and :meth:`Model.load` looks the name up here and calls the
class's :meth:`~llmasos.model.Model.from_saved`. Names map to ``"module:attribute"`` strings that
are imported on first lookup, so loading a BERT file imports the zoo's BERT family and a plain
model's file imports no family at all (as timm and keras-hub register their architectures).

Three ways in:

* the zoo's own families, listed below as strings (the zoo registers the classes when imported);
* :func:`register` in code: ``families.register("mynet", MyNet)`` or ``"mypkg.mynet:MyNet"``;
* a plugin package's entry point in the group ``llmasos.families``, read with
  :mod:`importlib.metadata` on the first lookup::

      [project.entry-points."llmasos.families"]
      mynet = "mypkg.mynet:MyNet"

A plugin that fails to import is reported by its name and distribution when its family is
looked up; it never breaks ``import llmasos`` or another family.

>>> from llmasos import families
>>> families.get("bert").__name__
'Bert'
>>> families.get("nope")
Traceback (most recent call last):
...
llmasos.errors.FamilyError: no model family named 'nope'; known: bert, facenet, gpt2, marian, vit, wav2vec2...
"""

from __future__ import annotations

from typing import Any

from . import plugins
from .errors import FamilyError

GROUP = "llmasos.families"

# The zoo's families, imported only when a file of theirs is loaded.
_FAMILIES: dict[str, Any] = {
    "bert": "llmasos.zoo.bert:Bert",
    "gpt2": "llmasos.zoo.gpt2:GPT2",
    "marian": "llmasos.zoo.marian:Marian",
    "wav2vec2": "llmasos.zoo.wav2vec2:Wav2Vec2",
    "vit": "llmasos.zoo.vit:ViT",
    "facenet": "llmasos.zoo.facenet:FaceNet",
}
_ORIGIN: dict[str, str] = {}   # family name -> where a plugin's entry came from, for messages
_plugins_read = False


def register(name: str, family: Any) -> Any:
    """Register ``family`` (a :class:`~llmasos.model.Model` subclass, or its ``"module:attribute"``)
    under ``name``. A name registered twice raises :class:`FamilyError`, unless it is the same
    class again (the zoo filling in its own listed string). Returns ``family``."""
    if not isinstance(name, str) or not name:
        raise FamilyError(f"a family name must be a non-empty string, got {name!r}")
    known = _FAMILIES.get(name)
    if known is not None and known is not family and known != _path(family):
        raise FamilyError(f"model family {name!r} is registered twice: as {_path(known)} and as {_path(family)}")
    _FAMILIES[name] = family
    return family


def get(name: str) -> type:
    """The class of family ``name``, imported on first use; a :class:`FamilyError` names an
    unknown family (and the known ones) or the plugin that failed to load."""
    _read_plugins()
    if name not in _FAMILIES:
        raise FamilyError(f"no model family named {name!r}; known: {', '.join(known())}. A family from a plugin "
                          f"package is found once that package is installed (entry point group {GROUP!r})")
    family = _FAMILIES[name]
    if isinstance(family, str):
        family = _FAMILIES[name] = _import(name, family)
    return family


def known() -> list[str]:
    """Every family name, sorted, without importing any family."""
    _read_plugins()
    return sorted(_FAMILIES)


def _read_plugins() -> None:
    global _plugins_read
    if _plugins_read:
        return
    _plugins_read = True

    def taken(name: str) -> str | None:  # a plugin cannot take over a family already known
        return _ORIGIN.get(name, _path(_FAMILIES[name])) if name in _FAMILIES else None

    for entry in plugins.declared(GROUP, taken, "model family"):
        _FAMILIES[entry.name] = entry.value
        _ORIGIN[entry.name] = entry.origin


def _import(name: str, path: str) -> type:
    where = _ORIGIN.get(name, path)
    value = plugins.resolve(path, f"model family {name!r} ({where})", FamilyError)
    if ":" not in path or not isinstance(value, type) or not hasattr(value, "from_saved"):
        raise FamilyError(f"model family {name!r} ({where}) must name a Model subclass as 'module:Class', "
                          f"got {value!r}")
    return value


def _path(family: Any) -> str:
    return family if isinstance(family, str) else f"{family.__module__}:{family.__qualname__}"
