"""The neutral model spec: plain data that every adapter compiles, JSON in and out.

A spec is a graph of named inputs and named layers. Sequential models are built by appending
layers (each takes the previous one); functional graphs name their ``inputs`` explicitly.

>>> spec = ModelSpec.sequential((784,))
>>> spec.add("Dense", 128, activation="relu").add("Dense", 10, activation="softmax")
ModelSpec(inputs=['input'], layers=['dense', 'dense_1'], outputs=['dense_1'])
>>> spec.shapes()["dense_1"]
(10,)
>>> ModelSpec.from_json(spec.to_json()) == spec
True
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .errors import SpecError, UnknownLayerError
from .layers import catalog

DTYPES = ("float32", "int64")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass
class InputSpec:
    name: str
    shape: tuple  # batch excluded; None marks a dynamic dimension
    dtype: str = "float32"
    axes: tuple | None = None  # names of the dynamic dimensions ("sequence_length"), as exported files call them

    def to_dict(self) -> dict:
        out = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        return {**out, "axes": list(self.axes)} if self.axes else out


@dataclass
class LayerSpec:
    kind: str
    name: str
    config: dict
    inputs: list[str]
    trainable: bool = True  # False: training leaves its weights (and BatchNorm statistics) as they are

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "name": self.name, "config": self.config, "inputs": list(self.inputs)}
        return out if self.trainable else {**out, "trainable": False}


@dataclass
class ModelSpec:
    """The neutral description of a model: inputs, layers and outputs as plain, JSON-ready data.

    >>> spec = ModelSpec.sequential((4,)).add("Dense", 3, activation="softmax")
    >>> spec.parameter_count(), spec.outputs
    (15, ['dense'])
    """

    inputs: list[InputSpec] = field(default_factory=list)
    layers: list[LayerSpec] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def sequential(cls, shape: Iterable, dtype: str = "float32", name: str = "input") -> "ModelSpec":
        spec = cls()
        spec.add_input(name, shape, dtype)
        return spec

    def add_input(self, name: str, shape: Iterable, dtype: str = "float32",
                  axes: Iterable[str] | None = None) -> "ModelSpec":
        """An input of ``shape`` (batch excluded, None where dynamic) and ``dtype``: float32, or
        int64 for Embedding ids and Attention masks (as tokenizers give them). ``axes`` names the
        dynamic dimensions in exported files (Optimum's names: ``sequence_length``,
        ``past_sequence_length``...); inputs whose dimensions share a name must agree in size."""
        self._check_new_name(name)
        shape = _check_shape(shape, name)
        if dtype not in DTYPES:
            raise SpecError(f"input {name!r}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if axes is not None:
            axes = tuple(axes)
            if len(axes) != shape.count(None) or not all(isinstance(a, str) and _NAME.match(a) for a in axes):
                raise SpecError(f"input {name!r}: axes must name each dynamic (None) dimension of {shape}, "
                                f"with a name of letters, digits and _, got {axes!r}")
        self.inputs.append(InputSpec(name, shape, dtype, axes or None))
        return self

    def add(self, kind: str, main: Any = None, *, name: str | None = None,
            inputs: str | list[str] | None = None, trainable: bool = True, **options: Any) -> "ModelSpec":
        """Append a layer. ``main`` is the kind's main size; ``inputs`` defaults to the last node;
        ``trainable=False`` freezes it (see :meth:`set_trainable`)."""
        layer_kind = catalog.get_kind(kind)
        name = name or self._fresh_name(layer_kind.name)
        self._check_new_name(name)
        where = f"layer {name!r} ({layer_kind.name})"
        if not isinstance(trainable, bool):
            raise SpecError(f"{where}: trainable must be True or False, got {trainable!r}")
        if main is not None:
            if layer_kind.main is None:
                raise SpecError(f"{where}: takes no positional size, got {main!r}; use keywords")
            if layer_kind.main in options:
                raise SpecError(f"{where}: {layer_kind.main} given twice")
            options[layer_kind.main] = main
        config = layer_kind.normalize(options, where)
        if inputs is None:
            if not self.nodes():
                raise SpecError(f"{where}: the model has no input yet")
            inputs = [self.nodes()[-1]]
        elif isinstance(inputs, str):
            inputs = [inputs]
        inputs = list(inputs)
        low, high = layer_kind.num_inputs
        if not low <= len(inputs) <= high:
            raise SpecError(f"{where}: takes {low}" + (f"..{high}" if high != low else "") + f" inputs, got {len(inputs)}")
        for source in inputs:
            if source not in self.nodes():
                raise SpecError(f"{where}: input {source!r} is not a known input or layer; known: {', '.join(self.nodes())}")
        if layer_kind.shares is not None and config[layer_kind.shares] is not None:
            config = self._link(layer_kind, config, inputs, where)
        layer = LayerSpec(layer_kind.name, name, _plain(config), inputs, trainable)
        self.layers.append(layer)
        try:
            self.shapes()
        except SpecError:
            self.layers.pop()
            raise
        if not self.outputs or self._sequential_tail(inputs):
            self.outputs = [name]
        return self

    def set_outputs(self, names: str | list[str]) -> "ModelSpec":
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            if name not in self.nodes():
                raise SpecError(f"output {name!r} is not a known layer; known: {', '.join(self.nodes())}")
        self.outputs = names
        return self

    def set_trainable(self, names: Iterable[str], trainable: bool) -> "ModelSpec":
        """Freeze (``trainable=False``) or unfreeze the named layers; an unknown name is a
        :class:`SpecError` listing the layers.

        >>> spec = ModelSpec.sequential((4,)).add("Dense", 3, name="body").add("Dense", 2, name="head")
        >>> spec.set_trainable(["body"], False).frozen()
        ['body']
        """
        names = set(names)
        unknown = sorted(names - {layer.name for layer in self.layers})
        if unknown:
            raise SpecError(f"no layer named {', '.join(map(repr, unknown))}; the layers are: "
                            f"{', '.join(layer.name for layer in self.layers)}")
        for layer in self.layers:
            if layer.name in names:
                layer.trainable = trainable
        return self

    def _link(self, kind: type[catalog.LayerKind], config: dict, inputs: list[str], where: str) -> dict:
        """Check the earlier layer whose weights a sharing layer (tied embeddings) uses."""
        source = config[kind.shares]
        if source not in {layer.name for layer in self.layers}:
            raise SpecError(f"{where}: {kind.shares} {source!r} is not an earlier layer; known: "
                            f"{', '.join(layer.name for layer in self.layers)}")
        shapes = self.shapes()
        try:
            return kind.link(config, self.layer(source).kind, self.layer(source).config, [shapes[s] for s in inputs])
        except SpecError as err:
            raise SpecError(f"{where}: {err}") from None

    def _sequential_tail(self, inputs: list[str]) -> bool:
        # Appending after the single current output keeps a sequential model's output at its end.
        return len(self.outputs) == 1 and self.outputs[0] in inputs

    def _check_new_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise SpecError(f"name {name!r} must start with a letter or _ and hold only letters, digits, _ . -")
        if name in self.nodes():
            raise SpecError(f"name {name!r} is already used")

    def _fresh_name(self, kind: str) -> str:
        base = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", kind).lower()
        taken = set(self.nodes())
        if base not in taken:
            return base
        return next(f"{base}_{i}" for i in range(1, len(taken) + 2) if f"{base}_{i}" not in taken)

    # -- queries ------------------------------------------------------------------------------

    @property
    def last(self) -> str:
        """The name of the layer added last, for chaining ``node = spec.add(...).last``."""
        if not self.layers:
            raise SpecError("the spec has no layers yet")
        return self.layers[-1].name

    def nodes(self) -> list[str]:
        return [i.name for i in self.inputs] + [layer.name for layer in self.layers]

    def frozen(self) -> list[str]:
        """The layers training leaves alone (``trainable`` False), in order."""
        return [layer.name for layer in self.layers if not layer.trainable]

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise SpecError(f"no layer named {name!r}")

    def shapes(self) -> dict[str, tuple]:
        """Shape (batch excluded) of every node, validating the whole graph on the way."""
        shapes = {i.name: i.shape for i in self.inputs}
        for layer in self.layers:
            kind = catalog.get_kind(layer.kind)
            ins = [shapes[source] for source in layer.inputs]
            try:
                shapes[layer.name] = tuple(kind.output_shape(layer.config, ins))
            except SpecError as err:
                raise SpecError(f"layer {layer.name!r} ({layer.kind}) with input shape(s) "
                                f"{', '.join(map(str, ins))}: {err}") from None
        return shapes

    def fitting_length(self, preferred: int) -> int:
        """A size for every dynamic input dimension, for example inputs: ``preferred`` when every
        layer takes it, else ``preferred`` doubled until it fits (a waveform must cover its
        convolutions' receptive field), else halved until it fits (a sequence may not outgrow its
        position table). :class:`SpecError` when no such size from 1 to 2**25 fits.

        >>> spec = ModelSpec.sequential((None,)).add("Reshape", [1, -1]).add("Conv1D", 2, kernel_size=10)
        >>> spec.fitting_length(3)
        12
        >>> ModelSpec.sequential((None, 8)).add("PositionEmbedding", 16).fitting_length(128)
        16
        """
        larger = [preferred * 2 ** k for k in range(26) if preferred * 2 ** k <= 2 ** 25]
        smaller = [preferred // 2 ** k for k in range(1, preferred.bit_length())]
        for length in larger + smaller:
            if self._fits(length):
                return length
        raise SpecError(f"no size of the dynamic dimensions fits every layer: tried {preferred} doubled up to "
                        f"{larger[-1]} and halved down to 1")

    def _fits(self, length: int) -> bool:
        """Whether every layer takes ``length`` in each dynamic input dimension."""
        concrete = ModelSpec([InputSpec(i.name, tuple(length if d is None else d for d in i.shape), i.dtype)
                              for i in self.inputs], self.layers, self.outputs)
        try:
            concrete.shapes()
            return True
        except SpecError:
            return False

    def dtypes(self) -> dict[str, str]:
        """Dtype of every node: inputs as declared, Embedding ids in, floats everywhere else."""
        out = {i.name: i.dtype for i in self.inputs}
        for layer in self.layers:
            out[layer.name] = "float32"
        return out

    def id_bound(self, name: str) -> int:
        """Values of the int64 input ``name`` lie in ``[0, bound)``: the smallest vocabulary of the
        Embeddings it feeds, or 2 for an attention mask (1 = token, 0 = padding)."""
        vocabularies = [layer.config["vocab_size"] for layer in self.layers
                        if layer.kind == "Embedding" and name in layer.inputs]
        return min(vocabularies, default=2)

    def is_mask(self, name: str) -> bool:
        """Whether the input ``name`` feeds an Attention as its key mask (0/1) rather than ids."""
        return any(_is_mask(layer, index) for layer in self.layers for index, source in enumerate(layer.inputs)
                   if source == name)

    def weight_shapes(self) -> dict[str, dict[str, tuple]]:
        """Neutral weight shapes by layer, for layers that own weights."""
        shapes = self.shapes()
        out = {}
        for layer in self.layers:
            kind = catalog.get_kind(layer.kind)
            found = kind.weights(layer.config, [shapes[s] for s in layer.inputs])
            if found:
                out[layer.name] = {k: tuple(v) for k, v in found.items()}
        return out

    def parameter_count(self) -> int:
        return sum(math.prod(s) for w in self.weight_shapes().values() for s in w.values())

    def final_activation(self) -> str:
        """The activation applied last on the single output, "linear" when none."""
        if len(self.outputs) != 1 or self.outputs[0] not in {layer.name for layer in self.layers}:
            return "linear"
        layer = self.layer(self.outputs[0])
        return catalog.fused_activation(layer.kind, layer.config)[0]

    def logits_layer(self) -> str | None:
        """The output layer whose softmax/sigmoid the classification losses fold in, if any.

        Adapters leave that activation out while training, so it is never applied twice.
        """
        return self.outputs[0] if self.final_activation() in ("softmax", "sigmoid") else None

    def validate(self) -> "ModelSpec":
        if not self.inputs:
            raise SpecError("the model has no input")
        if not self.layers:
            raise SpecError("the model has no layers: add at least one with add_layer")
        dtypes = self.dtypes()
        for layer in self.layers:
            for index, source in enumerate(layer.inputs):
                if layer.kind == "Embedding" and dtypes.get(source) != "int64":
                    raise SpecError(f"layer {layer.name!r} (Embedding) needs int64 ids; input {source!r} is float32")
                if dtypes.get(source) == "int64" and layer.kind != "Embedding" and not _is_mask(layer, index) \
                        and not catalog.get_kind(layer.kind).takes_int64:
                    raise SpecError(f"input {source!r} is int64, which only an Embedding's ids or an Attention's "
                                    f"mask (its 4th input) take, or a custom layer; layer {layer.name!r} "
                                    f"({layer.kind}) takes float32")
        for i in self.inputs:
            if i.dtype == "int64" and not any(i.name in layer.inputs for layer in self.layers):
                raise SpecError(f"input {i.name!r} is int64 but feeds no Embedding layer or Attention mask")
        self.shapes()
        return self

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "inputs": [i.to_dict() for i in self.inputs],
            "layers": [layer.to_dict() for layer in self.layers],
            "outputs": list(self.outputs),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        """Rebuild and re-validate a spec; every layer goes through the catalog again."""
        try:
            spec = cls()
            for i in data["inputs"]:
                spec.add_input(i["name"], i["shape"], i.get("dtype", "float32"), i.get("axes"))
            for layer in data["layers"]:
                _known_kind(layer["kind"], layer["name"])
                spec.add(layer["kind"], name=layer["name"], inputs=layer["inputs"],
                         trainable=layer.get("trainable", True), **layer["config"])
            spec.set_outputs(data["outputs"])
        except (KeyError, TypeError) as err:
            raise SpecError(f"a spec must have inputs, layers and outputs in llmasos' form: {err!r}") from None
        return spec

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"the spec is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelSpec) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (f"ModelSpec(inputs={[i.name for i in self.inputs]}, layers={[l.name for l in self.layers]}, "
                f"outputs={self.outputs})")

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts; no framework needed."""
        shapes, weights = self.shapes(), self.weight_shapes()
        rows = [("Layer (kind)", "Output shape", "Params", "Inputs")]
        for i in self.inputs:
            rows.append((f"{i.name} (Input)", _fmt(i.shape), "0", ""))
        for layer in self.layers:
            count = sum(math.prod(s) for s in weights.get(layer.name, {}).values())
            rows.append((f"{layer.name} ({layer.kind})", _fmt(shapes[layer.name]), f"{count:,}", ", ".join(layer.inputs)))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = "-" * (sum(widths) + 6)
        text = [line, "  ".join(v.ljust(w) for v, w in zip(rows[0], widths)), line]
        text += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows[1:]]
        text += [line, f"Total params: {self.parameter_count():,}"]
        if self.frozen():
            frozen = sum(math.prod(s) for name in self.frozen() for s in weights.get(name, {}).values())
            text += [f"Trainable params: {self.parameter_count() - frozen:,}",
                     f"Non-trainable params: {frozen:,} ({len(self.frozen())} frozen layers)"]
        text += [f"Outputs: {', '.join(self.outputs)}"]
        return "\n".join(text)


def _known_kind(kind: str, layer: str) -> None:
    """A saved layer's kind must be in the catalog: a custom one is registered by importing the
    module that defines it, which loading cannot do (a file holds no code)."""
    try:
        catalog.get_kind(kind)
    except UnknownLayerError:
        raise UnknownLayerError(
            f"layer {layer!r} is a {kind!r}, which is neither built in nor registered: import the module that "
            f"registers it (@llmasos.layers.register({kind!r})) before loading, or install the plugin package "
            f"that declares it (entry point group 'llmasos.layers'); known layers: "
            f"{', '.join(catalog.known_kinds())}") from None


def _fmt(shape: tuple) -> str:
    return "(batch, " + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _check_shape(shape: Any, where: str) -> tuple:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise SpecError(f"input {where!r}: shape must be a sequence of sizes, got {shape!r}") from None
    if not shape or not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape):
        raise SpecError(f"input {where!r}: shape must be positive ints (None for dynamic), got {shape!r}")
    return shape


def _plain(value: Any) -> Any:
    """Tuples become lists so a config equals its JSON round trip."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_mask(layer: LayerSpec, index: int) -> bool:
    """Whether input ``index`` of ``layer`` is an Attention's key mask (its optional 4th input)."""
    return layer.kind == "Attention" and index == 3
