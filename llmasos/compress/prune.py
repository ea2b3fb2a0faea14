"""Structured pruning: remove whole Dense units and convolution channels, and shrink every layer
that depends on them, so the result is a smaller spec with smaller weights (a smaller ONNX file
that ONNX Runtime runs faster), not a kernel full of zeros.

>>> import numpy as np
>>> from llmasos.spec import ModelSpec
>>> spec = ModelSpec.sequential((4,)).add("Dense", 4, activation="relu").add("Dense", 2)
>>> weights = {"dense": {"kernel": np.diag([1.0, 2, 3, 4]), "bias": np.zeros(4)},
...            "dense_1": {"kernel": np.ones((4, 2)), "bias": np.zeros(2)}}
>>> plan = Plan(spec, weights, amount=0.5)
>>> plan.kept["dense"].tolist(), plan.spec.shapes()["dense"], plan.weights()["dense_1"]["kernel"].shape
([2, 3], (2,), (2, 2))

Channels that must shrink together form a *group*, as in Torch-Pruning's dependency graph: the
output channels of every layer feeding one residual ``Add`` are one group; a ``Concatenate``
along channels passes each part's group on at its offset; BatchNorm, activations, pooling,
Dropout and ``Flatten`` (each channel becoming ``H*W`` features) carry a group to the layers
that read it, whose input weights shrink with it. A group is ranked by the L1 (or L2) norm of its
producers' output weights and loses the ``amount`` least important channels.

A group is left whole where removing a channel would change the result otherwise than
zeroing it: it reaches a model output or comes from an input; a layer reads it that mixes
channels other than through its weights (LayerNorm, attention, Reshape, a softmax...); a
grouped convolution; an activation that is not 0 at 0 (sigmoid). So the pruned model computes
exactly what the original computes with the removed channels' outputs set to zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SpecError
from ..spec import ModelSpec

Weights = dict[str, dict[str, np.ndarray]]

PRODUCERS = ("Dense", "Conv1D", "Conv2D")
# layers whose output channel c depends on input channel c alone (and is 0 where it is 0)
CHANNELWISE = ("BatchNorm", "Activation", "Dropout", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D")
ZERO_AT_ZERO = ("linear", "relu", "gelu", "gelu_tanh", "tanh", "silu", "leaky_relu")
CRITERIA = ("l1", "l2")


@dataclass
class Segment:
    """``channels`` channels of one group, each ``width`` consecutive values wide (``H*W`` after a Flatten)."""

    group: int
    channels: int
    width: int = 1


class Plan:
    """Which channels of ``spec`` to keep, given its ``weights`` and the share ``amount`` to remove
    from every group that can shrink: :attr:`kept` per layer whose output shrinks, :attr:`spec`
    the smaller spec, :meth:`weights` the smaller weights."""

    def __init__(self, spec: ModelSpec, weights: Weights, amount: float, criterion: str = "l1") -> None:
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 <= amount < 1.0:
            raise SpecError(f"amount is the share of each group's channels to remove, in [0, 1), got {amount!r}")
        if criterion not in CRITERIA:
            raise SpecError(f"criterion ranks channels by their weights' norm: one of {', '.join(CRITERIA)}, "
                            f"got {criterion!r}")
        self.original, self._weights = spec, weights
        self._parent: list[int] = []
        self._size: list[int] = []
        self._fixed: list[bool] = []
        self._producers: dict[str, int] = {}     # layer -> the group of its output channels
        self.layouts = self._trace(spec)
        groups = self._prunable_groups()
        if not groups:
            raise SpecError("structured pruning found nothing that can shrink: it removes output units of Dense "
                            "layers and channels of Conv1D/Conv2D (groups=1) that feed other layers through "
                            "BatchNorm, activations, pooling, Flatten, Add or Concatenate; the model's output "
                            "layer and anything read by other layer kinds stay whole")
        self.group_kept = {group: self._choose(group, amount, criterion) for group in groups}
        self.kept = {node: index for node, layout in self.layouts.items()
                     if (index := self._index(layout)) is not None}
        self.spec = self._smaller_spec()

    # -- the dependency groups ------------------------------------------------------------------

    def _new_group(self, size: int, fixed: bool = False) -> int:
        self._parent.append(len(self._parent))
        self._size.append(size)
        self._fixed.append(fixed)
        return len(self._parent) - 1

    def _root(self, group: int) -> int:
        while self._parent[group] != group:
            self._parent[group] = self._parent[self._parent[group]]
            group = self._parent[group]
        return group

    def _join(self, a: int, b: int) -> None:
        a, b = self._root(a), self._root(b)
        if a != b:
            self._parent[b] = a
            self._fixed[a] = self._fixed[a] or self._fixed[b]

    def _fix(self, layout: list[Segment]) -> None:
        for segment in layout:
            self._fixed[self._root(segment.group)] = True

    def _trace(self, spec: ModelSpec) -> dict[str, list[Segment]]:
        """The channel layout of every node (input and layer output), joining and fixing groups."""
        shapes = spec.shapes()
        layouts: dict[str, list[Segment]] = {}
        for spec_input in spec.inputs:
            layouts[spec_input.name] = [self._opaque(shapes[spec_input.name])]
        for layer in spec.layers:
            sources = [layouts[name] for name in layer.inputs]
            layouts[layer.name] = self._layout(layer, sources, [shapes[n] for n in layer.inputs], shapes[layer.name])
        for output in spec.outputs:
            self._fix(layouts[output])
        return layouts

    def _opaque(self, shape: tuple) -> Segment:
        """A node whose channels never shrink (an input, or the output of a layer that mixes them)."""
        return Segment(self._new_group(shape[0] if shape and isinstance(shape[0], int) else 0, fixed=True),
                       shape[0] if shape and isinstance(shape[0], int) else 0)

    def _layout(self, layer: Any, sources: list[list[Segment]], in_shapes: list[tuple], shape: tuple) -> list[Segment]:
        config = layer.config
        if layer.kind in PRODUCERS and self._reads_channels(layer, in_shapes[0]):
            size = config["units"] if layer.kind == "Dense" else config["filters"]
            group = self._new_group(size, fixed=config["activation"] not in ZERO_AT_ZERO)
            self._producers[layer.name] = group
            return [Segment(group, size)]
        if layer.kind in CHANNELWISE and self._keeps_zero(layer):
            return sources[0]
        if layer.kind == "Flatten" and len(in_shapes[0]) > 1:
            area = int(np.prod(in_shapes[0][1:]))
            return [Segment(s.group, s.channels, s.width * area) for s in sources[0]]
        if layer.kind == "Add" and self._same_segments(sources):
            for other in sources[1:]:
                for a, b in zip(sources[0], other):
                    self._join(a.group, b.group)
            return sources[0]
        if layer.kind == "Concatenate" and (config["axis"] == 1 or config["axis"] == -len(shape)):
            return [segment for source in sources for segment in source]
        for source in sources:
            self._fix(source)
        return [self._opaque(shape)]

    def _reads_channels(self, layer: Any, in_shape: tuple) -> bool:
        """A Dense on feature rows or an ungrouped conv: its weights' input axis is the channel axis."""
        if layer.kind == "Dense":
            return len(in_shape) == 1
        return layer.config["groups"] == 1

    @staticmethod
    def _keeps_zero(layer: Any) -> bool:
        return layer.kind != "Activation" or layer.config["activation"] in ZERO_AT_ZERO

    @staticmethod
    def _same_segments(sources: list[list[Segment]]) -> bool:
        first = [(s.channels, s.width) for s in sources[0]]
        return all([(s.channels, s.width) for s in source] == first for source in sources[1:])

    # -- choosing and applying ------------------------------------------------------------------

    def _prunable_groups(self) -> list[int]:
        roots = {self._root(group) for group in self._producers.values()}
        return sorted(root for root in roots if not self._fixed[root] and self._size[root] > 1)

    def _choose(self, group: int, amount: float, criterion: str) -> np.ndarray:
        """The channels of ``group`` to keep, in order: all but the ``amount`` with the smallest norm
        of their producers' output weights (summed over the group's producers)."""
        importance = np.zeros(self._size[group])
        for layer, own in self._producers.items():
            if self._root(own) != group:
                continue
            kernel = np.asarray(self._weights[layer]["kernel"], np.float64)
            rows = kernel.reshape(-1, kernel.shape[-1])
            importance += np.abs(rows).sum(0) if criterion == "l1" else np.sqrt((rows ** 2).sum(0))
        remove = min(int(round(amount * len(importance))), len(importance) - 1)
        return np.sort(np.argsort(importance, kind="stable")[remove:])

    def _index(self, layout: list[Segment]) -> np.ndarray | None:
        """The kept positions along a node's channel (or feature) axis; None when nothing shrinks."""
        parts, offset, shrinks = [], 0, False
        for segment in layout:
            kept = self.group_kept.get(self._root(segment.group))
            if kept is None:
                kept = np.arange(segment.channels)
            else:
                shrinks = True
            positions = (kept[:, None] * segment.width + np.arange(segment.width)).ravel()
            parts.append(offset + positions)
            offset += segment.channels * segment.width
        return np.concatenate(parts) if shrinks else None

    def _smaller_spec(self) -> ModelSpec:
        spec = ModelSpec.from_json(self.original.to_json())   # a deep copy: the original stays as it is
        for layer in spec.layers:
            group = self._producers.get(layer.name)
            kept = None if group is None else self.group_kept.get(self._root(group))
            if kept is not None:
                layer.config["units" if layer.kind == "Dense" else "filters"] = len(kept)
        return spec.validate()

    def weights(self) -> Weights:
        """The original weights cut to the smaller spec: each layer loses the removed output
        channels (kernel's last axis, bias, BatchNorm's four vectors) and input channels."""
        out: Weights = {}
        for layer in self.original.layers:
            if layer.name not in self._weights:
                continue
            tensors = {name: np.asarray(value) for name, value in self._weights[layer.name].items()}
            outputs = self.kept.get(layer.name)
            inputs = self._index(self.layouts[layer.inputs[0]]) if layer.inputs else None
            if layer.kind in PRODUCERS and layer.name in self._producers:
                if inputs is not None:
                    tensors["kernel"] = np.take(tensors["kernel"], inputs, axis=-2 if layer.kind != "Dense" else 0)
                if outputs is not None:
                    tensors = {name: np.take(value, outputs, axis=-1) for name, value in tensors.items()}
            elif layer.kind == "BatchNorm" and outputs is not None:
                tensors = {name: value[outputs] for name, value in tensors.items()}
            out[layer.name] = tensors
        return out
