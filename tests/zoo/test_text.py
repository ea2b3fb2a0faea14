"""BERT and GPT-2 against transformers' own models with identical weights (Hugging Face folders the
tests write with ``save_pretrained``, loaded through ``pretrained=``), in torch, TensorFlow and
ONNX Runtime; generation with and without the key/value cache; fine-tuning; clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from llmasos import Dataset, Optimizer, export, zoo
from llmasos.errors import DataError, WeightsError, WeightsNotFoundError

from ..conftest import ModelsByFramework, framework_params
from .conftest import onnx_signature

pytestmark = pytest.mark.torch  # the references are transformers' torch models

ATOL = 1e-4  # DESIGN.md: zoo models agree to 1e-4 (fp32)
BERT = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 64}
# wide initial weights, so greedy decoding wanders instead of repeating one token
GPT2 = {"vocab_size": 100, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "initializer_range": 0.3,
        "bos_token_id": 97, "eos_token_id": 99}
WORDS = [f"w{i}" for i in range(97)] + ["Hello", "[UNK]", "<eos>"]  # GPT-2's vocabulary: ids 0..99


def _batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Two sequences of 9 tokens, the second padded after 5, with two segments."""
    mask = np.ones((2, 9), np.int64)  # as tokenizers give it
    mask[1, 5:] = 0
    types = np.zeros((2, 9), np.int64)
    types[:, 4:] = 1
    return {"input_ids": rng.integers(0, 100, (2, 9)), "attention_mask": mask, "token_type_ids": types}


def _torch(batch: dict[str, np.ndarray]) -> dict:
    import torch

    return {name: torch.from_numpy(value) for name, value in batch.items()}


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Random transformers models saved as Hugging Face folders, their outputs on a padded batch,
    and greedy continuations."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    out = {"batch": _batch(np.random.default_rng(0)), "folder": folder}
    bert = transformers.BertModel(transformers.BertConfig(**BERT)).eval()
    bert.save_pretrained(folder / "bert")
    classifier = transformers.BertForSequenceClassification(transformers.BertConfig(
        **BERT, id2label={0: "negative", 1: "positive", 2: "neutral"})).eval()
    classifier.save_pretrained(folder / "bert-classifier")
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)).eval()
    gpt2.save_pretrained(folder / "gpt2")
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "gpt2" / "tokenizer.json"))
    prompt = torch.tensor([[97, 5, 17, 42]])
    with torch.inference_mode():
        out["hidden"] = bert(**_torch(out["batch"])).last_hidden_state.numpy()
        out["class_logits"] = classifier(**_torch(out["batch"])).logits.numpy()
        out["logits"] = gpt2(_torch(out["batch"])["input_ids"]).logits.numpy()
        out["prompt"] = prompt.numpy()
        out["greedy"] = gpt2.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=99).numpy()
    return out


@pytest.fixture(scope="module")
def gpt2_models(hf):
    """The test GPT-2 loaded in each framework (each load compiles a model: share them)."""
    return ModelsByFramework(lambda framework: zoo.load("gpt2", framework, pretrained=hf["folder"] / "gpt2"))


# -- parity with transformers -------------------------------------------------------------------


@pytest.mark.parametrize("framework", framework_params())
def test_bert_last_hidden_state_matches_transformers(framework, hf):
    model = zoo.load("bert", framework, pretrained=hf["folder"] / "bert")
    np.testing.assert_allclose(model.predict(hf["batch"]), hf["hidden"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("framework", framework_params())
def test_bert_classifier_matches_transformers(framework, hf):
    model = zoo.load("bert", framework, pretrained=hf["folder"] / "bert-classifier", task="text-classification",
                     logits=True)
    np.testing.assert_allclose(model.predict(hf["batch"]), hf["class_logits"], atol=ATOL, rtol=0)
    assert model.metadata["labels"] == ["negative", "positive", "neutral"]


@pytest.mark.parametrize("framework", framework_params())
def test_gpt2_logits_match_transformers(framework, hf, gpt2_models):
    np.testing.assert_allclose(gpt2_models[framework].predict(hf["batch"]["input_ids"]), hf["logits"], atol=ATOL,
                               rtol=0)


@pytest.mark.tf
def test_gpt2_saved_from_torch_loads_in_tf_with_one_tied_matrix(hf, gpt2_models, tmp_path):
    from llmasos import Model

    gpt2_models["torch"].save(tmp_path / "gpt2.h5")
    again = Model.load(tmp_path / "gpt2.h5", framework="tf")
    assert again.spec == gpt2_models["torch"].spec and again.metadata["config"]["n_layer"] == 2
    ids = hf["batch"]["input_ids"]
    np.testing.assert_allclose(again.predict(ids), gpt2_models["torch"].predict(ids), atol=1e-5, rtol=0)
    # it comes back a GPT-2, with the tokenizer of the folder it was loaded from, and generates
    assert type(again) is type(gpt2_models["torch"]) and again.tokenizer is not None
    np.testing.assert_array_equal(again.generate(hf["prompt"], 12), hf["greedy"])


def test_bert_reads_a_pytorch_model_bin_with_old_layernorm_names(hf, tmp_path):
    import torch
    from safetensors.numpy import load_file

    folder = tmp_path / "bert-bin"
    folder.mkdir()
    shutil.copy(hf["folder"] / "bert" / "config.json", folder)
    state = load_file(str(hf["folder"] / "bert" / "model.safetensors"))
    renamed = {"bert." + key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"):
               torch.from_numpy(value) for key, value in state.items()}
    torch.save(renamed, folder / "pytorch_model.bin")
    model = zoo.load("bert", "torch", pretrained=folder)
    np.testing.assert_allclose(model.predict(hf["batch"]), hf["hidden"], atol=ATOL, rtol=0)


# -- generation -------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", framework_params())
def test_greedy_generation_matches_transformers_with_and_without_cache(framework, hf, gpt2_models):
    model = gpt2_models[framework]
    assert len(set(hf["greedy"][0, 4:].tolist())) > 3  # the weights make a non-trivial continuation
    np.testing.assert_array_equal(model.generate(hf["prompt"], max_new_tokens=12), hf["greedy"])
    np.testing.assert_array_equal(model.generate(hf["prompt"], max_new_tokens=12, use_cache=False), hf["greedy"])


def test_sampling_is_seeded_and_the_cache_changes_nothing(gpt2_models):
    model = gpt2_models["torch"]
    prompt = np.array([[97, 3], [97, 60]])
    options = {"max_new_tokens": 10, "do_sample": True, "top_k": 20, "top_p": 0.9, "temperature": 1.5, "seed": 3}
    sampled = model.generate(prompt, **options)
    np.testing.assert_array_equal(model.generate(prompt, **options, use_cache=False), sampled)
    np.testing.assert_array_equal(model.generate(prompt, **options), sampled)
    assert not np.array_equal(model.generate(prompt, **{**options, "seed": 4}), sampled)
    greedy = model.generate(prompt, max_new_tokens=10)
    np.testing.assert_array_equal(model.generate(prompt, max_new_tokens=10, do_sample=True, top_k=1, seed=0), greedy)


def test_generate_from_text_with_the_folders_tokenizer(gpt2_models):
    text = gpt2_models["torch"].generate("Hello w5 w17", max_new_tokens=5)
    assert text.startswith("Hello w5 w17 ") and len(text.split()) == 8
    # prompts of different lengths: each continued as if alone
    assert gpt2_models["torch"].generate(["w3", "Hello w5 w17"], max_new_tokens=5) == [
        gpt2_models["torch"].generate("w3", max_new_tokens=5), text]


@pytest.mark.torch
@pytest.mark.tf
def test_gpt2_head_is_tied_to_wte_in_both_frameworks(gpt2_models):
    model = gpt2_models["torch"]
    assert "logits" not in model.get_weights()
    assert sum(p.numel() for p in model.backend_model.parameters()) == model.spec.parameter_count()
    keras_model = gpt2_models["tf"].backend_model
    assert sum(int(np.prod(v.shape)) for v in keras_model.trainable_variables) == model.spec.parameter_count()


# -- ONNX -------------------------------------------------------------------------------------


ONNX_FRAMEWORKS = [pytest.param("torch"), pytest.param("tf", marks=[pytest.mark.tf, pytest.mark.slow])]


@pytest.mark.parametrize("framework", ONNX_FRAMEWORKS)
def test_bert_onnx_export_matches_transformers(framework, hf, tmp_path):
    import onnxruntime

    export.to_onnx(zoo.load("bert", framework, pretrained=hf["folder"] / "bert"), tmp_path / "bert.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "bert.onnx"))
    np.testing.assert_allclose(session.run(None, hf["batch"])[0], hf["hidden"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("framework", ONNX_FRAMEWORKS)
def test_gpt2_onnx_exports_match_transformers_and_generate_the_same_tokens(framework, hf, gpt2_models, tmp_path):
    import onnxruntime

    gpt2 = gpt2_models[framework]
    export.to_onnx(gpt2, tmp_path / "gpt2.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "gpt2.onnx"))
    logits = session.run(None, {"input_ids": hf["batch"]["input_ids"]})[0]
    np.testing.assert_allclose(logits, hf["logits"], atol=ATOL, rtol=0)
    np.testing.assert_array_equal(gpt2.generate(hf["prompt"], 12, session=tmp_path / "gpt2.onnx"), hf["greedy"])

    report = export.to_onnx(gpt2.decoder(), tmp_path / "decoder.onnx")  # past key/values in and out
    assert [t["name"] for t in report.inputs][:3] == ["input_ids", "past_key_0", "past_value_0"]
    assert [t["name"] for t in report.outputs][:2] == ["logits", "present_key_0"]
    np.testing.assert_array_equal(gpt2.generate(hf["prompt"], 12, session=tmp_path / "decoder.onnx"), hf["greedy"])


def _bert_tokenizer():
    """A transformers tokenizer built offline (WordPiece over BERT's special tokens and the test
    vocabulary), to feed its output to ONNX Runtime exactly as another team would."""
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {word: i for i, word in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS[4:100]])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]",
                                                model_input_names=["input_ids", "token_type_ids", "attention_mask"])


@pytest.mark.parametrize("framework", framework_params())
def test_a_tokenizers_int64_output_feeds_the_onnx_bert_unchanged(framework, hf, tmp_path):
    import onnxruntime
    import torch
    import transformers

    encoded = _bert_tokenizer()(["w5 w6 w7 w8", "w9"], ["w10 w11", "w12 w13 w14"], padding=True, return_tensors="np")
    assert {k: v.dtype for k, v in encoded.items()} == dict.fromkeys(["input_ids", "token_type_ids", "attention_mask"],
                                                                      np.dtype("int64"))
    assert encoded["attention_mask"][1].tolist() == [1] * 7 + [0] * 2 and encoded["token_type_ids"][0, -3:].tolist() == [1] * 3
    export.to_onnx(zoo.load("bert", framework, pretrained=hf["folder"] / "bert"), tmp_path / "bert.onnx")
    assert onnx_signature(tmp_path / "bert.onnx") == {
        **dict.fromkeys(["input_ids", "attention_mask", "token_type_ids"], ("INT64", ["batch_size", "sequence_length"])),
        "last_hidden_state": ("FLOAT", ["batch_size", "sequence_length", BERT["hidden_size"]])}
    session = onnxruntime.InferenceSession(str(tmp_path / "bert.onnx"))
    hidden = session.run(None, dict(encoded))[0]  # as the tokenizer gave it: no cast, no renaming
    with torch.inference_mode():
        reference = transformers.BertModel.from_pretrained(hf["folder"] / "bert").eval()
        want = reference(**{k: torch.from_numpy(v) for k, v in encoded.items()}).last_hidden_state.numpy()
    np.testing.assert_allclose(hidden, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("framework", framework_params())
def test_gpt2_onnx_files_take_the_tokenizers_int64_ids_and_name_their_axes(framework, hf, gpt2_models, tmp_path):
    """GPT-2 takes no padding mask (README): a prompt's ids, as the tokenizer gives them."""
    import onnxruntime
    import transformers

    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(hf["folder"] / "gpt2" / "tokenizer.json"))
    ids = tokenizer(["Hello w5 w17 w3"], return_tensors="np")["input_ids"]
    assert ids.dtype == np.int64 and ids.tolist() == [[97, 5, 17, 3]]
    gpt2 = gpt2_models[framework]
    export.to_onnx(gpt2, tmp_path / "gpt2.onnx")
    export.to_onnx(gpt2.decoder(), tmp_path / "decoder.onnx")
    assert onnx_signature(tmp_path / "gpt2.onnx") == {
        "input_ids": ("INT64", ["batch_size", "sequence_length"]),
        "logits": ("FLOAT", ["batch_size", "sequence_length", GPT2["vocab_size"]])}
    decoder = onnx_signature(tmp_path / "decoder.onnx")
    assert decoder["input_ids"] == ("INT64", ["batch_size", "sequence_length"])
    assert decoder["past_key_0"] == ("FLOAT", ["batch_size", "past_sequence_length", GPT2["n_embd"]])
    assert decoder["present_key_0"] == ("FLOAT", ["batch_size", "past_sequence_length + sequence_length",
                                                  GPT2["n_embd"]])
    logits = onnxruntime.InferenceSession(str(tmp_path / "gpt2.onnx")).run(None, {"input_ids": ids})[0]
    np.testing.assert_allclose(logits, gpt2.predict(ids), atol=ATOL, rtol=0)


def test_a_float_mask_is_refused_with_the_dtype_to_use(hf):
    model = zoo.load("bert", "torch", pretrained=hf["folder"] / "bert")
    with pytest.raises(DataError, match=r"attention_mask.*int64 mask.*float32.*astype\(.int64.\)"):
        model.predict({**hf["batch"], "attention_mask": hf["batch"]["attention_mask"].astype(np.float32)})


# -- fine-tuning --------------------------------------------------------------------------------


def _sentiment(rng: np.random.Generator, count: int) -> tuple[list[str], np.ndarray]:
    """Sentences of filler words with one "good" or one "bad" word somewhere; label 1 = good."""
    good, bad = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
    filler = [f"f{i}" for i in range(40)]
    texts, labels = [], rng.integers(0, 2, count)
    for label in labels:
        words = list(rng.choice(filler, rng.integers(3, 10)))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(good if label else bad)))
        texts.append(" ".join(words))
    return texts, labels


def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "great", "fine", "nice", "bad", "awful", "poor", "sad"]
    words += [f"f{i}" for i in range(40)]
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tokenizer


@pytest.mark.slow  # about 5 s per framework on an idle 2-core machine, several times that on a busy one
@pytest.mark.parametrize("framework", framework_params())
def test_fine_tuned_bert_separates_good_from_bad(framework, tmp_path):
    """From a CSV of reviews with text labels, through Dataset(..., text=, target=, tokenizer=model)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    texts, labels = _sentiment(rng, 480)
    sentiment = np.where(labels == 1, "positive", "negative")
    pd.DataFrame({"review": texts[:400], "sentiment": sentiment[:400]}).to_csv(tmp_path / "reviews.csv", index=False)
    config = {**BERT, "vocab_size": 52, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    model = zoo.load("bert", framework, config=config, task="text-classification", num_labels=2,
                     tokenizer=_word_tokenizer(), seed=0)
    reviews = Dataset(tmp_path / "reviews.csv", text="review", target="sentiment", tokenizer=model)
    assert reviews.classes == ["negative", "positive"]
    model.train(reviews, Optimizer("AdamW", lr=2e-3), epochs=6, batch_size=32, seed=0)
    assert model.evaluate(model.dataset(texts[400:], labels[400:], mode="test"))["accuracy"] > 0.9
    # a new head (LABEL_0, LABEL_1) takes the first training set's labels as its names
    assert model.metadata["labels"] == ["negative", "positive"]
    assert model.classify(["f1 f2 great f3", "f4 awful f5"]) == ["positive", "negative"]


# -- errors -------------------------------------------------------------------------------------


def test_missing_weights_say_where_they_were_looked_for(hf, tmp_path, monkeypatch):
    with pytest.raises(WeightsNotFoundError, match=r"Looked in:\n.*nowhere"):
        zoo.load("bert", "torch", pretrained=tmp_path / "nowhere")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(WeightsNotFoundError, match=r"repo 'google-bert/bert-base-uncased' in .*hf-home.*huggingface"):
        zoo.load("bert", "torch", pretrained=True)
    (tmp_path / "config-only").mkdir()
    shutil.copy(hf["folder"] / "bert" / "config.json", tmp_path / "config-only")
    with pytest.raises(WeightsError, match=r"expected model.safetensors or pytorch_model.bin"):
        zoo.load("bert", "torch", pretrained=tmp_path / "config-only")


def test_a_folder_of_another_architecture_names_both(hf):
    with pytest.raises(WeightsError, match=r"model_type 'gpt2' \(architectures \['GPT2LMHeadModel'\]\), not 'bert'"):
        zoo.load("bert", "torch", pretrained=hf["folder"] / "gpt2")


def test_wrong_shapes_name_the_key_and_both_shapes(hf, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "bert-bad"
    shutil.copytree(hf["folder"] / "bert", folder)
    state = load_file(str(folder / "model.safetensors"))
    state["encoder.layer.1.attention.self.key.weight"] = np.zeros((32, 16), np.float32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"encoder.layer.1.attention.self.key.weight: \(32, 16\) in .*"
                                           r"the model needs \(32, 32\)"):
        zoo.load("bert", "torch", pretrained=folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    with pytest.raises(ValueError, match=r"position_embedding_type='relative_key' is not supported"):
        zoo.load("bert", "torch", pretrained=folder)
