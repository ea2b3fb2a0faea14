"""Server-side detection: a detector whose file says how it takes images returns boxes.

An exported zoo detector (YOLOS) holds ``llmasos.detection`` in its ONNX metadata: the image size,
mean/std and which outputs are the class logits and the boxes (see :mod:`llmasos.export.metadata`).
Such a model also takes ``image`` (BYTES, ``[-1]``: one image file per row, PNG/JPEG/..., base64
encoded, since the protocol's BYTES carry text) and, optionally, ``threshold`` (FP32, ``[1]``,
default 0.5). The server decodes and resizes the images as :func:`llmasos.zoo.detection.
prepare_detection_images` does, runs the model and post-processes as
:func:`llmasos.zoo.detection.post_process`, with each image's own size. The answer is the
detections of the whole batch, one row each::

    boxes        FP32  [k, 4]  x0, y0, x1, y1 in the image's pixels
    scores       FP32  [k]
    labels       INT64 [k]     class index
    names        BYTES [k]     class name (the file's labels)
    image_index  INT64 [k]     which image of the request the row belongs to

A request sends either ``image`` (and ``threshold``) or the model's own ``pixel_values``, whose
answer is the raw ``logits`` and ``pred_boxes``; with images, the raw outputs come back only when
the request names them::

    {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["iVBORw0KGgo..."]},
                {"name": "threshold", "shape": [1], "datatype": "FP32", "data": [0.7]}]}
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import DataError, ServeError
from ..export.metadata import DETECTION
from ..zoo.detection import check_threshold, post_process, prepare_detection_images, read_image
from .tensors import TensorSpec

IMAGE, THRESHOLD = "image", "threshold"
OUTPUTS = (TensorSpec("boxes", "FP32", (-1, 4)), TensorSpec("scores", "FP32", (-1,)),
           TensorSpec("labels", "INT64", (-1,)), TensorSpec("names", "BYTES", (-1,)),
           TensorSpec("image_index", "INT64", (-1,)))


class DetectionIO:
    """The ``image`` and ``threshold`` inputs of one detector version and the detections it answers."""

    inputs = [TensorSpec(IMAGE, "BYTES", (-1,)), TensorSpec(THRESHOLD, "FP32", (1,))]
    outputs = list(OUTPUTS)

    def __init__(self, settings: Mapping[str, Any], labels: list[str] | None, model_inputs: Mapping[str, TensorSpec],
                 model_outputs: list[str]) -> None:
        try:
            self.size = tuple(int(v) for v in settings["size"])
            self.mean, self.std = list(settings["mean"]), list(settings["std"])
            self.logits, self.boxes = str(settings["logits"]), str(settings["boxes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ServeError(f"the file's {DETECTION} metadata is incomplete: {exc!r}", 500) from None
        if len(model_inputs) != 1 or {self.logits, self.boxes} - set(model_outputs):
            raise ServeError(f"{DETECTION} names outputs {self.logits!r} and {self.boxes!r} of a one-input model, but "
                             f"the model takes {list(model_inputs)} and gives {model_outputs}", 500)
        self.pixels = next(iter(model_inputs))
        self.labels = labels

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], model_inputs: Mapping[str, TensorSpec],
                      model_outputs: list[str]) -> DetectionIO | None:
        """The detection inputs an ONNX file's ``metadata_props`` describe; None for other models."""
        if DETECTION not in metadata:
            return None
        try:
            settings = json.loads(metadata[DETECTION])
            labels = json.loads(metadata["labels"]) if "labels" in metadata else None
        except json.JSONDecodeError as exc:
            raise ServeError(f"the file's {DETECTION} or labels metadata is not JSON: {exc}", 500) from None
        if not isinstance(settings, dict):
            raise ServeError(f"the file's {DETECTION} metadata is not a JSON object", 500)
        return cls(settings, labels if isinstance(labels, list) else None, model_inputs, model_outputs)

    @staticmethod
    def takes(feeds: Mapping[str, Any]) -> bool:
        """Whether a request sends images (not the model's own input)."""
        return IMAGE in feeds

    def feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's input for a request's images: decoded, resized and normalised."""
        extra = sorted(set(feeds) - {IMAGE, THRESHOLD})
        if extra:
            raise ServeError(f"send either {IMAGE!r} (and {THRESHOLD!r}) or the model's input {self.pixels!r}, "
                             f"not both; also got {extra}")
        self.threshold(feeds)   # a bad threshold is refused before any image is decoded
        pixels, _ = prepare_detection_images(image_files(feeds[IMAGE]), self.size, self.mean, self.std)
        return {self.pixels: pixels}

    @staticmethod
    def threshold(feeds: Mapping[str, np.ndarray]) -> float:
        value = feeds.get(THRESHOLD)
        if value is None:
            return 0.5
        value = np.asarray(value)
        if value.size != 1 or value.dtype.kind not in "fiu":
            raise ServeError(f"input {THRESHOLD!r} takes one number between 0 and 1, got shape {list(value.shape)} "
                             f"of {value.dtype}")
        try:
            return check_threshold(float(value.reshape(-1)[0]))
        except DataError as exc:
            raise ServeError(f"input {THRESHOLD!r}: {exc}") from None

    def finish(self, inputs: Mapping[str, np.ndarray], requested: list[str] | None,
               outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The answer to a request: detections when it sent images (with the raw outputs it
        names), else the raw outputs, refusing detection outputs asked of raw pixels."""
        names = {spec.name for spec in OUTPUTS}
        if not self.takes(inputs):
            if names & set(requested or ()):
                raise ServeError(f"outputs {sorted(names & set(requested or ()))} come with images: send "
                                 f"{IMAGE!r}, not {self.pixels!r}")
            return dict(outputs)
        sizes = [image.size[::-1] for image in image_files(inputs[IMAGE], decode=False)]   # PIL sizes are (width, height)
        found = post_process(outputs[self.logits], outputs[self.boxes], self.threshold(inputs), sizes)
        labels = np.concatenate([f["labels"] for f in found])
        answer = {"boxes": np.concatenate([f["boxes"] for f in found]).reshape(-1, 4).astype(np.float32),
                  "scores": np.concatenate([f["scores"] for f in found]).astype(np.float32),
                  "labels": labels,
                  "names": np.array([self._name(i) for i in labels], dtype=object),
                  "image_index": np.concatenate([np.full(len(f["labels"]), i, np.int64) for i, f in enumerate(found)])}
        answer.update({name: outputs[name] for name in requested or () if name in outputs})
        return answer

    def _name(self, label: int) -> str:
        return self.labels[label] if self.labels is not None and 0 <= label < len(self.labels) else f"LABEL_{label}"


def image_files(column: np.ndarray, decode: bool = True) -> list[Any]:
    """The image files of a request's ``image`` column (base64 text or bytes per row) as RGB PIL
    images, or with ``decode`` False only opened (enough to read their sizes, which needs the
    header alone); a :class:`ServeError` (400) names a row that is not one. Face embedders'
    ``image`` input (:mod:`.faces`) reads them the same way."""
    column = np.asarray(column, dtype=object)
    if column.ndim != 1 or not column.size:
        raise ServeError(f"input {IMAGE!r} has shape {list(column.shape)}; it takes [-1], one image file per row")
    from PIL import Image

    images = []
    for row, item in enumerate(column.tolist()):
        if isinstance(item, str):   # the protocol's BYTES are text: image files travel base64-encoded
            try:
                item = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                raise ServeError(f"input {IMAGE!r}, row {row}: not base64 text; send each image file "
                                 f"(PNG, JPEG, ...) base64-encoded") from None
        if not isinstance(item, (bytes, bytearray)):
            raise ServeError(f"input {IMAGE!r}, row {row}: takes image files (base64 text), got "
                             f"{type(item).__name__}")
        try:
            images.append(read_image(item) if decode else Image.open(io.BytesIO(item)))
        except (DataError, OSError) as exc:
            raise ServeError(f"input {IMAGE!r}, row {row}: {exc}") from None
    return images
