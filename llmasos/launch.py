"""``train(nproc=N)``: start N local worker processes, train there, hand the result back.

The job travels as files in a temporary folder, never pickled: the model as an ``.h5`` (weights,
optimizer state, epoch, step and history), each dataset by its file path and options (arrays and
DataFrames as ``.npy``), and ``job.json`` with the other ``train()`` arguments. torch workers are
started by torch's own launcher (``python -m torch.distributed.run --standalone``: its rendezvous
takes a free port); TensorFlow workers get a ``TF_CONFIG`` naming free loopback ports. Each worker
runs :mod:`llmasos.worker` (``python -m llmasos.worker FOLDER``), which reads the job back with
this module's :func:`open_dataset` and :func:`rebuild_callback`; rank 0 saves the trained model as
``result.h5``, from which the calling model takes its weights, optimizer state and history.

Each worker gets ``cores / N`` threads unless ``OMP_NUM_THREADS`` says otherwise. A worker that
fails stops the others; its error is raised here, as the same llmasos error type when it was one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from . import distributed, errors, io
from .errors import TrainingError
from .callbacks import Callback, Checkpoint, EarlyStopping
from .training import History

if TYPE_CHECKING:
    from .data import Dataset
    from .model import Model
    from .optim import Optimizer


def launch(model: "Model", nproc: int, *, dataset: "Dataset", validation: "Dataset | None",
           optimizer: "Optimizer | None", callbacks: Iterable[Callback], **options: Any) -> History:
    """Run ``model.train(dataset, optimizer, validation=validation, callbacks=callbacks, **options)``
    on ``nproc`` local processes and take the trained state back into ``model``."""
    if distributed.context() is not None:
        raise TrainingError("this process already is one rank of a data-parallel run (WORLD_SIZE or TF_CONFIG is "
                            "set): leave nproc out, the launcher that started it decides the processes")
    with tempfile.TemporaryDirectory(prefix="llmasos-nproc-") as tmp:
        folder = Path(tmp)
        model.build(options.get("seed"))
        model.save(folder / "model.h5")
        job = {"framework": model.framework, "nproc": nproc, "callbacks": [_callback_config(c) for c in callbacks],
               "optimizer": None if optimizer is None else optimizer.get_config(),
               "train": _dataset_files(dataset, folder / "train"),
               "validation": None if validation is None else _dataset_files(validation, folder / "validation"),
               "options": options}
        (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")
        code = _run_torch(folder, nproc) if model.framework == "torch" else _run_tf(folder, nproc)
        if code != 0 or not (folder / "result.h5").is_file():
            raise _failure(folder, code)
        model._restore(io.read(folder / "result.h5", max_elements=None))
    return model.history


def worker_environment(nproc: int) -> dict[str, str]:
    """The environment of a local worker: its share of the cores, and gloo on the loopback."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def _run_torch(folder: Path, nproc: int) -> int:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
               f"--nproc-per-node={nproc}", "--max-restarts=0", "-m", "llmasos.worker", str(folder)]
    return subprocess.run(command, env=worker_environment(nproc)).returncode


def _run_tf(folder: Path, nproc: int) -> int:
    ports = free_ports(nproc)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(nproc):
        env = worker_environment(nproc)
        env.pop("WORLD_SIZE", None)
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen([sys.executable, "-m", "llmasos.worker", str(folder)], env=env))
    try:
        codes = [worker.wait() for worker in workers]
    finally:
        for worker in workers:   # one failed: the others would wait for it in a collective
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return next((code for code in codes if code != 0), 0)


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports free now (the OS picks them; another process could take one before use)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _dataset_files(dataset: "Dataset", folder: Path) -> dict:
    """How a worker opens the same rows: the file's path and options, or arrays saved as .npy."""
    origin = getattr(dataset, "origin", None)
    if origin is not None:
        return {"origin": origin}
    if not hasattr(dataset, "feature_shape"):
        raise TrainingError(f"train(nproc=...) takes table and array datasets; {type(dataset).__name__} cannot be "
                            f"sent to worker processes: run the script under torchrun instead")
    folder.mkdir()
    x, y = dataset.arrays()
    np.save(folder / "x.npy", x, allow_pickle=False)
    if y is not None:
        np.save(folder / "y.npy", y, allow_pickle=False)
    return {"arrays": str(folder), "labels": y is not None, "mode": dataset.mode, "dtype": dataset.dtype}


def open_dataset(description: dict | None) -> "Dataset | None":
    """A worker's copy of a dataset :func:`launch` described (``_dataset_files``)."""
    from .data import Dataset

    if description is None:
        return None
    if "origin" in description:
        origin = dict(description["origin"])
        return Dataset(origin.pop("source"), **origin)
    folder = Path(description["arrays"])
    y = np.load(folder / "y.npy") if description["labels"] else None
    return Dataset(np.load(folder / "x.npy"), y, mode=description["mode"], dtype=description["dtype"])


def _callback_config(callback: Callback) -> dict:
    """The callbacks workers can rebuild from plain data; any other is refused (never pickled)."""
    if type(callback) is EarlyStopping:
        return {"kind": "EarlyStopping", "patience": callback.patience, "monitor": callback.monitor,
                "mode": callback.mode, "min_delta": callback.min_delta,
                "restore_best": callback.restore_best}
    if type(callback) is Checkpoint:
        return {"kind": "Checkpoint", "path": os.path.abspath(callback.path), "every": callback.every}
    raise TrainingError(f"train(nproc=...) runs in worker processes, which can rebuild EarlyStopping and Checkpoint "
                        f"callbacks but not {type(callback).__name__}; run the script under torchrun instead "
                        f"(torchrun --nproc-per-node N script.py), where every callback runs on every rank")


def rebuild_callback(config: dict) -> Callback:
    """A worker's copy of a callback :func:`launch` described (``_callback_config``)."""
    kind = config.pop("kind")
    return EarlyStopping(**config) if kind == "EarlyStopping" else Checkpoint(**config)


def _failure(folder: Path, code: int) -> Exception:
    reports = sorted(folder.glob("error-*.json"), key=lambda path: path.stat().st_mtime_ns)
    if not reports:
        return TrainingError(f"the worker processes exited with status {code} and no error report; see their output")
    report = json.loads(reports[0].read_text(encoding="utf-8"))   # the first to fail: the others followed it
    kind = getattr(errors, report["type"], None)
    if isinstance(kind, type) and issubclass(kind, errors.LlmasosError):
        return kind(f"rank {report['rank']}: {report['message']}")
    return TrainingError(f"rank {report['rank']} failed: {report['type']}: {report['message']}\n{report['traceback']}")
