"""The form an exported graph is written in, so ONNX Runtime's default session runs it fast.

Applied to every exported graph (either framework), both rewrites change no number:

- :func:`gelu_for_fusion`: torch's dynamo exporter writes GELU as ``x * (0.5 * (1 + erf(x / √2)))``,
  a form ONNX Runtime's GELU fusion does not match, so each GELU ran as five element-wise
  kernels; written ``(x * (1 + erf(x / √2))) * 0.5`` (as the TorchScript exporter, and so
  Optimum, write it) a session fuses it with its bias into one ``BiasGelu``. Multiplying by 0.5
  is exact in binary floating point, so the outputs are bit-identical.
- :func:`pack_projections`: the MatMuls that read one tensor with constant weights (attention's
  query, key and value projections) become one MatMul on the weights side by side, one bias Add
  and a Split, as ONNX Runtime's own Attention op packs them. Each output element is the same
  dot product (the same bits: 0 apart in the test); a default two-thread session has fewer
  kernels to wait between on a shared machine. Measured on a loaded 2-core AMD EPYC (AVX2):
  three 768-wide projections x 12, batch 1, 2 threads, wall clock: 0.74x packed (one run);
  at batch 8 1.12x in one run, and on one thread 1.02x (batch 1) and 0.99x (batch 8), i.e.
  within that machine's noise; BERT-base export vs Optimum's, 2 threads: 0.92x at batch 1
  (1.06x before), 1.03x at batch 8 (1.05x before) — see the README's table.
  :func:`unpack_projections` undoes it where a tool matches the three apart (ONNX Runtime's
  transformer fusions).
- :func:`drop_inferred_shapes`: the dynamo exporter records the shape of every intermediate
  tensor (``value_info``). They are optional hints: runtimes infer what they need, and Optimum's
  files carry none. With them ONNX Runtime's CPU session fuses each residual Add and
  LayerNormalization into its ``SkipLayerNormalization`` kernel, which measured 3.3x slower than
  the ops it replaces (612 vs 187 µs for 128 x 768, ONNX Runtime 1.32, AMD EPYC AVX2, one
  thread); a BERT-base export ran 1.07x the latency of Optimum's with them, 0.99x without.

>>> import onnx.helper as h
>>> from onnx import TensorProto
>>> graph = h.make_graph([h.make_node("Div", ["x", "sqrt2"], ["d"]), h.make_node("Erf", ["d"], ["e"]),
...     h.make_node("Add", ["e", "one"], ["a"]), h.make_node("Mul", ["half", "a"], ["m"]),
...     h.make_node("Mul", ["x", "m"], ["y"])], "gelu",
...     [h.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [h.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
...     [h.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("sqrt2", 2 ** 0.5), ("one", 1.0), ("half", 0.5))])
>>> gelu_for_fusion(graph)
1
>>> [(n.op_type, list(n.input)) for n in graph.node[3:]]
[('Mul', ['x', 'a']), ('Mul', ['m', 'half'])]
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper


# Split takes its sizes as an input from opset 13; older graphs keep their projections apart.
PACK_MIN_OPSET = 13
PACKED = "llmasos_packed"  # prefix of the names of the nodes and weights pack_projections writes


def conform_for_runtime(graph: onnx.GraphProto, opset: int = PACK_MIN_OPSET) -> None:
    """The rewrites of this module, in place (projections are packed at ``opset`` 13 and above)."""
    gelu_for_fusion(graph)
    if opset >= PACK_MIN_OPSET:
        pack_projections(graph)
    drop_inferred_shapes(graph)


def drop_inferred_shapes(graph: onnx.GraphProto) -> None:
    """Remove the intermediate tensors' recorded shapes (the graph's inputs and outputs keep theirs)."""
    del graph.value_info[:]


def _scalars(graph: onnx.GraphProto) -> dict[str, float]:
    """Single-value float constants (initializers and Constant nodes) by name."""
    tensors = {t.name: t for t in graph.initializer}
    tensors.update({n.output[0]: n.attribute[0].t for n in graph.node
                    if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value"})
    out = {}
    for name, tensor in tensors.items():
        if tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16) \
                and math.prod(tensor.dims) == 1:
            out[name] = float(numpy_helper.to_array(tensor).reshape(-1)[0])
    return out


def gelu_for_fusion(graph: onnx.GraphProto) -> int:
    """Rewrite each ``x * (0.5 * (1 + erf(x / √2)))`` as ``(x * (1 + erf(x / √2))) * 0.5``, in
    place; returns how many. The inner product must feed only the outer one, and every constant
    must be what the formula says, else the subgraph is left as it is."""
    scalars = _scalars(graph)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}

    def is_const(name: str, value: float) -> bool:
        return name in scalars and np.isclose(scalars[name], value, rtol=1e-6)

    def other(node: onnx.NodeProto, value: float) -> str | None:
        """The input of a binary node that is not the constant ``value``."""
        first, second = node.input
        return second if is_const(first, value) else first if is_const(second, value) else None

    rewritten = 0
    for outer in graph.node:
        if outer.op_type != "Mul" or len(outer.input) != 2:
            continue
        for x, half_product in (tuple(outer.input), tuple(outer.input)[::-1]):
            inner = producer.get(half_product)
            if inner is None or inner.op_type != "Mul" or consumers.get(half_product) != 1 or half_product in outputs:
                continue
            one_plus = other(inner, 0.5)
            add = producer.get(one_plus) if one_plus else None
            erf_out = other(add, 1.0) if add is not None and add.op_type == "Add" else None
            erf = producer.get(erf_out) if erf_out else None
            scaled = producer.get(erf.input[0]) if erf is not None and erf.op_type == "Erf" else None
            if scaled is None or not ((scaled.op_type == "Div" and list(scaled.input) == [x, scaled.input[1]]
                                       and is_const(scaled.input[1], math.sqrt(2)))
                                      or (scaled.op_type == "Mul" and other(scaled, 1 / math.sqrt(2)) == x)):
                continue
            half = inner.input[0] if inner.input[1] == one_plus else inner.input[1]
            inner.input[:] = [x, one_plus]
            outer.input[:] = [half_product, half]
            rewritten += 1
            break
    return rewritten


def _uses(graph: onnx.GraphProto) -> dict[str, int]:
    """How many node inputs and graph outputs read each tensor, the nodes of subgraphs (If,
    Loop, Scan bodies, which may read the outer graph's tensors) included."""
    counts: dict[str, int] = {}

    def count(g: onnx.GraphProto) -> None:
        for node in g.node:
            for name in node.input:
                counts[name] = counts.get(name, 0) + 1
            for attribute in node.attribute:
                for body in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                    count(body)
        for output in g.output:
            counts[output.name] = counts.get(output.name, 0) + 1

    count(graph)
    return counts


def pack_projections(graph: onnx.GraphProto) -> int:
    """Rewrite each set of ``MatMul(x, W_i)`` (+ ``Add(b_i)``) that reads one ``x`` as one
    ``MatMul(x, [W_1 W_2 …])`` (+ one ``Add``) and a ``Split`` along the last axis, in place;
    returns how many sets. A weight must be a 2-D initializer read by that MatMul alone (a
    shared weight would be stored twice), a bias a 1-D initializer of the MatMul's width whose
    Add is the MatMul's only reader; MatMuls with and without bias are packed apart."""
    weights = {t.name: t for t in graph.initializer}
    uses = _uses(graph)
    nodes = list(graph.node)  # one Python object per node, so id() names it throughout
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    groups: dict[tuple[str, bool], list[tuple[onnx.NodeProto, onnx.NodeProto | None, str | None]]] = {}
    for node in nodes:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight is None or len(weight.dims) != 2 or uses.get(weight.name) != 1:
            continue
        add, bias = None, None
        after = readers.get(node.output[0], [])
        if len(after) == 1 and uses.get(node.output[0]) == 1 and after[0].op_type == "Add":
            other = [name for name in after[0].input if name != node.output[0]]
            found = weights.get(other[0]) if len(other) == 1 else None
            if found is not None and list(found.dims) == [weight.dims[1]] and found.data_type == weight.data_type:
                add, bias = after[0], found.name
        groups.setdefault((node.input[0], add is not None), []).append((node, add, bias))

    replaced: dict[int, list[onnx.NodeProto]] = {}
    dropped: set[int] = set()
    packed, taken = 0, sum(node.name.startswith(PACKED) and node.op_type == "Split" for node in nodes)
    for (_, has_bias), members in groups.items():
        kernels = [numpy_helper.to_array(weights[m.input[1]]) for m, _, _ in members]
        if len(members) < 2 or len({(k.shape[0], k.dtype) for k in kernels}) != 1:
            continue
        name = f"{PACKED}_{taken + packed}"
        graph.initializer.append(numpy_helper.from_array(np.concatenate(kernels, axis=1), f"{name}_weight"))
        graph.initializer.append(numpy_helper.from_array(np.array([k.shape[1] for k in kernels], np.int64),
                                                         f"{name}_sizes"))
        first = members[0][0]
        written = [onnx.helper.make_node("MatMul", [first.input[0], f"{name}_weight"], [f"{name}_product"],
                                         name=f"{name}_matmul")]
        product = f"{name}_product"
        if has_bias:
            graph.initializer.append(numpy_helper.from_array(
                np.concatenate([numpy_helper.to_array(weights[b]) for _, _, b in members]), f"{name}_bias"))
            written.append(onnx.helper.make_node("Add", [product, f"{name}_bias"], [f"{name}_sum"], name=f"{name}_add"))
            product = f"{name}_sum"
        outputs = [(add or matmul).output[0] for matmul, add, _ in members]
        written.append(onnx.helper.make_node("Split", [product, f"{name}_sizes"], outputs, axis=-1,
                                             name=f"{name}_split"))
        replaced[id(first)] = written  # where the first MatMul was: x exists there, no reader of an output yet
        dropped.update(id(n) for matmul, add, _ in members for n in (matmul, add) if n is not None)
        packed += 1
    if packed:
        _replace(graph, nodes, replaced, dropped)
    return packed


def unpack_projections(graph: onnx.GraphProto) -> int:
    """Undo :func:`pack_projections`, in place: each packed MatMul (+ Add) + Split becomes the
    MatMuls (+ Adds) it was made of; returns how many. Only its own nodes are unpacked."""
    weights = {t.name: t for t in graph.initializer}
    nodes = list(graph.node)  # one Python object per node, so id() names it throughout
    producer = {out: node for node in nodes for out in node.output}
    replaced: dict[int, list[onnx.NodeProto]] = {}
    dropped: set[int] = set()
    for split in nodes:
        if split.op_type != "Split" or not split.name.startswith(PACKED) or len(split.input) != 2:
            continue
        name = split.name.removesuffix("_split")
        source = producer.get(split.input[0])
        add = source if source is not None and source.op_type == "Add" else None
        matmul = producer.get(add.input[0]) if add is not None else source
        if matmul is None or matmul.op_type != "MatMul" or split.input[1] not in weights:
            continue
        sizes = numpy_helper.to_array(weights[split.input[1]]).tolist()
        ends = np.cumsum([0, *sizes])
        kernel = numpy_helper.to_array(weights[matmul.input[1]])
        bias = numpy_helper.to_array(weights[add.input[1]]) if add is not None else None
        parts = []
        for index, (start, end, output) in enumerate(zip(ends[:-1], ends[1:], split.output)):
            part = f"{name}_{index}"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(kernel[:, start:end]),
                                                             f"{part}_weight"))
            target = f"{part}_product" if add is not None else output
            parts.append(onnx.helper.make_node("MatMul", [matmul.input[0], f"{part}_weight"], [target],
                                               name=f"{part}_matmul"))
            if add is not None:
                graph.initializer.append(numpy_helper.from_array(bias[start:end], f"{part}_bias"))
                parts.append(onnx.helper.make_node("Add", [target, f"{part}_bias"], [output], name=f"{part}_add"))
        replaced[id(matmul)] = parts
        dropped.update(id(n) for n in (matmul, add, split) if n is not None)
    if replaced:
        _replace(graph, nodes, replaced, dropped)
    return len(replaced)


def _replace(graph: onnx.GraphProto, nodes: list[onnx.NodeProto], replaced: dict[int, list[onnx.NodeProto]],
             dropped: set[int]) -> None:
    """``nodes`` (the graph's) with those in ``replaced`` (by id) giving way to their lists and
    those in ``dropped`` gone; then the initializers that only the removed nodes read go too."""
    before = {name for node in nodes if id(node) in dropped for name in node.input}
    kept_nodes = []
    for node in nodes:
        if id(node) in replaced:
            kept_nodes.extend(replaced[id(node)])
        elif id(node) not in dropped:
            kept_nodes.append(node)
    kept_nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in kept_nodes]  # copies outlive the clear
    del graph.node[:]
    graph.node.extend(kept_nodes)
    read = set(_uses(graph)) | {i.name for i in graph.input}
    for index in reversed(range(len(graph.initializer))):  # in place: weights are not copied
        name = graph.initializer[index].name
        if name in before and name not in read:
            del graph.initializer[index]
