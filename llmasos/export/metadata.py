"""What an exported file says about itself, in ONNX's ``metadata_props``, and reading it back.

Keys (values are strings; the structured ones are JSON):

===================  ===========================================================================
llmasos_version      the llmasos that wrote the file
framework            the source framework ("torch" or "tf") and ``framework_version`` its version
exporter             the exporter that made the graph (torch.onnx dynamo, tf2onnx ...)
name                 the model's name
spec                 the neutral spec (JSON): rebuild the model with ``ModelSpec.from_json``
inputs, outputs      ``[{"name", "dtype", "shape", "layout"}]``; shapes start with "batch"
labels               class names, from ``model.metadata["labels"]``, when given
frozen               the layers the model keeps frozen (``trainable`` False in the spec), when any
preprocessing        e.g. ``{"scale": 0.0625}`` or ``{"mean": [...], "std": [...]}`` or a tokenizer,
                     from ``model.metadata["preprocessing"]``, when given
optimization         what was done after export ("int8 dynamic", "fp16", ...), in order
robustness           an adversarial robustness report (:class:`llmasos.robust.Report` as a dict),
                     from ``model.metadata["robustness"]`` or ``Report.attach("model.onnx")``
llmasos.tokenizer    a text model's ``tokenizer.json`` text, so the file alone can take strings
llmasos.text_inputs  which inputs the tokenizer fills and how (JSON), e.g. ``{"inputs": ["input_ids",
                     "attention_mask", "token_type_ids"], "pad_id": 0, "max_length": 512,
                     "truncation": true}`` (padding is to the longest text of a batch)
llmasos.ctc          a CTC speech model's vocabulary and framing (JSON), so a server can stream
                     audio to it: ``{"vocabulary", "pad_token", "word_delimiter_token",
                     "frame_stride", "receptive_field", "normalize", "sampling_rate"}``
llmasos.detection    a detector's image size, mean/std and which outputs are its class logits and boxes
                     (JSON), so a server can detect on image files: ``{"task": "object-detection",
                     "size": [H, W], "mean", "std", "resample", "logits", "boxes"}``
llmasos.faces        a face embedder's face size and standardisation (JSON), so a server can embed
                     image files: ``{"task": "face-embedding", "size": [H, W], "mean": 127.5,
                     "scale": 128.0, "threshold"}`` (pixels -> (pixels - mean) / scale)
llmasos.int8         an int8 file's format and the CPU it is for (JSON): ``{"mode", "target",
                     "reduce_range", "weight_type", "activation_type", "per_channel", "detected_on"}``
===================  ===========================================================================

Usage::

    info("model.onnx")["framework"]
    'torch'
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import TYPE_CHECKING, Any

import onnx

from .. import __version__
from ..adapters import get_backend
from ..spec import ModelSpec
from .files import file_size
from .providers import check_file

if TYPE_CHECKING:
    from ..model import Model
    from .config import OnnxConfig

_INDEX_TYPES = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)   # shapes and indices, not weights
TOKENIZER, TEXT_INPUTS, INT8, CTC = "llmasos.tokenizer", "llmasos.text_inputs", "llmasos.int8", "llmasos.ctc"
DETECTION = "llmasos.detection"
FACES = "llmasos.faces"
JSON_KEYS = ("spec", "inputs", "outputs", "labels", "frozen", "preprocessing", "optimization", "robustness",
             TEXT_INPUTS, INT8, CTC, DETECTION, FACES)
FROM_MODEL = ("labels", "preprocessing", "robustness")    # keys of ``model.metadata`` that travel into the file


def op_counts(proto: onnx.ModelProto) -> dict[str, int]:
    """Op types in the main graph, most frequent first; ops outside the standard domain carry it."""
    counts = Counter(f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                     for n in proto.graph.node)
    return dict(counts.most_common())


def export_metadata(model: "Model", config: "OnnxConfig", exporter: str) -> dict[str, Any]:
    """The metadata of a freshly exported model."""
    props = {"llmasos_version": __version__, "framework": model.framework,
             "framework_version": get_backend(model.framework).version(), "exporter": exporter,
             "name": model.name, "spec": model.spec.to_dict(),
             "inputs": [t.to_dict() for t in config.inputs], "outputs": [t.to_dict() for t in config.outputs]}
    props.update({key: model.metadata[key] for key in FROM_MODEL if model.metadata.get(key) is not None})
    if model.spec.frozen():
        props["frozen"] = model.spec.frozen()
    # a zoo text model (duck-typed: export does not import the zoo) carries its tokenizer along
    text_inputs = getattr(model, "text_inputs", lambda: None)()
    if text_inputs is not None:
        props[TOKENIZER], props[TEXT_INPUTS] = model.tokenizer.to_str(), text_inputs
    ctc = getattr(model, "ctc_settings", lambda: None)()   # a zoo speech model: a server can stream to it
    if ctc is not None:
        props[CTC] = ctc
    detection = getattr(model, "detection_settings", lambda: None)()   # a zoo detector: a server takes images
    if detection is not None:
        props[DETECTION] = detection
    faces = getattr(model, "face_settings", lambda: None)()   # a zoo face embedder: a server takes images
    if faces is not None:
        props[FACES] = faces
    return props


def write_metadata(proto: onnx.ModelProto, props: dict[str, Any]) -> None:
    """Set ``props`` in ``proto.metadata_props``, replacing keys already there."""
    current = read_metadata(proto)
    current.update(props)
    del proto.metadata_props[:]
    for key, value in current.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value) if key in JSON_KEYS else str(value)


def read_metadata(proto: onnx.ModelProto) -> dict[str, Any]:
    """``metadata_props`` as a dict, JSON values decoded (a value that is not JSON stays text)."""
    out: dict[str, Any] = {}
    for entry in proto.metadata_props:
        out[entry.key] = entry.value
        if entry.key in JSON_KEYS:
            try:
                out[entry.key] = json.loads(entry.value)
            except json.JSONDecodeError:
                pass
    return out


def tensor_infos(values: Any, layouts: dict[str, str]) -> list[dict]:
    """``[{"name", "dtype", "shape"(, "layout")}]`` for graph inputs or outputs."""
    out = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in tensor.shape.dim]
        entry = {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                 "shape": shape}
        if value.name in layouts:
            entry["layout"] = layouts[value.name]
        out.append(entry)
    return out


def info(path: str | os.PathLike) -> dict[str, Any]:
    """Everything a receiving team needs to know about an ONNX file, as a dict.

    ```python
    details = info("model.onnx")
    details["inputs"], details["framework"], details["ops"]
    # ([{'name': 'input', 'dtype': 'float32', 'shape': ['batch_size', 64], 'layout': 'NC'}], 'torch', {'Gemm': 2, ...})
    ```

    Files from elsewhere work too; the llmasos keys are then absent.
    """
    proto = check_file(path)
    meta = read_metadata(proto)
    layouts = {t["name"]: t.get("layout") for key in ("inputs", "outputs") for t in meta.get(key) or []
               if isinstance(t, dict) and t.get("layout")}
    initializers = {t.name for t in proto.graph.initializer}
    details: dict[str, Any] = {
        "file": os.fspath(path),
        "size_bytes": file_size(path),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "ir_version": proto.ir_version,
        "opset": {(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        "inputs": tensor_infos([v for v in proto.graph.input if v.name not in initializers], layouts),
        "outputs": tensor_infos(proto.graph.output, layouts),
        "weights": sum(_elements(t) for t in proto.graph.initializer if t.data_type not in _INDEX_TYPES),
        "ops": op_counts(proto),
    }
    details.update({k: v for k, v in meta.items() if k not in ("spec", "inputs", "outputs", TOKENIZER)})
    if TOKENIZER in meta:  # megabytes of vocabulary: say what it is instead
        details[TOKENIZER] = _tokenizer_summary(meta[TOKENIZER])
    if isinstance(meta.get("spec"), dict):
        details["summary"] = ModelSpec.from_dict(meta["spec"]).summary()
    return details


def _tokenizer_summary(text: str) -> str:
    try:
        model = json.loads(text).get("model") or {}
    except (json.JSONDecodeError, AttributeError):
        return f"not tokenizer.json ({len(text):,} characters)"
    return f"{model.get('type', 'unknown')} tokenizer, vocab size {len(model.get('vocab') or ()):,}"


def _elements(tensor: Any) -> int:
    count = 1
    for d in tensor.dims:
        count *= d
    return count
