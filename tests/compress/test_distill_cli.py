"""``llmasos distill config.yaml``: the real command in a subprocess distils a digits teacher (an
``.h5``) into a small MLP exactly as :func:`llmasos.compress.distill` does in process; a bad config
is an error naming the key, before any training."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from llmasos import Dataset, Model, Optimizer, compress
from llmasos.cli import main
from llmasos.data import digits_csv

LABELLED = 150        # labelled training rows; the rest of the training file is given without labels


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Digits as CSV (150 labelled rows, the other 1,287 training inputs unlabelled, 360 test rows)
    and a torch teacher ending in softmax, trained on every training row and saved as teacher.h5."""
    root = tmp_path_factory.mktemp("distill_cli")
    train, test = digits_csv(root / "data")
    frame = pd.read_csv(train)
    frame.iloc[:LABELLED].to_csv(root / "data" / "few.csv", index=False)
    frame.iloc[LABELLED:].drop(columns="label").to_csv(root / "data" / "more.csv", index=False)
    teacher = Model(input_dim=64, output_dim=10, framework="torch")
    teacher.add_layer("Dense", 64, activation="relu").add_layer("Dense", 10, activation="softmax")
    teacher.train(Dataset(train), Optimizer("Adam", lr=3e-3), epochs=10, seed=0, progress=False)
    teacher.save(root / "teacher.h5")
    return root


def _config(folder, **changes) -> str:
    data = {"teacher": "teacher.h5",
            "student": {"input_dim": 64, "output_dim": 10, "layers": [
                {"kind": "Dense", "size": 16, "activation": "relu"}, {"kind": "Dense", "size": 10}]},
            "data": {"train": "data/few.csv", "test": "data/digits_test.csv", "unlabeled": "data/more.csv"},
            "optimizer": {"name": "Adam", "lr": 0.01},
            "training": {"epochs": 4, "batch_size": 32, "seed": 3},
            "distillation": {"temperature": 2.0, "alpha": 0.8},
            "output": "student.h5"}
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / "distill.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _student() -> Model:
    student = Model(input_dim=64, output_dim=10, framework="torch")
    return student.add_layer("Dense", 16, activation="relu").add_layer("Dense", 10)


@pytest.mark.torch
@pytest.mark.slow
def test_the_command_distils_as_the_api_does(folder):
    config = _config(folder)
    env = {**os.environ, "LLMASOS_FRAMEWORK": "torch"}
    done = subprocess.run([sys.executable, "-m", "llmasos", "distill", config], capture_output=True, text=True,
                          timeout=600, env=env, cwd=folder)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "teacher" in out and "150 training rows, 1,287 unlabeled, 360 test rows" in out
    assert "temperature 2, alpha 0.8" in out and "epoch 4/4" in out and "epoch 5/" not in out
    assert f"saved {folder / 'student.h5'}" in out
    saved = Model.load(folder / "student.h5")
    assert saved.framework == "torch" and saved.spec.parameter_count() == 64 * 16 + 16 + 16 * 10 + 10

    # the same run in process: the command follows every key of the config (seed, T, alpha, unlabeled rows)
    same = _student()
    compress.distill(str(folder / "teacher.h5"), same, Dataset(folder / "data" / "few.csv"),
                     Optimizer("Adam", lr=0.01), epochs=4, temperature=2.0, alpha=0.8,
                     unlabeled=Dataset(folder / "data" / "more.csv", target=None), batch_size=32, seed=3,
                     progress=False)
    for layer, weights in same.get_weights().items():
        for name, value in weights.items():
            np.testing.assert_allclose(saved.get_weights()[layer][name], value, atol=1e-5)
    test = Dataset(folder / "data" / "digits_test.csv", mode="test")
    accuracy = saved.evaluate(test)["accuracy"]
    assert f"accuracy {accuracy:.4f}" in out
    # 150 labels and the teacher on the other inputs: well above what 150 labels give alone
    alone = _student()
    alone.train(Dataset(folder / "data" / "few.csv"), Optimizer("Adam", lr=0.01), epochs=4, seed=3,
                loss="cross_entropy", progress=False)
    assert accuracy > alone.evaluate(test)["accuracy"] + 0.1 and accuracy > 0.85


@pytest.mark.torch
def test_overrides_and_an_onnx_teacher(folder, capsys):
    from llmasos import export

    export.to_onnx(Model.load(folder / "teacher.h5"), folder / "teacher.onnx")
    out_file = folder / "elsewhere" / "small.h5"
    out_file.parent.mkdir()
    status = main(["distill", _config(folder, teacher="teacher.onnx", data={"unlabeled": None}),
                   "--epochs", "1", "--out", str(out_file), "--framework", "tf"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "epoch 1/1" in out and "epoch 2/" not in out and "student in tf" in out
    assert out_file.is_file() and Model.load(out_file).framework == "tf"


@pytest.mark.parametrize("changes, message", [
    ({"distillation": {"temperature": 0}}, "distillation.temperature = 0: Input should be greater than 0"),
    ({"distillation": {"alpha": 1.5}}, "distillation.alpha = 1.5: Input should be less than or equal to 1"),
    ({"distillation": {"beta": 1}}, "distillation.beta: unknown key; allowed here: temperature, alpha"),
    ({"model": {"input_dim": 64}}, "model: unknown key; allowed here: framework, student, data"),
    ({"teacher": "missing.h5"}, "teacher: no such file"),
    ({"data": {"unlabeled": "nowhere.csv"}}, "data.unlabeled: no such file"),
    ({"student": {"layers": [{"kind": "Dense", "size": 16}, {"kind": "Dense", "size": 9}]}},
     "student.output_dim: 10, but the last layer outputs 9"),
    ({"training": {"early_stopping": 3}}, "training.early_stopping: unknown key; allowed here: epochs, batch_size, seed"),
])
def test_a_bad_config_names_the_key(folder, capsys, changes, message):
    status = main(["distill", _config(folder, **changes)])
    out, err = capsys.readouterr()
    assert status == 2 and out == "", out
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err


def test_a_missing_teacher_section_is_named(folder, capsys):
    path = folder / "bare.yaml"
    path.write_text(yaml.safe_dump({"student": {"input_dim": 64, "layers": [{"kind": "Dense", "size": 10}]},
                                    "data": {"train": "data/few.csv"}}))
    status = main(["distill", str(path)])
    assert status == 2 and "teacher: required key is missing" in capsys.readouterr().err


@pytest.mark.torch
def test_a_teacher_of_other_classes_is_named(folder, capsys):
    student = {"output_dim": 5, "layers": [{"kind": "Dense", "size": 5}]}
    status = main(["distill", _config(folder, student=student, data={"unlabeled": None})])
    err = capsys.readouterr().err
    assert status == 2 and "the teacher gives 10 outputs per row but the student 5" in err, err


@pytest.mark.torch
def test_a_zoo_teacher_is_built_from_its_section(tmp_path):
    from llmasos.config import DistillConfig

    config = DistillConfig.from_dict(
        {"teacher": {"zoo": "resnet_tiny", "pretrained": False, "num_classes": 10, "seed": 0},
         "student": {"input_shape": [3, 32, 32], "output_dim": 10,
                     "layers": [{"kind": "Flatten"}, {"kind": "Dense", "size": 10}]},
         "data": {"train": "train.csv"}}, base_dir=tmp_path, check_files=False)
    assert config.teacher_file is None and config.output_path == tmp_path / "student.h5"
    teacher = config.load_teacher("torch")
    assert teacher.framework == "torch" and teacher.classes == 10
    assert DistillConfig.from_dict({"teacher": "Teacher.ONNX", "student": {"input_dim": 4, "layers": [
        {"kind": "Dense", "size": 2}]}, "data": {"train": "x.csv"}}, base_dir=tmp_path,
        check_files=False).load_teacher() == str(tmp_path / "Teacher.ONNX")
