"""torch.distributed for llmasos' data-parallel runs: the process group and DistributedDataParallel.

:func:`join` enters the group the launcher's environment describes (gloo for CPU tensors, NCCL for
CUDA tensors when there is a GPU) with a timeout, so a rank that never arrives fails the run
instead of hanging it. :meth:`TorchGroup.attach` wraps a trainer's module in DDP, which broadcasts
rank 0's weights when it wraps and all-reduces gradients in buckets during the backward pass. Its
communication hook sums each rank's gradient weighted by that rank's share of the global batch
(DDP's default averages equally), so a short last batch split unevenly still gives the global
batch's mean gradient. The same all-reduce carries the step's outputs (each rank's in its own
slot, zeros elsewhere, so the sum is a gather), so a step costs one collective, as plain DDP.
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
    """DDP communication hook: all-reduce the sum of ``share × local mean gradient`` (with the
    step's output slots appended to the first bucket)."""
    buffer = bucket.buffer()
    if group.share != 1.0:
        buffer.mul_(group.share)
    slots = group.slots(buffer)
    if slots is None:
        return dist.all_reduce(buffer, async_op=True).get_future().then(lambda done: done.value()[0])
    size = len(buffer)

    def split(done):
        total = done.value()[0]
        group.received = total[size:]
        return total[:size]

    return dist.all_reduce(torch.cat([buffer, slots]), async_op=True).get_future().then(split)


class TorchGroup:
    def __init__(self, rank: Rank) -> None:
        self.rank = rank
        self.share = 1.0 / rank.world
        self.sizes: list[int] | None = None           # rows per rank of the step under way
        self.outputs: torch.Tensor | None = None       # its forward pass's outputs, for the slots
        self.received: torch.Tensor | None = None      # every rank's outputs, back from the all-reduce

    def attach(self, trainer: TorchTrainer) -> None:
        if isinstance(trainer.network, DistributedDataParallel):
            return
        gc.collect()  # a DDP wrapper left from an earlier trainer of this module must not fire its hooks again
        device = next(trainer.module.parameters()).device
        # buffers (BatchNorm statistics) come from rank 0 when wrapping, then stay each rank's own
        ddp = DistributedDataParallel(trainer.module, device_ids=[device] if device.type == "cuda" else None,
                                      forward_sync_buffers=False)
        ddp.register_comm_hook(self, _weighted_sum)
        ddp.register_forward_hook(self._capture)
        trainer.network = ddp

    def _capture(self, module, args, out) -> None:
        if self.sizes is not None:
            self.outputs = out.detach()

    def expect(self, sizes: list[int]) -> None:
        self.sizes, self.outputs, self.received = sizes, None, None

    def slots(self, like: torch.Tensor) -> torch.Tensor | None:
        """Once per step (the first bucket): a zero buffer with a slot of rows for every rank,
        this rank's outputs in its own."""
        if self.sizes is None or self.outputs is None or self.received is not None:
            return None
        out = self.outputs.reshape(len(self.outputs), -1).to(like.dtype)
        most, width, rank = max(self.sizes), out.shape[1], self.rank.rank
        slots = torch.zeros(len(self.sizes) * most * width, dtype=like.dtype, device=like.device)
        slots[rank * most * width:(rank * most + self.sizes[rank]) * width] = out[:self.sizes[rank]].reshape(-1)
        self.received = slots[:0]      # claimed: later buckets of this step carry gradients alone
        return slots

    def fused(self, trainer: TorchTrainer, target: np.ndarray, weights: np.ndarray | None):
        sizes, outputs, received = self.sizes, self.outputs, self.received
        self.sizes = self.outputs = self.received = None
        if sizes is None or outputs is None or received is None or not len(received):
            return None
        rows = received.reshape(len(sizes), max(sizes), -1)
        out = torch.cat([rows[rank, :count] for rank, count in enumerate(sizes)]).reshape(-1, *outputs.shape[1:])
        with torch.no_grad():   # the loss of the whole batch's outputs, as one process computes it
            loss = trainer._loss(out, target, weights).item() * len(target)
        return loss, out.cpu().numpy()

    def set_share(self, share: float) -> None:
        self.share = share

    def gather(self, payload: np.ndarray) -> list[np.ndarray]:
        tensor = torch.from_numpy(payload)
        parts = [torch.empty_like(tensor) for _ in range(self.rank.world)]
        dist.all_gather(parts, tensor)
        return [part.numpy() for part in parts]

    def barrier(self) -> None:
        dist.barrier()
