"""ONNX export of a compiled torch model with the dynamo exporter."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .build import TorchModel

DEFAULT_OPSET = 18


def example_inputs(model: TorchModel, batch: int = 2) -> list[np.ndarray]:
    """Inputs of the spec's shapes; dynamic sizes become 3 (a size of 1 would be frozen)."""
    rng = np.random.default_rng(0)
    out = []
    for spec_input in model.spec.inputs:
        shape = (batch, *(3 if d is None else d for d in spec_input.shape))
        if spec_input.dtype == "int64":
            vocab = min(layer.config["vocab_size"] for layer in model.spec.layers
                        if layer.kind == "Embedding" and spec_input.name in layer.inputs)
            out.append(rng.integers(0, vocab, size=shape, dtype=np.int64))
        else:
            out.append(rng.standard_normal(shape).astype(np.float32))
    return out


def export_onnx(model: TorchModel, path: str, opset: int | None = None) -> dict:
    module = model.module
    was_training = module.training
    module.eval()
    tensors = model.to_tensors(example_inputs(model))
    batch = torch.export.Dim("batch")
    dynamic = []
    for position, spec_input in enumerate(model.spec.inputs):
        axes = {0: batch}
        for axis, size in enumerate(spec_input.shape, start=1):
            if size is None:
                axes[axis] = torch.export.Dim(f"{spec_input.name}_dim{axis}")
        dynamic.append(axes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, tuple(tensors), path,
                input_names=[i.name for i in model.spec.inputs], output_names=list(model.spec.outputs),
                opset_version=opset or DEFAULT_OPSET, dynamo=True, external_data=False,
                dynamic_shapes=(tuple(dynamic),), verbose=False,
            )
    finally:
        module.train(was_training)
    return {"exporter": f"torch.onnx.export (dynamo) {torch.__version__}", "opset": opset or DEFAULT_OPSET}
