"""Device names, the same for every framework: ``"cpu"``, ``"cuda"`` (the first GPU), ``"cuda:1"``,
``"mps"`` (Apple's GPU, torch only) and ``"auto"`` (a CUDA GPU when there is one, else Apple's,
else the CPU). Each adapter lists what its framework sees; :func:`choose` picks from that list
and refuses a device that is not there, naming the ones that are.

>>> choose("auto", ["cpu"]), choose("cuda", ["cpu", "cuda:0"]), choose("CPU", ["cpu"])
('cpu', 'cuda:0', 'cpu')
>>> choose("cuda:1", ["cpu", "cuda:0"])
Traceback (most recent call last):
...
llmasos.errors.DeviceError: device 'cuda:1' is not available to this framework; available: cpu, cuda:0
"""

from __future__ import annotations

import re

from .errors import DeviceError

_FORM = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


def parse(device: str) -> str:
    """A device name in its canonical spelling (lower case, "gpu" read as "cuda"), or a DeviceError."""
    name = str(device).strip().lower().replace("gpu", "cuda")
    if not _FORM.match(name):
        raise DeviceError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'")
    return name


def choose(device: str, available: list[str]) -> str:
    """The device ``device`` names among ``available`` (canonical names, "cpu" first)."""
    name = parse(device)
    if name == "auto":
        return next((d for d in available if d.startswith("cuda")), "mps" if "mps" in available else "cpu")
    if name == "cuda":
        name = "cuda:0"
    if name not in available:
        raise DeviceError(f"device {device!r} is not available to this framework; available: {', '.join(available)}")
    return name


def is_device(name: object) -> bool:
    """Whether ``name`` reads as a device (rather than, say, a framework name)."""
    return isinstance(name, str) and bool(_FORM.match(name.strip().lower().replace("gpu", "cuda")))
