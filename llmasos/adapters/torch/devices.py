"""The devices torch sees, by llmasos' neutral names (:mod:`llmasos.devices`)."""

from __future__ import annotations

import torch

from ...devices import choose


def available() -> list[str]:
    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def torch_device(device: str) -> torch.device:
    """``device`` ("auto", "cuda", "cuda:1", ...) as a torch.device that is there."""
    return torch.device(choose(device, available()))
