"""Structured pruning removes whole units and channels with everything that depends on them: the
smaller model computes what the original computes with those channels zeroed, in torch and
TensorFlow; its .h5 and ONNX files are ordinary (and smaller); what cannot shrink is named."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Model, zoo
from llmasos.compress.prune import Plan
from llmasos.errors import SpecError

from ..conftest import framework_params

rng = np.random.default_rng(0)


def _randomize_statistics(model: Model) -> Model:
    """BatchNorm with statistics and affine weights far from 0/1, so a channel is not 0 by accident."""
    weights = model.get_weights()
    for layer in model.spec.layers:
        if layer.kind == "BatchNorm":
            size = weights[layer.name]["gamma"].shape
            weights[layer.name] = {"gamma": rng.uniform(0.5, 1.5, size), "beta": rng.normal(0, 0.5, size),
                                   "moving_mean": rng.normal(0, 0.5, size),
                                   "moving_variance": rng.uniform(0.5, 2.0, size)}
            weights[layer.name] = {k: v.astype(np.float32) for k, v in weights[layer.name].items()}
    model.set_weights(weights)
    return model


def _zeroed(model: Model, plan: Plan) -> Model:
    """The original with the removed channels' outputs zeroed where they are made: the output
    weights and bias of their convs and Dense layers, and the gamma and beta of their BatchNorms."""
    weights = model.get_weights()
    for layer in model.spec.layers:
        if layer.name not in plan.kept or layer.kind not in ("Dense", "Conv2D", "BatchNorm"):
            continue
        size = weights[layer.name]["gamma" if layer.kind == "BatchNorm" else "kernel"].shape[-1]
        removed = np.setdiff1d(np.arange(size), plan.kept[layer.name])
        assert removed.size, layer.name
        names = ("gamma", "beta") if layer.kind == "BatchNorm" else ("kernel", "bias")
        for name in names:
            if name in weights[layer.name]:
                weights[layer.name][name][..., removed] = 0.0
    copy = model.to(model.framework)
    copy.set_weights(weights)
    return copy


def _branches(framework: str) -> Model:
    """Two conv branches concatenated along channels, BatchNorm, max-pool, Flatten, two Dense."""
    model = Model(input_shape=(2, 8, 8), output_dim=5, framework=framework)
    model.add_layer("Conv2D", 6, kernel_size=3, padding="same", activation="relu", name="a", inputs="input")
    model.add_layer("Conv2D", 4, kernel_size=3, padding="same", name="b", inputs="input")
    model.add_layer("Concatenate", axis=1, name="joined", inputs=["a", "b"])
    model.add_layer("BatchNorm", name="bn").add_layer("Activation", "relu").add_layer("MaxPool2D", 2)
    model.add_layer("Flatten").add_layer("Dense", 12, activation="relu", name="hidden")
    return model.add_layer("Dense", 5, activation="softmax", name="out")


@pytest.mark.parametrize("framework", framework_params())
def test_resnet_equals_the_original_with_channels_zeroed(framework):
    net = _randomize_statistics(zoo.load("resnet_tiny", framework=framework, pretrained=False).build(seed=0))
    x = rng.normal(size=(4, 3, 32, 32)).astype(np.float32)
    plan = Plan(net.spec, net.get_weights(), 0.5)
    slim = net.prune(0.5, structured=True)
    assert slim.spec == plan.spec and slim.framework == framework
    # every residual stage shrinks as one group: the two convs' outputs, downsample and BatchNorms
    assert plan.kept["layer1.0.add"].tolist() == plan.kept["conv1"].tolist()
    assert plan.kept["layer2.0.bn2"].tolist() == plan.kept["layer2.0.downsample.1"].tolist()
    assert slim.spec.shapes()["layer4.0.add"] == (32, 1, 1) and slim.spec.shapes()["fc"] == (10,)
    ratio = slim.spec.parameter_count() / net.spec.parameter_count()
    assert 0.24 < ratio < 0.3, ratio
    expected = _zeroed(net, plan).predict(x)
    assert np.abs(net.predict(x) - expected).max() > 1e-3   # the zeroed channels mattered
    np.testing.assert_allclose(slim.predict(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("framework", framework_params())
def test_concatenated_branches_flatten_and_dense(framework):
    model = _randomize_statistics(_branches(framework).build(seed=1))
    x = rng.normal(size=(6, 2, 8, 8)).astype(np.float32)
    plan = Plan(model.spec, model.get_weights(), 0.5)
    slim = model.prune(0.5, structured=True)
    shapes = slim.spec.shapes()
    assert (shapes["a"][0], shapes["b"][0], shapes["joined"][0], shapes["hidden"][0], shapes["out"][0]) == (3, 2, 5, 6, 5)
    # Flatten: channel c of the concatenation is features c*16 .. c*16+15 of the hidden layer's input
    kept_a, kept_b = plan.kept["a"], plan.kept["b"] + 6
    channels = np.concatenate([kept_a, kept_b])
    assert plan.kept["flatten"].tolist() == (channels[:, None] * 16 + np.arange(16)).ravel().tolist()
    assert slim.get_weights()["hidden"]["kernel"].shape == (80, 6)
    np.testing.assert_allclose(slim.predict(x), _zeroed(model, plan).predict(x), rtol=0, atol=1e-6)


def test_output_and_input_never_shrink_and_sigmoid_units_stay():
    model = Model(input_dim=6, output_dim=3, framework="torch")
    model.add_layer("Dense", 8, activation="sigmoid").add_layer("Dense", 10, activation="relu")
    model.add_layer("Dense", 3)
    model.build(seed=0)
    slim = model.prune(0.6, structured=True, criterion="l2")
    assert [layer.config["units"] for layer in slim.spec.layers] == [8, 4, 3]   # sigmoid(0) is not 0
    assert slim.get_weights()["dense"]["kernel"].shape == (6, 8)
    assert model.spec.layers[1].config["units"] == 10   # the original is unchanged
    x = rng.normal(size=(5, 6)).astype(np.float32)
    plan = Plan(model.spec, model.get_weights(), 0.6, "l2")
    np.testing.assert_allclose(slim.predict(x), _zeroed(model, plan).predict(x), rtol=0, atol=1e-6)


def test_l1_keeps_the_units_with_the_largest_weights():
    model = Model(input_dim=3, output_dim=2, framework="torch")
    model.add_layer("Dense", 4, activation="relu").add_layer("Dense", 2)
    model.build(seed=0)
    weights = model.get_weights()
    weights["dense"]["kernel"] = np.array([[1, -5, 0.1, 2], [1, 1, 0.1, -2], [1, 1, 0.1, 0]], np.float32)
    model.set_weights(weights)
    plan = Plan(model.spec, model.get_weights(), 0.5)
    assert plan.kept["dense"].tolist() == [1, 3]     # L1: 3, 7, 0.3, 4


@pytest.mark.torch
@pytest.mark.tf
def test_pruned_model_saves_loads_and_exports(tmp_path):
    import onnxruntime as ort

    from llmasos import export

    model = _randomize_statistics(_branches("torch").build(seed=2))
    slim = model.prune(0.5, structured=True)
    x = rng.normal(size=(3, 2, 8, 8)).astype(np.float32)
    slim.save(tmp_path / "slim.h5")
    again = Model.load(tmp_path / "slim.h5", framework="tf")
    assert again.spec == slim.spec
    np.testing.assert_allclose(again.predict(x), slim.predict(x), atol=1e-5)
    export.to_onnx(slim, tmp_path / "slim.onnx")
    export.to_onnx(model, tmp_path / "full.onnx")
    # the file loses the removed weights' bytes (the graph around them stays the same size)
    saved = (tmp_path / "full.onnx").stat().st_size - (tmp_path / "slim.onnx").stat().st_size
    assert saved >= 0.9 * 4 * (model.spec.parameter_count() - slim.spec.parameter_count())
    session = ort.InferenceSession(str(tmp_path / "slim.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(out, slim.predict(x), atol=1e-5)


def test_bad_input_is_named():
    model = Model(input_dim=4, output_dim=3, framework="torch").add_layer("Dense", 3)
    model.build(seed=0)
    with pytest.raises(SpecError, match=r"nothing that can shrink.*output layer"):
        model.prune(0.5, structured=True)
    wide = Model(input_dim=4, output_dim=3, framework="torch").add_layer("Dense", 8).add_layer("Dense", 3)
    wide.build(seed=0)
    for amount in (1.0, -0.1, "half"):
        with pytest.raises(SpecError, match=r"amount is the share .* in \[0, 1\)"):
            wide.prune(amount, structured=True)
    with pytest.raises(SpecError, match=r"criterion .* one of l1, l2, got 'l3'"):
        wide.prune(0.5, structured=True, criterion="l3")


@pytest.mark.torch
def test_pruned_model_trains_as_any_other():
    from llmasos import Optimizer

    model = _branches("torch").build(seed=3)
    slim = model.prune(0.5, structured=True)
    x = rng.normal(size=(48, 2, 8, 8)).astype(np.float32)
    y = (x[:, 0].mean((1, 2)) > 0).astype(np.int64)
    history = slim.train(x, y, optimizer=Optimizer("Adam", lr=0.01), epochs=4, seed=0, progress=False)
    assert history["loss"][-1] < history["loss"][0]
