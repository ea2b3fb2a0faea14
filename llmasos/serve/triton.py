"""Hand an ONNX file to Triton or KServe: a Triton model repository and an InferenceService manifest.

Both speak the same Open Inference Protocol as :class:`~llmasos.serve.Deployer`, so clients do not
change when a team moves to them; the repository layout is the one the Deployer serves too.

Usage::

    repo = write_triton_repo("model.onnx", "repo", "digits", max_batch=32)
    print((repo / "config.pbtxt").read_text())
    name: "digits"
    platform: "onnxruntime_onnx"
    max_batch_size: 32
    ...
    write_kserve_manifest("digits.yaml", "digits", "s3://bucket/repo")
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from ..atomic import file_mode, folder_mode, staged
from ..errors import ServeError
from ..export.providers import check_file, external_files
from .tensors import TensorSpec, specs_from_model


def _tensor(spec: TensorSpec, batched: bool) -> str:
    dims = spec.shape[1:] if batched else spec.shape
    kind = "STRING" if spec.datatype == "BYTES" else spec.datatype
    return (f'  {{\n    name: "{spec.name}"\n    data_type: TYPE_{kind}\n'
            f'    dims: [ {", ".join(map(str, dims))} ]\n  }}')


def triton_config(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], max_batch: int,
                  batch_timeout_ms: float = 5.0) -> str:
    """``config.pbtxt`` text; with ``max_batch > 0`` the first dimension is Triton's batch."""
    batched = max_batch > 0
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch}",
             "input [\n" + ",\n".join(_tensor(s, batched) for s in inputs) + "\n]",
             "output [\n" + ",\n".join(_tensor(s, batched) for s in outputs) + "\n]"]
    if batched:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {round(batch_timeout_ms * 1000)}\n}}")
    return "\n".join(lines) + "\n"


def write_triton_repo(onnx_path: str | os.PathLike, repo_dir: str | os.PathLike, name: str | None = None,
                      *, version: int = 1, max_batch: int | None = None,
                      batch_timeout_ms: float = 5.0) -> Path:
    """Write ``repo_dir/<name>/config.pbtxt`` and ``<version>/model.onnx``; returns the model folder.

    ``max_batch=None`` picks 32 when every input and output has a dynamic first dimension, else 0
    (no batching). A model with external data takes Triton's folder form
    ``<version>/model.onnx/model.onnx``. The version folder is built beside its final place and
    renamed in, so a Triton (or Deployer) polling the repository never sees it half-written.

    ```python
    folder = write_triton_repo("model.onnx", "repo", name="digits", max_batch=32)   # repo/digits/1/model.onnx
    Deployer("repo").start()      # or tritonserver --model-repository=repo
    ```
    """
    source = Path(onnx_path)
    model = check_file(source)
    name = name or source.stem
    if not name or "/" in name or name.startswith("."):
        raise ServeError(f"model name {name!r} cannot be a folder name in a Triton repository")
    inputs, outputs = specs_from_model(model)
    batchable = all(spec.shape[:1] == (-1,) for spec in inputs + outputs)
    if max_batch is None:
        max_batch = 32 if batchable else 0
    if max_batch > 0 and not batchable:
        raise ServeError(f"max_batch={max_batch} needs a dynamic first dimension on every input and "
                         f"output of {source}; use max_batch=0")
    model_dir = Path(repo_dir) / name
    final = model_dir / str(version)
    if final.exists():
        raise ServeError(f"{final} already exists; write a new version number")
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=model_dir))
    try:
        staging.chmod(folder_mode())  # mkdtemp's 0700 would hide the version from a server run as another user
        extra = external_files(model, source.parent)
        target = staging / "model.onnx" if extra else staging
        target.mkdir(exist_ok=True)
        for file in [source, *extra]:
            copy = target / ("model.onnx" if file == source else file.name)
            shutil.copyfile(file, copy)
            copy.chmod(file_mode())  # the ordinary mode, whatever the source's
        config = staging / "config.pbtxt"
        config.write_text(triton_config(name, inputs, outputs, max_batch, batch_timeout_ms))
        config.replace(model_dir / "config.pbtxt")
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_dir


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def write_kserve_manifest(path: str | os.PathLike, name: str, storage_uri: str, *,
                          runtime: str = "kserve-tritonserver", gpus: int = 0,
                          min_replicas: int = 1) -> Path:
    """Write a KServe ``InferenceService`` serving the Triton repository at ``storage_uri``.

    ``storage_uri`` is where the folder :func:`write_triton_repo` wrote was uploaded (``s3://``,
    ``gs://``, ``pvc://``...). The service speaks the v2 protocol, so clients need no change.

    ```python
    write_kserve_manifest("isvc.yaml", name="digits", storage_uri="s3://bucket/repo")
    # kubectl apply -f isvc.yaml
    ```
    """
    if not _DNS_LABEL.match(name):
        raise ServeError(f"KServe needs a DNS label as the service name (lower-case letters, digits, "
                         f"'-'; at most 63), got {name!r}")
    model: dict = {"modelFormat": {"name": "onnx"}, "protocolVersion": "v2", "runtime": runtime,
                   "storageUri": storage_uri}
    if gpus:
        model["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    manifest = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": name},
                "spec": {"predictor": {"minReplicas": min_replicas, "model": model}}}
    path = Path(path)
    with staged(path) as tmp:
        tmp.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path
