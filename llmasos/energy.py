"""Energy of a run: joules from the hardware's own counters where they can be read, else an
estimate that says it is one. Every figure carries its ``source``; none is shown without it, and
its ``reader``: ``"zeus"`` or ``"llmasos"``.

Where Zeus (``pip install "llmasos[energy]"``, the ML.ENERGY project's library) is installed and
finds a counter, it reads this machine's counters (``reader="zeus"``): its ``ZeusMonitor`` reads
RAPL (also without root, through its ``zeusd`` daemon where one runs), NVIDIA GPUs through NVML
(older than Volta too, by integrating their power) and AMD GPUs through AMD SMI (``source``
``"amdsmi"``). Where Zeus is absent, finds nothing, fails, or a caller names its own powercap
folder or NVML binding, llmasos' own readers below are used (``reader="llmasos"``), then the
estimate. ``LLMASOS_ENERGY_ZEUS=0`` (or ``zeus=False``) keeps Zeus out: Zeus watches RAPL's
wrap-arounds from a *spawned* process, which imports the main module again, so a script that
trains at its top level (not under ``if __name__ == "__main__":``) should not use it with RAPL.

* ``rapl``: the CPU packages' (and DRAM's) RAPL counters, read from Linux's powercap files
  (``/sys/class/powercap/*-rapl:N/energy_uj``; Intel, and AMD since Zen). The counters wrap around
  at ``max_energy_range_uj``: each is read every few seconds by a background thread so that no
  wrap is missed, and every wrap is added back. Since Linux 5.10 the files are readable by root
  only (CVE-2020-8694): elsewhere they are not counted, and the estimate is used.
* ``nvml``: each NVIDIA GPU's total-energy counter (Volta and later), through NVIDIA's own Python
  binding of NVML (``pip install "llmasos[energy]"``, the ``nvidia-ml-py`` package). The counter
  is 64-bit millijoules "since the driver was last reloaded": it does not wrap in practice, but a
  driver reload (or GPU reset) starts it again from 0, which is counted as such (the energy drawn
  since the restart is added; what fell between the last read and the restart is lost, at most
  one poll's worth).
* ``estimate``: where no counter is readable, the process's CPU time times an assumed power per
  busy core (:data:`WATTS_PER_CORE`, or ``LLMASOS_WATTS_PER_CORE``); a warning says so.

>>> from llmasos import energy
>>> with energy.measure(powercap="/nonexistent", nvml=False, warn=False) as run:
...     _ = sum(i * i for i in range(100_000))
>>> run.result.source, run.result.joules > 0
('estimate', True)

``model.train(..., energy=True)`` puts the run's :class:`Energy` in ``history.energy``;
``export.bench(..., energy=True)`` and ``llmasos bench model.onnx --energy`` add joules per prediction.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

SYSTEM_POWERCAP = "/sys/class/powercap"
POWERCAP = SYSTEM_POWERCAP
"""Where :func:`measure` looks for RAPL zones by default (a test or a container may point it
elsewhere; Zeus only reads the system's own, so it is only asked when this is :data:`SYSTEM_POWERCAP`)."""
WATTS_PER_CORE = 10.0
"""The estimate's assumed power of one busy core, in watts (a server core under load: roughly a
CPU's TDP over its cores). Only used where no counter can be read, and always said so."""
POLL_SECONDS = 5.0
"""How often running counters are read: well under the fastest RAPL wrap (about a minute for a
package's 2^32 µJ range at 60 W, longer for the wider ranges most CPUs have)."""

_ZONE = re.compile(r"^[a-z0-9-]*rapl:\d+(:\d+)?$")


class EnergyWarning(UserWarning):
    """No energy counter could be read: the figure is an estimate (its ``source`` says so)."""


@dataclass(frozen=True)
class Energy:
    """What a measured run drew: ``joules`` over ``seconds`` of wall time, read from ``source``
    (``"rapl"``, ``"nvml"``, ``"amdsmi"``, joined by ``+``, or ``"estimate"``); ``detail`` names
    the counters read, or the estimate's assumption; ``reader`` what read them: ``"zeus"`` (the
    Zeus library) or ``"llmasos"`` (this module's own readers, and the estimate).

    >>> e = Energy(joules=12.0, seconds=4.0, source="rapl", detail="package-0")
    >>> e.per(1000), e.watts, str(e)
    (0.012, 3.0, '12 J in 4 s, 3 W (rapl: package-0)')
    >>> str(Energy(30.0, 2.0, "nvml", "cuda:0", reader="zeus"))
    '30 J in 2 s, 15 W (nvml: cuda:0, read by zeus)'
    """

    joules: float
    seconds: float
    source: str
    detail: str
    reader: str = "llmasos"

    @property
    def watts(self) -> float:
        """Mean power over the run."""
        return self.joules / self.seconds if self.seconds > 0 else 0.0

    def per(self, predictions: int) -> float:
        """Joules per prediction (per sample) for a run that made ``predictions``."""
        if predictions <= 0:
            raise ValueError(f"predictions must be positive, got {predictions}")
        return self.joules / predictions

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        by = ", read by zeus" if self.reader == "zeus" else ""
        return f"{self.joules:.4g} J in {self.seconds:.4g} s, {self.watts:.4g} W ({self.source}: {self.detail}{by})"


class Counter(Protocol):
    """A cumulative energy counter: :meth:`read` returns joules drawn since the counter was made."""

    source: str
    name: str

    def read(self) -> float: ...


class RaplZone:
    """One powercap RAPL zone (a CPU package, or its DRAM), wrap-arounds added back.

    Each :meth:`read` adds the rise since the last one; a fall means the counter passed
    ``max_energy_range_uj`` and started again from 0, so the range is added."""

    source = "rapl"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.name = (self.folder / "name").read_text().strip() if (self.folder / "name").exists() else self.folder.name
        self.range_uj = int((self.folder / "max_energy_range_uj").read_text())
        self._last = self._raw()
        self._total_uj = 0
        self._lock = threading.Lock()

    def _raw(self) -> int:
        return int((self.folder / "energy_uj").read_text())

    def read(self) -> float:
        with self._lock:
            now = self._raw()
            rise = now - self._last
            self._total_uj += rise if rise >= 0 else rise + self.range_uj
            self._last = now
            return self._total_uj / 1e6


def rapl_zones(powercap: str | os.PathLike = POWERCAP) -> list[RaplZone]:
    """The readable RAPL zones under ``powercap``: each package (``*-rapl:N``) and its DRAM subzone
    (``*-rapl:N:M`` named ``dram``); core and uncore subzones are part of their package, and
    ``intel-rapl-mmio`` reads a package again, so they are left out. Zones that exist but cannot be read (root only) are left out too."""
    zones = []
    root = Path(powercap)
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        if not _ZONE.match(folder.name) or "mmio" in folder.name:   # mmio: the same package again
            continue
        try:
            zone = RaplZone(folder)
        except (OSError, ValueError):
            continue
        if folder.name.count(":") == 1 or zone.name == "dram":
            zones.append(zone)
    return zones


class NvmlGpu:
    """One NVIDIA GPU's total-energy counter (millijoules since the driver loaded), through
    ``nvml``, an NVML binding (nvidia-ml-py's ``pynvml`` module, or one of its shape).

    Each :meth:`read` adds the rise since the last one; a fall means the counter restarted from 0
    (the driver reloaded), so the new value itself is added."""

    source = "nvml"

    def __init__(self, nvml: Any, index: int) -> None:
        self._nvml = nvml
        self._handle = nvml.nvmlDeviceGetHandleByIndex(index)
        self.name = f"cuda:{index}"
        self._last = self._raw()
        self._total_mj = 0
        self._lock = threading.Lock()

    def _raw(self) -> int:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception as err:  # pynvml's NVMLError (a GPU lost, a driver reloading): a failed read, as a file's
            raise OSError(f"NVML could not read {self.name}'s energy: {err}") from err

    def read(self) -> float:
        with self._lock:
            now = self._raw()
            rise = now - self._last
            self._total_mj += rise if rise >= 0 else now
            self._last = now
            return self._total_mj / 1e3


def nvml_gpus(binding: Any = None) -> list[NvmlGpu]:
    """Every NVIDIA GPU whose energy counter NVML reads; none without the binding, a driver or a GPU.
    ``binding`` is the NVML binding to use (default: nvidia-ml-py's ``pynvml``)."""
    try:
        if binding is None:
            import pynvml as binding

        binding.nvmlInit()
        return [NvmlGpu(binding, index) for index in range(binding.nvmlDeviceGetCount())]
    except Exception:  # no binding, no driver, no GPU, or a GPU without the counter (pre-Volta)
        return []


def counters(powercap: str | os.PathLike = POWERCAP, nvml: Any = True) -> list[Counter]:
    """Every energy counter this process can read: RAPL zones, then NVIDIA GPUs (``nvml``: True
    for the installed binding, False for none, or an NVML binding to use)."""
    gpus = [] if nvml is False or nvml is None else nvml_gpus(None if nvml is True else nvml)
    return [*rapl_zones(powercap), *gpus]


_WINDOWS = itertools.count()


class ZeusReader:
    """This machine's counters read through Zeus: one measurement window of ``monitor`` (a
    ``zeus.monitor.ZeusMonitor``) per run, from :meth:`begin` to :meth:`end`.

    Zeus would synchronise CUDA at each end of a window; that is turned off here, as it would
    import torch into a TensorFlow run and make a CUDA context on every GPU the monitor watches,
    while llmasos' training loop and ONNX Runtime have already waited for their work where a meter
    starts and stops (losses and outputs are read back to the host)."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        # Zeus reads NVIDIA GPUs through NVML and AMD ones through AMD SMI (zeus.device.gpu.amd)
        self.gpu_source = "amdsmi" if type(monitor.gpus).__module__.endswith(".amd") else "nvml"
        self._key: str | None = None

    @property
    def found(self) -> bool:
        """Whether Zeus watches any CPU package or GPU here."""
        return bool(self.monitor.cpu_indices or self.monitor.gpu_indices)

    def begin(self) -> None:
        self._key = f"llmasos-{os.getpid()}-{next(_WINDOWS)}"   # windows are keyed; one per run
        self.monitor.begin_window(self._key, sync_execution=False)

    def end(self, seconds: float) -> Energy:
        """The run's :class:`Energy`: packages' and DRAM's RAPL joules plus the GPUs'."""
        window = self.monitor.end_window(self._key, sync_execution=False)
        cpus, drams, gpus = window.cpu_energy or {}, window.dram_energy or {}, window.gpu_energy or {}
        gpu_name = "cuda:{}" if self.gpu_source == "nvml" else "gpu:{}"
        names = ([f"package-{i}" for i in sorted(cpus)] + [f"dram-{i}" for i in sorted(drams)]
                 + [gpu_name.format(i) for i in sorted(gpus)])
        sources = (["rapl"] if cpus or drams else []) + ([self.gpu_source] if gpus else [])
        joules = sum(cpus.values()) + sum(drams.values()) + sum(gpus.values())
        return Energy(float(joules), seconds, "+".join(sources), ", ".join(names), reader="zeus")


def _zeus_allowed() -> bool:
    value = os.environ.get("LLMASOS_ENERGY_ZEUS", "1").strip().lower()
    if value not in ("0", "1", "false", "true"):
        raise ValueError(f"LLMASOS_ENERGY_ZEUS must be 1/true (read counters through Zeus where it is "
                         f"installed) or 0/false (llmasos' own readers only), got {value!r}")
    return value in ("1", "true")


def zeus_reader(zeus: Any = True) -> tuple[ZeusReader | None, str]:
    """A :class:`ZeusReader` over what Zeus finds here, and a note on why there is none: ``(None,
    "")`` where Zeus is not installed, ``(None, "zeus 0.16.0 found no counter")`` where it finds no
    readable RAPL package or GPU, ``(None, "zeus failed: ...")`` (with an :class:`EnergyWarning`)
    where it fails to start. ``zeus``: True for a ``ZeusMonitor()`` over every CPU package and GPU,
    or a function making the monitor to use (``lambda: ZeusMonitor(gpu_indices=[0], cpu_indices=[])``)."""
    try:
        import zeus as zeus_package
        from zeus.monitor import ZeusMonitor
    except ImportError:
        return None, ""
    try:
        reader = ZeusReader(ZeusMonitor() if zeus is True else zeus())
    except Exception as err:  # anything Zeus raises must not stop a run: warned, and llmasos' readers instead
        warnings.warn(f"zeus could not start ({type(err).__name__}: {err}); llmasos reads the counters itself",
                      EnergyWarning, stacklevel=3)
        return None, f"zeus failed: {err}"
    if not reader.found:
        return None, f"zeus {getattr(zeus_package, '__version__', '')} found no counter".replace("  ", " ")
    return reader, ""


def _cpu_seconds() -> float:
    """This process's CPU time (every thread's, at the clock's full resolution), and its finished
    children's (data-parallel workers)."""
    children = os.times()
    return time.process_time() + children.children_user + children.children_system


class Meter:
    """Measures one run: :meth:`start`, the work, :meth:`stop` gives its :class:`Energy`. Counters
    are read every :data:`POLL_SECONDS` while it runs (wrap-arounds need it).

    ``powercap`` and ``nvml`` say where to look (see :func:`counters`); ``warn`` whether an
    estimate warns. ``zeus``: True reads this machine's counters through Zeus where it is installed
    and finds one (and ``LLMASOS_ENERGY_ZEUS`` is not 0), unless ``powercap`` or ``nvml`` name
    places of their own; False never uses Zeus; a function making a ``ZeusMonitor`` uses that one.
    A Zeus failure warns and falls back: to llmasos' readers at the start, to the estimate at the end."""

    def __init__(self, powercap: str | os.PathLike = POWERCAP, nvml: Any = True, warn: bool = True,
                 poll_seconds: float = POLL_SECONDS, zeus: Any = True) -> None:
        self._where = (powercap, nvml)
        self.zeus: ZeusReader | None = None
        self.zeus_note = ""
        if callable(zeus) or (zeus is True and _zeus_allowed() and nvml is True
                              and os.fspath(powercap) == SYSTEM_POWERCAP):
            self.zeus, self.zeus_note = zeus_reader(zeus)
        elif zeus is not True and zeus is not False:
            raise ValueError(f"zeus must be True, False or a function making a ZeusMonitor, got {zeus!r}")
        self.counters = [] if self.zeus is not None else counters(powercap, nvml)
        self.warn, self.poll_seconds = warn, poll_seconds
        self.result: Energy | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def _zeus_failed(self, err: Exception, what: str, instead: str) -> None:
        warnings.warn(f"zeus could not {what} ({type(err).__name__}: {err}); {instead}", EnergyWarning, stacklevel=3)
        self.zeus, self.zeus_note = None, f"zeus failed: {err}"

    def start(self) -> "Meter":
        self._started, self._cpu = time.perf_counter(), _cpu_seconds()
        if self.zeus is not None:
            try:
                self.zeus.begin()
                return self
            except Exception as err:  # a Zeus failure must not stop the run
                self._zeus_failed(err, "start measuring", "llmasos reads the counters itself")
                self.counters = counters(*self._where)
        self._joules = [counter.read() for counter in self.counters]
        if self.counters:
            self._stop.clear()
            self._poller = threading.Thread(target=self._poll, name="llmasos-energy", daemon=True)
            self._poller.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for counter in self.counters:
                try:
                    counter.read()
                except (OSError, ValueError):  # a read that failed once: the next one catches up
                    pass

    def stop(self) -> Energy:
        seconds = time.perf_counter() - self._started
        if self.zeus is not None:
            try:
                self.result = self.zeus.end(seconds)
                return self.result
            except Exception as err:  # the counters' start was Zeus' alone: the estimate is what is left
                self._zeus_failed(err, "finish measuring", "the figure is an estimate")
        if self._poller is not None:
            self._stop.set()
            self._poller.join()
            self._poller = None
        if self.counters:
            joules = sum(c.read() - before for c, before in zip(self.counters, self._joules))
            sources = sorted({c.source for c in self.counters}, key=("rapl", "nvml").index)
            self.result = Energy(joules, seconds, "+".join(sources), ", ".join(c.name for c in self.counters))
        else:
            self.result = self._estimate(seconds)
        return self.result

    def _estimate(self, seconds: float) -> Energy:
        cpu = _cpu_seconds() - self._cpu
        watts = float(os.environ.get("LLMASOS_WATTS_PER_CORE", WATTS_PER_CORE))
        detail = f"no readable RAPL or NVML counter: {watts:g} W per busy core x {cpu:.3g} CPU-seconds"
        if self.zeus_note:   # why Zeus did not read them either
            detail += f"; {self.zeus_note}"
        if self.warn:
            warnings.warn(f"energy is an estimate ({detail}); RAPL needs read access to "
                          f"{POWERCAP}/*/energy_uj (root since Linux 5.10), NVML the energy extra and an "
                          f"NVIDIA GPU", EnergyWarning, stacklevel=3)
        return Energy(cpu * watts, seconds, "estimate", detail)

    def __enter__(self) -> "Meter":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def measure(powercap: str | os.PathLike = POWERCAP, nvml: Any = True, warn: bool = True,
            zeus: Any = True) -> Meter:
    """A context manager measuring its block; its ``result`` is the :class:`Energy` afterwards
    (arguments as :class:`Meter`'s)."""
    return Meter(powercap, nvml, warn, zeus=zeus)
