"""Half-precision copies of an ONNX file: half the size, faster where the hardware has fp16 units.

>>> from llmasos import export

Usage::

    export.to_fp16("model.onnx", "model.fp16.onnx")
    export.to_fp16("model.onnx", "model.fp16.onnx", keep_io_types=False)  # fp16 in and out too

The conversion is ONNX Runtime's (``onnxruntime.transformers.float16``, the converter of
onnxconverter-common): weights and activations become float16, with Cast nodes at the edges when
``keep_io_types`` leaves inputs and outputs float32, so callers need not change. On a CPU without
fp16 arithmetic ONNX Runtime runs the ops in float32 behind casts: smaller, not faster; the
speed is for GPUs (CUDA, DirectML) and NPUs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import onnx

from .files import derived_external_data, save
from .transform import OptimizationReport, derive

if TYPE_CHECKING:
    from ..data import Dataset


def to_fp16(src: str | os.PathLike, dst: str | os.PathLike, keep_io_types: bool = True, *,
            eval_data: "Dataset | None" = None) -> OptimizationReport:
    """Write a float16 copy of ``src`` at ``dst``; inputs and outputs stay float32 unless
    ``keep_io_types=False``. With ``eval_data`` the report gives the metric change.

    ```python
    report = export.to_fp16("model.onnx", "model.fp16.onnx")
    report.size_ratio, report.verification            # about 0.5; within 1e-2 of the largest output
    ```
    """

    def write(source: str, target: str) -> None:
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel

        converted = OnnxModel(convert_float_to_float16(onnx.load(source), keep_io_types=keep_io_types))
        # the converter appends its input casts at the end of the graph; the standard wants order
        converted.topological_sort()
        save(converted.model, target, derived_external_data(source))

    return derive(src, dst, "fp16" + ("" if keep_io_types else " (fp16 inputs and outputs)"), write, eval_data,
                  check="fp16")
