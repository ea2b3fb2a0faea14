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


WARMUP = 2  # runs before timing: the first ones allocate memory and pick kernels


def latency(sess: Any, feed: dict[str, np.ndarray], seconds: float = 0.5, min_runs: int = 5,
            max_runs: int = 10_000, warmup: int = WARMUP) -> np.ndarray:
    """Milliseconds per ``sess.run(feed)``, after ``warmup`` runs, for about ``seconds``."""
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_runs or (time.perf_counter() < deadline and len(times) < max_runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def bench(path: str | os.PathLike, providers: Any = ("cpu",), batches: Iterable[int] = (1, 8, 32), *,
          seconds: float = 1.0, length: int = 128, energy: bool = False) -> list[dict[str, Any]]:
    """One row per batch size: provider really used, median and p90 latency, samples per second.

    Inputs are random (see :func:`~llmasos.export.feeds.random_feed`); dynamic non-batch
    dimensions (sequence length) take ``length``. ``energy=True`` adds ``joules_per_prediction``
    and its ``energy_source`` (:mod:`llmasos.energy`: ``rapl``, ``nvml`` or ``estimate``), over
    every run of that batch size, warm-up included.

    ```python
    for row in export.bench("model.onnx", providers=["cuda", "cpu"], batches=(1, 32)):
        print(row["provider"], row["batch"], row["median_ms"], row["samples_per_s"])
    ```
    """
    from .. import energy as energy_meter

    proto = check_file(path)
    sess = session(path, providers)
    used = sess.get_providers()[0]
    rows = []
    for batch in batches:
        meter = energy_meter.Meter(warn=not rows) if energy else None   # an estimate warns once
        if meter is not None:
            meter.start()
        times = latency(sess, random_feed(proto, batch, length), seconds, warmup=WARMUP)
        median = float(np.median(times))
        row = {"provider": used, "batch": batch, "median_ms": median,
               "p90_ms": float(np.percentile(times, 90)), "samples_per_s": batch / median * 1e3}
        if meter is not None:
            drawn = meter.stop()
            row.update(joules_per_prediction=drawn.per((len(times) + WARMUP) * batch), energy_source=drawn.source)
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`bench` as an aligned text table (with joules per prediction and their
    source when measured)."""
    header = ("provider", "batch", "median ms", "p90 ms", "samples/s")
    body = [(r["provider"], str(r["batch"]), f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}",
             f"{r['samples_per_s']:,.0f}") for r in rows]
    if rows and "joules_per_prediction" in rows[0]:
        header += ("J/prediction", "source")
        body = [(*line, f"{r['joules_per_prediction']:.3g}", r["energy_source"]) for line, r in zip(body, rows)]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    fmt = lambda line: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths)))
    return "\n".join(fmt(line) for line in (header, *body))
