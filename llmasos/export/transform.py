"""One path for every file made from another (quantised, fp16, graph-optimised): staged
write, checker, verification against the source, metadata carried over, and a report of size,
latency and metric change.

Usage::

    report = export.quantize("model.onnx", "model.int8.onnx", eval_data=test)
    print(report)
    int8 dynamic: model.int8.onnx (from model.onnx, 1.2 s)
      size 10,532 bytes (0.40x of 26,203)
      latency batch 1: 0.008 ms vs 0.007 ms (0.84x speed-up); batch 32: 0.011 ms vs 0.011 ms (0.97x speed-up)
      verified against the source on 8 sample rows: max abs diff 0.0352, same top-1 on 100.0%
      accuracy 0.9647 -> 0.9647 (+0.00 points), same class on 100.0% of 397 rows
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..errors import SlowerError
from .feeds import random_feed
from .files import derived_external_data, file_size, save, staged, too_large
from .metadata import read_metadata, write_metadata
from .metrics import compare
from .providers import check_file, session
from .validate import DerivedCheck, check_onnx, verify_derived

if TYPE_CHECKING:
    from ..data import Dataset

LATENCY_BATCHES = (1, 32)
LATENCY_SECONDS = 0.3         # per batch size, all files together, after one warm-up run each
LATENCY_TURNS = (2, 200)      # at least and at most this many timed runs per file and batch size


@dataclass
class OptimizationReport:
    """What an optimisation did: sizes, latencies by batch size (ms), and the metric change.

    ```python
    report = export.quantize("model.onnx", "model.int8.onnx")
    print(report)                                     # method, size ratio, latency per batch, verification
    report.latency_ms[32], report.source_latency_ms[32]
    ```
    """

    path: str
    source: str
    method: str
    size_bytes: int
    source_size_bytes: int
    latency_ms: dict[int, float]
    source_latency_ms: dict[int, float]
    metric: dict[str, Any] | None
    seconds: float
    verification: DerivedCheck

    @property
    def size_ratio(self) -> float:
        return self.size_bytes / self.source_size_bytes

    def speedup(self, batch: int) -> float:
        return self.source_latency_ms[batch] / self.latency_ms[batch]

    def __str__(self) -> str:
        lines = [f"{self.method}: {self.path} (from {self.source}, {self.seconds:.1f} s)",
                 f"  size {self.size_bytes:,} bytes ({self.size_ratio:.2f}x of {self.source_size_bytes:,})",
                 "  latency " + "; ".join(f"batch {b}: {ms:.3f} ms vs {self.source_latency_ms[b]:.3f} ms "
                                          f"({self.speedup(b):.2f}x speed-up)" for b, ms in self.latency_ms.items()),
                 f"  {self.verification}"]
        m = self.metric
        if m and "metric" in m:
            change = f"{m['change'] * 100:+.2f} points" if m["metric"] == "accuracy" else f"{m['change']:+.4g}"
            lines.append(f"  {m['metric']} {m['reference']:.4f} -> {m['candidate']:.4f} ({change}), "
                         f"same class on {m['agreement']:.1%} of {m['rows']:,} rows")
        elif m:
            lines.append(f"  same class on {m['agreement']:.1%} of {m['rows']:,} rows, "
                         f"max abs diff {m['max_abs_diff']:.3g}")
        return "\n".join(lines)


@dataclass
class SourceTiming:
    """A source file's median latencies (ms by batch size), timed beside the first rewrite
    derived from it and reused by the next ones: :func:`~llmasos.export.optimize` may try three
    rewrites of one source, and timing a large source costs as much as timing its rewrite."""

    ms: dict[int, float] | None = None


def derive(src: str | os.PathLike, dst: str | os.PathLike, method: str, write: Callable[[str, str], None],
           eval_data: "Dataset | None" = None, *, check: str, metadata: dict[str, Any] | None = None,
           max_slowdown: float | None = None, source_timing: SourceTiming | None = None,
           unchanged: bool = False) -> OptimizationReport:
    """Make ``dst`` from ``src`` with ``write(src, tmp)`` and report on it.

    ``src`` is checked first (a missing or non-ONNX file, or missing external data, is an
    :class:`~llmasos.errors.OnnxFileError`); the result must pass onnx's checker and compute what
    ``src`` computes (:func:`~llmasos.export.validate.verify_derived` with ``check``: "fp32",
    "fp16" or "int8"; a :class:`~llmasos.errors.VerificationError` otherwise) before it is
    renamed into place, so a failure leaves any old ``dst`` untouched; it keeps ``src``'s
    metadata, with ``method`` appended to ``optimization`` and ``metadata`` added.

    With ``max_slowdown`` (e.g. 1.05), a result whose latency exceeds the source's by more than
    that factor at any measured batch size is not written either: :class:`~llmasos.errors.SlowerError`.
    ``source_timing`` shares the source's latencies between calls: timed here if it holds none.
    ``unchanged``: ``write`` copies the graph as it is, so its latencies are the source's (timing
    the copy against figures taken earlier would report noise as a speed-up).
    """
    started = time.perf_counter()
    source = check_file(src)
    with staged(dst) as tmp:
        write(os.fspath(src), os.fspath(tmp))
        proto = onnx.load(os.fspath(tmp))
        done = read_metadata(source).get("optimization") or []
        write_metadata(proto, {**read_metadata(source), **(metadata or {}), "optimization": [*done, method]})
        save(proto, tmp, external_data=derived_external_data(src) or too_large(proto))
        check_onnx(tmp)
        verification = verify_derived(src, tmp, check)
        metric = compare(src, tmp, eval_data) if eval_data is not None else None
        before, after = _timed(Path(src), tmp, source_timing or SourceTiming(), unchanged)
        ratios = {batch: after[batch] / before[batch] for batch in after}
        if max_slowdown is not None and max(ratios.values()) > max_slowdown:
            raise SlowerError(f"{method} made {os.fspath(src)} slower (" + ", ".join(
                f"batch {batch}: {ratio:.2f}x its latency" for batch, ratio in ratios.items()) +
                f", above {max_slowdown:g}x); the file is not written", ratios)
        size = file_size(tmp)
    return OptimizationReport(path=os.fspath(dst), source=os.fspath(src), method=method, size_bytes=size,
                              source_size_bytes=file_size(src), latency_ms=after,
                              source_latency_ms=before, metric=metric,
                              seconds=time.perf_counter() - started, verification=verification)


def _timed(src: Path, result: Path, timing: SourceTiming,
           unchanged: bool = False) -> tuple[dict[int, float], dict[int, float]]:
    """The source's latencies (timed in turns with ``result`` unless ``timing`` has them) and the
    result's: the source's own when the result is an ``unchanged`` copy of it."""
    if unchanged:
        if timing.ms is None:
            (timing.ms,) = _latencies(src)
        return timing.ms, dict(timing.ms)
    if timing.ms is None:
        timing.ms, after = _latencies(src, result)
    else:
        (after,) = _latencies(result)
    return timing.ms, after


def _latencies(*paths: Path) -> list[dict[int, float]]:
    """Median ms per batch size of each file, cheap enough for a big model at batch 32 (seconds a
    run on a small CPU): one warm-up run each, then the files take turns, one run each, so load on
    a shared machine hits them alike, until ``LATENCY_SECONDS`` have passed, with two turns at
    least (one is too noisy on a loaded machine): a small model gets many turns, BERT-base at
    batch 32 two, where two warm-ups and three rounds cost five runs a file."""
    protos, sessions = [check_file(p) for p in paths], [session(p) for p in paths]
    out: list[dict[int, float]] = [{} for _ in paths]
    for batch in LATENCY_BATCHES:
        feeds = [random_feed(proto, batch) for proto in protos]
        for sess, feed in zip(sessions, feeds):  # the first run allocates memory and picks kernels
            sess.run(None, feed)
        times: list[list[float]] = [[] for _ in paths]
        deadline = time.perf_counter() + LATENCY_SECONDS
        while len(times[0]) < LATENCY_TURNS[0] or (len(times[0]) < LATENCY_TURNS[1] and time.perf_counter() < deadline):
            for sess, feed, found in zip(sessions, feeds, times):
                start = time.perf_counter()
                sess.run(None, feed)
                found.append((time.perf_counter() - start) * 1e3)
        for result, found in zip(out, times):
            result[batch] = float(np.median(found))
    return out
