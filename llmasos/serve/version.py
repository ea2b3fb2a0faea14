"""One loaded model version: an ONNX Runtime session, verified by a warm-up run, and its checks.

Creating a :class:`ModelVersion` runs the model once on zeros, so a version that cannot run never
serves. Requests are checked against the model's inputs before ONNX Runtime sees them, so a bad
request is a clear 400 and not an ONNX Runtime error.

>>> import onnx, onnx.helper as h, tempfile, os
>>> graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g",
...     [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
...     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3])])
>>> path = os.path.join(tempfile.mkdtemp(), "relu.onnx")
>>> onnx.save(h.make_model(graph), path)
>>> model = ModelVersion.open("relu", 1, path)
>>> model.inputs, model.batchable
([TensorSpec(name='x', datatype='FP32', shape=(-1, 3))], True)
>>> model.predict(np.array([[-1.0, 0.0, 2.0]]))
array([[0., 0., 2.]], dtype=float32)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import ServeError
from ..export.providers import ProviderSpec, session as open_session
from .batching import Batcher, Feeds, rows_of
from .detection import IMAGE, DetectionIO
from .faces import FaceIO
from .speech import speech_settings
from .tensors import DATATYPES, TensorSpec, specs_from_session
from .text import TextInput

PLATFORM = "onnxruntime_onnx"


def _invalid_argument() -> type[Exception]:
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    return InvalidArgument


def session_options() -> Any:
    """ONNX Runtime session options for serving: worker threads sleep when a run ends instead of
    spinning (ONNX Runtime's default, right for one process that owns the machine), so they leave
    the cores to the event loop reading the next request and to anything else on the machine.
    Benchmarks that compare against in-process ONNX Runtime use the same options."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class ModelVersion:
    """A session for one version of one model, checked and warmed up.

    With ``max_batch > 1`` and a dynamic first dimension on every input and output, ``batcher``
    merges concurrent requests; ``observe(rows)`` is told the size of every run. A file that
    carries its tokenizer also takes strings (``text``, see :mod:`.text`), tokenised into at most
    ``max_elements`` token ids per input (None: no limit).
    """

    def __init__(self, name: str, version: int, session: Any, *, max_batch: int = 0,
                 batch_timeout_s: float = 0.005, allow_nan: bool = False, max_elements: int | None = None,
                 observe: Callable[[int], None] = lambda rows: None) -> None:
        self.name, self.version, self.session = name, version, session
        self.inputs, self.outputs = specs_from_session(session)
        self.providers: list[str] = session.get_providers()
        self._specs = {spec.name: spec for spec in self.inputs}
        metadata = session.get_modelmeta().custom_metadata_map
        self.text = TextInput.from_metadata(metadata, self._specs, max_elements)
        self.speech = speech_settings(metadata)  # a CTC speech model: it takes streamed audio too
        self._output_names = [spec.name for spec in self.outputs]
        # a detector: it takes image files too, and answers boxes
        self.detection = DetectionIO.from_metadata(metadata, self._specs, self._output_names)
        self.faces = FaceIO.from_metadata(metadata, self._specs)   # a face embedder: it takes image files too
        self._allow_nan, self._observe = allow_nan, observe
        outputs = self._run(self._zeros())  # the warm-up: not a request, so not observed
        self.batchable = all(s.shape[:1] == (-1,) for s in self.inputs + self.outputs) and all(
            array.shape[:1] == (2,) for array in outputs.values())
        self.batcher = (Batcher(self.run, max_batch, batch_timeout_s)
                        if max_batch > 1 and self.batchable else None)

    @classmethod
    def open(cls, name: str, version: int, path: str | os.PathLike, *,
             providers: Iterable[ProviderSpec] = ("cpu",), strict: bool = False,
             **options: Any) -> ModelVersion:
        """Open ``path`` on ``providers`` (see :func:`llmasos.export.providers.session`) with
        :func:`session_options`."""
        return cls(name, version, open_session(path, providers, strict, session_options()), **options)

    def _zeros(self) -> Feeds:
        """Warm-up input: a batch of 2 where the first dimension varies, 1 for other varying ones
        (for a speech model, the samples of one frame: its convolutions need that many)."""
        feeds, least = {}, 1 if self.speech is None else self.speech.receptive_field
        for spec in self.inputs:
            shape = [d if d >= 0 else 2 if i == 0 else least for i, d in enumerate(spec.shape)]
            dtype = DATATYPES[spec.datatype].numpy
            feeds[spec.name] = (np.full(shape, "", dtype=object) if spec.datatype == "BYTES"
                                else np.zeros(shape, dtype))
        return feeds

    @property
    def advertised_inputs(self) -> list[TensorSpec]:
        """The inputs model metadata lists: the model's own, then ``text`` when it takes strings."""
        return (self.inputs + ([self.text.spec] if self.text is not None else [])
                + (self.detection.inputs if self.detection is not None else [])
                + (self.faces.inputs if self.faces is not None else []))

    @property
    def advertised_outputs(self) -> list[TensorSpec]:
        """The outputs model metadata lists: the model's own, then a detector's detections."""
        return self.outputs + (self.detection.outputs if self.detection is not None else [])

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        """Checked feeds for :meth:`run`: ``text`` tokenised into the model's inputs, if sent."""
        if self.text is not None and self.text.spec.name in feeds:
            if len(feeds) != 1:
                raise ServeError(f"model {self.name!r}: send either {self.text.spec.name!r} or the inputs "
                                 f"{list(self._specs)}, not both")
            feeds = self.text.feeds(feeds[self.text.spec.name])
        elif self.detection is not None and self.detection.takes(feeds):
            feeds = self.detection.feeds(feeds)
        elif self.faces is not None and self.faces.takes(feeds):
            feeds = self.faces.feeds(feeds)
        self.check(feeds)
        return dict(feeds)

    def check(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`ServeError` (400) unless ``feeds`` are exactly the model's inputs."""
        missing = [name for name in self._specs if name not in feeds]
        extra = [name for name in feeds if name not in self._specs]
        if missing or extra:
            raise ServeError(f"model {self.name!r} takes inputs {list(self._specs)}; "
                             f"missing {missing}, unknown {extra}")
        for name, array in feeds.items():
            spec = self._specs[name]
            expected = DATATYPES[spec.datatype].numpy
            if array.dtype != expected and not (spec.datatype == "BYTES" and array.dtype.kind in "OSU"):
                raise ServeError(f"input {name!r} is {array.dtype} but model {self.name!r} takes "
                                 f"{spec.datatype}")
            if array.ndim != len(spec.shape) or any(d >= 0 and d != n for d, n in zip(spec.shape, array.shape)):
                raise ServeError(f"input {name!r} has shape {list(array.shape)} but model "
                                 f"{self.name!r} takes {list(spec.shape)} (-1: any size)")
            if not self._allow_nan and array.dtype.kind == "f" and not np.isfinite(array).all():
                raise ServeError(f"input {name!r} contains NaN or infinity, which this server refuses")

    def check_outputs(self, requested: list[str] | None) -> None:
        """Raise :class:`ServeError` (400) if the model lacks an output a request asks for."""
        known = [spec.name for spec in self.advertised_outputs]
        unknown = [name for name in requested or () if name not in known]
        if unknown:
            raise ServeError(f"model {self.name!r} has no output(s) {unknown}; it has {known}")

    def finish(self, inputs: Mapping[str, np.ndarray], requested: list[str] | None, outputs: Feeds) -> Feeds:
        """The answer to a request from the model's outputs: a detector's detections when the
        request sent images (see :mod:`.detection`), else the outputs as they are."""
        return outputs if self.detection is None else self.detection.finish(inputs, requested, outputs)

    def run(self, feeds: Feeds) -> Feeds:
        """Run checked ``feeds``; ONNX Runtime's complaints about values become a 400."""
        rows = rows_of(feeds)
        self._observe(1 if rows is None else rows)
        return self._run(feeds)

    def _run(self, feeds: Feeds) -> Feeds:
        try:
            results = self.session.run(self._output_names, feeds)
        except _invalid_argument() as exc:
            raise ServeError(f"model {self.name!r} rejected the input: {exc}") from None
        except Exception as exc:  # ONNX Runtime's other errors are untyped
            raise ServeError(f"model {self.name!r} failed to run: {exc}", 500) from None
        return dict(zip(self._output_names, results))

    def predict(self, x: np.ndarray | Mapping[str, Any] | list[str]) -> np.ndarray | Feeds:
        """Run in-process: an array for a one-input model or a dict by input name; NumPy out.
        A model that takes strings takes a list of them (or a str) too: ``predict(["a good film"])``."""
        if self.text is not None and (isinstance(x, str) or (isinstance(x, (list, tuple)) and x
                                                               and all(isinstance(t, (str, bytes)) for t in x))):
            x = {self.text.spec.name: np.array([x] if isinstance(x, str) else list(x), dtype=object)}
        if not isinstance(x, Mapping):
            if len(self.inputs) != 1:
                raise ServeError(f"model {self.name!r} takes {len(self.inputs)} inputs: pass a dict "
                                 f"by name {list(self._specs)}")
            x = {self.inputs[0].name: x}
        # image files stay Python bytes: a NumPy bytes array would drop their trailing zero bytes
        feeds = {name: np.asarray(value, dtype=DATATYPES[self._specs[name].datatype].numpy)
                 if name in self._specs else np.array(list(value), dtype=object) if name == IMAGE
                 else np.asarray(value) for name, value in x.items()}
        outputs = self.finish(feeds, None, self.run(self.prepare(feeds)))
        return outputs[self._output_names[0]] if len(outputs) == 1 else outputs
