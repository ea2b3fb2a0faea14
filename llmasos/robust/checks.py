"""What an attack checks before it runs, each failure an :class:`~llmasos.errors.AttackError`
that says what was wrong and what is allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AttackError

if TYPE_CHECKING:
    from ..model import Model

NORMS = {"inf": "inf", "linf": "inf", "l2": "l2"}


def check_model(model: Any) -> "Model":
    """A built llmasos Model with one float input: gradients come from its framework."""
    if not (hasattr(model, "compiled") and hasattr(model, "shape_input")):
        raise AttackError(f"gradient attacks need an llmasos Model (torch or TensorFlow: an ONNX file has no "
                          f"gradients), got {type(model).__name__}; load the .h5 with Model.load(path)")
    inputs = model.spec.inputs
    if len(inputs) != 1 or inputs[0].dtype != "float32":
        raise AttackError(f"gradient attacks take models with one float32 input; this one takes "
                          f"{', '.join(f'{i.name} ({i.dtype})' for i in inputs)}")
    return model


def check_eps(eps: Any, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)) or not np.isfinite(eps) \
            or eps < 0:
        raise AttackError(f"{name} must be a finite number >= 0 (the perturbation's largest norm), got {eps!r}")
    return float(eps)


def check_norm(norm: Any) -> str:
    key = "inf" if norm in (np.inf, float("inf")) else "l2" if norm == 2 else str(norm).lower()
    if key not in NORMS:
        raise AttackError(f"norm must be 'inf' (L-infinity) or 'l2', got {norm!r}")
    return NORMS[key]


def check_bounds(bounds: Any, x: np.ndarray) -> tuple[float, float]:
    """``(low, high)`` with low < high, and the data inside them."""
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise AttackError(f"bounds must be (low, high), the range inputs may take, got {bounds!r}") from None
    if not low < high:
        raise AttackError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    if x.size and (x.min() < low or x.max() > high):
        raise AttackError(f"the inputs range over [{x.min():g}, {x.max():g}], outside bounds=({low:g}, {high:g}); "
                          f"scale them into the bounds, or pass the bounds they live in (bounds=({x.min():g}, "
                          f"{x.max():g}) for these)")
    return low, high


def check_labels(y: Any, n: int, classes: int | None) -> np.ndarray:
    """Integer class ids, one per input, in ``[0, classes)``."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != n:
        raise AttackError(f"labels must be one class id per input ({n}), got shape {labels.shape}")
    if labels.size and labels.dtype.kind not in "iu" and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise AttackError(f"labels must be integer class ids, got {labels.dtype} values like {labels[:3].tolist()}")
    labels = labels.astype(np.int64)
    top = classes if classes and classes > 1 else 2
    if labels.size and (labels.min() < 0 or labels.max() >= top):
        raise AttackError(f"labels must be class ids in [0, {top}) for this model ({top} classes), got "
                          f"[{labels.min()}, {labels.max()}]")
    return labels
