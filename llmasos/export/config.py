"""What an exported file looks like, decided once from the spec for every framework.

In the spirit of Optimum's ``OnnxConfig``: the graph's inputs and outputs (the spec's names),
which dimensions are dynamic and what they are called, the layouts, the default opset, the
tolerance of the validation, and inputs to validate with. Exporters only produce a graph; this
config is what makes a torch-made and a TensorFlow-made file indistinguishable.

>>> from llmasos.spec import ModelSpec
>>> config = OnnxConfig(ModelSpec.sequential((1, 8, 8)).add("Conv2D", 4, kernel_size=3).add("Flatten"))
>>> config.inputs[0]
TensorInfo(name='input', dtype='float32', shape=('batch_size', 1, 8, 8), layout='NCHW')
>>> config.outputs[0].shape, config.atol, config.opset
(('batch_size', 144), 1e-05, 18)

Dynamic dimensions carry Optimum's names: ``batch_size`` first; the spec's own names where its
inputs declare them (``add_input(..., axes=("sequence_length",))``), which outputs inherit by
size (``past_sequence_length + sequence_length`` for a key/value cache); otherwise a model's only
dynamic dimension is ``sequence_length`` (or ``height``/``width``/``num_channels``).
>>> [x.shape for x in config.sample(batch=3)]
[(3, 1, 8, 8)]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx

from ..errors import ExportError, SpecError
from ..spec import InputSpec, ModelSpec

DEFAULT_OPSET = 18          # the newest opset both exporters write (tf2onnx 1.17 stops at 18)
BATCH = "batch_size"
AXIS_NAMES = {"L": "sequence_length", "H": "height", "W": "width", "C": "num_channels"}  # of an only dynamic dimension
ATOL_SMALL, ATOL_LARGE = 1e-5, 1e-4
LARGE_PARAMETERS = 1_000_000
DYNAMIC_SIZE = 5            # validation size of dynamic dimensions: neither 1 nor the exporters' example size


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: dims are ints or symbolic names, batch first."""

    name: str
    dtype: str
    shape: tuple
    layout: str

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


class OnnxConfig:
    """The export contract for one spec: names, dynamic axes, layouts, opset, tolerance, samples."""

    def __init__(self, spec: ModelSpec, opset: int | None = None) -> None:
        self.spec = spec
        self.opset = check_opset(opset)
        shapes, dtypes = spec.shapes(), spec.dtypes()
        layouts = {i.name: _layout(spec, i.name, i.shape, i.dtype) for i in spec.inputs}
        names = _axis_names(spec, layouts)
        dims = lambda node, shape: (BATCH, *(d if d is not None else names.get((node, axis), f"{node}_{axis}")
                                             for axis, d in enumerate(shape, start=1)))
        self.inputs = [TensorInfo(i.name, i.dtype, dims(i.name, i.shape), layouts[i.name]) for i in spec.inputs]
        self.outputs = [TensorInfo(name, dtypes[name], dims(name, shapes[name]),
                                   _layout(spec, name, shapes[name], dtypes[name])) for name in spec.outputs]

    @property
    def atol(self) -> float:
        """Validation tolerance: 1e-5 below a million parameters, 1e-4 above (float32 sums grow)."""
        return ATOL_SMALL if self.spec.parameter_count() < LARGE_PARAMETERS else ATOL_LARGE

    def sample(self, batch: int = 3, seed: int = 0, length: int = DYNAMIC_SIZE) -> list[np.ndarray]:
        """Random inputs inside each input's domain: normal floats, ids below every vocabulary they
        index. Dynamic dimensions get ``length`` (doubled until every layer fits it); the default
        is neither 1 nor the exporters' example size, so a dimension an exporter froze shows up
        as an error."""
        rng = np.random.default_rng(seed)
        length = self.spec.fitting_length(length)
        out = []
        for info in self.inputs:
            shape = (batch, *(d if isinstance(d, int) else length for d in info.shape[1:]))
            if info.dtype == "int64":  # ids below every vocabulary they index; a mask of 0/1
                out.append(rng.integers(0, self.spec.id_bound(info.name), size=shape, dtype=np.int64))
            else:
                out.append(rng.standard_normal(shape).astype(np.float32))
        return out

    def conform(self, proto: onnx.ModelProto) -> None:
        """Make an exporter's graph match this config: the same input/output names, the same
        dimension names everywhere (``batch``, ``sequence``), whoever exported it.

        An exporter that renamed a tensor or froze a dynamic dimension is an :class:`ExportError`.
        """
        renames: dict[str, str] = {}
        weights = {t.name for t in proto.graph.initializer}
        for values, infos in ((proto.graph.input, self.inputs), (proto.graph.output, self.outputs)):
            by_name = {v.name: v for v in values if v.name not in weights}
            wanted = [t.name for t in infos]
            if sorted(by_name) != sorted(wanted):
                raise ExportError(f"the exporter named the graph's tensors {list(by_name)}, the spec {wanted}")
            # TensorFlow returns a dict's outputs sorted by key: put them back in the spec's order
            ordered = [_copy(by_name[name]) for name in wanted] + [_copy(v) for v in values if v.name in weights]
            del values[:]
            values.extend(ordered)
            for value, info in zip(values, infos):
                self._conform_dims(value, info, renames)
        for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
            for dim in value.type.tensor_type.shape.dim:
                if dim.HasField("dim_param") and dim.dim_param in renames:
                    dim.dim_param = renames[dim.dim_param]
        # tf2onnx declares ai.onnx.ml whether or not it uses it
        used = _domains(proto.graph) | {f.domain for f in proto.functions} | {
            n.domain for f in proto.functions for n in f.node}
        kept = [onnx.helper.make_opsetid(o.domain, o.version) for o in proto.opset_import
                if o.domain in ("", "ai.onnx") or o.domain in used]
        del proto.opset_import[:]
        proto.opset_import.extend(kept)

    @staticmethod
    def _conform_dims(value: onnx.ValueInfoProto, info: TensorInfo, renames: dict[str, str]) -> None:
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):  # the exporter left the shape unknown: the spec knows it
            for _ in info.shape:
                tensor.shape.dim.add()
        dims = tensor.shape.dim
        if len(dims) != len(info.shape):
            raise ExportError(f"{info.name!r} has rank {len(dims)} in the exported graph, {len(info.shape)} in the spec")
        for axis, (dim, want) in enumerate(zip(dims, info.shape)):
            if isinstance(want, int):
                if dim.HasField("dim_value") and dim.dim_value != want:
                    raise ExportError(f"{info.name!r} axis {axis} is {dim.dim_value} in the exported graph, {want} in the spec")
                dim.dim_value = want
            elif dim.HasField("dim_value"):
                raise ExportError(f"the exporter fixed {info.name!r} axis {axis} ({want}) to {dim.dim_value}; "
                                  "it must stay dynamic; give the dimension a fixed size in the spec to export this model")
            else:
                # the exporter's own symbol (s0, unk__26, ...) may recur inside the graph
                if dim.dim_param:
                    renames.setdefault(dim.dim_param, want)
                dim.dim_param = want

def _axis_names(spec: ModelSpec, layouts: dict[str, str]) -> dict[tuple[str, int], str]:
    """Names of dynamic dimensions by (tensor, axis), batch excluded.

    Declared names (``InputSpec.axes``) are given to inputs; outputs take the name whose size
    they have when each name gets a size of its own (or ``a + b`` for a sum of two, as a cache
    concatenated with new keys). Without declared names a model's only dynamic dimension is
    named by its layout; several are left to ``<tensor>_<axis>``, since which output axis
    follows which input is then unknown.
    """
    declared = {(i.name, axis): name for i in spec.inputs if i.axes
                for axis, name in zip([a for a, d in enumerate(i.shape, start=1) if d is None], i.axes)}
    if not declared:
        dynamic = [(i.name, axis) for i in spec.inputs for axis, d in enumerate(i.shape, start=1) if d is None]
        if len(dynamic) != 1:
            return {}
        (node, axis), = dynamic
        single = AXIS_NAMES.get(layouts[node][axis], "dynamic")
        return {(name, axis): single for name, shape in spec.shapes().items()
                for axis, d in enumerate(shape, start=1) if d is None}
    base = spec.fitting_length(DYNAMIC_SIZE)
    sizes = {name: base * 2 ** k for k, name in enumerate(dict.fromkeys(declared.values()))}
    by_size = {size: name for name, size in sizes.items()}
    by_size.update({a + b: f"{x} + {y}" for x, a in sizes.items() for y, b in sizes.items()
                    if x != y and a + b not in by_size})
    concrete = ModelSpec()
    for i in spec.inputs:
        names = iter(i.axes or ())
        concrete.inputs.append(InputSpec(i.name, tuple(sizes.get(next(names, None), base) if d is None else d
                                                     for d in i.shape), i.dtype))
    concrete.layers, concrete.outputs = spec.layers, spec.outputs
    try:
        found = concrete.shapes()
    except SpecError:  # the declared names do not fit the layers: name only the inputs
        return declared
    out = dict(declared)
    for name in spec.outputs:
        for axis, d in enumerate(spec.shapes()[name], start=1):
            if d is None and found[name][axis - 1] in by_size:
                out[name, axis] = by_size[found[name][axis - 1]]
    return out


def _domains(graph: onnx.GraphProto) -> set[str]:
    """Op domains the graph's nodes use, subgraphs (Loop and If bodies) included."""
    used = set()
    for node in graph.node:
        used.add(node.domain)
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                used |= _domains(sub)
    return used


def _copy(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    return copy


def check_opset(opset: int | None) -> int:
    """``opset`` or the default; :class:`ExportError` outside what the installed onnx knows."""
    if opset is None:
        return DEFAULT_OPSET
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or isinstance(opset, bool) or not 7 <= opset <= newest:
        raise ExportError(f"opset must be an int from 7 to {newest} (onnx {onnx.__version__}), got {opset!r}; "
                          f"the default is {DEFAULT_OPSET}")
    return opset


def _layout(spec: ModelSpec, node: str, shape: tuple, dtype: str) -> str:
    """Letters for the axes: N batch, C channels or features, L length, H/W height/width.

    A rank-2 tensor is a 1-D signal ``NCL`` next to a Conv1D, else a sequence ``NLC``.
    """
    rank = len(shape)
    if dtype == "int64":
        return "NL" if rank == 1 else "N" + "?" * rank
    if rank == 2:
        near_conv = any(layer.kind == "Conv1D" and (layer.name == node or node in layer.inputs) for layer in spec.layers)
        return "NCL" if near_conv else "NLC"
    return {1: "NC", 3: "NCHW"}.get(rank, "N" + "?" * rank)
