"""Prometheus metrics of the engine and of every worker, off by default (see docs/metrics.md).

Engine: `ExecutionEngine(..., metrics=EngineMetrics())`, then `metrics.serve(port)`, mount
`metrics.registry` in your own /metrics, or `metrics.push(gateway)`. Workers: `taskiq-dataflow
worker ... --metrics [HOST:]PORT` serves one endpoint for all the pool's processes.
"""

from __future__ import annotations

from .engine import DURATION_BUCKETS, EngineMetrics
from .labels import DEFAULT_LABEL_LIMIT, OTHER
from .serving import MetricsServer, parse_address, push_metrics, serve_metrics
from .worker import WorkerMetrics

__all__ = [
    "DEFAULT_LABEL_LIMIT",
    "DURATION_BUCKETS",
    "OTHER",
    "EngineMetrics",
    "MetricsServer",
    "WorkerMetrics",
    "parse_address",
    "push_metrics",
    "serve_metrics",
]
