"""What only the TensorFlow adapter owns: the channels-first/channels-last bookkeeping, torch's
padding and BatchNorm semantics in Keras, the neutral weight layout, recurrent gate layouts,
hand-written optimizer rules, and the ONNX export. Each check compares with NumPy (or, for the
recurrent layers, with torch.nn directly), not with the torch adapter: tests/test_parity.py
does that."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from llmasos.layers import builtin, builtin_kinds
from llmasos.adapters import get_backend
from llmasos.errors import SpecError
from llmasos.optim import Optimizer
from llmasos.spec import ModelSpec

# Not importorskip: TensorFlow must be first imported by the adapter, which loads torch's triton
# before it (the two segfault the other way round).
if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("TensorFlow is not installed", allow_module_level=True)

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def tf_backend():
    return get_backend("tf")


def inputs_for(spec: ModelSpec, batch: int, length: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Random inputs; dynamic dimensions get ``length``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in spec.inputs:
        shape = (batch, *(length if d is None else d for d in i.shape))
        out.append(rng.integers(0, 20, shape) if i.dtype == "int64" else rng.standard_normal(shape).astype(np.float32))
    return out


def random_weights(spec: ModelSpec, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {layer: {name: (rng.uniform(0.5, 2.0, shape) if name == "moving_variance" else
                           rng.standard_normal(shape) * 0.3).astype(np.float32) for name, shape in ws.items()}
            for layer, ws in spec.weight_shapes().items()}


# -- every kind builds, with the spec's shapes --------------------------------------------------

def _images():
    spec = ModelSpec.sequential((3, 9, 8))
    spec.add("Conv2D", 4, kernel_size=3, stride=2, padding="same", dilation=2, activation="relu", name="conv")
    spec.add("BatchNorm").add("MaxPool2D", 3, stride=2, padding=1)
    spec.add("Conv2D", 4, kernel_size=(3, 2), padding=[1, 0], groups=2).add("AvgPool2D", 2, padding=1)
    spec.add("Dropout", 0.1).add("GlobalAvgPool2D").add("Dense", 5, activation="softmax")
    spec.add("Flatten", name="flat", inputs="conv").add("Reshape", [4, -1], name="reshaped")
    return spec.set_outputs(["dense", "reshaped"])


def _signal():
    spec = ModelSpec.sequential((4, 16))
    spec.add("Conv1D", 6, kernel_size=3, stride=2, padding="same", dilation=2)
    spec.add("Conv1D", 6, kernel_size=3, padding=1, groups=3, activation="silu").add("LayerNorm")
    return spec


def _sequence():
    spec = ModelSpec.sequential((None,), dtype="int64", name="ids")
    spec.add("Embedding", 8, vocab_size=20, name="emb").add("MultiHeadAttention", 2, causal=True, name="att")
    spec.add("Add", inputs=["emb", "att"]).add("LSTM", 6, return_sequences=True).add("GRU", 5)
    return spec


def _graph():
    spec = ModelSpec()
    spec.add_input("_query", (5, 8)).add_input("memory", (7, 6)).add_input("values", (7, 4))
    spec.add("MultiHeadAttention", 2, key_dim=3, name="cross", inputs=["_query", "memory"])
    spec.add("MultiHeadAttention", 4, name="three", inputs=["_query", "memory", "values"])
    spec.add("Concatenate", axis=1, name="cat", inputs=["cross", "three"])
    spec.add("Activation", "leaky_relu", name="act")
    return spec


def _text():
    """A decoder step after a cache of past keys, a padding-masked attention, first/last picks and
    a head tied to the token embedding."""
    spec = ModelSpec()
    spec.add_input("ids", (None,), "int64").add_input("keep", (None,)).add_input("past", (None, 8))
    spec.add("Embedding", 8, vocab_size=20, name="wte", inputs="ids")
    spec.add("PositionEmbedding", 32, name="wpe", inputs=["wte", "past"])
    spec.add("Dense", 8, name="k").add("Concatenate", axis=1, name="key", inputs=["past", "k"])
    spec.add("Attention", 2, causal=True, name="cached", inputs=["wpe", "key", "key"])
    spec.add("Attention", 4, name="masked", inputs=["cached", "cached", "cached", "keep"])
    spec.add("TakeToken", 0, name="first").add("TakeToken", -1, name="last", inputs="masked")
    spec.add("Embedding", tied_to="wte", name="tied", inputs="ids").add("Add", inputs=["masked", "tied"])
    spec.add("Unembedding", embedding="wte", use_bias=True, name="logits")
    return spec.set_outputs(["logits", "first", "last"])


def _waveform():
    spec = ModelSpec.sequential((20,))
    spec.add("Reshape", [1, -1]).add("Conv1D", 4, kernel_size=1).add("GroupNorm", 2).add("Permute", [2, 1])
    return spec.add("Cropping1D", [2, 3]).add("Rescaling", 0.5, offset=-1.0).add("L2Normalize")


SPECS = {"images": _images, "signal": _signal, "sequence": _sequence, "graph": _graph, "text": _text,
         "waveform": _waveform}


def test_specs_cover_every_layer_kind():
    used = {layer.kind for make in SPECS.values() for layer in make().layers}
    assert used == set(builtin_kinds())


@pytest.mark.parametrize("case", sorted(SPECS))
def test_every_node_has_the_spec_shape(tf_backend, case):
    spec = SPECS[case]()
    spec.set_outputs([layer.name for layer in spec.layers])  # every node comes out, channels first
    model = tf_backend.build(spec, seed=0)
    shapes = spec.shapes()
    for out, name in zip(model.predict(inputs_for(spec, batch=3, length=5)), spec.outputs):
        # a dynamic dimension is the inputs' length, or a sum of them after a Concatenate (a cache)
        assert out.shape[0] == 3 and len(out.shape) == 1 + len(shapes[name]), name
        assert all(o == d or (d is None and o % 5 == 0) for o, d in zip(out.shape[1:], shapes[name])), name


# -- layouts: channels first at every boundary, whatever runs inside ----------------------------

def test_layouts_follow_the_spec_around_a_conv(tf_backend):
    """A 1x1 identity conv hands its input on channels last; every consumer must still see the
    spec's channels-first tensor."""
    spec = ModelSpec.sequential((2, 3, 4), name="x")
    spec.add("Conv2D", 2, kernel_size=1, use_bias=False, name="conv")
    for kind, main, options in [("Add", None, {"inputs": ["conv", "x"]}),
                                ("Concatenate", None, {"inputs": ["conv", "x"], "axis": 1}),
                                ("Concatenate", None, {"inputs": ["x", "conv"], "axis": -1}),
                                ("Flatten", None, {"inputs": "conv"}),
                                ("Reshape", [4, 6], {"inputs": "conv"}),
                                ("Dense", 3, {"inputs": "conv", "use_bias": False}),
                                ("GlobalAvgPool2D", None, {"inputs": "conv"}),
                                ("LayerNorm", None, {"inputs": "conv"}),
                                ("Activation", "softmax", {"inputs": "conv"})]:
        spec.add(kind, main, name=f"{kind.lower()}_{len(spec.layers)}", **options)
    spec.set_outputs([layer.name for layer in spec.layers[1:]])
    model = tf_backend.build(spec, seed=0)
    dense = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    model.set_weights({"conv": {"kernel": np.eye(2, dtype=np.float32).reshape(1, 1, 2, 2)},
                       "dense_6": {"kernel": dense},
                       "layernorm_8": {"gamma": np.ones(4, np.float32), "beta": np.zeros(4, np.float32)}})
    x = inputs_for(spec, batch=2)[0]
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = [x + x, np.concatenate([x, x], 1), np.concatenate([x, x], -1), x.reshape(2, -1),
                x.reshape(2, 4, 6), x @ dense, x.mean((2, 3)), (x - mean) / np.sqrt(var + 1e-5),
                np.exp(x) / np.exp(x).sum(-1, keepdims=True)]
    for got, want, name in zip(model.predict([x]), expected, spec.outputs):
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("activation,slope,reference", [
    ("relu", None, lambda x: np.maximum(x, 0)),
    ("gelu", None, np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))),  # exact, not tanh
    ("gelu_tanh", None, lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    ("tanh", None, np.tanh),
    ("sigmoid", None, lambda x: 1 / (1 + np.exp(-x))),
    ("silu", None, lambda x: x / (1 + np.exp(-x))),
    ("leaky_relu", None, lambda x: np.where(x > 0, x, 0.01 * x)),  # the spec's default, not Keras' 0.2
    ("leaky_relu", 0.3, lambda x: np.where(x > 0, x, 0.3 * x)),
])
def test_activations(tf_backend, activation, slope, reference):
    spec = ModelSpec.sequential((3, 4)).add("Activation", activation, negative_slope=slope)
    x = inputs_for(spec, batch=2)[0] * 3
    np.testing.assert_allclose(tf_backend.build(spec).predict([x])[0], reference(x), rtol=1e-5, atol=1e-6)


def test_attention_masks_padding_and_aligns_causality_to_the_last_key(tf_backend):
    """Three queries after two cached keys: query i sees keys up to i + 2, never a masked one."""
    spec = ModelSpec().add_input("q", (3, 8)).add_input("k", (5, 8)).add_input("v", (5, 6)).add_input("keep", (5,))
    spec.add("Attention", 2, causal=True, inputs=["q", "k", "v", "keep"])
    q, k, v, _ = inputs_for(spec, batch=2)
    keep = np.array([[1, 0, 1, 1, 0], [1, 1, 1, 0, 1]], np.float32)
    allowed = (keep[:, None, :] != 0) & (np.arange(5)[None, :] <= np.arange(3)[:, None] + 2)
    heads = []
    for h in range(2):
        scores = q[..., 4 * h:4 * h + 4] @ k[..., 4 * h:4 * h + 4].transpose(0, 2, 1) / 2.0
        weights = np.exp(np.where(allowed, scores, -np.inf) - scores.max(-1, keepdims=True))
        heads.append(weights / weights.sum(-1, keepdims=True) @ v[..., 3 * h:3 * h + 3])
    got = tf_backend.build(spec).predict([q, k, v, keep])[0]
    np.testing.assert_allclose(got, np.concatenate(heads, -1), rtol=1e-5, atol=1e-6)


# -- padding: "same" as layers.same_padding, explicit as torch -----------------------------------

def conv_reference(x, kernel, stride, padding, dilation, groups):
    """Channels-first convolution in NumPy: kernel (*k, in / groups, out), padding per axis as
    (before, after)."""
    spatial = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0), *padding])
    k = kernel.shape[:spatial]
    effective = [(k[a] - 1) * dilation[a] + 1 for a in range(spatial)]
    sizes = [(x.shape[2 + a] - effective[a]) // stride[a] + 1 for a in range(spatial)]
    per_in, per_out = kernel.shape[-2], kernel.shape[-1] // groups
    out = np.zeros((x.shape[0], kernel.shape[-1], *sizes))
    for index in np.ndindex(*sizes):
        taps = tuple(slice(index[a] * stride[a], index[a] * stride[a] + effective[a], dilation[a])
                     for a in range(spatial))
        window = x[(slice(None), slice(None), *taps)]
        for g in range(groups):
            part = window[:, g * per_in:(g + 1) * per_in]
            w = kernel[..., g * per_out:(g + 1) * per_out]
            out[(slice(None), slice(g * per_out, (g + 1) * per_out), *index)] = \
                np.tensordot(part, np.moveaxis(w, -2, 0), axes=(list(range(1, spatial + 2)), list(range(spatial + 1))))
    return out


@pytest.mark.parametrize("kind,shape,options", [
    ("Conv2D", (4, 9, 8), {"kernel_size": 3, "stride": 2, "padding": "same"}),
    ("Conv2D", (4, 9, 8), {"kernel_size": 3, "stride": 2, "padding": "same", "dilation": 2, "groups": 2}),
    ("Conv2D", (4, 9, 8), {"kernel_size": (3, 2), "stride": (1, 2), "padding": [2, 1], "dilation": (2, 1)}),
    ("Conv2D", (4, 7, 7), {"kernel_size": 4, "stride": 3, "padding": "same", "groups": 4}),
    ("Conv1D", (4, 11), {"kernel_size": 3, "stride": 2, "padding": "same", "dilation": 2}),
    ("Conv1D", (4, 11), {"kernel_size": 4, "padding": 3, "groups": 2}),
])
def test_conv_padding_stride_dilation_groups(tf_backend, kind, shape, options):
    spec = ModelSpec.sequential(shape).add(kind, 4, **options)
    model = tf_backend.build(spec, seed=0)
    config = spec.layers[0].config
    x = inputs_for(spec, batch=2)[0]
    if config["padding"] == "same":
        padding = [builtin.same_padding(x.shape[2 + a], k, s, d) for a, (k, s, d) in
                   enumerate(zip(config["kernel_size"], config["stride"], config["dilation"]))]
    else:
        padding = [(p, p) for p in config["padding"]]
    w = model.get_weights()[spec.layers[0].name]
    want = conv_reference(x, w["kernel"], config["stride"], padding, config["dilation"], config["groups"])
    want += w["bias"].reshape(-1, *[1] * (len(shape) - 1))
    np.testing.assert_allclose(model.predict([x])[0], want, atol=1e-5)


def pool_reference(x, size, stride, padding, fill, reduce):
    x = np.pad(x, [(0, 0), (0, 0), *padding], constant_values=fill)
    rows = (x.shape[2] - size[0]) // stride[0] + 1
    cols = (x.shape[3] - size[1]) // stride[1] + 1
    return np.stack([np.stack([reduce(x[:, :, r * stride[0]:r * stride[0] + size[0],
                                       c * stride[1]:c * stride[1] + size[1]], axis=(2, 3))
                               for c in range(cols)], -1) for r in range(rows)], -2)


@pytest.mark.parametrize("kind,options,padding,fill,reduce", [
    ("MaxPool2D", {"pool_size": 3, "stride": 2, "padding": 1}, [(1, 1), (1, 1)], -np.inf, np.max),
    ("MaxPool2D", {"pool_size": 2, "stride": 2, "padding": "same"}, [(0, 1), (0, 0)], -np.inf, np.max),
    ("MaxPool2D", {"pool_size": (3, 2), "stride": 1}, [(0, 0), (0, 0)], -np.inf, np.max),
    ("AvgPool2D", {"pool_size": 3, "stride": 2, "padding": 1}, [(1, 1), (1, 1)], 0.0, np.mean),  # zeros count
])
def test_pool_padding(tf_backend, kind, options, padding, fill, reduce):
    spec = ModelSpec.sequential((2, 7, 6)).add(kind, **options)
    x = -np.abs(inputs_for(spec, batch=2)[0]) - 1  # all negative: a zero-padded max pool would show 0
    config = spec.layers[0].config
    want = pool_reference(x, config["pool_size"], config["stride"], padding, fill, reduce)
    np.testing.assert_allclose(tf_backend.build(spec).predict([x])[0], want, atol=1e-6)


# -- weights --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(SPECS))
def test_weight_round_trip_is_exact(tf_backend, case):
    spec = SPECS[case]()
    model = tf_backend.build(spec, seed=0)
    weights = random_weights(spec)
    model.set_weights(weights)
    got = model.get_weights()
    assert {k: set(v) for k, v in got.items()} == {k: set(v) for k, v in weights.items()}
    for layer, ws in weights.items():
        for name, value in ws.items():
            assert got[layer][name].dtype == np.float32
            np.testing.assert_array_equal(got[layer][name], value, err_msg=f"{layer}/{name}")


def test_set_weights_names_what_does_not_fit(tf_backend):
    spec = ModelSpec.sequential((4,)).add("Dense", 3)
    model = tf_backend.build(spec)
    with pytest.raises(SpecError, match=r"dense/kernel has shape \(3, 4\), the model needs \(4, 3\)"):
        model.set_weights({"dense": {"kernel": np.zeros((3, 4)), "bias": np.zeros(3)}})
    with pytest.raises(SpecError, match="missing dense/bias"):
        model.set_weights({"dense": {"kernel": np.zeros((4, 3))}})


def test_build_seed_repeats_keras_initialisation(tf_backend):
    spec = _images()
    a, b = (tf_backend.build(spec, seed=5).get_weights() for _ in range(2))
    c = tf_backend.build(spec, seed=6).get_weights()
    np.testing.assert_array_equal(a["conv"]["kernel"], b["conv"]["kernel"])
    assert not np.array_equal(a["conv"]["kernel"], c["conv"]["kernel"])


# -- BatchNorm: torch's statistics -------------------------------------------------------------

@pytest.mark.parametrize("shape,axes", [((3, 4, 5), (0, 2, 3)), ((6,), (0,))])
def test_batchnorm_running_stats_use_unbiased_variance(tf_backend, shape, axes):
    spec = ModelSpec.sequential(shape).add("BatchNorm", momentum=0.3, eps=1e-3)
    model = tf_backend.build(spec)
    x = inputs_for(spec, batch=4)[0] * 2 + 1
    trainer = model.trainer(Optimizer("SGD", lr=0.1), "mse")
    trainer.train_step([x], np.zeros_like(x), lr=0.1)
    stats = model.get_weights()["batch_norm"]
    np.testing.assert_allclose(stats["moving_mean"], 0.3 * x.mean(axes), atol=1e-6)
    np.testing.assert_allclose(stats["moving_variance"], 0.7 + 0.3 * x.var(axes, ddof=1), atol=1e-5)


def test_batchnorm_normalises_with_biased_variance_in_training(tf_backend):
    spec = ModelSpec.sequential((3, 4, 5)).add("BatchNorm", eps=1e-3)
    model = tf_backend.build(spec)
    x = inputs_for(spec, batch=4)[0]
    got = model.native({"input": x}, training=True)["batch_norm"].numpy()
    mean, var = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(var + 1e-3), atol=1e-5)


def test_frozen_layers_keep_weights_and_statistics(tf_backend):
    spec = ModelSpec.sequential((6,)).add("Dense", 4, name="a").add("BatchNorm", name="bn").add("Dense", 2, name="b")
    model = tf_backend.build(spec, seed=0)
    trainer = model.trainer(Optimizer("SGD", lr=0.1), "mse")
    x, y = inputs_for(spec, batch=8)[0], np.ones((8, 2), np.float32)
    trainer.train_step([x], y, lr=0.1)  # traced before freezing: the trainer must notice
    before = model.get_weights()
    model.set_trainable({"a", "bn"}, False)
    trainer.train_step([x], y, lr=0.1)
    after = model.get_weights()
    for layer in ("a", "bn"):
        for name, value in before[layer].items():
            np.testing.assert_array_equal(after[layer][name], value, err_msg=f"{layer}/{name}")
    assert not np.array_equal(after["b"]["kernel"], before["b"]["kernel"])


# -- recurrent layers against torch.nn ------------------------------------------------------------

def _torch_gru_order(a, axis=0):
    z, r, n = np.split(a, 3, axis=axis)  # neutral (Keras) z, r, n -> torch r, z, n
    return np.concatenate([r, z, n], axis=axis)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_recurrent_matches_torch_nn(tf_backend, kind, return_sequences):
    torch = pytest.importorskip("torch")
    spec = ModelSpec.sequential((7, 5)).add(kind, 6, return_sequences=return_sequences, name="rnn")
    model = tf_backend.build(spec, seed=0)
    w = random_weights(spec)["rnn"]
    model.set_weights({"rnn": w})
    rnn = (torch.nn.LSTM if kind == "LSTM" else torch.nn.GRU)(5, 6, batch_first=True)
    if kind == "LSTM":  # i, f, c(g), o in both; torch splits the one bias in two
        params = {"weight_ih_l0": w["kernel"].T, "weight_hh_l0": w["recurrent_kernel"].T,
                  "bias_ih_l0": w["bias"], "bias_hh_l0": np.zeros_like(w["bias"])}
    else:
        params = {"weight_ih_l0": _torch_gru_order(w["kernel"].T),
                  "weight_hh_l0": _torch_gru_order(w["recurrent_kernel"].T),
                  "bias_ih_l0": _torch_gru_order(w["bias"][0]), "bias_hh_l0": _torch_gru_order(w["bias"][1])}
    with torch.no_grad():
        for name, value in params.items():
            getattr(rnn, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
        x = inputs_for(spec, batch=3)[0]
        want = rnn(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(model.predict([x])[0], want if return_sequences else want[:, -1], atol=1e-5)


# -- optimizers: optim.py's rules, step by step, against NumPy -----------------------------------

def numpy_step(optimizer: Optimizer, params: dict, grads: dict, slots: dict, lr: float, step: int) -> None:
    """One step of llmasos.optim's documented (torch) rules, in float64, in place."""
    o, kind = optimizer.options, optimizer.kind
    for name in params:
        p, g = params[name], grads[name]
        if kind == "adamw":
            p = p * (1 - lr * o["weight_decay"])
        elif o["weight_decay"]:
            g = g + o["weight_decay"] * p
        if kind == "sgd":
            if o["momentum"]:
                buf = slots["momentum"][name] = (
                    g if step == 1 else o["momentum"] * slots["momentum"][name] + g)
                g = g + o["momentum"] * buf if o["nesterov"] else buf
            p = p - lr * g
        elif kind in ("adam", "adamw"):
            (b1, b2), eps = o["betas"], o["eps"]
            m = slots["m"][name] = b1 * slots["m"][name] + (1 - b1) * g
            v = slots["v"][name] = b2 * slots["v"][name] + (1 - b2) * g * g
            p = p - lr / (1 - b1 ** step) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** step) + eps)
        else:
            v = slots["v"][name] = o["alpha"] * slots["v"][name] + (1 - o["alpha"]) * g * g
            avg = np.sqrt(v) + o["eps"]
            if o["momentum"]:
                buf = slots["momentum"][name] = o["momentum"] * slots["momentum"][name] + g / avg
                p = p - lr * buf
            else:
                p = p - lr * g / avg
        params[name] = p


OPTIMIZERS = {
    "sgd": lambda: Optimizer("SGD", lr=0.1),
    "sgd-momentum-nesterov-l2": lambda: Optimizer("SGD", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05),
    # a large eps, so putting it in the wrong place (inside the square root, Keras-style) shows
    "adam-l2": lambda: Optimizer("Adam", lr=0.01, weight_decay=0.1, eps=1e-2),
    "adamw": lambda: Optimizer("AdamW", lr=0.01, betas=(0.8, 0.99), weight_decay=0.2),
    "rmsprop": lambda: Optimizer("RMSprop", lr=0.01),
    "rmsprop-momentum-l2": lambda: Optimizer("RMSprop", lr=0.01, alpha=0.9, eps=1e-2, momentum=0.5, weight_decay=0.1),
}


@pytest.mark.parametrize("case", sorted(OPTIMIZERS))
def test_optimizer_steps_follow_optim_rules(tf_backend, case):
    """A linear layer under MSE has a closed-form gradient; two steps at different rates must
    give NumPy's parameters and slots."""
    optimizer = OPTIMIZERS[case]()
    spec = ModelSpec.sequential((5,)).add("Dense", 3)
    model = tf_backend.build(spec, seed=0)
    trainer = model.trainer(optimizer, "mse")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 5)).astype(np.float32), rng.standard_normal((8, 3)).astype(np.float32)
    params = {k: v.astype(np.float64) for k, v in model.get_weights()["dense"].items()}
    used = [slot for slot in optimizer.slots if slot != "momentum" or optimizer.options["momentum"]]
    slots = {slot: {k: np.zeros_like(v) for k, v in params.items()} for slot in used}
    for step, lr in enumerate((0.05, 0.02), start=1):
        error = x @ params["kernel"] + params["bias"] - y
        loss_sum, _ = trainer.train_step([x], y, lr)
        assert loss_sum == pytest.approx(np.mean(error ** 2) * len(x), rel=1e-5)
        grad_out = 2 * error / error.size
        numpy_step(optimizer, params, {"kernel": x.T @ grad_out, "bias": grad_out.sum(0)}, slots, lr, step)
        for name, value in model.get_weights()["dense"].items():
            np.testing.assert_allclose(value, params[name], rtol=1e-5, atol=1e-6, err_msg=f"step {step} {name}")
    state = trainer.get_state()
    assert state["step"] == 2
    assert set(state["slots"]) == set(slots)
    for slot, values in slots.items():
        for name, value in values.items():
            np.testing.assert_allclose(state["slots"][slot]["dense"][name], value, rtol=1e-4, atol=1e-7)


def test_optimizer_state_resumes_exactly(tf_backend):
    """get_state/set_state in the neutral layout (MultiHeadAttention's kernels are reshaped)."""
    spec = ModelSpec.sequential((4, 6)).add("MultiHeadAttention", 2).add("Flatten")
    spec.add("Dense", 3, activation="softmax")
    x, y = inputs_for(spec, batch=6)[0], np.arange(6) % 3
    first = tf_backend.build(spec, seed=0)
    trainer = first.trainer(Optimizer("Adam", lr=0.01), "cross_entropy")
    for _ in range(2):
        trainer.train_step([x], y, 0.01)
    state = trainer.get_state()
    assert state["slots"]["m"]["multi_head_attention"]["query_kernel"].shape == (6, 6)
    second = tf_backend.build(spec, seed=1)
    second.set_weights(first.get_weights())
    resumed = second.trainer(Optimizer("Adam", lr=0.01), "cross_entropy")
    resumed.set_state(state)
    (loss, out), (resumed_loss, resumed_out) = trainer.train_step([x], y, 0.01), resumed.train_step([x], y, 0.01)
    assert loss == resumed_loss
    np.testing.assert_array_equal(out, resumed_out)
    for layer, ws in first.get_weights().items():
        for name, value in ws.items():
            np.testing.assert_array_equal(second.get_weights()[layer][name], value)


@pytest.mark.parametrize("last", ["fused", "layer"])
def test_softmax_output_trains_on_logits(tf_backend, last):
    """Cross-entropy is computed once from logits; softmax applied twice would give another loss."""
    spec = ModelSpec.sequential((4,))
    if last == "fused":
        spec.add("Dense", 3, activation="softmax")
    else:
        spec.add("Dense", 3).add("Activation", "softmax")
    model = tf_backend.build(spec, seed=0)
    x, y = inputs_for(spec, batch=5)[0], np.array([0, 1, 2, 1, 0])
    probabilities = model.predict([x])[0]
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-6)
    loss_sum, logits = model.trainer(Optimizer("SGD", lr=0.1), "cross_entropy").eval_step([x], y)
    assert loss_sum == pytest.approx(-np.log(probabilities[np.arange(5), y]).sum(), rel=1e-5)
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probabilities, atol=1e-6)


def test_dropout_is_seeded_and_off_in_predict(tf_backend):
    spec = ModelSpec.sequential((10,)).add("Dense", 16).add("Dropout", 0.5).add("Dense", 2, activation="softmax")
    x, y = inputs_for(spec, batch=8)[0], np.arange(8) % 2

    def losses(seed):
        trainer = tf_backend.build(spec, seed=0).trainer(Optimizer("SGD", lr=0.1), "cross_entropy", seed=seed)
        return [trainer.train_step([x], y, 0.1)[0] for _ in range(3)]

    assert losses(1) == losses(1)
    assert losses(1) != losses(2)
    model = tf_backend.build(spec, seed=0)
    np.testing.assert_array_equal(model.predict([x])[0], model.predict([x])[0])


# -- ONNX export ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["images", "sequence", "graph", "text"])
def test_onnx_export_matches_predict(tf_backend, case, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    spec = SPECS[case]()
    model = tf_backend.build(spec, seed=0)
    model.set_weights(random_weights(spec))
    path = tmp_path / "model.onnx"
    notes = tf_backend.export_onnx(model, str(path))
    assert notes["opset"] == 17 and "tf2onnx" in notes["exporter"]
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # one file, no external data
    proto = onnx.load(str(path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i.name for i in spec.inputs]
    assert sorted(o.name for o in session.get_outputs()) == sorted(spec.outputs)
    for i, spec_input in zip(session.get_inputs(), spec.inputs):
        assert i.shape == ["batch", *(f"{spec_input.name}_dim{a}" if d is None else d
                                      for a, d in enumerate(spec_input.shape, start=1))]  # channels first
    for batch, length in ((2, 5), (3, 8)):
        inputs = inputs_for(spec, batch, length, seed=batch)
        got = session.run(list(spec.outputs), {i.name: x for i, x in zip(spec.inputs, inputs)})
        for a, b, name in zip(got, model.predict(inputs), spec.outputs):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)
