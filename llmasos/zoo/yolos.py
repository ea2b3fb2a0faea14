"""YOLOS (Fang et al., 2021): NMS-free object detection with a plain ViT, as Hugging Face's
``YolosForObjectDetection`` computes it, in the neutral spec, of any size from its config.

It is :mod:`.vit`'s encoder with ``num_detection_tokens`` learned tokens appended after the
patches (:class:`DetectionTokens`), a learned position embedding added again after every block
but the last (``use_mid_position_embeddings``), and two 3-layer MLP heads on the detection
tokens' final states: ``logits`` (``num_labels`` classes and "no object" last) and
``pred_boxes`` (cx, cy, w, h relative to the image, a sigmoid). Layer names are Hugging Face's,
so a ``YolosForObjectDetection`` folder (``config.json`` + ``model.safetensors``) maps onto them.

The model runs at one image size: its config's ``image_size`` (H, W), the checkpoint's, or
``input_size`` (llmasos' own config key), to which a checkpoint's position tables are
interpolated at load time (bicubic, as transformers interpolates them on every call for images of
another size: the same numbers). :meth:`YOLOS.detect` resizes any image to that size and scales
the boxes back to the image's pixels. Pixels of another size are refused::

    det = zoo.load("yolos", pretrained="path/to/yolos-small", config={"input_size": [800, 1088]})

>>> spec = yolos(YolosConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
...                          image_size=(32, 48), patch_size=8, num_detection_tokens=5), num_labels=3)
>>> spec.outputs, spec.shapes()["logits"], spec.shapes()["pred_boxes"]
(['logits', 'pred_boxes'], (5, 4), (5, 4))

::

    det = zoo.load("yolos", framework="tf", pretrained="path/to/yolos-small")
    found = det.detect(PIL.Image.open("street.jpg"), threshold=0.9)[0]
    found["boxes"], found["names"], found["scores"]      # xyxy pixels, label names, probabilities
    zoo.detection.draw_detections("street.jpg", found)   # a PIL image with the boxes drawn
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .. import layers
from ..errors import WeightsError, ZooError
from ..spec import ModelSpec
from .detection import check_threshold, post_process, prepare_detection_images
from .registry import IMAGENET_MEAN, IMAGENET_STD, register
from .text import HFConfig
from .vit import ImageModel, _encoder_layer

DETECTION = "object-detection"


@layers.register("DetectionTokens")
class DetectionTokens(layers.Layer):
    """``count`` learned vectors put after a sequence: ``(L, D)`` to ``(L + count, D)`` (the
    detection tokens of YOLOS).

    >>> DetectionTokens(count=3).output_shape((17, 8)), DetectionTokens(count=3).weight_shapes((17, 8))
    ((20, 8), {'tokens': (3, 8)})
    """

    initializers = {"tokens": "normal"}

    def __init__(self, count: int = 100) -> None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ZooError(f"DetectionTokens: count must be a positive int, got {count!r}")
        self.count = count

    def output_shape(self, input_shape: Any) -> tuple:
        length, features = input_shape
        return (None if length is None else length + self.count, features)

    def weight_shapes(self, input_shape: Any) -> dict[str, tuple]:
        return {"tokens": (self.count, input_shape[-1])}

    def call(self, ops: Any, x: Any, tokens: Any) -> Any:
        # (batch, 1, D) zeros plus the (count, D) table broadcasts to one copy per image
        first = ops.gather(x, np.array([0]), axis=1)
        return ops.concat([x, ops.add(ops.mul(first, 0.0), tokens)], axis=1)


def _pair(value: Any, what: str) -> tuple[int, int]:
    items = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise ZooError(f"yolos: {what} must be a positive int or (height, width), got {value!r}")
    return items


@dataclasses.dataclass(frozen=True)
class YolosConfig(HFConfig):
    """``YolosConfig``'s architecture settings; the defaults are hustvl/yolos-base's."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-12
    image_size: tuple[int, int] = (512, 864)
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    num_detection_tokens: int = 100
    use_mid_position_embeddings: bool = True
    # llmasos' own: the (H, W) the model runs at when not image_size (the checkpoint's)
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", _pair(self.image_size, "image_size"))
        if self.input_size is not None:
            object.__setattr__(self, "input_size", _pair(self.input_size, "input_size"))
        if not isinstance(self.patch_size, int) or isinstance(self.patch_size, bool) or self.patch_size < 1:
            raise ZooError(f"yolos: patch_size must be a positive int (square patches), got {self.patch_size!r}")
        for what in ("image_size", "input_size"):
            size = getattr(self, what)
            if size is not None and min(size) < self.patch_size:
                raise ZooError(f"yolos: {what} {size} is smaller than one {self.patch_size}-pixel patch")

    @property
    def size(self) -> tuple[int, int]:
        """The (H, W) the model runs at."""
        return self.input_size or self.image_size

    @property
    def grid(self) -> tuple[int, int]:
        """Patches down and across at :attr:`size` (a remainder of the image is cut off, as the
        strided conv does)."""
        return self.size[0] // self.patch_size, self.size[1] // self.patch_size

    @property
    def checkpoint_grid(self) -> tuple[int, int]:
        """Patches down and across at ``image_size``, which a checkpoint's position tables have."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def sequence_length(self) -> int:
        """The class token, the patches and the detection tokens."""
        return 1 + self.grid[0] * self.grid[1] + self.num_detection_tokens


def _mlp_head(spec: ModelSpec, prefix: str, source: str, width: int, outputs: int, last: str,
              activation: str) -> None:
    """transformers' ``YolosMLPPredictionHead`` with 3 layers: two ReLU layers, then ``last``."""
    spec.add("Dense", width, activation="relu", name=f"{prefix}.layers.0", inputs=source)
    spec.add("Dense", width, activation="relu", name=f"{prefix}.layers.1")
    spec.add("Dense", outputs, activation=activation, name=last)


def yolos(config: YolosConfig = YolosConfig(), task: str = DETECTION, num_labels: int = 91,
          logits: bool = True) -> ModelSpec:
    """YolosForObjectDetection's spec: ``pixel_values`` (C, H, W) at the config's :attr:`~YolosConfig.size` to
    ``logits`` (queries, num_labels + 1) and ``pred_boxes`` (queries, 4). ``logits`` is always
    raw scores (the post-processing takes the softmax), whatever the option says."""
    (height, width), size = config.size, config.hidden_size
    rows, columns = config.grid
    spec = ModelSpec().add_input("pixel_values", (config.num_channels, height, width))
    spec.add("Conv2D", size, kernel_size=config.patch_size, stride=config.patch_size,
             name="embeddings.patch_embeddings.projection")
    spec.add("Reshape", [size, rows * columns], name="embeddings.patch_embeddings.flatten")
    spec.add("Permute", [2, 1], name="embeddings.patch_embeddings.patches")       # (patches, width)
    spec.add("ClassToken", name="embeddings.cls_token")
    spec.add("DetectionTokens", name="embeddings.detection_tokens", count=config.num_detection_tokens)
    spec.add("PositionEmbedding", config.sequence_length, name="embeddings.position_embeddings")
    node = spec.add("Dropout", config.hidden_dropout_prob, name="embeddings.dropout").last
    for index in range(config.num_hidden_layers):
        node = _encoder_layer(spec, index, node, config)
        if config.use_mid_position_embeddings and index < config.num_hidden_layers - 1:
            node = spec.add("PositionEmbedding", config.sequence_length,
                            name=f"encoder.mid_position_embeddings.{index}", inputs=node).last
    spec.add("LayerNorm", eps=config.layer_norm_eps, name="layernorm", inputs=node)
    tokens = spec.add("Cropping1D", [1 + rows * columns, 0], name="detection_states").last
    _mlp_head(spec, "class_labels_classifier", tokens, size, num_labels + 1, "logits", "linear")
    _mlp_head(spec, "bbox_predictor", tokens, size, 4, "pred_boxes", "sigmoid")
    return spec.set_outputs(["logits", "pred_boxes"])


def hf_state_dict(state: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """A Hugging Face YOLOS checkpoint with this spec's keys: no ``vit.`` prefix, the tokens and
    position tables as the weights of their layers, the mid-layer table split per layer, the
    heads' last layers named ``logits`` and ``pred_boxes``."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("vit.")
        if key == "embeddings.cls_token":
            out["embeddings.cls_token.cls_token"] = value.reshape(-1)
        elif key == "embeddings.detection_tokens":
            out["embeddings.detection_tokens.tokens"] = value.reshape(value.shape[-2:])
        elif key == "embeddings.position_embeddings":
            out["embeddings.position_embeddings.weight"] = value.reshape(value.shape[-2:])
        elif key in ("encoder.mid_position_embeddings", "encoder.interpolation.mid_position_embeddings"):
            # (layers - 1, 1, length, width); files keep the first name, transformers' module the second
            for index, table in enumerate(value.reshape(value.shape[0], *value.shape[-2:])):
                out[f"encoder.mid_position_embeddings.{index}.weight"] = table
        elif key.startswith("class_labels_classifier.layers.2."):
            out["logits." + key.rpartition(".")[2]] = value
        elif key.startswith("bbox_predictor.layers.2."):
            out["pred_boxes." + key.rpartition(".")[2]] = value
        else:
            out[key] = value
    return out


def _cubic(t: float) -> list[float]:
    """The four weights of torch's bicubic upsampling (A = -0.75) at fraction ``t`` past a sample."""
    a = -0.75

    def near(x: float) -> float:     # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:      # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def bicubic_matrix(size_out: int, size_in: int) -> np.ndarray:
    """``(size_out, size_in)``: one axis of ``torch.nn.functional.interpolate(mode="bicubic",
    align_corners=False)`` to ``size_out`` as a matrix (edge samples repeated, as torch clamps).

    >>> bicubic_matrix(3, 3)
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """
    matrix = np.zeros((size_out, size_in))
    scale = size_in / size_out
    for row in range(size_out):
        source = (row + 0.5) * scale - 0.5     # not clamped at 0 for cubic, as torch does
        first = int(np.floor(source))
        for offset, weight in enumerate(_cubic(source - first)):
            matrix[row, min(max(first - 1 + offset, 0), size_in - 1)] += weight
    return matrix


def interpolate_positions(table: np.ndarray, grid: tuple[int, int], new_grid: tuple[int, int],
                          tokens: int) -> np.ndarray:
    """A YOLOS position table ``(1 + rows * columns + tokens, D)`` for another patch grid: the
    class token's and detection tokens' rows kept, the patches' resized bicubically as
    transformers' ``InterpolateInitialPositionEmbeddings`` does."""
    (rows, columns), (new_rows, new_columns) = grid, new_grid
    patches = table[1:1 + rows * columns].reshape(rows, columns, -1).astype(np.float64)
    resized = np.einsum("ia,jb,abd->ijd", bicubic_matrix(new_rows, rows), bicubic_matrix(new_columns, columns),
                        patches).reshape(new_rows * new_columns, -1)
    return np.concatenate([table[:1], resized.astype(table.dtype), table[1 + rows * columns:]])


class YOLOS(ImageModel):
    """A zoo YOLOS: a :class:`~llmasos.model.Model` (``predict`` gives ``[logits, pred_boxes]``)
    with its Hugging Face config, label names, and :meth:`detect`."""

    config_class = YolosConfig
    model_types = ("yolos",)
    tasks = (DETECTION,)
    hf_repo = "hustvl/yolos-small"
    build_spec = staticmethod(yolos)

    @classmethod
    def heads(cls, task: str) -> tuple[str, ...]:
        return ("logits",)

    @classmethod
    def adapt_checkpoint(cls, state: dict[str, np.ndarray], config: YolosConfig,
                         spec: ModelSpec) -> dict[str, np.ndarray]:
        """The checkpoint's position tables (at the config's ``image_size``) interpolated to
        ``input_size``; a table of another length than ``image_size`` gives is refused."""
        grid, tokens = config.checkpoint_grid, config.num_detection_tokens
        length = 1 + grid[0] * grid[1] + tokens
        for key in [k for k in state if k == "embeddings.position_embeddings.weight"
                    or k.startswith("encoder.mid_position_embeddings.")]:
            if state[key].shape[0] != length:
                raise WeightsError(
                    f"the checkpoint's {key} has {state[key].shape[0]} positions, but image_size "
                    f"{config.image_size} with {config.patch_size}-pixel patches and {tokens} detection tokens "
                    f"makes {length}: image_size must be the checkpoint's own; to run at another size, set "
                    f"input_size (config={{'input_size': [H, W]}})")
            if config.grid != grid:
                state[key] = interpolate_positions(state[key], grid, config.grid, tokens)
        return state

    @property
    def image_size(self) -> tuple[int, int]:
        """The (height, width) images are resized to."""
        return self.config.size

    @property
    def labels(self) -> list[str]:
        """Class names by label index (the config's ``id2label``, else ``LABEL_i``)."""
        return list(self.metadata.get("labels") or [f"LABEL_{i}" for i in range(self.spec.shapes()["logits"][-1] - 1)])

    def detection_settings(self) -> dict[str, Any]:
        """How images go in and detections come out, as plain data: written into an exported
        file's metadata (``preprocessing``), from which a server detects on images."""
        return {"task": DETECTION, "size": [*self.image_size], "mean": [*IMAGENET_MEAN], "std": [*IMAGENET_STD],
                "resample": "bilinear", "logits": "logits", "boxes": "pred_boxes"}

    def detect(self, images: Any, threshold: float = 0.5) -> list[dict[str, Any]]:
        """Objects in each image: ``{"boxes": (k, 4) float32 pixels (x0, y0, x1, y1), "labels":
        (k,) int64, "scores": (k,) float32, "names": [k label names]}``, the queries scoring above
        ``threshold`` in query order (no NMS) — transformers' ``post_process_object_detection``
        with ``target_sizes`` the images' own sizes.

        ``images``: a PIL image, an (H, W, 3) array (uint8, or float in [0, 1]), a path or the
        bytes of an image file, or a list of those; each is resized to :attr:`image_size`.
        """
        threshold = check_threshold(threshold)
        pixels, sizes = prepare_detection_images(images, self.image_size, IMAGENET_MEAN, IMAGENET_STD)
        logits, boxes = self.predict(pixels)
        names = self.labels
        results = post_process(logits, boxes, threshold, sizes)
        for found in results:
            found["names"] = [names[i] for i in found["labels"]]
        return results


# the default spec is hustvl/yolos-base's shape with COCO's 91 label ids
register(name="yolos", task=DETECTION, input_size=(3, 512, 864), classifier="logits", labels=None, num_classes=91,
         adapt_state_dict=hf_state_dict, model_class=YOLOS)(yolos)
