"""What every source gives a :class:`~llmasos.data.Dataset`: rows in file order, in chunks that
can be read in any order; and the sizes that decide when a file streams."""

from __future__ import annotations

from typing import Iterator

import numpy as np

# Readers look these up as base.STREAM_BYTES / base.CHUNK_BYTES when they run, so setting them
# here (as the streaming tests do) changes every reader at once.
STREAM_BYTES = 256 * 2**20    # files above this size stream unless chunk_size says otherwise
CHUNK_BYTES = 32 * 2**20      # default size of a streamed CSV chunk, in bytes of text

Block = tuple[np.ndarray, "np.ndarray | None"]                   # (x, y)


class Source:
    name: str
    n_rows: int
    row_shape: tuple
    has_labels: bool
    streaming: bool = True
    chunk_count: int
    features: list | None = None     # the feature columns' names, when the source has named columns

    def blocks(self, index: int) -> Iterator[Block]:
        """Validated raw ``(x, y)`` blocks of chunk ``index``."""
        for x, y, _ in self.blocks_at(index):
            yield x, y

    def blocks_at(self, index: int) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        """Like :meth:`blocks`, with the row number of each block's first row."""
        raise NotImplementedError


class InMemory(Source):
    streaming = False
    chunk_count = 1

    def __init__(self, x: np.ndarray, y: np.ndarray | None, name: str, features: list | None = None) -> None:
        self.x, self.y, self.name, self.features = x, y, name, features
        self.n_rows = len(x)
        self.row_shape = tuple(x.shape[1:])
        self.has_labels = y is not None

    def blocks_at(self, index):
        yield self.x, self.y, 0
