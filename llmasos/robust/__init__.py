"""Adversarial robustness: attacks that run on any llmasos model, in either framework, with the
same numbers, and a robustness report a team can hand on:

```python
from llmasos import robust
x_adv = robust.fgsm(model, x, y, eps=0.1)                        # NumPy in, NumPy out
x_adv = robust.pgd(model, x, y, eps=0.1, alpha=0.01, steps=40, norm="l2")
x_adv = robust.deepfool(model, x, y)                             # minimum-norm (L2)
report = robust.evaluate(model, test, attacks=["fgsm", robust.PGD(steps=40)], eps=[0, 0.05, 0.1])
print(report.table()); report.plot("robustness.png"); report.to_json()
report.attach(model); model.save("model.h5")      # `robustness` in the .h5, its ONNX export, `llmasos info`
robust.evaluate("model.onnx", test, attacks=["square"], eps=[0.1])   # query-only: no gradient needed
robust.evaluate(robust.remote("http://host:8000", "digits"), test, attacks=["square"], eps=[0.1])  # a served model
model.train(train, opt, epochs=15, adversarial=robust.PGD(eps=0.1, alpha=0.01, steps=10))   # Madry et al.
```

Gradients come from the model's own framework through its adapter
(:meth:`~llmasos.adapters.base.CompiledModel.input_gradient`); everything else is NumPy, written
once. Importing this package imports no framework.
"""

from .attacks import FGSM, PGD, fgsm, pgd, predicted_labels
from .catalog import make_attack
from .deepfool import DeepFool, deepfool
from .remote import RemoteModel, remote
from .report import Report, evaluate
from .square import Square, square

__all__ = ["DeepFool", "FGSM", "PGD", "RemoteModel", "Report", "Square", "deepfool", "evaluate", "fgsm",
           "make_attack", "pgd", "predicted_labels", "remote", "square"]
