"""Metrics of a training run, computed in NumPy from each batch's outputs.

The adapters return the outputs of every step (logits for the classification losses); every
metric is computed here from them, once for all frameworks, so a metric is the same number
whichever framework trained the model.

>>> import numpy as np
>>> correct_count("cross_entropy", np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0]))
1.0
"""

from __future__ import annotations

import numpy as np

CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")


def correct_count(loss: str, outputs: np.ndarray, target: np.ndarray) -> float:
    """Correct predictions in a batch of logits: the arg-max for cross-entropy; for binary
    cross-entropy each sample counts the share of its output units on the right side of 0.

    >>> correct_count("binary_cross_entropy", np.array([[1.0, -1.0], [-2.0, 3.0]]), np.array([[1, 1], [0, 1]]))
    1.5
    """
    if loss not in CLASSIFICATION_LOSSES:
        return 0.0
    target = np.asarray(target)
    if loss == "cross_entropy":
        return float(np.count_nonzero(outputs.argmax(axis=1) == target.reshape(-1)))
    hits = (outputs > 0) == (target.reshape(outputs.shape) > 0.5)
    return float(hits.reshape(len(outputs), -1).mean(axis=1, dtype=outputs.dtype).sum())
