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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..errors import ExportError, VerificationError
from .config import ATOL_LARGE, ATOL_SMALL, DYNAMIC_SIZE, LARGE_PARAMETERS, OnnxConfig
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

    ```python
    export.verify(model, "model.onnx")                                   # on random inputs
    export.verify("model.h5", "model.onnx", sample=test, runtime="reference")  # onnx's reference evaluator
    ```
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


@dataclass
class DerivedCheck:
    """How a derived file (optimised, fp16, int8) compares with its source on the same sample.

    ``max_abs_diff`` over all outputs; ``relative_diff`` is that over the largest source output
    magnitude; ``agreement`` the share of rows (or tokens) whose top-1 class is the same in both;
    ``tolerance`` bounds ``max_abs_diff`` (fp32) or ``relative_diff`` (fp16), None where numbers
    are only reported (int8: its change is a metric's, see ``eval_data``)."""

    check: str
    rows: int
    max_abs_diff: float
    relative_diff: float
    agreement: float
    tolerance: float | None

    def __str__(self) -> str:
        bound = ("" if self.tolerance is None else
                 f" <= {self.tolerance:g}" + (" relative" if self.check == "fp16" else ""))
        shown = self.relative_diff if self.check == "fp16" else self.max_abs_diff
        what = "relative diff" if self.check == "fp16" else "max abs diff"
        return (f"verified against the source on {self.rows} sample rows: {what} {shown:.3g}{bound}, "
                f"same top-1 on {self.agreement:.1%}")


DERIVED_CHECKS = ("fp32", "fp16", "int8")
FP16_RTOL = 1e-2            # fp16 keeps ~3 significant digits; sums over layers lose some more
DERIVED_ROWS = 8            # sample rows (each of DYNAMIC_SIZE tokens for sequence inputs)


def verify_derived(source: str | os.PathLike, candidate: str | os.PathLike, check: str) -> DerivedCheck:
    """Run ``source`` and ``candidate`` (a file made from it) on the same sample inputs, built as
    :func:`to_onnx` builds them (:func:`~llmasos.export.feeds.random_feed`), and raise
    :class:`VerificationError` unless the candidate computes the same thing:

    * ``"fp32"`` (graph rewrites): max abs difference within to_onnx's tolerance (1e-5 under a
      million parameters, else 1e-4);
    * ``"fp16"``: max abs difference within 1e-2 of the largest source output magnitude;
    * ``"int8"``: reported, not bounded (top-1 agreement, and the metric change with eval data).

    Output names and shapes must match, and a NaN or infinite value where the source is finite
    always fails.
    """
    from .feeds import graph_inputs, random_feed
    from .metrics import classes, threshold

    if check not in DERIVED_CHECKS:
        raise ExportError(f"check must be one of {', '.join(DERIVED_CHECKS)}, got {check!r}")
    proto, derived = check_file(source), check_file(candidate)
    feed = random_feed(proto, DERIVED_ROWS, DYNAMIC_SIZE)
    dtypes = {i.name: i.dtype for i in graph_inputs(derived)}  # an fp16 file may take fp16 inputs
    expected = run_onnx(source, feed)
    got = run_onnx(candidate, {name: x.astype(dtypes.get(name, x.dtype)) for name, x in feed.items()})
    what = f"the {check} copy of {os.fspath(source)}"
    worst = compare_outputs(expected, got, np.inf, what)
    scale = max((float(np.max(np.abs(v), initial=0.0, where=np.isfinite(v))) for v in expected.values()
                 if np.issubdtype(v.dtype, np.floating)), default=0.0)
    relative = worst / scale if scale > 0 else worst
    first = next(iter(expected))
    cut = threshold(proto)
    agreement = float(np.mean(classes(expected[first], cut) == classes(np.asarray(got[first]), cut)))
    tolerance = {"fp32": _fp32_atol(proto), "fp16": FP16_RTOL, "int8": None}[check]
    measured = relative if check == "fp16" else worst
    if tolerance is not None and measured > tolerance:
        raise VerificationError(f"{what}: outputs differ by up to {worst:.3g} ({relative:.3g} of the largest output), "
                                f"above the {check} tolerance {tolerance:g}"
                                f"{' relative' if check == 'fp16' else ''}; the file is not written", worst, tolerance)
    return DerivedCheck(check, DERIVED_ROWS, worst, relative, agreement, tolerance)


def _fp32_atol(proto: onnx.ModelProto) -> float:
    """to_onnx's tolerance for a file: from its spec metadata, else from its initializers' size."""
    from ..spec import ModelSpec
    from .metadata import read_metadata

    spec = read_metadata(proto).get("spec")
    if isinstance(spec, dict):
        return OnnxConfig(ModelSpec.from_dict(spec)).atol
    count = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    return ATOL_SMALL if count < LARGE_PARAMETERS else ATOL_LARGE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
