"""ONNX Runtime execution providers by short name, with fallback that says what really runs.

ONNX Runtime never fails on a provider it lacks: it warns and quietly runs on CPU. Here every
provider asked for is checked against what this machine's ONNX Runtime offers, each missing one is
named with the package that brings it, and the session reports the providers it really uses.

>>> providers()["cpu"]
'CPUExecutionProvider'
>>> resolve(["cpu"])
[('CPUExecutionProvider', {})]

Usage::

    resolve([("openvino", {"device_type": "NPU"}), "cpu"], strict=True)
    [('OpenVINOExecutionProvider', {'device_type': 'NPU'}), ('CPUExecutionProvider', {})]

``session("model.onnx", ["cuda", "cpu"])`` opens a model on the first of those that works.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import OnnxFileError, ProviderError

CPU = "CPUExecutionProvider"

# Short name -> ONNX Runtime's name. ROCmExecutionProvider was removed in ONNX Runtime 1.23:
# AMD GPUs now go through MIGraphX, so "rocm" means MIGraphX.
SHORT_NAMES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "rocm": "MIGraphXExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
}

# What to install to get each provider (the plain `onnxruntime` wheel has only CPU and Azure).
PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (plus NVIDIA TensorRT libraries)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "QNNExecutionProvider": "onnxruntime-qnn",
    "DmlExecutionProvider": "onnxruntime-directml",
    "CoreMLExecutionProvider": "onnxruntime (the macOS wheel)",
    "MIGraphXExecutionProvider": "onnxruntime-migraphx (AMD's ROCm build; ROCm's own provider "
                                 "was removed in ONNX Runtime 1.23)",
    "VitisAIExecutionProvider": "onnxruntime-vitisai (AMD Ryzen AI software)",
}

ProviderSpec = str | tuple[str, Mapping[str, Any]]


def _ort():
    # Imported on first use so that `import llmasos.export` stays cheap.
    import onnxruntime

    return onnxruntime


def _short(real: str) -> str:
    for short, name in SHORT_NAMES.items():
        if name == real and short != "rocm":
            return short
    return real.removesuffix("ExecutionProvider").lower()


def providers() -> dict[str, str]:
    """What this machine's ONNX Runtime can use: ``{short name: ONNX Runtime name}``, best first.

    >>> providers()["cpu"]
    'CPUExecutionProvider'
    """
    return {_short(name): name for name in _ort().get_available_providers()}


def _real_name(name: str) -> str:
    key = name.strip()
    if key.lower() in SHORT_NAMES:
        return SHORT_NAMES[key.lower()]
    if key in _ort().get_all_providers():
        return key
    raise ProviderError(f"unknown execution provider {name!r}; known: {', '.join(SHORT_NAMES)} "
                        "(or an ONNX Runtime name such as 'CUDAExecutionProvider')")


def _unavailable(real: str, strict: bool, reason: str) -> None:
    package = PACKAGES.get(real, "an ONNX Runtime build that includes it")
    message = f"{real} {reason}; install {package} to use it"
    if strict:
        raise ProviderError(message)
    warnings.warn(f"{message}; falling back to the next provider", RuntimeWarning, stacklevel=3)


def resolve(requested: ProviderSpec | Iterable[ProviderSpec] = ("cpu",), strict: bool = False
            ) -> list[tuple[str, dict[str, Any]]]:
    """``[(ONNX Runtime name, options), ...]`` in fallback order, always ending on CPU.

    ``requested`` is a short or real name, a ``(name, options)`` pair, a list of those, or a
    comma-separated string (``"cuda,cpu"``). Providers this machine lacks are dropped with a
    warning naming the package that brings them; ``strict=True`` raises :class:`ProviderError`.
    """
    if isinstance(requested, str):
        requested = [part for part in requested.split(",") if part.strip()]
    elif isinstance(requested, tuple) and len(requested) == 2 and isinstance(requested[1], Mapping):
        requested = [requested]
    available = set(_ort().get_available_providers())
    chosen: list[tuple[str, dict[str, Any]]] = []
    for item in requested:
        name, options = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
        real = _real_name(name)
        if real not in available:
            _unavailable(real, strict, "is not available in this ONNX Runtime")
        elif real not in (r for r, _ in chosen):
            chosen.append((real, options))
    if CPU not in (r for r, _ in chosen):
        chosen.append((CPU, {}))
    return chosen


def graphs(graph: Any) -> Iterable[Any]:
    """``graph`` and its subgraphs (Loop and If bodies), depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                yield from graphs(sub)


def external_files(model: Any, folder: Path) -> list[Path]:
    """The external-data files an ``onnx.ModelProto`` (loaded from ``folder``) keeps tensors in.

    :class:`OnnxFileError` for a location outside ``folder`` (absolute, or leading out through
    ``..`` or a symbolic link): a model file must not make a loader, a verifier or a server read
    anything but its own weights.
    """
    import onnx

    names = {entry.value for graph in graphs(model.graph) for tensor in graph.initializer
             if tensor.data_location == onnx.TensorProto.EXTERNAL
             for entry in tensor.external_data if entry.key == "location"}
    return [_beside(folder, name) for name in sorted(names)]


def _beside(folder: Path, location: str) -> Path:
    path = folder / location
    inside = not Path(location).is_absolute() and path.resolve().is_relative_to(folder.resolve())
    if not inside or "\\" in location:
        raise OnnxFileError(f"the model in {folder} names external data at {location!r}, outside its folder; "
                            "external-data files are read only from the model's own folder (a relative name "
                            "such as 'model.onnx.data', no '..' and no absolute path)")
    return path


def check_file(path: str | os.PathLike) -> Any:
    """The ``onnx.ModelProto`` at ``path``, without its weights; :class:`OnnxFileError` unless it
    parses as a model and every external-data file it names is beside it.

    Parsing is also how a model repository tells a half-written file from a finished one.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(f"no ONNX file at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise OnnxFileError(f"{path} is not an ONNX model: {exc}") from exc
    if model.ir_version <= 0 or not model.graph.output:
        raise OnnxFileError(f"{path} is not an ONNX model (no IR version or no graph outputs)")
    missing = [file.name for file in external_files(model, path.parent) if not file.is_file()]
    if missing:
        raise OnnxFileError(f"{path} keeps weights in external-data file(s) {missing}, "
                            "missing beside it")
    return model


def session(path: str | os.PathLike, providers: ProviderSpec | Iterable[ProviderSpec] = ("cpu",),
            strict: bool = False, options: Any = None) -> Any:
    """Open ``path`` in an ``onnxruntime.InferenceSession`` on the first providers that work.

    ``options`` is an ``onnxruntime.SessionOptions``. A provider that fails to initialise is
    skipped with a warning (``strict=True``: :class:`ProviderError`), and so is one that ONNX
    Runtime accepted but did not use; ``session.get_providers()`` lists what really runs.

    ```python
    session = export.load("model.onnx", providers=["cuda", "openvino", "cpu"])
    session.get_providers()       # ['CPUExecutionProvider'] where neither CUDA nor OpenVINO is installed
    ```
    """
    check_file(path)
    chosen = resolve(providers, strict)
    while True:
        names = [name for name, _ in chosen]
        try:
            result = _ort().InferenceSession(str(path), sess_options=options, providers=names,
                                             provider_options=[opts for _, opts in chosen])
            break
        except Exception as exc:  # ONNX Runtime raises its own untyped errors
            if names == [CPU]:
                raise OnnxFileError(f"ONNX Runtime cannot load {path}: {exc}") from exc
            failed = next(name for name in names if name != CPU)
            _unavailable(failed, strict, f"failed to initialise ({exc})")
            chosen = [pair for pair in chosen if pair[0] != failed]
    used = result.get_providers()
    for name in names:
        if name not in used:
            _unavailable(name, strict, f"was not used by ONNX Runtime (it runs on {', '.join(used)})")
    return result
