"""The neutral op set (:mod:`llmasos.ops`) on TensorFlow tensors — :data:`OPS` is what custom
layers get — and the spec's activations by name (:func:`activate`).

>>> OPS.split(tf.reshape(tf.range(6.0), (1, 6)), 2)[1].numpy().tolist()
[[3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from ...layers.catalog import ACTIVATIONS
from ...ops import Ops


def activate(x: tf.Tensor, name: str, negative_slope: float | None = 0.01) -> tf.Tensor:
    """Apply a spec activation; softmax runs over the last axis of ``x``."""
    if name == "linear":
        return x
    if name == "relu":
        return tf.nn.relu(x)
    if name == "gelu":
        # the exact erf form (Keras' default is the tanh one), written out: tf.nn.gelu's uses Erfc,
        # which ONNX lacks, and torch computes this very expression
        return 0.5 * x * (1.0 + tf.math.erf(x * (1.0 / math.sqrt(2.0))))
    if name == "gelu_tanh":
        return tf.nn.gelu(x, approximate=True)
    if name == "tanh":
        return tf.tanh(x)
    if name == "sigmoid":
        return tf.sigmoid(x)
    if name == "softmax":
        return tf.nn.softmax(x, axis=-1)
    if name == "silu":
        return tf.nn.silu(x)
    if name == "leaky_relu":
        return tf.nn.leaky_relu(x, alpha=0.01 if negative_slope is None else negative_slope)
    raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")


def _axes(axis: Any) -> Any:
    return list(axis) if isinstance(axis, (list, tuple)) else axis


class TFOps(Ops):
    def matmul(self, a, b):
        return tf.matmul(a, b)

    def add(self, a, b):
        return tf.add(a, b)

    def sub(self, a, b):
        return tf.subtract(a, b)

    def mul(self, a, b):
        return tf.multiply(a, b)

    def div(self, a, b):
        return tf.divide(a, b)

    def pow(self, a, b):
        return tf.pow(a, b)

    def maximum(self, a, b):
        return tf.maximum(a, b)

    def minimum(self, a, b):
        return tf.minimum(a, b)

    def exp(self, x):
        return tf.exp(x)

    def log(self, x):
        return tf.math.log(x)

    def sqrt(self, x):
        return tf.sqrt(x)

    def abs(self, x):
        return tf.abs(x)

    def relu(self, x):
        return tf.nn.relu(x)

    def sigmoid(self, x):
        return tf.sigmoid(x)

    def tanh(self, x):
        return tf.tanh(x)

    def gelu(self, x, approximate=False):
        return activate(x, "gelu_tanh" if approximate else "gelu")

    def softmax(self, x, axis=-1):
        return tf.nn.softmax(x, axis=axis)

    def reshape(self, x, shape):
        if 0 in shape:  # a kept size may be dynamic: read it from the tensor
            dynamic = tf.shape(x)
            shape = [dynamic[i] if d == 0 else d for i, d in enumerate(shape)]
        return tf.reshape(x, shape)

    def transpose(self, x, axes):
        return tf.transpose(x, list(axes))

    def concat(self, xs, axis=-1):
        return tf.concat(list(xs), axis=axis)

    def split(self, x, parts, axis=-1):
        return tf.split(x, parts if isinstance(parts, int) else list(parts), axis=axis)

    def sum(self, x, axis=None, keepdims=False):
        return tf.reduce_sum(x, axis=_axes(axis), keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return tf.reduce_mean(x, axis=_axes(axis), keepdims=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return tf.reduce_max(x, axis=_axes(axis), keepdims=keepdims)

    def where(self, condition, a, b):
        return tf.where(condition, a, b)

    def gather(self, x, indices, axis=0):
        return tf.gather(x, indices, axis=axis)


OPS = TFOps()
