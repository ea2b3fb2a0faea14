"""Tensor datatypes and signatures: Open Inference Protocol names, NumPy dtypes, ONNX types.

One table maps each protocol datatype to its NumPy dtype and to the element-type name ONNX and
ONNX Runtime use (``tensor(float)`` in a session, ``FLOAT`` in a graph). Shapes use -1 for a
dimension that varies, as model metadata does.

>>> DATATYPES["FP32"].numpy, DATATYPES["BYTES"].onnx
(dtype('float32'), 'string')
>>> datatype_of(np.dtype("int64"))
'INT64'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ServeError


@dataclass(frozen=True)
class Datatype:
    """One protocol datatype: its name, NumPy dtype (object for BYTES) and ONNX element name."""

    name: str
    numpy: np.dtype
    onnx: str

    @property
    def itemsize(self) -> int | None:
        """Bytes per element in the binary extension; None for BYTES (each is length-prefixed)."""
        return None if self.name == "BYTES" else self.numpy.itemsize


DATATYPES = {dt.name: dt for dt in (
    Datatype("BOOL", np.dtype(np.bool_), "bool"),
    Datatype("UINT8", np.dtype(np.uint8), "uint8"),
    Datatype("UINT16", np.dtype(np.uint16), "uint16"),
    Datatype("UINT32", np.dtype(np.uint32), "uint32"),
    Datatype("UINT64", np.dtype(np.uint64), "uint64"),
    Datatype("INT8", np.dtype(np.int8), "int8"),
    Datatype("INT16", np.dtype(np.int16), "int16"),
    Datatype("INT32", np.dtype(np.int32), "int32"),
    Datatype("INT64", np.dtype(np.int64), "int64"),
    Datatype("FP16", np.dtype(np.float16), "float16"),
    Datatype("FP32", np.dtype(np.float32), "float"),
    Datatype("FP64", np.dtype(np.float64), "double"),
    Datatype("BYTES", np.dtype(object), "string"),
)}
_BY_ONNX = {dt.onnx: dt for dt in DATATYPES.values()}
_BY_NUMPY = {dt.numpy: dt for dt in DATATYPES.values()}


def datatype_of(dtype: np.dtype) -> str:
    """The protocol datatype of a NumPy dtype (str and bytes arrays are BYTES)."""
    if dtype.kind in "OSU":
        return "BYTES"
    if dtype not in _BY_NUMPY:
        raise ServeError(f"NumPy dtype {dtype} has no Open Inference Protocol datatype", 500)
    return _BY_NUMPY[dtype].name


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the protocol describes it: shape has -1 where it varies."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _datatype(onnx_name: str, where: str) -> str:
    if onnx_name not in _BY_ONNX:
        raise ServeError(f"{where} has element type {onnx_name!r}, which the server cannot carry; "
                         f"supported: {', '.join(DATATYPES)}", 500)
    return _BY_ONNX[onnx_name].name


def _session_spec(node: Any) -> TensorSpec:
    if not node.type.startswith("tensor("):
        raise ServeError(f"{node.name!r} is a {node.type}; only tensors can be served", 500)
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
    return TensorSpec(node.name, _datatype(node.type[len("tensor("):-1], node.name), shape)


def specs_from_session(session: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """``(inputs, outputs)`` of an ``onnxruntime.InferenceSession``."""
    return ([_session_spec(node) for node in session.get_inputs()],
            [_session_spec(node) for node in session.get_outputs()])


def specs_from_model(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """``(inputs, outputs)`` of an ``onnx.ModelProto`` (its weights need not be loaded)."""
    import onnx

    weights = {tensor.name for tensor in model.graph.initializer}

    def spec(value: Any) -> TensorSpec:
        if not value.type.HasField("tensor_type"):
            raise ServeError(f"{value.name!r} is not a tensor; only tensors can be served", 500)
        tensor = value.type.tensor_type
        element = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        return TensorSpec(value.name, _datatype(element, value.name), shape)

    return ([spec(v) for v in model.graph.input if v.name not in weights],
            [spec(v) for v in model.graph.output])
