"""Object detection in and out, without a framework: images to a fixed-size NCHW batch, and a
detector's raw outputs to boxes in pixels, as transformers' ``post_process_object_detection``.

A set-prediction detector (DETR, YOLOS) answers every query with class logits (the last class is
"no object") and a box ``(cx, cy, w, h)`` relative to the image; there is no NMS. Post-processing
keeps the queries whose best real class scores above ``threshold``::

    pixels, sizes = prepare_detection_images(PIL.Image.open("street.jpg"), size=(512, 864))
    logits, boxes = model.predict(pixels)
    post_process(logits, boxes, threshold=0.5, target_sizes=sizes)
    # [{'scores': array([0.97], dtype=float32), 'labels': array([2]), 'boxes': array([[12., 40., 310., 200.]], ...)}]

>>> logits = np.array([[[4.0, 0.0, 0.0], [0.0, 0.0, 5.0]]], np.float32)     # 2 queries, 2 classes + no-object
>>> boxes = np.array([[[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1]]], np.float32)
>>> found = post_process(logits, boxes, threshold=0.5, target_sizes=[(100, 200)])[0]
>>> found["labels"], found["boxes"]
(array([0]), array([[ 50.,  25., 150.,  75.]], dtype=float32))
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError
from .preprocess import _as_list, _rgb
from .registry import IMAGENET_MEAN, IMAGENET_STD

Size = tuple[int, int]  # (height, width)


def check_threshold(threshold: Any) -> float:
    """``threshold`` as a float in [0, 1], else a :class:`DataError` saying so."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) or \
            not 0.0 <= float(threshold) <= 1.0:
        raise DataError(f"threshold must be a number between 0 and 1 (a probability), got {threshold!r}")
    return float(threshold)


def read_image(image: Any) -> Any:
    """A path or the bytes of an image file as a PIL image; anything else as it is (an array or
    a PIL image, checked when it is prepared)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise DataError(f"{path} is not a file; detect() takes images: PIL images, (H, W, 3) arrays, "
                            f"paths or bytes of image files")
        source: Any = path
    elif isinstance(image, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(image))
    else:
        return image
    try:
        with Image.open(source) as opened:
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        what = path if isinstance(image, (str, os.PathLike)) else f"{len(bytes(image))} bytes"
        raise DataError(f"{what}: not an image file PIL can read (PNG, JPEG, BMP, ...): {err}") from None


def image_size(image: Any) -> Size:
    """(height, width) of a PIL image or an (H, W[, C]) array."""
    channels = _rgb(image)
    width, height = channels[0].size
    return height, width


def prepare_detection_images(images: Any, size: Size, mean: Sequence[float] = IMAGENET_MEAN,
                             std: Sequence[float] = IMAGENET_STD) -> tuple[np.ndarray, list[Size]]:
    """Images as one float32 batch ``(N, 3, H, W)`` of ``size`` = (H, W), and each image's own
    (height, width) for :func:`post_process`.

    Each image is resized to ``size`` as a whole (bilinear, by PIL, on 0-255 pixels), scaled to
    [0, 1] and normalised with ``mean``/``std``: transformers' DETR/YOLOS image processors with
    ``size={"height": H, "width": W}`` and no padding. Boxes come out relative to the image, so
    they scale back to the original pixels whatever its aspect ratio. ``images``: a PIL image,
    an (H, W, 3) / (H, W) array (uint8 0-255 or float 0-1), a path or the bytes of an image file,
    or a list of those.

    >>> pixels, sizes = prepare_detection_images(np.zeros((30, 40, 3), np.uint8), size=(16, 32))
    >>> pixels.shape, sizes
    ((1, 3, 16, 32), [(30, 40)])
    """
    from PIL import Image

    height, width = size
    batch, sizes = [], []
    for image in _as_list(images):
        channels = _rgb(read_image(image))
        w, h = channels[0].size
        sizes.append((h, w))
        if (w, h) != (width, height):
            channels = [c.resize((width, height), Image.BILINEAR) for c in channels]
        batch.append(np.stack([np.asarray(c, dtype=np.float32) for c in channels]) / np.float32(255.0))
    pixels = (np.stack(batch) - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return np.ascontiguousarray(pixels, dtype=np.float32), sizes


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def post_process(logits: np.ndarray, boxes: np.ndarray, threshold: float = 0.5,
                 target_sizes: Sequence[Size] | np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    """Per image ``{"scores", "labels", "boxes"}``: the queries whose best class (the softmax
    over all classes, "no object" last and left out) scores above ``threshold``, their label
    index, and their box as (x0, y0, x1, y1) — in pixels of ``target_sizes`` (per image
    (height, width)), else relative. Query order is kept; there is no NMS. The same as
    ``DetrImageProcessor``/``YolosImageProcessor.post_process_object_detection``.

    ``logits`` (N, queries, classes + 1), ``boxes`` (N, queries, 4) as (cx, cy, w, h) in [0, 1].
    """
    threshold = check_threshold(threshold)
    logits, boxes = np.asarray(logits, np.float32), np.asarray(boxes, np.float32)
    if logits.ndim != 3 or boxes.ndim != 3 or boxes.shape[-1] != 4 or logits.shape[:2] != boxes.shape[:2]:
        raise DataError(f"post_process takes logits (N, queries, classes + 1) and boxes (N, queries, 4), got "
                        f"{logits.shape} and {boxes.shape}")
    probabilities = _softmax(logits)[..., :-1]
    scores, labels = probabilities.max(-1), probabilities.argmax(-1)
    cx, cy, w, h = np.moveaxis(boxes, -1, 0)
    corners = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)
    if target_sizes is not None:
        sizes = np.asarray(target_sizes, np.float32).reshape(-1, 2)
        if len(sizes) != len(logits):
            raise DataError(f"{len(sizes)} target sizes for {len(logits)} images")
        height, width = sizes[:, 0], sizes[:, 1]
        corners = corners * np.stack([width, height, width, height], axis=1)[:, None, :]
    results = []
    for score, label, box in zip(scores, labels, corners):
        keep = score > threshold
        results.append({"scores": score[keep], "labels": label[keep].astype(np.int64), "boxes": box[keep]})
    return results


def draw_detections(image: Any, found: dict[str, Any], width: int = 2, color: str = "red") -> Any:
    """A copy of ``image`` (anything :func:`prepare_detection_images` takes, one image) as an RGB
    PIL image with ``found``'s boxes drawn and labelled (``names`` if there, else the label
    indices) with their scores: one image's entry of ``detect()``.

    >>> found = {"boxes": np.array([[2.0, 3.0, 20.0, 12.0]]), "labels": np.array([1]), "scores": np.array([0.9])}
    >>> drawn = draw_detections(np.zeros((40, 60, 3), np.uint8), found)
    >>> drawn.size, drawn.getpixel((2, 6)), drawn.getpixel((50, 35))       # on the box's left edge; far from it
    ((60, 40), (255, 0, 0), (0, 0, 0))
    """
    from PIL import Image, ImageDraw

    channels = _rgb(read_image(image))
    if channels[0].mode == "F":   # float pixels, already scaled to 0-255
        channels = [c.convert("L") for c in channels]
    drawn = Image.merge("RGB", channels)
    pen = ImageDraw.Draw(drawn)
    names = found.get("names") or [str(int(label)) for label in found["labels"]]
    for box, name, score in zip(np.asarray(found["boxes"]).tolist(), names, np.asarray(found["scores"]).tolist()):
        pen.rectangle(box, outline=color, width=width)
        pen.text((box[0] + width, box[1] + width), f"{name} {score:.2f}", fill=color)
    return drawn
