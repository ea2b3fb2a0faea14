"""Config files: the documented format loads, paths resolve against the file, and every mistake
raises a ConfigError naming the key path, the bad value and what is allowed."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from llmasos.config import Config, load_config
from llmasos.data import Dataset, digits_csv
from llmasos.errors import ConfigError
from llmasos.callbacks import Checkpoint, EarlyStopping

EXAMPLE = """
framework: pytorch
model:
  input_shape: [1, 8, 8]
  output_dim: 10
  layers:
    - {kind: Flatten}
    - {kind: Dense, size: 32, activation: relu}
    - {kind: Dropout, size: 0.1}
    - {kind: Dense, size: 10, activation: softmax}
data:
  train: data/digits_train.csv
  test: data/digits_test.csv
  target: label
  shape: [1, 8, 8]
optimizer: {name: SGD, lr: 1e-2, momentum: 0.9, nesterov: true}
training:
  epochs: 3
  batch_size: 16
  seed: 5
  early_stopping: 2
  checkpoint_every: 1
output: out/model.h5
"""


@pytest.fixture
def project(tmp_path):
    """A config in tmp_path/project with its data beside it."""
    folder = tmp_path / "project"
    digits_csv(folder / "data")
    (folder / "config.yaml").write_text(EXAMPLE)
    return folder


def test_the_documented_format_loads_and_builds(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                                    # paths must not depend on the cwd
    config = load_config(project / "config.yaml")
    assert config.framework == "torch"                               # alias canonicalised
    assert config.training.epochs == 3 and config.training.batch_size == 16 and config.training.seed == 5
    assert config.output_path == project / "out" / "model.h5"
    assert config.checkpoint_path == project / "out" / "model.ckpt.h5"

    train, test = config.train_dataset(), config.test_dataset()
    assert (len(train), len(test)) == (1437, 360)
    assert train.mode == "train" and test.mode == "test"
    assert train.feature_shape == (1, 8, 8)

    optimizer = config.optimizer()
    assert optimizer.name == "SGD" and optimizer.lr == 0.01           # "1e-2" is a string to YAML; still a number
    assert optimizer.options["momentum"] == 0.9 and optimizer.options["nesterov"] is True

    stopping, checkpoint = config.callbacks()
    assert isinstance(stopping, EarlyStopping) and stopping.patience == 2 and stopping.monitor == "val_loss"
    assert isinstance(checkpoint, Checkpoint) and checkpoint.every == 1
    assert checkpoint.path == str(project / "out" / "model.ckpt.h5")

    model = config.build_model()
    assert model.framework == "torch" and model.output_dim == 10
    assert [layer.kind for layer in model.spec.layers] == ["Flatten", "Dense", "Dropout", "Dense"]
    assert model.spec.parameter_count() == 64 * 32 + 32 + 32 * 10 + 10
    assert config.build_model("tensorflow").framework == "tf"        # the --framework override


def test_framework_falls_back_to_the_environment(project, monkeypatch):
    data = yaml.safe_load(EXAMPLE)
    del data["framework"]
    config = Config.from_dict(data, base_dir=project)
    monkeypatch.setenv("LLMASOS_FRAMEWORK", "tensorflow")
    assert config.framework_name() == "tf"
    assert config.framework_name("torch") == "torch"


def test_defaults_and_int64_inputs(tmp_path):
    data = {"model": {"input_dim": 5, "output_dim": 4, "layers": [
                {"kind": "Embedding", "size": 4, "vocab_size": 50}, {"kind": "Flatten"},
                {"kind": "Dense", "size": 4, "activation": "softmax"}]},
            "data": {"train": "t.csv", "dtype": "int64"}}
    config = Config.from_dict(data, base_dir=tmp_path, check_files=False)
    assert (config.training.epochs, config.training.batch_size, config.training.seed) == (10, 32, 0)
    assert config.optimizer().name == "Adam" and config.optimizer().lr == 0.001
    assert config.output_path == tmp_path / "model.h5" and config.callbacks() == []
    model = config.build_model("torch")
    assert model.spec.inputs[0].dtype == "int64" and model.spec.inputs[0].shape == (5,)


BASE = {"model": {"input_dim": 64, "output_dim": 10, "layers": [
            {"kind": "Dense", "size": 32, "activation": "relu"},
            {"kind": "Dense", "size": 10, "activation": "softmax"}]},
        "data": {"train": "data/digits_train.csv", "test": "data/digits_test.csv"}}


def _set(path, value):
    def change(data):
        *parents, last = path
        node = data
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return change


_DELETE = object()

BAD = [
    # (change, words the message must contain: key path, bad value, what is allowed)
    (_set(["optimizer"], {"lr": -0.1}), ["optimizer.lr", "-0.1", "greater than 0"]),
    (_set(["optimizer"], {"lr": "fast"}), ["optimizer.lr", "'fast'", "valid number"]),
    (_set(["optimizer"], {"name": "Adamax"}), ["optimizer.name", "'Adamax'", "SGD, Adam, AdamW, RMSprop"]),
    (_set(["optimizer"], {"name": "SGD", "betas": [0.9, 0.99]}),
     ["optimizer.betas", "momentum, nesterov, weight_decay"]),
    (_set(["optimizer"], {"name": "Adam", "eps": -1}), ["optimizer.eps", "-1", "positive"]),
    (_set(["training"], {"epochs": 0}), ["training.epochs", "= 0", "greater than 0"]),
    (_set(["training"], {"epochs": 2.5}), ["training.epochs", "2.5", "valid integer"]),
    (_set(["training"], {"batch_size": True}), ["training.batch_size", "True", "valid integer"]),
    (_set(["training"], {"epoch": 5}), ["training.epoch", "unknown key", "epochs, batch_size, seed"]),
    (_set(["training"], {"loss": "hinge"}), ["training.loss", "'hinge'", "binary_cross_entropy, cross_entropy, ctc"]),
    (_set(["training"], {"metrics": ["accuracy", "f2"]}), ["training.metrics", "'f2'", "accuracy, top_k_accuracy"]),
    (_set(["training"], {"early_stopping": {"patience": 2, "wait": 1}}),
     ["training.early_stopping.wait", "unknown key", "patience, monitor, min_delta, restore_best"]),
    (_set(["framework"], "mxnet"), ["framework", "'mxnet'", "pytorch, tensorflow, tf, torch"]),
    (_set(["frameworks"], "torch"), ["frameworks", "unknown key", "framework, model, data, optimizer, training"]),
    (_set(["model", "layers", 1, "kind"], "Dense2"), ["model.layers[1]", "Dense2", "known layers: Activation"]),
    (_set(["model", "layers", 0, "activation"], "relux"), ["model.layers[0]", "'relux'", "known: linear, relu"]),
    (_set(["model", "layers", 0, "size"], -3), ["model.layers[0]", "-3", "positive int"]),
    (_set(["model", "layers", 0, "strides"], 2), ["model.layers[0]", "strides", "Dense takes"]),
    (_set(["model", "layers", 1, "kind"], _DELETE), ["model.layers[1].kind", "missing"]),
    (_set(["model", "layers"], []), ["model.layers", "at least 1"]),
    (_set(["model", "output_dim"], 7), ["model.output_dim", "7", "outputs 10"]),
    (_set(["model", "input_shape"], [64]), ["model", "exactly one of input_shape", "input_dim"]),
    (_set(["model", "input_dim"], 0), ["model.input_dim", "= 0", "greater than 0"]),
    (_set(["data", "train"], "nowhere.csv"), ["data.train", "no such file", "nowhere.csv"]),
    (_set(["data", "test"], "missing.csv"), ["data.test", "no such file"]),
    (_set(["data", "dtype"], "float16"), ["data.dtype", "'float16'", "'float32' or 'int64'"]),
    (_set(["data", "shape"], [1, -8, 8]), ["data.shape[1]", "-8", "greater than 0"]),
    (_set(["data"], _DELETE), ["data", "required key is missing"]),
]


@pytest.mark.parametrize("change, words", BAD, ids=[words[0] + ":" + words[1] for _, words in BAD])
def test_config_errors_name_the_key_the_value_and_what_is_allowed(project, change, words):
    data = copy.deepcopy(BASE)
    change(data)
    path = project / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


def test_early_stopping_on_validation_needs_test_data(project):
    data = copy.deepcopy(BASE)
    del data["data"]["test"]
    data["training"] = {"early_stopping": 3}
    with pytest.raises(ConfigError, match=r"training.early_stopping.monitor: 'val_loss' needs validation data"):
        Config.from_dict(data, base_dir=project)
    data["training"] = {"early_stopping": {"patience": 3, "monitor": "loss"}}
    assert Config.from_dict(data, base_dir=project).callbacks()[0].monitor == "loss"


def test_several_errors_are_reported_together(project):
    data = copy.deepcopy(BASE)
    data["training"] = {"epochs": -1, "batch_size": 0}
    with pytest.raises(ConfigError) as err:
        Config.from_dict(data, base_dir=project, source="c.yaml")
    assert "training.epochs = -1" in str(err.value) and "training.batch_size = 0" in str(err.value)


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("model: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_unreadable_config_files(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.yaml")


def test_config_datasets_carry_the_data_options(project):
    data = copy.deepcopy(BASE)
    data["data"].update(target="label", features=["p0", "p1", "p2", "p3"], chunk_size=100)
    data["model"]["input_dim"] = 4
    config = Config.from_dict(data, base_dir=project)
    train = config.train_dataset()
    assert train.streaming and train.feature_shape == (4,)
    x, y = train.arrays()
    whole = Dataset(project / "data" / "digits_train.csv", mode="test").arrays()
    np.testing.assert_array_equal(x, whole[0][:, :4])
    np.testing.assert_array_equal(y, whole[1])
