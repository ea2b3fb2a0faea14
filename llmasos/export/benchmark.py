"""Latency and throughput of an ONNX file in ONNX Runtime, on the providers really used.

>>> from llmasos import export

Usage::

    rows = export.bench("model.onnx", providers=["cpu"], batches=(1, 32))
    print(format_table(rows))
    provider             batch  median ms  p90 ms  samples/s
    CPUExecutionProvider     1      0.021   0.024     47,619
    CPUExecutionProvider    32      0.110   0.131    290,909
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .feeds import random_feed
from .providers import check_file, session


def latency(sess: Any, feed: dict[str, np.ndarray], seconds: float = 0.5, min_runs: int = 5,
            max_runs: int = 10_000, warmup: int = 2) -> np.ndarray:
    """Milliseconds per ``sess.run(feed)``, after ``warmup`` runs, for about ``seconds``."""
    for _ in range(warmup):  # the first runs allocate memory and pick kernels
        sess.run(None, feed)
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_runs or (time.perf_counter() < deadline and len(times) < max_runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def bench(path: str | os.PathLike, providers: Any = ("cpu",), batches: Iterable[int] = (1, 8, 32), *,
          seconds: float = 1.0, length: int = 128) -> list[dict[str, Any]]:
    """One row per batch size: provider really used, median and p90 latency, samples per second.

    Inputs are random (see :func:`~llmasos.export.feeds.random_feed`); dynamic non-batch
    dimensions (sequence length) take ``length``.

    ```python
    for row in export.bench("model.onnx", providers=["cuda", "cpu"], batches=(1, 32)):
        print(row["provider"], row["batch"], row["median_ms"], row["samples_per_s"])
    ```
    """
    proto = check_file(path)
    sess = session(path, providers)
    used = sess.get_providers()[0]
    rows = []
    for batch in batches:
        times = latency(sess, random_feed(proto, batch, length), seconds)
        median = float(np.median(times))
        rows.append({"provider": used, "batch": batch, "median_ms": median,
                     "p90_ms": float(np.percentile(times, 90)), "samples_per_s": batch / median * 1e3})
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`bench` as an aligned text table."""
    header = ("provider", "batch", "median ms", "p90 ms", "samples/s")
    body = [(r["provider"], str(r["batch"]), f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}",
             f"{r['samples_per_s']:,.0f}") for r in rows]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    fmt = lambda line: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths)))
    return "\n".join(fmt(line) for line in (header, *body))
