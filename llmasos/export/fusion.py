"""ONNX Runtime's transformer fusions, as Optimum's O2 applies them, for llmasos' transformer files.

ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer``) rewrites each
attention block into one ``Attention`` op, each GELU with its bias into ``BiasGelu`` and, for
CUDA, each residual Add with its LayerNorm into ``SkipLayerNormalization`` (com.microsoft ops, for
ONNX Runtime only). It matches subgraphs: the torch adapter exports attention in the form it
expects (see ``adapters/torch/layers.py``), :func:`split_unsqueezes` undoes the one merge
torch's dynamo exporter makes in it, and the query, key and value projections that every export
packs into one MatMul (:func:`~llmasos.export.graph_form.pack_projections`) are unpacked first:
the fusion matches them apart, and packs them again into its Attention op.

Whether a file is a transformer, and its heads and width, come from the spec in its metadata:

>>> from llmasos.spec import ModelSpec
>>> spec = ModelSpec().add_input("x", (None, 32))
>>> for role in ("q", "k", "v"):
...     _ = spec.add("Dense", 32, name=role, inputs="x")
>>> _ = spec.add("Attention", 4, name="attention", inputs=["q", "k", "v"])
>>> attention_shape(spec.set_outputs("attention").to_dict())
(4, 32)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph_form import unpack_projections

ATTENTION_KINDS = ("Attention", "MultiHeadAttention")
MS_DOMAIN = "com.microsoft"


def attention_shape(spec: dict[str, Any] | None) -> tuple[int, int] | None:
    """``(heads, hidden size)`` of a spec's attention layers (``(0, 0)`` when they differ, which
    lets ONNX Runtime read them per layer from the graph); None when it has none."""
    from ..spec import ModelSpec

    if not isinstance(spec, dict):
        return None
    model = ModelSpec.from_dict(spec)
    layers = [layer for layer in model.layers if layer.kind in ATTENTION_KINDS]
    if not layers:
        return None
    shapes = model.shapes()
    found = {(layer.config["num_heads"], shapes[layer.inputs[0]][-1]) for layer in layers}
    return found.pop() if len(found) == 1 else (0, 0)


def split_unsqueezes(graph: onnx.GraphProto) -> None:
    """Rewrite each ``Unsqueeze`` of several constant axes as a chain of one-axis Unsqueezes.

    ONNX Runtime's attention fusion finds the padding mask as ``mask[:, None, None, :]`` written
    with two Unsqueezes (as the TorchScript exporter writes it); torch's dynamo exporter merges
    them into one, and the fusion then leaves attention unfused. Same result, same cost.
    """
    constants = {t.name: t for t in graph.initializer}
    constants.update({n.output[0]: n.attribute[0].t for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    nodes = []
    for node in graph.node:
        axes = constants.get(node.input[1]) if node.op_type == "Unsqueeze" and len(node.input) == 2 else None
        values = None if axes is None else numpy_helper.to_array(axes).reshape(-1)
        if values is None or values.size < 2 or (values < 0).any():  # negative axes depend on the rank
            nodes.append(node)
            continue
        source = node.input[0]
        for index, axis in enumerate(sorted(int(a) for a in values)):  # ascending: each axis where it ends up
            name = f"{node.output[0]}_axis{axis}"
            graph.initializer.append(numpy_helper.from_array(np.array([axis], np.int64), f"{name}_axes"))
            target = node.output[0] if index == values.size - 1 else name
            nodes.append(helper.make_node("Unsqueeze", [source, f"{name}_axes"], [target], name=f"{node.name}_{axis}"))
            source = target
    del graph.node[:]
    graph.node.extend(nodes)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    # The optimizer warns that the file's producer is not "pytorch" (it names the model type it
    # guessed from it); llmasos passes the model type itself.
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def fuse_transformer(proto: onnx.ModelProto, heads: int, hidden: int, use_gpu: bool = False) -> onnx.ModelProto:
    """``proto`` with ONNX Runtime's BERT-family fusions, in place of Python only (no ONNX Runtime
    graph pass first: its own fusions would hide the patterns; sessions still apply them).
    Residual Adds join their LayerNormalization (``SkipLayerNormalization``) for CUDA only.

    The attention mask stays a full (batch, length) mask (``AttentionMask`` format), so padding
    on the left or between tokens gives the source's numbers; ONNX Runtime's default for BERT
    (a per-row count of tokens) assumes padding on the right only.
    """
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    unpack_projections(proto.graph)
    split_unsqueezes(proto.graph)
    options = FusionOptions("bert")
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    # ONNX Runtime's CPU SkipLayerNormalization is slower than the Add and LayerNormalization it
    # replaces (3.3x at 128 x 768; see graph_form): on CPU they stay apart (BERT-base at batch 1,
    # one thread: 0.96x Optimum's O2 latency apart, 1.00x fused). CUDA's kernel is the fast one.
    options.enable_skip_layer_norm = use_gpu
    with _quiet("onnxruntime.transformers"):
        fused = optimize_model(proto, model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
                               optimization_options=options, use_gpu=use_gpu)
        fused.topological_sort()  # what its own save does, with the import of the domain of its ops
    model = fused.model
    if any(node.domain == MS_DOMAIN for node in model.graph.node) and MS_DOMAIN not in (
            opset.domain for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return model
