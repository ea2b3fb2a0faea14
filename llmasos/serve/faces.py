"""Server-side face embedding: a face embedder whose file says how it takes faces embeds image files.

An exported zoo face embedder (``facenet``) holds ``llmasos.faces`` in its ONNX metadata: the face
size and facenet's standardisation (see :mod:`llmasos.export.metadata`). Such a model also takes
``image`` (BYTES, ``[-1]``: one image file per row, PNG/JPEG/..., base64 encoded, read as
:func:`llmasos.serve.detection.image_files` reads a detector's), each an aligned face crop of exactly
that size (nothing is resized: a crop of another size is a 400 that names the size). The server
standardises the pixels, ``(pixels - 127.5) / 128``, runs the model and answers its own output, the
L2-normalised embeddings, one row per image. A request sends either ``image`` or the model's own
standardised ``(N, 3, H, W)`` input::

    {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["iVBORw0KGgo..."]}]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ServeError
from ..export.metadata import FACES
from .detection import IMAGE, image_files
from .tensors import TensorSpec


class FaceIO:
    """The ``image`` input of one face-embedder version: how image files become its input."""

    inputs = [TensorSpec(IMAGE, "BYTES", (-1,))]

    def __init__(self, settings: Mapping[str, Any], model_inputs: Mapping[str, TensorSpec]) -> None:
        try:
            self.size = tuple(int(v) for v in settings["size"])
            self.mean, self.scale = float(settings["mean"]), float(settings["scale"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ServeError(f"the file's {FACES} metadata is incomplete: {exc!r}", 500) from None
        if len(model_inputs) != 1 or IMAGE in model_inputs or len(self.size) != 2:
            raise ServeError(f"{FACES} describes faces of size {list(self.size)} for a one-input model, but the "
                             f"model takes {list(model_inputs)}", 500)
        self.pixels = next(iter(model_inputs))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], model_inputs: Mapping[str, TensorSpec]) -> FaceIO | None:
        """The face input an ONNX file's ``metadata_props`` describe; None for other models."""
        if FACES not in metadata:
            return None
        try:
            settings = json.loads(metadata[FACES])
        except json.JSONDecodeError as exc:
            raise ServeError(f"the file's {FACES} metadata is not JSON: {exc}", 500) from None
        if not isinstance(settings, dict):
            raise ServeError(f"the file's {FACES} metadata is not a JSON object", 500)
        return cls(settings, model_inputs)

    @staticmethod
    def takes(feeds: Mapping[str, Any]) -> bool:
        """Whether a request sends image files (not the model's own input)."""
        return IMAGE in feeds

    def feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's input for a request's images: decoded, size-checked and standardised."""
        extra = sorted(set(feeds) - {IMAGE})
        if extra:
            raise ServeError(f"send either {IMAGE!r} or the model's input {self.pixels!r}, not both; also got {extra}")
        batch = []
        for row, image in enumerate(image_files(feeds[IMAGE])):
            if image.size[::-1] != self.size:   # PIL sizes are (width, height)
                raise ServeError(f"input {IMAGE!r}, row {row}: a face must be {self.size[0]}x{self.size[1]} (an "
                                 f"aligned crop; nothing is resized), got {image.size[1]}x{image.size[0]}")
            batch.append(np.asarray(image, dtype=np.float32).transpose(2, 0, 1))
        pixels = (np.stack(batch) - np.float32(self.mean)) / np.float32(self.scale)
        return {self.pixels: np.ascontiguousarray(pixels, dtype=np.float32)}
