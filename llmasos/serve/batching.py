"""Dynamic batching: concurrent requests merged into one ONNX Runtime run, then split back.

Requests queue until ``max_batch`` rows wait or the oldest has waited ``timeout_s``; those with the
same per-row shapes and dtypes are concatenated along the first axis, run once, and each gets its
own rows of every output. While a batch runs the next one gathers, so a busy model batches more.
The worker task exists only while requests wait, so a retired model version leaves nothing behind.

>>> import asyncio
>>> batcher = Batcher(lambda feeds: {"y": feeds["x"] * 2}, max_batch=8, timeout_s=0.01)
>>> async def two():
...     return await asyncio.gather(*(batcher.submit({"x": np.full((1, 2), i)}) for i in (1, 2)))
>>> [out["y"].tolist() for out in asyncio.run(two())]
[[[2, 2]], [[4, 4]]]
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from anyio import to_thread

Feeds = dict[str, np.ndarray]


@dataclass
class _Waiting:
    feeds: Feeds
    rows: int
    key: tuple
    future: asyncio.Future
    deadline: float


def rows_of(feeds: Feeds) -> int | None:
    """The common first dimension of every input, or None when there is none."""
    firsts = {array.shape[0] if array.ndim else None for array in feeds.values()}
    return firsts.pop() if len(firsts) == 1 else None


class Batcher:
    """Merge concurrent ``submit`` calls into calls of ``run`` of at most ``max_batch`` rows."""

    def __init__(self, run: Callable[[Feeds], Feeds], max_batch: int, timeout_s: float) -> None:
        self._run, self._max, self._timeout = run, max_batch, timeout_s
        self._queue: deque[_Waiting] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, feeds: Feeds) -> Feeds:
        """Run ``feeds`` (rows along the first axis) as part of a batch; returns its own outputs."""
        rows = rows_of(feeds)
        if rows is None or rows == 0 or rows >= self._max:
            return await to_thread.run_sync(self._run, feeds)
        loop = asyncio.get_running_loop()
        key = tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in feeds.items()))
        waiting = _Waiting(feeds, rows, key, loop.create_future(), loop.time() + self._timeout)
        self._queue.append(waiting)
        if self._worker is None or self._worker.done():
            # A fresh event per worker: an event binds to the loop it first waits on.
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._work())
        else:
            self._arrived.set()
        return await waiting.future

    async def _work(self) -> None:
        while self._queue:
            batch = await self._gather()
            results = await to_thread.run_sync(self._run_merged, batch)
            for waiting, result in zip(batch, results):
                if waiting.future.done():  # the client went away
                    continue
                if isinstance(result, Exception):
                    waiting.future.set_exception(result)
                else:
                    waiting.future.set_result(result)

    def _ready_rows(self, key: tuple) -> int:
        return sum(w.rows for w in self._queue if w.key == key)

    async def _gather(self) -> list[_Waiting]:
        """Wait until a full batch is queued or the oldest request's time is up, then take it."""
        loop = asyncio.get_running_loop()
        first = self._queue[0]
        while self._ready_rows(first.key) < self._max:
            remaining = first.deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                break
        batch, rest, rows = [], deque(), 0
        for waiting in self._queue:
            if waiting.key == first.key and rows + waiting.rows <= self._max:
                batch.append(waiting)
                rows += waiting.rows
            else:
                rest.append(waiting)
        self._queue = rest
        return batch

    def _run_merged(self, batch: list[_Waiting]) -> list[Feeds | Exception]:
        """Each request's outputs, or the error its own inputs cause."""
        if len(batch) > 1:
            merged = {name: np.concatenate([w.feeds[name] for w in batch]) for name in batch[0].feeds}
            try:
                outputs = self._run(merged)
            except Exception:  # one request's values can sink a batch: run each alone below
                pass
            else:
                cuts = np.cumsum([w.rows for w in batch])[:-1]
                split = {name: np.split(array, cuts) for name, array in outputs.items()}
                return [{name: parts[i] for name, parts in split.items()} for i in range(len(batch))]
        return [self._run_alone(w.feeds) for w in batch]

    def _run_alone(self, feeds: Feeds) -> Feeds | Exception:
        try:
            return self._run(feeds)
        except Exception as exc:  # handed to that request's waiter
            return exc
