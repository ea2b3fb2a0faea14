"""Prometheus metrics for one server, in a registry of its own (two Deployers never collide).

>>> metrics = Metrics()
>>> metrics.batch_size.labels(model="m").observe(4)
>>> b'llmasos_batch_size_sum{model="m"} 4.0' in metrics.exposition()[0]
True
"""

from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The counters, histograms and gauges the server keeps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("llmasos_requests", "Inference requests answered successfully",
                                ["model", "version"], registry=r)
        self.errors = Counter("llmasos_errors", "Requests answered with an error, by HTTP status",
                              ["status"], registry=r)
        self.latency = Histogram("llmasos_request_seconds", "Inference request latency, body read "
                                 "to response", ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("llmasos_batch_size", "Rows in each ONNX Runtime run",
                                    ["model"], buckets=_BATCH_BUCKETS, registry=r)
        self.loaded = Gauge("llmasos_model_version_loaded", "1 for every model version being served",
                            ["model", "version"], registry=r)
        self.loads = Counter("llmasos_model_loads", "Model version loads, by result",
                             ["model", "result"], registry=r)
        self.in_flight = Gauge("llmasos_requests_in_flight", "Inference requests being served",
                               registry=r)

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
