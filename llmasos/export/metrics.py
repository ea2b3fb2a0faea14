"""The task metric of an optimised file against its fp32 original, on held-out data.

>>> from llmasos import Dataset, export

Usage::

    export.compare("model.onnx", "model.int8.onnx", Dataset("test.csv", mode="test"))
    {'metric': 'accuracy', 'reference': 0.9722, 'candidate': 0.9694, 'change': -0.0028, 'agreement': 0.9917, ...}
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError
from ..spec import ModelSpec
from .feeds import feed, graph_inputs
from .metadata import read_metadata
from .providers import check_file, session

if TYPE_CHECKING:
    from ..data import Dataset


def compare(reference: str | os.PathLike, candidate: str | os.PathLike, dataset: "Dataset",
            batch_size: int = 256) -> dict[str, Any]:
    """Run both files on ``dataset`` (first output) and report the metric of each and the change.

    Classification (integer labels) reports ``accuracy`` and the share of predictions on which
    both files agree (``agreement``; per row, or per token for sequence outputs); regression
    (float labels) reports ``mse``. Without labels only the agreement and ``max_abs_diff`` are given.

    ```python
    export.compare("model.onnx", "model.int8.onnx", Dataset("test.csv", mode="test"))
    # {'rows': 450, 'max_abs_diff': 0.006, 'agreement': 0.998, 'metric': 'accuracy',
    #  'reference': 0.963, 'candidate': 0.963, 'change': 0.0}
    ```
    """
    proto = check_file(reference)
    inputs = graph_inputs(proto)
    sessions = [session(reference), session(candidate)]
    outputs: tuple[list, list] = ([], [])
    labels = []
    for x, y in dataset.batches(batch_size):
        batch = feed(inputs, x, where=f"dataset {getattr(dataset, 'name', '')!r}".strip())
        for sess, out in zip(sessions, outputs):
            out.append(sess.run(None, batch)[0].astype(np.float32))
        if y is not None:
            labels.append(y)
    if not outputs[0]:
        raise DataError("cannot compare models on an empty dataset")
    ref, cand = (np.concatenate(o) for o in outputs)
    cut = threshold(proto)
    result: dict[str, Any] = {"rows": len(ref), "max_abs_diff": float(np.max(np.abs(ref - cand)))}
    result["agreement"] = float(np.mean(classes(ref, cut) == classes(cand, cut)))
    if labels:
        y = np.concatenate(labels)
        result["metric"], result["reference"] = task_metric(ref, y, cut)
        result["candidate"] = task_metric(cand, y, cut)[1]
        result["change"] = result["candidate"] - result["reference"]
    return result


def task_metric(out: np.ndarray, y: np.ndarray, threshold: float) -> tuple[str, float]:
    """``("accuracy", value)`` for integer labels (per row, or per token for sequence outputs),
    ``("mse", value)`` for float labels."""
    if np.issubdtype(y.dtype, np.integer):
        return "accuracy", float(np.mean(classes(out, threshold).reshape(-1) == y.reshape(-1)))
    return "mse", float(np.mean((out.reshape(len(y), -1) - y.reshape(len(y), -1)) ** 2))


def classes(out: np.ndarray, threshold: float) -> np.ndarray:
    """Predicted classes: argmax over the last axis, or a threshold on a single unit."""
    return out.argmax(axis=-1) if out.shape[-1] > 1 else (out[..., 0] > threshold).astype(np.int64)


def threshold(proto: Any) -> float:
    """0.5 on sigmoid outputs (probabilities), 0 on logits."""
    spec = read_metadata(proto).get("spec")
    if isinstance(spec, dict) and ModelSpec.from_dict(spec).final_activation() != "sigmoid":
        return 0.0
    return 0.5
