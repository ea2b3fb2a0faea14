"""Image classification in and out: images to normalised NCHW batches, scores to top-k labels.

:func:`prepare_images` is torchvision's ImageNet evaluation transform (``weights.transforms()``)
without torch: resize the shorter side (bilinear, antialiased, by PIL as torchvision does for PIL
images), centre crop, scale to [0, 1], normalise with the mean/std, channels first.

>>> import numpy as np
>>> batch = prepare_images(np.zeros((300, 400, 3), np.uint8), size=224)
>>> batch.shape, batch.dtype
((1, 3, 224, 224), dtype('float32'))
>>> top_k(np.array([[0.1, 0.7, 0.2]]), k=2, labels=["cat", "dog", "fox"])
[[('dog', 0.7), ('fox', 0.2)]]

With a zoo model, :func:`classify` reads the sizes, mean/std and labels from the model::

    net = zoo.load("resnet50", pretrained=True)
    classify(net, PIL.Image.open("dog.jpg"))    # [[('golden retriever', 0.83), ...]]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import DataError
from .imagenet_labels import IMAGENET_LABELS
from .registry import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from ..model import Model

LABEL_SETS: dict[str, Sequence[str]] = {"imagenet-1k": IMAGENET_LABELS}


def prepare_images(images: Any, size: int | tuple[int, int] = 224, resize: int | None = None,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                   crop_pct: float = 0.875) -> np.ndarray:
    """Images as one float32 batch ``(N, 3, H, W)``, ready for ``model.predict``.

    ``images`` is a PIL image, an array (``(H, W, 3)`` or ``(H, W)``; uint8 0-255, or float in
    [0, 1]), a list of those, or an ``(N, H, W, 3)`` array. The shorter side is resized to
    ``resize`` (default ``floor(max(size) / crop_pct)``: 256 for 224), then the centre
    ``size`` (an int or (H, W)) is cut out.

    >>> prepare_images(np.zeros((8, 8)), size=32).shape      # one grey 8x8 image
    (1, 3, 32, 32)
    """
    height, width = (size, size) if isinstance(size, int) else size
    resize = resize or math.floor(max(height, width) / crop_pct)
    if resize < max(height, width):
        raise DataError(f"resize ({resize}) must be at least the crop size ({height}x{width})")
    batch = [_rgb(image) for image in _as_list(images)]
    pixels = np.stack([_resize_crop(image, resize, height, width) for image in batch])
    out = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32)


def _as_list(images: Any) -> list:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        if not images:
            raise DataError("no images given")
        return list(images)
    return [images]


def _rgb(image: Any) -> list:
    """One image as three single-channel PIL images ("L" for uint8, "F" for float pixels in [0, 1])."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return list(image.convert("RGB").split())
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise DataError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (channels last, as "
                        f"images load), got shape {array.shape}")
    array = np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
    if array.dtype == np.uint8:
        return [Image.fromarray(np.ascontiguousarray(array[..., c])) for c in range(3)]
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"image arrays must be uint8 (0-255) or float (0-1), got {array.dtype}")
    # float pixels stay float: scaled to 0-255 so both kinds go through the same arithmetic below
    return [Image.fromarray(np.ascontiguousarray(array[..., c] * 255.0, dtype=np.float32), mode="F")
            for c in range(3)]


def _resize_crop(channels: list, shorter: int, height: int, width: int) -> np.ndarray:
    """torchvision's Resize(shorter) then CenterCrop((height, width)), as (H, W, 3) in [0, 1]."""
    from PIL import Image

    w, h = channels[0].size
    # torchvision: the shorter side becomes `shorter`, the longer int(shorter * long / short)
    new = (shorter, int(shorter * h / w)) if w <= h else (int(shorter * w / h), shorter)
    if new != (w, h):
        channels = [c.resize(new, Image.BILINEAR) for c in channels]
    top, left = int(round((new[1] - height) / 2.0)), int(round((new[0] - width) / 2.0))
    box = (left, top, left + width, top + height)
    crop = np.stack([np.asarray(c.crop(box), dtype=np.float32) for c in channels], axis=-1)
    return crop / np.float32(255.0)


def top_k(scores: np.ndarray, k: int = 5, labels: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """The ``k`` best (label, score) pairs per row of ``scores`` (N, classes), best first.
    Without ``labels`` a class is named by its index.

    >>> top_k(np.array([[0.1, 0.7, 0.2]]), k=2, labels=["cat", "dog", "fox"])
    [[('dog', 0.7), ('fox', 0.2)]]
    """
    scores = np.atleast_2d(np.asarray(scores))
    if labels is not None and len(labels) != scores.shape[1]:
        raise DataError(f"{len(labels)} labels for {scores.shape[1]} classes")
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    name = (lambda i: labels[i]) if labels is not None else str
    return [[(name(int(i)), float(row[i])) for i in order] for row, order in zip(scores, best)]


def classify(model: "Model", images: Any, k: int = 5,
             labels: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """Top-``k`` (label, probability) per image for a zoo image classifier, preprocessed as the
    model's weights expect (``model.metadata["preprocess"]``). ``labels`` default to the
    weights' label set (ImageNet's for the standard checkpoints) when the head was not replaced.

    ```python
    zoo.classify(zoo.load("resnet50", pretrained=True), PIL.Image.open("dog.jpg"), k=2)
    # [[('golden retriever', 0.87), ('Labrador retriever', 0.05)]]
    ```
    """
    settings = model.metadata.get("preprocess")
    if settings is None:
        raise DataError("classify() needs a zoo image classifier (model.metadata has no 'preprocess'); use "
                        "prepare_images() and model.predict() for other models")
    batch = prepare_images(images, size=tuple(settings["size"]), mean=settings["mean"], std=settings["std"],
                           crop_pct=settings["crop_pct"])
    if labels is None and model.metadata.get("labels") in LABEL_SETS:
        labels = LABEL_SETS[model.metadata["labels"]]
    return top_k(model.predict(batch), k, labels)
