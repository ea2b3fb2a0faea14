"""Frozen layers are part of the model: ``trainable`` lives in the spec, so ``save``/``Model.load``
(in either framework), ``.to()`` and exported files keep it; ``freeze``/``unfreeze`` remake the
trainer (torch's kept the parameter list it first saw); a frozen BatchNorm keeps its statistics
through predict and export."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer, io
from llmasos.errors import SpecError
from llmasos.spec import ModelSpec

from .conftest import FRAMEWORKS, framework_params

PAIRS = [pytest.param(a, b, marks=[getattr(pytest.mark, a), getattr(pytest.mark, b)], id=f"{a}->{b}")
         for a, b in itertools.product(FRAMEWORKS, repeat=2)]


def _model(framework: str, dropout: float = 0.0) -> Model:
    model = Model(input_dim=6, framework=framework)
    model.add_layer("Dense", 8, activation="relu", name="body")
    model.add_layer("BatchNorm", name="bn")
    if dropout:
        model.add_layer("Dropout", dropout, name="drop")
    return model.add_layer("Dense", 3, activation="softmax", name="head")


def _data(rows: int = 64) -> Dataset:
    rng = np.random.default_rng(0)
    # offset inputs, so BatchNorm statistics move far from their initial 0/1 when they train
    return Dataset(rng.standard_normal((rows, 6)).astype(np.float32) + 2.0, rng.integers(0, 3, rows), mode="train")


def _train(model: Model, epochs: int = 1) -> None:
    model.train(_data(), Optimizer("Adam", lr=0.05), epochs=epochs, batch_size=16, seed=0, progress=False)


def _changed(before: dict, after: dict) -> dict[str, bool]:
    """Per layer: whether any of its weights (BatchNorm statistics included) changed at all."""
    return {layer: any(not np.array_equal(v, after[layer][k]) for k, v in values.items())
            for layer, values in before.items()}


# -- the spec ------------------------------------------------------------------------------------


def test_trainable_is_in_the_spec_and_its_json_only_when_false():
    spec = ModelSpec.sequential((4,)).add("Dense", 3, name="body", trainable=False).add("Dense", 2, name="head")
    data = spec.to_dict()
    assert data["layers"][0]["trainable"] is False and "trainable" not in data["layers"][1]
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec and again.frozen() == ["body"]
    assert again.set_trainable(["body"], True).frozen() == [] and again != spec
    with pytest.raises(SpecError, match=r"trainable must be True or False, got 'no'"):
        ModelSpec.sequential((4,)).add("Dense", 3, trainable="no")
    assert "Non-trainable params: 15 (1 frozen layers)" in spec.summary()


def test_unknown_layer_names_list_the_layers():
    model = _model(FRAMEWORKS[0] if FRAMEWORKS else "torch")
    with pytest.raises(SpecError, match=r"no layer named 'bodyy'; the layers are: body, bn, head"):
        model.freeze(["bodyy"])
    with pytest.raises(SpecError, match=r"freeze\('backbone'\) needs a model that names its head.*body, bn, head"):
        model.freeze("backbone")
    assert model.frozen == set()  # nothing half-applied


# -- across save/load, frameworks and .to() --------------------------------------------------------


@pytest.mark.parametrize("source, target", PAIRS)
def test_frozen_layers_survive_save_and_load_in_the_other_framework(source, target, tmp_path):
    model = _model(source)
    _train(model)  # statistics and weights away from their initial values
    model.freeze(["body", "bn"])
    model.save(tmp_path / "m.h5")
    assert io.read(tmp_path / "m.h5").spec.frozen() == ["body", "bn"]
    loaded = Model.load(tmp_path / "m.h5", framework=target)
    assert loaded.frozen == {"body", "bn"}
    before = loaded.get_weights()
    _train(loaded, epochs=2)
    # frozen weights bit-identical (BatchNorm statistics too), the head trained
    assert _changed(before, loaded.get_weights()) == {"body": False, "bn": False, "head": True}


@pytest.mark.parametrize("source, target", PAIRS)
def test_to_keeps_frozen_layers(source, target):
    model = _model(source).freeze("bn")
    moved = model.to(target)
    assert moved.frozen == {"bn"}
    before = moved.get_weights()
    _train(moved)
    assert _changed(before, moved.get_weights()) == {"body": True, "bn": False, "head": True}


# -- changing trainability remakes the trainer ------------------------------------------------------


@pytest.mark.parametrize("framework", framework_params())
def test_unfreezing_after_training_trains_those_layers(framework, tmp_path):
    """torch's trainer kept the parameter list it was made with: unfrozen layers stayed still."""
    model = _model(framework).freeze(["body", "bn"])
    _train(model)
    before = model.get_weights()
    model.unfreeze("body")
    _train(model)
    assert _changed(before, model.get_weights()) == {"body": True, "bn": False, "head": True}
    model.freeze("head").unfreeze(["bn"])
    before = model.get_weights()
    _train(model)
    assert _changed(before, model.get_weights()) == {"body": True, "bn": True, "head": False}
    # the optimizer's step count went on through the changes (its state carried over)
    model.save(tmp_path / "m.h5")
    assert io.read(tmp_path / "m.h5").training["state"]["step"] == 3 * 4


@pytest.mark.parametrize("framework", framework_params())
def test_frozen_batchnorm_keeps_its_statistics_through_predict_and_export(framework, tmp_path):
    """torch's export switched the whole module back to training mode, frozen BatchNorm included."""
    from llmasos import export

    pytest.importorskip("onnxruntime")
    model = _model(framework).freeze("bn")
    _train(model)  # the module is in training mode now, as after any train()
    before = model.get_weights()["bn"]
    model.predict(np.ones((2, 6), np.float32))
    export.to_onnx(model, tmp_path / "m.onnx", verify=False)  # verification predicts, which hid the bug
    _train(model)
    after = model.get_weights()["bn"]
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert export.info(tmp_path / "m.onnx")["frozen"] == ["bn"]


@pytest.mark.torch
def test_a_frozen_layers_dropout_still_drops_in_torch_as_in_keras():
    """Freezing fixes weights and BatchNorm statistics, not the mode of other layers: Keras' Dropout
    drops in a frozen layer, so torch's must too."""
    import torch

    from llmasos.adapters.torch.build import train_mode

    model = _model("torch", dropout=0.5).build(seed=0).freeze(["drop"])
    train_mode(model.backend_model)
    with torch.no_grad():
        out = model.backend_model.blocks["drop"](torch.ones(64, 8))
    assert (out == 0).any() and not model.backend_model.blocks["drop"].frozen
