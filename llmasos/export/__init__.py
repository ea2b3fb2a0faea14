"""ONNX export, verification, optimisation and execution providers.

>>> from llmasos import export
>>> "cpu" in export.providers()
True

::

    report = export.to_onnx(model_or_h5_path, "model.onnx")    # checked, verified, report.max_abs_diff
    export.verify(model, "model.onnx", runtime="reference")      # against onnx's reference evaluator
    export.info("model.onnx")                                    # names, shapes, layouts, ops, metadata
    export.quantize("model.onnx", "model.int8.onnx", mode="dynamic", eval_data=test)
    export.quantize("model.onnx", "model.qdq.onnx", mode="static", calibration=Dataset(...))
    export.to_fp16("model.onnx", "model.fp16.onnx")
    export.optimize("model.onnx", "model.opt.onnx")              # ONNX Runtime offline optimisation
    export.compare("model.onnx", "model.int8.onnx", test)        # accuracy change on held-out data
    export.bench("model.onnx", providers=["cpu"], batches=(1, 8, 32))
    session = export.load("model.onnx", providers=["cuda", "openvino", "cpu"])  # first available wins

``export.load`` opens an ONNX Runtime session on the first provider that works (see
:mod:`llmasos.export.providers`). The function ``export.providers`` hides the submodule of the
same name: import from it with ``from llmasos.export.providers import ...``. The rest loads on
first use, so importing this package costs nothing until it is used; the submodules are named
apart from the functions (``quantization`` holds ``quantize``) so neither hides the other.
"""

from __future__ import annotations

from .. import lazy

# Imported eagerly: providers.py loads ONNX Runtime only when called, and a lazy attribute would
# lose to the submodule `providers` the moment anything imports it.
from .providers import providers, session as load

_LAZY = {
    "to_onnx": "convert", "ExportReport": "convert",
    "verify": "validate",
    "info": "metadata",
    "quantize": "quantization",
    "to_fp16": "fp16",
    "optimize": "optimization",
    "OptimizationReport": "transform",
    "compare": "metrics",
    "bench": "benchmark",
}

__all__ = ["load", "providers", *_LAZY]


__getattr__, __dir__ = lazy.attributes(__name__, _LAZY)
