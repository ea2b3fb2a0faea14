"""Teacher, student, pruned and int8 models side by side, each measured as the ONNX file a team
would ship: parameters, file size, ONNX Runtime latency, accuracy, and joules per prediction with
the source of that figure (:mod:`llmasos.energy`)::

    from llmasos import compress, export
    export.quantize("teacher.onnx", "teacher.int8.onnx")
    table = compress.compare(teacher, student, slim, "teacher.int8.onnx", test)
    print(table)                     # one row a model
    table.plot("compare.png")        # a bar chart a column

Models are :class:`~llmasos.model.Model` objects (exported to ONNX in a temporary folder, with
the export's own verification), ``.h5`` files (exported likewise) or ``.onnx`` files (used as they
are). Every file runs in the same ONNX Runtime session settings, one model after another.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..energy import EnergyWarning
from ..errors import DataError

COLUMNS = ("parameters", "size_mb", "latency_ms_b1", "latency_ms_b32", "accuracy", "joules_per_prediction")


@dataclass
class Comparison:
    """The rows of :func:`compare`, one dict a model: ``name``, ``parameters``, ``size_mb``,
    ``latency_ms_b1``/``latency_ms_b32`` (median, ONNX Runtime, CPU), ``accuracy`` (or ``mse`` for
    float labels), ``joules_per_prediction`` at batch 32 and its ``energy_source``."""

    rows: list[dict[str, Any]]

    def table(self) -> str:
        """The rows as an aligned text table."""
        metric = "mse" if self.rows and "mse" in self.rows[0] else "accuracy"
        header = ("model", "params", "MB", "ms b1", "ms b32", metric, "J/prediction", "source")
        body = [(r["name"], f"{r['parameters']:,}", f"{r['size_mb']:.3f}", f"{r['latency_ms_b1']:.3f}",
                 f"{r['latency_ms_b32']:.3f}", f"{r[metric]:.4f}", f"{r['joules_per_prediction']:.3g}",
                 r["energy_source"]) for r in self.rows]
        widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
        return "\n".join("  ".join(v.ljust(w) if i in (0, 7) else v.rjust(w)
                                   for i, (v, w) in enumerate(zip(line, widths))).rstrip() for line in (header, *body))

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | os.PathLike) -> str:
        """A bar chart of each column, the models side by side; returns the path."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        metric = "mse" if "mse" in self.rows[0] else "accuracy"
        columns = [c if c != "accuracy" else metric for c in COLUMNS]
        fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.2))
        names = [r["name"] for r in self.rows]
        for ax, column in zip(axes, columns):
            ax.bar(names, [r[column] for r in self.rows], color=plt.cm.tab10.colors[:len(names)])
            title = column if column != "joules_per_prediction" else f"J/prediction ({self.rows[0]['energy_source']})"
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return str(path)


def compare(*models_and_data: Any, names: Sequence[str] | None = None, seconds: float = 0.5,
            batch_size: int = 256) -> Comparison:
    """Measure each model (a Model, an ``.h5`` or an ``.onnx``) on the data (one Dataset or
    ``(X, y)``, anywhere among the arguments; labelled). ``names`` labels the rows (default: each
    model's name or file name). ``seconds`` of timing per batch size."""
    from ..data import Dataset

    data = [a for a in models_and_data if isinstance(a, (Dataset, tuple))]
    models = [a for a in models_and_data if not isinstance(a, (Dataset, tuple))]
    if len(data) != 1:
        raise DataError(f"compare takes the models and one labelled dataset (a Dataset or (X, y)); got "
                        f"{len(data)} datasets")
    if not models:
        raise DataError("compare needs at least one model: a Model, an .h5 or an .onnx path")
    if names is not None and len(names) != len(models):
        raise DataError(f"{len(names)} names for {len(models)} models")
    dataset = data[0] if isinstance(data[0], Dataset) else Dataset(*data[0], mode="test")
    if not dataset.has_labels:
        raise DataError("compare needs labels to report accuracy: give a Dataset with labels or (X, y)")
    with tempfile.TemporaryDirectory(prefix="llmasos-compare-") as folder:
        rows = []
        for index, model in enumerate(models):
            path = _onnx_file(model, Path(folder) / f"model{index}.onnx")
            name = names[index] if names is not None else _name(model, path)
            with warnings.catch_warnings():
                if index:   # an estimate is said once, for the first model
                    warnings.simplefilter("ignore", EnergyWarning)
                rows.append({"name": name, **_measure(path, dataset, seconds, batch_size)})
    return Comparison(rows)


def _onnx_file(model: Any, path: Path) -> Path:
    from .. import export

    if isinstance(model, (str, os.PathLike)) and str(model).endswith(".onnx"):
        return Path(model)
    export.to_onnx(model, path)
    return path


def _name(model: Any, path: Path) -> str:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).name
    return getattr(model, "name", None) or path.stem


def _measure(path: Path, dataset: Any, seconds: float, batch_size: int) -> dict[str, Any]:
    from ..export import bench
    from ..export.feeds import feed, graph_inputs
    from ..export.metrics import task_metric, threshold
    from ..export.providers import check_file, session

    proto = check_file(path)
    parameters = sum(math.prod(t.dims) for t in proto.graph.initializer)
    external = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    size = path.stat().st_size + sum((path.parent / location).stat().st_size for location in external)
    timing = {row["batch"]: row for row in bench(path, batches=(1, 32), seconds=seconds, energy=True)}
    sess, inputs, cut = session(path), graph_inputs(proto), threshold(proto)
    outputs, labels = [], []
    for x, y in dataset.batches(batch_size):
        outputs.append(sess.run(None, feed(inputs, x, where="compare's dataset"))[0].astype(np.float32))
        labels.append(y)
    metric, value = task_metric(np.concatenate(outputs), np.concatenate(labels), cut)
    return {"parameters": int(parameters), "size_mb": size / 1e6, "latency_ms_b1": timing[1]["median_ms"],
            "latency_ms_b32": timing[32]["median_ms"], metric: value,
            "joules_per_prediction": timing[32]["joules_per_prediction"], "energy_source": timing[32]["energy_source"]}
