"""Custom layers: a user's :class:`Layer`, defined once, becomes a layer kind of the catalog.

The layer says its output shape and its weights in the neutral layout (batch excluded, as every
shape in a spec), and computes with the neutral op set (:mod:`llmasos.ops`) on batched tensors.
Its configuration is its ``__init__`` arguments, plain data kept in the spec, so a saved model
names the layer and its arguments and nothing else (as Keras' ``get_config``/``from_config``)::

    from llmasos import layers

    @layers.register("GLU")
    class GLU(layers.Layer):
        def __init__(self, units):
            self.units = units
        def output_shape(self, input_shape):
            return (*input_shape[:-1], self.units)
        def weight_shapes(self, input_shape):
            return {"kernel": (input_shape[-1], 2 * self.units), "bias": (2 * self.units,)}
        def call(self, ops, x, kernel, bias):
            a, b = ops.split(ops.matmul(x, kernel) + bias, 2, axis=-1)
            return a * ops.sigmoid(b)

    model.add_layer("GLU", 64)     # the first __init__ argument is the main positional size

Initial weights are drawn with NumPy from the build seed and the layer's name, so both frameworks
start from the same numbers: ``initializers`` maps a weight to "glorot_uniform", "zeros", "ones"
or "normal" (standard deviation 0.05); unnamed weights of rank 1 start at zero, others
glorot-uniform (Keras' defaults for a kernel and a bias).
"""

from __future__ import annotations

import inspect
import json
import math
import re
import zlib
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import SpecError
from .catalog import LayerKind, Shape, add_kind, get_kind

INITIALIZERS = ("glorot_uniform", "zeros", "ones", "normal")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class Layer:
    """Base class of a custom layer; subclass it and register it with :func:`register`.

    Override :meth:`output_shape` and :meth:`call`, and :meth:`weight_shapes` when the layer owns
    weights. ``num_inputs`` is how many tensors it takes (an int, or ``(fewest, most)``); with one,
    the shape methods get one shape, else a list of them. ``initializers`` names a weight's
    initial values (see the module's docstring).
    """

    num_inputs: ClassVar[int | tuple[int, int]] = 1
    initializers: ClassVar[dict[str, str]] = {}

    def __new__(cls, *args: Any, **kwargs: Any) -> "Layer":
        layer = super().__new__(cls)
        # the __init__ arguments are the config (Keras records them the same way)
        bound = inspect.signature(cls.__init__).bind(layer, *args, **kwargs)
        bound.apply_defaults()
        layer._arguments = {name: value for name, value in list(bound.arguments.items())[1:]}
        return layer

    def output_shape(self, input_shape: Any) -> Shape:
        """The output's shape, batch excluded (``None`` for a dynamic dimension)."""
        raise NotImplementedError(f"{type(self).__name__} must define output_shape(self, input_shape)")

    def weight_shapes(self, input_shape: Any) -> dict[str, Shape]:
        """``{weight name: shape}`` in the neutral layout; none by default."""
        return {}

    def call(self, ops: Any, *inputs: Any, **weights: Any) -> Any:
        """The output for batched ``inputs``, with ``ops`` (:class:`llmasos.ops.Ops`) and the
        weights by name."""
        raise NotImplementedError(f"{type(self).__name__} must define call(self, ops, x, **weights)")

    def get_config(self) -> dict:
        """The ``__init__`` arguments, as plain data (numbers, strings, lists, dicts)."""
        return dict(self._arguments)

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        return cls(**config)


def register(name: str, *, override: bool = False) -> Callable[[type[Layer]], type[Layer]]:
    """Class decorator: make a :class:`Layer` subclass the layer kind ``name`` (case-insensitive,
    as built-in names). A name already registered is refused unless ``override`` (a notebook
    cell run again); a built-in name is always refused."""
    if not isinstance(name, str):
        raise TypeError(f"register takes the layer's name: use @layers.register(\"Name\"), got {name!r}")
    if not _NAME.match(name):
        raise SpecError(f"layer name {name!r} must start with a letter and hold only letters, digits and _")

    def decorate(cls: type[Layer]) -> type[Layer]:
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            raise TypeError(f"@layers.register({name!r}) decorates a subclass of llmasos.layers.Layer, got {cls!r}")
        for method in ("output_shape", "call"):
            if getattr(cls, method) is getattr(Layer, method):
                raise SpecError(f"custom layer {name!r} ({cls.__name__}) must define {method}")
        low, high = _input_range(cls, name)
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        main = parameters[0].name if parameters and parameters[0].kind in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) else None
        kind = type(f"{cls.__name__}Kind", (CustomKind,), {"name": name, "layer_class": cls, "main": main,
                                                           "num_inputs": (low, high)})
        add_kind(kind, override=override)
        return cls

    return decorate


def _input_range(cls: type[Layer], name: str) -> tuple[int, int]:
    count = cls.num_inputs
    low, high = (count, count) if isinstance(count, int) else tuple(count)
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise SpecError(f"custom layer {name!r}: num_inputs must be a positive int or (fewest, most), got {count!r}")
    return low, high


def custom_kind(kind: str) -> type["CustomKind"] | None:
    """The registered kind behind ``kind`` when it is a user's layer, else None (a built-in)."""
    found = get_kind(kind)
    return found if issubclass(found, CustomKind) else None


class WeightTables(dict):
    """An adapter's weight-conversion tables by layer kind: the built-in kinds' own, and ``custom``
    for any kind a user registered (its weights are the framework's as they are, by name)."""

    def __init__(self, builtin: dict, custom: dict) -> None:
        super().__init__(builtin)
        self.custom = custom

    def __missing__(self, kind: str) -> dict:
        if custom_kind(kind) is None:
            raise KeyError(kind)
        return self.custom


class CustomKind(LayerKind):
    """A registered :class:`Layer` seen as a catalog kind; one subclass per registration."""

    layer_class: ClassVar[type[Layer]]
    takes_int64 = True  # a custom layer may take ids or masks and decide what to do with them

    @classmethod
    def normalize(cls, config: dict, where: str) -> dict:
        try:
            inspect.signature(cls.layer_class.__init__).bind(None, **config)
        except TypeError as err:
            takes = ", ".join(list(inspect.signature(cls.layer_class.__init__).parameters)[1:]) or "no options"
            raise SpecError(f"{where}: {err}; {cls.name} takes: {takes}") from None
        layer = cls._make(config, where)
        out = _call(layer.get_config, f"{where}: {cls.name}.get_config")
        if not isinstance(out, dict):
            raise SpecError(f"{where}: {cls.name}.get_config must return a dict, got {out!r}")
        try:
            plain = json.loads(json.dumps(out))
        except (TypeError, ValueError) as err:
            raise SpecError(f"{where}: {cls.name}'s config must be plain data (numbers, strings, lists, dicts) to "
                            f"be saved: {err}") from None
        return plain

    @classmethod
    def _make(cls, config: dict, where: str) -> Layer:
        return _call(lambda: cls.layer_class.from_config(config), f"{where}: {cls.name}({_args(config)})")

    @classmethod
    def instance(cls, config: dict) -> Layer:
        """The user's layer object for a normalised config."""
        return cls._make(config, cls.name)

    @classmethod
    def _shapes_argument(cls, inputs: list[Shape]) -> Any:
        return inputs[0] if cls.num_inputs == (1, 1) else list(inputs)

    @classmethod
    def output_shape(cls, config, inputs):
        cls.weights(config, inputs)  # checked with the shapes, so a mistake shows when the layer is added
        layer = cls.instance(config)
        shape = _call(lambda: layer.output_shape(cls._shapes_argument(inputs)), f"{cls.name}.output_shape")
        return _check_shape(shape, f"{cls.name}.output_shape", allow_none=True)

    @classmethod
    def weights(cls, config, inputs):
        layer = cls.instance(config)
        found = _call(lambda: layer.weight_shapes(cls._shapes_argument(inputs)), f"{cls.name}.weight_shapes")
        if not isinstance(found, dict):
            raise SpecError(f"{cls.name}.weight_shapes must return {{name: shape}}, got {found!r}")
        out = {}
        for name, shape in found.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise SpecError(f"{cls.name}.weight_shapes: weight name {name!r} must start with a letter and hold "
                                f"only letters, digits and _")
            out[name] = _check_shape(shape, f"{cls.name}.weight_shapes: weight {name!r}", allow_none=False)
        unknown = sorted(set(cls.layer_class.initializers) - set(out))
        if unknown:
            raise SpecError(f"{cls.name}.initializers names {', '.join(unknown)}, which weight_shapes does not "
                            f"return ({', '.join(out) or 'no weights'})")
        for name, initializer in cls.layer_class.initializers.items():
            if initializer not in INITIALIZERS:
                raise SpecError(f"{cls.name}.initializers[{name!r}] is {initializer!r}; known: {', '.join(INITIALIZERS)}")
        cls._check_call_takes(list(out), len(inputs))
        return out

    @classmethod
    def _check_call_takes(cls, weights: list[str], count: int) -> None:
        """The weights weight_shapes returns are exactly what call takes by name."""
        try:
            inspect.signature(cls.layer_class.call).bind(None, None, *[None] * count, **dict.fromkeys(weights))
        except TypeError as err:
            raise SpecError(f"{cls.name}.call does not take the {count} input(s) and the weights weight_shapes "
                            f"returns ({', '.join(weights) or 'none'}): {err}") from None

    @classmethod
    def initial_weights(cls, config: dict, inputs: list[Shape], layer: str, seed: int | None) -> dict[str, np.ndarray]:
        """The layer's starting weights, the same in every framework for one ``seed`` (a fresh
        random start when None); each layer draws from its own stream, named by the layer."""
        out = {}
        for index, (name, shape) in enumerate(cls.weights(config, inputs).items()):
            rng = np.random.default_rng(None if seed is None else [seed, zlib.crc32(layer.encode()), index])
            initializer = cls.layer_class.initializers.get(name, "zeros" if len(shape) == 1 else "glorot_uniform")
            out[name] = _draw(initializer, shape, rng)
        return out


def _draw(initializer: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if initializer == "zeros":
        return np.zeros(shape, np.float32)
    if initializer == "ones":
        return np.ones(shape, np.float32)
    if initializer == "normal":
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)
    # Keras' fans: a (in, out) kernel, or a conv kernel (*k, in, out) with its receptive field
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in = (shape[-2] if len(shape) > 1 else shape[0]) * receptive
    fan_out = shape[-1] * receptive
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def check_output(layer: str, kind: str, declared: Shape, got: tuple) -> None:
    """Raise when a custom layer's call gave (batched) ``got`` where its output_shape declared
    ``declared`` (batch excluded); ``None`` in ``declared`` matches any size."""
    rows = tuple(got[1:])
    if len(rows) != len(declared) or any(d is not None and r is not None and d != r for d, r in zip(declared, rows)):
        raise SpecError(f"layer {layer!r} ({kind}): call returned shape (batch, {', '.join(map(str, rows))}) but "
                        f"output_shape says (batch, {', '.join('?' if d is None else str(d) for d in declared)}); "
                        f"make them agree")


def probe_inputs(kind: type[CustomKind], config: dict, shapes: list[Shape]) -> list[tuple]:
    """Concrete input shapes (batch 2) on which to try a layer's call: its dynamic sizes set to 3,
    or the first doubling of 3 its output_shape accepts."""
    for length in (3 * 2 ** k for k in range(12)):
        concrete = [tuple(length if d is None else d for d in shape) for shape in shapes]
        try:
            kind.output_shape(config, concrete)
        except SpecError:
            continue
        return [(2, *shape) for shape in concrete]
    return [(2, *(3 if d is None else d for d in shape)) for shape in shapes]


def call_failed(layer: str, kind: str, shapes: list[tuple], weights: dict[str, tuple], err: Exception) -> SpecError:
    """The error for a custom layer whose call fails while the model is built."""
    inputs = ", ".join(str(tuple(s)) for s in shapes)
    owned = ", ".join(f"{name} {tuple(shape)}" for name, shape in weights.items()) or "none"
    return SpecError(f"layer {layer!r} ({kind}): call failed on input(s) {inputs} with weights {owned}: "
                     f"{type(err).__name__}: {err}")


def _call(fn: Callable[[], Any], where: str) -> Any:
    """Run a user's method; its own failures become a SpecError that says where."""
    try:
        return fn()
    except SpecError:
        raise
    except Exception as err:  # noqa: BLE001 - user code may raise anything; say which method failed
        raise SpecError(f"{where} failed: {type(err).__name__}: {err}") from err


def _check_shape(shape: Any, where: str, allow_none: bool) -> tuple:
    try:
        shape = tuple(shape)
    except TypeError:
        raise SpecError(f"{where} must return a tuple of sizes, got {shape!r}") from None
    ok = all((d is None and allow_none) or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0)
             for d in shape)
    if not ok:
        what = "positive ints or None" if allow_none else "positive ints"
        raise SpecError(f"{where} must return {what}, got {shape!r}")
    return tuple(None if d is None else int(d) for d in shape)


def _args(config: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items())
