"""Open Inference Protocol ("v2") request and response bodies: JSON tensors and the binary extension.

A binary request is a JSON header of ``Inference-Header-Content-Length`` bytes followed by raw
little-endian row-major tensors, in input order, each ``parameters.binary_data_size`` bytes long;
a BYTES element is a 4-byte little-endian length and then its bytes. Outputs come back binary when
the request asks (``parameters.binary_data_output``, or an output's ``parameters.binary_data``).

>>> request = decode_request(b'{"id": "7", "inputs": [{"name": "x", "shape": [1, 2], '
...                          b'"datatype": "FP32", "data": [1, 2]}]}')
>>> request.id, request.inputs["x"]
('7', array([[1., 2.]], dtype=float32))
>>> body, headers = encode_response("m", "1", request, {"y": np.zeros(2, np.int64)})
>>> body
b'{"model_name":"m","model_version":"1","id":"7","outputs":[{"name":"y","datatype":"INT64","shape":[2],"data":[0,0]}]}'
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ServeError
from .tensors import DATATYPES, Datatype, datatype_of

HEADER_LENGTH = "inference-header-content-length"
_LENGTH = struct.Struct("<I")

# json's C parser and encoder hold the GIL for a whole text (~0.2 s per MB of numbers), so a
# thread decoding a large request would stop the event loop all the same. Over this size, numbers
# are parsed through a Python function, where the interpreter lets other threads run (~1.6x
# slower); answers are encoded this many values at a time.
_YIELDING_JSON_BYTES = 256 * 1024
_VALUES_PER_DUMP = 16 * 1024


@dataclass
class InferRequest:
    """A decoded request: tensors by name, and which outputs to return and how."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None = None  # None: every output
    binary: set[str] = field(default_factory=set)  # outputs to send in the binary extension
    binary_default: bool = False  # for outputs the request does not name


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ServeError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _shape(entry: Mapping[str, Any], name: str, max_elements: int) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ServeError(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    if math.prod(shape) > max_elements:
        raise ServeError(f"input {name!r}: shape {shape} holds {math.prod(shape)} elements; the limit "
                         f"is {max_elements}", 413)
    return tuple(shape)


def _flat_strings(data: Any) -> Iterator[Any]:
    for item in data:
        if isinstance(item, list):
            yield from _flat_strings(item)
        else:
            yield item


_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "fiu"}  # JSON number kinds each NumPy kind accepts


def _from_json(name: str, data: Any, dt: Datatype, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(data, list):
        raise ServeError(f"input {name!r}: data must be a JSON list")
    if dt.name == "BYTES":
        flat = list(_flat_strings(data))
        if not all(isinstance(s, str) for s in flat):
            raise ServeError(f"input {name!r}: BYTES data must be strings")
        array = np.array(flat, dtype=object)
    else:
        try:
            array = np.asarray(data).reshape(-1)
        except ValueError as exc:
            raise ServeError(f"input {name!r}: data is not a regular list of numbers ({exc})") from None
        if array.size and array.dtype.kind not in _KINDS[dt.numpy.kind]:
            raise ServeError(f"input {name!r}: data holds {array.dtype.kind!r}-kind values, "
                             f"not {dt.name} values")
        typed = array.astype(dt.numpy)
        if dt.numpy.kind in "iu" and not np.array_equal(typed, array):
            raise ServeError(f"input {name!r}: a value does not fit in {dt.name}")
        array = typed
    if array.size != math.prod(shape):
        raise ServeError(f"input {name!r}: data has {array.size} elements but shape {list(shape)} "
                         f"needs {math.prod(shape)}")
    return array.reshape(shape)


def _from_binary(name: str, raw: memoryview, dt: Datatype, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    if dt.itemsize is not None:
        if len(raw) != count * dt.itemsize:
            raise ServeError(f"input {name!r}: binary_data_size is {len(raw)} bytes but shape "
                             f"{list(shape)} of {dt.name} needs {count * dt.itemsize}")
        return np.frombuffer(raw, dtype=dt.numpy.newbyteorder("<")).reshape(shape)
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ServeError(f"input {name!r}: BYTES data ends inside a length prefix")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4 + length
        if offset > len(raw):
            raise ServeError(f"input {name!r}: a BYTES element claims {length} bytes past the data's end")
        try:
            items.append(bytes(raw[offset - length:offset]).decode())
        except UnicodeDecodeError:
            raise ServeError(f"input {name!r}: BYTES element is not UTF-8 text") from None
    if len(items) != count:
        raise ServeError(f"input {name!r}: {len(items)} BYTES elements but shape {list(shape)} "
                         f"needs {count}")
    return np.array(items, dtype=object).reshape(shape)


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    return int(text)


def _loads(text: bytes) -> Any:
    if len(text) <= _YIELDING_JSON_BYTES:
        return json.loads(text)
    return json.loads(text, parse_float=_float, parse_int=_int)


def _split(body: bytes, header_length: str | None) -> tuple[Any, memoryview]:
    """The JSON header and the binary data after it."""
    if header_length is None:
        header, rest = body, b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise ServeError(f"Inference-Header-Content-Length {header_length!r} is not a number") from None
        if not 0 < length <= len(body):
            raise ServeError(f"Inference-Header-Content-Length is {length} but the body has "
                             f"{len(body)} bytes")
        header, rest = body[:length], body[length:]
    try:
        return _loads(header), memoryview(rest)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ServeError(f"request is not valid JSON: {exc}") from None


def decode_request(body: bytes, header_length: str | None = None, *,
                   max_elements: int = 1 << 28) -> InferRequest:
    """Decode an inference request body; ``header_length`` is the binary extension's header."""
    request, binary = _split(body, header_length)
    request = _object(request, "the request")
    entries = request.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise ServeError("request needs an 'inputs' list with at least one tensor")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for entry in entries:
        entry = _object(entry, "each input")
        name = entry.get("name")
        if not isinstance(name, str) or name in inputs:
            raise ServeError(f"each input needs a unique string 'name', got {name!r}")
        datatype = entry.get("datatype")
        dt = DATATYPES.get(datatype) if isinstance(datatype, str) else None
        if dt is None:
            raise ServeError(f"input {name!r}: datatype {entry.get('datatype')!r} is not one of "
                             f"{', '.join(DATATYPES)}")
        shape = _shape(entry, name, max_elements)
        size = _object(entry.get("parameters", {}), "parameters").get("binary_data_size")
        if size is None:
            inputs[name] = _from_json(name, entry.get("data"), dt, shape)
            continue
        if "data" in entry or type(size) is not int or size < 0 or offset + size > len(binary):
            raise ServeError(f"input {name!r}: binary_data_size {size!r} does not fit the "
                             f"{len(binary) - offset} binary bytes left (or 'data' is set too)")
        inputs[name] = _from_binary(name, binary[offset:offset + size], dt, shape)
        offset += size
    if offset != len(binary):
        raise ServeError(f"{len(binary) - offset} binary bytes follow the inputs that no input claims")
    return _outputs(request, InferRequest(_id(request), inputs))


def _id(request: Mapping[str, Any]) -> str | None:
    value = request.get("id")
    if value is not None and not isinstance(value, str):
        raise ServeError("request 'id' must be a string")
    return value


def _outputs(request: Mapping[str, Any], result: InferRequest) -> InferRequest:
    parameters = _object(request.get("parameters", {}), "parameters")
    result.binary_default = bool(parameters.get("binary_data_output", False))
    entries = request.get("outputs")
    if entries is None:
        return result
    if not isinstance(entries, list):
        raise ServeError("'outputs' must be a list")
    result.outputs = []
    for entry in entries:
        entry = _object(entry, "each output")
        name = entry.get("name")
        if not isinstance(name, str):
            raise ServeError(f"each output needs a string 'name', got {name!r}")
        options = _object(entry.get("parameters", {}), "parameters")
        if "classification" in options:
            raise ServeError("the classification extension is not implemented", 501)
        if options.get("binary_data", result.binary_default):
            result.binary.add(name)
        result.outputs.append(name)
    return result


def _binary(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OSU":
        parts = [s.encode() if isinstance(s, str) else bytes(s) for s in array.reshape(-1)]
        return b"".join(_LENGTH.pack(len(p)) + p for p in parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_data(array: np.ndarray) -> str:
    """The JSON list of an array's values, encoded a slice at a time (see _VALUES_PER_DUMP)."""
    flat, parts = array.reshape(-1), []
    for start in range(0, flat.size, _VALUES_PER_DUMP):
        values = flat[start:start + _VALUES_PER_DUMP].tolist()
        if array.dtype.kind in "OS":
            values = [s.decode() if isinstance(s, bytes) else s for s in values]
        parts.append(_dumps(values)[1:-1])
    return "[" + ",".join(parts) + "]"


def encode_response(model: str, version: str, request: InferRequest,
                    outputs: Mapping[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (with the binary extension's header when used)."""
    names = request.outputs if request.outputs is not None else list(outputs)
    described, chunks = [], []
    for name in names:
        array = outputs[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype),
                                 "shape": list(array.shape)}
        if name in request.binary or (request.outputs is None and request.binary_default):
            chunks.append(_binary(array))
            entry["parameters"] = {"binary_data_size": len(chunks[-1])}
            described.append(_dumps(entry))
        else:
            described.append(_dumps(entry)[:-1] + ',"data":' + _json_data(array) + "}")
    head: dict[str, Any] = {"model_name": model, "model_version": version}
    if request.id is not None:
        head["id"] = request.id
    header = (_dumps(head)[:-1] + ',"outputs":[' + ",".join(described) + "]}").encode()
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {"content-type": "application/octet-stream",
                                       HEADER_LENGTH: str(len(header))}
