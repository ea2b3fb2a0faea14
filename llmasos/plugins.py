"""Plugin packages: what they declare through entry points, and importing it with the plugin named.

A separately installed package adds to llmasos through entry point groups, read with
:mod:`importlib.metadata` the first time a registry needs them (as pytest reads ``pytest11``)::

    [project.entry-points."llmasos.layers"]
    Highway = "mypkg.layers:Highway"

    [project.entry-points."llmasos.families"]
    mynet = "mypkg.mynet:MyNet"

Each registry (:mod:`llmasos.families`, :mod:`llmasos.layers`) keeps its own names; this module
only lists a group's entries, with where each came from, and imports one on demand. A plugin that
fails to import is reported, by the registry, with its entry point and distribution, when its name
is looked up: it never breaks ``import llmasos`` or another plugin.

>>> from llmasos import plugins
>>> list(plugins.declared("llmasos.no-such-group"))
[]
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class Entry:
    """One entry point: its ``name``, its ``"module:attribute"`` value and, for messages, its origin
    (``"entry point NAME = 'VALUE' of the distribution 'DIST'"``)."""

    name: str
    value: str
    origin: str


def declared(group: str, taken: Callable[[str], str | None] = lambda name: None,
             what: str = "plugin") -> Iterator[Entry]:
    """The entry points of ``group``, one at a time. One whose name is already taken (``taken(name)``
    says by what, asked as each comes, so it sees the ones taken before) is left out with a
    warning: a plugin adds names, it never replaces one."""
    for point in entry_points(group=group):
        entry = Entry(point.name, point.value, f"entry point {point.name} = {point.value!r} of {_distribution(point)}")
        owner = taken(point.name)
        if owner is not None:
            warnings.warn(f"{what} {point.name!r} from {entry.origin} is ignored: the name is taken by {owner}",
                          stacklevel=4)
            continue
        yield entry


def resolve(path: str, what: str, error: type[Exception]) -> Any:
    """Import ``"module:attribute"`` (``attribute`` may be dotted) and return the attribute, or
    the module when there is none. Any failure becomes ``error`` saying ``what`` failed and why
    (a plugin's import may fail in any way: a missing dependency, a syntax error, a bad name)."""
    module, _, attribute = path.partition(":")
    try:
        value = importlib.import_module(module)
        for part in attribute.split(".") if attribute else ():
            value = getattr(value, part)
    except Exception as err:
        raise error(f"{what} failed to load: {type(err).__name__}: {err}") from err
    return value


def _distribution(point: Any) -> str:
    dist = getattr(point, "dist", None)
    return f"the distribution {dist.name!r}" if dist is not None else "an unnamed distribution"
