"""The catalog: every layer kind the neutral spec understands, built in or registered by a user.

A kind says, as plain data and pure functions and without any framework, which options it takes,
the output shape for given input shapes (batch excluded; ``None`` is a dynamic dimension) and the
weights it owns in the **neutral layout** every adapter converts to and from. The built-in kinds
are in :mod:`.builtin`; a user's :class:`~llmasos.layers.Layer` becomes a kind through
:func:`llmasos.layers.register` (:mod:`.custom`).

>>> get_kind("dense").output_shape({"units": 10}, [(784,)])
(10,)
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from ..errors import SpecError, UnknownLayerError

Shape = tuple  # tuple[int | None, ...], batch dimension excluded

# "gelu" is the exact erf form; "gelu_tanh" its tanh approximation (GPT-2's "gelu_new")
ACTIVATIONS = ("linear", "relu", "gelu", "gelu_tanh", "tanh", "sigmoid", "softmax", "silu", "leaky_relu")


def check_activation(name: Any, where: str) -> str:
    """Return a normalised activation name, or raise naming the known ones."""
    if name is None:
        return "linear"
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise SpecError(f"{where}: unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return name.lower()


class LayerKind:
    """One kind of layer. Subclasses are registered with :func:`register` and never instantiated."""

    name: ClassVar[str]
    main: ClassVar[str | None] = None          # the option the first positional argument sets
    defaults: ClassVar[dict] = {}               # every option the kind takes, with its default
    required: ClassVar[tuple] = ()              # options with no default
    num_inputs: ClassVar[tuple[int, int]] = (1, 1)
    has_activation: ClassVar[bool] = False      # takes a fused ``activation=`` option
    statistics: ClassVar[tuple] = ()            # weights updated by the forward pass, not by gradients
    shares: ClassVar[str | None] = None         # the option naming an earlier layer whose weights it uses
    takes_int64: ClassVar[bool] = False         # int64 inputs (ids, masks) reach it as they are

    @classmethod
    def normalize(cls, config: dict, where: str) -> dict:
        """Validate options and fill defaults; returns a new plain-data dict."""
        unknown = sorted(set(config) - set(cls.defaults) - set(cls.required))
        if unknown:
            known = sorted(set(cls.defaults) | set(cls.required))
            raise SpecError(f"{where}: unknown option(s) {', '.join(unknown)}; {cls.name} takes: {', '.join(known)}")
        missing = [key for key in cls.required if config.get(key) is None]
        if missing:
            raise SpecError(f"{where}: {cls.name} needs {', '.join(missing)}")
        out = {**cls.defaults, **config}
        if cls.has_activation:
            out["activation"] = check_activation(out.get("activation"), where)
            if out.get("negative_slope") is None:
                out["negative_slope"] = 0.01
        return cls.check(out, where)

    @classmethod
    def check(cls, config: dict, where: str) -> dict:
        return config

    @classmethod
    def output_shape(cls, config: dict, inputs: list[Shape]) -> Shape:
        return inputs[0]

    @classmethod
    def weights(cls, config: dict, inputs: list[Shape]) -> dict[str, Shape]:
        """Weight names and neutral shapes; empty for layers without weights."""
        return {}

    @classmethod
    def link(cls, config: dict, source_kind: str, source_config: dict, inputs: list[Shape]) -> dict:
        """For kinds that share another layer's weights (:attr:`shares`): check that layer and
        fill in what the config takes from it; raise :class:`SpecError` when it does not fit."""
        return config


_KINDS: dict[str, type[LayerKind]] = {}
_BUILTIN: set[str] = set()
# Asked for a name the catalog lacks before it gives up: the plugin layers (set by the package's
# __init__, so the catalog need not import what registers them).
find_missing: Callable[[str], type[LayerKind] | None] = lambda name: None


def add_kind(kind: type[LayerKind], *, builtin: bool = False, override: bool = False) -> type[LayerKind]:
    """Put ``kind`` in the catalog under its name (case-insensitive). A name already taken is an
    error unless ``override`` replaces a user's kind; a built-in kind is never replaced."""
    key = kind.name.lower()
    if key in _BUILTIN:
        raise SpecError(f"{kind.name!r} is a built-in layer and cannot be replaced; choose another name")
    if key in _KINDS and not override:
        raise SpecError(f"a layer named {_KINDS[key].name!r} is already registered; pass override=True to "
                        f"replace it, or choose another name")
    _KINDS[key] = kind
    if builtin:
        _BUILTIN.add(key)
    return kind


def remove_kind(name: str) -> None:
    """Take a user's kind out of the catalog (a built-in one stays)."""
    key = str(name).lower()
    if key in _BUILTIN:
        raise SpecError(f"{name!r} is a built-in layer and cannot be removed")
    if _KINDS.pop(key, None) is None:
        raise UnknownLayerError(f"no layer named {name!r} is registered; registered: {', '.join(known_kinds())}")


def get_kind(name: str) -> type[LayerKind]:
    """Look a layer kind up by name, case-insensitively: registered, else from an installed plugin."""
    kind = registered_kind(name) or find_missing(str(name))
    if kind is None:
        raise UnknownLayerError(
            f"unknown layer {name!r}; known layers: {', '.join(known_kinds())}. A custom layer must be registered "
            f"first: import the module that defines it with @llmasos.layers.register({str(name)!r}), or install "
            f"the plugin package that declares it (entry point group 'llmasos.layers')")
    return kind


def registered_kind(name: str) -> type[LayerKind] | None:
    """The kind registered as ``name`` (case-insensitive) in this process, or None; no plugin is read."""
    return _KINDS.get(str(name).lower())


def known_kinds() -> list[str]:
    """Every layer name the spec takes: built in and registered."""
    return sorted(kind.name for kind in _KINDS.values())


def builtin_kinds() -> list[str]:
    """The layer names llmasos itself defines."""
    return sorted(_KINDS[key].name for key in _BUILTIN)


def fused_activation(kind: str, config: dict) -> tuple[str, float | None]:
    """The activation (and leaky slope) a layer applies after itself: a kind with
    :attr:`LayerKind.has_activation` names it in its config; any other kind applies none, even
    when a user's layer takes an option called ``activation``."""
    if not get_kind(kind).has_activation:
        return "linear", None
    return config.get("activation", "linear"), config.get("negative_slope")
