"""Training text models: class ids are fixed once per model (its labels, else its first training
set), so a validation set lacking a class means the same ids; frozen layers through the one
``freeze``/``unfreeze`` API, with computed weights (Marian's positions) never trained."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer, export, zoo
from llmasos.errors import DataError, SpecError

from ..conftest import FRAMEWORKS, framework_params

BERT = {"vocab_size": 16, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 16, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0}
WORDS = ["[PAD]", "[UNK]", "good", "bad", "so", "film", "plot", "ok"]
SIGNAL = {"pos": "good", "neg": "bad", "neutral": "ok"}


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def _reviews(labels: list[str]) -> list[str]:
    return [f"film {SIGNAL[label]} plot so" for label in labels]


def _bert(framework: str, **config) -> Model:
    return zoo.load("bert", framework, config={**BERT, **config}, task="text-classification", num_labels=3,
                    tokenizer=_tokenizer(), seed=0)


def _train(model: Model, labels: list[str], validation=None) -> None:
    model.train(model.dataset(_reviews(labels), labels), Optimizer("Adam", lr=1e-2), epochs=2, batch_size=8,
                validation=validation, seed=0, progress=False)


TRAIN = ["neg", "pos", "neutral", "pos"] * 6
VALIDATION = ["pos", "neutral", "neutral", "pos", "pos", "neutral"]   # no "neg"


@pytest.mark.parametrize("framework", framework_params())
def test_a_validation_set_lacking_a_class_keeps_the_models_ids(framework):
    """The validation set alone numbers its classes neutral=0, pos=1; the model's ids are
    neg=0, neutral=1, pos=2 (its first training set's): evaluation must use the model's."""
    model = _bert(framework)
    validation = model.dataset(_reviews(VALIDATION), VALIDATION, mode="test")  # made before the model had names
    assert validation.classes == ["neutral", "pos"]
    _train(model, TRAIN, validation)
    assert model.metadata["labels"] == ["neg", "neutral", "pos"]
    probabilities = model.predict(validation)
    ids = np.array([model.metadata["labels"].index(label) for label in VALIDATION])
    result = model.evaluate(validation)
    expected_loss = -np.mean(np.log(probabilities[np.arange(len(ids)), ids]))
    np.testing.assert_allclose(result["loss"], expected_loss, rtol=1e-4)
    predicted = [model.metadata["labels"][i] for i in probabilities.argmax(axis=1)]
    assert result["accuracy"] == pytest.approx(np.mean(np.array(predicted) == np.array(VALIDATION)))
    # the validation rows of the history were computed with the same ids
    assert model.history.epochs[-1]["val_loss"] == pytest.approx(result["loss"], rel=1e-4)


@pytest.mark.parametrize("framework", framework_params())
def test_a_model_with_named_labels_numbers_every_dataset_by_them(framework):
    model = _bert(framework, id2label={0: "pos", 1: "neg", 2: "neutral"})
    train = model.dataset(_reviews(TRAIN), TRAIN)
    assert train.classes == ["pos", "neg", "neutral"]
    assert train.arrays()[1][:3].tolist() == [1, 0, 2]
    _train(model, TRAIN)
    assert model.metadata["labels"] == ["pos", "neg", "neutral"]


@pytest.mark.parametrize("framework", framework_params())
def test_an_unseen_label_is_an_error_naming_it(framework):
    model = _bert(framework)
    _train(model, TRAIN)
    with pytest.raises(DataError, match=r"label\(s\) 'angry' are not among the model's labels 'neg', 'neutral', 'pos'"):
        model.dataset(["film bad"], ["angry"])
    # a dataset tokenised without the model is numbered when the model takes it
    elsewhere = Dataset(["film bad", "film good"], ["angry", "pos"], text="review", tokenizer=_tokenizer())
    assert elsewhere.classes == ["angry", "pos"]
    with pytest.raises(DataError, match=r"'angry' are not among the model's labels"):
        model.evaluate(elsewhere)
    with pytest.raises(DataError, match=r"'angry' are not among the model's labels"):
        model.train(elsewhere, epochs=1, progress=False)
    four = ["neg", "pos", "neutral", "angry"]
    with pytest.raises(DataError, match=r"the training labels name 4 classes \(angry, neg, neutral, pos\) but the "
                                        r"model has 3 outputs"):
        _bert(framework).train(Dataset(["film"] * 4, four, text="review", tokenizer=_tokenizer()), progress=False)


@pytest.mark.parametrize("framework", framework_params())
def test_the_labels_survive_save_load_and_export(framework, tmp_path):
    pytest.importorskip("onnxruntime")
    model = _bert(framework)
    _train(model, ["pos", "neutral"] * 8)  # two of its three outputs named; the third keeps a placeholder
    assert model.metadata["labels"] == ["neutral", "pos", "LABEL_2"]
    model.save(tmp_path / "m.h5")
    other = next((name for name in FRAMEWORKS if name != framework), framework)
    loaded = Model.load(tmp_path / "m.h5", framework=other)
    assert loaded.metadata["labels"] == ["neutral", "pos", "LABEL_2"]
    loaded.tokenizer = model.tokenizer  # given as an object, not a folder the file could point to
    texts = ["film good", "film ok", "plot good so"]
    assert loaded.classify(texts) == model.classify(texts)
    assert set(model.classify(texts)) <= {"neutral", "pos", "LABEL_2"}
    assert loaded.dataset(["film ok"], ["pos"]).classes == ["neutral", "pos", "LABEL_2"]
    export.to_onnx(model, tmp_path / "m.onnx")
    assert export.info(tmp_path / "m.onnx")["labels"] == ["neutral", "pos", "LABEL_2"]


# -- frozen layers of text models: the one Model API ---------------------------------------------


@pytest.mark.torch
def test_text_models_freeze_their_backbone_and_keep_computed_weights_frozen(tmp_path):
    bert = zoo.load("bert", "torch", config=BERT, task="text-classification", num_labels=2, freeze="backbone")
    assert bert.frozen == {layer.name for layer in bert.spec.layers} - {"classifier"}
    bert.save(tmp_path / "bert.h5")
    assert Model.load(tmp_path / "bert.h5", framework="torch").unfreeze("backbone").frozen == set()

    positions = {"encoder.embed_positions", "decoder.embed_positions"}
    mt = zoo.load("marian", "torch", config={"d_model": 16, "encoder_layers": 1, "decoder_layers": 1,
                                             "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                                             "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "vocab_size": 30,
                                             "pad_token_id": 29, "max_position_embeddings": 16})
    assert mt.frozen == positions
    assert mt.unfreeze().frozen == positions  # sinusoids are computed, never trained
    with pytest.raises(SpecError, match=r"'decoder.embed_positions' hold\(s\) computed weights"):
        mt.unfreeze("decoder.embed_positions")
    with pytest.raises(SpecError, match=r"freeze\('backbone'\) needs a model that names its head"):
        mt.freeze("backbone")  # a translation model has no separate head
