"""Keeping PyTorch and TensorFlow safe in one process.

triton (torch's compiler, which ``torch.optim`` and ``torch.export`` load lazily) and TensorFlow
each link their own LLVM, and loading triton after TensorFlow segfaults the process. So:

* before llmasos loads TensorFlow, triton is loaded first (about 0.15 s) where it is installed;
* when TensorFlow is already loaded (the user imported it) and triton is not, torch is told triton
  is absent. torch then runs without it, which only matters for ``torch.compile`` on a GPU.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings


def before_tensorflow() -> None:
    if "tensorflow" not in sys.modules and "triton" not in sys.modules and importlib.util.find_spec("triton"):
        importlib.import_module("triton")


def before_torch() -> None:
    if "tensorflow" in sys.modules and "triton" not in sys.modules and importlib.util.find_spec("triton"):
        sys.modules["triton"] = None  # makes `import triton` fail cleanly instead of crashing
        warnings.warn("TensorFlow was imported before llmasos loaded PyTorch, so torch runs without triton "
                      "(loading it after TensorFlow crashes the process); torch.compile on GPU is unavailable. "
                      "Import torch or llmasos' torch adapter first to keep it.", RuntimeWarning, stacklevel=3)
