"""``to_onnx``: a Model or an .h5 file in, a checked and verified ONNX file out.

>>> from llmasos import export

Usage::

    report = export.to_onnx("model.h5", "model.onnx")
    report.max_abs_diff <= report.atol, report.inputs[0]
    (True, {'name': 'input', 'dtype': 'float32', 'shape': ['batch', 64], 'layout': 'NC'})

The steps, each of which can stop the export with a named error and leave nothing behind:
the framework's exporter writes a temporary file beside the target; the graph is made to match
the :class:`~llmasos.export.config.OnnxConfig` (names, dynamic dimensions) and stamped with
metadata; onnx's full checker runs; ONNX Runtime and the source model run the same inputs; only
then is the file renamed into place.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from .. import __version__
from ..adapters import get_backend
from ..errors import ExportError, LlmasosError, OnnxFileError
from ..spec import ModelSpec
from .config import OnnxConfig
from .files import file_size, needs_external_data, save, staged
from .graph_form import conform_for_runtime
from .metadata import export_metadata, op_counts, write_metadata
from .validate import as_model, check_onnx, verify

if TYPE_CHECKING:
    from ..adapters.base import Backend
    from ..model import Model


@dataclass
class ExportReport:
    """What an export did; ``str(report)`` is the CLI's summary.

    ```python
    report = export.to_onnx("model.h5", "model.onnx")
    report.verified, report.max_abs_diff, report.op_counts   # (True, 1.2e-07, {'Gemm': 2, 'Relu': 1, ...})
    ```
    """

    path: str
    framework: str
    framework_version: str
    exporter: str
    opset: int
    verified: bool
    max_abs_diff: float | None
    atol: float
    inputs: list[dict]
    outputs: list[dict]
    op_counts: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        check = (f"verified: max abs diff {self.max_abs_diff:.2e} <= {self.atol:g}" if self.verified
                 else "not verified (--no-verify)")
        return "\n".join([
            f"exported {self.path} ({self.size_bytes:,} bytes) in {self.seconds:.1f} s",
            f"  from {self.framework} {self.framework_version} with {self.exporter}, opset {self.opset}",
            f"  inputs: {_tensors(self.inputs)}",
            f"  outputs: {_tensors(self.outputs)}",
            f"  ops: {', '.join(f'{k} {v}' for k, v in self.op_counts.items())}",
            f"  {check}",
        ])


def _tensors(items: list[dict]) -> str:
    return "; ".join(f"{t['name']} {t['dtype']}{t['shape']} {t['layout']}" for t in items)


def to_onnx(model_or_h5_path: Any, path: str | os.PathLike, *, opset: int | None = None, verify: bool = True,
            atol: float | None = None, sample: Any = None, allow_untrained: bool = False,
            external_data: bool | None = None) -> ExportReport:
    """Export a :class:`~llmasos.model.Model` (or an llmasos ``.h5`` path) to ONNX at ``path``.

    ``opset`` defaults to 18 whichever framework exports. With ``verify`` (the default) the source
    model and ONNX Runtime run ``sample`` (or random inputs) and a difference above ``atol``
    (1e-5 under a million parameters, else 1e-4) raises
    :class:`~llmasos.errors.VerificationError`. A Model that was never built (so never trained
    nor given weights) is refused unless ``allow_untrained=True``.

    Weights too large for one protobuf file (2 GiB) go to ``<path>.data`` beside it, as torch's
    exporter and Optimum write them; ``external_data=True`` asks for that at any size, ``False``
    never. Keep the two files together: loaders, servers and Triton repositories read the data
    file only from the model's own folder.

    ```python
    report = export.to_onnx(model, "model.onnx")       # or a path: export.to_onnx("model.h5", "model.onnx")
    print(report)                                      # exporter, opset, inputs/outputs, ops, max abs diff
    ```
    """
    started = time.perf_counter()
    model = as_model(model_or_h5_path)
    if not model.built:
        if not allow_untrained:
            raise ExportError("the model was never built, trained or given weights, so it would export the "
                              "framework's random initial weights; train it (model.train), load it (Model.load), "
                              "or pass allow_untrained=True to export it anyway")
        model.build()
    config = OnnxConfig(model.spec, opset)
    backend = get_backend(model.framework)
    external = needs_external_data(model.spec.parameter_count()) if external_data is None else bool(external_data)
    with staged(path) as tmp:
        try:
            proto, exporter = _graph(backend, model.compiled, config, tmp, external)
            write_metadata(proto, export_metadata(model, config, exporter))
            proto.producer_name, proto.producer_version, proto.graph.name = "llmasos", __version__, model.name
            save(proto, tmp, external)
            check_onnx(tmp)
        except Exception as exc:  # exporters raise anything from KeyError to their own types
            if isinstance(exc, LlmasosError) and not isinstance(exc, ExportError):
                raise
            raise _diagnose(backend, config, exc) from exc
        _check_opset(proto, config, backend.name)
        diff = _verify(model, tmp, sample, atol) if verify else None
    return ExportReport(path=os.fspath(path), framework=model.framework, framework_version=backend.version(),
                        exporter=exporter, opset=config.opset, verified=verify, max_abs_diff=diff,
                        atol=config.atol if atol is None else atol, inputs=[t.to_dict() for t in config.inputs],
                        outputs=[t.to_dict() for t in config.outputs], op_counts=op_counts(proto),
                        size_bytes=file_size(path), seconds=time.perf_counter() - started)


def _verify(model: "Model", tmp: Path, sample: Any, atol: float | None) -> float:
    try:
        return verify(model, tmp, sample=sample, atol=atol)
    except OnnxFileError as exc:  # the checker passed but ONNX Runtime refuses the graph
        raise ExportError(f"the exported file passes onnx's checker but {exc}") from exc


def _graph(backend: "Backend", compiled: Any, config: OnnxConfig, path: Path,
           external_data: bool = False) -> tuple[onnx.ModelProto, str]:
    """The exporter's graph at ``path``, conformed to ``config``, and the exporter's name."""
    notes = backend.export_onnx(compiled, str(path), config.opset, external_data=external_data)
    proto = onnx.load(str(path))
    config.conform(proto)
    conform_for_runtime(proto.graph, config.opset)
    return proto, notes.get("exporter", backend.name)


def _check_opset(proto: onnx.ModelProto, config: OnnxConfig, framework: str) -> None:
    # torch's exporter writes its own opset when it cannot convert to the one asked for, silently
    written = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if written != config.opset:
        raise ExportError(f"opset {config.opset} was asked for but the {framework} exporter wrote opset {written}: "
                          f"it cannot write opset {config.opset}; ask for {written}, or leave opset unset for the "
                          "default")


def _diagnose(backend: "Backend", config: OnnxConfig, cause: BaseException) -> ExportError:
    """Export each layer on its own to find the one the exporter cannot write (only on failure:
    it costs one export per distinct layer)."""
    spec = config.spec
    shapes, dtypes = spec.shapes(), spec.dtypes()
    seen = set()
    with tempfile.TemporaryDirectory() as folder:
        for layer in spec.layers:
            key = (layer.kind, repr(layer.config), tuple(shapes[s] for s in layer.inputs))
            if key in seen:
                continue
            seen.add(key)
            alone = ModelSpec()
            for source in dict.fromkeys(layer.inputs):
                alone.add_input(source, shapes[source], dtypes[source])
            alone.add(layer.kind, name=layer.name, inputs=layer.inputs, **layer.config)
            path = Path(folder) / "layer.onnx"
            try:
                proto, _ = _graph(backend, backend.build(alone, seed=0), OnnxConfig(alone, config.opset), path)
                onnx.save_model(proto, str(path))
                check_onnx(path)
            except Exception as exc:
                return ExportError(f"layer {layer.name!r} ({layer.kind}) cannot be exported from {backend.name} at "
                                   f"opset {config.opset}: {_reason(exc)}")
    return ExportError(f"the {backend.name} exporter failed at opset {config.opset} (each layer exports on its "
                       f"own; the combination fails): {_reason(cause)}")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__
