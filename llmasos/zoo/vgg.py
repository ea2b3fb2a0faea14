"""VGG-11/16, with and without BatchNorm (Simonyan & Zisserman, 2014), as torchvision builds them.

Layer names are torchvision's (``features.0``, ``classifier.0``, ...), so its state dicts map key
by key. Without BatchNorm torchvision's separate ReLU module (``features.1``) is fused into the
conv before it; the numbers are the same and the graph is one op shorter.

Input sizes: any of at least 32x32. torchvision pools the feature map adaptively to 7x7 before
the classifier. At 224 (7x7 maps) that pool is the identity and the spec has none; at sizes
whose feature map is a multiple of 7 it is an exact ``AvgPool2D``; at every other size it is a
fixed linear map, which :func:`fold_adaptive_pool` folds into ``classifier.0``'s weights when a
checkpoint is loaded (so the spec's first Dense takes the unpooled features, and
``parameter_count`` differs from torchvision's).

>>> from llmasos import zoo
>>> spec = zoo.registry.get("vgg11").spec(input_size=64)
>>> spec.shapes()["flatten"], spec.weight_shapes()["classifier.0"]["kernel"]
((2048,), (2048, 4096))
"""

from __future__ import annotations

import numpy as np

from ..errors import ZooError
from ..spec import ModelSpec
from .registry import register, torchvision_weights

POOLED = 7  # torchvision's AdaptiveAvgPool2d((7, 7))

# torchvision's configurations: conv widths, "M" for a 2x2 max pool
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg(config: tuple, *, batch_norm: bool, num_classes: int, input_size: tuple[int, int, int], logits: bool,
        hidden: int = 4096, dropout: float = 0.5) -> ModelSpec:
    """A VGG: 3x3 convs (padding 1) and max pools as ``config`` says, then three Dense layers.

    The head ends in softmax (so ``train`` picks cross-entropy on logits) unless ``logits``.
    """
    smallest = 2 ** config.count("M")
    if min(input_size[1:]) < smallest:
        raise ZooError(f"VGG needs inputs of at least {smallest}x{smallest} (its {config.count('M')} max pools "
                       f"halve them), got {input_size[1]}x{input_size[2]}")
    spec = ModelSpec()
    spec.add_input("image", input_size)
    index = 0  # torchvision's position in its nn.Sequential, which names the layers
    for width in config:
        if width == "M":
            spec.add("MaxPool2D", 2, name=f"features.{index}")
            index += 1
        elif batch_norm:
            spec.add("Conv2D", width, kernel_size=3, padding=1, name=f"features.{index}")
            spec.add("BatchNorm", name=f"features.{index + 1}")
            spec.add("Activation", "relu", name=f"features.{index + 2}")
            index += 3
        else:
            spec.add("Conv2D", width, kernel_size=3, padding=1, activation="relu", name=f"features.{index}")
            index += 2
    _, height, width = spec.shapes()[spec.nodes()[-1]]
    if (height, width) != (POOLED, POOLED) and height % POOLED == 0 and width % POOLED == 0:
        spec.add("AvgPool2D", (height // POOLED, width // POOLED), name="avgpool")
    spec.add("Flatten", name="flatten")
    spec.add("Dense", hidden, activation="relu", name="classifier.0")
    spec.add("Dropout", dropout, name="classifier.2")
    spec.add("Dense", hidden, activation="relu", name="classifier.3")
    spec.add("Dropout", dropout, name="classifier.5")
    spec.add("Dense", num_classes, activation="linear" if logits else "softmax", name="classifier.6")
    return spec


def adaptive_pool_matrix(out_size: int, in_size: int) -> np.ndarray:
    """torch's adaptive average pooling along one axis as an (out, in) matrix: output ``i``
    averages inputs ``floor(i * in / out)`` up to ``ceil((i + 1) * in / out)``."""
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        start, stop = (i * in_size) // out_size, -(-(i + 1) * in_size // out_size)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


def fold_adaptive_pool(state: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """A torchvision VGG state dict for ``spec``: where the spec's feature map is not pooled to
    7x7, the pool (linear) moves into ``classifier.0.weight``: ``W'[o, c, h, w] = sum_ij
    W[o, c, i, j] A_h[i, h] A_w[j, w]`` with the pool matrices of :func:`adaptive_pool_matrix`."""
    channels, height, width = spec.shapes()[spec.layer("flatten").inputs[0]]
    weight = state.get("classifier.0.weight")
    if (height, width) == (POOLED, POOLED) or weight is None or weight.shape[1:] != (channels * POOLED * POOLED,):
        return state  # nothing to fold, or a wrong shape that the name mapping reports
    rows = len(weight)
    pool_h = adaptive_pool_matrix(POOLED, height).astype(np.float32)
    pool_w = adaptive_pool_matrix(POOLED, width).astype(np.float32)
    # two plain matrix products over the last axis each (one large GEMM apiece, not a batch of tiny ones)
    grid = np.asarray(weight, dtype=np.float32).reshape(-1, POOLED) @ pool_w  # (o*c*i, w)
    grid = grid.reshape(-1, POOLED, width).transpose(0, 2, 1).reshape(-1, POOLED) @ pool_h  # (o*c*w, h)
    folded = grid.reshape(rows, channels, width, height).transpose(0, 1, 3, 2)
    return {**state, "classifier.0.weight": np.ascontiguousarray(folded).reshape(rows, -1)}


def _register(file: str | None = None, **info):
    weights = torchvision_weights(file) if file else None
    return register(classifier="classifier.6", weights=weights, adapt_state_dict=fold_adaptive_pool, **info)


@_register("vgg11-8a719046.pth")
def vgg11(**options) -> ModelSpec:
    """VGG-11 (configuration "A"); torchvision's IMAGENET1K_V1 weights."""
    return vgg(VGG11, batch_norm=False, **options)


@_register("vgg11_bn-6002323d.pth")
def vgg11_bn(**options) -> ModelSpec:
    """VGG-11 with BatchNorm after every conv; torchvision's IMAGENET1K_V1 weights."""
    return vgg(VGG11, batch_norm=True, **options)


@_register("vgg16-397923af.pth")
def vgg16(**options) -> ModelSpec:
    """VGG-16 (configuration "D"); torchvision's IMAGENET1K_V1 weights."""
    return vgg(VGG16, batch_norm=False, **options)


@_register("vgg16_bn-6c64b313.pth")
def vgg16_bn(**options) -> ModelSpec:
    """VGG-16 with BatchNorm after every conv; torchvision's IMAGENET1K_V1 weights."""
    return vgg(VGG16, batch_norm=True, **options)


@_register(input_size=(3, 32, 32), num_classes=10, labels=None, test_variant=True)
def vgg_tiny(**options) -> ModelSpec:
    """A VGG-11-BN layout with three narrow conv stages and a 64-unit classifier, for fast tests."""
    return vgg((8, "M", 16, "M", 32, 32, "M"), batch_norm=True, hidden=64, **options)
