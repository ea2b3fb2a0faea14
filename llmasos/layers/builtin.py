"""The layer kinds llmasos defines.

Each kind says, as plain data and pure functions and without any framework:

* which options it takes, their defaults, and which one is its *main* positional size;
* the output shape for given input shapes (batch excluded; ``None`` is a dynamic dimension);
* the weights it owns, by name and shape, in the **neutral layout** that every adapter converts
  to and from. The neutral layout follows Keras: Dense kernels are ``(in, out)``, conv kernels
  ``(*kernel, in / groups, out)``, recurrent gates in Keras order with one LSTM bias.

Activations are channels-first at every boundary: an image is ``(C, H, W)``, a 1-D signal
``(C, L)``, a sequence ``(L, F)``.

>>> Dense.output_shape({"units": 10}, [(784,)])
(10,)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ..errors import SpecError
from .catalog import LayerKind, Shape, add_kind


def _builtin(kind: type[LayerKind]) -> type[LayerKind]:
    return add_kind(kind, builtin=True)


def pair(value: Any, option: str, where: str, minimum: int = 1) -> tuple[int, int]:
    """Normalise an int or a pair of ints (kernel size, stride, ...) to a pair of ints of at
    least ``minimum`` (positive by default)."""
    items = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (list, tuple)) else None
    if items is None or len(items) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items
    ):
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise SpecError(f"{where}: {option} must be {what} or a pair of them, got {value!r}")
    return items


def single(value: Any, option: str, where: str) -> int:
    """Normalise a positive int (1-D kernel size, stride, ...), accepting a 1-element list."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SpecError(f"{where}: {option} must be a positive int, got {value!r}")
    return value


def check_padding(value: Any, ndim: int, where: str, allow_same: bool = True) -> Any:
    """Padding is "valid", "same" (when allowed) or explicit non-negative ints per side."""
    allowed = ("valid", "same") if allow_same else ("valid",)
    if isinstance(value, str):
        if value.lower() in allowed:
            return value.lower()
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return [value] * ndim
    elif isinstance(value, (list, tuple)) and len(value) == ndim and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        return list(value)
    raise SpecError(
        f"{where}: padding must be one of {', '.join(map(repr, allowed))}, a non-negative int or "
        f"{ndim} non-negative ints, got {value!r}"
    )


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """The (before, after) padding of TensorFlow's "same": the extra pixel goes after.

    Both adapters use this one rule so that stride > 1 gives the same numbers everywhere.
    """
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def conv_output_size(size: int | None, kernel: int, stride: int, padding: Any, dilation: int = 1) -> int | None:
    """Output length of one spatial axis; ``padding`` is "valid", "same" or an explicit int."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    pad = 0 if padding == "valid" else 2 * padding
    effective = (kernel - 1) * dilation + 1
    out = (size + pad - effective) // stride + 1
    return out


def _need_rank(inputs: list[Shape], rank: int, where: str, what: str) -> None:
    if len(inputs[0]) != rank:
        raise SpecError(f"{where}: expects {what} (rank {rank} without batch), got input shape {inputs[0]}")


def _known(dim: int | None, where: str, what: str) -> int:
    if dim is None:
        raise SpecError(f"{where}: the {what} dimension must be known, not dynamic")
    return dim


@_builtin
class Dense(LayerKind):
    name = "Dense"
    main = "units"
    required = ("units",)
    defaults = {"activation": "linear", "use_bias": True, "negative_slope": None}
    has_activation = True

    @classmethod
    def check(cls, config, where):
        config["units"] = single(config["units"], "units", where)
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        if len(inputs[0]) < 1:
            raise SpecError("Dense needs an input with at least one feature axis")
        return (*inputs[0][:-1], config["units"])

    @classmethod
    def weights(cls, config, inputs):
        features = _known(inputs[0][-1], "Dense", "feature")
        out = {"kernel": (features, config["units"])}
        if config["use_bias"]:
            out["bias"] = (config["units"],)
        return out


class _Conv(LayerKind):
    main = "filters"
    required = ("filters", "kernel_size")
    has_activation = True
    spatial: ClassVar[int]

    @classmethod
    def _norm(cls, value, option, where):
        if cls.spatial == 1:
            return [single(value, option, where)]
        return list(pair(value, option, where))

    @classmethod
    def check(cls, config, where):
        config["filters"] = single(config["filters"], "filters", where)
        for option in ("kernel_size", "stride", "dilation"):
            config[option] = cls._norm(config[option], option, where)
        config["padding"] = check_padding(config["padding"], cls.spatial, where)
        config["groups"] = single(config["groups"], "groups", where)
        if config["filters"] % config["groups"]:
            raise SpecError(f"{where}: filters ({config['filters']}) must be divisible by groups ({config['groups']})")
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        _need_rank(inputs, cls.spatial + 1, cls.name, "channels-first input (C, " + ("L)" if cls.spatial == 1 else "H, W)"))
        channels = _known(inputs[0][0], cls.name, "channel")
        if channels % config["groups"]:
            raise SpecError(f"{cls.name}: input channels ({channels}) must be divisible by groups ({config['groups']})")
        sizes = []
        for axis, size in enumerate(inputs[0][1:]):
            pad = config["padding"] if isinstance(config["padding"], str) else config["padding"][axis]
            out = conv_output_size(size, config["kernel_size"][axis], config["stride"][axis], pad, config["dilation"][axis])
            if out is not None and out < 1:
                raise SpecError(f"{cls.name}: kernel {config['kernel_size']} does not fit input {inputs[0]}")
            sizes.append(out)
        return (config["filters"], *sizes)

    @classmethod
    def weights(cls, config, inputs):
        channels = _known(inputs[0][0], cls.name, "channel")
        out = {"kernel": (*config["kernel_size"], channels // config["groups"], config["filters"])}
        if config["use_bias"]:
            out["bias"] = (config["filters"],)
        return out


_CONV_DEFAULTS = {"stride": 1, "padding": "valid", "dilation": 1, "groups": 1, "activation": "linear",
                  "use_bias": True, "negative_slope": None}


@_builtin
class Conv1D(_Conv):
    name = "Conv1D"
    spatial = 1
    defaults = _CONV_DEFAULTS


@_builtin
class Conv2D(_Conv):
    name = "Conv2D"
    spatial = 2
    defaults = _CONV_DEFAULTS


class _Pool2D(LayerKind):
    main = "pool_size"
    defaults = {"pool_size": 2, "stride": None, "padding": "valid"}
    allow_same: ClassVar[bool]

    @classmethod
    def check(cls, config, where):
        config["pool_size"] = list(pair(config["pool_size"], "pool_size", where))
        stride = config["stride"] if config["stride"] is not None else config["pool_size"]
        config["stride"] = list(pair(stride, "stride", where))
        config["padding"] = check_padding(config["padding"], 2, where, allow_same=cls.allow_same)
        if isinstance(config["padding"], list) and any(
            p * 2 > k for p, k in zip(config["padding"], config["pool_size"])
        ):
            raise SpecError(f"{where}: padding {config['padding']} must be at most half the pool size {config['pool_size']}")
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        _need_rank(inputs, 3, cls.name, "channels-first images (C, H, W)")
        sizes = []
        for axis, size in enumerate(inputs[0][1:]):
            pad = config["padding"] if isinstance(config["padding"], str) else config["padding"][axis]
            out = conv_output_size(size, config["pool_size"][axis], config["stride"][axis], pad)
            if out is not None and out < 1:
                raise SpecError(f"{cls.name}: pool {config['pool_size']} does not fit input {inputs[0]}")
            sizes.append(out)
        return (inputs[0][0], *sizes)


@_builtin
class MaxPool2D(_Pool2D):
    name = "MaxPool2D"
    allow_same = True


@_builtin
class AvgPool2D(_Pool2D):
    """Average pooling; explicit padding counts the padded zeros (torch's default)."""

    name = "AvgPool2D"
    allow_same = False


@_builtin
class GlobalAvgPool2D(LayerKind):
    name = "GlobalAvgPool2D"

    @classmethod
    def output_shape(cls, config, inputs):
        _need_rank(inputs, 3, cls.name, "channels-first images (C, H, W)")
        return (inputs[0][0],)


@_builtin
class Flatten(LayerKind):
    """Flattens in channels-first order, so the next Dense sees the same features everywhere."""

    name = "Flatten"

    @classmethod
    def output_shape(cls, config, inputs):
        if any(d is None for d in inputs[0]):
            raise SpecError(f"Flatten: every dimension must be known, got {inputs[0]}")
        return (math.prod(inputs[0]),)


@_builtin
class Reshape(LayerKind):
    name = "Reshape"
    main = "target_shape"
    required = ("target_shape",)

    @classmethod
    def check(cls, config, where):
        shape = config["target_shape"]
        if isinstance(shape, int):
            shape = [shape]
        if not isinstance(shape, (list, tuple)) or not shape or not all(
            isinstance(d, int) and (d > 0 or d == -1) for d in shape
        ) or list(shape).count(-1) > 1:
            raise SpecError(f"{where}: target_shape must be positive ints with at most one -1, got {config['target_shape']!r}")
        config["target_shape"] = list(shape)
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        target = config["target_shape"]
        if any(d is None for d in inputs[0]):
            # a dynamic size (a waveform's length) can only flow into the -1
            if -1 not in target:
                raise SpecError(f"Reshape: input {inputs[0]} has a dynamic dimension; the target shape needs a -1 to "
                                f"take it, got {tuple(target)}")
            return tuple(None if d == -1 else d for d in target)
        total = math.prod(inputs[0])
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if total % known:
                raise SpecError(f"Reshape: cannot reshape {inputs[0]} ({total} values) into {tuple(target)}")
            target = [total // known if d == -1 else d for d in target]
        elif known != total:
            raise SpecError(f"Reshape: cannot reshape {inputs[0]} ({total} values) into {tuple(target)} ({known} values)")
        return tuple(target)


@_builtin
class Permute(LayerKind):
    """Reorders the axes, as Keras' Permute: ``dims`` is a permutation of ``1..rank`` (the batch
    is axis 0 and stays), so ``(2, 1)`` turns a signal ``(C, L)`` into a sequence ``(L, C)``."""

    name = "Permute"
    main = "dims"
    required = ("dims",)

    @classmethod
    def check(cls, config, where):
        dims = config["dims"]
        if not isinstance(dims, (list, tuple)) or sorted(dims) != list(range(1, len(dims) + 1)):
            raise SpecError(f"{where}: dims must be a permutation of 1..rank (the batch axis 0 stays), got {dims!r}")
        config["dims"] = list(dims)
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        if len(inputs[0]) != len(config["dims"]):
            raise SpecError(f"Permute: dims {config['dims']} do not match input rank {len(inputs[0])} ({inputs[0]})")
        return tuple(inputs[0][d - 1] for d in config["dims"])


@_builtin
class Cropping1D(LayerKind):
    """Drops ``cropping = (start, end)`` positions from the ends of a sequence ``(L, ...)``, as
    Keras' Cropping1D (Wav2Vec2's positional convolution drops its last, extra frame)."""

    name = "Cropping1D"
    main = "cropping"
    required = ("cropping",)

    @classmethod
    def check(cls, config, where):
        config["cropping"] = [*pair(config["cropping"], "cropping", where, minimum=0)]
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        if len(inputs[0]) < 2:
            raise SpecError(f"Cropping1D: expects a sequence (L, ...), got {inputs[0]}")
        length = inputs[0][0]
        if length is not None and length <= sum(config["cropping"]):
            raise SpecError(f"Cropping1D: cropping {config['cropping']} leaves nothing of length {length}")
        return (None if length is None else length - sum(config["cropping"]), *inputs[0][1:])


@_builtin
class Dropout(LayerKind):
    name = "Dropout"
    main = "rate"
    required = ("rate",)

    @classmethod
    def check(cls, config, where):
        rate = config["rate"]
        if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise SpecError(f"{where}: Dropout rate must be in [0, 1), got {rate!r}")
        config["rate"] = float(rate)
        return config


@_builtin
class BatchNorm(LayerKind):
    """Normalises over the channel axis (axis 1 with batch).

    ``momentum`` is the weight of the new batch statistic (torch's meaning; Keras' momentum is
    ``1 - momentum``); the running variance is updated with the unbiased batch variance.
    """

    name = "BatchNorm"
    defaults = {"momentum": 0.1, "eps": 1e-5}

    @classmethod
    def check(cls, config, where):
        if not 0.0 <= float(config["momentum"]) <= 1.0:
            raise SpecError(f"{where}: momentum must be in [0, 1] (torch's meaning), got {config['momentum']!r}")
        if not float(config["eps"]) > 0:
            raise SpecError(f"{where}: eps must be positive, got {config['eps']!r}")
        config["momentum"], config["eps"] = float(config["momentum"]), float(config["eps"])
        return config

    @classmethod
    def weights(cls, config, inputs):
        channels = _known(inputs[0][0], "BatchNorm", "channel")
        return {name: (channels,) for name in ("gamma", "beta", "moving_mean", "moving_variance")}

    statistics = ("moving_mean", "moving_variance")


@_builtin
class LayerNorm(LayerKind):
    """Normalises over the last axis."""

    name = "LayerNorm"
    defaults = {"eps": 1e-5}

    @classmethod
    def weights(cls, config, inputs):
        features = _known(inputs[0][-1], "LayerNorm", "last")
        return {"gamma": (features,), "beta": (features,)}


@_builtin
class GroupNorm(LayerKind):
    """Normalises channels-first input ``(C, ...)`` over each group of ``C / groups`` channels and
    every position, with a scale and shift per channel (torch's GroupNorm; ``groups == C`` is
    instance normalisation, as Wav2Vec2's first feature layer has). Statistics never carry over
    between samples, so training and inference compute the same."""

    name = "GroupNorm"
    main = "groups"
    required = ("groups",)
    defaults = {"eps": 1e-5}

    @classmethod
    def check(cls, config, where):
        config["groups"] = single(config["groups"], "groups", where)
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        if len(inputs[0]) < 2:
            raise SpecError(f"GroupNorm: expects channels-first input (C, ...), got {inputs[0]}")
        channels = _known(inputs[0][0], cls.name, "channel")
        if channels % config["groups"]:
            raise SpecError(f"GroupNorm: channels ({channels}) must be divisible by groups ({config['groups']})")
        return inputs[0]

    @classmethod
    def weights(cls, config, inputs):
        return {"gamma": (inputs[0][0],), "beta": (inputs[0][0],)}


@_builtin
class Rescaling(LayerKind):
    """``x * scale + offset`` with constants (Keras' Rescaling): pixel scaling, or Marian's
    embeddings times ``sqrt(d_model)``."""

    name = "Rescaling"
    main = "scale"
    required = ("scale",)
    defaults = {"offset": 0.0}

    @classmethod
    def check(cls, config, where):
        for option in ("scale", "offset"):
            value = config[option]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise SpecError(f"{where}: {option} must be a finite number, got {value!r}")
            config[option] = float(value)
        return config


@_builtin
class Embedding(LayerKind):
    """Integer ids ``(L,)`` to vectors ``(L, dim)``; the main size is the vector size.

    ``tied_to`` names an earlier Embedding whose table this one looks up instead of owning one
    (an encoder-decoder's shared vocabulary, as Marian has); ``dim`` and ``vocab_size`` then
    come from it.
    """

    name = "Embedding"
    main = "dim"
    defaults = {"dim": None, "vocab_size": None, "tied_to": None}
    shares = "tied_to"

    @classmethod
    def check(cls, config, where):
        if config["tied_to"] is None:
            missing = [key for key in ("dim", "vocab_size") if config[key] is None]
            if missing:
                raise SpecError(f"{where}: Embedding needs {', '.join(missing)} (or tied_to= an earlier Embedding)")
        for option in ("dim", "vocab_size"):
            if config[option] is not None:
                config[option] = single(config[option], option, where)
        return config

    @classmethod
    def link(cls, config, source_kind, source_config, inputs):
        if source_kind != "Embedding":
            raise SpecError(f"tied_to {config['tied_to']!r} is a {source_kind} layer; it must be an Embedding")
        if source_config["tied_to"] is not None:
            raise SpecError(f"tied_to {config['tied_to']!r} is itself tied to {source_config['tied_to']!r}; name the "
                            f"Embedding that owns the table")
        for option in ("dim", "vocab_size"):
            if config[option] not in (None, source_config[option]):
                raise SpecError(f"{option} {config[option]} differs from {config['tied_to']!r}'s "
                                f"{source_config[option]}")
        return {**config, "dim": source_config["dim"], "vocab_size": source_config["vocab_size"]}

    @classmethod
    def output_shape(cls, config, inputs):
        return (*inputs[0], config["dim"])

    @classmethod
    def weights(cls, config, inputs):
        return {} if config["tied_to"] else {"embeddings": (config["vocab_size"], config["dim"])}


class _Recurrent(LayerKind):
    main = "units"
    required = ("units",)
    defaults = {"return_sequences": False}
    gates: ClassVar[int]

    @classmethod
    def check(cls, config, where):
        config["units"] = single(config["units"], "units", where)
        config["return_sequences"] = bool(config["return_sequences"])
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        _need_rank(inputs, 2, cls.name, "sequences (L, F)")
        if config["return_sequences"]:
            return (inputs[0][0], config["units"])
        return (config["units"],)


@_builtin
class LSTM(_Recurrent):
    """Gates in Keras order (input, forget, cell, output); one bias of ``4 * units``."""

    name = "LSTM"
    gates = 4

    @classmethod
    def weights(cls, config, inputs):
        features, units = _known(inputs[0][-1], "LSTM", "feature"), config["units"]
        return {"kernel": (features, 4 * units), "recurrent_kernel": (units, 4 * units), "bias": (4 * units,)}


@_builtin
class GRU(_Recurrent):
    """Gates in Keras order (update, reset, new) with the reset gate applied after the matmul;
    two biases, input and recurrent, stacked as ``(2, 3 * units)``."""

    name = "GRU"
    gates = 3

    @classmethod
    def weights(cls, config, inputs):
        features, units = _known(inputs[0][-1], "GRU", "feature"), config["units"]
        return {"kernel": (features, 3 * units), "recurrent_kernel": (units, 3 * units), "bias": (2, 3 * units)}


def _attention_options(config: dict, where: str) -> dict:
    """The options both attention kinds take: ``num_heads``, ``causal`` and ``dropout``."""
    config["num_heads"] = single(config["num_heads"], "num_heads", where)
    config["causal"] = bool(config["causal"])
    if not 0.0 <= float(config["dropout"]) < 1.0:
        raise SpecError(f"{where}: dropout must be in [0, 1), got {config['dropout']!r}")
    config["dropout"] = float(config["dropout"])
    return config


@_builtin
class MultiHeadAttention(LayerKind):
    """Scaled dot-product attention over sequences ``(L, D)``.

    One input is self-attention; two are (query, value) with key = value; three are
    (query, key, value). The output has the query's feature size.
    """

    name = "MultiHeadAttention"
    main = "num_heads"
    required = ("num_heads",)
    defaults = {"key_dim": None, "causal": False, "dropout": 0.0}
    num_inputs = (1, 3)

    @classmethod
    def check(cls, config, where):
        if config["key_dim"] is not None:
            config["key_dim"] = single(config["key_dim"], "key_dim", where)
        return _attention_options(config, where)

    @classmethod
    def key_dim(cls, config, inputs) -> int:
        if config["key_dim"] is not None:
            return config["key_dim"]
        dim = _known(inputs[0][-1], cls.name, "query feature")
        if dim % config["num_heads"]:
            raise SpecError(f"{cls.name}: query size {dim} is not divisible by num_heads {config['num_heads']}; set key_dim")
        return dim // config["num_heads"]

    @classmethod
    def output_shape(cls, config, inputs):
        for shape in inputs:
            if len(shape) != 2:
                raise SpecError(f"{cls.name}: expects sequences (L, D), got {shape}")
        if len(inputs) == 3 and inputs[1][0] is not None and inputs[2][0] is not None and inputs[1][0] != inputs[2][0]:
            raise SpecError(f"{cls.name}: key length {inputs[1][0]} differs from value length {inputs[2][0]}")
        cls.key_dim(config, inputs)
        return inputs[0]

    @classmethod
    def weights(cls, config, inputs):
        query = inputs[0]
        key = inputs[1] if len(inputs) == 3 else inputs[-1]
        value = inputs[-1]
        inner = config["num_heads"] * cls.key_dim(config, inputs)
        dims = {"query": query[-1], "key": key[-1], "value": value[-1]}
        out = {}
        for role, dim in dims.items():
            out[f"{role}_kernel"] = (_known(dim, cls.name, role), inner)
            out[f"{role}_bias"] = (inner,)
        out["output_kernel"] = (inner, query[-1])
        out["output_bias"] = (query[-1],)
        return out


@_builtin
class Attention(LayerKind):
    """Multi-head scaled dot-product attention without weights: ``softmax(q k^T / sqrt(d)) v`` per
    head, on already projected sequences. Inputs are (query ``(Lq, D)``, key ``(Lk, D)``, value
    ``(Lk, Dv)``) and optionally a key mask ``(Lk,)``: a key is attended where its mask is
    non-zero (1 = attend, 0 = padding). Heads split the feature axis in order (head ``h`` owns
    features ``h*d .. (h+1)*d``); the output is ``(Lq, Dv)`` with the heads joined back.

    ``causal`` lets query ``i`` see keys up to its own position, counted from the end, so a query
    block that follows ``Lk - Lq`` cached keys (incremental decoding) is masked correctly. A query
    that may attend nothing gets the mean of the values rather than NaN.

    The projections are ordinary Dense layers around it, so a key/value cache is just a
    Concatenate of the past keys with the new ones (see :mod:`llmasos.zoo.gpt2`).
    """

    name = "Attention"
    main = "num_heads"
    required = ("num_heads",)
    defaults = {"causal": False, "dropout": 0.0}
    num_inputs = (3, 4)

    @classmethod
    def check(cls, config, where):
        return _attention_options(config, where)

    @classmethod
    def output_shape(cls, config, inputs):
        query, key, value = inputs[:3]
        if any(len(shape) != 2 for shape in inputs[:3]):
            raise SpecError("Attention: query, key and value must be sequences (L, D), got "
                            + ", ".join(map(str, inputs[:3])))
        pairs = [("key and value lengths", key[0], value[0]), ("query and key sizes", query[1], key[1])]
        if len(inputs) == 4:
            if len(inputs[3]) != 1:
                raise SpecError(f"Attention: the mask must be one value per key (Lk,), got {inputs[3]}")
            pairs.append(("mask and key lengths", inputs[3][0], key[0]))
        for what, a, b in pairs:
            if a is not None and b is not None and a != b:
                raise SpecError(f"Attention: {what} differ ({a} vs {b})")
        for what, size in (("query", query[1]), ("value", value[1])):
            if _known(size, cls.name, f"{what} feature") % config["num_heads"]:
                raise SpecError(f"Attention: {what} size {size} is not divisible by num_heads {config['num_heads']}")
        return (query[0], value[1])


@_builtin
class PositionEmbedding(LayerKind):
    """Adds a learned vector per position to a sequence ``(L, D)``: row ``p`` of a
    ``(max_length, D)`` table to position ``p``. With a second input (a cache of ``P`` earlier
    positions, any ``(P, ...)``) positions start at ``P`` instead of 0."""

    name = "PositionEmbedding"
    main = "max_length"
    required = ("max_length",)
    num_inputs = (1, 2)

    @classmethod
    def check(cls, config, where):
        config["max_length"] = single(config["max_length"], "max_length", where)
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        _need_rank(inputs, 2, cls.name, "sequences (L, D)")
        length = inputs[0][0]
        if length is not None and length > config["max_length"]:
            raise SpecError(f"PositionEmbedding: sequence length {length} exceeds max_length {config['max_length']}")
        return inputs[0]

    @classmethod
    def weights(cls, config, inputs):
        return {"embeddings": (config["max_length"], _known(inputs[0][-1], cls.name, "feature"))}


@_builtin
class TakeToken(LayerKind):
    """One position of a sequence: ``(L, ...)`` to ``(...)``; ``index`` counts from 0, or from the
    end when negative (BERT's pooler takes ``[CLS]`` at 0, a decoder its last position at -1)."""

    name = "TakeToken"
    main = "index"
    defaults = {"index": 0}

    @classmethod
    def check(cls, config, where):
        if not isinstance(config["index"], int) or isinstance(config["index"], bool):
            raise SpecError(f"{where}: index must be an int, got {config['index']!r}")
        return config

    @classmethod
    def output_shape(cls, config, inputs):
        if len(inputs[0]) < 2:
            raise SpecError(f"TakeToken: expects a sequence (L, ...), got {inputs[0]}")
        length, index = inputs[0][0], config["index"]
        if length is not None and not -length <= index < length:
            raise SpecError(f"TakeToken: index {index} is outside a sequence of length {length}")
        return inputs[0][1:]


@_builtin
class Unembedding(LayerKind):
    """Scores against every row of an Embedding's table: ``x @ E^T``, ``(..., dim)`` to
    ``(..., vocab_size)``, for language-model heads tied to their input embedding (GPT-2).

    ``embedding`` names an earlier Embedding layer. The matrix is that layer's weight, stored
    once in the neutral weights and one shared variable in every framework; this layer owns at
    most a ``bias`` ``(vocab_size,)`` (``use_bias``, as Marian's ``final_logits_bias``).
    ``vocab_size`` is filled in from the Embedding.
    """

    name = "Unembedding"
    required = ("embedding",)
    defaults = {"vocab_size": None, "use_bias": False}
    shares = "embedding"

    @classmethod
    def link(cls, config, source_kind, source_config, inputs):
        if source_kind != "Embedding":
            raise SpecError(f"embedding {config['embedding']!r} is a {source_kind} layer; it must be an Embedding")
        if source_config["tied_to"] is not None:
            raise SpecError(f"embedding {config['embedding']!r} is tied to {source_config['tied_to']!r}; name the "
                            f"Embedding that owns the table")
        features = _known(inputs[0][-1], cls.name, "feature")
        if features != source_config["dim"]:
            raise SpecError(f"input features {features} differ from embedding {config['embedding']!r}'s dim "
                            f"{source_config['dim']}")
        if config["vocab_size"] not in (None, source_config["vocab_size"]):
            raise SpecError(f"vocab_size {config['vocab_size']} differs from embedding {config['embedding']!r}'s "
                            f"{source_config['vocab_size']}")
        return {**config, "vocab_size": source_config["vocab_size"]}

    @classmethod
    def output_shape(cls, config, inputs):
        return (*inputs[0][:-1], config["vocab_size"])

    @classmethod
    def weights(cls, config, inputs):
        return {"bias": (config["vocab_size"],)} if config["use_bias"] else {}


@_builtin
class L2Normalize(LayerKind):
    """Divides by the Euclidean norm over the last axis, ``x / max(||x||, eps)``, as torch's
    ``F.normalize`` (face embeddings of unit length)."""

    name = "L2Normalize"
    defaults = {"eps": 1e-12}

    @classmethod
    def check(cls, config, where):
        eps = config["eps"]
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise SpecError(f"{where}: eps must be a positive number, got {eps!r}")
        config["eps"] = float(eps)
        return config


@_builtin
class Activation(LayerKind):
    name = "Activation"
    main = "activation"
    required = ("activation",)
    defaults = {"negative_slope": None}
    has_activation = True


class _Merge(LayerKind):
    num_inputs = (2, 64)


@_builtin
class Add(_Merge):
    name = "Add"

    @classmethod
    def output_shape(cls, config, inputs):
        if any(shape != inputs[0] for shape in inputs[1:]):
            raise SpecError(f"Add: all inputs must have the same shape, got {', '.join(map(str, inputs))}")
        return inputs[0]


@_builtin
class Concatenate(_Merge):
    """Joins along ``axis``, counted with the batch axis as 0 (so 1 is channels for images)."""

    name = "Concatenate"
    defaults = {"axis": -1}

    @classmethod
    def output_shape(cls, config, inputs):
        rank = len(inputs[0]) + 1
        axis = config["axis"]
        if not isinstance(axis, int) or not -rank < axis < rank or axis % rank == 0:
            raise SpecError(f"Concatenate: axis must be in 1..{rank - 1} or -{rank - 1}..-1 (0 is the batch), got {axis!r}")
        axis = axis % rank - 1
        out = list(inputs[0])
        for shape in inputs[1:]:
            if len(shape) != len(out) or any(a != b for i, (a, b) in enumerate(zip(shape, out)) if i != axis):
                raise SpecError(f"Concatenate: shapes {', '.join(map(str, inputs))} differ outside axis {config['axis']}")
            out[axis] = None if out[axis] is None or shape[axis] is None else out[axis] + shape[axis]
        return tuple(out)


def concat_axis(config: dict, rank: int) -> int:
    """The concatenation axis as a non-negative index into a batched tensor of ``rank``."""
    return config["axis"] % rank

