"""Every zoo model against a reference, in every framework: torchvision-backed models against
torchvision's own with identical weights (loaded through ``pretrained=``), tiny test variants
across frameworks with identical random weights. ``test_all_models_tested`` keeps it complete."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import zoo
from llmasos.adapters import get_backend

from ..conftest import FRAMEWORKS
from ..test_parity import randomized_weights

ATOL = 1e-4  # DESIGN.md: zoo models agree to 1e-4 (fp32)
SMALL = 64   # image size for the fast checks; VGG's 2x2 feature map exercises the folded adaptive pool

# name -> how it is checked: "torchvision" (parity with torchvision's model of that name) or
# "tiny" (torch vs TF with the same weights). Families add their models here; big models whose
# checkpoints take long to write run under `slow`.
TESTED = {
    "resnet18": "torchvision", "resnet34": "torchvision", "resnet50": "torchvision",
    "vgg11": "torchvision", "vgg11_bn": "torchvision", "vgg16": "torchvision", "vgg16_bn": "torchvision",
    "resnet_tiny": "tiny", "vgg_tiny": "tiny",
    "bert": "text", "gpt2": "text",  # against transformers in test_text.py
    "wav2vec2": "speech", "marian": "translation",  # in test_speech.py and test_translation.py
    "vit": "transformers", "vit_b_16": "vit",  # against transformers and torchvision in test_vit.py
    "facenet": "faces", "facenet_tiny": "faces",  # against facenet-pytorch in test_faces.py
    "yolos": "transformers",  # against transformers' YolosForObjectDetection in test_detection.py
}
FAST = {"resnet18", "resnet50", "vgg11"}


def test_all_models_tested():
    untested = sorted({info.name for info in zoo.list()} - set(TESTED))
    assert not untested, f"registered zoo models without a test: {untested}; add them to TESTED"
    assert all(info.test_variant == (TESTED[info.name] == "tiny") for info in zoo.list(task="image-classification"))


def _cases(size: int, fast_only: bool):
    out = []
    for name, how in TESTED.items():
        if how != "torchvision" or (fast_only and name not in FAST):
            continue
        for framework in FRAMEWORKS:
            marks = [pytest.mark.torch, getattr(pytest.mark, framework)]
            if size != SMALL or name not in FAST:
                marks.append(pytest.mark.slow)
            out.append(pytest.param(name, framework, marks=marks, id=f"{name}-{framework}-{size}"))
    return out


@pytest.mark.parametrize("name, framework", _cases(SMALL, fast_only=False))
def test_same_logits_as_torchvision(name, framework, torchvision_reference):
    path, images, logits = torchvision_reference(name, SMALL)
    model = zoo.load(name, framework, pretrained=path, input_size=SMALL, logits=True)
    np.testing.assert_allclose(model.predict(images), logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name, framework", _cases(224, fast_only=True))
def test_same_logits_as_torchvision_full_size(name, framework, torchvision_reference):
    path, images, logits = torchvision_reference(name, 224)
    model = zoo.load(name, framework, pretrained=path, logits=True)
    np.testing.assert_allclose(model.predict(images), logits, atol=ATOL, rtol=0)


@pytest.mark.torch
@pytest.mark.parametrize("framework", [pytest.param(f, marks=getattr(pytest.mark, f)) for f in FRAMEWORKS])
def test_onnx_export_keeps_torchvisions_logits(framework, torchvision_reference, tmp_path):
    from llmasos import export

    path, images, logits = torchvision_reference("resnet18", SMALL)
    model = zoo.load("resnet18", framework, pretrained=path, input_size=SMALL, logits=True)
    export.to_onnx(model, tmp_path / "resnet18.onnx")
    session = export.load(tmp_path / "resnet18.onnx")
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(got, logits, atol=ATOL, rtol=0)


@pytest.mark.torch
@pytest.mark.parametrize("framework", [pytest.param(f, marks=getattr(pytest.mark, f)) for f in FRAMEWORKS])
def test_default_head_is_softmax_of_the_logits(framework, torchvision_reference):
    path, images, logits = torchvision_reference("resnet18", SMALL)
    probabilities = zoo.load("resnet18", framework, pretrained=path, input_size=SMALL).predict(images)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, expected / expected.sum(axis=1, keepdims=True), atol=1e-6)


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.parametrize("name", [name for name, how in TESTED.items() if how == "tiny"])
def test_tiny_models_agree_across_frameworks(name):
    info = zoo.registry.get(name)
    spec = info.spec(logits=True)
    weights = randomized_weights(spec)
    images = np.random.default_rng(0).standard_normal((3, *info.input_size)).astype(np.float32)
    outputs = []
    for framework in ("torch", "tf"):
        compiled = get_backend(framework).build(spec, seed=0)
        compiled.set_weights(weights)
        outputs.append(compiled.predict([images])[0])
    assert outputs[0].shape == (3, info.num_classes)
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5, rtol=0)


@pytest.mark.torch
@pytest.mark.tf
def test_saved_zoo_model_loads_in_the_other_framework(tmp_path):
    from llmasos import Model

    model = zoo.load("vgg_tiny", "torch", num_classes=4, seed=0)
    model.save(tmp_path / "tiny.h5")
    other = Model.load(tmp_path / "tiny.h5", framework="tf")
    assert other.metadata["zoo"] == "vgg_tiny" and other.metadata["preprocess"]["size"] == [32, 32]
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(other.predict(images), model.predict(images), atol=1e-5)
