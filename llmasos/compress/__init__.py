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

from .compare import Comparison, compare
from .distill import NO_LABEL, distill
from .shrink import shrink
from .teacher import Teacher

__all__ = ["NO_LABEL", "Comparison", "Teacher", "compare", "distill", "shrink"]
