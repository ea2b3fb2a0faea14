"""The Vision Transformer (Dosovitskiy et al., 2020) for image classification, as Hugging Face's
``ViTForImageClassification`` computes it, in the neutral spec, of any size from its config.

An image ``pixel_values`` ``(C, H, W)`` is cut into ``patch_size`` squares by a strided
convolution (``embeddings.patch_embeddings.projection``), a learned class token is put before
the patches (:class:`ClassToken`) and a learned position embedding added; a pre-LayerNorm
Transformer encoder follows, then a final ``layernorm`` and a ``classifier`` on the class token.
Layer names are Hugging Face's (``encoder.layer.0.attention.attention.query``), so a
``ViTForImageClassification`` folder maps onto them key by key.

>>> spec = vit(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
...                      image_size=32, patch_size=8), num_labels=5)
>>> spec.shapes()["embeddings.position_embeddings"], spec.shapes()["classifier"]
((17, 16), (5,))

::

    model = zoo.load("vit", framework="tf", pretrained="path/to/vit-base-patch16-224")
    model.predict(pixels)                          # (batch, 3, 224, 224) normalised as the folder's processor says
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from .. import layers
from ..errors import ZooError
from ..spec import ModelSpec
from .registry import register, torchvision_weights
from .text import HFConfig, TextModel, activation

CLASSIFICATION = "image-classification"


@layers.register("ClassToken")
class ClassToken(layers.Layer):
    """A learned vector put before a sequence: ``(L, D)`` to ``(L + 1, D)`` (ViT's ``[CLS]``).

    >>> ClassToken().output_shape((196, 768)), ClassToken().weight_shapes((196, 768))
    ((197, 768), {'cls_token': (768,)})
    """

    initializers = {"cls_token": "normal"}

    def output_shape(self, input_shape: Any) -> tuple:
        length, features = input_shape
        return (None if length is None else length + 1, features)

    def weight_shapes(self, input_shape: Any) -> dict[str, tuple]:
        return {"cls_token": (input_shape[-1],)}

    def call(self, ops: Any, x: Any, cls_token: Any) -> Any:
        # one row per image: the first patch times zero gives the batch size whatever it is
        first = ops.gather(x, np.array([0]), axis=1)
        return ops.concat([ops.add(ops.mul(first, 0.0), cls_token), x], axis=1)


@dataclasses.dataclass(frozen=True)
class ViTConfig(HFConfig):
    """``ViTConfig``'s architecture settings; the defaults are google/vit-base-patch16-224's."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ZooError(f"image_size {self.image_size} is not a whole number of {self.patch_size}-pixel patches")

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def _encoder_layer(spec: ModelSpec, index: int, source: str, config: ViTConfig) -> str:
    """Pre-LayerNorm self-attention and feed-forward, each with its residual."""
    prefix = f"encoder.layer.{index}"
    attention = f"{prefix}.attention.attention"
    spec.add("LayerNorm", eps=config.layer_norm_eps, name=f"{prefix}.layernorm_before", inputs=source)
    for role in ("query", "key", "value"):
        spec.add("Dense", config.hidden_size, use_bias=config.qkv_bias, name=f"{attention}.{role}",
                 inputs=f"{prefix}.layernorm_before")
    spec.add("Attention", config.num_attention_heads, dropout=config.attention_probs_dropout_prob, name=attention,
             inputs=[f"{attention}.{role}" for role in ("query", "key", "value")])
    spec.add("Dense", config.hidden_size, name=f"{prefix}.attention.output.dense")
    spec.add("Dropout", config.hidden_dropout_prob, name=f"{prefix}.attention.output.dropout")
    attended = spec.add("Add", name=f"{prefix}.attention.residual",
                        inputs=[f"{prefix}.attention.output.dropout", source]).last
    spec.add("LayerNorm", eps=config.layer_norm_eps, name=f"{prefix}.layernorm_after", inputs=attended)
    spec.add("Dense", config.intermediate_size, activation=activation(config.hidden_act, "hidden_act"),
             name=f"{prefix}.intermediate.dense")
    spec.add("Dense", config.hidden_size, name=f"{prefix}.output.dense")
    spec.add("Dropout", config.hidden_dropout_prob, name=f"{prefix}.output.dropout")
    return spec.add("Add", name=f"{prefix}.output.residual", inputs=[f"{prefix}.output.dropout", attended]).last


def vit(config: ViTConfig = ViTConfig(), task: str = CLASSIFICATION, num_labels: int = 1000,
        logits: bool = False) -> ModelSpec:
    """ViTForImageClassification's spec: ``pixel_values`` (C, H, W) to ``classifier`` (num_labels),
    softmax unless ``logits``."""
    size, width = config.image_size, config.hidden_size
    spec = ModelSpec().add_input("pixel_values", (config.num_channels, size, size))
    spec.add("Conv2D", width, kernel_size=config.patch_size, stride=config.patch_size,
             name="embeddings.patch_embeddings.projection")
    spec.add("Reshape", [width, config.patches], name="embeddings.patch_embeddings.flatten")
    spec.add("Permute", [2, 1], name="embeddings.patch_embeddings.patches")    # (patches, width)
    spec.add("ClassToken", name="embeddings.cls_token")
    spec.add("PositionEmbedding", config.patches + 1, name="embeddings.position_embeddings")
    node = spec.add("Dropout", config.hidden_dropout_prob, name="embeddings.dropout").last
    for index in range(config.num_hidden_layers):
        node = _encoder_layer(spec, index, node, config)
    spec.add("LayerNorm", eps=config.layer_norm_eps, name="layernorm", inputs=node)
    spec.add("TakeToken", 0, name="pooled")
    spec.add("Dense", num_labels, activation="linear" if logits else "softmax", name="classifier")
    return spec.set_outputs("classifier")


def hf_state_dict(state: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """A Hugging Face ViT checkpoint with this spec's keys: no ``vit.`` prefix, the class token
    and position table as the weights of their layers (without the leading axes of 1)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("vit.")
        if key == "embeddings.cls_token":
            out["embeddings.cls_token.cls_token"] = value.reshape(-1)
        elif key == "embeddings.position_embeddings":
            out["embeddings.position_embeddings.weight"] = value.reshape(value.shape[-2:])
        elif not key.startswith(("pooler.", "embeddings.mask_token")):  # ViTModel's pooler: unused here
            out[key] = value
    return out


class ImageModel(TextModel):
    """A Hugging Face family that takes images (pixels), not text: it has no tokenizer."""

    @classmethod
    def read_tokenizer(cls, source: Any, folder: Path | None) -> None:
        if source is not None:
            raise ZooError(f"{cls.__name__} takes images: it has no tokenizer")
        return None


class ViT(ImageModel):
    """A zoo ViT: a :class:`~llmasos.model.Model` with its Hugging Face config and labels."""

    config_class = ViTConfig
    model_types = ("vit",)
    tasks = (CLASSIFICATION,)
    hf_repo = "google/vit-base-patch16-224"
    build_spec = staticmethod(vit)

    @classmethod
    def heads(cls, task: str) -> tuple[str, ...]:
        return ("classifier",)


register(name="vit", task=CLASSIFICATION, input_size=(3, 224, 224), classifier="classifier",
         adapt_state_dict=hf_state_dict, model_class=ViT)(vit)

# torchvision's VisionTransformer block names -> this spec's (per encoder layer)
_TORCHVISION_LAYER = {"ln_1": "layernorm_before", "ln_2": "layernorm_after", "mlp.0": "intermediate.dense",
                      "mlp.3": "output.dense", "self_attention.out_proj": "attention.output.dense"}


def torchvision_state_dict(state: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """A torchvision ``vit_*`` checkpoint with this spec's keys: the packed query/key/value
    projection (``in_proj_weight``) split in three, the class token and positions as weights."""
    out = {}
    for key, value in state.items():
        if key == "class_token":
            out["embeddings.cls_token.cls_token"] = value.reshape(-1)
        elif key == "encoder.pos_embedding":
            out["embeddings.position_embeddings.weight"] = value.reshape(value.shape[-2:])
        elif key.startswith("conv_proj."):
            out["embeddings.patch_embeddings.projection." + key.removeprefix("conv_proj.")] = value
        elif key.startswith("encoder.ln."):
            out["layernorm." + key.removeprefix("encoder.ln.")] = value
        elif key.startswith("heads.head."):
            out["classifier." + key.removeprefix("heads.head.")] = value
        elif key.startswith("encoder.layers.encoder_layer_"):
            index, _, rest = key.removeprefix("encoder.layers.encoder_layer_").partition(".")
            prefix = f"encoder.layer.{index}"
            if rest.startswith("self_attention.in_proj_"):
                part = "weight" if rest.endswith("weight") else "bias"
                for role, piece in zip(("query", "key", "value"), np.split(value, 3, axis=0)):
                    out[f"{prefix}.attention.attention.{role}.{part}"] = piece
            else:
                module, _, param = rest.rpartition(".")
                out[f"{prefix}.{_TORCHVISION_LAYER.get(module, module)}.{param}"] = value
        else:
            out[key] = value  # unknown: to_neutral names it
    return out


@register(weights=torchvision_weights("vit_b_16-c867db91.pth"), classifier="classifier",
          adapt_state_dict=torchvision_state_dict)
def vit_b_16(num_classes: int = 1000, input_size: tuple[int, int, int] = (3, 224, 224),
             logits: bool = False) -> ModelSpec:
    """torchvision's ``vit_b_16`` (ViT-B/16, LayerNorm eps 1e-6), its ImageNet checkpoint's names."""
    channels, height, width = input_size
    if height != width:
        raise ZooError(f"vit_b_16 takes square images, got input_size {input_size}")
    return vit(ViTConfig(image_size=height, num_channels=channels, layer_norm_eps=1e-6), num_labels=num_classes,
               logits=logits)
