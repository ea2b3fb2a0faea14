"""Spec -> ``torch.nn.Module``, and the compiled model that wraps it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ... import losses
from ...layers import catalog
from ...errors import SpecError
from ...spec import ModelSpec
from ..base import CompiledModel, StepOptions, Trainer, Weights, check_weights
from . import gradients
from .devices import torch_device
from .layers import make_module
from .train import TorchTrainer
from .weights import CONVERSIONS

_DTYPES = {"float32": torch.float32, "int64": torch.int64}


class GraphModule(nn.Module):
    """Runs the spec's layers in order. ``forward(*inputs)`` takes one tensor per spec input
    (channels first) and returns one tensor, or a tuple when the spec has several outputs.

    With ``logits=True`` the last activation of a softmax/sigmoid output is left out, which is what
    the classification losses want.
    """

    def __init__(self, spec: ModelSpec, seed: int | None = None) -> None:
        super().__init__()
        shapes = spec.shapes()
        self.input_names = [i.name for i in spec.inputs]
        self.output_names = list(spec.outputs)
        self.plan = [(layer.name, layer.kind, list(layer.inputs)) for layer in spec.layers]
        # ModuleDict keys cannot contain "."; spec names may.
        self.blocks = nn.ModuleDict({
            _key(layer.name): make_module(layer.name, layer.kind, layer.config, [shapes[s] for s in layer.inputs], seed)
            for layer in spec.layers
        })
        for layer in spec.layers:
            shares = catalog.get_kind(layer.kind).shares
            if shares is not None and layer.config[shares] is not None:  # tied: uses another layer's parameter
                self.blocks[_key(layer.name)].share(self.blocks[_key(layer.config[shares])])
        self.logits_layer = spec.logits_layer()
        self.release, self.in_place = _memory_plan(spec)
        # everything forward() needs per step, looked up once (a plain list: the modules stay
        # registered in self.blocks only)
        self.steps = [(name, kind, sources, self.blocks[_key(name)], name == self.logits_layer, release, in_place)
                      for (name, kind, sources), release, in_place in zip(self.plan, self.release, self.in_place)]

    def forward(self, *inputs: torch.Tensor, logits: bool = False):
        values = dict(zip(self.input_names, inputs))
        # autograd may need a value an in-place op would overwrite: only reuse memory in inference
        reuse = not torch.is_grad_enabled()
        for name, kind, sources, block, is_logits_layer, release, in_place in self.steps:
            if logits and is_logits_layer and kind == "Activation":
                values[name] = values[sources[0]]
            elif reuse and in_place:
                out = values[sources[0]]
                for other in sources[1:]:
                    out.add_(values[other])
                values[name] = F.relu_(out) if kind == "Activation" else out
            else:
                out = block(*(values[s] for s in sources))
                values[name] = out if logits and is_logits_layer else block.finish(out)
            for source in release:
                del values[source]
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs


# Layers whose output is a new tensor, never a view of (or the same object as) their input.
_FRESH = {"Dense", "Conv1D", "Conv2D", "BatchNorm", "LayerNorm", "GroupNorm", "Rescaling", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
          "Concatenate", "Add"}


def _memory_plan(spec: ModelSpec) -> tuple[list[list[str]], list[bool]]:
    """Per step: the values no later step or output reads (freed right away, as a hand-written
    forward would), and whether the step may run in place — a relu or an Add writing into its
    first input when that input is a fresh tensor nothing reads afterwards."""
    last_use: dict[str, int] = {}
    for step, layer in enumerate(spec.layers):
        for source in layer.inputs:
            last_use[source] = step
    outputs, inputs = set(spec.outputs), {i.name for i in spec.inputs}
    release, in_place, fresh = [], [], set()
    for step, layer in enumerate(spec.layers):
        dead = [s for s in dict.fromkeys(layer.inputs) if last_use[s] == step and s not in outputs]
        first = layer.inputs[0]
        relu = layer.kind == "Activation" and layer.config["activation"] == "relu"
        reusable = (relu or layer.kind == "Add") and first in dead and first in fresh and first not in inputs \
            and layer.inputs.count(first) == 1
        release.append(dead)
        in_place.append(reusable)
        if reusable or layer.kind in _FRESH:
            fresh.add(layer.name)
    return release, in_place


def train_mode(module: GraphModule) -> None:
    """Training mode for every layer except frozen BatchNorms, which stay in eval mode (their
    statistics fixed, as Keras does for a non-trainable layer). Whatever switches a module back
    to training (a trainer, predict, export) goes through here."""
    module.train()
    for block in module.blocks.values():
        if block.frozen:
            block.eval()


def _key(name: str) -> str:
    return name.replace(".", "__")



class TorchModel(CompiledModel):
    """The module on one device (``device``); arrays go there once per batch and come back as NumPy."""

    def __init__(self, spec: ModelSpec, module: GraphModule, device: str = "cpu") -> None:
        super().__init__(spec)
        self.module = module
        self.device = torch.device("cpu")
        self.to(device)

    @property
    def native(self) -> nn.Module:
        return self.module

    def to(self, device: str) -> None:
        """Move the weights to ``device`` (a torch device name that is there: see :mod:`.devices`)."""
        self.device = torch_device(device)
        self.module.to(self.device)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.device.type == "cpu" else tensor.to(self.device, non_blocking=True)

    def train_mode(self) -> None:
        train_mode(self.module)

    def _tensor(self, layer: str, path: str) -> torch.Tensor:
        found = self.module.blocks[_key(layer)]
        for part in path.split("."):
            # a custom layer's parameters are keyed by the user's names, which may shadow attributes
            found = found[part] if isinstance(found, nn.ParameterDict) else getattr(found, part)
        return found

    def native_weights(self) -> list[tuple[str, str, tuple[torch.Tensor, ...]]]:
        """(layer, neutral weight name, torch tensors) for every neutral weight."""
        kinds = {layer.name: layer.kind for layer in self.spec.layers}
        return [(layer, name, tuple(self._tensor(layer, p) for p in CONVERSIONS[kinds[layer]][name][0]))
                for layer, names in self.spec.weight_shapes().items() for name in names]

    def get_weights(self) -> Weights:
        weights: Weights = {}
        kinds = {layer.name: layer.kind for layer in self.spec.layers}
        for layer, name, tensors in self.native_weights():
            join = CONVERSIONS[kinds[layer]][name][2]
            weights.setdefault(layer, {})[name] = join(*(t.detach().cpu().numpy() for t in tensors)).astype(np.float32)
        return weights

    def set_weights(self, weights: Weights) -> None:
        check_weights(self.spec, weights)
        kinds = {layer.name: layer.kind for layer in self.spec.layers}
        with torch.no_grad():
            for layer, name, tensors in self.native_weights():
                split = CONVERSIONS[kinds[layer]][name][1]
                for tensor, value in zip(tensors, split(np.asarray(weights[layer][name], dtype=np.float32))):
                    tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))

    def to_tensors(self, inputs: list[np.ndarray]) -> list[torch.Tensor]:
        if len(inputs) != len(self.spec.inputs):
            raise SpecError(f"the model takes {len(self.spec.inputs)} input(s), got {len(inputs)}")
        # from_numpy shares the array's memory and costs a fraction of as_tensor's dtype checks;
        # Model.shape_input already hands over C-contiguous arrays of the spec's dtype
        return [self.to_device(torch.from_numpy(x) if isinstance(x, np.ndarray) and x.dtype == i.dtype
                               and x.flags.c_contiguous else torch.as_tensor(np.asarray(x), dtype=_DTYPES[i.dtype]))
                for x, i in zip(inputs, self.spec.inputs)]

    def predict(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        was_training = self.module.training
        if was_training:  # switching walks every submodule: skip it when already in eval mode
            self.module.eval()
        try:
            with torch.inference_mode():
                out = self.module(*self.to_tensors(inputs))
        finally:
            if was_training:
                train_mode(self.module)
        outs = out if isinstance(out, tuple) else (out,)
        return [o.numpy() if o.device.type == "cpu" else o.cpu().numpy() for o in outs]

    def trainer(self, optimizer, loss, seed: int | None = None, options: StepOptions = StepOptions()) -> Trainer:
        return TorchTrainer(self, optimizer, losses.get(loss).for_activation(self.spec.final_activation()), seed,
                            options)

    def input_gradient(self, inputs: list[np.ndarray], target: np.ndarray, loss) -> list[np.ndarray]:
        return gradients.input_gradient(self, inputs, target, loss)

    def set_trainable(self, layer_names: set[str], trainable: bool) -> None:
        for layer in self.spec.layers:
            if layer.name in layer_names:
                block = self.module.blocks[_key(layer.name)]
                for pname, param in block.named_parameters():
                    # the LSTM's recurrent bias is structurally frozen at zero
                    if not (layer.kind == "LSTM" and pname.endswith("bias_hh_l0")):
                        param.requires_grad_(trainable)
                # a frozen BatchNorm also keeps its statistics (inference mode), as in Keras; other
                # layers keep their mode, so a frozen layer's dropout still drops, as in Keras
                if layer.kind == "BatchNorm":
                    block.frozen = not trainable
                    block.train(trainable and self.module.training)


def build(spec: ModelSpec, seed: int | None = None, device: str = "cpu") -> TorchModel:
    if seed is not None:
        torch.manual_seed(seed)
    # built in eval mode, as it is used until a trainer switches it: every mode switch walks all modules
    return TorchModel(spec, GraphModule(spec, seed).eval(), device)
