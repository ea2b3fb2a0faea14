"""A teacher's logits, whatever it is: an llmasos Model (either framework), an ``.h5`` file or an
``.onnx`` file run by ONNX Runtime. The teacher only ever runs in inference mode, without gradients;
a teacher ending in softmax (or sigmoid) gives the logits before it, as the losses train on.

It runs where no framework is installed when the teacher is an ``.onnx`` file::

    logits = Teacher("teacher.onnx").logits(x)          # (rows, classes), before any softmax
    logits = Teacher(model).logits(x)                   # a Model, in its own framework
    logits = Teacher("teacher.h5", framework="tf").logits(x)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import SpecError


class Teacher:
    """Wraps ``source`` (a Model, or a path to an ``.h5`` or ``.onnx``) for :meth:`logits`."""

    def __init__(self, source: Any, framework: str | None = None) -> None:
        from ..model import Model

        self._session = None
        self.model = None
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if path.endswith(".onnx"):
                self._session, self._output = _logits_session(path)
                return
            source = Model.load(path, framework=framework)
        if not isinstance(source, Model):
            raise SpecError(f"a teacher is an llmasos Model, an .h5 or an .onnx path; got {type(source).__name__}")
        self.model = _logits_model(source)

    def outputs(self, x: Any, layers: list[str], batch_size: int = 512) -> tuple[np.ndarray, list[np.ndarray]]:
        """The logits and the outputs of ``layers`` (for hints), each flattened to a row per input,
        in one pass. Only a Model teacher (or an ``.h5``) shows its inner layers."""
        if self.model is None:
            raise SpecError("hints need the teacher's inner layers, which an .onnx teacher does not show: give the "
                            "teacher as a Model or an .h5 file")
        inner = self.model._like(self.model.framework)
        inner.spec.set_outputs([*self.model.spec.outputs, *layers])
        inner.set_weights(self.model.get_weights())
        logits, *found = inner.predict(x, batch_size)
        return np.asarray(logits, np.float32), [np.asarray(f, np.float32).reshape(len(f), -1) for f in found]

    def logits(self, x: Any, batch_size: int = 512) -> np.ndarray:
        """The teacher's logits for inputs ``x`` (arrays, a dict of arrays), in order, as float32."""
        if self._session is None:
            return np.asarray(self.model.predict(x, batch_size), dtype=np.float32)
        feed_input = self._session.get_inputs()[0]
        x = np.asarray(x, dtype=np.float32)
        shape = [d if isinstance(d, int) else -1 for d in feed_input.shape]
        if x.shape[1:] != tuple(shape[1:]) and -1 not in shape[1:]:
            x = x.reshape([-1, *shape[1:]])          # flat rows, as Model.predict takes them
        parts = [self._session.run([self._output], {feed_input.name: x[s:s + batch_size]})[0]
                 for s in range(0, len(x), batch_size)]
        return np.concatenate(parts).astype(np.float32)


def _logits_model(model):
    """``model`` itself, or a copy without its final softmax/sigmoid holding the same weights."""
    name = model.spec.logits_layer()
    if name is None:
        return model
    copy = model._like(model.framework)
    copy.spec.layer(name).config["activation"] = "linear"
    copy.set_weights(model.get_weights())
    return copy


def _logits_session(path: str):
    """An ONNX Runtime session whose first output is the logits: when the graph's output comes out
    of a Softmax (or Sigmoid), that node's input is exposed as an output and read instead."""
    import onnx
    import onnxruntime as ort

    graph_model = onnx.load(path)
    output = graph_model.graph.output[0].name
    producer = next((n for n in graph_model.graph.node if output in n.output), None)
    if producer is not None and producer.op_type in ("Softmax", "Sigmoid"):
        output = producer.input[0]
        graph_model.graph.output.append(onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph_model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session, output
