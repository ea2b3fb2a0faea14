"""The CPU this process runs on: its model name and the instruction sets that change numbers and
speed here (ONNX Runtime's int8 kernels, TensorFlow's oneDNN), read from ``/proc/cpuinfo``.

Machines of one kind do not all have the same CPU, so int8 quantisation picks its format from
:func:`detect` and every benchmark prints :func:`describe` beside its figures.

>>> cpu = detect()
>>> set(cpu.flags) <= set(FLAGS)
True
>>> describe().startswith(cpu.model)
True
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

# The flags that matter here, as Linux names them. VNNI (AVX-512 VNNI, or AVX-VNNI on smaller
# cores) and AMX give int8 dot products that accumulate in 32 bits; without them ONNX Runtime's
# u8s8 kernels add pairs of products in 16 bits, which saturates.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CPU:
    """A CPU: ``model`` name, logical ``cores``, ``arch`` (``platform.machine()``) and which of
    :data:`FLAGS` it has."""

    model: str
    cores: int
    arch: str
    flags: tuple[str, ...]

    @property
    def x86(self) -> bool:
        return self.arch.lower() in ("x86_64", "amd64", "i386", "i686", "x86")

    @property
    def vnni(self) -> bool:
        """Whether it has an int8 dot product that does not saturate (VNNI or AMX)."""
        return any(flag in self.flags for flag in VNNI_FLAGS)

    def __str__(self) -> str:
        found = " ".join(self.flags) or ("no avx2" if self.x86 else self.arch)
        return f"{self.model}, {self.cores} cores: {found}"


@functools.cache
def detect() -> CPU:
    """This machine's CPU (read once). Where ``/proc/cpuinfo`` is missing (macOS, Windows) the
    model comes from :mod:`platform` and no flags are known."""
    model, flags = platform.processor() or platform.machine() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                if key == "" and flags:   # the end of the first processor's block
                    break
    except OSError:
        pass
    return CPU(model=model, cores=os.cpu_count() or 1, arch=platform.machine(),
               flags=tuple(flag for flag in FLAGS if flag in flags))


def describe() -> str:
    """One line for a benchmark's header: ``"AMD EPYC, 2 cores: avx2"``."""
    return str(detect())
