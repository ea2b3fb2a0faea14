"""llmasos' small neutral op set, in which custom layers (and losses) are written once for every
framework. See :class:`Ops` for the ops and their meaning; each adapter implements them.

>>> from llmasos.ops import OP_NAMES
>>> "matmul" in OP_NAMES and "softmax" in OP_NAMES
True
"""

from .base import OP_NAMES, Ops

__all__ = ["OP_NAMES", "Ops"]
