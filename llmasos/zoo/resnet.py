"""ResNet-18/34/50 (He et al., 2015) exactly as torchvision builds them, in the neutral spec.

Layer names are torchvision's module names (``conv1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``), so a torchvision or timm state dict maps onto them key by
key. The Bottleneck is torchvision's "v1.5" (the stride sits on the 3x3 conv). Every padding is
an explicit int, as in torchvision, so no framework pads asymmetrically or through an extra op.

>>> from llmasos import zoo
>>> spec = zoo.registry.get("resnet_tiny").spec(input_size=32)
>>> spec.shapes()["layer4.0.add"], spec.shapes()["fc"]
((64, 1, 1), (10,))

``zoo.load("resnet18", framework="tf", pretrained=True, num_classes=10)`` builds one.
"""

from __future__ import annotations

from typing import Callable

from ..spec import ModelSpec
from .registry import register, torchvision_weights

# (spec, name prefix, input node, width, stride) -> output node
Block = Callable[[ModelSpec, str, str, int, int], str]


def _conv_bn(spec: ModelSpec, conv: str, norm: str, source: str, filters: int, kernel: int, stride: int = 1) -> str:
    """A bias-free conv and its BatchNorm (torch's momentum 0.1 and eps 1e-5, the spec defaults)."""
    spec.add("Conv2D", filters, kernel_size=kernel, stride=stride, padding=kernel // 2, use_bias=False,
             name=conv, inputs=source)
    spec.add("BatchNorm", name=norm)
    return norm


def _residual(spec: ModelSpec, prefix: str, source: str, stride: int) -> str:
    """Add the block's input (through torchvision's 1x1 "downsample" when the shape changes), then ReLU."""
    shapes = spec.shapes()
    body = spec.nodes()[-1]
    shortcut = source
    if stride != 1 or shapes[source][0] != shapes[body][0]:
        shortcut = _conv_bn(spec, f"{prefix}.downsample.0", f"{prefix}.downsample.1", source, shapes[body][0], 1,
                            stride)
    spec.add("Add", name=f"{prefix}.add", inputs=[body, shortcut])
    spec.add("Activation", "relu", name=f"{prefix}.relu")
    return f"{prefix}.relu"


def basic_block(spec: ModelSpec, prefix: str, source: str, width: int, stride: int) -> str:
    """Two 3x3 convs (ResNet-18/34)."""
    _conv_bn(spec, f"{prefix}.conv1", f"{prefix}.bn1", source, width, 3, stride)
    spec.add("Activation", "relu", name=f"{prefix}.relu1")
    _conv_bn(spec, f"{prefix}.conv2", f"{prefix}.bn2", f"{prefix}.relu1", width, 3)
    return _residual(spec, prefix, source, stride)


def bottleneck(spec: ModelSpec, prefix: str, source: str, width: int, stride: int) -> str:
    """1x1 down, 3x3 (strided), 1x1 up to 4x the width (ResNet-50 and deeper)."""
    _conv_bn(spec, f"{prefix}.conv1", f"{prefix}.bn1", source, width, 1)
    spec.add("Activation", "relu", name=f"{prefix}.relu1")
    _conv_bn(spec, f"{prefix}.conv2", f"{prefix}.bn2", f"{prefix}.relu1", width, 3, stride)
    spec.add("Activation", "relu", name=f"{prefix}.relu2")
    _conv_bn(spec, f"{prefix}.conv3", f"{prefix}.bn3", f"{prefix}.relu2", 4 * width, 1)
    return _residual(spec, prefix, source, stride)


def resnet(block: Block, depths: tuple[int, ...], *, num_classes: int, input_size: tuple[int, int, int],
           logits: bool, widths: tuple[int, ...] = (64, 128, 256, 512)) -> ModelSpec:
    """A ResNet: stem (7x7/2 conv, 3x3/2 max pool), one stage per depth, global pool, ``fc``.

    The head ends in softmax (so ``train`` picks cross-entropy on logits) unless ``logits``.
    """
    spec = ModelSpec()
    spec.add_input("image", input_size)
    _conv_bn(spec, "conv1", "bn1", "image", widths[0], 7, 2)
    spec.add("Activation", "relu", name="relu")
    spec.add("MaxPool2D", 3, stride=2, padding=1, name="maxpool")
    node = "maxpool"
    for stage, (width, depth) in enumerate(zip(widths, depths), start=1):
        for index in range(depth):
            stride = 2 if stage > 1 and index == 0 else 1
            node = block(spec, f"layer{stage}.{index}", node, width, stride)
    spec.add("GlobalAvgPool2D", name="avgpool", inputs=node)
    spec.add("Dense", num_classes, activation="linear" if logits else "softmax", name="fc")
    return spec


@register(weights=torchvision_weights("resnet18-f37072fd.pth", hf_repo="timm/resnet18.tv_in1k"))
def resnet18(**options) -> ModelSpec:
    """ResNet-18: BasicBlocks (2, 2, 2, 2); torchvision's IMAGENET1K_V1 weights."""
    return resnet(basic_block, (2, 2, 2, 2), **options)


@register(weights=torchvision_weights("resnet34-b627a593.pth", hf_repo="timm/resnet34.tv_in1k"))
def resnet34(**options) -> ModelSpec:
    """ResNet-34: BasicBlocks (3, 4, 6, 3); torchvision's IMAGENET1K_V1 weights."""
    return resnet(basic_block, (3, 4, 6, 3), **options)


@register(weights=torchvision_weights("resnet50-0676ba61.pth", hf_repo="timm/resnet50.tv_in1k"))
def resnet50(**options) -> ModelSpec:
    """ResNet-50: Bottlenecks (3, 4, 6, 3); torchvision's IMAGENET1K_V1 weights."""
    return resnet(bottleneck, (3, 4, 6, 3), **options)


@register(input_size=(3, 32, 32), num_classes=10, labels=None, test_variant=True)
def resnet_tiny(**options) -> ModelSpec:
    """A ResNet-18 layout with one BasicBlock per stage and widths 8-64, for fast tests."""
    return resnet(basic_block, (1, 1, 1, 1), widths=(8, 16, 32, 64), **options)
