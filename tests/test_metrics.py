"""Streaming metrics (llmasos.metrics) against scikit-learn on the same predictions, fed in uneven
batches so that a wrong accumulation (averaging batch results, resetting counts) fails.

Tolerances: the counting metrics (accuracy, top-k, precision/recall/F1) are exact ratios of
integers, so they must equal scikit-learn's to float rounding (1e-12). AUC is exact too (all
scores kept, mid-ranks for ties): it differs from scikit-learn's trapezoids only by the rounding
of float64 sums over n <= 1000 terms, far below 1e-9. MAE and RMSE sum in float64: 1e-9 relative.
Perplexity is checked against exp(scikit-learn's log_loss) on probabilities computed in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from llmasos.errors import TrainingError
from llmasos.metrics import Batch, get, make_metrics, roc_auc

RNG = np.random.default_rng(0)


def _stream(names, loss, outputs, target, sizes=(7, 1, 50, 13)):
    """Metrics fed batch by batch in uneven pieces; {name: result}."""
    metrics = make_metrics(names, loss)
    kind = {"cross_entropy": "classes", "binary_cross_entropy": "binary"}.get(loss, "values")
    start, i = 0, 0
    while start < len(target):
        stop = start + sizes[i % len(sizes)]
        batch = Batch(outputs[start:stop], target[start:stop], kind)
        for metric in metrics:
            metric.update(batch)
        start, i = stop, i + 1
    return {m.name: m.result() for m in metrics}


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def multiclass():
    y = RNG.integers(0, 8, 400)
    logits = RNG.normal(size=(400, 8)).astype(np.float32)
    logits[np.arange(400), y] += 1.0           # better than chance, not perfect
    return logits, y


def test_multiclass_counting_metrics_equal_sklearn(multiclass):
    logits, y = multiclass
    pred = logits.argmax(1)
    names = ["accuracy", "precision", "recall", "f1", "f1_micro", "precision_micro", "recall_macro", "top3",
             "top_k_accuracy"]
    got = _stream(names, "cross_entropy", logits, y)
    want = {"accuracy": sk.accuracy_score(y, pred),
            "precision": sk.precision_score(y, pred, average="macro", zero_division=0),
            "recall": sk.recall_score(y, pred, average="macro", zero_division=0),
            "f1": sk.f1_score(y, pred, average="macro", zero_division=0),
            "f1_micro": sk.f1_score(y, pred, average="micro"),
            "precision_micro": sk.precision_score(y, pred, average="micro"),
            "recall_macro": sk.recall_score(y, pred, average="macro"),
            "top3": sk.top_k_accuracy_score(y, logits, k=3, labels=range(8)),
            "top_k_accuracy": sk.top_k_accuracy_score(y, logits, k=5, labels=range(8))}
    for name in names:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name
    assert want["top3"] < 1.0 and want["f1"] < 1.0      # the cases are not trivial


def test_macro_leaves_out_classes_absent_from_labels_and_predictions():
    # 4 outputs, class 3 never labelled nor predicted: scikit-learn averages over 3 classes
    logits = np.array([[3, 0, 0, -9], [0, 3, 0, -9], [0, 0, 3, -9], [3, 0, 0, -9], [0, 3, 0, -9]], np.float32)
    y = np.array([0, 1, 2, 1, 1])
    got = _stream(["f1_macro"], "cross_entropy", logits, y, sizes=(2,))
    assert got["f1_macro"] == pytest.approx(sk.f1_score(y, logits.argmax(1), average="macro"), abs=1e-12)


def test_binary_sigmoid_metrics_equal_sklearn():
    y = RNG.integers(0, 2, 300)
    logits = (RNG.normal(size=(300, 1)) + 1.2 * (y[:, None] - 0.5)).astype(np.float32)
    pred = (logits[:, 0] > 0).astype(int)
    got = _stream(["accuracy", "precision", "recall", "f1", "auc", "f1_macro"], "binary_cross_entropy",
                  logits, y[:, None].astype(np.float32))
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, pred), abs=1e-12)
    assert got["precision"] == pytest.approx(sk.precision_score(y, pred), abs=1e-12)
    assert got["recall"] == pytest.approx(sk.recall_score(y, pred), abs=1e-12)
    assert got["f1"] == pytest.approx(sk.f1_score(y, pred), abs=1e-12)
    assert got["f1_macro"] == pytest.approx(sk.f1_score(y, pred, average="macro"), abs=1e-12)
    assert got["auc"] == pytest.approx(sk.roc_auc_score(y, logits[:, 0]), abs=1e-9)
    # the probabilities give the same AUC (the sigmoid is monotonic)
    assert got["auc"] == pytest.approx(sk.roc_auc_score(y, 1 / (1 + np.exp(-logits[:, 0].astype(np.float64)))),
                                       abs=1e-9)


def test_two_softmax_outputs_are_binary_by_default():
    y = RNG.integers(0, 2, 200)
    logits = RNG.normal(size=(200, 2)).astype(np.float32)
    logits[np.arange(200), y] += 0.7
    pred = logits.argmax(1)
    got = _stream(["f1", "auc"], "cross_entropy", logits, y)
    assert got["f1"] == pytest.approx(sk.f1_score(y, pred), abs=1e-12)
    assert got["auc"] == pytest.approx(sk.roc_auc_score(y, _softmax(logits.astype(np.float64))[:, 1]), abs=1e-9)


def test_one_vs_rest_auc_equals_sklearn(multiclass):
    logits, y = multiclass
    got = _stream(["auc"], "cross_entropy", logits, y)
    want = sk.roc_auc_score(y, _softmax(logits.astype(np.float64)), multi_class="ovr", average="macro")
    assert got["auc"] == pytest.approx(want, abs=1e-9)


def test_auc_with_ties_equals_sklearn():
    scores = RNG.integers(0, 4, 500).astype(np.float64)      # heavy ties
    truth = RNG.random(500) < 0.3 + 0.1 * scores
    assert roc_auc(scores, truth) == pytest.approx(sk.roc_auc_score(truth, scores), abs=1e-9)
    assert math.isnan(roc_auc(scores, np.zeros(500, bool)))


def test_regression_metrics_equal_sklearn():
    target = RNG.normal(size=(250, 1)).astype(np.float32)
    outputs = (target + RNG.normal(scale=0.3, size=(250, 1))).astype(np.float32)
    got = _stream(["mae", "rmse"], "mse", outputs, target)
    target, outputs = target.astype(np.float64), outputs.astype(np.float64)   # scikit-learn sums in float32 else
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(target, outputs), rel=1e-9)
    assert got["rmse"] == pytest.approx(sk.root_mean_squared_error(target, outputs), rel=1e-9)


def test_perplexity_is_exp_of_token_cross_entropy_and_skips_padding():
    logits = RNG.normal(size=(6, 4, 7)).astype(np.float32)      # (batch, tokens, vocabulary)
    labels = RNG.integers(0, 7, (6, 4))
    labels[:, -1] = -100                                       # padding, left out
    got = _stream(["perplexity", "accuracy"], "cross_entropy", logits, labels, sizes=(4, 2))
    keep = labels.reshape(-1) != -100
    flat, kept = logits.reshape(-1, 7)[keep].astype(np.float64), labels.reshape(-1)[keep]
    assert got["perplexity"] == pytest.approx(math.exp(sk.log_loss(kept, _softmax(flat), labels=range(7))), rel=1e-9)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(kept, flat.argmax(1)), abs=1e-12)


def test_unknown_or_misapplied_metrics_are_clear_errors():
    with pytest.raises(TrainingError, match=r"unknown metric 'f2'; known: accuracy, top_k_accuracy.*auc, mae, rmse"):
        get("f2")
    with pytest.raises(TrainingError, match="metric 'rmse' applies to regression values; the loss 'cross_entropy'"):
        make_metrics(["rmse"], "cross_entropy")
    with pytest.raises(TrainingError, match="must be unique"):
        make_metrics(["accuracy", "accuracy"], "cross_entropy")
    with pytest.raises(TrainingError, match="average='binary' needs two classes"):
        _stream(["f1_binary"], "cross_entropy", RNG.normal(size=(10, 3)), RNG.integers(0, 3, 10))


def test_metrics_read_what_the_loss_reads():
    from llmasos.metrics import batches_for, output_kind

    assert [output_kind(x) for x in ("focal(multiclass=True)", "focal(multiclass=False)", "huber", "ctc",
                                     "cross_entropy(label_smoothing=0.1)")] == \
        ["classes", "binary", "values", "sequence", "classes"]
    with pytest.raises(TrainingError, match=r"metric 'accuracy' applies to .*; the loss 'ctc' gives label sequences"):
        make_metrics(["accuracy"], "ctc")
    # a causal LM's loss predicts token t+1 from position t: perplexity reads the same pairs
    logits = RNG.normal(size=(3, 5, 6)).astype(np.float32)
    ids = RNG.integers(0, 6, (3, 5))
    metric = make_metrics(["perplexity"], "sequence_cross_entropy(shift=True)")[0]
    metric.update(batches_for("sequence_cross_entropy(shift=True)")(logits, ids))
    shifted, targets = logits[:, :-1].reshape(-1, 6).astype(np.float64), ids[:, 1:].reshape(-1)
    assert metric.result() == pytest.approx(math.exp(sk.log_loss(targets, _softmax(shifted), labels=range(6))),
                                            rel=1e-9)
