"""Adversarial robustness: attacks that run on any llmasos model, in either framework, with the
same numbers, and a robustness report a team can hand on:

```python
from llmasos import robust
x_adv = robust.fgsm(model, x, y, eps=0.1)                        # NumPy in, NumPy out
x_adv = robust.pgd(model, x, y, eps=0.1, alpha=0.01, steps=40, norm="l2")
report = robust.evaluate(model, test, attacks=["fgsm", robust.PGD(steps=40)], eps=[0, 0.05, 0.1])
print(report.table()); report.plot("robustness.png"); report.to_json()
```

Gradients come from the model's own framework through its adapter
(:meth:`~llmasos.adapters.base.CompiledModel.input_gradient`); everything else is NumPy, written
once. Importing this package imports no framework.
"""

from .attacks import FGSM, PGD, fgsm, make_attack, pgd, predicted_labels
from .report import Report, evaluate

__all__ = ["FGSM", "PGD", "Report", "evaluate", "fgsm", "make_attack", "pgd", "predicted_labels"]
