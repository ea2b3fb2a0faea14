"""Inputs for an ONNX file: from a Dataset's rows, or random ones for timing.

Only the file is needed: its graph inputs give names, dtypes and shapes, and an llmasos file's
``spec`` metadata gives the vocabulary of integer inputs.

>>> import numpy as np
>>> inputs = [GraphInput("input", np.dtype("float32"), ("batch", 1, 8, 8))]
>>> feed(inputs, np.zeros((5, 64)))["input"].shape      # flat rows take the input's shape
(5, 1, 8, 8)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..errors import DataError
from ..layout import conform
from ..spec import ModelSpec
from .config import OnnxConfig
from .metadata import read_metadata


@dataclass(frozen=True)
class GraphInput:
    name: str
    dtype: np.dtype
    shape: tuple            # ints, or names/None for dynamic dimensions (batch first)


def graph_inputs(proto: onnx.ModelProto) -> list[GraphInput]:
    """The inputs a caller feeds (initializers listed as inputs by old IR versions excluded)."""
    initializers = {t.name for t in proto.graph.initializer}
    out = []
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        out.append(GraphInput(value.name, onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type), dims))
    return out


def feed(inputs: list[GraphInput], x: np.ndarray, where: str = "the data") -> dict[str, np.ndarray]:
    """A feed dict for a one-input model from a batch of rows; flat rows are reshaped when the
    sizes agree. :class:`DataError` when the rows cannot be the input, naming the layout it takes
    (:func:`llmasos.layout.conform`: channels-last images are refused, not reshaped)."""
    if len(inputs) != 1:
        raise DataError(f"{where}: a Dataset holds one array of features, but the model takes "
                        f"{len(inputs)} inputs ({', '.join(i.name for i in inputs)})")
    (info,) = inputs
    x = np.asarray(x)
    target = conform(x.shape, [d if isinstance(d, int) else None for d in info.shape[1:]],
                     f"{where}: input {info.name!r}")
    if target is not None:
        x = x.reshape(target)
    if np.issubdtype(info.dtype, np.integer) and not np.issubdtype(x.dtype, np.integer):
        raise DataError(f"{where}: input {info.name!r} takes integer ids, got {x.dtype}")
    return {info.name: np.ascontiguousarray(x, dtype=info.dtype)}


def random_feed(proto: onnx.ModelProto, batch: int, length: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of ``batch`` rows; dynamic dimensions take ``length``. Integer inputs stay
    below the vocabulary the file's spec metadata names (0 without it); float inputs in I/O of
    another precision (an fp16 file) are cast to it."""
    inputs = graph_inputs(proto)
    spec = read_metadata(proto).get("spec")
    if isinstance(spec, dict):
        config = OnnxConfig(ModelSpec.from_dict(spec))
        length = config.spec.fitting_length(length)  # what sample() gives dynamic dimensions
        arrays = dict(zip([i.name for i in config.inputs], config.sample(batch, seed, length)))
    else:
        arrays = {}
    rng = np.random.default_rng(seed)
    out = {}
    for info in inputs:
        shape = (batch, *(d if isinstance(d, int) else length for d in info.shape[1:]))
        value = arrays.get(info.name)
        if value is None or value.shape != shape:
            value = np.zeros(shape) if np.issubdtype(info.dtype, np.integer) else rng.standard_normal(shape)
        out[info.name] = value.astype(info.dtype)
    return out
