"""Hand a training run to a cluster: a Kubeflow Training Operator ``PyTorchJob`` or ``TFJob``.

``llmasos train config.yaml --kubeflow job.yaml`` writes the job instead of training. Its replicas
each run ``python -m llmasos train CONFIG`` in the container's working folder (``/workspace``: the
config and its data must be there, in the image or on the ``--pvc`` claim mounted there). The
operator tells each replica its rank — ``WORLD_SIZE``/``RANK``/``MASTER_ADDR`` for a PyTorchJob,
``TF_CONFIG`` for a TFJob — and ``llmasos train`` joins that run as it would under torchrun.

>>> job = manifest("torch", "config.yaml", name="digits", replicas=2, image="my/llmasos:1")
>>> job["kind"], job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"]
('PyTorchJob', 1)
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import yaml

from .atomic import staged
from .errors import ConfigError

API_VERSION = "kubeflow.org/v1"
WORKDIR = "/workspace"
DEFAULT_IMAGE = "llmasos:latest"     # an image with llmasos and the framework installed: build your own
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def manifest(framework: str, config: str, *, name: str, replicas: int, image: str = DEFAULT_IMAGE,
             gpus: int = 0, pvc: str | None = None) -> dict:
    """The job as a mapping: ``replicas`` processes (one per pod) training ``config``.

    A PyTorchJob has one ``Master`` (rank 0) and ``replicas - 1`` ``Worker``s, in containers named
    ``pytorch`` as the operator requires; a TFJob has ``replicas`` ``Worker``s (worker 0 leads, as
    MultiWorkerMirroredStrategy expects without a chief) in containers named ``tensorflow``.
    """
    if framework not in ("torch", "tf"):
        raise ConfigError(f"a Kubeflow job trains torch (PyTorchJob) or tf (TFJob), got {framework!r}")
    if not _DNS_LABEL.match(name):
        raise ConfigError(f"a Kubeflow job needs a DNS label as its name (lower-case letters, digits, '-'; at most 63), "
                          f"got {name!r}; pass --job-name")
    if not isinstance(replicas, int) or replicas < 1:
        raise ConfigError(f"replicas must be a positive int, got {replicas!r}")
    container: dict = {"name": "pytorch" if framework == "torch" else "tensorflow", "image": image,
                       "workingDir": WORKDIR, "command": ["python", "-m", "llmasos", "train", config,
                                                          "--framework", framework]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    pod: dict = {"containers": [container]}
    if pvc:
        container["volumeMounts"] = [{"name": "workspace", "mountPath": WORKDIR}]
        pod["volumes"] = [{"name": "workspace", "persistentVolumeClaim": {"claimName": pvc}}]

    def replica(count: int) -> dict:   # a copy each: YAML would otherwise write anchors and aliases
        return {"replicas": count, "restartPolicy": "OnFailure", "template": {"spec": copy.deepcopy(pod)}}

    if framework == "torch":
        specs = {"Master": replica(1)}
        if replicas > 1:
            specs["Worker"] = replica(replicas - 1)
        spec = {"pytorchReplicaSpecs": specs}
    else:
        spec = {"tfReplicaSpecs": {"Worker": replica(replicas)}}
    return {"apiVersion": API_VERSION, "kind": "PyTorchJob" if framework == "torch" else "TFJob",
            "metadata": {"name": name}, "spec": spec}


def job_name(text: str) -> str:
    """A DNS label made from ``text`` (a model or file name): lower case, other characters as '-'."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or "llmasos-train"


def write_manifest(path: str | os.PathLike, framework: str, config: str, **options) -> Path:
    """Write :func:`manifest` as YAML at ``path`` (atomically) and return the path."""
    path = Path(path)
    with staged(path) as tmp:
        tmp.write_text(yaml.safe_dump(manifest(framework, config, **options), sort_keys=False), encoding="utf-8")
    return path
