"""Which array layouts a model input takes: its spec's shape, or flat rows of the same size.

Nothing else is reinterpreted. A ``reshape`` of channels-last images into a channels-first input
gives scrambled pixels and no error, so any other shape is refused with a message that names the
layout expected, and says how to transpose when the data is that layout's channels-last form.

>>> conform((5, 64), (1, 8, 8), "input 'x'")      # flat rows of the right size are reshaped
(5, 1, 8, 8)
>>> conform((5, 1, 8, 8), (1, 8, 8), "input 'x'") is None
True
>>> conform((5, 8, 8, 1), (1, 8, 8), "input 'x'")
Traceback (most recent call last):
...
llmasos.errors.DataError: input 'x' expects shape (batch, 1, 8, 8) (channels first: batch, channels, height, width), got (5, 8, 8, 1), which is channels-last (the channel axis moved to the end): move the channels first with x.transpose(0, 3, 1, 2)
"""

from __future__ import annotations

import math
from typing import Sequence

from .errors import DataError

_CHANNELS_FIRST = {3: "batch, channels, height, width", 4: "batch, channels, depth, height, width"}


def conform(shape: Sequence[int], expected: Sequence[int | None], subject: str) -> tuple | None:
    """How an array of ``shape`` (batch axis first) becomes an input of row shape ``expected``
    (``None`` for a variable dimension): None when it already fits, the shape to ``reshape`` to
    when it is flat 2-D rows of the same size; otherwise a :class:`DataError` that begins with
    ``subject`` and names the expected layout."""
    shape, expected = tuple(shape), tuple(expected)
    rows = shape[1:]
    if fits(rows, expected):
        return None
    if len(shape) == 2 and None not in expected and shape[1] == math.prod(expected):
        return (shape[0], *expected)
    message = f"{subject} expects shape (batch, {', '.join('?' if d is None else str(d) for d in expected)})"
    if len(expected) in _CHANNELS_FIRST:
        message += f" (channels first: {_CHANNELS_FIRST[len(expected)]})"
    message += f", got {shape}"
    if channels_last(rows, expected):
        axes = (0, len(shape) - 1, *range(1, len(shape) - 1))
        raise DataError(f"{message}, which is channels-last (the channel axis moved to the end): move the "
                        f"channels first with x.transpose{axes}")
    if None not in expected and len(expected) > 1:
        message += f"; only flat rows (batch, {math.prod(expected)}) are reshaped to it"
    raise DataError(message)


def channels_last(rows: tuple, expected: tuple) -> bool:
    """True when ``rows`` is ``expected`` (channels first) with its channel axis moved last."""
    return (len(expected) >= 2 and len(rows) == len(expected) and expected[0] is not None
            and rows[-1] == expected[0] and fits(rows[:-1], expected[1:]))


def fits(rows: tuple, expected: tuple) -> bool:
    """Same rank, and every fixed dimension equal."""
    return len(rows) == len(expected) and all(e is None or r == e for r, e in zip(rows, expected))

