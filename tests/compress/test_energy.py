"""train(..., energy=True): the run's energy in history.energy with its source, from RAPL counters
(a simulated powercap folder of real files) or, where none is readable, an estimate with a
warning, never an error. The meters themselves are tested in tests/test_energy.py."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Model, energy
from llmasos.callbacks import Callback
from llmasos.errors import TrainingError

pytestmark = pytest.mark.torch


def _package(root, value: int):
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("1000000000\n")
    (zone / "energy_uj").write_text(f"{value}\n")
    return zone / "energy_uj"


class Spend(Callback):
    """Moves the simulated counter as the CPU would during the run: past its wrap, then 2 J on."""

    def __init__(self, counter):
        self.counter = counter

    def on_epoch_end(self, model, logs):
        self.counter.write_text(str(1_500_000 if logs["epoch"] == 1 else 3_500_000))
        return False


def test_train_reports_energy_with_its_source(tmp_path, monkeypatch):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = Model(input_dim=4, output_dim=2, framework="torch").add_layer("Dense", 2, activation="softmax")
    monkeypatch.setattr(energy, "POWERCAP", str(tmp_path / "none"))
    with pytest.warns(energy.EnergyWarning, match="estimate"):
        history = model.train(x, y, epochs=2, progress=False, energy=True)
    assert history.energy.source == "estimate" and history.energy.joules > 0
    counter = _package(tmp_path / "powercap", 999_000_000)
    monkeypatch.setattr(energy, "POWERCAP", str(tmp_path / "powercap"))
    history = model.train(x, y, epochs=2, progress=False, energy=True, callbacks=[Spend(counter)])
    # 1 J to the wrap at 1e9 uJ, 1.5 J after it, 2 J more
    assert history.energy.source == "rapl" and history.energy.joules == pytest.approx(4.5)
    assert history.energy.reader == "llmasos"     # a powercap folder of its own: read by llmasos, not zeus
    with pytest.raises(TrainingError, match="energy=True measures this process"):
        model.train(x, y, epochs=1, nproc=2, energy=True)
