"""Finding and reading pretrained weights offline, and the errors when they are missing or wrong.
Checkpoints are written here, for the tiny models; nothing is downloaded."""

from __future__ import annotations

import json
import logging
from fractions import Fraction

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmasos import zoo
from llmasos.errors import WeightsError, WeightsNotFoundError
from llmasos.zoo import weights

from ..conftest import framework_params
from ..test_parity import randomized_weights
from .conftest import state_dict


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torchvision and Hugging Face caches of our own: (torch checkpoints folder, hub folder)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints", tmp_path / "hf" / "hub"


@pytest.fixture(scope="module")
def tiny():
    """resnet_tiny's spec, random neutral weights and the same as a torchvision-style state dict."""
    spec = zoo.registry.get("resnet_tiny").spec()
    neutral = randomized_weights(spec)
    return spec, neutral, state_dict(spec, neutral)


def _hf_snapshot(hub, repo, files: dict, config: dict | None = None):
    folder = hub / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("abc123")
    for name, state in files.items():
        save_file(state, str(snapshot / name))
    if config is not None:
        (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot


def test_missing_weights_list_every_place_and_how_to_fill_it(caches):
    checkpoints, hub = caches
    with pytest.raises(WeightsNotFoundError) as caught:
        zoo.load("resnet18", pretrained=True)
    message = str(caught.value)
    assert str(checkpoints / "resnet18-f37072fd.pth") in message
    assert str(hub / "models--timm--resnet18.tv_in1k") in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "huggingface-cli download timm/resnet18.tv_in1k" in message
    assert isinstance(caught.value, FileNotFoundError)
    assert "torchvision.models.resnet18(weights='DEFAULT') caches it" in message


def test_missing_weights_name_the_publishers_own_download(caches):
    """facenet's weights are facenet-pytorch's, not torchvision's: the message says how they are fetched."""
    checkpoints, _ = caches
    with pytest.raises(WeightsNotFoundError) as caught:
        zoo.load("facenet", pretrained=True)
    message = str(caught.value)
    assert "facenet_pytorch.InceptionResnetV1(pretrained='vggface2')" in message
    assert "torchvision.models" not in message
    assert str(checkpoints / "20180402-114759-vggface2.pt") in message


def test_missing_file_name_or_path_says_where_it_looked(caches, tmp_path):
    checkpoints, _ = caches
    with pytest.raises(WeightsNotFoundError) as caught:
        zoo.load("resnet_tiny", pretrained="mine.pth")
    assert str(checkpoints / "mine.pth") in str(caught.value)
    with pytest.raises(WeightsNotFoundError, match="Looked in:\n  .*nowhere.safetensors"):
        zoo.load("resnet_tiny", pretrained=tmp_path / "nowhere.safetensors")
    with pytest.raises(WeightsNotFoundError, match="resnet_tiny has no standard pretrained weights"):
        zoo.load("resnet_tiny", pretrained=True)


def test_standard_name_found_in_the_torchvision_cache(caches):
    checkpoints, _ = caches
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(b"")
    info = zoo.registry.get("resnet18")
    assert weights.locate(True, info) == checkpoints / "resnet18-f37072fd.pth"
    assert weights.locate("resnet18-f37072fd.pth", info) == checkpoints / "resnet18-f37072fd.pth"


def test_hugging_face_cache_snapshot_is_found_and_read(caches, tiny):
    _, hub = caches
    spec, neutral, state = tiny
    _hf_snapshot(hub, "me/tiny", {"model.safetensors": state}, {"architecture": "resnet_tiny"})
    info = zoo.registry.get("resnet_tiny")
    assert weights.locate("me/tiny", info).name == "abc123"
    loaded, _ = weights.load_pretrained(info, spec, "me/tiny", replace_head=False)
    np.testing.assert_array_equal(loaded["layer1.0.conv1"]["kernel"], neutral["layer1.0.conv1"]["kernel"])
    # pretrained=True falls back from the torchvision cache to the model's Hugging Face repo
    resnet = zoo.registry.get("resnet18")
    snapshot = _hf_snapshot(hub, "timm/resnet18.tv_in1k", {"model.safetensors": {"x": np.zeros(1, np.float32)}})
    assert weights.locate(True, resnet) == snapshot


def test_folder_naming_another_architecture_is_refused(tmp_path, tiny):
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet50.tv_in1k"}))
    save_file(tiny[2], str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError, match="names the architecture 'resnet50.tv_in1k', not 'resnet_tiny'"):
        zoo.load("resnet_tiny", pretrained=tmp_path)


def test_another_models_standard_file_is_refused(tmp_path):
    path = tmp_path / "resnet50-0676ba61.pth"
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="resnet50's standard checkpoint, not resnet18's"):
        zoo.load("resnet18", pretrained=path)


def test_wrong_shapes_name_the_key_and_both_shapes(tmp_path, tiny):
    _, _, state = tiny
    bad = {**state, "layer2.0.conv1.weight": np.zeros((16, 8, 5, 5), np.float32)}
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(WeightsError, match=r"layer2\.0\.conv1\.weight: \(16, 8, 5, 5\) in .*bad\.npz, "
                                           r"the model needs \(16, 8, 3, 3\)"):
        zoo.load("resnet_tiny", pretrained=tmp_path / "bad.npz")


def test_missing_and_unexpected_keys_are_listed(tmp_path, tiny):
    _, _, state = tiny
    bad = {k: v for k, v in state.items() if not k.startswith("layer4.0.bn2.")}
    bad["layer9.0.conv1.weight"] = np.zeros(3, np.float32)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError) as caught:
        zoo.load("resnet_tiny", pretrained=tmp_path / "bad.safetensors")
    message = str(caught.value)
    assert "4 missing key(s): layer4.0.bn2.weight, layer4.0.bn2.bias, layer4.0.bn2.running_mean" in message
    assert "1 unexpected key(s): layer9.0.conv1.weight" in message


def test_unsupported_file_type(tmp_path):
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(WeightsError, match="unsupported checkpoint type '.h5'"):
        zoo.load("resnet_tiny", pretrained=tmp_path / "weights.h5")


@pytest.mark.torch
def test_pth_read_with_weights_only(tmp_path, tiny):
    import torch

    spec, neutral, state = tiny
    torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in state.items()}}, tmp_path / "a.pth")
    loaded, _ = weights.load_pretrained(zoo.registry.get("resnet_tiny"), spec, tmp_path / "a.pth", False)
    np.testing.assert_array_equal(loaded["fc"]["kernel"], neutral["fc"]["kernel"])

    torch.save({"x": Fraction(1, 3)}, tmp_path / "b.pth")  # an object: weights_only refuses to unpickle it
    with pytest.raises(WeightsError, match="not a readable state dict of tensors"):
        weights.read(tmp_path / "b.pth", zoo.registry.get("resnet_tiny"))


@pytest.mark.parametrize("framework", framework_params())
def test_pretrained_loads_exactly_and_a_new_head_is_said(framework, tmp_path, tiny, caplog):
    spec, neutral, state = tiny
    np.savez(tmp_path / "tiny.npz", **state)
    same = zoo.load("resnet_tiny", framework, pretrained=tmp_path / "tiny.npz")
    for layer, values in same.get_weights().items():
        for name, value in values.items():
            np.testing.assert_array_equal(value, neutral[layer][name], err_msg=f"{layer}/{name}")
    assert same.metadata["pretrained"] == str(tmp_path / "tiny.npz")
    with caplog.at_level(logging.WARNING, logger="llmasos.zoo"):
        replaced = zoo.load("resnet_tiny", framework, pretrained=tmp_path / "tiny.npz", num_classes=3, seed=0)
    assert "the checkpoint's head 'fc' (10 classes) is not loaded: num_classes=3" in caplog.text
    got = replaced.get_weights()
    assert got["fc"]["kernel"].shape == (64, 3)
    np.testing.assert_array_equal(got["layer4.0.conv2"]["kernel"], neutral["layer4.0.conv2"]["kernel"])
    assert replaced.metadata["labels"] is None
