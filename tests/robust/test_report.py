"""robust.evaluate: clean and adversarial accuracy per attack and eps, success rate and mean
perturbation, the same as attacking by hand; the table, the plot and the JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmasos import Dataset, robust
from llmasos.robust import Report

pytestmark = pytest.mark.torch


def test_evaluate_reports_what_attacking_by_hand_gives(cnn, tmp_path):
    model, x, y = cnn
    report = robust.evaluate(model, Dataset(x, y, mode="test"), attacks=["fgsm", robust.PGD(steps=5, norm="l2")],
                             eps=[0, 0.1, 0.5])
    assert [(r["attack"], r["eps"]) for r in report.rows] == [
        ("fgsm", 0.0), ("fgsm", 0.1), ("fgsm", 0.5), ("pgd-l2", 0.0), ("pgd-l2", 0.1), ("pgd-l2", 0.5)]
    clean = robust.predicted_labels(model, x) == y
    adversarial = robust.fgsm(model, x, y, eps=0.1)
    right = robust.predicted_labels(model, adversarial) == y
    row = report.rows[1]
    assert report.samples == len(x) and row["clean_accuracy"] == pytest.approx(clean.mean())
    assert row["adversarial_accuracy"] == pytest.approx(right.mean()) == report.accuracy("fgsm", 0.1)
    assert row["success_rate"] == pytest.approx((clean & ~right).sum() / clean.sum())
    assert row["mean_perturbation"] == pytest.approx(np.abs(adversarial - x).reshape(len(x), -1).max(axis=1).mean())
    for row in report.rows:
        if row["eps"] == 0:   # no perturbation: nothing changes
            assert row["adversarial_accuracy"] == row["clean_accuracy"] and row["success_rate"] == 0
        assert row["mean_perturbation"] <= row["eps"] + 1e-5
    assert report.accuracy("pgd-l2", 0.5) < report.accuracy("pgd-l2", 0.1) < report.accuracy("pgd-l2", 0.0)

    table = report.table()
    assert table.splitlines()[0].split() == ["attack", "eps", "clean", "acc", "adv", "acc", "success", "mean", "|dx|"]
    assert f"{report.rows[1]['adversarial_accuracy']:.4f}" in table.splitlines()[3]
    path = report.plot(str(tmp_path / "robustness.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    again = Report.from_json(report.to_json())
    assert again.rows == report.rows and json.loads(report.to_json())["samples"] == len(x)
