"""The hand-written torch DDP training bench_distributed.py compares llmasos with: the same model,
data, global batch and per-rank slices, written the way a torch user would (DDP's defaults,
torch.optim defaults, ``loss.item()`` each step for logging). Rank 0 prints the epoch times as JSON.

    torchrun --standalone --nproc-per-node 2 benchmarks/torch_ddp_reference.py DATA_DIR mlp|cnn EPOCHS BATCH
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def model(kind: str) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 13 * 13, 10))


def main(folder: str, kind: str, epochs: int, batch: int) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y = torch.from_numpy(np.load(f"{folder}/x.npy")), torch.from_numpy(np.load(f"{folder}/y.npy"))
    if kind == "cnn":
        x = x.reshape(-1, 1, 28, 28)
    torch.manual_seed(0)
    net = nn.parallel.DistributedDataParallel(model(kind))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    seconds = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        dist.barrier()
        started, total = time.perf_counter(), 0.0
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            size, extra = divmod(len(rows), world)
            lo = rank * size + min(rank, extra)
            local = rows[lo:lo + size + (rank < extra)]
            loss = F.cross_entropy(net(x[local]), y[local])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        dist.barrier()
        seconds.append(time.perf_counter() - started)
    if rank == 0:
        print(json.dumps({"seconds": seconds}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
