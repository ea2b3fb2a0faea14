"""The llmasos ``.h5`` file: spec, neutral weights, optimizer state and metadata, no code.

Layout (HDF5 via h5py)::

    /                   attrs: format="llmasos", format_version, llmasos_version, framework,
                               framework_version, created, spec (JSON), metadata (JSON)
    /weights/<layer>/<weight>          float32 datasets in the neutral layout
    /training           attrs: optimizer (JSON config), loss, epoch, step, seed, history (JSON)
    /training/slots/<slot>/<layer>/<weight>   optimizer state, neutral layout

Nothing is pickled, so opening a stranger's file cannot run code. Writes go to a temporary file
in the same folder and are renamed over the target only when complete.

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
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .atomic import staged
from .errors import ModelFileError, SpecError
from .spec import ModelSpec

FORMAT = "llmasos"
FORMAT_VERSION = 1


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


def _read_tree(group) -> dict[str, dict[str, np.ndarray]]:
    return {layer: {name: np.asarray(ds[()]) for name, ds in sub.items()}
            for layer, sub in group.items()}


def write(path: str | os.PathLike, model_file: ModelFile) -> None:
    """Write atomically: a crash mid-write leaves any previous file at ``path`` untouched."""
    import h5py

    from . import __version__

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ModelFileError(f"cannot save to {path!r}: the folder {folder!r} does not exist")
    # the helper gives the file the ordinary mode (not mkstemp's 0600) and fsyncs it before the rename
    with staged(path, prefix=".llmasos-", suffix=".h5.tmp") as tmp:
        with h5py.File(tmp, "w") as f:
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


def read(path: str | os.PathLike) -> ModelFile:
    """Read and validate a file, raising :class:`ModelFileError` that names what is wrong."""
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
            weights = _read_tree(f["weights"])
            training = None
            if "training" in f:
                group = f["training"]
                training = json.loads(group.attrs["info"])
                training["state"] = {"step": int(group.attrs["optimizer_step"]),
                                     "slots": {slot: _read_tree(tree) for slot, tree in group["slots"].items()}}
            model_file = ModelFile(
                spec=spec, weights=weights, framework=str(f.attrs.get("framework", "")),
                framework_version=str(f.attrs.get("framework_version", "")),
                metadata=json.loads(f.attrs.get("metadata", "{}")), training=training,
                llmasos_version=str(f.attrs.get("llmasos_version", "")),
            )
        except SpecError as err:
            raise ModelFileError(f"{path!r} holds an invalid model spec: {err}") from None
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
