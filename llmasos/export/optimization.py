"""ONNX Runtime's graph optimisations, done once offline instead of at every session start.

>>> from llmasos import export

Usage::

    export.optimize("model.onnx", "model.opt.onnx")
    export.optimize("model.onnx", "model.opt.onnx", level="basic")     # portable

Levels: ``basic`` folds constants and removes redundant nodes, in standard ONNX ops, so the file
runs anywhere; ``extended`` adds fusions into ONNX Runtime's own ops (com.microsoft domain);
``all`` adds layout changes for this CPU's vector units — the file is then for ONNX Runtime on
this kind of machine and the providers it was optimised for.

Transformers (a spec in the file's metadata with ``Attention`` or ``MultiHeadAttention`` layers)
get ONNX Runtime's transformer fusions at ``extended`` and ``all``, as Optimum's O2 does: one
``Attention`` op per attention block, LayerNorms joined with their residual Adds, GELUs with their
biases (see :mod:`.fusion`); ``transformer=False`` asks for the plain optimisation instead.

A rewrite is only kept when it is not slower than its source: the report's latencies (batch 1
and 32) are measured before the file is renamed into place, and a rewrite slower by more than
``max_slowdown`` at either size gives way to the next one — the plain optimisation after the
transformer fusions, then the source's graph unchanged — and the report's ``method`` says which
was kept. ``max_slowdown=None`` keeps the first rewrite whatever its speed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

import onnx

from ..errors import ExportError, SlowerError
from .files import data_file, derived_external_data, save
from .fusion import MS_DOMAIN, attention_shape, fuse_transformer
from .metadata import read_metadata
from .providers import check_file, resolve, session
from .transform import OptimizationReport, SourceTiming, derive

if TYPE_CHECKING:
    from ..data import Dataset

LEVELS = ("basic", "extended", "all")
# Latencies on a shared machine wander by a few percent between identical files.
MAX_SLOWDOWN = 1.05
_GPU = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def optimize(src: str | os.PathLike, dst: str | os.PathLike, level: str = "all", *, providers: Any = ("cpu",),
             eval_data: "Dataset | None" = None, transformer: bool | None = None,
             max_slowdown: float | None = MAX_SLOWDOWN) -> OptimizationReport:
    """Write ``src`` as ONNX Runtime optimises it for ``providers`` at ``level`` to ``dst``.

    ``transformer``: None (default) applies the transformer fusions to transformer files at
    ``extended``/``all``, True insists (an :class:`ExportError` for a file without attention
    layers), False never applies them.

    ```python
    report = export.optimize("model.onnx", "model.opt.onnx")
    report.method, report.speedup(1)                  # what was kept, and its speed-up at batch 1
    ```
    """
    if level not in LEVELS:
        raise ExportError(f"level must be one of {', '.join(map(repr, LEVELS))}, got {level!r}")
    candidates: list[tuple[str, Callable[[str, str], None]]] = []
    if transformer is not False and level != "basic":
        shape = attention_shape(read_metadata(check_file(src)).get("spec"))
        if shape is None and transformer:
            raise ExportError(f"{src} is not a transformer: its spec metadata has no Attention or "
                              f"MultiHeadAttention layer (transformer=None decides by itself)")
        if shape is not None:
            heads, hidden = shape
            gpu = any(name in _GPU for name, _ in resolve(providers))
            candidates.append(("onnxruntime transformer fusions",
                               lambda source, target: _fuse(source, target, heads, hidden, gpu)))
    candidates.append((f"onnxruntime {level} optimisation",
                       lambda source, target: _onnxruntime(source, target, level, providers)))
    slower, timing = [], SourceTiming()  # the source is timed once, beside the first rewrite
    for method, write in candidates:
        try:
            return derive(src, dst, method, write, eval_data, check="fp32", max_slowdown=max_slowdown,
                          source_timing=timing)
        except _NothingFused:
            continue
        except SlowerError as exc:
            slower.append(f"{method} ({', '.join(f'{ratio:.2f}x' for ratio in exc.ratios.values())})")
    return derive(src, dst, f"none: slower after {' and '.join(slower)}", _copy, eval_data, check="fp32",
                  source_timing=timing, unchanged=True)


class _NothingFused(ExportError):
    """The transformer optimizer matched no subgraph (a graph written in another form, such as
    tf2onnx's): the plain optimisation is tried instead."""


def _onnxruntime(source: str, target: str, level: str, providers: Any) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    options.optimized_model_filepath = target
    options.log_severity_level = 3  # its warning that "all" is hardware-specific is in the module docstring
    if derived_external_data(source):  # ONNX Runtime's names for writing weights beside the file
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                         data_file(target).name)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    session(source, providers, options=options)


def _fuse(source: str, target: str, heads: int, hidden: int, gpu: bool) -> None:
    proto, external = _load(source)
    fused = fuse_transformer(proto, heads, hidden, gpu)
    if not any(node.domain == MS_DOMAIN for node in fused.graph.node):
        raise _NothingFused(f"{source}: ONNX Runtime's transformer optimizer found nothing to fuse")
    save(fused, target, external_data=external)


def _copy(source: str, target: str) -> None:
    proto, external = _load(source)
    save(proto, target, external_data=external)


def _load(path: str) -> tuple[onnx.ModelProto, bool]:
    """The model with its weights, and whether a file made from it is written with external data."""
    return onnx.load(path), derived_external_data(path)
