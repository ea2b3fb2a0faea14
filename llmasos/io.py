"""The llmasos ``.h5`` file: spec, neutral weights, optimizer state and metadata, no code.

Layout (HDF5 via h5py)::

    /                   attrs: format="llmasos", format_version, llmasos_version, framework,
                               framework_version, created, spec (JSON), metadata (JSON)
    /weights/<layer>/<weight>          float32 datasets in the neutral layout
    /training           attrs: optimizer (JSON config), loss, epoch, step, seed, history (JSON)
    /training/slots/<slot>/<layer>/<weight>   optimizer state, neutral layout

Nothing is pickled, so opening a stranger's file cannot run code. Writes go to a temporary file
in the same folder and are renamed over the target only when complete.

Nor can a stranger's file exhaust memory: :func:`read` checks the spec's sizes against a bound
(:data:`MAX_ELEMENTS`) and every stored weight's shape against the spec before reading any data,
and refuses weights holding NaN or infinity unless asked not to.

>>> import tempfile, os, numpy as np
>>> from llmasos.spec import ModelSpec
>>> spec = ModelSpec.sequential((2,)).add("Dense", 1)
>>> path = os.path.join(tempfile.mkdtemp(), "m.h5")
>>> write(path, ModelFile(spec, {"dense": {"kernel": np.ones((2, 1), "f4"), "bias": np.zeros(1, "f4")}}))
>>> read(path).weights["dense"]["kernel"].tolist()
[[1.0], [1.0]]
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .adapters.base import check_weights
from .atomic import staged
from .errors import ModelFileError, SpecError, UnknownLayerError
from .spec import ModelSpec

FORMAT = "llmasos"
FORMAT_VERSION = 1

# The largest size a file's spec may imply, in elements: its parameters in total, or one layer's
# output for one example. 2**34 float32 are 64 GiB, beyond any model llmasos builds on one machine,
# while a spec asking for more (a Dense of 10**10 units) would exhaust memory while being built.
MAX_ELEMENTS = 2 ** 34


@dataclass
class ModelFile:
    """Everything an .h5 file holds, as plain data."""

    spec: ModelSpec
    weights: dict[str, dict[str, np.ndarray]]
    framework: str = ""
    framework_version: str = ""
    metadata: dict = field(default_factory=dict)
    training: dict | None = None        # {"optimizer", "loss", "epoch", "step", "seed", "history", "state"}
    llmasos_version: str = ""


def _write_tree(group, tree: dict[str, dict[str, np.ndarray]]) -> None:
    # Spec names never hold "/", so they are valid HDF5 group names as they are.
    for layer, weights in tree.items():
        sub = group.create_group(layer)
        for name, value in weights.items():
            sub.create_dataset(name, data=np.asarray(value, dtype=np.float32))


def _datasets(group, where: str) -> dict:
    """``{layer: {weight: h5py.Dataset}}`` of a weights group, its data not yet read."""
    import h5py

    tree: dict[str, dict] = {}
    for layer, sub in group.items():
        if not isinstance(sub, h5py.Group):
            raise ModelFileError(f"{where}/{layer} should be a group of weights")
        for name, ds in sub.items():
            if not isinstance(ds, h5py.Dataset) or ds.dtype.kind != "f":
                raise ModelFileError(f"{where}/{layer}/{name} should be an array of floats")
            tree.setdefault(layer, {})[name] = ds
    return tree


def _check_sizes(spec: ModelSpec, max_elements: int | None) -> None:
    """Refuse a spec implying more than ``max_elements`` parameters, or as many values in one
    layer's output for one example (dynamic dimensions count as 1)."""
    if max_elements is None:
        return
    parameters = spec.parameter_count()
    largest, node = max((math.prod(d or 1 for d in shape), name) for name, shape in spec.shapes().items())
    too_big = [f"{parameters:,} parameters"] if parameters > max_elements else []
    too_big += [f"{largest:,} values in {node!r} per example"] if largest > max_elements else []
    if too_big:
        raise ModelFileError(f"its spec implies {' and '.join(too_big)}, over the limit of {max_elements:,} "
                             f"elements; pass max_elements=None to read it anyway")


def _check_stored(spec: ModelSpec, weights: dict, slots: dict) -> None:
    """Stored shapes against the spec, before any data is read: weights exactly, optimizer
    slots as a subset (frozen layers have none)."""
    check_weights(spec, weights)
    expected = spec.weight_shapes()
    for slot, tree in slots.items():
        for layer, ws in tree.items():
            for name, ds in ws.items():
                if ds.shape != expected.get(layer, {}).get(name):
                    raise ModelFileError(f"optimizer slot {slot}/{layer}/{name} has shape {ds.shape}, "
                                         f"the model's weight {expected.get(layer, {}).get(name)}")


def _read_tree(tree: dict, where: str, allow_nonfinite: bool) -> dict[str, dict[str, np.ndarray]]:
    out = {layer: {name: np.asarray(ds[()]) for name, ds in ws.items()} for layer, ws in tree.items()}
    if not allow_nonfinite:
        bad = [f"{layer}/{name}" for layer, ws in out.items() for name, a in ws.items() if not np.isfinite(a).all()]
        if bad:
            raise ModelFileError(f"{where} {', '.join(bad)} hold NaN or infinity; such a model predicts "
                                 f"NaN. Pass allow_nonfinite=True to load it anyway")
    return out


def write(path: str | os.PathLike, model_file: ModelFile) -> None:
    """Write atomically: a crash mid-write leaves any previous file at ``path`` untouched."""
    import h5py

    from . import __version__

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ModelFileError(f"cannot save to {path!r}: the folder {folder!r} does not exist")
    # the helper gives the file the ordinary mode (not mkstemp's 0600) and fsyncs it before the
    # rename; it holds a lock on the temporary file, so HDF5 must not try to take its own
    with staged(path) as tmp:
        with h5py.File(tmp, "w", locking=False) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["llmasos_version"] = __version__
            f.attrs["framework"] = str(model_file.framework)
            f.attrs["framework_version"] = str(model_file.framework_version)
            f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            f.attrs["spec"] = model_file.spec.to_json()
            f.attrs["metadata"] = json.dumps(model_file.metadata)
            _write_tree(f.create_group("weights"), model_file.weights)
            if model_file.training is not None:
                training = dict(model_file.training)
                state = training.pop("state", None) or {}
                group = f.create_group("training")
                group.attrs["info"] = json.dumps(training)
                group.attrs["optimizer_step"] = int(state.get("step", 0))
                slots = group.create_group("slots")
                for slot, tree in state.get("slots", {}).items():
                    _write_tree(slots.create_group(slot), tree)


def read(path: str | os.PathLike, *, allow_nonfinite: bool = False,
         max_elements: int | None = MAX_ELEMENTS) -> ModelFile:
    """Read and validate a file, raising :class:`ModelFileError` that names what is wrong.

    Before any weight is read, the spec's sizes must be within ``max_elements`` (None: no
    bound) and every stored weight must have the shape the spec gives it. Weights (and optimizer
    state) holding NaN or infinity are refused unless ``allow_nonfinite``.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"no model file at {path!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ModelFileError(f"{path!r} is not a readable HDF5 file (truncated or another format?): {err}") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            found = ", ".join(sorted(f.keys())) or "nothing"
            raise ModelFileError(f"{path!r} is an HDF5 file but not an llmasos model (no format='llmasos' "
                                 f"attribute; it holds: {found}). Keras .h5 files are not llmasos files.")
        version = int(f.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise ModelFileError(f"{path!r} uses llmasos file format {version}; this llmasos reads up to "
                                 f"{FORMAT_VERSION}: upgrade llmasos")
        try:
            spec = ModelSpec.from_json(str(f.attrs["spec"]))
            _check_sizes(spec, max_elements)
            stored = _datasets(f["weights"], "weights")
            slots = {slot: _datasets(tree, f"training/slots/{slot}")
                     for slot, tree in f["training"]["slots"].items()} if "training" in f else {}
            _check_stored(spec, stored, slots)
            weights = _read_tree(stored, "weights", allow_nonfinite)
            training = None
            if "training" in f:
                group = f["training"]
                training = json.loads(group.attrs["info"])
                training["state"] = {"step": int(group.attrs["optimizer_step"]),
                                     "slots": {slot: _read_tree(tree, f"optimizer slots {slot}", allow_nonfinite)
                                               for slot, tree in slots.items()}}
            model_file = ModelFile(
                spec=spec, weights=weights, framework=str(f.attrs.get("framework", "")),
                framework_version=str(f.attrs.get("framework_version", "")),
                metadata=json.loads(f.attrs.get("metadata", "{}")), training=training,
                llmasos_version=str(f.attrs.get("llmasos_version", "")),
            )
        except ModelFileError as err:
            raise ModelFileError(f"{path!r}: {err}") from None
        except UnknownLayerError as err:  # a sound file; this process lacks a custom layer's code
            raise ModelFileError(f"{path!r} uses a layer this process does not know: {err}") from None
        except SpecError as err:
            raise ModelFileError(f"{path!r} holds an invalid model spec or weights that do not fit it: {err}") from None
        except (KeyError, OSError, ValueError, json.JSONDecodeError) as err:
            raise ModelFileError(f"{path!r} is damaged or incomplete: {err}") from None
    return model_file


def read_info(path: str | os.PathLike) -> dict:
    """A summary for ``llmasos info``: versions, spec summary, parameters, training state."""
    model_file = read(path)
    info = {
        "path": os.fspath(path),
        "format": f"{FORMAT} {FORMAT_VERSION}",
        "llmasos_version": model_file.llmasos_version,
        "framework": model_file.framework,
        "framework_version": model_file.framework_version,
        "parameters": model_file.spec.parameter_count(),
        "inputs": [i.to_dict() for i in model_file.spec.inputs],
        "outputs": list(model_file.spec.outputs),
        "summary": model_file.spec.summary(),
        "metadata": model_file.metadata,
    }
    if model_file.training:
        info["training"] = {k: v for k, v in model_file.training.items() if k not in ("state", "history")}
        info["training"]["epochs_recorded"] = len(model_file.training.get("history") or [])
    return info
