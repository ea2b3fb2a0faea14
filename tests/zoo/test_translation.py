"""Marian against transformers' ``MarianMTModel`` with identical weights (a Hugging Face folder the
tests write with ``save_pretrained``, with SentencePiece models trained here), in torch,
TensorFlow and ONNX Runtime: teacher-forced logits, greedy translations, the tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmasos import export, zoo
from llmasos.export import load
from llmasos.errors import DataError, WeightsError
from llmasos.zoo.marian import sinusoids

from ..conftest import ModelsByFramework, framework_params
from .conftest import onnx_signature

pytestmark = [pytest.mark.torch,  # the reference is transformers' torch model
              # MarianTokenizer asks for sacremoses, which only its unused normalize() would call
              pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")]

ATOL = 1e-4
WORDS = "the a cat dog sees runs house tree big small red green and with under over".split()
SOURCES = ["the big cat sees a small dog", "a red house", "the dog runs under the green tree"]


def _corpus(rng: np.random.Generator, count: int = 400) -> list[str]:
    return [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(count)]


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """A random ``MarianMTModel`` (its logits bias non-zero) saved as a Hugging Face folder with
    SentencePiece models trained on a small corpus and a Marian vocab.json; its logits and
    greedy translations of :data:`SOURCES`."""
    import sentencepiece
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("marian")
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(_corpus(np.random.default_rng(0))),
                                             model_prefix=str(folder / "spm"), vocab_size=36, model_type="unigram",
                                             minloglevel=2)
    for side in ("source", "target"):
        (folder / f"{side}.spm").write_bytes((folder / "spm.model").read_bytes())
    processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    vocabulary = {"</s>": 0, "<unk>": 1, **{p: i + 2 for i, p in enumerate(p for p in pieces if p not in
                                                                          ("<unk>", "<s>", "</s>"))}}
    vocabulary["<pad>"] = len(vocabulary)
    (folder / "vocab.json").write_text(json.dumps(vocabulary))
    size = len(vocabulary)
    config = transformers.MarianConfig(
        vocab_size=size, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        scale_embedding=True, activation_function="swish", pad_token_id=size - 1, decoder_start_token_id=size - 1,
        eos_token_id=0, forced_eos_token_id=None, init_std=0.3)
    torch.manual_seed(0)
    model = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    tokenizer = transformers.MarianTokenizer(vocab=str(folder / "vocab.json"), source_spm=str(folder / "source.spm"),
                                             target_spm=str(folder / "target.spm"))
    batch = tokenizer(SOURCES, padding=True, return_tensors="pt")
    decoder_ids = torch.tensor([[size - 1, 5, 9, 3, 12], [size - 1, 7, 7, 2, 0]])
    with torch.inference_mode():
        logits = model(**batch, decoder_input_ids=decoder_ids[:1].repeat(3, 1)).logits.numpy()
        greedy = model.generate(**batch, max_new_tokens=12, do_sample=False, num_beams=1,
                                bad_words_ids=[[size - 1]]).numpy()
        beams = model.generate(**batch, max_new_tokens=9, do_sample=False, num_beams=3,
                               bad_words_ids=[[size - 1]]).numpy()
    return {"folder": folder, "batch": {k: v.numpy() for k, v in batch.items()}, "tokenizer": tokenizer,
            "decoder_input_ids": decoder_ids[:1].repeat(3, 1).numpy(), "logits": logits, "greedy": greedy,
            "texts": tokenizer.batch_decode(greedy, skip_special_tokens=True), "model": model, "beams": beams}


@pytest.fixture(scope="module")
def models(hf):
    """The test Marian loaded in each framework (each load compiles three models: share them)."""
    return ModelsByFramework(lambda framework: zoo.load("marian", framework, pretrained=hf["folder"]))


def _inputs(hf) -> dict:
    return {"input_ids": hf["batch"]["input_ids"], "attention_mask": hf["batch"]["attention_mask"],
            "decoder_input_ids": hf["decoder_input_ids"]}


def test_the_tokenizer_matches_transformers_marian_tokenizer(hf, models):
    ours = models["torch"].encode(SOURCES)
    np.testing.assert_array_equal(ours["input_ids"], hf["batch"]["input_ids"])
    np.testing.assert_array_equal(ours["attention_mask"], hf["batch"]["attention_mask"])
    ids = hf["greedy"][0].tolist()
    assert models["torch"].tokenizer.decode(ids) == hf["tokenizer"].decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("framework", framework_params())
def test_logits_and_greedy_translations_match_transformers(framework, hf, models):
    mt = models[framework]
    np.testing.assert_allclose(mt.predict(_inputs(hf)), hf["logits"], atol=ATOL, rtol=0)
    batch = hf["batch"]
    np.testing.assert_array_equal(mt.generate(batch["input_ids"], batch["attention_mask"], 12), hf["greedy"])
    assert mt.translate(SOURCES, 12) == hf["texts"]
    assert len({tuple(row) for row in hf["greedy"].tolist()}) > 1  # the rows differ: the source mattered
    np.testing.assert_array_equal(mt.generate(batch["input_ids"], batch["attention_mask"], 9, num_beams=3),
                                  hf["beams"])


@pytest.mark.parametrize("framework", framework_params())
def test_each_cached_decoder_step_gives_the_full_models_logits(framework, hf, models):
    """The key/value cache and the positions after it: step t of the decoder sees what the
    teacher-forced model sees at position t."""
    mt = models[framework]
    inputs = _inputs(hf)
    _, *cross = mt.encoder().compiled.predict([inputs["input_ids"], inputs["attention_mask"]])
    past = [np.zeros((3, 0, 32), np.float32)] * 4
    for t in range(inputs["decoder_input_ids"].shape[1]):
        logits, *past = mt.decoder().compiled.predict([inputs["decoder_input_ids"][:, t:t + 1],
                                                       inputs["attention_mask"], *cross, *past])
        np.testing.assert_allclose(logits, hf["logits"][:, t], atol=ATOL, rtol=0)


def test_positions_are_marians_sinusoids_and_stay_fixed(hf, models):
    table = hf["model"].model.encoder.embed_positions.weight.detach().numpy()
    np.testing.assert_allclose(sinusoids(*table.shape), table, atol=1e-6)
    weights = models["torch"].get_weights()
    np.testing.assert_array_equal(weights["decoder.embed_positions"]["embeddings"], sinusoids(*table.shape))
    trainable = {name for name, p in models["torch"].backend_model.named_parameters() if p.requires_grad}
    assert not any("embed_positions" in name for name in trainable) and any("shared" in n for n in trainable)


@pytest.mark.parametrize("framework", framework_params())
def test_onnx_encoder_and_decoder_translate_the_same(framework, hf, models, tmp_path):
    mt = models[framework]
    export.to_onnx(mt, tmp_path / "marian.onnx")
    np.testing.assert_allclose(load(tmp_path / "marian.onnx").run(None, _inputs(hf))[0], hf["logits"], atol=ATOL,
                               rtol=0)
    encoder = export.to_onnx(mt.encoder(), tmp_path / "encoder.onnx")
    decoder = export.to_onnx(mt.decoder(), tmp_path / "decoder.onnx")
    assert [t["name"] for t in encoder.outputs][:3] == ["encoder_hidden_states", "cross_key_0", "cross_value_0"]
    assert [t["name"] for t in decoder.inputs][:4] == ["decoder_input_ids", "attention_mask", "cross_key_0",
                                                      "cross_value_0"]
    session = (tmp_path / "encoder.onnx", tmp_path / "decoder.onnx")
    assert mt.translate(SOURCES, 12, session=session) == hf["texts"]
    batch = hf["batch"]
    np.testing.assert_array_equal(mt.generate(batch["input_ids"], batch["attention_mask"], 9, num_beams=3,
                                              session=session), hf["beams"])


@pytest.mark.parametrize("framework", framework_params())
def test_a_tokenizers_int64_output_feeds_the_onnx_encoder_unchanged(framework, hf, models, tmp_path):
    import torch

    encoded = hf["tokenizer"](SOURCES, padding=True, return_tensors="np")  # transformers' MarianTokenizer
    assert encoded["input_ids"].dtype == encoded["attention_mask"].dtype == np.int64
    assert encoded["attention_mask"].min() == 0  # padded
    mt = models[framework]
    export.to_onnx(mt.encoder(), tmp_path / "encoder.onnx")
    export.to_onnx(mt.decoder(), tmp_path / "decoder.onnx")
    source, width = ["batch_size", "encoder_sequence_length"], mt.config.d_model
    encoder = onnx_signature(tmp_path / "encoder.onnx")
    assert encoder["input_ids"] == encoder["attention_mask"] == ("INT64", source)
    assert encoder["encoder_hidden_states"] == encoder["cross_key_0"] == ("FLOAT", [*source, width])
    decoder = onnx_signature(tmp_path / "decoder.onnx")
    assert decoder["decoder_input_ids"] == ("INT64", ["batch_size", "decoder_sequence_length"])
    assert decoder["attention_mask"] == ("INT64", source) and decoder["cross_value_1"] == ("FLOAT", [*source, width])
    assert decoder["past_key_0"] == ("FLOAT", ["batch_size", "past_decoder_sequence_length", width])
    assert decoder["present_value_1"] == ("FLOAT", ["batch_size", "past_decoder_sequence_length + "
                                                   "decoder_sequence_length", width])
    hidden = load(tmp_path / "encoder.onnx").run(["encoder_hidden_states"], dict(encoded))[0]
    with torch.inference_mode():
        want = hf["model"].get_encoder()(**{k: torch.from_numpy(v) for k, v in encoded.items()}).last_hidden_state
    np.testing.assert_allclose(hidden, want.numpy(), atol=ATOL, rtol=0)


def test_sampling_is_seeded(models):
    mt = models["torch"]
    first = mt.translate(SOURCES, 8, do_sample=True, top_k=5, seed=3)
    assert first == mt.translate(SOURCES, 8, do_sample=True, top_k=5, seed=3)


def test_bad_inputs_say_what_is_wrong(hf, models, tmp_path):
    mt = models["torch"]
    with pytest.raises(DataError, match=r"attention_mask has shape \(1, 2\); input_ids have \(1, 3\)"):
        mt.generate(np.ones((1, 3), np.int64), np.ones((1, 2), np.int64))
    with pytest.raises(DataError, match=r"attention_mask takes integers .* got float64; pass mask.astype\('int64'\)"):
        mt.generate(np.ones((1, 3), np.int64), np.ones((1, 3)))
    with pytest.raises(DataError, match=r"max_new_tokens=100 exceeds the 64 positions"):
        mt.generate(np.ones((1, 3), np.int64), max_new_tokens=100)
    with pytest.raises(DataError, match=r"session must be a pair \(encoder, decoder\)"):
        mt.translate("a cat", 8, session=tmp_path / "marian.onnx")
    with pytest.raises(DataError, match=r"has no tokenizer"):
        zoo.load("marian", "torch", config={"d_model": 16, "encoder_layers": 1, "decoder_layers": 1,
                                            "vocab_size": 30, "pad_token_id": 29}).translate("a cat", 8)


def test_a_checkpoint_with_untied_embeddings_is_refused(hf, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "untied"
    shutil.copytree(hf["folder"], folder)
    state = load_file(str(folder / "model.safetensors"))
    state["lm_head.weight"] = state["model.shared.weight"] + 1.0
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"lm_head.weight differs from shared.weight"):
        zoo.load("marian", "torch", pretrained=folder)


def test_cli_exports_the_model_with_its_encoder_and_decoder(hf, models, tmp_path, capsys):
    from llmasos.cli import main

    path = tmp_path / "mt.onnx"
    assert main(["zoo", "export", "marian", "-o", str(path), "--framework", "torch",
                 "--pretrained", str(hf["folder"])]) == 0
    assert capsys.readouterr().out.count("verified") == 3
    session = (tmp_path / "mt-encoder.onnx", tmp_path / "mt-decoder.onnx")
    assert models["torch"].translate(SOURCES, 12, session=session) == hf["texts"]


def test_a_folder_of_another_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForCTC"]}))
    with pytest.raises(WeightsError, match=r"describes model_type 'wav2vec2' .*not 'marian'"):
        zoo.load("marian", "torch", pretrained=tmp_path)


@pytest.mark.tf
def test_moved_to_tf_it_still_translates_with_fixed_positions(hf, models):
    moved = models["torch"].to("tf")
    assert type(moved) is type(models["torch"]) and moved.framework == "tf"
    assert moved.translate(SOURCES, 12) == hf["texts"]
    trainable = {v.path for v in moved.backend_model.trainable_variables}
    assert not any("embed_positions" in path for path in trainable) and any("shared" in p for p in trainable)


def test_saved_and_loaded_it_is_still_a_translator(hf, models, tmp_path):
    from llmasos import Model

    models["torch"].save(tmp_path / "mt.h5")
    again = Model.load(tmp_path / "mt.h5", framework="torch")
    assert type(again) is type(models["torch"]) and again.frozen == models["torch"].frozen
    assert again.translate(SOURCES, 12) == hf["texts"]


@pytest.mark.parametrize("options", [
    {"num_beams": 4},
    {"num_beams": 3, "length_penalty": 0.6, "early_stopping": True, "forced_eos_token_id": 0},
    {"num_beams": 2, "early_stopping": "never", "length_penalty": 1.5},
], ids=["beams4", "beams3-penalty-early-forced-eos", "beams2-never"])
def test_beam_search_matches_transformers(hf, models, options):
    import torch

    batch = hf["batch"]
    pad = hf["model"].config.pad_token_id
    with torch.inference_mode():
        want = hf["model"].generate(**{k: torch.from_numpy(v) for k, v in batch.items()}, max_new_tokens=9,
                                    do_sample=False, bad_words_ids=[[pad]], **options).numpy()
    got = models["torch"].generate(batch["input_ids"], batch["attention_mask"], 9, **options)
    np.testing.assert_array_equal(got, want)


def test_the_folders_generation_config_sets_the_defaults(hf, models, tmp_path):
    """generation_config.json (beams, renormalised scores, forced EOS, max_length) is read as
    transformers reads it, so translate() gives what MarianMTModel.from_pretrained(...).generate does."""
    import shutil

    import torch
    import transformers

    folder = tmp_path / "configured"
    shutil.copytree(hf["folder"], folder)
    settings = json.loads((folder / "generation_config.json").read_text())
    pad = settings["pad_token_id"]
    settings.update({"num_beams": 3, "renormalize_logits": True, "forced_eos_token_id": 0, "max_length": 8,
                     "bad_words_ids": [[pad]]})
    (folder / "generation_config.json").write_text(json.dumps(settings))
    reference = transformers.MarianMTModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        want = reference.generate(**{k: torch.from_numpy(v) for k, v in hf["batch"].items()}).numpy()
    mt = zoo.load("marian", "torch", pretrained=folder)
    np.testing.assert_array_equal(mt.generate(hf["batch"]["input_ids"], hf["batch"]["attention_mask"]), want)
    assert want.shape[1] <= 8


def test_beam_search_and_sampling_exclude_each_other(models):
    with pytest.raises(DataError, match=r"num_beams > 1\) and do_sample=True exclude each other"):
        models["torch"].translate("a cat", 4, num_beams=2, do_sample=True)
    with pytest.raises(DataError, match=r"num_beams must be a positive int, got 0"):
        models["torch"].translate("a cat", 4, num_beams=0)


def test_beam_search_finds_likelier_translations_than_greedy(hf, models):
    """A check that the beam-search parity above is not greedy decoding in disguise: with these
    weights the beams change the outcome, each time to a likelier sequence."""
    batch, mt = hf["batch"], models["torch"]
    greedy = mt.generate(batch["input_ids"], batch["attention_mask"], 9)
    beams = mt.generate(batch["input_ids"], batch["attention_mask"], 9, num_beams=4, length_penalty=0.0)
    assert not np.array_equal(greedy, beams)
    for row, (g, b) in enumerate(zip(greedy, beams)):
        assert _log_likelihood(mt, batch, row, b) >= _log_likelihood(mt, batch, row, g) - 1e-4


def _log_likelihood(mt, batch, row, ids) -> float:
    """Sum of log-probabilities of ``ids`` after the start token, up to and including the first
    end of sentence, under the teacher-forced model."""
    eos = mt.config.eos_token_id
    ids = ids.tolist()
    length = ids.index(eos, 1) + 1 if eos in ids[1:] else len(ids)
    logits = mt.predict({"input_ids": batch["input_ids"][row:row + 1],
                         "attention_mask": batch["attention_mask"][row:row + 1],
                         "decoder_input_ids": np.array([ids[:length - 1]])})[0].astype(np.float64)
    logits[:, mt.config.pad_token_id] = -np.inf
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    return float(sum(log_probs[t, ids[t + 1]] for t in range(length - 1)))
