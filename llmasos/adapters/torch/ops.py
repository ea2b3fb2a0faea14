"""The neutral op set (:mod:`llmasos.ops`) on torch tensors — :data:`OPS` is what custom layers
get — and the spec's activations by name (:func:`activate`).

>>> OPS.split(torch.arange(6.0).reshape(1, 6), 2)[1].tolist()
[[3.0, 4.0, 5.0]]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...ops import Ops


def activate(x: torch.Tensor, name: str, negative_slope: float | None = 0.01) -> torch.Tensor:
    if name == "linear":
        return x
    if name == "relu":
        return F.relu(x)
    if name == "gelu":
        return F.gelu(x)  # exact erf form, as the spec means
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "tanh":
        return torch.tanh(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "softmax":
        return F.softmax(x, dim=-1)
    if name == "silu":
        return F.silu(x)
    if name == "leaky_relu":
        return F.leaky_relu(x, negative_slope)
    raise ValueError(f"unknown activation {name!r}")


def _like(value: Any, x: torch.Tensor) -> torch.Tensor:
    """A number as a tensor of ``x``'s dtype and device (torch.maximum and friends take tensors only)."""
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=x.dtype, device=x.device)


def _dims(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


class TorchOps(Ops):
    def matmul(self, a, b):
        return torch.matmul(a, b)

    def add(self, a, b):
        return torch.add(a, b)

    def sub(self, a, b):
        return torch.sub(a, b)

    def mul(self, a, b):
        return torch.mul(a, b)

    def div(self, a, b):
        return torch.div(a, b)

    def pow(self, a, b):
        return torch.pow(a, b)

    def maximum(self, a, b):
        return torch.maximum(_like(a, b), _like(b, a))

    def minimum(self, a, b):
        return torch.minimum(_like(a, b), _like(b, a))

    def exp(self, x):
        return torch.exp(x)

    def log(self, x):
        return torch.log(x)

    def sqrt(self, x):
        return torch.sqrt(x)

    def abs(self, x):
        return torch.abs(x)

    def relu(self, x):
        return F.relu(x)

    def sigmoid(self, x):
        return torch.sigmoid(x)

    def tanh(self, x):
        return torch.tanh(x)

    def gelu(self, x, approximate=False):
        return activate(x, "gelu_tanh" if approximate else "gelu")

    def softmax(self, x, axis=-1):
        return F.softmax(x, dim=axis)

    def reshape(self, x, shape):
        return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(shape)])

    def transpose(self, x, axes):
        return x.permute(*axes)

    def concat(self, xs, axis=-1):
        return torch.cat(list(xs), dim=axis)

    def split(self, x, parts, axis=-1):
        if not isinstance(parts, int):
            return list(torch.split(x, list(parts), dim=axis))
        size = x.shape[axis]
        if isinstance(size, int) and size % parts:  # chunk would give uneven pieces; TensorFlow refuses
            raise ValueError(f"split: {parts} equal parts do not divide axis {axis} of size {size}")
        return list(torch.chunk(x, parts, dim=axis))  # chunk is C++ all the way, split Python first

    def sum(self, x, axis=None, keepdims=False):
        return torch.sum(x, dim=_dims(axis), keepdim=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return torch.mean(x, dim=_dims(axis), keepdim=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return torch.amax(x, dim=() if axis is None else _dims(axis), keepdim=keepdims)

    def where(self, condition, a, b):
        return torch.where(condition, a, b)

    def gather(self, x, indices, axis=0):
        indices = torch.as_tensor(indices, device=x.device)
        return x[(slice(None),) * (axis % x.dim()) + (indices,)]


OPS = TorchOps()
