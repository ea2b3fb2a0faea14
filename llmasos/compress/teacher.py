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
        self.metadata: dict = {}     # the teacher Model's (its class names: "labels"); none from an .onnx
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if path.endswith(".onnx"):
                self._session, self._output = _logits_session(path)
                return
            source = Model.load(path, framework=framework)
        if not isinstance(source, Model):
            raise SpecError(f"a teacher is an llmasos Model, an .h5 or an .onnx path; got {type(source).__name__}")
        self.model, self.metadata = _logits_model(source), dict(source.metadata)

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
        """The teacher's logits for inputs ``x`` (arrays, a dict of arrays, a Dataset read in order,
        each batch padded on its own for texts), in order, as float32."""
        if self._session is None:
            return np.asarray(self.model.predict(x, batch_size), dtype=np.float32)
        if hasattr(x, "batches"):
            parts = [self._run(xb) for xb, _ in x.batches(batch_size)]
        elif isinstance(x, dict):
            parts = [self._run({k: v[s:s + batch_size] for k, v in x.items()}) for s in range(0, _rows(x), batch_size)]
        else:
            x = np.asarray(x, dtype=np.float32)
            parts = [self._run(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]
        return np.concatenate(parts).astype(np.float32)

    def _run(self, x: Any) -> np.ndarray:
        """One batch through the ONNX session: a dict feeds the inputs by name (token ids, masks), an
        array the first input (flat rows reshaped to it, as Model.predict takes them)."""
        feeds = self._session.get_inputs()
        if isinstance(x, dict):
            missing = [i.name for i in feeds if i.name not in x]
            if missing:
                raise SpecError(f"the .onnx teacher takes {[i.name for i in feeds]}; the data has no {missing}")
            return self._session.run([self._output], {i.name: np.asarray(x[i.name]) for i in feeds})[0]
        x = np.asarray(x, dtype=np.float32)
        shape = [d if isinstance(d, int) else -1 for d in feeds[0].shape]
        if x.shape[1:] != tuple(shape[1:]) and -1 not in shape[1:]:
            x = x.reshape([-1, *shape[1:]])          # flat rows, as Model.predict takes them
        return self._session.run([self._output], {feeds[0].name: x})[0]


def _rows(x: dict) -> int:
    return len(next(iter(x.values())))


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
