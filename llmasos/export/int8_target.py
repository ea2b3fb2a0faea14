"""Which int8 format fits the CPU a quantised file will run on.

ONNX Runtime's x86 kernels multiply uint8 activations by int8 weights. Without VNNI (AVX2, and
AVX-512 without VNNI) they use ``VPMADDUBSW``, which adds each pair of products in 16 bits and
saturates when weights use their full 8-bit range; ONNX Runtime's quantisation guide ("When and
why do I need to try U8U8?") advises 7-bit weights (``reduce_range``) or U8U8 there, and its
``quantize_dynamic`` says 7 bits "may improve the accuracy ... on non-VNNI machine". VNNI and AMX
(``VPDPBUSD``, ``TDPBUSD``) accumulate in 32 bits, so full 8-bit weights are exact there and more
accurate than 7. The guide names the saturation on x86 only, so ARM keeps full 8-bit weights.

Measured with ``benchmarks/bench_export.py`` (4-layer encoder, 64 x 128 random tokens, one
thread) on an AMD EPYC with AVX2 only: full-range weights keep fp32's top-1 on 88.2% of tokens;
7-bit weights on 98.2% at the same speed (1.42x fp32 at batch 1, 1.48x at 32); U8U8 on 98.4% but
slower (1.34x / 1.31x), so "avx2" means 7-bit weights. On a VNNI CPU full-range weights kept
98.4%, which "vnni" keeps (the format quantize wrote before targets existed).

>>> choose("avx2").reduce_range, choose("vnni").reduce_range
(True, False)
>>> choose("auto").target in TARGETS
True
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cpu import CPU, detect
from ..errors import ExportError

# target -> whether weights are quantised to 7 bits (reduce_range)
TARGETS = {"avx2": True, "avx512": True, "vnni": False, "arm64": False}


@dataclass(frozen=True)
class Int8Target:
    """The chosen ``target``, what it means (``reduce_range``), and for ``"auto"`` the CPU it
    was detected on (``detected_on``; None when given explicitly)."""

    target: str
    reduce_range: bool
    detected_on: str | None = None


def for_cpu(cpu: CPU) -> str:
    """The target that fits ``cpu``: "vnni" with VNNI or AMX, else "avx512" or "avx2" on x86,
    "arm64" on ARM; any other CPU gets the 7-bit "avx2" format, which never saturates."""
    if cpu.x86:
        return "vnni" if cpu.vnni else "avx512" if "avx512f" in cpu.flags else "avx2"
    return "arm64" if cpu.arch.lower().startswith(("arm", "aarch64")) else "avx2"


def choose(target: str) -> Int8Target:
    """Resolve ``target`` ("auto": this machine's CPU, or one of :data:`TARGETS`)."""
    if target == "auto":
        cpu = detect()
        name = for_cpu(cpu)
        return Int8Target(name, TARGETS[name], detected_on=str(cpu))
    if target not in TARGETS:
        raise ExportError(f"target must be 'auto' (this machine's CPU) or one of {', '.join(map(repr, TARGETS))} "
                          f"(the CPU the int8 file will run on), got {target!r}")
    return Int8Target(target, TARGETS[target])
