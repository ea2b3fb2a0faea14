"""Neutral <-> torch weight layouts, one table for weights and optimizer slots alike.

Each entry maps one neutral weight to one or more torch tensors (attribute paths inside the
layer's module) with a pair of pure NumPy functions, so the same conversion serves parameters,
BatchNorm statistics and Adam's moment estimates. A custom layer's weights are already in the
neutral layout: each is the parameter ``params.<name>`` of its module.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ...layers.custom import WeightTables

Split = Callable[[np.ndarray], tuple[np.ndarray, ...]]
Join = Callable[..., np.ndarray]


def _same(a):
    return (a,)


def _join_same(a):
    return a


def _transposed(a):
    return (np.ascontiguousarray(a.T),)


def _join_transposed(a):
    return np.ascontiguousarray(a.T)


def _conv_in(a):
    # neutral (*k, in, out) -> torch (out, in, *k)
    return (np.ascontiguousarray(np.moveaxis(a, (-1, -2), (0, 1))),)


def _conv_out(a):
    return np.ascontiguousarray(np.moveaxis(a, (0, 1), (-1, -2)))


# GRU gates: neutral (Keras) order z, r, n; torch order r, z, n. Swapping the first two
# blocks is its own inverse.
def _gru_order(a, axis):
    z, r, n = np.split(a, 3, axis=axis)
    return np.concatenate([r, z, n], axis=axis)


def _gru_kernel_in(a):
    return (np.ascontiguousarray(_gru_order(a, 1).T),)


def _gru_kernel_out(a):
    return np.ascontiguousarray(_gru_order(a.T, 1))


def _gru_bias_in(a):
    return _gru_order(a[0], 0), _gru_order(a[1], 0)


def _gru_bias_out(bias_ih, bias_hh):
    return np.stack([_gru_order(bias_ih, 0), _gru_order(bias_hh, 0)])


_DENSE = {"kernel": (("linear.weight",), _transposed, _join_transposed), "bias": (("linear.bias",), _same, _join_same)}
_CONV = {"kernel": (("conv.weight",), _conv_in, _conv_out), "bias": (("conv.bias",), _same, _join_same)}


def _norm(module: str) -> dict:
    return {"gamma": ((f"{module}.weight",), _same, _join_same), "beta": ((f"{module}.bias",), _same, _join_same)}


class _Custom(dict):
    """A custom layer's table: every weight is the parameter of its own name, as it is."""

    def __missing__(self, name: str) -> tuple[tuple[str, ...], Split, Join]:
        return (f"params.{name}",), _same, _join_same



CONVERSIONS: dict[str, dict[str, tuple[tuple[str, ...], Split, Join]]] = WeightTables({
    "Dense": _DENSE,
    "Conv1D": _CONV,
    "Conv2D": _CONV,
    "BatchNorm": {
        **_norm("bn"),
        "moving_mean": (("bn.running_mean",), _same, _join_same),
        "moving_variance": (("bn.running_var",), _same, _join_same),
    },
    "LayerNorm": _norm("norm"),
    "GroupNorm": _norm("norm"),
    "Unembedding": {"bias": (("bias",), _same, _join_same)},
    "Embedding": {"embeddings": (("embedding.weight",), _same, _join_same)},
    "PositionEmbedding": {"embeddings": (("embedding.weight",), _same, _join_same)},
    "LSTM": {
        "kernel": (("rnn.weight_ih_l0",), _transposed, _join_transposed),
        "recurrent_kernel": (("rnn.weight_hh_l0",), _transposed, _join_transposed),
        "bias": (("rnn.bias_ih_l0",), _same, _join_same),
    },
    "GRU": {
        "kernel": (("rnn.weight_ih_l0",), _gru_kernel_in, _gru_kernel_out),
        "recurrent_kernel": (("rnn.weight_hh_l0",), _gru_kernel_in, _gru_kernel_out),
        "bias": (("rnn.bias_ih_l0", "rnn.bias_hh_l0"), _gru_bias_in, _gru_bias_out),
    },
    "MultiHeadAttention": {
        f"{role}_{part}": ((f"{role}.{'weight' if part == 'kernel' else 'bias'}",),
                           _transposed if part == "kernel" else _same,
                           _join_transposed if part == "kernel" else _join_same)
        for role in ("query", "key", "value", "output") for part in ("kernel", "bias")
    },
}, _Custom())
