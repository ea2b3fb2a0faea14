"""ONNX Runtime's graph optimisations, done once offline instead of at every session start.

>>> from llmasos import export

Usage::

    export.optimize("model.onnx", "model.opt.onnx")
    export.optimize("model.onnx", "model.opt.onnx", level="basic")     # portable

Levels: ``basic`` folds constants and removes redundant nodes, in standard ONNX ops, so the file
runs anywhere; ``extended`` adds fusions into ONNX Runtime's own ops (com.microsoft domain);
``all`` adds layout changes for this CPU's vector units — the file is then for ONNX Runtime on
this kind of machine and the providers it was optimised for.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import ExportError
from .files import data_file, derived_external_data
from .providers import session
from .transform import OptimizationReport, derive

if TYPE_CHECKING:
    from ..data import Dataset

LEVELS = ("basic", "extended", "all")


def optimize(src: str | os.PathLike, dst: str | os.PathLike, level: str = "all", *, providers: Any = ("cpu",),
             eval_data: "Dataset | None" = None) -> OptimizationReport:
    """Write ``src`` as ONNX Runtime optimises it for ``providers`` at ``level`` to ``dst``."""
    if level not in LEVELS:
        raise ExportError(f"level must be one of {', '.join(map(repr, LEVELS))}, got {level!r}")

    def write(source: str, target: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
        options.optimized_model_filepath = target
        options.log_severity_level = 3  # its warning that "all" is hardware-specific is in this docstring
        if derived_external_data(source):  # ONNX Runtime's names for writing weights beside the file
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                             data_file(target).name)
            options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                             "1024")
        session(source, providers, options=options)

    return derive(src, dst, f"onnxruntime {level} optimisation", write, eval_data, check="fp32")
