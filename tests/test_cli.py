"""The command line: demo and train run for real (torch), info describes files, and mistakes end
in one `error:` line and exit status 2, never a traceback."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

from llmasos import __version__
from llmasos.cli import main
from llmasos.data import digits_csv

without_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_version_and_usage(capsys):
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.strip() == f"llmasos {__version__}"
    status, _, err = run(capsys)
    assert status == 2 and "required: COMMAND" in err
    status, _, err = run(capsys, "train")
    assert status == 2 and "config" in err


def test_info_refuses_other_files_without_a_traceback(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    status, out, err = run(capsys, "info", str(notes))
    assert status == 2 and out == ""
    assert err.startswith("error: ") and "reads .h5" in err and "Traceback" not in err
    foreign = tmp_path / "data.h5"
    import h5py

    with h5py.File(foreign, "w") as handle:
        handle["x"] = [1, 2, 3]
    status, _, err = run(capsys, "info", str(foreign))
    assert status == 2 and err.startswith("error: ") and "not an llmasos model" in err


def _config(folder, **changes):
    train, test = digits_csv(folder / "data")
    data = {"framework": "torch",
            "model": {"input_dim": 64, "output_dim": 10, "layers": [
                {"kind": "Dense", "size": 64, "activation": "relu"},
                {"kind": "Dense", "size": 10, "activation": "softmax"}]},
            "data": {"train": "data/digits_train.csv", "test": "data/digits_test.csv"},
            "optimizer": {"name": "Adam", "lr": 0.003},
            "training": {"epochs": 5, "batch_size": 32, "seed": 1},
            "output": "model.h5"}
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_train_with_a_bad_config_names_the_key(capsys, tmp_path):
    path = _config(tmp_path, optimizer={"lr": -1})
    status, out, err = run(capsys, "train", str(path))
    assert status == 2 and out == ""
    assert err.startswith("error: ") and "optimizer.lr = -1" in err and "Traceback" not in err
    status, _, err = run(capsys, "train", str(_config(tmp_path)), "--framework", "mxnet")
    assert status == 2 and "unknown framework 'mxnet'" in err


@pytest.mark.torch
@without_torch
def test_demo_runs_end_to_end(capsys, tmp_path):
    framework = "torch"
    status, out, err = run(capsys, "demo", "--framework", framework, "--dir", str(tmp_path))
    assert status == 0, err
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    assert accuracy >= 0.9, out
    assert "epoch 10/10" in out and f"framework {framework}" in out
    for name in ("digits_train.csv", "digits_test.csv", "model.h5"):
        assert (tmp_path / name).is_file() and str(tmp_path / name) in out

    status, info, _ = run(capsys, "info", str(tmp_path / "model.h5"))
    assert status == 0
    assert f"framework: {framework}" in info and "parameters: 9,610" in info
    assert "dense_1 (Dense)" in info                                 # the layer table

    from llmasos import Dataset, Model

    loaded = Model.load(tmp_path / "model.h5")
    again = loaded.evaluate(Dataset(tmp_path / "digits_test.csv", mode="test"))["accuracy"]
    assert abs(again - accuracy) < 1e-4                              # the saved model is the evaluated one


@pytest.mark.torch
@without_torch
def test_train_command_follows_the_config_and_its_overrides(capsys, tmp_path):
    path = _config(tmp_path, training={"epochs": 5, "batch_size": 32, "seed": 1, "checkpoint_every": 1})
    out_file = tmp_path / "elsewhere" / "trained.h5"
    out_file.parent.mkdir()
    status, out, err = run(capsys, "train", str(path), "--epochs", "2", "--out", str(out_file))
    assert status == 0, err
    assert "epoch 2/2" in out and "epoch 3/" not in out              # --epochs beats training.epochs
    assert f"saved {out_file}" in out and out_file.is_file()
    assert not (tmp_path / "model.h5").exists()                      # --out beats output
    assert (tmp_path / "model.ckpt.h5").is_file()                    # checkpoint_every: 1
    accuracy = float(re.search(r"test: loss \S+, accuracy (\d\.\d+)", out).group(1))
    assert accuracy > 0.8

    status, info, _ = run(capsys, "info", str(out_file))
    assert status == 0 and "epoch: 2" in info and "framework: torch" in info


