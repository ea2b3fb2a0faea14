"""Energy figures: RAPL counters read from a simulated powercap folder (wrap-around included), the
estimate where none is readable (a warning, never an error), and train(..., energy=True)."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Model, Optimizer
from llmasos.compress import energy
from llmasos.errors import TrainingError


def _zone(root, name: str, value: int, limit: int = 1_000_000_000):
    zone = root / name
    zone.mkdir()
    (zone / "max_energy_range_uj").write_text(f"{limit}\n")
    (zone / "energy_uj").write_text(f"{value}\n")
    return zone / "energy_uj"


def test_simulated_rapl_counter_wraps_around(tmp_path):
    package = _zone(tmp_path, "intel-rapl:0", 999_000_000)
    second = _zone(tmp_path, "intel-rapl:1", 5_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 0)              # a sub-zone: part of package 0, not counted again
    counter = energy.RaplCounter(tmp_path)
    assert len(counter.zones) == 2
    with energy.measure(counter, poll_seconds=3600) as meter:
        package.write_text("1500000\n")               # wrapped at 1e9: 1 J + 1.5 J
        second.write_text("7000000\n")                # 2 J
        meter.poll()
        package.write_text("2500000\n")               # 1 J more
    assert meter.result.source == "rapl"
    assert meter.result.joules == pytest.approx(5.5)
    assert meter.result.per(11) == pytest.approx(0.5)
    assert "rapl" in str(meter.result)


def test_without_counters_it_is_an_estimate_with_a_warning(tmp_path):
    unreadable = _zone(tmp_path, "intel-rapl:0", 10).parent
    (unreadable / "energy_uj").unlink()               # as on kernels where only root reads it
    assert not energy.RaplCounter(tmp_path).readable
    with pytest.warns(RuntimeWarning, match="estimate"):
        with energy.measure(energy.RaplCounter(tmp_path)) as meter:
            sum(i * i for i in range(200_000))
    assert meter.result.source == "estimate"
    assert meter.result.joules > 0
    assert meter.result.seconds > 0


@pytest.mark.torch
def test_train_reports_energy_with_its_source(tmp_path, monkeypatch):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = Model(input_dim=4, output_dim=2, framework="torch").add_layer("Dense", 2, activation="softmax")
    monkeypatch.setenv(energy.ENV_VAR, str(tmp_path / "none"))
    with pytest.warns(RuntimeWarning, match="no readable energy counter"):
        history = model.train(x, y, epochs=2, progress=False, energy=True)
    assert history.energy.source == "estimate" and history.energy.joules > 0
    counter = _zone(tmp_path, "intel-rapl:0", 100)
    monkeypatch.setenv(energy.ENV_VAR, str(tmp_path))

    from llmasos.callbacks import Callback

    class Spend(Callback):   # the counter advances by 3 J during the run, as the CPU would make it
        def on_epoch_end(self, model, logs):
            counter.write_text(str(100 + 3_000_000))
            return False

    history = model.train(x, y, epochs=1, progress=False, energy=True, callbacks=[Spend()])
    assert history.energy.source == "rapl" and history.energy.joules == pytest.approx(3.0)
    with pytest.raises(TrainingError, match="energy=True measures this process"):
        model.train(x, y, epochs=1, nproc=2, energy=True)
