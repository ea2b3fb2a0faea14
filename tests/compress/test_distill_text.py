"""Text classifiers distil as any model: a BERT teacher's logits teach a BERT student made by
``teacher.shrink`` on the same text Dataset it trains on (several inputs, each batch padded on its
own), with or without labels; the student's agreement with the teacher rises."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Optimizer, compress, zoo
from llmasos.errors import DataError, SpecError

from ..conftest import framework_params

BERT = {"vocab_size": 16, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 16, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0}
WORDS = ["[PAD]", "[UNK]", "good", "bad", "so", "film", "plot", "ok", "very", "not", "the", "was"]
SIGNAL = {"pos": "good", "neg": "bad", "neutral": "ok"}


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def _reviews(count: int, seed: int) -> tuple[list[str], list[str]]:
    """Reviews of 2 to 7 words whose one signal word says the label; lengths differ, so batches pad."""
    rng = np.random.default_rng(seed)
    labels = [["neg", "pos", "neutral"][i] for i in rng.integers(0, 3, count)]
    filler = ["so", "film", "plot", "very", "the", "was", "not"]
    texts = [" ".join([*rng.choice(filler, rng.integers(1, 4)), SIGNAL[label], *rng.choice(filler, rng.integers(0, 4))])
             for label in labels]
    return texts, labels


def _agreement(a, b, data) -> float:
    return float(np.mean(a.predict(data).argmax(1) == b.predict(data).argmax(1)))


@pytest.fixture(scope="module", params=framework_params())
def teacher(request):
    model = zoo.load("bert", request.param, config=BERT, task="text-classification", num_labels=3,
                     tokenizer=_tokenizer(), seed=0)
    texts, labels = _reviews(120, 0)
    model.train(model.dataset(texts, labels), Optimizer("Adam", lr=1e-2), epochs=4, batch_size=16, seed=0,
                progress=False)
    return model


@pytest.mark.slow
def test_a_shrunk_bert_learns_the_teachers_logits_from_texts_alone(teacher):
    texts, labels = _reviews(120, 1)
    labelled = teacher.dataset(texts, labels, mode="test")
    assert teacher.evaluate(labelled)["accuracy"] > 0.95
    student = teacher.shrink(layers=[0])
    before = _agreement(teacher, student, labelled)
    history = compress.distill(teacher, student, teacher.dataset(texts), Optimizer("Adam", lr=1e-2), epochs=3,
                               batch_size=16, temperature=2.0, seed=0, progress=False)   # no labels: the teacher alone
    assert history["loss"][-1] < history["loss"][0]
    after = _agreement(teacher, student, labelled)
    assert after > max(0.95, before + 0.1), (before, after)
    # afterwards it is a text classifier as before: the teacher's labels, cross-entropy and accuracy
    assert student.metadata["labels"] == teacher.metadata["labels"] == ["neg", "neutral", "pos"]
    result = student.evaluate(labelled)
    assert result["accuracy"] == pytest.approx(float(np.mean(
        np.array(teacher.metadata["labels"])[student.predict(labelled).argmax(1)] == np.array(labels))))


@pytest.mark.slow
def test_labelled_texts_and_validation_distil_too(teacher):
    texts, labels = _reviews(60, 2)
    student = teacher.shrink(layers=[1])
    history = compress.distill(teacher, student, teacher.dataset(texts, labels), Optimizer("Adam", lr=1e-2),
                               epochs=2, batch_size=16, alpha=0.5, seed=0, progress=False,
                               validation=teacher.dataset(*_reviews(30, 3), mode="test"))
    assert len(history["val_loss"]) == 2 and history["val_loss"][-1] < history["val_loss"][0]


def test_texts_refuse_unlabeled_arrays_and_other_labels(teacher):
    texts, labels = _reviews(8, 4)
    student = teacher.shrink(layers=[0])
    with pytest.raises(DataError, match=r"texts without labels are a text Dataset of their own"):
        compress.distill(teacher, student, teacher.dataset(texts, labels), unlabeled=np.zeros((2, 3)), epochs=1)
    student.metadata["labels"] = ["pos", "neg", "neutral"]
    with pytest.raises(SpecError, match=r"the teacher's classes \['neg', 'neutral', 'pos'\] are not the student's"):
        compress.distill(teacher, student, teacher.dataset(texts, labels), epochs=1)
