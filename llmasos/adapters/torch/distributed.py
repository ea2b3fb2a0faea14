"""torch.distributed for llmasos' data-parallel runs: the process group and DistributedDataParallel.

:func:`join` enters the group the launcher's environment describes (gloo for CPU tensors, NCCL for
CUDA tensors when there is a GPU) with a timeout, so a rank that never arrives fails the run
instead of hanging it. :meth:`TorchGroup.attach` wraps a trainer's module in DDP, which broadcasts
rank 0's weights when it wraps and all-reduces gradients in buckets during the backward pass. Its
communication hook sums each rank's gradient weighted by that rank's share of the global batch
(DDP's default averages equally), so a short last batch split unevenly still gives the global
batch's mean gradient.
"""

from __future__ import annotations

import gc
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ...distributed import Rank
from .train import TorchTrainer


def join(rank: Rank, timeout_s: float) -> "TorchGroup":
    """Join the default process group (``env://``: ``MASTER_ADDR``/``MASTER_PORT``, as torchrun sets)."""
    if not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(rank.local_rank)
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return TorchGroup(rank)


def _weighted_sum(group, bucket):  # no annotations: DDP checks them against the real classes
    """DDP communication hook: all-reduce the sum of ``share × local mean gradient``."""
    buffer = bucket.buffer()
    if group.share != 1.0:
        buffer.mul_(group.share)
    return dist.all_reduce(buffer, async_op=True).get_future().then(lambda done: done.value()[0])


class TorchGroup:
    def __init__(self, rank: Rank) -> None:
        self.rank = rank
        self.share = 1.0 / rank.world

    def attach(self, trainer: TorchTrainer) -> None:
        if isinstance(trainer.network, DistributedDataParallel):
            return
        gc.collect()  # a DDP wrapper left from an earlier trainer of this module must not fire its hooks again
        device = next(trainer.module.parameters()).device
        # buffers (BatchNorm statistics) come from rank 0 when wrapping, then stay each rank's own
        ddp = DistributedDataParallel(trainer.module, device_ids=[device] if device.type == "cuda" else None,
                                      forward_sync_buffers=False)
        ddp.register_comm_hook(self, _weighted_sum)
        trainer.network = ddp

    def set_share(self, share: float) -> None:
        self.share = share

    def gather(self, payload: np.ndarray) -> list[np.ndarray]:
        tensor = torch.from_numpy(payload)
        parts = [torch.empty_like(tensor) for _ in range(self.rank.world)]
        dist.all_gather(parts, tensor)
        return [part.numpy() for part in parts]

    def barrier(self) -> None:
        dist.barrier()
