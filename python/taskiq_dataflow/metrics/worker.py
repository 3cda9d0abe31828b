"""A cluster worker's metrics, and the one endpoint of a `taskiq-dataflow worker` pool.

Each worker process counts the tasks it ran (by name) and their durations; the gauges (busy
slots, queued entries) and the object store bytes are sampled at each heartbeat, not per task.
A pool's processes write their values to files in a directory the pool's parent owns
(prometheus_client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR, set in the children's
environment only); the parent serves their sum at one endpoint. A restarted worker is a new
process with files of its own, and the files of the one that died still count, so the pool's
counters never go back; its gauges are dropped when the parent sees it exit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .engine import DURATION_BUCKETS
from .labels import DEFAULT_LABEL_LIMIT, children
from .serving import MetricsServer, PeriodicPush

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

    from ..cluster.worker import Worker

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class WorkerMetrics:
    """Metrics of one worker process, in a registry of its own (`registry`). In a pool the
    values go to the pool's directory (see the module docstring) and the parent serves them."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_label_values: int = DEFAULT_LABEL_LIMIT,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg, limit = self.registry, max_label_values
        self.started = children(
            Counter("dataflow_worker_tasks_started_total", "Tasks a worker started.", ["task"],
                    registry=reg), limit,
        )  # fmt: skip
        self.completed = children(
            Counter("dataflow_worker_tasks_completed_total", "Tasks a worker completed.",
                    ["task"], registry=reg), limit,
        )  # fmt: skip
        self.failed = children(
            Counter("dataflow_worker_tasks_failed_total", "Task attempts that failed (raised, "
                    "timed out or were cancelled) on a worker.", ["task"], registry=reg), limit,
        )  # fmt: skip
        self.duration = children(
            Histogram("dataflow_worker_task_duration_seconds", "Time a task ran on a worker.",
                      ["task"], buckets=buckets, registry=reg), limit,
        )  # fmt: skip
        self.stream_items = children(
            Counter("dataflow_stream_items_total", "Items produced by stream producers that "
                    "ran on the workers, by output key.", ["key"], registry=reg), limit,
        )  # fmt: skip
        self.busy = Gauge("dataflow_worker_busy_slots", "Task slots held by running tasks.",
                          registry=reg, multiprocess_mode="livesum")  # fmt: skip
        self.slots = Gauge("dataflow_worker_slots", "Task slots (--concurrency per process).",
                           registry=reg, multiprocess_mode="livesum")  # fmt: skip
        self.queued = Gauge("dataflow_worker_queued_tasks", "Tasks received, waiting for a "
                            "slot.", registry=reg, multiprocess_mode="livesum")  # fmt: skip
        store = Counter("dataflow_object_store_bytes_total", "Bytes of large values put into "
                        "or got from the JetStream object store by the workers.",
                        ["direction"], registry=reg)  # fmt: skip
        self._put, self._got = store.labels("put"), store.labels("get")
        self._stored = (0, 0)  # the store's byte counts at the last sample

    def task_started(self, name: str) -> float:
        self.started[name].inc()
        return time.perf_counter()

    def task_ended(self, name: str, started: float, ok: bool) -> None:
        self.duration[name].observe(time.perf_counter() - started)
        (self.completed if ok else self.failed)[name].inc()

    def task_done(self, name: str, started: float, fut: asyncio.Future[bool]) -> None:
        """Done callback of a task that went on in the loop (Worker._execute says if it ran ok)."""
        self.task_ended(name, started, not fut.cancelled() and fut.result())

    def stream_item(self, key: str) -> None:
        self.stream_items[key].inc()

    def sample(self, worker: Worker) -> None:
        """The worker's gauges and store counters now (called at each heartbeat)."""
        busy, slots, queued, put, got = worker.load()
        self.busy.set(busy)
        self.slots.set(slots)
        self.queued.set(queued)
        was_put, was_got = self._stored
        if put > was_put:
            self._put.inc(put - was_put)
        if got > was_got:
            self._got.inc(got - was_got)
        self._stored = (put, got)


class PoolMetrics:
    """The pool parent's side: the directory its children write to (made here, removed by
    `close()`), and the endpoint (and pushes) serving their sum with the pool's own counts."""

    def __init__(
        self,
        address: tuple[str, int] | None,
        push: str | None = None,
        push_interval: float = 15.0,
    ) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.directory = tempfile.mkdtemp(prefix="dataflow-metrics-")
        self.registry = CollectorRegistry()
        self.processes = 0
        self.restarts = 0
        self.server: MetricsServer | None = None
        self._push: PeriodicPush | None = None
        try:
            MultiProcessCollector(self.registry, path=self.directory)  # type: ignore[no-untyped-call]
            self.registry.register(_PoolCollector(self))
            if address is not None:
                self.server = MetricsServer(self.registry, address[1], address[0])
            if push is not None:
                self._push = PeriodicPush(self.registry, push, "taskiq-dataflow-worker",
                                          push_interval)  # fmt: skip
        except BaseException:
            self.close()
            raise

    def child_env(self) -> dict[str, str]:
        """The environment of a worker process writing to this pool's directory."""
        return {**os.environ, MULTIPROC_ENV: self.directory}

    def exited(self, pid: int) -> None:
        """A child is gone: its gauges no longer count (its counters still do)."""
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._push is not None:
            self._push.close()
            self._push = None
        shutil.rmtree(self.directory, ignore_errors=True)


class _PoolCollector:
    def __init__(self, pool: PoolMetrics) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "dataflow_worker_processes", "Worker processes running.", value=self._pool.processes
        )
        yield CounterMetricFamily(
            "dataflow_worker_restarts",
            "Worker processes that exited and were started again.",
            value=self._pool.restarts,
        )
