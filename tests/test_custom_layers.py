"""Custom layers (``@layers.register`` + ``layers.Layer`` written with the neutral ``ops``): the same
numbers in torch and TensorFlow, training included; ``.h5`` files that name the layer and its
arguments; ONNX files that ONNX Runtime runs; built-in layers rewritten with the op set equal to
the native ones; and a clear error for every misuse."""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import onnxruntime as ort
import pytest

from llmasos import Dataset, Model, Optimizer, export, layers
from llmasos.errors import ModelFileError, SpecError, UnknownLayerError
from llmasos.ops import OP_NAMES
from llmasos.spec import ModelSpec

from .conftest import FRAMEWORKS, framework_params


class GLU(layers.Layer):
    def __init__(self, units):
        self.units = units

    def output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def weight_shapes(self, input_shape):
        return {"kernel": (input_shape[-1], 2 * self.units), "bias": (2 * self.units,)}

    def call(self, ops, x, kernel, bias):
        a, b = ops.split(ops.matmul(x, kernel) + bias, 2, axis=-1)
        return a * ops.sigmoid(b)


class OpsDense(layers.Layer):
    """The built-in Dense, written with the op set (its options and weights, by the same names)."""

    def __init__(self, units, activation="linear"):
        self.units, self.activation = units, activation

    def output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def weight_shapes(self, input_shape):
        return {"kernel": (input_shape[-1], self.units), "bias": (self.units,)}

    def call(self, ops, x, kernel, bias):
        y = ops.add(ops.matmul(x, kernel), bias)
        return {"linear": lambda v: v, "relu": ops.relu, "tanh": ops.tanh, "sigmoid": ops.sigmoid,
                "gelu": ops.gelu, "softmax": ops.softmax}[self.activation](y)


class OpsLayerNorm(layers.Layer):
    """The built-in LayerNorm (biased variance over the last axis), written with the op set."""

    initializers = {"gamma": "ones", "beta": "zeros"}

    def __init__(self, eps=1e-5):
        self.eps = eps

    def output_shape(self, input_shape):
        return input_shape

    def weight_shapes(self, input_shape):
        return {"gamma": (input_shape[-1],), "beta": (input_shape[-1],)}

    def call(self, ops, x, gamma, beta):
        centred = ops.sub(x, ops.mean(x, axis=-1, keepdims=True))
        variance = ops.mean(ops.mul(centred, centred), axis=-1, keepdims=True)
        return ops.add(ops.mul(ops.div(centred, ops.sqrt(ops.add(variance, self.eps))), gamma), beta)


class OpsAttention(layers.Layer):
    """The built-in Attention (heads split from the feature axis, an optional 0/1 key mask), with
    the op set: reshape with kept sizes, transpose, matmul, where, softmax."""

    num_inputs = (3, 4)

    def __init__(self, num_heads):
        self.num_heads = num_heads

    def output_shape(self, input_shape):
        query, _, value = input_shape[:3]
        return (query[0], value[1])

    def _heads(self, ops, x):
        return ops.transpose(ops.reshape(x, (0, 0, self.num_heads, -1)), (0, 2, 1, 3))

    def call(self, ops, query, key, value, mask=None):
        depth = query.shape[-1] // self.num_heads
        scores = ops.matmul(self._heads(ops, query), ops.transpose(self._heads(ops, key), (0, 1, 3, 2)))
        scores = ops.mul(scores, 1.0 / depth ** 0.5)
        if mask is not None:
            keep = ops.reshape(mask, (0, 1, 1, -1)) != 0
            scores = ops.where(keep, scores, ops.minimum(ops.mul(scores, 0.0), -3.4028234663852886e38))
        out = ops.matmul(ops.softmax(scores, axis=-1), self._heads(ops, value))
        return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (0, 0, -1))


class Everything(layers.Layer):
    """Uses every op of the set once, so one model checks them all in each framework and in ONNX."""

    def __init__(self, units=6):
        self.units = units

    def output_shape(self, input_shape):
        return (4 * self.units + 1,)

    def weight_shapes(self, input_shape):
        return {"kernel": (input_shape[-1], self.units), "table": (5, self.units)}

    def call(self, ops, x, kernel, table):
        h = ops.matmul(x, kernel)                                       # (B, L, U)
        positive = ops.add(ops.abs(h), 0.5)
        a = ops.sub(ops.log(positive), ops.sqrt(positive))
        b = ops.div(ops.exp(ops.tanh(h)), ops.pow(positive, 1.5))
        c = ops.maximum(ops.relu(h), ops.minimum(ops.sigmoid(h), ops.gelu(h)))
        # the tanh GELU of another tensor than the erf one: tf2onnx 1.17 merges their common "0.5 * h"
        # and its GELU rewriter then drops the merged node (ONNX Runtime refuses the file)
        d = ops.where(h > 0, ops.softmax(h, axis=-1), ops.gelu(a, approximate=True))
        ids = ops.gather(table, [0, 3, 1, 4])                           # (4, U): an embedding lookup
        e = ops.mul(ops.mean(ids, axis=0), ops.max(h, axis=1, keepdims=True))
        joined = ops.concat([a, b, c, ops.add(d, e)], axis=-1)          # (B, L, 4U)
        first, rest = ops.split(joined, [1, 4 * self.units - 1], axis=-1)
        total = ops.sum(ops.reshape(first, (0, -1)), axis=1, keepdims=True)
        flipped = ops.transpose(ops.concat([rest, first], axis=-1), (0, 2, 1))   # (B, 4U, L)
        pooled = ops.mean(flipped, axis=-1)                                      # (B, 4U)
        return ops.concat([pooled, ops.mul(total, 0.1)], axis=-1)


TEST_LAYERS = {"GLU": GLU, "OpsDense": OpsDense, "OpsLayerNorm": OpsLayerNorm, "OpsAttention": OpsAttention,
               "Everything": Everything}


@pytest.fixture(autouse=True)
def registered():
    """The test layers are registered while a test runs, and only then (the catalog stays as other
    test modules expect it)."""
    before = set(layers.known_kinds())   # the zoo's own kinds (ViT's ClassToken) stay registered
    for name, cls in TEST_LAYERS.items():
        layers.register(name)(cls)
    yield
    for name in set(layers.known_kinds()) - before:
        layers.unregister(name)


def _glu_model(framework, seed=0):
    model = Model(input_dim=64, output_dim=10, framework=framework)
    model.add_layer("GLU", 24).add_layer("Dense", 10, activation="softmax")
    return model.build(seed=seed)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- the same numbers in both frameworks ---------------------------------------------------------

@pytest.mark.torch
@pytest.mark.tf
def test_glu_starts_from_the_same_weights_and_predicts_the_same():
    torch_model, tf_model = _glu_model("torch"), _glu_model("tf")
    glu = torch_model.get_weights()["glu"]
    for name, value in glu.items():
        np.testing.assert_array_equal(tf_model.get_weights()["glu"][name], value)
    limit = np.sqrt(6.0 / (64 + 48))   # glorot-uniform kernel, zero bias
    assert glu["kernel"].shape == (64, 48) and 0.9 * limit < np.abs(glu["kernel"]).max() <= limit
    assert not glu["bias"].any()
    # another seed, or another layer name, draws other numbers
    assert not np.array_equal(_glu_model("torch", seed=1).get_weights()["glu"]["kernel"], glu["kernel"])
    tf_model.set_weights(torch_model.get_weights())
    x = _x((7, 64))
    np.testing.assert_allclose(tf_model.predict(x), torch_model.predict(x), atol=1e-6, rtol=0)


@pytest.mark.torch
@pytest.mark.tf
def test_glu_trains_to_the_same_numbers(digits):
    x, y = digits[0][:256], digits[1][:256]
    results, start = {}, _glu_model("torch").get_weights()   # the Dense head's initial weights differ
    for framework in ("torch", "tf"):
        model = _glu_model(framework)
        model.set_weights(start)
        history = model.train(Dataset(x, y), Optimizer("Adam", lr=0.01), epochs=2, batch_size=64, seed=0)
        results[framework] = np.array(history["loss"]), model.get_weights()
    (torch_loss, torch_weights), (tf_loss, tf_weights) = results["torch"], results["tf"]
    assert torch_loss[-1] < torch_loss[0]
    np.testing.assert_allclose(tf_loss, torch_loss, rtol=1e-5)
    moved = np.abs(torch_weights["glu"]["kernel"] - _glu_model("torch").get_weights()["glu"]["kernel"]).max()
    assert moved > 1e-2    # 8 Adam steps did train the custom layer
    for layer, weights in torch_weights.items():
        for name, value in weights.items():
            np.testing.assert_allclose(tf_weights[layer][name], value, atol=1e-5, rtol=0, err_msg=f"{layer}/{name}")


@pytest.mark.torch
@pytest.mark.tf
def test_every_op_gives_the_same_numbers_in_both_frameworks_and_in_onnx(tmp_path):
    used = set(re.findall(r"ops\.(\w+)\(", inspect.getsource(Everything)))
    assert used == set(OP_NAMES)
    spec = ModelSpec.sequential((5, 3)).add("Everything", 6)
    x = _x((4, 5, 3))
    outputs = {}
    for framework in ("torch", "tf"):
        model = Model(spec=ModelSpec.from_dict(spec.to_dict()), framework=framework).build(seed=0)
        outputs[framework] = model.predict(x)
        export.to_onnx(model, tmp_path / f"{framework}.onnx")  # verifies against the model
        session = ort.InferenceSession(str(tmp_path / f"{framework}.onnx"), providers=["CPUExecutionProvider"])
        outputs[f"onnx-{framework}"] = session.run(None, {"input": x})[0]
    assert outputs["torch"].shape == (4, 25)
    for name, value in outputs.items():
        np.testing.assert_allclose(value, outputs["torch"], atol=1e-5, rtol=0, err_msg=name)


# -- built-in layers, rewritten with the op set ---------------------------------------------------

REWRITTEN = {
    "dense": (lambda kind: ModelSpec.sequential((6, 10)).add(kind, 8, activation="gelu", name="layer"), "Dense",
              "OpsDense"),
    "layernorm": (lambda kind: ModelSpec.sequential((6, 10)).add(kind, eps=1e-6, name="layer"), "LayerNorm",
                  "OpsLayerNorm"),
}


@pytest.mark.parametrize("framework", framework_params())
@pytest.mark.parametrize("case", sorted(REWRITTEN))
def test_builtin_layers_written_with_ops_equal_the_native_ones(framework, case):
    make, native_kind, ops_kind = REWRITTEN[case]
    native = Model(spec=make(native_kind), framework=framework).build(seed=0)
    rewritten = Model(spec=make(ops_kind), framework=framework).build(seed=0)
    rng = np.random.default_rng(3)
    weights = {"layer": {name: rng.standard_normal(value.shape).astype(np.float32)
                         for name, value in native.get_weights()["layer"].items()}}
    assert set(weights["layer"]) == set(rewritten.get_weights()["layer"])
    native.set_weights(weights)
    rewritten.set_weights(weights)
    x = _x((5, 6, 10)) * 3.0
    np.testing.assert_allclose(rewritten.predict(x), native.predict(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("framework", framework_params())
def test_attention_written_with_ops_equals_the_native_one_with_a_mask(framework, tmp_path):
    specs = {}
    for kind in ("Attention", "OpsAttention"):
        spec = ModelSpec().add_input("q", (None, 8)).add_input("kv", (None, 8)).add_input("mask", (None,), "int64")
        specs[kind] = spec.add(kind, 2, inputs=["q", "kv", "kv", "mask"])
    native, rewritten = (Model(spec=specs[k], framework=framework).build(seed=0) for k in specs)
    mask = np.ones((3, 7), np.int64)
    mask[0, 4:] = 0
    mask[1, :] = 0           # a query that may see no key: the mean of the values, as the native one
    inputs = [_x((3, 5, 8)), _x((3, 7, 8), seed=1), mask]
    np.testing.assert_allclose(rewritten.predict(inputs), native.predict(inputs), atol=1e-5, rtol=0)
    # reshape's kept sizes (0) leave the batch and both lengths dynamic in the exported file
    report = export.to_onnx(rewritten, tmp_path / "attention.onnx")
    assert "fallback" not in report.exporter
    session = ort.InferenceSession(str(tmp_path / "attention.onnx"), providers=["CPUExecutionProvider"])
    feed = dict(zip(("q", "kv", "mask"), inputs))
    np.testing.assert_allclose(session.run(None, feed)[0], native.predict(inputs), atol=1e-5, rtol=0)


# -- saving, loading, exporting ------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.parametrize("source,target", [("torch", "tf"), ("tf", "torch")])
def test_h5_round_trip_across_frameworks_keeps_the_layer_by_name(source, target, digits, tmp_path):
    x, y = digits[0][:128], digits[1][:128]
    model = _glu_model(source)
    model.train(Dataset(x, y), Optimizer("Adam", lr=0.01), epochs=1, batch_size=64, seed=0)
    model.save(tmp_path / "glu.h5")
    import h5py

    with h5py.File(tmp_path / "glu.h5") as f:
        saved = json.loads(f.attrs["spec"])["layers"][0]
    assert (saved["kind"], saved["config"]) == ("GLU", {"units": 24})
    loaded = Model.load(tmp_path / "glu.h5", framework=target)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), atol=1e-5, rtol=0)


@pytest.mark.torch
def test_loading_without_the_registration_names_the_layer(tmp_path):
    _glu_model("torch").save(tmp_path / "glu.h5")
    layers.unregister("GLU")
    with pytest.raises(ModelFileError, match=r"uses a layer this process does not know: layer 'glu' is a 'GLU', "
                                             r"which is neither built in nor registered: "
                                             r"import the module that registers it \(@llmasos.layers.register"):
        Model.load(tmp_path / "glu.h5")
    layers.register("GLU")(GLU)
    assert Model.load(tmp_path / "glu.h5").spec.layers[0].config == {"units": 24}


@pytest.mark.parametrize("framework", framework_params())
def test_onnx_export_runs_in_onnx_runtime_as_the_model(framework, tmp_path):
    model = _glu_model(framework)
    report = export.to_onnx(model, tmp_path / "glu.onnx")
    assert report.max_abs_diff <= 1e-5
    session = ort.InferenceSession(str(tmp_path / "glu.onnx"), providers=["CPUExecutionProvider"])
    x = _x((9, 64))
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x), atol=1e-5, rtol=0)


# -- errors ---------------------------------------------------------------------------------------

def test_unknown_layer_lists_the_known_ones_and_says_to_register():
    model = Model(input_dim=4, output_dim=2, framework=FRAMEWORKS[0])
    with pytest.raises(UnknownLayerError, match=r"unknown layer 'Gated'; known layers: .*Dense.*GLU.*"
                                                r"@llmasos.layers.register\('Gated'\)"):
        model.add_layer("Gated", 2)


def test_a_name_registered_twice_is_refused_unless_override():
    with pytest.raises(SpecError, match="'GLU' is already registered; pass override=True"):
        layers.register("glu")(GLU)
    layers.register("GLU", override=True)(OpsDense)
    assert ModelSpec.sequential((4,)).add("GLU", 3, activation="relu").layers[0].config == \
        {"units": 3, "activation": "relu"}
    with pytest.raises(SpecError, match="'Dense' is a built-in layer and cannot be replaced"):
        layers.register("Dense", override=True)(GLU)
    with pytest.raises(TypeError, match=r'use @layers.register\("Name"\)'):
        layers.register(GLU)
    with pytest.raises(TypeError, match="a subclass of llmasos.layers.Layer"):
        layers.register("Plain")(object)


def test_options_are_the_init_arguments_as_plain_data():
    with pytest.raises(SpecError, match=r"GLU\): .*unexpected keyword argument 'width'.*GLU takes: units"):
        ModelSpec.sequential((4,)).add("GLU", 3, width=2)

    class Holder(GLU):
        def get_config(self):
            return {"units": self.units, "fn": print}

    layers.register("Holder")(Holder)
    with pytest.raises(SpecError, match="config must be plain data"):
        ModelSpec.sequential((4,)).add("Holder", 3)


class _WrongOutput(GLU):
    def output_shape(self, input_shape):
        return (self.units,)                   # the call below gives 2 * units

    def call(self, ops, x, kernel, bias):
        return ops.matmul(x, kernel) + bias    # (batch, 2 * units)


class _WrongWeights(GLU):
    def weight_shapes(self, input_shape):
        return {"kernel": (input_shape[-1] + 1, 2 * self.units), "bias": (2 * self.units,)}


class _ForeignOp(GLU):
    def call(self, ops, x, kernel, bias):
        return ops.conv2d(x, kernel)


@pytest.mark.parametrize("framework", framework_params())
@pytest.mark.parametrize("cls, message", [
    (_WrongOutput, r"layer 'bad' \(Bad\): call returned shape \(batch, 6\) but output_shape says \(batch, 3\)"),
    (_WrongWeights, r"layer 'bad' \(Bad\): call failed on input\(s\) \((2|None), 4\) with weights kernel \(5, 6\), "
                    r"bias \(6,\)"),
    (_ForeignOp, r"layer 'bad' \(Bad\): call failed .*AttributeError: ops has no 'conv2d'.*: abs, add, concat"),
], ids=["output-shape", "weight-shape", "foreign-op"])
def test_a_call_that_disagrees_with_its_shapes_fails_at_build_naming_the_layer(framework, cls, message):
    layers.register("Bad")(cls)
    model = Model(input_dim=4, framework=framework).add_layer("Bad", 3, name="bad")
    with pytest.raises(SpecError, match=message):
        model.build()


def test_weights_the_call_does_not_take_are_refused_when_added():
    class Extra(GLU):
        def weight_shapes(self, input_shape):
            return {**super().weight_shapes(input_shape), "scale": (1,)}

    layers.register("Extra")(Extra)
    with pytest.raises(SpecError, match=r"Extra.call does not take the 1 input\(s\) and the weights weight_shapes "
                                        r"returns \(kernel, bias, scale\)"):
        ModelSpec.sequential((4,)).add("Extra", 3)


def test_unknown_initializer_is_refused():
    class Odd(GLU):
        initializers = {"kernel": "orthogonal"}

    layers.register("Odd")(Odd)
    with pytest.raises(SpecError, match=r"Odd.initializers\['kernel'\] is 'orthogonal'; known: glorot_uniform"):
        ModelSpec.sequential((4,)).add("Odd", 3)


@pytest.mark.torch
@pytest.mark.tf
def test_an_op_outside_the_set_is_an_attribute_error_listing_the_set():
    from llmasos.adapters.tf.ops import OPS as TF_OPS
    from llmasos.adapters.torch.ops import OPS as TORCH_OPS

    for ops in (TORCH_OPS, TF_OPS):
        with pytest.raises(AttributeError, match="ops has no 'conv2d'.*: " + ", ".join(OP_NAMES)):
            ops.conv2d
