"""Data-parallel training: which rank this process is, its share of each global batch, and who writes.

A process is one rank of a data-parallel run when a launcher says so in its environment:
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (torchrun, SLURM through torchrun, a Kubeflow PyTorchJob,
or ``train(nproc=N)``, which starts torch's own launcher: :mod:`llmasos.launch`) or ``TF_CONFIG``
(a Kubeflow TFJob, or ``nproc=N`` with TensorFlow). Then :meth:`Model.train` trains the model's own
framework data-parallel — torch's ``DistributedDataParallel``, TensorFlow's
``MultiWorkerMirroredStrategy`` (the adapters' ``distributed`` modules) — and everything else stays
the single-process code:

* ``batch_size`` is the global batch. Every rank walks the same shuffled order (the same seed and
  epoch) and steps on its slice of each global batch (:func:`shard`); the gradients are combined
  weighted by each slice's share of the batch, so the update is the one the whole batch gives in
  one process — ``nproc`` changes the speed, not the result. A short last batch splits unevenly
  (a rank with no rows takes part with weight 0), so nothing hangs and nothing counts twice.
* Each step gathers the slices' loss sums and outputs, so the training loop sees the global batch's
  numbers: metrics, the learning-rate schedule, early stopping and the history are the same on every
  rank and the same as in one process.
* Only the main rank (rank 0) draws progress and writes files (:func:`writer`: checkpoints, the
  saved ``.h5``), the others wait for it at a barrier.

>>> shard(10, 0, 3), shard(10, 2, 3), shard(1, 1, 2)
(slice(0, 4, None), slice(7, 10, None), slice(1, 1, None))
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol

import numpy as np

from .adapters.base import Trainer
from .errors import TrainingError

if TYPE_CHECKING:
    from .model import Model

TIMEOUT_ENV = "LLMASOS_DIST_TIMEOUT"   # seconds a collective may wait before the run fails (default 1800)
DEFAULT_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Rank:
    """This process's place in a data-parallel run; ``launcher`` is ``"torch"`` (``WORLD_SIZE``)
    or ``"tf"`` (``TF_CONFIG``)."""

    rank: int
    world: int
    local_rank: int
    launcher: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context() -> Rank | None:
    """The rank this process is, from its environment; None in a single-process run.

    >>> os.environ.pop("WORLD_SIZE", None), os.environ.pop("TF_CONFIG", None); context() is None
    (None, None)
    True
    """
    world = os.environ.get("WORLD_SIZE")
    if world is not None and int(world) > 1:
        return Rank(int(os.environ.get("RANK", "0")), int(world), int(os.environ.get("LOCAL_RANK", "0")), "torch")
    config = os.environ.get("TF_CONFIG")
    if config:
        cluster, task = _tf_cluster(config)
        tasks = [(kind, index) for kind in ("chief", "worker") for index in range(len(cluster.get(kind, ())))]
        if len(tasks) > 1 and (task.get("type"), task.get("index", 0)) in tasks:
            return Rank(tasks.index((task["type"], task.get("index", 0))), len(tasks), 0, "tf")
    return None


def _tf_cluster(config: str) -> tuple[dict, dict]:
    try:
        parsed = json.loads(config)
        return parsed.get("cluster", {}), parsed.get("task", {})
    except (ValueError, AttributeError):
        raise TrainingError(f"TF_CONFIG is not the JSON TensorFlow expects ({{'cluster': {{'worker': [...]}}, "
                            f"'task': {{'type': 'worker', 'index': 0}}}}): {config[:200]!r}") from None


def is_main() -> bool:
    """True in a single-process run and on rank 0: the process that prints and writes files."""
    rank = context()
    return rank is None or rank.is_main


def shard(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s rows of a global batch of ``n`` rows: contiguous, the first ``n % world``
    ranks one row longer, empty when ``n < world`` leaves none."""
    size, extra = divmod(n, world)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (rank < extra))


def timeout() -> float:
    """Seconds a collective waits for the other ranks before the run fails instead of hanging."""
    return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))


class Group(Protocol):
    """What an adapter's ``distributed`` module gives for one process group (see
    :func:`llmasos.adapters.torch.distributed.join`)."""

    rank: Rank

    def attach(self, trainer: Trainer) -> None:
        """Make ``trainer``'s steps combine gradients across ranks (weights taken from rank 0)."""

    def set_share(self, share: float) -> None:
        """This rank's share of the next step's global batch: its gradient's weight in the sum."""

    def gather(self, payload: np.ndarray) -> list[np.ndarray]:
        """Every rank's uint8 ``payload`` (equal sizes), in rank order."""

    def expect(self, sizes: list[int]) -> None:
        """The next train step's rows per rank: a group may send the outputs with the gradients."""

    def fused(self, trainer: Trainer, target: np.ndarray, weights: np.ndarray | None) -> tuple[float, np.ndarray] | None:
        """The last train step's global loss sum and outputs when they travelled with its gradients
        (one collective a step instead of two), else None."""

    def barrier(self) -> None: ...


_groups: dict[str, Group] = {}


def group(framework: str) -> Group:
    """Join this process's run in ``framework`` (once per process) and return its group."""
    rank = context()
    if rank is None:
        raise TrainingError("not a data-parallel process: set WORLD_SIZE (torchrun) or TF_CONFIG, or pass nproc=")
    if framework not in _groups:
        if rank.launcher != framework:
            need = "torchrun or WORLD_SIZE/RANK" if framework == "torch" else "TF_CONFIG"
            raise TrainingError(f"this process was started for {rank.launcher!r} data-parallel training, but the model "
                                f"is {framework!r}, which needs {need}; or pass nproc= and let llmasos start the workers")
        from .adapters import FRAMEWORKS

        adapter = importlib.import_module(FRAMEWORKS[framework][0] + ".distributed")
        _groups[framework] = adapter.join(rank, timeout())
    return _groups[framework]


def join(framework: str) -> Group | None:
    """Join this process's run in ``framework`` when it is one rank of a run, else None. Call it
    before the framework runs anything: TensorFlow configures its collectives at its first op."""
    return None if context() is None else group(framework)


def joined() -> Group | None:
    """The group this process has joined, if any."""
    return next(iter(_groups.values()), None)


@contextlib.contextmanager
def writer() -> Iterator[bool]:
    """``with writer() as writes: if writes: write(...)`` — True on the one process that writes;
    in a data-parallel run every rank waits for it at a barrier afterwards, so nobody reads a
    half-written file and nobody leaves before it is complete. Every rank must enter it."""
    rank, joined_group = context(), joined()
    yield rank is None or rank.is_main
    if joined_group is not None:
        joined_group.barrier()


class ShardedTrainer(Trainer):
    """A trainer stepping on this rank's slice of each global batch and answering for the whole.

    Gradients are combined weighted by each rank's share of the batch (the adapter's group does
    it), so a step's update is the global batch's mean gradient; the loss sums and outputs of
    every slice are gathered, so ``train_step``/``eval_step`` return what one process would.
    """

    def __init__(self, trainer: Trainer, group: Group) -> None:
        if getattr(trainer, "accumulate", 1) > 1:
            raise TrainingError("accumulate= does not go with data-parallel training yet: raise batch_size instead "
                                "(it is the global batch; each of N processes holds batch_size / N rows)")
        self.trainer, self.group = trainer, group
        self.rank, self.world = group.rank.rank, group.rank.world
        group.attach(trainer)

    def _slice(self, inputs: list[np.ndarray], target: np.ndarray,
               weights: np.ndarray | None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None, int]:
        rows = shard(len(target), self.rank, self.world)
        count = rows.stop - rows.start
        if count == 0:    # no rows for this rank: step on one row that weighs nothing, so collectives match
            rows = slice(0, 1)
        return [x[rows] for x in inputs], target[rows], None if weights is None else weights[rows], count

    def _whole(self, loss_sum: float, outputs: np.ndarray, count: int, n: int) -> tuple[float, np.ndarray]:
        """The global batch's loss sum and outputs from every rank's slice."""
        outputs = np.ascontiguousarray(outputs)
        row_shape, dtype = outputs.shape[1:], outputs.dtype
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        most = shard(n, 0, self.world)
        payload = np.zeros(8 + (most.stop - most.start) * row_bytes, dtype=np.uint8)
        payload[:8] = np.array([loss_sum], dtype=np.float64).view(np.uint8)
        payload[8:8 + count * row_bytes] = outputs[:count].reshape(-1).view(np.uint8)
        total, parts = 0.0, []
        for rank, received in enumerate(self.group.gather(payload)):
            rows = shard(n, rank, self.world)
            got = rows.stop - rows.start
            if got:
                total += float(received[:8].view(np.float64)[0])
                parts.append(received[8:8 + got * row_bytes].view(dtype).reshape(got, *row_shape))
        return total, np.concatenate(parts)

    def train_step(self, inputs, target, lr, weights=None):
        local_inputs, local_target, local_weights, count = self._slice(inputs, target, weights)
        n = len(target)
        self.group.set_share(count / n)
        self.group.expect([len(range(n)[shard(n, rank, self.world)]) for rank in range(self.world)])
        loss_sum, outputs = self.trainer.train_step(local_inputs, local_target, lr, **_weighed(local_weights))
        fused = self.group.fused(self.trainer, target, weights)
        return fused if fused is not None else self._whole(loss_sum if count else 0.0, outputs, count, n)

    def eval_step(self, inputs, target, weights=None):
        local_inputs, local_target, local_weights, count = self._slice(inputs, target, weights)
        loss_sum, outputs = self.trainer.eval_step(local_inputs, local_target, **_weighed(local_weights))
        return self._whole(loss_sum if count else 0.0, outputs, count, len(target))

    @property
    def pending(self) -> int:
        return getattr(self.trainer, "pending", 0)

    def flush(self) -> bool:
        return self.trainer.flush()

    def reseed(self, seed):
        # each rank draws its own dropout masks, as DDP's ranks do
        self.trainer.reseed(None if seed is None else (seed + 7_919 * self.rank) % (2**31 - 1))

    def get_state(self) -> dict:
        return self.trainer.get_state()

    def set_state(self, state: dict) -> None:
        self.trainer.set_state(state)


def _weighed(weights: np.ndarray | None) -> dict:
    """Sample weights as a step's keyword, only when there are some."""
    return {} if weights is None else {"weights": weights}


def shard_trainer(model: "Model", trainer: Trainer) -> Trainer:
    """``trainer`` itself in a single process; in a data-parallel run a :class:`ShardedTrainer`
    around it, in the group of the model's framework."""
    if context() is None:
        return trainer
    return ShardedTrainer(trainer, group(model.framework))
