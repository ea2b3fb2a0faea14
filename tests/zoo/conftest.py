"""Zoo fixtures: torchvision reference models with weights written by the tests themselves, and the
inverse of the zoo's checkpoint mapping (neutral weights -> a torchvision-style state dict), so
checkpoints of the tiny test models can be made without torchvision."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos.spec import ModelSpec

# neutral weight -> torch parameter, and the axis order from neutral back to torch's layout
_TORCH_NAMES = {
    "Conv2D": {"kernel": ("weight", (3, 2, 0, 1)), "bias": ("bias", None)},
    "Dense": {"kernel": ("weight", (1, 0)), "bias": ("bias", None)},
    "BatchNorm": {"gamma": ("weight", None), "beta": ("bias", None), "moving_mean": ("running_mean", None),
                  "moving_variance": ("running_var", None)},
}


def state_dict(spec: ModelSpec, weights: dict) -> dict[str, np.ndarray]:
    """Neutral weights as a torchvision-style state dict keyed by the spec's layer names."""
    kinds = {layer.name: layer.kind for layer in spec.layers}
    out = {}
    for layer, values in weights.items():
        for name, value in values.items():
            param, axes = _TORCH_NAMES[kinds[layer]][name]
            out[f"{layer}.{param}"] = np.ascontiguousarray(value if axes is None else np.transpose(value, axes))
    return out


def _realistic(module, size: int) -> None:
    """Make a random-init torchvision model look trained enough for a fair float32 comparison:
    non-zero biases and BatchNorm affines (so a wrong mapping cannot hide behind zeros and ones),
    running statistics calibrated on random images, and small last-BatchNorm gammas in residual
    blocks (trained ResNets keep residual branches small; with unit gammas the residual stream
    grows with depth and float32 rounding alone exceeds 1e-4 on ResNet-50's logits)."""
    import torch
    from torchvision.models.resnet import BasicBlock, Bottleneck

    torch.manual_seed(1)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.normal_(0.0, 0.1)
                layer.momentum = None  # cumulative average over the calibration batches
            elif isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)) and layer.bias is not None:
                layer.bias.normal_(0.0, 0.05)
            if isinstance(layer, (BasicBlock, Bottleneck)):
                (layer.bn3 if isinstance(layer, Bottleneck) else layer.bn2).weight.uniform_(0.1, 0.3)
        module.train()
        for _ in range(2):
            module(torch.randn(8, 3, size, size))
    module.eval()


@pytest.fixture(scope="session")
def torchvision_reference(tmp_path_factory):
    """``torchvision_reference(name, size) -> (checkpoint path, images, logits)``: torchvision's
    ``name`` with random weights saved as a ``.pth`` state dict, two random images of ``size``
    and its logits on them. Made once per (name, size) and session."""
    made: dict[tuple[str, int], tuple] = {}

    def make(name: str, size: int):
        if (name, size) not in made:
            import torch
            import torchvision

            torch.manual_seed(0)
            module = getattr(torchvision.models, name)()
            _realistic(module, size)
            path = tmp_path_factory.mktemp("torchvision") / f"{name}.pth"
            torch.save(module.state_dict(), path)
            images = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
            with torch.inference_mode():
                logits = module(torch.from_numpy(images)).numpy()
            made[name, size] = (path, images, logits)
        return made[name, size]

    return make


def onnx_signature(path) -> dict[str, tuple[str, list]]:
    """Element type and dimensions (names where dynamic) of every graph input and output of an
    ONNX file, by name: what another team's code sees."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: (onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),
                     [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in [*graph.input, *graph.output]}


def assert_trained_alike(torch_weights: dict, tf_weights: dict, atol: float = 1e-4) -> None:
    """The same model trained a few steps in torch and in TensorFlow ends with the same weights
    (``{layer: {name: array}}``), within ``atol``."""
    for layer, values in torch_weights.items():
        for name, value in values.items():
            if layer.endswith("k_proj") and name == "bias":
                continue  # softmax ignores a key bias: its true gradient is 0 and Adam scales rounding noise to ~lr
            np.testing.assert_allclose(tf_weights[layer][name], value, atol=atol, err_msg=f"{layer}.{name}")
