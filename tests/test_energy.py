"""Energy figures: RAPL counters read from powercap files (a simulated tree here, wrap-arounds
included), NVIDIA GPUs' NVML counters (a simulated binding, driver reloads included), and the
estimate where nothing is readable."""

import importlib.util
import os
import time
import warnings
from pathlib import Path

import pytest

from llmasos import energy


def powercap_tree(root: Path, zones: dict[str, tuple[str, int, int]]) -> Path:
    """Powercap folders as Linux lays them out: ``{folder: (name, energy_uj, max_energy_range_uj)}``."""
    for folder, (name, value, range_uj) in zones.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "name").write_text(name + "\n")
        (root / folder / "energy_uj").write_text(f"{value}\n")
        (root / folder / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return root


def set_energy(root: Path, folder: str, value: int) -> None:
    """A new counter value, replaced at once (as a sysfs read never sees half a value)."""
    (root / folder / "energy_uj.new").write_text(f"{value}\n")
    os.replace(root / folder / "energy_uj.new", root / folder / "energy_uj")


def test_packages_and_dram_are_counted_and_core_subzones_and_mmio_copies_are_not(tmp_path):
    root = powercap_tree(tmp_path, {
        "intel-rapl:0": ("package-0", 0, 2**32), "intel-rapl:0:0": ("core", 0, 2**32),
        "intel-rapl:0:1": ("dram", 0, 2**32), "intel-rapl:1": ("package-1", 0, 2**32),
        "intel-rapl-mmio:0": ("package-0", 0, 2**32), "cooling_device0": ("fan", 0, 1)})
    names = [(zone.folder.name, zone.name) for zone in energy.rapl_zones(root)]
    assert names == [("intel-rapl:0", "package-0"), ("intel-rapl:0:1", "dram"), ("intel-rapl:1", "package-1")]


def test_a_run_sums_every_zone_and_adds_back_a_wrap_around(tmp_path):
    range_uj = 1_000_000_000
    root = powercap_tree(tmp_path, {"intel-rapl:0": ("package-0", range_uj - 3_000_000, range_uj),
                                    "intel-rapl:1": ("package-1", 5_000_000, range_uj)})
    meter = energy.Meter(root, nvml=False, poll_seconds=3600).start()
    set_energy(root, "intel-rapl:0", 2_000_000)    # passed the range: 3 J to the top, 2 J after
    set_energy(root, "intel-rapl:1", 9_500_000)    # 4.5 J
    result = meter.stop()
    assert result.source == "rapl" and result.detail == "package-0, package-1"
    assert result.joules == pytest.approx(3.0 + 2.0 + 4.5, abs=1e-9)
    assert result.per(100) == pytest.approx(0.095)


def test_polling_between_reads_catches_every_wrap(tmp_path):
    range_uj = 10_000_000                                   # 10 J
    root = powercap_tree(tmp_path, {"intel-rapl:0": ("package-0", 0, range_uj)})
    zone = energy.rapl_zones(root)[0]
    for value in (6_000_000, 1_000_000, 7_000_000, 2_000_000, 2_500_000):   # two wraps
        set_energy(root, "intel-rapl:0", value)
        zone.read()
    assert zone.read() == pytest.approx(6 + 5 + 6 + 5 + 0.5)


def test_the_meter_polls_in_the_background_while_it_runs(tmp_path):
    range_uj = 10_000_000
    root = powercap_tree(tmp_path, {"intel-rapl:0": ("package-0", 0, range_uj)})
    meter = energy.Meter(root, nvml=False, poll_seconds=0.01).start()
    set_energy(root, "intel-rapl:0", 8_000_000)
    time.sleep(0.2)                                          # the poller reads 8 J
    set_energy(root, "intel-rapl:0", 1_000_000)             # wrapped: 2 J more, then 1 J
    assert meter.stop().joules == pytest.approx(11.0)


def test_unreadable_zones_are_left_out(tmp_path):
    root = powercap_tree(tmp_path, {"intel-rapl:0": ("package-0", 0, 2**32)})
    (root / "intel-rapl:0" / "energy_uj").unlink()          # as a non-root user sees a root-only file
    (root / "intel-rapl:0" / "energy_uj").mkdir()
    assert energy.rapl_zones(root) == []


def test_without_counters_the_figure_is_an_estimate_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMASOS_WATTS_PER_CORE", "20")
    meter = energy.Meter(tmp_path, nvml=False).start()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:                   # 0.2 CPU-seconds of work
        pass
    with pytest.warns(energy.EnergyWarning, match="estimate"):
        result = meter.stop()
    assert result.source == "estimate" and "20 W per busy core" in result.detail
    cpu_seconds = float(result.detail.split(" x ")[1].split()[0])
    assert cpu_seconds >= 0.19 and result.joules == pytest.approx(20 * cpu_seconds, rel=0.01)
    assert "estimate" in str(result)


def test_an_estimate_can_be_asked_for_without_a_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with energy.measure(tmp_path, nvml=False, warn=False) as run:
            sum(range(10_000))
    assert run.result.source == "estimate"


def test_per_prediction_needs_predictions():
    with pytest.raises(ValueError, match="positive"):
        energy.Energy(1.0, 1.0, "rapl", "package-0").per(0)


class SimulatedNvml:
    """An NVML binding of nvidia-ml-py's shape over simulated GPUs: each one's total-energy counter
    (millijoules since the driver loaded, 64-bit) is ``counters[index]``, set by the test as a
    GPU's driver would; an index in ``failing`` raises as pynvml does (NVMLError) when a read fails,
    and ``supported=False`` is a GPU without the counter (before Volta)."""

    class NVMLError(Exception):
        pass

    def __init__(self, *counters_mj: int, supported: bool = True) -> None:
        self.counters = list(counters_mj)
        self.failing: set[int] = set()
        self.supported = supported

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.counters)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if not self.supported:
            raise self.NVMLError("Not Supported")
        if handle in self.failing:
            raise self.NVMLError("GPU is lost")
        return self.counters[handle]


def test_nvml_sums_every_gpu(tmp_path):
    nvml = SimulatedNvml(2**40 + 5_000, 12_000)          # counters far from 0: a driver loaded long ago
    meter = energy.Meter(tmp_path, nvml=nvml, poll_seconds=3600).start()
    nvml.counters = [2**40 + 9_500, 13_250]              # 4.5 J and 1.25 J
    result = meter.stop()
    assert result.source == "nvml" and result.detail == "cuda:0, cuda:1"
    assert result.joules == pytest.approx(5.75, abs=1e-9)
    assert result.per(10) == pytest.approx(0.575)


def test_an_nvml_counter_restarting_from_zero_counts_what_it_drew_since(tmp_path):
    """NVML's counter does not wrap (64-bit mJ), but a driver reload starts it again from 0."""
    nvml = SimulatedNvml(5_000)
    gpu = energy.nvml_gpus(nvml)[0]
    for value in (9_000, 1_500, 4_000, 250, 750):        # two reloads: 4 J, then 1.5 + 2.5 J, then 0.25 + 0.5 J
        nvml.counters[0] = value
        gpu.read()
    assert gpu.read() == pytest.approx(4 + 1.5 + 2.5 + 0.25 + 0.5)


def test_the_meter_polls_nvml_so_a_restart_loses_at_most_one_poll(tmp_path):
    nvml = SimulatedNvml(1_000)
    meter = energy.Meter(tmp_path, nvml=nvml, poll_seconds=0.01).start()
    nvml.counters[0] = 8_000                              # 7 J, read by the poller
    time.sleep(0.2)
    nvml.failing.add(0)                                   # reads fail for a while: the poller skips them
    time.sleep(0.05)
    nvml.failing.clear()
    nvml.counters[0] = 3_000                              # the driver reloaded: 3 J since
    assert meter.stop().joules == pytest.approx(10.0)


def test_nvml_and_rapl_together_and_gpus_without_the_counter(tmp_path):
    root = powercap_tree(tmp_path / "powercap", {"intel-rapl:0": ("package-0", 0, 2**32)})
    nvml = SimulatedNvml(0)
    meter = energy.Meter(root, nvml=nvml, poll_seconds=3600).start()
    set_energy(root, "intel-rapl:0", 2_000_000)
    nvml.counters[0] = 3_000
    result = meter.stop()
    assert result.source == "rapl+nvml" and result.detail == "package-0, cuda:0"
    assert result.joules == pytest.approx(5.0)
    assert energy.nvml_gpus(SimulatedNvml(0, supported=False)) == []     # a pre-Volta GPU: no counter
    with pytest.warns(energy.EnergyWarning, match="estimate"):
        assert energy.Meter(tmp_path, nvml=SimulatedNvml(0, supported=False)).start().stop().source == "estimate"


def tiny_onnx(path: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_bench_reports_joules_per_prediction_with_its_source(tmp_path):
    from llmasos import export
    from llmasos.export.benchmark import format_table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = export.bench(tiny_onnx(tmp_path / "tiny.onnx"), batches=(1, 4), seconds=0.1, energy=True)
    expected = "rapl" if energy.counters(nvml=False) else "estimate"
    assert [row["energy_source"] for row in rows] == [expected] * 2
    assert all(row["joules_per_prediction"] > 0 for row in rows)
    # an estimate warns once per bench, not once per batch size
    assert sum(issubclass(w.category, energy.EnergyWarning) for w in caught) == (expected == "estimate")
    table = format_table(rows)
    assert "J/prediction" in table and table.splitlines()[1].split()[-1] == expected
    assert "joules_per_prediction" not in export.bench(tmp_path / "tiny.onnx", batches=(1,), seconds=0.05)[0]


def test_cli_bench_energy(tmp_path):
    import subprocess
    import sys

    path = tiny_onnx(tmp_path / "tiny.onnx")
    result = subprocess.run([sys.executable, "-m", "llmasos", "bench", str(path), "--batch", "2", "--seconds", "0.1",
                             "--energy"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[1:3]
    assert header.split()[-2:] == ["J/prediction", "source"] and row.split()[-1] in ("rapl", "estimate")


# Zeus (the `energy` extra's reader): real zeus throughout; where a counter is needed on a machine
# without one, zeus' own RAPLCPU reads a simulated powercap folder (RAPLCPU takes its folder).

def zeus_monitor_over(rapl_dir: Path):
    """A real ZeusMonitor whose CPU manager is zeus' own RAPL reader (``RAPLCPU``, wrap-around
    tracking included) over ``rapl_dir``: zeus offers no argument for the powercap folder, so its
    CPU manager (a subclass of zeus' public ``CPUs`` base) is set on the monitor after it is made."""
    from zeus.device.cpu.common import CPUs
    from zeus.device.cpu.rapl import RAPLCPU
    from zeus.monitor import ZeusMonitor

    class FolderCPUs(CPUs):
        def __init__(self) -> None:
            self._cpus = [RAPLCPU(0, str(rapl_dir))]

        def __del__(self) -> None:
            pass

        @property
        def cpus(self):
            return self._cpus

    monitor = ZeusMonitor(gpu_indices=[], cpu_indices=[])
    monitor.cpus, monitor.cpu_indices = FolderCPUs(), [0]
    return monitor


needs_zeus = pytest.mark.skipif(importlib.util.find_spec("zeus") is None,
                                reason="zeus (pip install 'llmasos[energy]') is not installed")


@needs_zeus
def test_zeus_reads_this_machine_or_the_figure_falls_back_and_says_so():
    import zeus
    from zeus.monitor import ZeusMonitor

    here = ZeusMonitor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with energy.measure() as run:
            sum(i * i for i in range(200_000))
    if here.cpu_indices or here.gpu_indices:        # a machine with readable RAPL (root or zeusd) or a GPU
        assert run.result.reader == "zeus" and set(run.result.source.split("+")) <= {"rapl", "nvml", "amdsmi"}
    else:                                           # this project's CI machines: no RAPL readable, no GPU
        assert run.zeus is None and run.zeus_note == f"zeus {zeus.__version__} found no counter"
        assert run.result.reader == "llmasos"
        if run.result.source == "estimate":
            assert run.result.detail.endswith(f"; zeus {zeus.__version__} found no counter")
            assert any("found no counter" in str(w.message) for w in caught if w.category is energy.EnergyWarning)


def test_without_zeus_the_own_readers_are_used_as_before(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "zeus", None)     # Python's way of "not installed": import raises
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)
    assert energy.zeus_reader() == (None, "")
    meter = energy.Meter(warn=False).start()
    result = meter.stop()
    assert meter.zeus is None and result.reader == "llmasos" and "zeus" not in result.detail


@needs_zeus
def test_zeus_reads_rapl_packages_and_dram(tmp_path):
    root = powercap_tree(tmp_path / "intel-rapl", {"intel-rapl:0": ("package-0", 1_000_000, 2**32),
                                                   "intel-rapl:0/intel-rapl:0:0": ("dram", 200_000, 2**32)})
    meter = energy.Meter(zeus=lambda: zeus_monitor_over(root)).start()
    assert meter.zeus is not None and meter.counters == []
    set_energy(root, "intel-rapl:0", 3_000_000)
    set_energy(root, "intel-rapl:0/intel-rapl:0:0", 700_000)
    result = meter.stop()
    assert (result.reader, result.source, result.detail) == ("zeus", "rapl", "package-0, dram-0")
    assert result.joules == pytest.approx(2.5)
    assert str(result).endswith("(rapl: package-0, dram-0, read by zeus)")


@needs_zeus
@pytest.mark.parametrize("indices", [dict(gpu_indices=[999]), dict(gpu_indices=[], cpu_indices=[999])],
                         ids=["failing-to-start", "failing-to-begin"])
def test_a_zeus_failure_at_the_start_warns_and_the_own_readers_measure(tmp_path, indices):
    from zeus.monitor import ZeusMonitor

    root = powercap_tree(tmp_path, {"intel-rapl:0": ("package-0", 1_000_000, 2**32)})
    with pytest.warns(energy.EnergyWarning, match="zeus could not"):
        meter = energy.Meter(root, nvml=False, zeus=lambda: ZeusMonitor(**indices)).start()
    set_energy(root, "intel-rapl:0", 4_000_000)
    result = meter.stop()
    assert meter.zeus is None and meter.zeus_note.startswith("zeus failed: ")
    assert (result.reader, result.source, result.joules) == ("llmasos", "rapl", pytest.approx(3.0))


@needs_zeus
def test_a_zeus_failure_at_the_end_warns_and_gives_the_estimate(tmp_path):
    root = powercap_tree(tmp_path / "intel-rapl", {"intel-rapl:0": ("package-0", 1_000_000, 2**32)})
    monitor = zeus_monitor_over(root)
    meter = energy.Meter(zeus=lambda: monitor, warn=False).start()
    monitor.reset_windows()                         # zeus' own API: the run's window is gone
    with pytest.warns(energy.EnergyWarning, match="zeus could not finish measuring .* estimate"):
        result = meter.stop()
    assert result.source == "estimate" and result.reader == "llmasos" and "zeus failed: " in result.detail


@needs_zeus
def test_zeus_is_only_asked_for_the_systems_own_counters(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMASOS_ENERGY_ZEUS", raising=False)
    system = energy.Meter(warn=False)
    assert system.zeus is not None or system.zeus_note          # asked: it reads, or says why not
    # a powercap folder or an NVML binding of the caller's is read by llmasos (zeus cannot be pointed there)
    root = powercap_tree(tmp_path, {"intel-rapl:0": ("package-0", 1_000_000, 2**32)})
    own = energy.Meter(root, nvml=False)
    assert own.zeus is None and own.zeus_note == "" and len(own.counters) == 1
    monkeypatch.setenv("LLMASOS_ENERGY_ZEUS", "0")
    off = energy.Meter(warn=False)
    assert off.zeus is None and off.zeus_note == ""
    monkeypatch.setenv("LLMASOS_ENERGY_ZEUS", "maybe")
    with pytest.raises(ValueError, match="LLMASOS_ENERGY_ZEUS must be 1/true .* or 0/false"):
        energy.Meter()
    with pytest.raises(ValueError, match="zeus must be True, False or a function"):
        energy.Meter(zeus="yes")
