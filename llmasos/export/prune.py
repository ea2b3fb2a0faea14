"""Magnitude pruning in the neutral weights, so it works the same in every framework.

>>> import numpy as np
>>> from llmasos.spec import ModelSpec
>>> spec = ModelSpec.sequential((4,)).add("Dense", 2)
>>> weights = {"dense": {"kernel": np.arange(1.0, 9.0).reshape(4, 2), "bias": np.ones(2)}}
>>> pruned, sparsity = prune_weights(spec, weights, amount=0.5)
>>> pruned["dense"]["kernel"].tolist(), sparsity
([[0.0, 0.0], [0.0, 0.0], [5.0, 6.0], [7.0, 8.0]], 0.5)

Each Dense, Conv1D and Conv2D kernel loses its ``amount`` smallest weights by absolute value
(biases are kept: they are few and shift whole units). Use it as ``model.prune(0.5)``, then
fine-tune and export. Fine-tuning lets pruned weights grow back from zero: call ``prune`` again
after it (iterative magnitude pruning) to export a model with the sparsity asked for. Keeping
the mask during training, step by step, is not implemented.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..spec import ModelSpec

PRUNABLE = ("Dense", "Conv1D", "Conv2D")
Weights = dict[str, dict[str, np.ndarray]]


def prune_weights(spec: ModelSpec, weights: Weights, amount: float) -> tuple[Weights, float]:
    """New weights with the smallest ``amount`` of each prunable kernel zeroed, and the share of
    zeros across those kernels."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 <= amount < 1.0:
        raise SpecError(f"amount is the share of each kernel to zero, in [0, 1), got {amount!r}")
    out = {layer: dict(ws) for layer, ws in weights.items()}
    zeros = total = 0
    for layer in spec.layers:
        if layer.kind not in PRUNABLE:
            continue
        kernel = np.array(weights[layer.name]["kernel"], dtype=np.float32)
        count = int(round(amount * kernel.size))
        if count:
            # argpartition zeroes exactly `count` entries even when magnitudes tie
            smallest = np.argpartition(np.abs(kernel).ravel(), count - 1)[:count]
            kernel.ravel()[smallest] = 0.0
        out[layer.name]["kernel"] = kernel
        zeros += int(np.count_nonzero(kernel == 0))
        total += kernel.size
    if not total:
        raise SpecError(f"the model has no layer to prune; pruning applies to {', '.join(PRUNABLE)} kernels")
    return out, zeros / total
