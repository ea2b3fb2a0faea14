"""Marian fine-tuned for translation (issue 13, part 2): ``Dataset(pairs, text="en", target_text="de",
tokenizer=mt)`` makes labels as ``MarianTokenizer(text_target=...)`` does and teacher-forcing inputs
as transformers shifts them; the loss is ``MarianMTModel(..., labels=...)``'s; torch and TensorFlow
take the same steps; ``freeze="encoder"``/``"embeddings"`` keep those weights bit-identical; a
repeated pair is learnt; the result saves, loads as Marian and exports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from llmasos import Dataset, Model, Optimizer, export, zoo
from llmasos.errors import DataError, ZooError

from .conftest import assert_trained_alike

pytestmark = [pytest.mark.torch,  # the reference is transformers' torch model
              pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")]

WORDS = "the a cat dog sees runs house tree big small red green and with under over".split()
PAIRS = pd.DataFrame({"en": ["the big cat sees a small dog", "a red house", "the dog runs under the green tree",
                             "a cat"],
                      "de": ["a dog runs", "the house is red and big", "tree", "the small green cat sees a dog"]})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A random MarianMTModel without dropout (so a training step equals transformers' eval
    forward) saved with SentencePiece models trained here and a Marian vocab.json."""
    import sentencepiece
    import torch
    import transformers

    path = tmp_path_factory.mktemp("marian")
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(400)]
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_prefix=str(path / "spm"),
                                             vocab_size=36, model_type="unigram", minloglevel=2)
    for side in ("source", "target"):
        (path / f"{side}.spm").write_bytes((path / "spm.model").read_bytes())
    processor = sentencepiece.SentencePieceProcessor(model_file=str(path / "spm.model"))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    vocabulary = {"</s>": 0, "<unk>": 1, **{p: i + 2 for i, p in enumerate(p for p in pieces
                                                                          if p not in ("<unk>", "<s>", "</s>"))}}
    vocabulary["<pad>"] = len(vocabulary)
    (path / "vocab.json").write_text(json.dumps(vocabulary))
    size = len(vocabulary)
    config = transformers.MarianConfig(
        vocab_size=size, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=24,
        scale_embedding=True, activation_function="swish", pad_token_id=size - 1, decoder_start_token_id=size - 1,
        eos_token_id=0, forced_eos_token_id=None, init_std=0.3, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0)
    torch.manual_seed(0)
    model = transformers.MarianMTModel(config)
    with torch.no_grad():
        model.final_logits_bias.normal_(0.0, 0.5)
    model.save_pretrained(path)
    return path


def _reference(folder):
    import transformers

    return transformers.MarianTokenizer(vocab=str(folder / "vocab.json"), source_spm=str(folder / "source.spm"),
                                        target_spm=str(folder / "target.spm"))


@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.tf)])
def test_labels_inputs_and_loss_equal_transformers(framework, folder):
    import torch
    import transformers

    mt = zoo.load("marian", framework, pretrained=folder)
    pairs = Dataset(PAIRS, text="en", target_text="de", tokenizer=mt, mode="test")
    (x, y), = list(pairs.batches(len(PAIRS)))
    reference = _reference(folder)(PAIRS["en"].tolist(), text_target=PAIRS["de"].tolist(), padding=True,
                                   return_tensors="pt")
    labels = reference["labels"].masked_fill(reference["labels"] == mt.config.pad_token_id, -100)
    np.testing.assert_array_equal(x["input_ids"], reference["input_ids"].numpy())
    np.testing.assert_array_equal(x["attention_mask"], reference["attention_mask"].numpy())
    np.testing.assert_array_equal(y, labels.numpy())
    assert (y == -100).any() and x["decoder_input_ids"][0, 0] == mt.config.decoder_start_token_id
    model = transformers.MarianMTModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        out = model(input_ids=reference["input_ids"], attention_mask=reference["attention_mask"], labels=labels)
        shifted = transformers.models.marian.modeling_marian.shift_tokens_right(
            labels, mt.config.pad_token_id, mt.config.decoder_start_token_id)
    np.testing.assert_array_equal(x["decoder_input_ids"], shifted.numpy())
    result = mt.evaluate(pairs, batch_size=len(PAIRS))
    assert sorted(result) == ["loss", "perplexity"]
    assert abs(result["loss"] - float(out.loss)) <= 1e-5


@pytest.mark.tf
def test_three_adamw_steps_agree_between_torch_and_tensorflow(folder):
    """Three steps on per-batch-padded pairs (batches of 2, 2 then 4) from the same weights."""
    weights = {}
    for framework in ("torch", "tf"):
        mt = zoo.load("marian", framework, pretrained=folder)
        pairs = Dataset(PAIRS, text="en", target_text="de", tokenizer=mt, mode="test")
        history = mt.train(pairs, Optimizer("AdamW", lr=1e-2), epochs=1, batch_size=2, seed=0)
        mt.train(pairs, epochs=1, batch_size=4)
        weights[framework] = (mt.get_weights(), history["loss"][0])
    (torch_w, torch_loss), (tf_w, tf_loss) = weights["torch"], weights["tf"]
    assert abs(torch_loss - tf_loss) <= 1e-5
    assert_trained_alike(torch_w, tf_w)


@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.tf)])
@pytest.mark.parametrize("freeze", ["encoder", "embeddings"])
def test_frozen_parts_stay_bit_identical_and_the_rest_learns(framework, freeze, folder):
    mt = zoo.load("marian", framework, pretrained=folder, freeze=freeze)
    before = mt.get_weights()
    pairs = Dataset(PAIRS, text="en", target_text="de", tokenizer=mt)
    mt.train(pairs, Optimizer("AdamW", lr=1e-2), epochs=2, batch_size=2, seed=0)
    after = mt.get_weights()
    frozen = mt.layer_groups(mt.spec)[freeze]
    assert frozen and frozen <= set(after)
    for layer in after:
        same = all(np.array_equal(before[layer][n], after[layer][n]) for n in after[layer])
        fixed = layer.endswith("embed_positions")  # computed sinusoids never train
        assert same == (layer in frozen or fixed), layer


@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.tf)])
def test_a_repeated_pair_is_learnt(framework, folder):
    mt = zoo.load("marian", framework, pretrained=folder)
    pair = pd.DataFrame({"en": ["the big cat"] * 4, "de": ["a small green dog"] * 4})
    pairs = Dataset(pair, text="en", target_text="de", tokenizer=mt)
    before = mt.evaluate(pairs)["loss"]
    mt.train(pairs, Optimizer("AdamW", lr=5e-3), epochs=40, batch_size=4, seed=0)
    after = mt.evaluate(pairs)
    assert before > 2.0 and after["loss"] < 0.1 * before and after["perplexity"] < 1.5
    assert mt.translate("the big cat", num_beams=1, max_new_tokens=10) == "a small green dog"


def test_a_fine_tuned_marian_saves_loads_as_marian_and_exports(folder, tmp_path):
    mt = zoo.load("marian", "torch", pretrained=folder, freeze="encoder")
    pairs = Dataset(PAIRS, text="en", target_text="de", tokenizer=mt, mode="test")
    mt.train(pairs, Optimizer("AdamW", lr=1e-2), epochs=2, batch_size=4, seed=0)
    trained = mt.evaluate(pairs)
    mt.save(tmp_path / "tuned.h5")
    loaded = Model.load(tmp_path / "tuned.h5")
    assert type(loaded).__name__ == "Marian" and loaded.tokenizer is not None
    again = Dataset(PAIRS, text="en", target_text="de", tokenizer=loaded, mode="test")
    assert loaded.evaluate(again)["loss"] == pytest.approx(trained["loss"], abs=1e-6)
    export.to_onnx(loaded, tmp_path / "tuned.onnx")   # verified against the model by the export itself
    import onnxruntime

    x, _ = pairs.arrays()
    session = onnxruntime.InferenceSession(str(tmp_path / "tuned.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, x)[0], mt.predict(x), atol=1e-4)


def test_bad_pairs_get_clear_errors(folder):
    mt = zoo.load("marian", "torch", pretrained=folder)
    with pytest.raises(DataError, match=r"no column 'fr'; columns: 'en', 'de'"):
        Dataset(PAIRS, text="en", target_text="fr", tokenizer=mt)
    with pytest.raises(DataError, match=r"target text 1 is '  ', not a non-empty string"):
        Dataset(pd.DataFrame({"en": ["a", "b"], "de": ["c", "  "]}), text="en", target_text="de", tokenizer=mt)
    long = pd.DataFrame({"en": ["a cat"], "de": [" ".join(["the big red house"] * 8)]})
    with pytest.raises(DataError, match=r"the model takes at most 24 \(truncation=True cuts it to 24\)"):
        Dataset(long, text="en", target_text="de", tokenizer=mt)
    cut = Dataset(long, text="en", target_text="de", tokenizer=mt, truncation=True)
    labels = cut.arrays()[1]
    assert labels.shape == (1, 24) and labels[0, -1] == mt.config.eos_token_id  # </s> kept last
    with pytest.raises(DataError, match="sequence-to-sequence zoo model"):
        Dataset(PAIRS, text="en", target_text="de", tokenizer=str(folder / "vocab.json"))
    with pytest.raises(DataError, match="names a column of a table"):
        Dataset(["a cat"], text=0, target_text="de", tokenizer=mt)
    with pytest.raises(ZooError, match="freeze must be one of"):
        zoo.load("marian", "torch", pretrained=folder, freeze="decoder")
