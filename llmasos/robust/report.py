"""Robustness reports: clean and adversarial accuracy per attack and eps, the attack's success
rate and the mean perturbation it used; as a table, a plot (accuracy against eps per attack) and
JSON a file's metadata can carry.

>>> report = evaluate(model, test, attacks=["fgsm", "pgd"], eps=[0, 0.05, 0.1])   # doctest: +SKIP
>>> print(report.table())                                                         # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..errors import AttackError
from .catalog import make_attack
from .checks import check_eps, check_labels, check_model
from .space import attack_space
from .square import scorer

if TYPE_CHECKING:
    from ..model import Model

COLUMNS = ("attack", "eps", "clean_accuracy", "adversarial_accuracy", "success_rate", "mean_perturbation")


@dataclass
class Report:
    """One row per (attack, eps): ``clean_accuracy``, ``adversarial_accuracy``, ``success_rate``
    (of the examples the model got right, the share the attack turned wrong) and
    ``mean_perturbation`` (mean norm of ``x_adv - x`` in the attack's norm); ``samples`` is how
    many examples were attacked."""

    rows: list[dict] = field(default_factory=list)
    samples: int = 0

    def to_dict(self) -> dict:
        return {"samples": self.samples, "rows": [dict(row) for row in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        return cls(rows=[dict(row) for row in data["rows"]], samples=data["samples"])

    @classmethod
    def from_json(cls, text: str) -> "Report":
        return cls.from_dict(json.loads(text))

    def attach(self, target: Any) -> None:
        """Keep the report as ``robustness`` in a Model's metadata (saved in its ``.h5`` and carried
        into its ONNX export), or write it into an ``.onnx`` file's metadata in place; ``llmasos
        info`` shows it."""
        if hasattr(target, "metadata") and hasattr(target, "spec"):
            target.metadata["robustness"] = self.to_dict()
            return
        path = os.fspath(target)
        if not path.endswith(".onnx"):
            raise AttackError(f"attach takes an llmasos Model or an .onnx path, got {target!r}")
        import onnx

        from ..export.metadata import write_metadata

        proto = onnx.load(path)
        write_metadata(proto, {"robustness": self.to_dict()})
        onnx.save(proto, path)

    def accuracy(self, attack: str, eps: float) -> float:
        """The adversarial accuracy of ``attack`` (its label, e.g. "pgd") at ``eps``."""
        for row in self.rows:
            if row["attack"] == attack and np.isclose(row["eps"], eps):
                return row["adversarial_accuracy"]
        raise KeyError(f"no row for attack {attack!r} at eps {eps}; rows: "
                       f"{[(r['attack'], r['eps']) for r in self.rows]}")

    def table(self) -> str:
        """The rows as an aligned text table."""
        head = ["attack", "eps", "clean acc", "adv acc", "success", "mean |dx|"]
        body = [[row["attack"], f"{row['eps']:g}", f"{row['clean_accuracy']:.4f}", f"{row['adversarial_accuracy']:.4f}",
                 f"{row['success_rate']:.4f}", f"{row['mean_perturbation']:.4f}"] for row in self.rows]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head, *body]]
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], f"({self.samples} examples)"])

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str) -> str:
        """Adversarial accuracy against eps, one line per attack, written to ``path`` (PNG, SVG, PDF
        by its suffix); returns the path."""
        import matplotlib
        matplotlib.use("Agg")   # no display: write the file only
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(5, 3.5))
        for attack in dict.fromkeys(row["attack"] for row in self.rows):
            rows = sorted((r for r in self.rows if r["attack"] == attack), key=lambda r: r["eps"])
            axes.plot([r["eps"] for r in rows], [r["adversarial_accuracy"] for r in rows], marker="o", label=attack)
        axes.set_xlabel("eps")
        axes.set_ylabel("accuracy under attack")
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
        return str(path)


def evaluate(model: "Model", data: Any, attacks: Iterable[Any] = ("fgsm", "pgd"),
             eps: Iterable[float] = (0.0, 0.05, 0.1), *, bounds: tuple[float, float] | None = None) -> Report:
    """Attack ``data`` (a labelled Dataset, or ``(X, y)``) with each of ``attacks`` (names or
    attack objects: :class:`~llmasos.robust.FGSM`, :class:`~llmasos.robust.PGD`,
    :class:`~llmasos.robust.DeepFool`, :class:`~llmasos.robust.Square`) at each ``eps``;
    ``bounds`` overrides the attacks' own (default (0, 1), or pixels in [0, 1] for a model that
    carries its preprocessing: :mod:`llmasos.robust.space`; eps and the mean perturbation are
    then in pixel units). ``model`` is an llmasos Model, or,
    for query-only attacks (``"square"``), an ``.onnx`` path or a function from inputs to scores.
    Keep the result with :meth:`Report.attach`."""
    x, y = _arrays(data)
    attacks = [make_attack(a) for a in (attacks if not isinstance(attacks, str) else [attacks])]
    eps = [check_eps(e) for e in (eps if isinstance(eps, Iterable) else [eps])]
    if not attacks or not eps:
        raise AttackError("evaluate needs at least one attack and one eps")
    if any(getattr(attack, "needs_gradient", True) for attack in attacks):
        check_model(model)
    score = scorer(model)

    def predicted(inputs: np.ndarray) -> np.ndarray:
        out = np.asarray(score(inputs))
        return (out[:, 0] > 0.5).astype(np.int64) if out.shape[-1] == 1 else out.argmax(axis=-1)

    labels = check_labels(y, len(x), np.asarray(score(x[:1])).shape[-1])
    clean = predicted(x) == labels
    report = Report(samples=len(x))
    for attack in attacks:
        if bounds is not None:
            attack = replace(attack, bounds=bounds)
        label = attack.name if getattr(attack, "norm", "inf") == "inf" else f"{attack.name}-{attack.norm}"
        for e in eps:
            adv = attack.with_eps(e)(model, x, labels)
            right = predicted(adv) == labels
            pixels, _ = attack_space(model, attack.bounds, x)
            delta = (adv - x if pixels is None else pixels.to_pixels(adv) - pixels.to_pixels(x)).reshape(len(x), -1)
            norms = np.abs(delta).max(axis=1) if getattr(attack, "norm", "inf") == "inf" else np.linalg.norm(delta, axis=1)
            report.rows.append({
                "attack": label, "eps": e, "clean_accuracy": float(clean.mean()),
                "adversarial_accuracy": float(right.mean()),
                "success_rate": float((clean & ~right).sum() / clean.sum()) if clean.any() else 0.0,
                "mean_perturbation": float(norms.mean()) if len(norms) else 0.0})
    return report


def _arrays(data: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(data, "batches"):
        parts = list(data.batches(1024))
        if not parts:
            raise AttackError("the dataset is empty: nothing to attack")
        return np.concatenate([p[0] for p in parts]), np.concatenate([np.asarray(p[1]).reshape(-1) for p in parts])
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return np.asarray(data[0], dtype=np.float32), np.asarray(data[1])
    raise AttackError(f"evaluate takes a labelled Dataset or (X, y), got {type(data).__name__}")
