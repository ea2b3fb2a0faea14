"""ONNX export of a compiled Keras model with tf2onnx.

``tf2onnx.convert.from_keras`` fails on Keras 3 models, so the model is wrapped in a
``tf.function`` with an input signature (batch and the spec's ``None`` dimensions dynamic) and
converted with ``from_function``. The graph takes and returns channels-first tensors — the
transposes to and from TensorFlow's channels-last layout are inside it — so the file looks the
same whichever framework wrote it. Input and output names are the spec's.

With external data, tf2onnx converts with ``large_model=True`` (weights kept out of the frozen
GraphDef, which protobuf caps at 2 GiB too); its own output for that is a zip, so the weights are
put back into the graph in memory and written by the shared writer as ``<name>.onnx`` +
``<name>.onnx.data``, the layout the torch adapter writes.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from ...export.files import save
from ...export.providers import graphs
from .build import TFModel, keras_name
from .layers import grouped_conv_as_one_op

DEFAULT_OPSET = 17


def export_onnx(model: TFModel, path: str, opset: int | None = None, *, external_data: bool = False) -> dict:
    """Write ``model`` in inference mode to ONNX at ``path`` (its weights in ``<path>.data`` with
    ``external_data``); returns notes for the report."""
    opset = opset or DEFAULT_OPSET
    names = [i.name for i in model.spec.inputs]
    signature = model.input_signature(named=True)

    @tf.function(input_signature=signature)
    def serve(*inputs):
        # a dict of outputs makes tf2onnx name the graph outputs by its keys
        return model.native(dict(zip(names, inputs)), training=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with grouped_conv_as_one_op(), _numpy_product():  # one ONNX Conv with `group` per grouped convolution
            proto, storage = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset,
                                                           large_model=external_data)
    if storage is not None:
        _inline(proto, storage.name_to_tensor_data)
    _name_graph(proto, model)
    save(proto, path, external_data)
    return {"exporter": f"tf2onnx {tf2onnx.__version__} (from_function), tensorflow {tf.__version__}",
            "opset": opset}


@contextlib.contextmanager
def _numpy_product() -> Iterator[None]:
    """``np.product`` while the block runs: tf2onnx 1.17's large-model path calls it, and NumPy 2
    removed it (an alias of ``np.prod``)."""
    missing = "product" not in np.__dict__
    if missing:
        np.product = np.prod
    try:
        yield
    finally:
        if missing:
            del np.product


def _inline(proto: onnx.ModelProto, data: dict[str, bytes]) -> None:
    """Put the tensors tf2onnx's large-model conversion left in ``data`` back into ``proto``."""
    for graph in graphs(proto.graph):
        tensors = [*graph.initializer, *(a.t for node in graph.node for a in node.attribute if a.HasField("t"))]
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                location = next(e.value for e in tensor.external_data if e.key == "location")
                tensor.raw_data = data[location]
                del tensor.external_data[:]
                tensor.data_location = onnx.TensorProto.DEFAULT


def _name_graph(proto: onnx.ModelProto, model: TFModel) -> None:
    """Give the graph inputs the spec's names where TensorFlow needed others (a leading "_"),
    and the dynamic dimensions the names the torch exporter gives them ("batch",
    "<input>_dim<axis>"), so the file does not depend on the framework that wrote it.

    Outputs already carry the spec's names: tf2onnx names them by the output dict's keys.
    """
    names = {keras_name(i.name): i.name for i in model.spec.inputs}
    for value in proto.graph.input:
        value.name = names.get(value.name, value.name)
    for node in proto.graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
    by_name = {i.name: i for i in model.spec.inputs}
    for value in proto.graph.input:
        spec_input = by_name[value.name]
        dims = value.type.tensor_type.shape.dim
        for axis, size in enumerate((None, *spec_input.shape)):
            if size is None:
                dims[axis].dim_param = "batch" if axis == 0 else f"{spec_input.name}_dim{axis}"
    for value in proto.graph.output:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
