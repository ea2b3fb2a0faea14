"""Spec -> Keras functional model, and the compiled model that wraps it.

Inputs and outputs are channels first, as in the spec. TensorFlow's CPU kernels compute
channels last only, so while the graph is built every tensor carries its layout — "cf" (as in
the spec) or "cl" (the spec's axis 1 moved last) — and a transpose is inserted only where a
layer wants the other one (:data:`.layers.LAYOUTS`); a conv stack therefore transposes once on
the way in and once before the Flatten, Dense or output that needs spec order.

>>> from llmasos.spec import ModelSpec
>>> spec = ModelSpec.sequential((1, 8, 8)).add("Conv2D", 4, kernel_size=3).add("Flatten").add("Dense", 2)
>>> model = build(spec, seed=0)
>>> model.predict([np.zeros((5, 1, 8, 8), np.float32)])[0].shape
(5, 2)
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ... import losses
from ...layers import catalog, custom
from ...errors import SpecError
from ...optim import Optimizer
from ...spec import ModelSpec
from ..base import CompiledModel, StepOptions, Trainer, Weights, check_weights
from . import gradients
from .devices import tf_device
from .layers import Activate, call_layer, layout_of, make_layer
from .train import TFTrainer
from .weights import CONVERSIONS

_DTYPES = {"float32": np.float32, "int64": np.int64}


def keras_name(name: str) -> str:
    """A spec name as a Keras layer name: TensorFlow name scopes cannot start with "_"."""
    return "." + name if name.startswith("_") else name


class _Graph:
    """Symbolic tensors by node, each with its layout; transposes are made once per node."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[Any, str]] = {}
        self.converted: dict[tuple[str, str], Any] = {}

    def put(self, node: str, tensor: Any, layout: str) -> None:
        self.values[node] = (tensor, layout if len(tensor.shape) > 2 else "cf")

    def layout(self, node: str) -> str:
        return self.values[node][1]

    def get(self, node: str, layout: str | None) -> Any:
        tensor, have = self.values[node]
        if layout is None or layout == have:
            return tensor
        if (node, layout) not in self.converted:
            rank = len(tensor.shape)
            # keras.layers.Permute counts axes from 1, batch excluded
            dims = (*range(2, rank), 1) if layout == "cl" else (rank - 1, *range(1, rank - 1))
            self.converted[node, layout] = keras.layers.Permute(dims, name=f"{keras_name(node)}>{layout}")(tensor)
        return self.converted[node, layout]



def build_graph(spec: ModelSpec,
                seed: int | None = None) -> tuple[keras.Model, keras.Model, dict[str, keras.layers.Layer]]:
    """The full model, the model for training on logits (the same layers; the full model itself
    when the spec does not end in softmax/sigmoid), and the Keras layer of each spec layer.

    Both models take a dict of channels-first inputs by spec input name and return a dict of
    channels-first outputs by spec output name.
    """
    shapes = spec.shapes()
    graph = _Graph()
    inputs = {}
    for spec_input in spec.inputs:
        # Input layers own no name scope, so they keep the spec name (the dict key Keras checks)
        inputs[spec_input.name] = keras.Input(spec_input.shape, dtype=spec_input.dtype, name=spec_input.name)
        graph.put(spec_input.name, inputs[spec_input.name], "cf")
    layers: dict[str, keras.layers.Layer] = {}
    logits_layer, logits_node = spec.logits_layer(), None
    for layer in spec.layers:
        activation, slope = catalog.fused_activation(layer.kind, layer.config)
        name = keras_name(layer.name)
        if layer.kind == "Activation":
            # the layer is its activation: its input is the pre-activation value
            want = "cf" if activation == "softmax" else graph.layout(layer.inputs[0])
            pre = graph.get(layer.inputs[0], want)
            act = layers[layer.name] = Activate(activation, slope, name=name)
        else:
            want = layout_of(layer.kind) or graph.layout(layer.inputs[0])
            main = layers[layer.name] = make_layer(layer.kind, layer.config, [shapes[s] for s in layer.inputs],
                                                   name, want, layer=layer.name, seed=seed)
            shares = catalog.get_kind(layer.kind).shares
            if shares is not None and layer.config[shares] is not None:  # tied: uses another layer's variable
                main.share(layers[layer.config[shares]])
            pre = _call(layer, main, [graph.get(s, want) for s in layer.inputs], shapes[layer.name])
            # a fused activation is a layer of its own, so the logits model can stop before it
            act = None if activation == "linear" else Activate(activation, slope, name=f"{name}>act")
        if act is None:
            graph.put(layer.name, pre, want)
            continue
        pre_node = f"{layer.name}>pre"
        graph.put(pre_node, pre, want)
        if activation == "softmax":
            want = "cf"  # softmax runs over the spec's last axis
        graph.put(layer.name, act(graph.get(pre_node, want)), want)
        if layer.name == logits_layer:
            logits_node = pre_node
    outputs = {name: graph.get(name, "cf") for name in spec.outputs}
    native = keras.Model(inputs, outputs, name="llmasos")
    if logits_node is None:
        return native, native, layers
    logits = keras.Model(inputs, {logits_layer: graph.get(logits_node, "cf")}, name="llmasos_logits")
    return native, logits, layers


def _call(layer, main: keras.layers.Layer, inputs: list, shape: tuple):
    """Call a spec layer's Keras layer; a custom layer's call must also work on these symbolic
    inputs and give the shape it declares, else the build fails naming the layer."""
    if custom.custom_kind(layer.kind) is None:
        return call_layer(layer.kind, main, inputs, layer.config)
    try:
        out = call_layer(layer.kind, main, inputs, layer.config)
    except Exception as err:  # noqa: BLE001 - user code may raise anything: name the layer
        weights = {name: tuple(value.shape) for name, value in vars(main.params).items()}
        err = getattr(main, "error", err)
        raise custom.call_failed(layer.name, layer.kind, [tuple(x.shape) for x in inputs], weights, err) from err
    custom.check_output(layer.name, layer.kind, shape, tuple(out.shape))
    return out


class TFModel(CompiledModel):
    """A spec compiled into Keras. ``native`` is the ``keras.Model`` (dict of channels-first
    inputs -> dict of outputs); ``logits`` shares its layers and stops before a final
    softmax/sigmoid."""

    def __init__(self, spec: ModelSpec, seed: int | None = None, device: str = "cpu") -> None:
        super().__init__(spec)
        self.device = tf_device(device)
        with self.placed():
            self.keras_model, self.logits, self.layers = build_graph(spec, seed)
        self._kinds = {layer.name: layer.kind for layer in spec.layers}
        self._shapes = spec.weight_shapes()
        # (layer, neutral weight name, Keras variable) for every neutral weight
        self.weight_variables = [(layer, name, attrgetter(CONVERSIONS[self._kinds[layer]][name][0])(self.layers[layer]))
                          for layer, names in self._shapes.items() for name in names]
        # bumped by set_trainable so trainers know to re-collect their variables
        self.trainable_version = 0
        self._predict = None  # traced on first use
        self.gradient_functions: dict = {}  # loss text -> traced input gradient (.gradients)

    @property
    def native(self) -> keras.Model:
        return self.keras_model

    def placed(self):
        """A context placing variables and traced ops on this model's device."""
        return tf.device(self.device)

    def to(self, device: str) -> None:
        """Rebuild on ``device`` with the same weights (TensorFlow places a variable when it is made)."""
        target = tf_device(device)
        if target == self.device:
            return
        weights = self.get_weights()
        self.__init__(self.spec, None, device)
        self.set_weights(weights)

    def input_signature(self, named: bool = False) -> list[tf.TensorSpec]:
        """One spec per input: batch and the spec's None dimensions dynamic; ``named`` gives them
        the inputs' names as TensorFlow accepts them (:func:`keras_name`)."""
        return [tf.TensorSpec((None, *i.shape), i.dtype, name=keras_name(i.name) if named else None)
                for i in self.spec.inputs]

    def _call_inference(self, inputs: list[tf.Tensor]) -> list[tf.Tensor]:
        out = self.keras_model(dict(zip((i.name for i in self.spec.inputs), inputs)), training=False)
        return [out[name] for name in self.spec.outputs]

    def feed(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Inputs as arrays of the spec's dtypes, checked for count."""
        if len(inputs) != len(self.spec.inputs):
            raise SpecError(f"the model takes {len(self.spec.inputs)} input(s), got {len(inputs)}")
        return [np.asarray(x, dtype=_DTYPES[i.dtype]) for x, i in zip(inputs, self.spec.inputs)]

    def to_neutral(self, layer: str, name: str, value: np.ndarray) -> np.ndarray:
        """A Keras-layout array (weight or optimizer slot) in the neutral layout."""
        convert = CONVERSIONS[self._kinds[layer]][name][2]
        return np.asarray(convert(value, self._shapes[layer][name]), dtype=np.float32)

    def to_native(self, layer: str, name: str, value: np.ndarray, shape: tuple) -> np.ndarray:
        """A neutral array in the Keras layout of ``shape``."""
        convert = CONVERSIONS[self._kinds[layer]][name][1]
        return convert(np.asarray(value, dtype=np.float32), tuple(shape))

    def get_weights(self) -> Weights:
        weights: Weights = {}
        for layer, name, variable in self.weight_variables:
            weights.setdefault(layer, {})[name] = self.to_neutral(layer, name, variable.numpy())
        return weights

    def set_weights(self, weights: Weights) -> None:
        check_weights(self.spec, weights)
        for layer, name, variable in self.weight_variables:
            variable.assign(self.to_native(layer, name, weights[layer][name], variable.shape))

    def predict(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if self._predict is None:
            with self.placed():
                self._predict = tf.function(self._call_inference, input_signature=[self.input_signature()]) \
                    .get_concrete_function()
        return [out.numpy() for out in self._predict(self.feed(inputs))]

    def trainer(self, optimizer: Optimizer, loss, seed: int | None = None,
                options: StepOptions = StepOptions()) -> Trainer:
        return TFTrainer(self, optimizer, losses.get(loss).for_activation(self.spec.final_activation()), seed, options)

    def input_gradient(self, inputs: list[np.ndarray], target: np.ndarray, loss) -> list[np.ndarray]:
        return gradients.input_gradient(self, inputs, target, loss)

    def set_trainable(self, layer_names: set[str], trainable: bool) -> None:
        for name in layer_names:
            if name in self.layers:
                # a frozen BatchNorm also runs in inference mode and keeps its statistics
                self.layers[name].trainable = trainable
        self.trainable_version += 1


def build(spec: ModelSpec, seed: int | None = None, device: str = "cpu") -> TFModel:
    """Compile ``spec`` on ``device``; ``seed`` makes Keras' default initialisers (and dropout seeds) repeatable."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return TFModel(spec, seed, device)
