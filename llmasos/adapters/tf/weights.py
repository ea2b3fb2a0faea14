"""Neutral <-> Keras weight layouts, one table for weights and optimizer slots alike.

The neutral layout follows Keras, so almost every weight is stored as it is; only
MultiHeadAttention splits the heads into their own kernel axis in Keras ((d, heads, key_dim)
where the neutral kernel is (d, heads * key_dim)). Each entry names the variable (an attribute
path inside the layer's Keras layer) and two pure NumPy functions ``(array, target shape) ->
array``, so the same conversion serves parameters, BatchNorm statistics and Adam's moments.

>>> CONVERSIONS["MultiHeadAttention"]["query_kernel"][1](np.zeros((8, 4)), (8, 2, 2)).shape
(8, 2, 2)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ...layers.custom import WeightTables

Convert = Callable[[np.ndarray, tuple], np.ndarray]


def _same(a: np.ndarray, shape: tuple) -> np.ndarray:
    return a


def _reshape(a: np.ndarray, shape: tuple) -> np.ndarray:
    # heads * key_dim <-> (heads, key_dim) is a row-major split, the same in both directions
    return a.reshape(shape)


def _table(paths: dict[str, str], convert: Convert = _same) -> dict[str, tuple[str, Convert, Convert]]:
    return {name: (path, convert, convert) for name, path in paths.items()}


_KERNEL_BIAS = _table({"kernel": "kernel", "bias": "bias"})
_CELL = _table({"kernel": "cell.kernel", "recurrent_kernel": "cell.recurrent_kernel", "bias": "cell.bias"})

class _Custom(dict):
    """A custom layer's table: every weight is the variable of its own name, as it is."""

    def __missing__(self, name: str) -> tuple[str, Convert, Convert]:
        return f"params.{name}", _same, _same



# layer kind -> neutral weight name -> (attribute path on the Keras layer, to Keras, to neutral)
CONVERSIONS: dict[str, dict[str, tuple[str, Convert, Convert]]] = WeightTables({
    "Dense": _KERNEL_BIAS,
    "Conv1D": _KERNEL_BIAS,
    "Conv2D": _KERNEL_BIAS,
    "BatchNorm": _table({name: name for name in ("gamma", "beta", "moving_mean", "moving_variance")}),
    "LayerNorm": _table({"gamma": "gamma", "beta": "beta"}),
    "GroupNorm": _table({"gamma": "gamma", "beta": "beta"}),
    "Unembedding": _table({"bias": "bias"}),
    "Embedding": _table({"embeddings": "embeddings"}),
    "PositionEmbedding": _table({"embeddings": "embeddings"}),
    "LSTM": _CELL,
    "GRU": _CELL,
    "MultiHeadAttention": _table({f"{role}_{part}": f"{role}_dense.{part}"
                                  for role in ("query", "key", "value", "output") for part in ("kernel", "bias")},
                                 _reshape),
}, _Custom())
