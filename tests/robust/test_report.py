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


def test_the_report_travels_in_the_h5_the_onnx_file_and_info(cnn, tmp_path, capsys):
    from llmasos import Model, export
    from llmasos.cli import main

    model, x, y = cnn
    report = robust.evaluate(model, (x[:32], y[:32]), attacks=["fgsm"], eps=[0, 0.1])
    report.attach(model)
    try:
        model.save(str(tmp_path / "model.h5"))
        export.to_onnx(model, str(tmp_path / "model.onnx"))
    finally:
        del model.metadata["robustness"]
    assert Model.load(str(tmp_path / "model.h5")).metadata["robustness"] == report.to_dict()
    assert export.info(str(tmp_path / "model.onnx"))["robustness"] == report.to_dict()
    for name in ("model.h5", "model.onnx"):
        capsys.readouterr()
        assert main(["info", str(tmp_path / name)]) == 0
        shown = capsys.readouterr().out
        assert "robustness:" in shown and report.table().splitlines()[3] in shown, shown


def test_the_command_line_attacks_an_h5_with_gradients_and_an_onnx_file_by_queries(cnn, tmp_path, capsys):
    import pandas as pd

    from llmasos import export
    from llmasos.cli import main

    model, x, y = cnn
    x, y = x[:48], y[:48]
    table = pd.DataFrame(x.reshape(len(x), -1), columns=[f"p{i}" for i in range(64)]).assign(label=y)
    table.to_csv(tmp_path / "test.csv", index=False)
    model.save(str(tmp_path / "model.h5"))
    export.to_onnx(model, str(tmp_path / "model.onnx"))
    capsys.readouterr()
    assert main(["robust", str(tmp_path / "model.h5"), "--data", str(tmp_path / "test.csv"), "--eps", "0,0.1",
                 "--json", str(tmp_path / "report.json")]) == 0
    printed = capsys.readouterr().out
    expected = robust.evaluate(model, (x, y), attacks=["fgsm", "pgd"], eps=[0, 0.1])
    # digits are multiples of 1/16: the CSV holds the same float32 inputs, so the same report
    assert Report.from_json((tmp_path / "report.json").read_text()).rows == expected.rows
    assert expected.table().splitlines()[3] in printed
    # the ONNX file: query-only, stored in the file
    assert main(["robust", str(tmp_path / "model.onnx"), "--data", str(tmp_path / "test.csv"), "--eps", "0.2",
                 "--queries", "100", "--save"]) == 0
    stored = Report.from_dict(export.info(str(tmp_path / "model.onnx"))["robustness"])
    assert stored.rows[0]["attack"] == "square" and stored.rows[0]["clean_accuracy"] > 0.9
    assert stored.rows[0]["adversarial_accuracy"] < stored.rows[0]["clean_accuracy"] - 0.3, stored.table()
    assert stored.rows[0]["mean_perturbation"] <= 0.2 + 1e-6
    # the same attack on the Model (its predict) reaches the same accuracy within float noise
    on_model = robust.evaluate(model, (x, y), attacks=[robust.Square(queries=100)], eps=[0.2])
    assert abs(on_model.rows[0]["adversarial_accuracy"] - stored.rows[0]["adversarial_accuracy"]) <= 0.05
    with pytest.raises(Exception, match=r"an ONNX file has no gradients"):
        robust.evaluate(str(tmp_path / "model.onnx"), (x, y), attacks=["fgsm"], eps=[0.1])
