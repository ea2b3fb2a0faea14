"""The TensorFlow/Keras adapter: the only package that imports TensorFlow or Keras.

>>> from llmasos.adapters import get_backend
>>> from llmasos.spec import ModelSpec
>>> model = get_backend("tf").build(ModelSpec.sequential((4,)).add("Dense", 3, activation="softmax"), seed=0)
>>> sorted(model.get_weights()["dense"])
['bias', 'kernel']
"""

from __future__ import annotations

import os

from ..coexist import before_tensorflow

before_tensorflow()

# Keras 3 picks its backend when first imported: this adapter needs TensorFlow's. TensorFlow's
# C++ start-up chatter is silenced unless the user asked for it.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from ...errors import FrameworkError  # noqa: E402
from ...spec import ModelSpec  # noqa: E402
from ..base import Backend  # noqa: E402
from .build import TFModel, build  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise FrameworkError(f"Keras runs on its {keras.backend.backend()!r} backend in this process; llmasos' tf "
                         f"framework needs KERAS_BACKEND=tensorflow set before Keras is first imported")


class TFBackend(Backend):
    name = "tf"
    package = "tf"

    def version(self) -> str:
        return f"{tf.__version__} (keras {keras.__version__})"

    def build(self, spec: ModelSpec, seed: int | None = None, device: str = "cpu") -> TFModel:
        return build(spec, seed, device)

    def devices(self) -> list[str]:
        from .devices import available

        return available()

    def export_onnx(self, model: TFModel, path: str, opset: int | None = None, *,
                    external_data: bool = False) -> dict:
        from .export import export_onnx

        return export_onnx(model, path, opset, external_data=external_data)


BACKEND = TFBackend()
