"""torch modules for the spec's layer kinds, where torch's own need a wrapper to get the
neutral semantics (TensorFlow's "same" padding, -inf max-pool padding, one LSTM bias, ...)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import builtin, custom
from .ops import OPS, activate


def _exporting() -> bool:
    """True while torch.onnx traces the model (the dynamo exporter, or the TorchScript one)."""
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


class Layer(nn.Module):
    """A spec layer: ``forward(*inputs)`` returns the pre-activation value; :meth:`finish` applies
    the fused activation, so the graph can leave it out when training on logits."""

    frozen = False

    def __init__(self, config: dict, shapes: list[tuple]) -> None:
        super().__init__()
        self.activation = config.get("activation", "linear")
        self.negative_slope = config.get("negative_slope")

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return activate(x, self.activation, self.negative_slope)


class Dense(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.linear = nn.Linear(shapes[0][-1], config["units"], bias=config["use_bias"])

    def forward(self, x):
        return self.linear(x)


class Conv(Layer):
    """Conv1D/Conv2D. "same" pads like TensorFlow (extra pixel after), which torch's own
    ``padding="same"`` cannot do for stride > 1."""

    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        spatial = len(config["kernel_size"])
        padding = config["padding"]
        self.same = padding == "same"
        explicit = 0 if isinstance(padding, str) else tuple(padding)
        conv = nn.Conv1d if spatial == 1 else nn.Conv2d
        self.conv = conv(shapes[0][0], config["filters"], tuple(config["kernel_size"]), tuple(config["stride"]),
                         explicit, tuple(config["dilation"]), config["groups"], bias=config["use_bias"])

    def forward(self, x):
        if self.same:
            x = F.pad(x, _same_pads(x, self.conv.kernel_size, self.conv.stride, self.conv.dilation))
        return self.conv(x)


def _same_pads(x: torch.Tensor, kernel, stride, dilation=None) -> list[int]:
    """F.pad's argument (last axis first) for TensorFlow's "same"."""
    dilation = dilation or (1,) * len(kernel)
    pads: list[int] = []
    for axis in reversed(range(len(kernel))):
        pads += builtin.same_padding(x.shape[2 + axis], kernel[axis], stride[axis], dilation[axis])
    return pads


class MaxPool2D(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.same = config["padding"] == "same"
        padding = 0 if isinstance(config["padding"], str) else tuple(config["padding"])
        self.kernel, self.stride = tuple(config["pool_size"]), tuple(config["stride"])
        self.pool = nn.MaxPool2d(self.kernel, self.stride, padding)

    def forward(self, x):
        if self.same:
            x = F.pad(x, _same_pads(x, self.kernel, self.stride), value=-math.inf)
        return self.pool(x)


class AvgPool2D(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        padding = 0 if isinstance(config["padding"], str) else tuple(config["padding"])
        self.pool = nn.AvgPool2d(tuple(config["pool_size"]), tuple(config["stride"]), padding, count_include_pad=True)

    def forward(self, x):
        return self.pool(x)


class GlobalAvgPool2D(Layer):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class Flatten(Layer):
    def forward(self, x):
        return x.flatten(1)


class Reshape(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.target = tuple(config["target_shape"])

    def forward(self, x):
        return x.reshape(x.shape[0], *self.target)


class Permute(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.dims = (0, *config["dims"])

    def forward(self, x):
        return x.permute(self.dims)


class Cropping1D(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.start, self.end = config["cropping"]

    def forward(self, x):
        return x[:, self.start:x.shape[1] - self.end]


class Rescaling(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.scale, self.offset = config["scale"], config["offset"]

    def forward(self, x):
        return x * self.scale + self.offset


class Dropout(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.dropout = nn.Dropout(config["rate"])

    def forward(self, x):
        return self.dropout(x)


class BatchNorm(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        norm = nn.BatchNorm2d if len(shapes[0]) == 3 else nn.BatchNorm1d
        self.bn = norm(shapes[0][0], eps=config["eps"], momentum=config["momentum"])

    def forward(self, x):
        return self.bn(x)


class LayerNorm(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.norm = nn.LayerNorm(shapes[0][-1], eps=config["eps"])

    def forward(self, x):
        return self.norm(x)


class GroupNorm(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.norm = nn.GroupNorm(config["groups"], shapes[0][0], eps=config["eps"])

    def forward(self, x):
        return self.norm(x)


class Embedding(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        if config["tied_to"] is None:
            self.embedding = nn.Embedding(config["vocab_size"], config["dim"])

    def share(self, source: "Embedding") -> None:
        # the source module itself, outside this one's parameters (see Unembedding.share)
        self.lookup = lambda ids: source.embedding(ids)

    def forward(self, x):
        return self.embedding(x) if "embedding" in self._modules else self.lookup(x)


class Recurrent(Layer):
    """LSTM/GRU, batch first. The LSTM's recurrent bias stays at zero and frozen: the neutral
    layout (like Keras) has one bias, and the sum of torch's two is all that matters."""

    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        rnn = nn.LSTM if self.kind == "LSTM" else nn.GRU
        self.rnn = rnn(shapes[0][-1], config["units"], batch_first=True)
        self.return_sequences = config["return_sequences"]
        if self.kind == "LSTM":
            with torch.no_grad():
                self.rnn.bias_hh_l0.zero_()
            self.rnn.bias_hh_l0.requires_grad_(False)

    def forward(self, x):
        out, _ = self.rnn(x)
        return out if self.return_sequences else out[:, -1]


class LSTM(Recurrent):
    kind = "LSTM"


class GRU(Recurrent):
    kind = "GRU"


class MultiHeadAttention(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.heads = config["num_heads"]
        self.key_dim = builtin.MultiHeadAttention.key_dim(config, shapes)
        inner = self.heads * self.key_dim
        key_shape = shapes[1] if len(shapes) == 3 else shapes[-1]
        self.query = nn.Linear(shapes[0][-1], inner)
        self.key = nn.Linear(key_shape[-1], inner)
        self.value = nn.Linear(shapes[-1][-1], inner)
        self.output = nn.Linear(inner, shapes[0][-1])
        self.causal = config["causal"]
        self.dropout = config["dropout"]

    def _heads(self, x):
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.key_dim).transpose(1, 2)

    def forward(self, query, *rest):
        key = rest[0] if rest else query
        value = rest[-1] if rest else query
        q, k, v = self._heads(self.query(query)), self._heads(self.key(key)), self._heads(self.value(value))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                             is_causal=self.causal)
        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], self.heads * self.key_dim)
        return self.output(out)


class Attention(Layer):
    """Scaled dot-product attention on projected (batch, L, heads * d) tensors. Masks are additive
    with the float32 minimum rather than boolean, so a query that may see no key averages the
    values (as in the TF adapter) instead of giving NaN.

    While exported to ONNX, attention without a causal mask is written out op by op in the form
    ONNX Runtime's transformer optimizer fuses into one ``Attention`` op (as it does Hugging
    Face's BERT exports): torch's ``scaled_dot_product_attention`` decomposes into a graph it
    does not recognise, with extra scalings and transposes."""

    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.heads, self.causal, self.dropout = config["num_heads"], config["causal"], config["dropout"]

    def _heads(self, x):
        return x.reshape(x.shape[0], x.shape[1], self.heads, x.shape[2] // self.heads).transpose(1, 2)

    def forward(self, query, key, value, mask=None):
        if not self.causal and _exporting():
            return self._written_out(query, key, value, mask)
        allowed = None if mask is None else (mask != 0)[:, None, None, :]
        if self.causal:
            q_len, k_len = query.shape[1], key.shape[1]
            # query i sits at position k_len - q_len + i: after any cached keys
            positions = torch.arange(q_len, device=query.device)[:, None] + (k_len - q_len)
            visible = torch.arange(k_len, device=query.device) <= positions
            allowed = visible if allowed is None else allowed & visible
        bias = None if allowed is None else torch.where(allowed, 0.0, torch.finfo(query.dtype).min)
        out = F.scaled_dot_product_attention(self._heads(query), self._heads(key), self._heads(value), attn_mask=bias,
                                             dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(query.shape[0], query.shape[1], value.shape[2])

    def _written_out(self, query, key, value, mask):
        """The same numbers as :meth:`forward` in inference, as ONNX Runtime's BERT attention
        fusion expects them: softmax(q k^T / sqrt(d) + (1 - allowed) * min) v, with k reshaped
        straight to (batch, heads, d, L) and the mask a (batch, L) tensor unsqueezed twice."""
        depth = key.shape[2] // self.heads
        keys = key.reshape(key.shape[0], key.shape[1], self.heads, depth).permute(0, 2, 3, 1)
        scores = torch.matmul(self._heads(query), keys) / math.sqrt(depth)
        if mask is not None:
            allowed = (mask != 0)[:, None, None, :].to(scores.dtype)
            scores = scores + (1.0 - allowed) * torch.finfo(scores.dtype).min
        out = torch.matmul(F.softmax(scores, dim=-1), self._heads(value))
        return out.transpose(1, 2).reshape(query.shape[0], query.shape[1], value.shape[2])


class PositionEmbedding(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.embedding = nn.Embedding(config["max_length"], shapes[0][-1])

    def forward(self, x, past=None):
        # a gather of arange, not a slice: exporters then need no bound on the sequence length
        start = 0 if past is None else past.shape[1]
        return x + self.embedding(torch.arange(start, start + x.shape[1], device=x.device))


class TakeToken(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.index = config["index"]

    def forward(self, x):
        return x[:, self.index]


class Unembedding(Layer):
    """``x @ E^T`` with the table of the Embedding module given by :meth:`share`."""

    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.bias = nn.Parameter(torch.zeros(config["vocab_size"])) if config["use_bias"] else None

    def share(self, source: Embedding) -> None:
        # a callable, not a submodule: the matrix stays the Embedding's alone (one parameter, one
        # state-dict entry) and freezing this layer does not freeze it
        self.matrix = lambda: source.embedding.weight

    def forward(self, x):
        return F.linear(x, self.matrix(), self.bias)


class L2Normalize(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.eps = config["eps"]

    def forward(self, x):
        return F.normalize(x, p=2.0, dim=-1, eps=self.eps)


class Activation(Layer):
    def forward(self, x):
        return x


class Add(Layer):
    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concatenate(Layer):
    def __init__(self, config, shapes):
        super().__init__(config, shapes)
        self.axis = builtin.concat_axis(config, len(shapes[0]) + 1)

    def forward(self, *xs):
        return torch.cat(xs, dim=self.axis)


class Custom(Layer):
    """A user's :class:`llmasos.layers.Layer`: its weights are parameters in the neutral layout
    (``params``), its call runs with the torch op set. It applies no fused activation."""

    def __init__(self, kind: type[custom.CustomKind], config: dict, shapes: list[tuple], initial: dict) -> None:
        super().__init__({}, shapes)
        self.layer = kind.instance(config)
        self.params = nn.ParameterDict({name: nn.Parameter(torch.from_numpy(value)) for name, value in initial.items()})

    def forward(self, *xs):
        # the ParameterDict's own table: iterating the dict goes through Module.__getattr__ per key,
        # several microseconds a call, while this always holds the current parameters
        return self.layer.call(OPS, *xs, **self.params._parameters)


MODULES: dict[str, type[Layer]] = {
    "Dense": Dense, "Conv1D": Conv, "Conv2D": Conv, "MaxPool2D": MaxPool2D, "AvgPool2D": AvgPool2D,
    "GlobalAvgPool2D": GlobalAvgPool2D, "Flatten": Flatten, "Reshape": Reshape, "Permute": Permute,
    "Cropping1D": Cropping1D, "Rescaling": Rescaling, "GroupNorm": GroupNorm, "Dropout": Dropout,
    "BatchNorm": BatchNorm, "LayerNorm": LayerNorm, "Embedding": Embedding, "LSTM": LSTM, "GRU": GRU,
    "MultiHeadAttention": MultiHeadAttention, "Activation": Activation, "Add": Add, "Concatenate": Concatenate,
    "Attention": Attention, "PositionEmbedding": PositionEmbedding, "TakeToken": TakeToken, "Unembedding": Unembedding,
    "L2Normalize": L2Normalize,
}


def make_module(name: str, kind: str, config: dict, shapes: list[tuple], seed: int | None = None) -> Layer:
    """The module of spec layer ``name``; a custom layer starts from the neutral initial weights
    that ``seed`` gives in every framework, and its call is tried once on shapes alone (the meta
    device) so a call that disagrees with its declared shapes fails here, naming the layer."""
    user_kind = custom.custom_kind(kind)
    if user_kind is None:
        return MODULES[kind](config, shapes)
    initial = user_kind.initial_weights(config, shapes, name, seed)
    module = Custom(user_kind, config, shapes, initial)
    probe = custom.probe_inputs(user_kind, config, shapes)
    weights = {key: torch.empty(value.shape, device="meta") for key, value in initial.items()}
    try:
        out = module.layer.call(OPS, *(torch.empty(s, device="meta") for s in probe), **weights)
    except Exception as err:  # noqa: BLE001 - user code may raise anything: name the layer
        raise custom.call_failed(name, kind, probe, {k: v.shape for k, v in weights.items()}, err) from err
    custom.check_output(name, kind, user_kind.output_shape(config, [p[1:] for p in probe]), tuple(out.shape))
    return module

