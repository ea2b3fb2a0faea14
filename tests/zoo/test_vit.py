"""ViT against transformers' ``ViTForImageClassification`` with identical weights (a Hugging Face
folder the tests write with ``save_pretrained``), in torch, TensorFlow and ONNX Runtime; the
``ClassToken`` layer in both adapters; bad images."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Model, export, zoo
from llmasos.errors import DataError, ZooError
from llmasos.spec import ModelSpec
from llmasos.zoo.vit import ViT

from ..conftest import framework_params

pytestmark = pytest.mark.torch  # the reference is transformers' torch model

ATOL = 1e-4
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
         "image_size": 32, "patch_size": 8, "num_labels": 5, "initializer_range": 0.2}
VARIANTS = {"base": {}, "no-qkv-bias": {"qkv_bias": False, "patch_size": 4, "hidden_act": "gelu_new"}}


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Per variant: a random ``ViTForImageClassification`` (norms, class token and positions
    perturbed, so a wrong mapping cannot hide behind their initial values) saved as a folder, and
    its logits on two images."""
    import torch
    import transformers

    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    out = {"images": images}
    for variant, options in VARIANTS.items():
        folder = tmp_path_factory.mktemp(variant)
        torch.manual_seed(0)
        config = transformers.ViTConfig(**{**SMALL, **options},
                                        id2label={i: f"kind {i}" for i in range(SMALL["num_labels"])})
        model = transformers.ViTForImageClassification(config).eval()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "norm" in name or "cls_token" in name or "position" in name:
                    param.add_(0.3 * torch.randn_like(param))
        model.save_pretrained(folder)
        with torch.inference_mode():
            logits = model(torch.from_numpy(images)).logits.numpy()
        out[variant] = {"folder": folder, "logits": logits}
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("framework", framework_params())
def test_logits_match_transformers(framework, variant, hf):
    reference = hf[variant]
    model = zoo.load("vit", framework, pretrained=reference["folder"], logits=True)
    np.testing.assert_allclose(model.predict(hf["images"]), reference["logits"], atol=ATOL, rtol=0)
    assert np.abs(reference["logits"]).max() > 0.5  # logits of some size: the check means something
    assert model.metadata["labels"] == [f"kind {i}" for i in range(5)]
    probabilities = zoo.load("vit", framework, pretrained=reference["folder"]).predict(hf["images"])
    shifted = np.exp(reference["logits"] - reference["logits"].max(1, keepdims=True))
    np.testing.assert_allclose(probabilities, shifted / shifted.sum(1, keepdims=True), atol=1e-5, rtol=0)


@pytest.mark.parametrize("framework", framework_params())
def test_onnx_export_gives_the_same_logits(framework, hf, tmp_path):
    reference = hf["base"]
    model = zoo.load("vit", framework, pretrained=reference["folder"], logits=True)
    export.to_onnx(model, tmp_path / "vit.onnx")
    session = export.load(tmp_path / "vit.onnx")
    got = session.run(None, {session.get_inputs()[0].name: hf["images"]})[0]
    np.testing.assert_allclose(got, reference["logits"], atol=ATOL, rtol=0)
    # batch size is free in the file
    one = session.run(None, {session.get_inputs()[0].name: hf["images"][:1]})[0]
    np.testing.assert_allclose(one, reference["logits"][:1], atol=ATOL, rtol=0)


def test_a_saved_vit_loads_as_a_vit_in_the_other_framework(hf, tmp_path):
    model = zoo.load("vit", "torch", pretrained=hf["base"]["folder"], logits=True)
    path = model.save(tmp_path / "vit.h5")
    loaded = Model.load(path, framework="tf" if "tf" in [p.values[0] for p in framework_params()] else "torch")
    assert isinstance(loaded, ViT) and loaded.config.patch_size == 8
    np.testing.assert_allclose(loaded.predict(hf["images"]), hf["base"]["logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("framework", framework_params())
def test_class_token_is_put_first_in_both_adapters(framework):
    spec = ModelSpec().add_input("x", (3, 4))
    spec.add("ClassToken", name="cls")
    model = Model(spec=spec, framework=framework)
    model.build(seed=0)
    token = np.arange(4, dtype=np.float32) + 0.5
    model.set_weights({"cls": {"cls_token": token}})
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    want = np.concatenate([np.broadcast_to(token, (2, 1, 4)), x], axis=1)
    np.testing.assert_array_equal(model.predict(x), want)
    assert spec.shapes()["cls"] == (4, 4)


def test_class_token_starts_alike_in_both_frameworks():
    frameworks = [p.values[0] for p in framework_params()]
    if len(frameworks) < 2:
        pytest.skip("needs both torch and TensorFlow installed")
    spec = ModelSpec().add_input("x", (3, 4))
    spec.add("ClassToken", name="cls")
    first = [Model(spec=spec, framework=fw) for fw in frameworks]
    for model in first:
        model.build(seed=3)
    np.testing.assert_array_equal(*(m.get_weights()["cls"]["cls_token"] for m in first))
    assert np.abs(first[0].get_weights()["cls"]["cls_token"]).max() > 0  # drawn, not zeros


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 3, 30, 30), np.float32), r"expects shape \(batch, 3, 32, 32\) \(channels first.*got \(2, 3, 30, 30\)"),
    (np.zeros((2, 32, 32, 3), np.float32), r"expects shape \(batch, 3, 32, 32\) \(channels first.*got \(2, 32, 32, 3\)"),
])
def test_an_image_of_the_wrong_size_or_layout_is_refused(hf, images, message):
    model = zoo.load("vit", "torch", pretrained=hf["base"]["folder"], logits=True)
    with pytest.raises(DataError, match=message):
        model.predict(images)


def test_bad_configs_and_options_are_named():
    with pytest.raises(ZooError, match="image_size 30 is not a whole number of 8-pixel patches"):
        zoo.load("vit", "torch", config={**SMALL, "image_size": 30})
    with pytest.raises(ZooError, match="ViT takes images: it has no tokenizer"):
        zoo.load("vit", "torch", config=SMALL, tokenizer="tokenizer.json")


def _torchvision_vit(**sizes):
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    module = VisionTransformer(**sizes).eval()
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "ln" in name or "class_token" in name or "pos_embedding" in name:
                param.add_(0.3 * torch.randn_like(param))
    return module


@pytest.mark.parametrize("framework", framework_params())
def test_a_torchvision_vit_checkpoint_maps_onto_the_spec(framework):
    """torchvision's names (packed in_proj, class_token, encoder.pos_embedding, eps 1e-6) on a
    small VisionTransformer: the same logits."""
    import torch

    from llmasos.zoo.vit import ViTConfig, torchvision_state_dict, vit
    from llmasos.zoo.weights import to_neutral

    pytest.importorskip("torchvision", reason="the reference is torchvision's VisionTransformer")
    module = _torchvision_vit(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                              num_classes=5)
    images = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        want = module(torch.from_numpy(images)).numpy()
    spec = vit(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         image_size=32, patch_size=8, layer_norm_eps=1e-6), num_labels=5, logits=True)
    model = Model(spec=spec, framework=framework)
    model.build(seed=0)
    state = {key: value.numpy() for key, value in module.state_dict().items()}
    model.set_weights(to_neutral(torchvision_state_dict(state, spec), spec))
    np.testing.assert_allclose(model.predict(images), want, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_vit_b_16_loads_torchvisions_checkpoint_file(tmp_path):
    import torch

    torchvision = pytest.importorskip("torchvision", reason="the reference is torchvision's vit_b_16")

    torch.manual_seed(0)
    module = torchvision.models.vit_b_16().eval()
    torch.save(module.state_dict(), tmp_path / "vit_b_16-c867db91.pth")
    images = np.random.default_rng(3).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.inference_mode():
        want = module(torch.from_numpy(images)).numpy()
    model = zoo.load("vit_b_16", "torch", pretrained=tmp_path / "vit_b_16-c867db91.pth", logits=True)
    np.testing.assert_allclose(model.predict(images), want, atol=ATOL, rtol=0)
