"""Hint matching (FitNets): ``distill(..., hints={student_layer: teacher_layer})`` regresses the
student layer's output, through a learned projection, on the teacher layer's. The loss equals the
formula in torch and TensorFlow on fixed weights; training pulls the projected output towards the
teacher's; a hint of weight 0 changes nothing; bad hints are named."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Model, Optimizer, compress
from llmasos.compress.hints import HintDistillation, hint_student, projection_name
from llmasos.compress.teacher import Teacher
from llmasos.errors import SpecError, TrainingError

from ..conftest import framework_params

rng = np.random.default_rng(0)


def _dense_pair(framework: str) -> tuple[Model, Model]:
    teacher = Model(input_dim=6, output_dim=3, framework="torch")
    teacher.add_layer("Dense", 32, activation="relu", name="t_hidden").add_layer("Dense", 3, activation="softmax")
    student = Model(input_dim=6, output_dim=3, framework=framework)
    student.add_layer("Dense", 8, activation="relu", name="s_hidden").add_layer("Dense", 3, activation="softmax")
    return teacher, student


def _conv_pair(framework: str) -> tuple[Model, Model]:
    teacher = Model(input_shape=(1, 8, 8), output_dim=4, framework="tf")
    teacher.add_layer("Conv2D", 6, kernel_size=3, padding="same", activation="relu", name="t_maps")
    teacher.add_layer("Flatten").add_layer("Dense", 4)
    student = Model(input_shape=(1, 8, 8), output_dim=4, framework=framework)
    student.add_layer("Conv2D", 2, kernel_size=3, padding="same", activation="relu", name="s_maps")
    student.add_layer("Flatten").add_layer("Dense", 4)
    return teacher, student


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


@pytest.mark.parametrize("framework", framework_params())
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_loss_equals_the_formula_on_fixed_weights(framework, kind):
    """``alpha T² KL + (1 - alpha) CE + w · mean((s_h P - t_h)²)``, computed here in float64 from the
    student's own outputs and the projection's weights, against the framework's loss."""
    teacher, student = (_dense_pair if kind == "dense" else _conv_pair)(framework)
    s_layer, t_layer = ("s_hidden", "t_hidden") if kind == "dense" else ("s_maps", "t_maps")
    x = rng.normal(size=(10, *student.spec.inputs[0].shape)).astype(np.float32)
    student.build(seed=1)
    trained, sizes = hint_student(student, teacher.spec, {s_layer: t_layer}, seed=1)
    classes = student.classes
    t_size = sizes[0]
    labels = np.array([0, 1, -1, 2, 0, 1, -1, 2, 0, 1])     # -1: a row without a label
    teacher_logits = rng.normal(scale=2.0, size=(len(x), classes)).astype(np.float32)
    teacher_hint = rng.normal(size=(len(x), t_size)).astype(np.float32)
    targets = np.column_stack([labels.astype(np.float32), teacher_logits, teacher_hint]).astype(np.float32)
    T, alpha, weight = 2.0, 0.7, 0.5
    loss = HintDistillation(temperature=T, alpha=alpha, hint_weight=weight, classes=classes, sizes=sizes)
    measured = trained.evaluate(x, targets, loss=loss, batch_size=len(x))["loss"]

    # the reference, from the student's layers (its own framework) and the projection's neutral weights
    inner = student._like(framework)
    inner.spec.layer(inner.spec.logits_layer() or inner.spec.outputs[0]).config["activation"] = "linear"
    inner.spec.set_outputs([inner.spec.outputs[0], s_layer])
    inner.set_weights(student.get_weights())
    s_logits, hidden = (np.asarray(a, np.float64) for a in inner.predict(x))
    kernel = np.asarray(trained.get_weights()[projection_name(s_layer)]["kernel"], np.float64)
    if kind == "dense":
        projected = hidden @ kernel                                        # neutral Dense kernel: (in, out)
    else:
        projected = np.einsum("nchw,ijco->nohw", hidden, kernel).reshape(len(x), -1)   # 1x1 conv, (kh, kw, in, out)
    np.testing.assert_allclose(np.asarray(trained.predict(x))[:, classes:], projected, atol=1e-5)
    log_t, log_s = _log_softmax(teacher_logits.astype(np.float64) / T), _log_softmax(s_logits / T)
    kl = (np.exp(log_t) * (log_t - log_s)).sum(1) * T * T
    ce = -_log_softmax(s_logits)[np.arange(len(x)), np.maximum(labels, 0)]
    kd = np.where(labels >= 0, alpha * kl + (1 - alpha) * ce, kl)
    hint = weight * ((projected - teacher_hint) ** 2).mean(1)
    assert measured == pytest.approx(float(np.mean(kd + hint)), abs=1e-6)
    assert float(np.mean(hint)) > 0.1                                      # the hint term is really in it


@pytest.fixture(scope="module")
def problem():
    data_rng = np.random.default_rng(1)
    x = data_rng.normal(size=(240, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    teacher, _ = _dense_pair("torch")
    teacher.train(x, y, optimizer=Optimizer("Adam", lr=0.01), epochs=10, batch_size=32, seed=0, progress=False)
    return x, y, teacher


def _hint_mse(teacher: Model, trained: Model, x: np.ndarray, classes: int) -> float:
    _, (found,) = Teacher(teacher).outputs(x, ["t_hidden"])
    return float(np.mean((np.asarray(trained.predict(x))[:, classes:] - found) ** 2))


@pytest.mark.parametrize("framework", framework_params())
def test_the_projected_student_layer_moves_towards_the_teacher_layer(problem, framework):
    x, y, teacher = problem
    _, fresh = _dense_pair(framework)
    fresh.build(seed=0)
    untrained = _hint_mse(teacher, hint_student(fresh, teacher.spec, {"s_hidden": "t_hidden"}, seed=0)[0], x, 3)
    _, student = _dense_pair(framework)
    history = compress.distill(teacher, student, (x, y), Optimizer("Adam", lr=0.01), epochs=4, seed=0,
                               hints={"s_hidden": "t_hidden"}, hint_weight=1.0, progress=False)
    mse = history["hint_mse"]
    assert len(mse) == 4 and all(b < a for a, b in zip(mse, mse[1:])), mse
    assert mse[-1] < 0.6 * untrained, (untrained, mse)
    assert history["loss"][-1] < history["loss"][0]
    # the student keeps its own layers (no projection), ends in its softmax and evaluates as a classifier
    assert set(student.get_weights()) == {"s_hidden", "dense"}
    assert student.spec.final_activation() == "softmax"
    assert np.allclose(student.predict(x).sum(1), 1.0, atol=1e-5)
    assert "accuracy" in student.evaluate(x, y)


@pytest.mark.torch
def test_a_hint_of_weight_zero_trains_the_student_as_plain_distillation(problem):
    x, y, teacher = problem
    runs = []
    for hints in (None, {"s_hidden": "t_hidden"}):
        _, student = _dense_pair("torch")
        compress.distill(teacher, student, (x, y), Optimizer("Adam", lr=0.01), epochs=2, seed=0, hints=hints,
                         hint_weight=0.0, progress=False)
        runs.append(student.get_weights())
    for layer in runs[0]:
        for name in runs[0][layer]:
            np.testing.assert_allclose(runs[1][layer][name], runs[0][layer][name], atol=1e-6)


@pytest.mark.torch
def test_bad_hints_are_named(problem, tmp_path):
    from llmasos import export

    x, y, teacher = problem
    _, student = _dense_pair("torch")
    export.to_onnx(teacher, tmp_path / "teacher.onnx")
    with pytest.raises(SpecError, match=r"an \.onnx teacher does not show.*Model or an \.h5"):
        compress.distill(tmp_path / "teacher.onnx", student, x, epochs=1, hints={"s_hidden": "t_hidden"})
    with pytest.raises(SpecError, match=r"the teacher has no layer 'nope'; its layers: t_hidden, dense"):
        compress.distill(teacher, student, x, epochs=1, hints={"s_hidden": "nope"})
    with pytest.raises(SpecError, match=r"the student has no layer 'nope'"):
        compress.distill(teacher, student, x, epochs=1, hints={"nope": "t_hidden"})
    with pytest.raises(SpecError, match=r"hints= maps student layer names to teacher layer names"):
        compress.distill(teacher, student, x, epochs=1, hints=["s_hidden"])
    with pytest.raises(TrainingError, match=r"hint_weight must be a number >= 0, got -1"):
        compress.distill(teacher, student, x, epochs=1, hints={"s_hidden": "t_hidden"}, hint_weight=-1)
    conv_teacher, _ = _conv_pair("torch")
    with pytest.raises(SpecError, match=r"hint 's_hidden' -> 't_maps': the student layer gives \(8,\) per row "
                                        r"and the teacher layer \(6, 8, 8\)"):
        hint_student(student, conv_teacher.spec, {"s_hidden": "t_maps"}, seed=0)
