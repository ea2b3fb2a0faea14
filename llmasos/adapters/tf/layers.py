"""Keras layers for the spec's layer kinds, and custom ones where Keras' own cannot give the
neutral semantics (torch-style BatchNorm statistics, dilated strided convolution, explicit
pooling padding, a leaky ReLU slope of 0.01, exact GELU).

TensorFlow's CPU kernels compute channels last only, so every layer here that has a channel
axis works channels last ("cl"); :data:`LAYOUTS` says which layout each kind wants its input in
and :mod:`.build` inserts the transposes.

>>> layer = make_layer("Conv2D", {"filters": 8, "kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1],
...                               "dilation": [1, 1], "groups": 1, "use_bias": True}, [(3, 32, 32)], "conv", "cl")
>>> tuple(layer(tf.zeros((1, 32, 32, 3))).shape)
(1, 16, 16, 8)
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import types
from typing import Any, Callable, Iterator

import keras
import tensorflow as tf

from ...layers import builtin, custom
from .ops import OPS, activate

# The layout each kind wants its inputs in: "cl" (channel axis last, what TensorFlow's CPU
# convolutions and pools need), "cf" (as in the spec: the layer works on the spec's last axis,
# or flattens/reshapes in spec order), or None (elementwise and merges: whatever the first input
# has). On tensors of rank <= 2 (with batch) both layouts are the same array.
LAYOUTS: dict[str, str | None] = {
    "Dense": "cf", "Conv1D": "cl", "Conv2D": "cl", "MaxPool2D": "cl", "AvgPool2D": "cl",
    "GlobalAvgPool2D": "cl", "Flatten": "cf", "Reshape": "cf", "Dropout": None, "BatchNorm": "cl",
    "LayerNorm": "cf", "Embedding": "cf", "LSTM": "cf", "GRU": "cf", "MultiHeadAttention": "cf",
    "Activation": None, "Add": None, "Concatenate": None, "Attention": "cf", "PositionEmbedding": "cf",
    "TakeToken": "cf", "Unembedding": "cf", "Permute": "cf", "Cropping1D": "cf", "Rescaling": None, "GroupNorm": "cl",
    "L2Normalize": "cf",
}


def layout_of(kind: str) -> str | None:
    """The layout a kind wants its inputs in; a custom layer sees the spec's ("cf")."""
    return "cf" if custom.custom_kind(kind) is not None else LAYOUTS[kind]


class Activate(keras.layers.Layer):
    """A spec activation as its own layer, so a graph can stop just before it (logits)."""

    def __init__(self, activation: str, negative_slope: float | None = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activation
        self.negative_slope = negative_slope

    def call(self, x):
        return activate(x, self.activation, self.negative_slope)

    def get_config(self) -> dict:
        return {**super().get_config(), "activation": self.activation, "negative_slope": self.negative_slope}


def _explicit(padding: list[int]) -> list[list[int]]:
    """tf.nn's explicit padding for a channels-last batch: symmetric per spatial axis."""
    return [[0, 0], *([p, p] for p in padding), [0, 0]]


# Whether a grouped convolution is traced as TensorFlow's single grouped op (see Conv); only the
# ONNX export asks for it, through grouped_conv_as_one_op().
_GROUPED_AS_ONE_OP: contextvars.ContextVar[bool] = contextvars.ContextVar("grouped_as_one_op", default=False)


@contextlib.contextmanager
def grouped_conv_as_one_op() -> Iterator[None]:
    """Trace grouped convolutions as one ``Conv2D`` op while the block runs, for tf2onnx, which
    writes it as one ONNX ``Conv`` with ``group`` (what torch's exporter writes; ONNX Runtime runs
    it faster than a Split/Conv/Concat chain). Tracing runs no kernel, so this works on every CPU;
    the file is then verified against the model, which runs the split form."""
    token = _GROUPED_AS_ONE_OP.set(True)
    try:
        yield
    finally:
        _GROUPED_AS_ONE_OP.reset(token)


class Conv(keras.layers.Layer):
    """Conv1D/Conv2D on channels-last input with kernel ``(*k, in / groups, out)``.

    Keras' own Conv refuses stride > 1 with dilation > 1, and TensorFlow's CPU backward kernel
    refuses any dilation, so a dilated kernel is spread out with zeros here instead (the same
    numbers; TF's "same" padding then sees the same effective size). 1-D runs as 2-D with a
    height of one, because ``tf.nn.conv1d`` takes no explicit padding.

    A grouped convolution (``groups > 1``) runs as one convolution per group, concatenated:
    where oneDNN is off (CPUs without AVX-512, or ``TF_ENABLE_ONEDNN_OPTS=0``) TensorFlow's graph
    optimiser fuses Conv2D + BiasAdd into an Eigen kernel that refuses groups ("Fused conv
    implementation does not support grouped convolutions"). The split form runs everywhere,
    with the same numbers as Eigen's unfused grouped kernel and faster than it.
    """

    def __init__(self, filters: int, kernel_size: list[int], stride: list[int], padding: Any,
                 dilation: list[int], groups: int = 1, use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters, self.groups, self.use_bias = filters, groups, use_bias
        self.kernel_size, self.stride, self.dilation = list(kernel_size), list(stride), list(dilation)
        self.padding = padding
        self.spatial = len(self.kernel_size)

    def build(self, input_shape) -> None:
        shape = (*self.kernel_size, input_shape[-1] // self.groups, self.filters)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def _dilated_kernel(self) -> tf.Tensor:
        kernel = tf.convert_to_tensor(self.kernel)
        for axis, rate in enumerate(self.dilation):
            if rate > 1:
                taps = tf.unstack(kernel, axis=axis)
                gap = [tf.zeros_like(taps[0])] * (rate - 1)
                kernel = tf.stack([t for tap in taps[:-1] for t in (tap, *gap)] + [taps[-1]], axis=axis)
        return kernel

    def call(self, x):
        kernel, stride, padding = self._dilated_kernel(), list(self.stride), self.padding
        if self.spatial == 1:  # as 2-D with a height of one
            x, kernel, stride = tf.expand_dims(x, 1), tf.expand_dims(kernel, 0), [1, *stride]
            padding = padding if isinstance(padding, str) else [0, *padding]
        padding = padding.upper() if isinstance(padding, str) else _explicit(padding)
        if self.groups == 1 or _GROUPED_AS_ONE_OP.get():
            out = tf.nn.conv2d(x, kernel, [1, *stride, 1], padding)
        else:
            out = tf.concat([tf.nn.conv2d(part, part_kernel, [1, *stride, 1], padding) for part, part_kernel
                             in zip(tf.split(x, self.groups, axis=-1), tf.split(kernel, self.groups, axis=-1))],
                            axis=-1)
        if self.spatial == 1:
            out = tf.squeeze(out, 1)
        return out if self.bias is None else tf.nn.bias_add(out, self.bias)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups, "use_bias": self.use_bias}


class Pool2D(keras.layers.Layer):
    """Max or average pooling, channels last, with torch's meaning of explicit padding: max pools
    pad with -inf (padding never wins), average pools count the padded zeros."""

    def __init__(self, mode: str, pool_size: list[int], stride: list[int], padding: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode, self.pool_size, self.stride, self.padding = mode, list(pool_size), list(stride), padding

    def call(self, x):
        padding = "VALID"
        if self.padding == "same":
            padding = "SAME"  # TensorFlow's "same" pooling ignores the padded cells, i.e. pads -inf
        elif self.padding != "valid":
            x = tf.pad(x, _explicit(self.padding), constant_values=-math.inf if self.mode == "max" else 0.0)
        pool = tf.nn.max_pool2d if self.mode == "max" else tf.nn.avg_pool2d
        return pool(x, self.pool_size, self.stride, padding)

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode, "pool_size": self.pool_size, "stride": self.stride,
                "padding": self.padding}


class BatchNorm(keras.layers.Layer):
    """Batch normalisation over the last axis with torch's semantics.

    Training normalises with the biased batch variance and updates
    ``running = (1 - momentum) * running + momentum * batch`` with the *unbiased* variance;
    Keras' BatchNormalization uses the biased one and the opposite meaning of momentum. A layer
    set non-trainable runs in inference mode and keeps its statistics, as Keras' own does.
    """

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum, self.eps = momentum, eps

    def build(self, input_shape) -> None:
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(name="gamma", shape=channels, initializer="ones")
        self.beta = self.add_weight(name="beta", shape=channels, initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=channels, initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=channels, initializer="ones",
                                               trainable=False)

    def call(self, x, training=False):
        if training and self.trainable:
            axes = list(range(x.shape.rank - 1))
            mean, variance = tf.nn.moments(x, axes)
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)
            unbiased = variance * count / (count - 1.0)
            self.moving_mean.assign((1.0 - self.momentum) * self.moving_mean + self.momentum * mean)
            self.moving_variance.assign((1.0 - self.momentum) * self.moving_variance + self.momentum * unbiased)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return (x - mean) * (self.gamma * tf.math.rsqrt(variance + self.eps)) + self.beta

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "eps": self.eps}


class Attention(keras.layers.Layer):
    """Scaled dot-product attention on projected (batch, L, heads * d) tensors, as the torch
    adapter computes it: additive float32-minimum masks, a causal mask aligned to the last key,
    dropout on the attention probabilities while training."""

    def __init__(self, num_heads: int, causal: bool = False, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_heads, self.causal, self.rate = num_heads, causal, dropout
        self.dropout = keras.layers.Dropout(dropout)

    def _heads_transposed(self, x: tf.Tensor) -> tf.Tensor:
        """(batch, L, heads * d) -> (batch, heads, d, L). Transposing before the reshape keeps the
        reshape from following the Dense's own (tensordot) one: tf2onnx 1.17 merges two Reshapes
        in a row wrongly when the second copies dimensions from its input (it reads the 2-D
        matmul's instead) and then ONNX Runtime fails or, worse, miscomputes."""
        shape = tf.shape(x)
        split = [shape[0], self.num_heads, x.shape[-1] // self.num_heads, shape[1]]
        return tf.reshape(tf.transpose(x, [0, 2, 1]), split)

    # not "mask": Keras fills a call argument of that name from its own masking machinery
    def call(self, query, key, value, key_mask=None, training=False):
        q = tf.transpose(self._heads_transposed(query), [0, 1, 3, 2])
        k_t = self._heads_transposed(key)
        v = tf.transpose(self._heads_transposed(value), [0, 1, 3, 2])
        scores = tf.matmul(q, k_t) * (1.0 / math.sqrt(query.shape[-1] // self.num_heads))
        # the mask is int64 as tokenizers give it (1 = token, 0 = padding); any dtype works
        allowed = None if key_mask is None else tf.not_equal(key_mask, tf.zeros((), key_mask.dtype))[:, None, None, :]
        if self.causal:
            q_len, k_len = tf.shape(query)[1], tf.shape(key)[1]
            # query i sits at position k_len - q_len + i: after any cached keys
            visible = tf.range(k_len)[None, :] <= tf.range(q_len)[:, None] + (k_len - q_len)
            allowed = visible if allowed is None else tf.logical_and(allowed, visible)
        if allowed is not None:
            scores += tf.where(allowed, 0.0, tf.float32.min)
        probabilities = self.dropout(tf.nn.softmax(scores, axis=-1), training=training)
        out = tf.transpose(tf.matmul(probabilities, v), [0, 2, 1, 3])
        shape = tf.shape(query)
        return tf.reshape(out, [shape[0], shape[1], value.shape[-1]])

    def get_config(self) -> dict:
        return {**super().get_config(), "num_heads": self.num_heads, "causal": self.causal, "dropout": self.rate}


class PositionEmbedding(keras.layers.Layer):
    """Adds row ``p`` of a learned table to position ``p``; positions start after ``past``'s length."""

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def build(self, x_shape, past_shape=None) -> None:
        self.embeddings = self.add_weight(name="embeddings", shape=(self.max_length, x_shape[-1]),
                                          initializer="random_normal")

    def call(self, x, past=None):
        start = 0 if past is None else tf.shape(past)[1]
        return x + tf.gather(self.embeddings, tf.range(start, start + tf.shape(x)[1]))

    def get_config(self) -> dict:
        return {**super().get_config(), "max_length": self.max_length}


class TakeToken(keras.layers.Layer):
    def __init__(self, index: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index

    def call(self, x):
        return x[:, self.index]

    def get_config(self) -> dict:
        return {**super().get_config(), "index": self.index}


class Cropping1D(keras.layers.Layer):
    """Keras' Cropping1D for sequences of any rank (``(L, ...)``), with a dynamic length."""

    def __init__(self, cropping: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cropping = list(cropping)

    def call(self, x):
        return x[:, self.cropping[0]:tf.shape(x)[1] - self.cropping[1]]

    def get_config(self) -> dict:
        return {**super().get_config(), "cropping": self.cropping}


class L2Normalize(keras.layers.Layer):
    """``x / max(||x||, eps)`` over the last axis, torch's ``F.normalize`` (``tf.math.l2_normalize``
    clamps the squared norm instead, which differs for norms below ``sqrt(eps)``)."""

    def __init__(self, eps: float = 1e-12, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = eps

    def call(self, x):
        return x / tf.maximum(tf.norm(x, axis=-1, keepdims=True), self.eps)

    def get_config(self) -> dict:
        return {**super().get_config(), "eps": self.eps}


class Tied(keras.layers.Layer):
    """A layer that uses the table of a Keras Embedding layer given by :meth:`share`."""

    def share(self, source: keras.layers.Embedding) -> None:
        # a callable, not an attribute Keras would track: the variable stays the Embedding's alone
        self.matrix = lambda: source.embeddings


class TiedEmbedding(Tied):
    """Looks ids up in another Embedding's table."""

    def call(self, ids):
        return tf.gather(self.matrix(), ids)


class Unembedding(Tied):
    """``x @ E^T`` (plus an optional ``bias`` of its own) with another Embedding's table."""

    def __init__(self, vocab_size: int, use_bias: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.use_bias = vocab_size, use_bias

    def build(self, input_shape) -> None:
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros") \
            if self.use_bias else None

    def call(self, x):
        out = tf.matmul(x, self.matrix(), transpose_b=True)
        return out if self.bias is None else out + self.bias

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size, "use_bias": self.use_bias}


def channel_axis(axis: int, rank: int, layout: str) -> int:
    """Where the spec's ``axis`` (of a batched tensor of ``rank``) lies in ``layout``."""
    if layout == "cf" or rank <= 2:
        return axis
    return rank - 1 if axis == 1 else axis - 1


def _conv(c, shapes, name, layout):
    return Conv(c["filters"], c["kernel_size"], c["stride"], c["padding"], c["dilation"], c["groups"],
                c["use_bias"], name=name)


def _pool(mode):
    return lambda c, shapes, name, layout: Pool2D(mode, c["pool_size"], c["stride"], c["padding"], name=name)


def _recurrent(cls):
    # Keras' LSTM/GRU already have the neutral gate order and bias layout (GRU: reset_after).
    return lambda c, shapes, name, layout: cls(c["units"], return_sequences=c["return_sequences"], name=name)


_MAKERS: dict[str, Callable[[dict, list[tuple], str, str], keras.layers.Layer]] = {
    "Dense": lambda c, shapes, name, layout: keras.layers.Dense(c["units"], use_bias=c["use_bias"], name=name),
    "Conv1D": _conv,
    "Conv2D": _conv,
    "MaxPool2D": _pool("max"),
    "AvgPool2D": _pool("avg"),
    "GlobalAvgPool2D": lambda c, shapes, name, layout: keras.layers.GlobalAveragePooling2D(name=name),
    "Flatten": lambda c, shapes, name, layout: keras.layers.Flatten(name=name),
    "Reshape": lambda c, shapes, name, layout: keras.layers.Reshape(c["target_shape"], name=name),
    "Dropout": lambda c, shapes, name, layout: keras.layers.Dropout(c["rate"], name=name),
    "BatchNorm": lambda c, shapes, name, layout: BatchNorm(c["momentum"], c["eps"], name=name),
    "LayerNorm": lambda c, shapes, name, layout: keras.layers.LayerNormalization(epsilon=c["eps"], name=name),
    "Embedding": lambda c, shapes, name, layout: TiedEmbedding(name=name) if c["tied_to"]
    else keras.layers.Embedding(c["vocab_size"], c["dim"], name=name),
    "GroupNorm": lambda c, shapes, name, layout: keras.layers.GroupNormalization(c["groups"], epsilon=c["eps"],
                                                                                 name=name),
    "Permute": lambda c, shapes, name, layout: keras.layers.Permute(c["dims"], name=name),
    "Cropping1D": lambda c, shapes, name, layout: Cropping1D(c["cropping"], name=name),
    "Rescaling": lambda c, shapes, name, layout: keras.layers.Rescaling(c["scale"], c["offset"], name=name),
    "LSTM": _recurrent(keras.layers.LSTM),
    "GRU": _recurrent(keras.layers.GRU),
    "MultiHeadAttention": lambda c, shapes, name, layout: keras.layers.MultiHeadAttention(
        c["num_heads"], builtin.MultiHeadAttention.key_dim(c, shapes), dropout=c["dropout"], name=name),
    "Activation": lambda c, shapes, name, layout: Activate(c["activation"], c["negative_slope"], name=name),
    "Add": lambda c, shapes, name, layout: keras.layers.Add(name=name),
    "Concatenate": lambda c, shapes, name, layout: keras.layers.Concatenate(
        channel_axis(builtin.concat_axis(c, len(shapes[0]) + 1), len(shapes[0]) + 1, layout), name=name),
    "Attention": lambda c, shapes, name, layout: Attention(c["num_heads"], c["causal"], c["dropout"], name=name),
    "PositionEmbedding": lambda c, shapes, name, layout: PositionEmbedding(c["max_length"], name=name),
    "TakeToken": lambda c, shapes, name, layout: TakeToken(c["index"], name=name),
    "Unembedding": lambda c, shapes, name, layout: Unembedding(c["vocab_size"], c["use_bias"], name=name),
    "L2Normalize": lambda c, shapes, name, layout: L2Normalize(c["eps"], name=name),
}


class Custom(keras.layers.Layer):
    """A user's :class:`llmasos.layers.Layer`: its weights are Keras variables in the neutral layout
    (``params.<name>``), its call runs with the TensorFlow op set on a list of inputs."""

    def __init__(self, layer: custom.Layer, initial: dict, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layer = layer
        self.params = types.SimpleNamespace()  # any weight name, even one a Keras attribute has
        for key, value in initial.items():
            variable = self.add_weight(name=key, shape=value.shape, initializer="zeros")
            variable.assign(value)
            setattr(self.params, key, variable)

    def call(self, inputs):
        try:
            return self.layer.call(OPS, *inputs, **{key: v.value for key, v in vars(self.params).items()})
        except Exception as err:
            self.error = err  # Keras rewrites errors raised while it traces; the build reports this one
            raise


def make_layer(kind: str, config: dict, shapes: list[tuple], name: str, layout: str, *,
               layer: str | None = None, seed: int | None = None) -> keras.layers.Layer:
    """The Keras layer for one spec layer, without its fused activation; ``layout`` is the one its
    inputs arrive in, ``shapes`` their spec shapes (batch excluded). A custom layer starts from
    the neutral initial weights of spec layer ``layer`` for ``seed``, as in every framework."""
    user_kind = custom.custom_kind(kind)
    if user_kind is not None:
        initial = user_kind.initial_weights(config, shapes, layer or name, seed)
        return Custom(user_kind.instance(config), initial, name=name)
    return _MAKERS[kind](config, shapes, name, layout)


def call_layer(kind: str, layer: keras.layers.Layer, inputs: list, config: dict):
    """Call a layer made by :func:`make_layer` on its inputs, as the spec means them."""
    if kind == "MultiHeadAttention":
        # spec order: (x), (query, value) or (query, key, value); Keras: call(query, value, key)
        key = inputs[1] if len(inputs) == 3 else None
        return layer(inputs[0], inputs[-1], key=key, use_causal_mask=config["causal"])
    if kind in ("Add", "Concatenate") or isinstance(layer, Custom):
        return layer(list(inputs))
    return layer(*inputs)
