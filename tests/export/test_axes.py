"""What other teams' code sees in an exported file: int64 ids and masks, as tokenizers give them,
and dynamic dimensions named as Optimum names them (decided from the spec, for every framework)."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos.errors import SpecError
from llmasos.export.config import OnnxConfig
from llmasos.spec import ModelSpec


def _masked_encoder(mask_dtype: str = "int64") -> ModelSpec:
    spec = ModelSpec().add_input("input_ids", (None,), "int64", axes=["sequence_length"])
    spec.add_input("attention_mask", (None,), mask_dtype, axes=["sequence_length"])
    spec.add("Embedding", 8, vocab_size=20, name="embed", inputs="input_ids")
    return spec.add("Attention", 2, name="attn", inputs=["embed", "embed", "embed", "attention_mask"])


def _cached_decoder() -> ModelSpec:
    spec = ModelSpec().add_input("input_ids", (None,), "int64", axes=["sequence_length"])
    spec.add_input("past_key", (None, 8), axes=["past_sequence_length"])
    spec.add("Embedding", 8, vocab_size=20, name="embed", inputs="input_ids")
    spec.add("Concatenate", axis=1, name="present_key", inputs=["past_key", "embed"])
    spec.add("Attention", 2, causal=True, name="attn", inputs=["embed", "present_key", "present_key"])
    return spec.set_outputs(["attn", "present_key"])


def test_an_int64_mask_feeds_attention_and_samples_as_zeros_and_ones():
    config = OnnxConfig(_masked_encoder())
    assert [(t.name, t.dtype, t.shape) for t in config.inputs] == [
        ("input_ids", "int64", ("batch_size", "sequence_length")),
        ("attention_mask", "int64", ("batch_size", "sequence_length"))]
    assert config.outputs[0].shape == ("batch_size", "sequence_length", 8)
    ids, mask = config.sample(batch=16)
    assert mask.dtype == np.int64 and set(np.unique(mask)) == {0, 1} and ids.max() < 20


def test_int64_goes_only_to_embedding_ids_and_attention_masks():
    spec = ModelSpec().add_input("ids", (4,), "int64").add("Dense", 3, inputs="ids")
    with pytest.raises(SpecError, match=r"input 'ids' is int64, which only an Embedding's ids or an Attention's mask"):
        spec.validate()
    with pytest.raises(SpecError, match=r"input 'mask' is int64 but feeds no Embedding layer or Attention mask"):
        ModelSpec().add_input("x", (4,)).add_input("mask", (4,), "int64").add("Dense", 3, inputs="x").validate()
    _masked_encoder("float32").validate()  # a float mask still works for specs that want one


def test_declared_axes_name_outputs_by_size_and_round_trip():
    spec = _cached_decoder()
    config = OnnxConfig(spec)
    assert config.inputs[1].shape == ("batch_size", "past_sequence_length", 8)
    assert [o.shape for o in config.outputs] == [("batch_size", "sequence_length", 8),
                                                  ("batch_size", "past_sequence_length + sequence_length", 8)]
    assert ModelSpec.from_json(spec.to_json()) == spec and spec.to_dict()["inputs"][1]["axes"] == ["past_sequence_length"]
    with pytest.raises(SpecError, match=r"axes must name each dynamic \(None\) dimension"):
        ModelSpec().add_input("x", (None, 4), axes=["a", "b"])


def test_without_declared_names_the_only_dynamic_axis_is_named_by_its_layout():
    images = OnnxConfig(ModelSpec.sequential((3, None, 8)).add("Conv2D", 2, kernel_size=3))
    assert images.inputs[0].shape == ("batch_size", 3, "height", 8)
    assert images.outputs[0].shape == ("batch_size", 2, "height", 6)
    two = ModelSpec().add_input("a", (None, 4)).add_input("b", (None, 4)).add("Add", inputs=["a", "b"])
    assert OnnxConfig(two).inputs[1].shape == ("batch_size", "b_1", 4)  # which is which is not known
