"""Is an ONNX file right? The standard's checker, and the source model's own outputs.

One validation function, as in Optimum's exporters: run the source model and an ONNX runtime on
the same inputs and raise a :class:`~llmasos.errors.VerificationError` when the output names,
shapes or values (beyond the tolerance) differ.

>>> from llmasos import export

Usage::

    export.verify("model.h5", "model.onnx")
    3.5762787e-07
    export.verify("model.h5", "model.onnx", runtime="reference")  # the ONNX reference evaluator
    2.9802322e-07
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..errors import ExportError, VerificationError
from .config import OnnxConfig
from .providers import check_file, session

if TYPE_CHECKING:
    from ..model import Model

RUNTIMES = ("onnxruntime", "reference")
SAMPLE_ROWS = 32            # rows of a Dataset used as the verification sample


def as_model(model_or_path: Any) -> "Model":
    """A :class:`~llmasos.model.Model` as given, or loaded from an llmasos ``.h5`` path
    (in the framework that wrote it, when installed)."""
    from ..model import Model

    if isinstance(model_or_path, Model):
        return model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        return Model.load(model_or_path)
    raise ExportError(f"expected an llmasos Model or the path of an .h5 file, got {type(model_or_path).__name__}")


def check_onnx(path: str | os.PathLike) -> None:
    """:class:`ExportError` unless onnx's full check passes; ``full_check`` includes strict
    shape inference, so an op missing from the file's opset or ill-typed edges are caught here."""
    try:
        onnx.checker.check_model(os.fspath(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the ONNX checker rejects the file: {_first_line(exc)}") from exc


def op_counts(proto: onnx.ModelProto) -> dict[str, int]:
    """Op types in the main graph, most frequent first; ops outside the standard domain carry it."""
    counts = Counter(f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                     for n in proto.graph.node)
    return dict(counts.most_common())


def run_onnx(path: str | os.PathLike, feed: dict[str, np.ndarray], runtime: str = "onnxruntime") -> dict[str, np.ndarray]:
    """Outputs by name from ONNX Runtime (on CPU) or from ``onnx.reference.ReferenceEvaluator``."""
    if runtime not in RUNTIMES:
        raise ExportError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    check_file(path)
    if runtime == "reference":
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(os.fspath(path))
        return dict(zip(evaluator.output_names, evaluator.run(None, feed)))
    sess = session(path, ("cpu",))
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed)))


def verify(model: Any, onnx_path: str | os.PathLike, *, sample: Any = None, atol: float | None = None,
           runtime: str = "onnxruntime") -> float:
    """Run ``model`` (a Model or .h5 path) and ``onnx_path`` on the same inputs; return the max
    abs difference, or raise :class:`VerificationError` above ``atol``.

    ``sample`` is an array, a list or dict of arrays, or a Dataset (its first rows); by default
    random inputs inside each input's domain (:meth:`OnnxConfig.sample`). ``atol`` defaults to
    1e-5 for models under a million parameters, 1e-4 above.
    """
    model = as_model(model)
    config = OnnxConfig(model.spec)
    if sample is None:
        inputs = config.sample()
    elif hasattr(sample, "batches"):
        inputs = model.shape_input(next(iter(sample.batches(SAMPLE_ROWS)))[0])
    else:
        inputs = model.shape_input(sample)
    expected = dict(zip(model.spec.outputs, model.compiled.predict(inputs)))
    got = run_onnx(onnx_path, {i.name: x for i, x in zip(config.inputs, inputs)}, runtime)
    return compare_outputs(expected, got, config.atol if atol is None else atol,
                           f"{model.framework} vs {runtime}")


def compare_outputs(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], atol: float, what: str) -> float:
    """The max abs difference over all outputs; :class:`VerificationError` on any mismatch."""
    if set(expected) != set(got):
        raise VerificationError(f"{what}: the ONNX file's outputs are {sorted(got)}, the model's {sorted(expected)}")
    worst = 0.0
    for name, want in expected.items():
        have = np.asarray(got[name])
        if have.shape != want.shape:
            raise VerificationError(f"{what}: output {name!r} has shape {have.shape} in ONNX, {want.shape} in the model")
        if not np.all(np.isfinite(have) == np.isfinite(want)):
            raise VerificationError(f"{what}: output {name!r} is NaN or infinite in one runtime and not in the other")
        diff = float(np.max(np.abs(have.astype(np.float64) - want), initial=0.0, where=np.isfinite(want)))
        worst = max(worst, diff)
    if worst > atol:
        raise VerificationError(f"{what}: outputs differ by up to {worst:.3g}, above the tolerance {atol:g}; "
                                f"the ONNX file does not compute what the model computes", worst, atol)
    return worst


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
