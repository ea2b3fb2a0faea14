"""The neutral op set: what a custom layer's ``call`` may use, with one meaning in every framework.

Each adapter implements every op with its framework's own functions (``adapters/<fw>/ops.py``),
so a layer written once trains in torch and TensorFlow with the same numbers, and exports to
ONNX through the ordinary exporters, which trace those functions. Tensors are the framework's
own: ``+ - * / **``, comparisons and slicing work on them directly; everything else goes through
``ops``. Axes count the batch as axis 0, as NumPy does on a batched array; negative axes count
from the end.

An op outside the set is an :class:`AttributeError` that lists the set:

>>> class Nothing(Ops): pass
>>> Nothing.__abstractmethods__ == frozenset(OP_NAMES)
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

Axis = int | Sequence[int] | None


class Ops(ABC):
    """The op set, one abstract method per op; see the module's docstring for the conventions."""

    def __getattr__(self, name: str) -> Any:
        # only reached for names the class does not define
        raise AttributeError(f"ops has no {name!r}: custom layers are written with llmasos' neutral op set, which "
                             f"every framework and ONNX implement: {', '.join(OP_NAMES)}")

    # -- linear algebra and elementwise math ----------------------------------------------------

    @abstractmethod
    def matmul(self, a: Any, b: Any) -> Any:
        """Matrix product over the last two axes, leading axes broadcast (``(B, L, F) @ (F, U)``)."""

    @abstractmethod
    def add(self, a: Any, b: Any) -> Any:
        """``a + b``, broadcasting; either may be a Python number."""

    @abstractmethod
    def sub(self, a: Any, b: Any) -> Any:
        """``a - b``, broadcasting."""

    @abstractmethod
    def mul(self, a: Any, b: Any) -> Any:
        """``a * b``, broadcasting."""

    @abstractmethod
    def div(self, a: Any, b: Any) -> Any:
        """``a / b``, broadcasting."""

    @abstractmethod
    def pow(self, a: Any, b: Any) -> Any:
        """``a ** b``, broadcasting."""

    @abstractmethod
    def maximum(self, a: Any, b: Any) -> Any:
        """Elementwise larger of ``a`` and ``b`` (a tensor and a number, or two tensors)."""

    @abstractmethod
    def minimum(self, a: Any, b: Any) -> Any:
        """Elementwise smaller of ``a`` and ``b``."""

    @abstractmethod
    def exp(self, x: Any) -> Any:
        """``e ** x``."""

    @abstractmethod
    def log(self, x: Any) -> Any:
        """Natural logarithm."""

    @abstractmethod
    def sqrt(self, x: Any) -> Any:
        """Square root."""

    @abstractmethod
    def abs(self, x: Any) -> Any:
        """Absolute value."""

    # -- activations ----------------------------------------------------------------------------

    @abstractmethod
    def relu(self, x: Any) -> Any:
        """``max(x, 0)``."""

    @abstractmethod
    def sigmoid(self, x: Any) -> Any:
        """``1 / (1 + e ** -x)``."""

    @abstractmethod
    def tanh(self, x: Any) -> Any:
        """Hyperbolic tangent."""

    @abstractmethod
    def gelu(self, x: Any, approximate: bool = False) -> Any:
        """GELU: the exact erf form, or its tanh approximation (GPT-2's) with ``approximate``."""

    @abstractmethod
    def softmax(self, x: Any, axis: int = -1) -> Any:
        """Softmax along ``axis``."""

    # -- shapes ---------------------------------------------------------------------------------

    @abstractmethod
    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        """``x`` in ``shape``, row-major, batch axis included: one ``-1`` takes the remaining size
        and a ``0`` keeps the input's size at that position (as ONNX's Reshape), so
        ``reshape(x, (0, 0, heads, -1))`` splits heads whatever the batch and sequence length."""

    @abstractmethod
    def transpose(self, x: Any, axes: Sequence[int]) -> Any:
        """The axes of ``x`` reordered: output axis ``i`` is input axis ``axes[i]``."""

    @abstractmethod
    def concat(self, xs: Sequence[Any], axis: int = -1) -> Any:
        """The tensors joined along ``axis``."""

    @abstractmethod
    def split(self, x: Any, parts: int | Sequence[int], axis: int = -1) -> list:
        """``x`` cut along ``axis`` into ``parts`` equal pieces (an int, which must divide the size),
        or into pieces of the given sizes (a list)."""

    # -- reductions, selection ------------------------------------------------------------------

    @abstractmethod
    def sum(self, x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
        """Sum over ``axis`` (an int, several, or every axis with None)."""

    @abstractmethod
    def mean(self, x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
        """Mean over ``axis``."""

    @abstractmethod
    def max(self, x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
        """Largest value over ``axis``."""

    @abstractmethod
    def where(self, condition: Any, a: Any, b: Any) -> Any:
        """``a`` where ``condition`` holds, else ``b``; broadcasting, numbers allowed."""

    @abstractmethod
    def gather(self, x: Any, indices: Any, axis: int = 0) -> Any:
        """Slices of ``x`` at integer ``indices`` along ``axis`` (NumPy's ``take``): an embedding
        lookup is ``gather(table, ids)``."""


OP_NAMES: tuple[str, ...] = tuple(sorted(Ops.__abstractmethods__))
