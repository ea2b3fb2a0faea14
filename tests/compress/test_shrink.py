"""compress.shrink: a transformer keeping some of its blocks equals the transformers model built with
those blocks only (DistilBERT's start), in torch and TensorFlow; bad indices are named."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Dataset, Optimizer, compress, zoo
from llmasos.errors import ZooError

from ..conftest import framework_params

pytestmark = pytest.mark.torch  # the references are transformers' torch models

ATOL = 1e-4
BERT = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 64}
GPT2 = {"vocab_size": 100, "n_embd": 32, "n_layer": 4, "n_head": 4, "n_positions": 64}
KEPT = [0, 2, 3]


def _kept_state(state: dict, prefix: str) -> dict:
    """The teacher's state dict with only the kept blocks, renumbered 0, 1, ..."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        depth = len(prefix.split("."))
        if ".".join(parts[:depth]) == prefix and parts[depth].isdigit():
            if int(parts[depth]) not in KEPT:
                continue
            key = ".".join([*parts[:depth], str(KEPT.index(int(parts[depth]))), *parts[depth + 1:]])
        out[key] = value
    return out


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Random 4-block BERT classifier and GPT-2 folders, and the transformers models of blocks 0, 2, 3
    with their outputs on one batch."""
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("shrink")
    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(0, 100, (2, 7))
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    out = {"batch": batch, "folder": folder}
    transformers.BertForSequenceClassification(transformers.BertConfig(**BERT, num_labels=3)).save_pretrained(
        folder / "bert-classifier")
    bert = transformers.BertModel(transformers.BertConfig(**BERT)).eval()
    bert.save_pretrained(folder / "bert")
    small = transformers.BertModel(transformers.BertConfig(**{**BERT, "num_hidden_layers": len(KEPT)})).eval()
    small.load_state_dict(_kept_state(bert.state_dict(), "encoder.layer"))
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)).eval()
    gpt2.save_pretrained(folder / "gpt2")
    small_gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**GPT2, "n_layer": len(KEPT)})).eval()
    small_gpt2.load_state_dict(_kept_state(gpt2.state_dict(), "transformer.h"))
    vit_config = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 64,
                  "image_size": 16, "patch_size": 8, "num_labels": 3, "initializer_range": 0.2}
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(**vit_config)).eval()
    vit.save_pretrained(folder / "vit")
    small_vit = transformers.ViTForImageClassification(
        transformers.ViTConfig(**{**vit_config, "num_hidden_layers": len(KEPT)})).eval()
    small_vit.load_state_dict(_kept_state(vit.state_dict(), "vit.layers"))
    out["images"] = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.inference_mode():
        out["vit_logits"] = small_vit(torch.from_numpy(out["images"])).logits.numpy()
        tensors = {name: torch.from_numpy(value) for name, value in batch.items()}
        out["bert_hidden"] = small(**tensors).last_hidden_state.numpy()
        out["teacher_hidden"] = bert(**tensors).last_hidden_state.numpy()
        out["gpt2_logits"] = small_gpt2(tensors["input_ids"]).logits.numpy()
    return out


@pytest.mark.parametrize("framework", framework_params())
def test_a_shrunk_bert_equals_transformers_with_the_kept_blocks(framework, references):
    teacher = zoo.load("bert", framework, pretrained=references["folder"] / "bert")
    student = teacher.shrink(layers=KEPT)
    assert student.config.num_hidden_layers == 3 and student.framework == teacher.framework
    assert not any(name.startswith("encoder.layer.3.") for name in student.get_weights())
    np.testing.assert_allclose(student.predict(references["batch"]), references["bert_hidden"], atol=ATOL, rtol=0)
    # the teacher is unchanged, and dropping a block really changes the output
    np.testing.assert_allclose(teacher.predict(references["batch"]), references["teacher_hidden"], atol=ATOL, rtol=0)
    assert np.abs(references["bert_hidden"] - references["teacher_hidden"]).max() > 100 * ATOL


@pytest.mark.parametrize("framework", framework_params())
def test_a_shrunk_gpt2_equals_transformers_with_the_kept_blocks(framework, references):
    teacher = zoo.load("gpt2", framework, pretrained=references["folder"] / "gpt2")
    student = compress.shrink(teacher, KEPT)
    np.testing.assert_allclose(student.predict(references["batch"]["input_ids"]), references["gpt2_logits"],
                               atol=ATOL, rtol=0)


def test_a_shrunk_vit_equals_transformers_with_the_kept_blocks(references):
    teacher = zoo.load("vit", "torch", pretrained=references["folder"] / "vit", logits=True)
    student = teacher.shrink(layers=KEPT)
    assert student.config.num_hidden_layers == len(KEPT)
    np.testing.assert_allclose(student.predict(references["images"]), references["vit_logits"], atol=ATOL, rtol=0)
    assert np.abs(references["vit_logits"]).max() > 100 * ATOL


def test_the_student_saves_loads_and_trains_as_its_family(references, tmp_path):
    from llmasos import Model

    from tokenizers import Tokenizer, models, pre_tokenizers

    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(100)}, unk_token="w0"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    teacher = zoo.load("bert", "torch", pretrained=references["folder"] / "bert-classifier",
                       task="text-classification", logits=True, tokenizer=words)
    student = compress.shrink(teacher, layers=[1, 3])
    assert student.metadata["labels"] == teacher.metadata["labels"] and "classifier" in student.get_weights()
    student.save(tmp_path / "student.h5")
    again = Model.load(tmp_path / "student.h5", framework="tf")
    assert type(again) is type(student) and again.config.num_hidden_layers == 2
    assert again.metadata["shrunk_from"] == {"blocks": 4, "kept": [1, 3]}
    np.testing.assert_allclose(again.predict(references["batch"]), student.predict(references["batch"]), atol=ATOL)
    before = student.get_weights()["encoder.layer.0.output.dense"]["kernel"].copy()
    batch = references["batch"]
    student.train(Dataset(["w1 w2 w3", "w4 w5"], [0, 2], text="text", tokenizer=student), Optimizer("Adam", lr=1e-2), epochs=1,
                  batch_size=2)
    assert np.abs(student.get_weights()["encoder.layer.0.output.dense"]["kernel"] - before).max() > 0


@pytest.mark.parametrize("layers, message", [
    ([0, 4], r"blocks 0\.\.3; \[4\] are out of range"),
    ([1, 1], "name a block twice"),
    ([2, 0], r"out of order; give them in increasing order \(\[0, 2\]\)"),
    ([], "non-empty list"),
])
def test_bad_block_indices_are_named(references, layers, message):
    teacher = zoo.load("bert", "torch", pretrained=references["folder"] / "bert")
    with pytest.raises(ZooError, match=message):
        compress.shrink(teacher, layers)


def test_a_model_without_blocks_is_refused():
    from llmasos import Model

    plain = Model(input_dim=4, output_dim=2)
    plain.add_layer("Dense", 2)
    with pytest.raises(ZooError, match="transformer family"):
        compress.shrink(plain, [0])
