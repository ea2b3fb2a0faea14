"""compress.compare: one row a model, measured as its ONNX file."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer, compress, export
from llmasos.errors import DataError

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    folder = tmp_path_factory.mktemp("compare")
    teacher = Model(input_dim=64, output_dim=10, framework="torch", name="teacher")
    teacher.add_layer("Dense", 128, activation="relu").add_layer("Dense", 10, activation="softmax")
    student = Model(input_dim=64, output_dim=10, framework="torch", name="student")
    student.add_layer("Dense", 16, activation="relu").add_layer("Dense", 10, activation="softmax")
    for model in (teacher, student):
        model.train(x[:1400], y[:1400], optimizer=Optimizer("Adam", lr=1e-2), epochs=3, seed=0, progress=False)
    export.to_onnx(teacher, folder / "teacher.onnx")
    export.quantize(folder / "teacher.onnx", folder / "teacher.int8.onnx")
    return teacher, student, folder, (x[1400:], y[1400:])


def test_one_row_a_model_with_its_file_and_numbers(models, tmp_path):
    teacher, student, folder, test = models
    table = compress.compare(teacher, student, folder / "teacher.int8.onnx", test, seconds=0.05)
    assert [row["name"] for row in table.rows] == ["teacher", "student", "teacher.int8.onnx"]
    teacher_row, student_row, int8_row = table.rows
    assert teacher_row["parameters"] == 64 * 128 + 128 + 128 * 10 + 10
    assert student_row["parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    assert int8_row["size_mb"] == pytest.approx((folder / "teacher.int8.onnx").stat().st_size / 1e6)
    assert int8_row["size_mb"] < teacher_row["size_mb"] / 2
    for model, row in ((teacher, teacher_row), (student, student_row)):
        assert row["accuracy"] == pytest.approx(model.evaluate(*test)["accuracy"], abs=1 / len(test[1]))
    for row in table.rows:
        assert row["latency_ms_b1"] > 0 and row["latency_ms_b32"] > 0 and row["joules_per_prediction"] > 0
        assert row["energy_source"] in ("rapl", "nvml", "rapl+nvml", "estimate")
    text = str(table)
    assert text.splitlines()[0].split()[:3] == ["model", "params", "MB"] and len(text.splitlines()) == 4
    assert table.rows[0]["energy_source"] in text
    assert (tmp_path / "c.png").exists() is False and table.plot(tmp_path / "c.png") and (tmp_path / "c.png").stat().st_size


def test_a_dataset_without_labels_or_two_datasets_are_refused(models):
    teacher, _, _, (x, y) = models
    with pytest.raises(DataError, match="one labelled dataset"):
        compress.compare(teacher, (x, y), (x, y))
    with pytest.raises(DataError, match="needs labels"):
        compress.compare(teacher, Dataset(x, mode="test"))
    with pytest.raises(DataError, match="at least one model"):
        compress.compare((x, y))
