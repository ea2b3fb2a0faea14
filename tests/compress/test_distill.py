"""Knowledge distillation: the loss equals Hinton's formula as torchdistill's ``KDLoss`` writes it
(torch.nn.functional) in torch and TensorFlow; the teacher is a Model of either framework, an
``.h5`` or an ``.onnx``; rows without a label learn from the teacher alone; bad input is named."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Model, Optimizer, compress, losses
from llmasos.compress import NO_LABEL, Teacher
from llmasos.errors import DataError, SpecError, TrainingError

pytestmark = [pytest.mark.torch, pytest.mark.tf]

rng = np.random.default_rng(0)
STUDENT = rng.normal(scale=2.0, size=(8, 5)).astype(np.float32)
TEACHER = rng.normal(scale=3.0, size=(8, 5)).astype(np.float32)
LABELS = rng.integers(0, 5, 8)


def _batch_loss(framework: str, loss: losses.Loss, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if framework == "torch":
        import torch

        from llmasos.adapters.torch.losses import LOSS_OPS

        to = torch.from_numpy
    else:
        from llmasos.adapters.tf.losses import LOSS_OPS   # before TensorFlow: llmasos loads what must precede it
        import tensorflow as tf

        to = tf.constant
    return float(losses.batch_loss(LOSS_OPS, loss, to(y_true), to(y_pred)))


def _reference(student, teacher, labels, temperature, alpha) -> float:
    """torchdistill's KDLoss: ``alpha T² KL(p_t ‖ p_s)`` (batchmean) ``+ (1 - alpha) CE(y, s)``; a row
    without a label (-1) counts its KL term alone, with weight 1."""
    import torch
    import torch.nn.functional as F

    s, t, y = torch.from_numpy(student), torch.from_numpy(teacher), torch.from_numpy(labels)
    kl_rows = F.kl_div(F.log_softmax(s / temperature, dim=1), F.log_softmax(t / temperature, dim=1),
                       reduction="none", log_target=True).sum(1) * temperature ** 2
    labelled = y >= 0
    ce_rows = torch.zeros_like(kl_rows)
    ce_rows[labelled] = F.cross_entropy(s[labelled], y[labelled], reduction="none")
    rows = torch.where(labelled, alpha * kl_rows + (1 - alpha) * ce_rows, kl_rows)
    return rows.mean().item()


def _targets(labels: np.ndarray) -> np.ndarray:
    return np.column_stack([labels.astype(np.float32), TEACHER])


@pytest.mark.parametrize("temperature, alpha", [(4.0, 0.9), (1.0, 0.5), (2.0, 1.0), (3.0, 0.0)])
def test_loss_equals_kdloss_in_torch_and_tf(temperature, alpha):
    import torch
    import torch.nn.functional as F

    loss = losses.Distillation(temperature=temperature, alpha=alpha)
    reference = _reference(STUDENT, TEACHER, LABELS, temperature, alpha)
    # every row labelled: torchdistill's own batch form (batchmean KL, mean CE)
    s, t = torch.from_numpy(STUDENT), torch.from_numpy(TEACHER)
    kd = alpha * F.kl_div(F.log_softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1),
                          reduction="batchmean") * temperature ** 2 \
        + (1 - alpha) * F.cross_entropy(s, torch.from_numpy(LABELS))
    assert reference == pytest.approx(kd.item(), abs=1e-6)
    for framework in ("torch", "tf"):
        assert _batch_loss(framework, loss, _targets(LABELS), STUDENT) == pytest.approx(reference, abs=1e-6)


def test_rows_without_labels_count_the_teacher_alone():
    labels = LABELS.copy()
    labels[::3] = NO_LABEL
    loss = losses.Distillation(temperature=2.0, alpha=0.7)
    reference = _reference(STUDENT, TEACHER, labels, 2.0, 0.7)
    assert reference != pytest.approx(_reference(STUDENT, TEACHER, LABELS, 2.0, 0.7), abs=1e-3)
    for framework in ("torch", "tf"):
        assert _batch_loss(framework, loss, _targets(labels), STUDENT) == pytest.approx(reference, abs=1e-6)
    nothing = np.full(8, NO_LABEL)
    assert _batch_loss("torch", loss, _targets(nothing), STUDENT) == pytest.approx(
        _reference(STUDENT, TEACHER, LABELS, 2.0, 1.0), abs=1e-6)


def test_loss_is_named_and_checked():
    assert str(losses.get("kd(temperature=2.0)")) == "distillation(temperature=2.0)"
    with pytest.raises(TrainingError, match=r"temperature must be > 0, got 0"):
        losses.Distillation(temperature=0)
    with pytest.raises(TrainingError, match=r"temperature must be > 0, got -1"):
        losses.Distillation(temperature=-1.0)
    for alpha in (-0.1, 1.5):
        with pytest.raises(TrainingError, match=rf"alpha .* must be in \[0, 1\], got {alpha}"):
            losses.Distillation(alpha=alpha)


def _mlp(framework: str, hidden: int | None, classes: int = 3, softmax: bool = False) -> Model:
    model = Model(input_dim=6, output_dim=classes, framework=framework)
    if hidden:
        model.add_layer("Dense", hidden, activation="relu")
    return model.add_layer("Dense", classes, activation="softmax" if softmax else "linear")


@pytest.fixture(scope="module")
def problem():
    """Six features, three classes from two of them; a torch teacher ending in softmax, trained on all."""
    data_rng = np.random.default_rng(1)
    x = data_rng.normal(size=(240, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    teacher = _mlp("torch", 32, softmax=True)
    teacher.train(x, y, optimizer=Optimizer("Adam", lr=0.01), epochs=15, batch_size=32, seed=0, progress=False)
    return x, y, teacher


def _agreement(a: Model, b: Model, x: np.ndarray) -> float:
    return float(np.mean(np.argmax(a.predict(x), 1) == np.argmax(b.predict(x), 1)))


def test_torch_teacher_teaches_tf_student_without_labels(problem):
    x, y, teacher = problem
    assert np.mean(np.argmax(teacher.predict(x), 1) == y) > 0.9
    untaught = _agreement(teacher, _mlp("tf", 16).build(seed=0), x)
    student = _mlp("tf", 16)
    history = compress.distill(teacher, student, x, Optimizer("Adam", lr=0.01), epochs=15, temperature=2.0,
                               seed=0, progress=False)
    assert history["loss"][-1] < history["loss"][0]
    assert _agreement(teacher, student, x) > max(0.9, untaught + 0.2), untaught
    # afterwards the student evaluates as a classifier again (cross-entropy and accuracy)
    assert student.evaluate(x, y)["accuracy"] > 0.85


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_unlabelled_rows_train_as_alpha_one(problem, framework):
    """A row without a label learns from the teacher alone: the same weights as alpha=1 on labels."""
    x, y, teacher = problem
    runs = []
    for labels, alpha in ((np.full(len(x), NO_LABEL), 0.3), (y, 1.0)):
        student = _mlp(framework, None)
        compress.distill(teacher, student, (x, labels), Optimizer("SGD", lr=0.1), epochs=2, alpha=alpha,
                         temperature=3.0, seed=0, progress=False)
        runs.append(student.get_weights())
    for layer in runs[0]:
        for name in runs[0][layer]:
            np.testing.assert_allclose(runs[0][layer][name], runs[1][layer][name], atol=1e-6)


def test_unlabeled_keyword_adds_rows_that_learn_from_the_teacher(problem):
    x, y, teacher = problem
    few = 12
    alone = _mlp("torch", 16)
    compress.distill(teacher, alone, (x[:few], y[:few]), Optimizer("Adam", lr=0.01), epochs=15, seed=0,
                     progress=False)
    helped = _mlp("torch", 16)
    compress.distill(teacher, helped, (x[:few], y[:few]), Optimizer("Adam", lr=0.01), epochs=15, seed=0,
                     unlabeled=x[few:], progress=False)
    assert _agreement(teacher, helped, x) > _agreement(teacher, alone, x) + 0.05


@pytest.mark.parametrize("kind", ["h5", "onnx"])
def test_teacher_from_a_file_gives_the_logits(problem, tmp_path, kind):
    from llmasos import export

    x, _, teacher = problem
    path = tmp_path / f"teacher.{kind}"
    teacher.save(path) if kind == "h5" else export.to_onnx(teacher, path)
    logits = Teacher(path, framework="tf").logits(x)
    probabilities = teacher.predict(x)
    assert logits.shape == probabilities.shape
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), probabilities, atol=1e-5)
    # logits, not probabilities: the same as the teacher's last layer without its softmax
    np.testing.assert_allclose(logits, Teacher(teacher).logits(x), atol=1e-4)
    assert np.abs(logits).max() > 1.0
    student = _mlp("torch", None)
    compress.distill(path, student, x, Optimizer("Adam", lr=0.05), epochs=10, seed=0, progress=False)
    assert _agreement(teacher, student, x) > 0.7


def test_bad_teachers_and_labels_are_named(problem):
    x, y, teacher = problem
    with pytest.raises(SpecError, match=r"teacher gives 3 outputs per row but the student 4.*output_dim=3"):
        compress.distill(teacher, _mlp("torch", None, classes=4), (x, y), epochs=1, progress=False)
    bad = y.copy()
    bad[5] = 3
    with pytest.raises(DataError, match=r"label 3 is outside the student's classes 0..2.*-1 for a row without"):
        compress.distill(teacher, _mlp("torch", None), (x, bad), epochs=1, progress=False)
    bad[5] = -2
    with pytest.raises(DataError, match=r"label -2 is outside"):
        compress.distill(teacher, _mlp("torch", None), (x, bad), epochs=1, progress=False)
    with pytest.raises(SpecError, match=r"a teacher is an llmasos Model, an .h5 or an .onnx path; got dict"):
        compress.distill({"weights": 1}, _mlp("torch", None), x, epochs=1, progress=False)
    with pytest.raises(TrainingError, match=r"temperature must be > 0"):
        compress.distill(teacher, _mlp("torch", None), x, temperature=0.0, epochs=1, progress=False)
    with pytest.raises(DataError, match=r"240 input rows but 10 labels"):
        compress.distill(teacher, _mlp("torch", None), (x, y[:10]), epochs=1, progress=False)


def test_a_dataset_without_labels_learns_from_the_teacher_alone(problem):
    from llmasos import Dataset

    x, _, teacher = problem
    runs = []
    for data in (Dataset(x, mode="test"), x):
        student = _mlp("torch", None)
        compress.distill(teacher, student, data, Optimizer("SGD", lr=0.1), epochs=1, seed=0, progress=False)
        runs.append(student.get_weights()["dense"]["kernel"])
    assert not Dataset(x, mode="test").has_labels
    np.testing.assert_array_equal(runs[0], runs[1])
