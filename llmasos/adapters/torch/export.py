"""ONNX export of a compiled torch model with the dynamo exporter."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .build import TorchModel, train_mode

DEFAULT_OPSET = 18


def example_inputs(model: TorchModel, batch: int = 2) -> list[np.ndarray]:
    """Inputs of the spec's shapes; dynamic sizes become 3 (a size of 1 would be frozen), or
    the first doubling of it that every layer fits."""
    rng = np.random.default_rng(0)
    out = []
    length = model.spec.fitting_length(3)
    for spec_input in model.spec.inputs:
        shape = (batch, *(length if d is None else d for d in spec_input.shape))
        if spec_input.dtype == "int64":  # ids, or a 0/1 attention mask
            out.append(rng.integers(0, model.spec.id_bound(spec_input.name), size=shape, dtype=np.int64))
        else:
            out.append(rng.standard_normal(shape).astype(np.float32))
    return out


def export_onnx(model: TorchModel, path: str, opset: int | None = None, *, external_data: bool = False) -> dict:
    """Export with the dynamo exporter; where it fails, or fixes an axis that must stay dynamic
    (it unrolls ``nn.GRU`` over the example's length), fall back to the TorchScript exporter and
    say why in the exporter's name, which the report and the file's metadata carry."""
    opset = opset or DEFAULT_OPSET
    module = model.module
    was_training = module.training
    module.eval()
    tensors = tuple(model.to_tensors(example_inputs(model)))
    try:
        try:
            _export_dynamo(module, tensors, path, model.spec, opset, external_data)
            frozen = frozen_axes(path, model.spec)
            if not frozen:
                return {"exporter": f"torch.onnx.export (dynamo) {torch.__version__}", "opset": opset}
            reason = f"the dynamo exporter fixed dynamic axes {', '.join(frozen)}"
        except Exception as err:  # noqa: BLE001 - the exporter's errors share no base class; the fallback decides
            reason = f"the dynamo exporter failed: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"
        _export_torchscript(module, tensors, path, model.spec, opset)
        return {"exporter": f"torch.onnx.export {torch.__version__} (TorchScript fallback: {reason})", "opset": opset}
    finally:
        if was_training:  # back to training mode, frozen BatchNorms excepted
            train_mode(module)


def _dynamic_axes(spec) -> dict[str, dict[int, str]]:
    """Batch and every None dimension of the spec's inputs and outputs, by tensor name."""
    shapes = spec.shapes()
    names = [i.name for i in spec.inputs] + list(spec.outputs)
    return {name: {0: "batch", **{axis: f"{name}_dim{axis}" for axis, size in enumerate(shapes[name], start=1)
                                  if size is None}} for name in names}


def _export_dynamo(module, tensors, path, spec, opset, external_data=False) -> None:
    axes = _dynamic_axes(spec)
    dims = {"batch": torch.export.Dim("batch")}
    dynamic = tuple({axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in axes[i.name].items()}
                    for i in spec.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tensors, path, input_names=[i.name for i in spec.inputs],
                          output_names=list(spec.outputs), opset_version=opset, dynamo=True, external_data=external_data,
                          dynamic_shapes=(dynamic,), verbose=False)


def _export_torchscript(module, tensors, path, spec, opset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, and says so loudly
        torch.onnx.export(module, tensors, path, input_names=[i.name for i in spec.inputs],
                          output_names=list(spec.outputs), opset_version=opset, dynamo=False,
                          dynamic_axes=_dynamic_axes(spec))


def frozen_axes(path: str, spec) -> list[str]:
    """``name[axis]`` for every axis the spec leaves dynamic but the file fixes to a size."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    axes = _dynamic_axes(spec)
    frozen = []
    for tensor in [*graph.input, *graph.output]:
        dims = tensor.type.tensor_type.shape.dim
        for axis in axes.get(tensor.name, {}):
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                frozen.append(f"{tensor.name}[{axis}]")
    return frozen
