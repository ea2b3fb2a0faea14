"""Energy figures that always say where they come from.

>>> import time
>>> from llmasos.compress import energy
>>> with energy.measure(warn=False) as meter:          # doctest: +SKIP
...     model.predict(x)
>>> meter.result                                       # doctest: +SKIP
Energy(joules=3.1, seconds=0.42, source='rapl')

``model.train(..., energy=True)`` puts the same in ``history.energy``.

Where the CPU's RAPL counters are readable (Linux powercap, ``/sys/class/powercap/intel-rapl:N``,
which AMD's Zen CPUs fill too; ``$LLMASOS_POWERCAP`` names another folder), the figure is the
package counters' difference, wrap-around included (each counter restarts from 0 after
``max_energy_range_uj``; a thread reads them every :data:`POLL_SECONDS` so no run misses a wrap).
Elsewhere (containers, VMs, most shared machines: the counters are root-only since CVE-2020-8694)
it is an estimate, the process's CPU time times :data:`ESTIMATE_WATTS_PER_CORE`, marked
``source="estimate"``, with a warning, never an error. GPUs (NVML) are not measured yet.
"""

from __future__ import annotations

import glob
import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

POWERCAP = "/sys/class/powercap"
ENV_VAR = "LLMASOS_POWERCAP"
POLL_SECONDS = 10.0
# A server core at full load draws about its package's TDP over its cores: 2-5 W on current EPYC
# and Xeon parts, more on desktops. The estimate's source says it is one.
ESTIMATE_WATTS_PER_CORE = 5.0


@dataclass(frozen=True)
class Energy:
    """``joules`` spent over ``seconds`` of wall time, measured by ``source`` ("rapl" or "estimate")."""

    joules: float
    seconds: float
    source: str

    def per(self, count: int) -> float:
        """Joules per item (prediction, sample) when ``count`` items were processed."""
        return self.joules / max(count, 1)

    def __str__(self) -> str:
        return f"{self.joules:.3g} J in {self.seconds:.3g} s ({self.source})"


class RaplCounter:
    """The package-level RAPL zones under ``root`` (``intel-rapl:0``, ``intel-rapl:1``...; their
    sub-zones such as ``intel-rapl:0:0`` are parts of the package and would count twice)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        root = os.fspath(root if root is not None else os.environ.get(ENV_VAR, POWERCAP))
        self.zones = []
        for zone in sorted(glob.glob(os.path.join(root, "intel-rapl:*"))):
            if os.path.basename(zone).count(":") != 1:
                continue
            try:
                with open(os.path.join(zone, "max_energy_range_uj")) as handle:
                    limit = int(handle.read())
                with open(os.path.join(zone, "energy_uj")) as handle:
                    int(handle.read())
            except (OSError, ValueError):
                continue     # root-only on most kernels: not readable is not an error
            self.zones.append((os.path.join(zone, "energy_uj"), limit))

    @property
    def readable(self) -> bool:
        return bool(self.zones)

    def read(self) -> list[int]:
        """Each zone's counter, in microjoules."""
        values = []
        for path, _ in self.zones:
            with open(path) as handle:
                values.append(int(handle.read()))
        return values

    def microjoules(self, before: list[int], after: list[int]) -> int:
        """Energy between two readings, a counter that went down having wrapped once."""
        return sum(b - a if b >= a else b + limit - a for a, b, (_, limit) in zip(before, after, self.zones))


class measure:
    """A context manager measuring the energy of what runs inside it; :attr:`result` is the
    :class:`Energy` once it exits. ``counter`` defaults to this machine's RAPL counters; without
    any readable, the result is an estimate and ``warn`` says so."""

    def __init__(self, counter: RaplCounter | None = None, *, warn: bool = True,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.counter = counter if counter is not None else RaplCounter()
        self.warn, self.poll_seconds = warn, poll_seconds
        self.result: Energy | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "measure":
        self._start, self._cpu = time.perf_counter(), time.process_time()
        self._total = 0
        if self.counter.readable:
            self._last = self.counter.read()
            self._thread = threading.Thread(target=self._poll_loop, name="llmasos-energy", daemon=True)
            self._thread.start()
        elif self.warn:
            warnings.warn("no readable energy counter (RAPL under /sys/class/powercap is absent or root-only): "
                          f"the energy is an estimate from CPU time at {ESTIMATE_WATTS_PER_CORE} W per busy core "
                          "(source='estimate')", RuntimeWarning, stacklevel=2)
        return self

    def poll(self) -> None:
        """Add the counters' progress since the last reading (called every ``poll_seconds``)."""
        with self._lock:
            now = self.counter.read()
            self._total += self.counter.microjoules(self._last, now)
            self._last = now

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll()

    def __exit__(self, *exc: Any) -> None:
        seconds = time.perf_counter() - self._start
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.poll()
            self.result = Energy(self._total / 1e6, seconds, "rapl")
        else:
            cpu_seconds = time.process_time() - self._cpu
            self.result = Energy(cpu_seconds * ESTIMATE_WATTS_PER_CORE, seconds, "estimate")


def training_meter() -> Any:
    """The callback ``train(..., energy=True)`` adds: it measures from the first epoch to the last
    and leaves the :class:`Energy` in ``model.history.energy``."""
    from ..callbacks import Callback

    class EnergyMeter(Callback):
        def on_train_begin(self, model: Any) -> None:
            self.meter = measure().__enter__()

        def on_train_end(self, model: Any) -> None:
            self.meter.__exit__(None, None, None)
            model.history.energy = self.meter.result

    return EnergyMeter()
