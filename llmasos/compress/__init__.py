"""Smaller and cheaper models whose results are ordinary llmasos Models: knowledge distillation
(:func:`distill`), a transformer started from some of a bigger one's blocks (:func:`shrink`),
structured pruning (``Model.prune(amount, structured=True)``, :mod:`.prune`) and
the side-by-side :func:`compare` table. Importing it imports no framework.

```python
from llmasos import compress
history = compress.distill(teacher, student, data, Optimizer("Adam", lr=1e-3), epochs=10,
                           temperature=4.0, alpha=0.9)
small = compress.shrink(bert, layers=[0, 2, 4, 6, 8, 10])      # or bert.shrink(layers=...)
slim = model.prune(0.5, structured=True)
print(compress.compare(teacher, student, slim, "teacher.int8.onnx", test))
```
"""

from __future__ import annotations

from .. import lazy

# Loaded on first use: Model.prune(structured=True) imports .prune, which must not bring in the
# modules here that import Model (import circles, tests/test_architecture.py). The modules are
# named apart from the functions, so an imported module never hides the function of its name.
_LAZY = {"Comparison": "comparison", "compare": "comparison", "NO_LABEL": "distillation",
         "distill": "distillation", "shrink": "shrinking", "Teacher": "teacher"}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy.attributes(__name__, _LAZY)
