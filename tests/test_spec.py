"""The neutral spec: shapes, parameter counts, validation messages and JSON round trips."""

from __future__ import annotations

import json

import pytest

from llmasos.errors import SpecError
from llmasos.layers import builtin_kinds
from llmasos.layers.builtin import same_padding
from llmasos.spec import ModelSpec

# (input shape, input dtype, layers as (kind, main, options), expected output shape, expected params)
CASES = {
    "Dense": ((784,), "float32", [("Dense", 128, {"activation": "relu"})], (128,), 784 * 128 + 128),
    "Conv1D": ((3, 20), "float32", [("Conv1D", 8, {"kernel_size": 5, "stride": 2, "padding": "same"})], (8, 10), 5 * 3 * 8 + 8),
    "Conv2D": ((1, 28, 28), "float32", [("Conv2D", 16, {"kernel_size": 3, "stride": 2, "padding": "same"})], (16, 14, 14), 160),
    "Conv2D-grouped-dilated": ((4, 9, 9), "float32",
                               [("Conv2D", 8, {"kernel_size": 3, "groups": 2, "dilation": 2, "padding": 1})], (8, 7, 7), 9 * 2 * 8 + 8),
    "MaxPool2D": ((3, 7, 7), "float32", [("MaxPool2D", 2, {"padding": "same"})], (3, 4, 4), 0),
    "AvgPool2D": ((3, 8, 8), "float32", [("AvgPool2D", 3, {"stride": 2, "padding": 1})], (3, 4, 4), 0),
    "GlobalAvgPool2D": ((5, 4, 4), "float32", [("GlobalAvgPool2D", None, {})], (5,), 0),
    "Flatten": ((2, 3, 4), "float32", [("Flatten", None, {})], (24,), 0),
    "Reshape": ((24,), "float32", [("Reshape", [2, -1, 4], {})], (2, 3, 4), 0),
    "Dropout": ((10,), "float32", [("Dropout", 0.5, {})], (10,), 0),
    "BatchNorm": ((6, 4, 4), "float32", [("BatchNorm", None, {})], (6, 4, 4), 24),
    "LayerNorm": ((5, 8), "float32", [("LayerNorm", None, {})], (5, 8), 16),
    "Embedding": ((7,), "int64", [("Embedding", 16, {"vocab_size": 50})], (7, 16), 800),
    "LSTM": ((7, 4), "float32", [("LSTM", 6, {"return_sequences": True})], (7, 6), 4 * 6 * (4 + 6 + 1)),
    "GRU": ((7, 4), "float32", [("GRU", 6, {})], (6,), 3 * 6 * (4 + 6 + 2)),
    "MultiHeadAttention": ((7, 8), "float32", [("MultiHeadAttention", 2, {"causal": True})], (7, 8), 4 * (8 * 8 + 8)),
    "Activation": ((10,), "float32", [("Activation", "gelu", {})], (10,), 0),
    "Attention": ((7, 8), "float32", [("Attention", 2, {"causal": True, "inputs": ["input"] * 3})], (7, 8), 0),
    "PositionEmbedding": ((None, 8), "float32", [("PositionEmbedding", 16, {})], (None, 8), 16 * 8),
    "TakeToken": ((7, 8), "float32", [("TakeToken", -1, {})], (8,), 0),
    "GroupNorm": ((6, 10), "float32", [("GroupNorm", 3, {})], (6, 10), 12),
    "Permute": ((3, 10), "float32", [("Permute", [2, 1], {})], (10, 3), 0),
    "Cropping1D": ((10, 3), "float32", [("Cropping1D", [2, 1], {})], (7, 3), 0),
    "Rescaling": ((4,), "float32", [("Rescaling", 0.5, {"offset": 1})], (4,), 0),
    "L2Normalize": ((5, 8), "float32", [("L2Normalize", None, {"eps": 1e-6})], (5, 8), 0),
    "Embedding-tied": ((7,), "int64", [("Embedding", 16, {"vocab_size": 50, "name": "wte"}),
                                       ("Embedding", None, {"tied_to": "wte", "inputs": "input"})], (7, 16), 800),
    "Unembedding-bias": ((7,), "int64", [("Embedding", 16, {"vocab_size": 50, "name": "wte"}),
                                         ("Unembedding", None, {"embedding": "wte", "use_bias": True})], (7, 50), 850),
    "Unembedding": ((7,), "int64", [("Embedding", 16, {"vocab_size": 50, "name": "wte"}),
                                    ("Unembedding", None, {"embedding": "wte"})], (7, 50), 800),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_shapes_and_parameter_counts(case):
    shape, dtype, layers, out_shape, params = CASES[case]
    spec = ModelSpec.sequential(shape, dtype=dtype)
    for kind, main, options in layers:
        spec.add(kind, main, **options)
    assert spec.shapes()[spec.outputs[0]] == out_shape
    assert spec.parameter_count() == params
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_every_layer_kind_has_a_case():
    covered = {kind for _, _, layers, _, _ in CASES.values() for kind, _, _ in layers} | {"Add", "Concatenate"}
    assert covered == set(builtin_kinds())


def test_functional_graph_with_skip_and_two_outputs():
    spec = ModelSpec()
    spec.add_input("image", (3, 8, 8)).add_input("extra", (4,))
    spec.add("Conv2D", 3, kernel_size=3, padding="same", name="c1", inputs="image")
    spec.add("Add", name="skip", inputs=["image", "c1"])
    spec.add("Concatenate", axis=1, name="cat", inputs=["skip", "c1"])
    spec.add("GlobalAvgPool2D", name="gap")
    spec.add("Concatenate", name="joined", inputs=["gap", "extra"])
    spec.add("Dense", 2, name="head_a")
    spec.add("Dense", 1, name="head_b", inputs="joined")
    spec.set_outputs(["head_a", "head_b"])
    shapes = spec.shapes()
    assert shapes["cat"] == (6, 8, 8) and shapes["joined"] == (10,)
    assert ModelSpec.from_dict(json.loads(spec.to_json())) == spec


def test_summary_lists_layers_shapes_and_params():
    spec = ModelSpec.sequential((1, 28, 28)).add("Conv2D", 16, kernel_size=3, stride=2, padding="same")
    spec.add("Flatten").add("Dense", 10, activation="softmax")
    text = spec.summary()
    assert "conv2d (Conv2D)" in text and "(batch, 16, 14, 14)" in text
    assert f"Total params: {160 + 3136 * 10 + 10:,}" in text


@pytest.mark.parametrize("size,kernel,stride,expected", [(7, 3, 2, (1, 1)), (8, 3, 2, (0, 1)), (6, 1, 2, (0, 0)),
                                                         (5, 4, 1, (1, 2))])
def test_same_padding_puts_the_extra_pixel_after(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("build,message", [
    (lambda s: s.add("Dense2", 3), r"unknown layer 'Dense2'; known layers: .*Conv2D.*Dense"),
    (lambda s: s.add("Dense", 3, activation="swish"), r"unknown activation 'swish'; known: linear, relu"),
    (lambda s: s.add("Dense", 3, kernel=3), r"unknown option\(s\) kernel; Dense takes: activation"),
    (lambda s: s.add("Conv2D", 3, kernel_size=3), r"layer 'conv2d' \(Conv2D\) with input shape\(s\) \(10,\).*channels-first"),
    (lambda s: s.add("Reshape", [3, 4]), r"cannot reshape \(10,\) \(10 values\) into \(3, 4\)"),
    (lambda s: s.add("Dropout", 1.5), r"Dropout rate must be in \[0, 1\)"),
    (lambda s: s.add("Dense", 3, inputs="nope"), r"input 'nope' is not a known input or layer"),
    (lambda s: s.add("Add", inputs=["input"]), r"takes 2\.\.64 inputs, got 1"),
    (lambda s: s.add("Dense", 0), r"units must be a positive int, got 0"),
    (lambda s: s.add("Dense", 3, name="input"), r"name 'input' is already used"),
    (lambda s: s.add("Permute", [1, 3]), r"dims must be a permutation of 1\.\.rank"),
    (lambda s: s.add("Permute", [2, 1]), r"dims \[2, 1\] do not match input rank 1"),
    (lambda s: s.add("Cropping1D", [0, 1]), r"Cropping1D: expects a sequence \(L, \.\.\.\), got \(10,\)"),
    (lambda s: s.add("Rescaling", float("nan")), r"scale must be a finite number, got nan"),
    (lambda s: s.add("Embedding", 4), r"Embedding needs vocab_size \(or tied_to= an earlier Embedding\)"),
])
def test_bad_specs_say_what_is_wrong(build, message):
    spec = ModelSpec.sequential((10,))
    with pytest.raises(SpecError, match=message):
        build(spec)
    assert spec.layers == []  # a failed add leaves the spec as it was


def test_conv_kernel_larger_than_input_names_layer_and_shapes():
    spec = ModelSpec.sequential((1, 4, 4))
    with pytest.raises(SpecError, match=r"layer 'conv2d' .*\(1, 4, 4\).*does not fit"):
        spec.add("Conv2D", 2, kernel_size=5)


def test_add_with_mismatched_shapes_names_them():
    spec = ModelSpec.sequential((4,)).add("Dense", 3, name="a").add("Dense", 5, name="b", inputs="input")
    with pytest.raises(SpecError, match=r"same shape, got \(3,\), \(5,\)"):
        spec.add("Add", inputs=["a", "b"])


def test_tied_unembedding_stores_the_matrix_once_and_checks_its_embedding():
    spec = ModelSpec.sequential((5,), dtype="int64").add("Embedding", 8, vocab_size=30, name="wte")
    spec.add("Dense", 8, name="proj").add("Unembedding", embedding="wte", name="logits")
    assert spec.layer("logits").config["vocab_size"] == 30 and "logits" not in spec.weight_shapes()
    assert ModelSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SpecError, match=r"embedding 'proj' is a Dense layer; it must be an Embedding"):
        spec.add("Unembedding", embedding="proj", inputs="proj")
    with pytest.raises(SpecError, match=r"embedding 'later' is not an earlier layer"):
        spec.add("Unembedding", embedding="later", inputs="proj")
    with pytest.raises(SpecError, match=r"input features 4 differ from embedding 'wte'.s dim 8"):
        spec.add("Dense", 4, name="small", inputs="proj").add("Unembedding", embedding="wte", inputs="small")


def test_tied_embedding_uses_the_owner_table_and_checks_it():
    spec = ModelSpec().add_input("a", (5,), "int64").add_input("b", (3,), "int64")
    spec.add("Embedding", 8, vocab_size=30, name="shared", inputs="a")
    spec.add("Embedding", tied_to="shared", name="other", inputs="b")
    assert spec.shapes()["other"] == (3, 8) and "other" not in spec.weight_shapes()
    assert ModelSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SpecError, match=r"tied_to 'other' is itself tied to 'shared'"):
        spec.add("Embedding", tied_to="other", inputs="b")
    with pytest.raises(SpecError, match=r"dim 4 differs from 'shared'.s 8"):
        spec.add("Embedding", 4, tied_to="shared", inputs="b")
    with pytest.raises(SpecError, match=r"embedding 'other' is tied to 'shared'; name the Embedding"):
        spec.add("Unembedding", embedding="other", inputs="other")


@pytest.mark.parametrize("kind,main,message", [
    ("Cropping1D", [3, 2], r"cropping \[3, 2\] leaves nothing of length 5"),
    ("Cropping1D", [-1, 0], r"cropping must be an int >= 0 or a pair of them"),
    ("GroupNorm", 2, r"channels \(5\) must be divisible by groups \(2\)"),
])
def test_bad_sequence_layers_say_what_is_wrong(kind, main, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec.sequential((5, 2)).add(kind, main)


def test_reshape_sends_a_dynamic_length_into_its_minus_one():
    spec = ModelSpec.sequential((None,)).add("Reshape", [1, -1])
    assert spec.shapes()["reshape"] == (1, None)
    with pytest.raises(SpecError, match=r"dynamic dimension; the target shape needs a -1"):
        ModelSpec.sequential((None,)).add("Reshape", [1, 4])


@pytest.mark.parametrize("build,message", [
    (lambda s: s.add("Attention", 2, inputs=["q", "k", "k", "mask"]), r"mask and key lengths differ \(6 vs 7\)"),
    (lambda s: s.add("Attention", 3, inputs=["q", "k", "k"]), r"query size 8 is not divisible by num_heads 3"),
    (lambda s: s.add("PositionEmbedding", 4, inputs="q"), r"sequence length 5 exceeds max_length 4"),
    (lambda s: s.add("TakeToken", 5, inputs="q"), r"index 5 is outside a sequence of length 5"),
])
def test_bad_attention_specs_say_what_is_wrong(build, message):
    spec = ModelSpec().add_input("q", (5, 8)).add_input("k", (7, 8)).add_input("mask", (6,))
    with pytest.raises(SpecError, match=message):
        build(spec)


def test_embedding_needs_integer_ids():
    spec = ModelSpec.sequential((5,)).add("Embedding", 4, vocab_size=10)
    with pytest.raises(SpecError, match="needs int64 ids"):
        spec.validate()


def test_foreign_json_is_a_clear_error():
    with pytest.raises(SpecError, match="not valid JSON"):
        ModelSpec.from_json("{oops")
    with pytest.raises(SpecError, match="must have inputs, layers and outputs"):
        ModelSpec.from_json('{"class_name": "Sequential"}')
