"""The engine's metrics: what its runs started, completed, failed and retried by task name, the
durations of tasks run in its process, runs by status, and (read when scraped, so they cost the
runs nothing) tasks in flight, queue depth per pool, redeliveries and object store bytes.

Counting is per batch of completions (the driver hands each batch here once), never by
subscribing to step events, which would make the run build an event object per task.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..transports.base import Completion, Job
from ..transports.local import LocalTransport
from .labels import DEFAULT_LABEL_LIMIT
from .series import Counts, Durations

if TYPE_CHECKING:
    import asyncio

    from ..driver import Driver
    from .serving import MetricsServer

# seconds: from quick in-process steps to hour-long batch jobs
DURATION_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 3600.0, float("inf"),
)  # fmt: skip

# transport counters (Transport.stats()) exported as counters summed over the engine's runs
_STATS = ("redeliveries", "object_store_bytes_put", "object_store_bytes_get")


class EngineMetrics:
    """Prometheus metrics of one or more engines, in a registry of their own (`registry`), not
    prometheus_client's global one: two engines (or a test and a service) never collide.

        metrics = EngineMetrics()
        engine = ExecutionEngine(broker, dag, metrics=metrics)
        server = metrics.serve(9464)          # http://127.0.0.1:9464/metrics
        # or mount it in your own web app: prometheus_client.generate_latest(metrics.registry)
        # or push: metrics.push("http://pushgateway:9091", job="nightly")

    At most `max_label_values` distinct task names (and stream keys) get a series of their
    own; the rest are counted under "(other)". `buckets` are the duration histogram's;
    `durations=False` does not time in-process tasks (timing each one is most of what metrics
    cost a run of many quick tasks: see docs/metrics.md)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_label_values: int = DEFAULT_LABEL_LIMIT,
        buckets: Sequence[float] = DURATION_BUCKETS,
        durations: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.durations = durations
        reg, limit = self.registry, max_label_values
        self.started = Counts(
            "dataflow_tasks_started", "Task attempts dispatched (retries too; a redelivery "
            "after a worker loss is not a new start).", "task", limit,
        )  # fmt: skip
        self.completed = Counts(
            "dataflow_tasks_completed", "Tasks that completed (from the result cache too).",
            "task", limit,
        )  # fmt: skip
        self.failed = Counts(
            "dataflow_tasks_failed", "Tasks that failed for good (after their retries).",
            "task", limit,
        )  # fmt: skip
        self.retried = Counts(
            "dataflow_tasks_retried", "Failed attempts that are retried.", "task", limit
        )
        self.duration = Durations(
            "dataflow_task_duration_seconds", "Time a task ran in the engine's process (tasks "
            "on cluster workers: dataflow_worker_task_duration_seconds).", buckets, limit,
        )  # fmt: skip
        self.stream_items = Counts(
            "dataflow_stream_items", "Items produced by stream producers that ran in the "
            "engine's process, by output key.", "key", limit,
        )  # fmt: skip
        for series in (self.started, self.completed, self.failed, self.retried,
                       self.stream_items):  # fmt: skip
            reg.register(series)
        if durations:
            reg.register(self.duration)
        runs = Counter("dataflow_runs_total", "Runs that ended, by status.", ["status"],
                       registry=reg)  # fmt: skip
        self.runs: dict[str, Any] = {
            s: runs.labels(s) for s in ("succeeded", "failed", "cancelled")
        }
        self._live: set[RunMeter] = set()
        self._ended_stats: collections.Counter[str] = collections.Counter()
        # a run's transport counters move from live to ended at once for a scrape: a counter
        # seen to go down would read as a reset
        self._books = threading.Lock()
        reg.register(_LiveCollector(self))

    # -- entry points -----------------------------------------------------------------------------

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> MetricsServer:
        """Serve the registry on http://HOST:PORT/metrics from a thread (port 0: a free one,
        see `.url`); returns a MetricsServer to `close()`."""
        from .serving import serve_metrics

        return serve_metrics(self.registry, port, host)

    def push(self, gateway: str, job: str = "taskiq-dataflow", **grouping: str) -> None:
        """Push the registry to a Prometheus Pushgateway (for batch runs nobody scrapes)."""
        from .serving import push_metrics

        push_metrics(self.registry, gateway, job, grouping)

    # -- the engine's side ------------------------------------------------------------------------

    def local_transport(self, executor: Any) -> LocalTransport:
        """The in-process transport for a run, timing each task (unless durations=False)."""
        if not self.durations:
            return LocalTransport(executor)
        return TimedLocalTransport(self, executor)

    def run_meter(self, driver: Driver) -> RunMeter:
        return RunMeter(self, driver)

    def _begun(self, meter: RunMeter) -> None:
        with self._books:
            self._live.add(meter)

    def _ended(self, meter: RunMeter, status: str, stats: dict[str, int]) -> None:
        with self._books:
            self._live.discard(meter)
            for key in _STATS:
                self._ended_stats[key] += stats.get(key, 0)
        self.runs.get(status, self.runs["failed"]).inc()

    # -- read when scraped (from the server's thread) ---------------------------------------------

    def _live_state(self) -> tuple[int, int, dict[str, int], collections.Counter[str]]:
        runs, in_flight = 0, 0
        depth: collections.Counter[str] = collections.Counter()
        with self._books:
            stats = collections.Counter(self._ended_stats)
            for meter in self._live:
                transport = meter.driver.transport
                runs += 1
                in_flight += meter.driver.state.scheduler.running
                depth.update(transport.queue_depths())
                live = transport.stats()
                for key in _STATS:
                    stats[key] += live.get(key, 0)
        return runs, in_flight, depth, stats


class RunMeter:
    """One run's counting, called by its driver once per batch (never per task when the engine
    has no metrics: the driver then holds None)."""

    __slots__ = ("driver", "metrics")

    def __init__(self, metrics: EngineMetrics, driver: Driver) -> None:
        self.metrics, self.driver = metrics, driver

    def dispatched(self, jobs: list[Job]) -> None:
        if len(jobs) == 1:
            self.metrics.started.add(jobs[0].name)
            return
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.name] = counts.get(job.name, 0) + 1
        self.metrics.started.add_many(counts)

    def before(self, batch: list[Completion]) -> tuple[list[Completion], int]:
        """The batch's completions of the attempts in flight (not late duplicates), and how
        many failures the run had: what `after` compares the state with once it took the batch."""
        attempts = self.driver.state.attempts
        live = [c for c in batch if attempts[c.node] == c.attempt]
        return live, len(self.driver.state.failures)

    def after(self, seen: tuple[list[Completion], int]) -> None:
        live, failures_before = seen
        state, metrics = self.driver.state, self.metrics
        # the columns may have been replaced by this batch (tasks added): read them now
        names, attempts, state_of = state.names, state.attempts, state.scheduler.state
        done: dict[str, int] = {}
        retried: dict[str, int] = {}
        for c in live:
            node = c.node
            now = attempts[node]
            if now == 0:
                if c.ok and state_of(node) == "done":  # not refused (outputs that do not split)
                    name = names[node]
                    done[name] = done.get(name, 0) + 1
            elif now != c.attempt:  # the next attempt is in flight or waits for its delay
                name = names[node]
                retried[name] = retried.get(name, 0) + 1
            # else held (a consumer started early with its producer): counted when handed out
        if done:
            metrics.completed.add_many(done)
        if retried:
            metrics.retried.add_many(retried)
        if len(state.failures) > failures_before:
            failed: dict[str, int] = {}
            for error in state.failures[failures_before:]:
                failed[error.task_name] = failed.get(error.task_name, 0) + 1
            metrics.failed.add_many(failed)

    def begun(self) -> None:
        self.metrics._begun(self)

    def stream_item(self, key: str) -> None:
        self.metrics.stream_items.add(key)

    def ended(self, status: str, stats: dict[str, int]) -> None:
        self.metrics._ended(self, status, stats)


class TimedLocalTransport(LocalTransport):
    """LocalTransport that observes each task's duration in the engine's histogram: a task
    that completes within its first step is timed around that step, one that goes on (a Task,
    a thread) from its kick to its completion."""

    def __init__(self, metrics: EngineMetrics, executor: Any) -> None:
        super().__init__(executor)
        self._durations = metrics.duration
        self._since: dict[tuple[int, int], float] = {}

    def steps_in_place(self) -> bool:
        return False  # every task through kick, where it is timed

    def kick(self, jobs: list[Job]) -> None:
        clock, since, kick, done = time.perf_counter, self._since, super().kick, self.sink.done
        quick: list[tuple[str, float]] = []
        for job in jobs:
            before = len(done)
            start = clock()
            kick([job])
            if len(done) > before:  # it completed at once
                quick.append((job.name, clock() - start))
            else:
                since[job.node, job.attempt] = start
        if quick:
            self._durations.observe_many(quick)

    def _finished(self, job: Job, fut: asyncio.Future[Any]) -> None:
        start = self._since.pop((job.node, job.attempt), None)
        if start is not None:
            self._durations.observe(job.name, time.perf_counter() - start)
        super()._finished(job, fut)


class _LiveCollector:
    """The gauges and transport counters read from the engine's runs in progress when scraped."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        runs, in_flight, depth, stats = self._metrics._live_state()
        yield GaugeMetricFamily("dataflow_runs_in_progress", "Runs in progress.", value=runs)
        yield GaugeMetricFamily(
            "dataflow_tasks_in_flight", "Tasks dispatched and not yet completed.", value=in_flight
        )
        queue = GaugeMetricFamily(
            "dataflow_queue_depth",
            "Tasks waiting in the engine for a worker of the pool with room (cluster runs).",
            labels=["pool"],
        )
        for pool, n in sorted(depth.items()):
            queue.add_metric([pool], n)
        yield queue
        yield CounterMetricFamily(
            "dataflow_redeliveries",
            "Task frames sent again: unclaimed, or their worker was lost (cluster runs).",
            value=stats["redeliveries"],
        )
        store = CounterMetricFamily(
            "dataflow_object_store_bytes",
            "Bytes of large values put into or got from the JetStream object store.",
            labels=["direction"],
        )
        store.add_metric(["put"], stats["object_store_bytes_put"])
        store.add_metric(["get"], stats["object_store_bytes_get"])
        yield store
