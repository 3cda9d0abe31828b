"""What the dashboard knows of an engine's runs, at a cost the engine does not notice.

The budget: in process a task costs the engine ~2.5 µs, so the dashboard may add ~125 ns per
task. Per-step events cost far more, so none is subscribed to. Instead:

- counts per task name come from the Rust scheduler in one call per look
  (`Scheduler.counts_by_label`, each node labelled once by its task name's index);
- the run's state calls its monitor once per batch (`completed(batch)`, `dispatched(nodes)`),
  which keeps a reference to the batch and a time, nothing per task; each look samples the
  newest batches for the task stream and the mean durations;
- the rare paths (a failure, a cache hit) call it per task;
- throughput is the scheduler's done count between two looks; workers come from the
  transport's heartbeats.

A run's monitor is made when the engine prepares the run (`ExecutionEngine.observe_runs`);
once the run ends its last snapshot is kept and the run's state is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from random import random
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..events import Event, LogEntry, RunFinished, RunStarted, TaskError
from .limits import (
    KEPT_PER_TICK,
    MAX_BARS,
    MAX_FAILURES,
    MAX_LOGS,
    MAX_RUNS,
    MAX_STREAMS,
    MAX_WORKERS,
    SCAN_PER_TICK,
    STARTS_KEPT,
    TICK,
    clip,
    clip_end,
)
from .views import (
    add_point,
    capped_rows,
    collapsed_graph,
    counts_of,
    name_row,
    stream_view,
    summary,
)

if TYPE_CHECKING:
    from ..driver import Driver
    from ..execution_engine import ExecutionEngine
    from ..transports.base import Completion

HOST = socket.gethostname()


class RunMonitor:
    """One run as the dashboard sees it. The run's state calls `completed`, `dispatched`,
    `failed` and `cached`; the dashboard calls `tick()` every TICK and `snapshot()`."""

    def __init__(
        self, driver: Driver, label: str | None = None, labels: LabelCache | None = None
    ) -> None:
        self.driver: Driver | None = driver
        self._cache = labels if labels is not None else LabelCache()
        state = driver.state
        self.run_id, self.label = state.run_id, label
        self.status = "running"
        self.started_at = time.time()
        self._t0 = time.monotonic()  # started_at on the monotonic clock
        self.finished_at: float | None = None
        self.total = len(state.tasks)
        # the batches since the last tick, thinned evenly over it (see _Batches)
        self._dispatches: _Batches[int] = _Batches()
        self._completions: _Batches[Completion] = _Batches()
        self._starts: dict[int, float] = {}  # node -> start, of dispatches sampled so far
        self._bars: deque[tuple[str | None, str, float, float, bool]] = deque(maxlen=MAX_BARS)
        self._durations: dict[str, list[float]] = {}  # name -> [sum, count] of sampled ones
        self._cached: dict[str, int] = {}  # task name -> cache hits
        self.failures: list[dict[str, Any]] = []
        self._failed_nodes: set[int] = set()
        self.logs: deque[dict[str, Any]] = deque(maxlen=MAX_LOGS)
        self._throughput: list[list[float]] = []
        self._last = (0.0, 0)  # (t, finished tasks) at the previous tick
        self._labels: dict[str, int] = {}
        self._names: list[str] = []  # label -> name
        self._edges: tuple[int, list[tuple[int, int, int]]] = (-1, [])  # (labelled, edges)
        self._final: dict[str, Any] | None = None
        self.version = 0  # bumped when a tick saw something change
        self._seen: tuple[Any, ...] = ()
        state.monitor = self

    # -- called by the run's state (per batch; per task only on rare paths) ---------------------

    def completed(self, batch: list[Completion]) -> None:
        self._completions.add(batch)

    def dispatched(self, nodes: list[int]) -> None:
        self._dispatches.add(nodes)

    def failed(self, completion: Completion, name: str) -> None:
        self._failed_nodes.add(completion.node)
        if len(self.failures) >= MAX_FAILURES:
            return
        error = completion.value
        if not isinstance(error, TaskError):
            error = TaskError(name, type(error).__name__, str(error))
        self.failures.append(
            {
                "task": clip(name),
                "node": completion.node,
                "attempt": completion.attempt,
                "type": clip(error.type),
                "message": clip(error.message),
                "traceback": clip_end(error.traceback),
                "t": time.monotonic() - self._t0,
            }
        )

    def cached(self, node: int) -> None:
        if self.driver is not None:
            name = self.driver.state.names[node]
            self._cached[name] = self._cached.get(name, 0) + 1

    def logged(self, task: str, records: Sequence[LogEntry]) -> None:
        """What one execution of a run's task logged (called by the run's state)."""
        started, logs = self.started_at, self.logs
        for r in records[-MAX_LOGS:]:
            logs.append(
                {
                    "t": r.time - started,
                    "level": clip(r.level, 20),
                    "task": clip(task),
                    "message": clip(r.message),
                }
            )

    # -- the run's start and end (its events) ---------------------------------------------------

    def started(self) -> None:
        self.started_at, self._t0 = time.time(), time.monotonic()

    def finished(self, status: str) -> None:
        self.tick()
        self.status = status
        self.finished_at = time.time()
        self.detach()

    def detach(self) -> None:
        """Stop watching: the snapshot as of now is kept, and the run's values, graph and
        scheduler are no longer held."""
        if self.driver is None:
            return
        self._final = self._build()
        self.version += 1
        self.driver.state.monitor = None
        self.driver = None
        self._dispatches.take()
        self._completions.take()
        self._starts.clear()

    # -- looks ----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Sample what happened since the last tick: throughput, task stream bars."""
        driver = self.driver
        if driver is None:
            return
        state = driver.state
        now = time.monotonic() - self._t0
        counts = state.scheduler.counts()
        finished = counts["done"] + counts["failed"] + counts["skipped"]
        last_t, last_n = self._last
        if now > last_t:
            add_point(self._throughput, now, (finished - last_n) / (now - last_t))
        self._last = (now, finished)
        self._sample(state.names)
        seen = (finished, counts["running"], len(self.failures), len(self.logs), state.status)
        if seen != self._seen:
            self._seen = seen
            self.version += 1

    def _sample(self, names: Any) -> None:
        t0, starts = self._t0, self._starts
        for at, nodes in self._dispatches.take():
            starts.update(dict.fromkeys(nodes, at - t0))
        if len(starts) > STARTS_KEPT:
            keep = list(starts.items())[-STARTS_KEPT // 2 :]
            starts.clear()
            starts.update(keep)
        found: list[tuple[str | None, str, float, float, bool]] = []
        durations = self._durations
        for at, batch in self._completions.take():
            end = at - t0
            for c in batch:
                start = starts.pop(c.node, None)
                if start is None:
                    continue
                name = clip(names[c.node])
                found.append((c.worker, name, start, end, c.ok))
                if c.ok:
                    total = durations.get(name)
                    if total is None:
                        total = durations[name] = [0.0, 0]
                    total[0] += end - start
                    total[1] += 1
        if len(found) > SCAN_PER_TICK:  # evenly over the tick, as many as the page shows
            found = found[:: -(-len(found) // SCAN_PER_TICK)]
        self._bars.extend(found)

    def summary(self) -> dict[str, Any]:
        if self._final is not None:
            return summary(self._final)
        driver = self.driver
        assert driver is not None
        state = driver.state
        counts = state.scheduler.counts()
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": None,
            "total": len(state.tasks),
            "done": counts["done"],
            "failed": max(counts["failed"], len(state.failures)),
            "label": self.label,
        }

    def snapshot(self) -> dict[str, Any]:
        """The run's Snapshot (dashboard-schema.md), now."""
        if self._final is not None:
            return {**self._final, "now": time.time()}
        return self._build()

    def _build(self) -> dict[str, Any]:
        driver = self.driver
        assert driver is not None
        state = driver.state
        now = time.time()
        rows = self._rows(state)
        totals = [row["total"] for row in rows]  # per label, before the cap
        durations = {name: (s, int(n)) for name, (s, n) in self._durations.items()}
        rows, moved = capped_rows(rows, durations)
        counts = counts_of(rows)
        elapsed = (self.finished_at or now) - self.started_at
        stats = driver.stats or driver.transport.stats()
        workers = self._workers(driver, counts)
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "now": now,
            "elapsed": elapsed,
            "total": len(state.tasks),
            "label": self.label,
            "counts": counts,
            "by_name": rows,
            "graph": self._graph(state, totals, moved),
            "stream": stream_view(list(self._bars), elapsed),
            "throughput": [list(p) for p in self._throughput],
            "workers": workers,
            "redeliveries": int(stats.get("redeliveries", 0)),
            "lost_workers": sum(1 for w in workers if w["state"] == "lost"),
            "failures": list(self.failures),
            "streams": self._streams(state),
            "logs": list(self.logs),
        }

    def _label(self, state: Any) -> None:
        """Label the nodes not labelled yet (those added since) by their task name's index."""
        scheduler, names = state.scheduler, state.names
        first = scheduler.labelled
        if first >= len(names):
            return
        if first == 0:
            labels, index, shown = self._cache.of(names)
            self._labels, self._names = dict(index), list(shown)
            scheduler.set_labels(0, labels)
            return
        index = self._labels
        fresh = names[first:]
        for name in dict.fromkeys(fresh):
            if name not in index:
                index[name] = len(self._names)
                self._names.append(clip(name))
        scheduler.set_labels(first, list(map(index.__getitem__, fresh)))

    def _rows(self, state: Any) -> list[dict[str, Any]]:
        self._label(state)
        scheduler = state.scheduler
        per_label = scheduler.counts_by_label()
        rows = [name_row(name) for name in self._names]
        for row, (pending, ready, running, done, failed, skipped) in zip(
            rows, per_label, strict=False
        ):
            row.update(
                total=pending + ready + running + done + failed + skipped,
                waiting=pending + ready,
                running=running,
                done=done,
                failed=failed,
                skipped=skipped,
            )
        names = state.names
        for name, hits in self._cached.items():
            row = rows[self._labels[name]]
            row["cached"] += hits
            row["done"] -= hits
        if self.status != "running" or state.status is not None:
            # the run is over: fail_fast stopped before the scheduler heard of its failure,
            # and what was still in flight was dropped (counted as skipped)
            for node in self._failed_nodes:
                if scheduler.state(node) == "running":
                    row = rows[self._labels[names[node]]]
                    row["running"] -= 1
                    row["failed"] += 1
            for row in rows:
                row["skipped"] += row["running"]
                row["running"] = 0
        return rows

    def _graph(self, state: Any, totals: list[int], moved: dict[str, str]) -> dict[str, Any]:
        scheduler = state.scheduler
        labelled = scheduler.labelled
        if self._edges[0] != labelled:  # the graph changes only when the run grows
            self._edges = (labelled, self._cache.edges(state.names, scheduler, labelled))
        names = self._names
        edges = [(names[s], names[t], n) for s, t, n in self._edges[1]]
        graph, inputs = state.graph, []
        for key in state.inputs:
            consumers = graph.consumers(key)
            if consumers:
                inputs.append((key, [state.names[c] for c in consumers[:1000]]))
        return collapsed_graph(list(zip(names, totals, strict=True)), edges, inputs, moved)

    def _workers(self, driver: Driver, counts: dict[str, int]) -> list[dict[str, Any]]:
        workers = getattr(driver.transport, "workers", None)
        if workers is not None:
            return list(workers())[:MAX_WORKERS]
        slots = driver.limit if driver.limit is not None else driver.state.config.max_parallel
        if driver.slots is not None:
            slots = driver.slots.total
        return [
            {
                "id": "in-process",
                "pool": None,
                "host": HOST,
                "pid": os.getpid(),
                "slots": slots or None,
                "in_use": counts["running"],
                "last_heartbeat": None,
                "state": "alive",
                "done": counts["done"] + counts["cached"],
            }
        ]

    def _streams(self, state: Any) -> list[dict[str, Any]]:
        streaming = state.streaming
        if streaming is None:
            return []
        out = []
        for producer, ends in list(streaming.subscribers.items()):
            name = state.names[producer]
            for end in ends:
                queue = getattr(end, "_queue", None)
                if queue is None:
                    continue  # a route to another process: its counts are on the link's ends
                out.append(
                    {
                        "key": clip(end.key),
                        "producer": clip(name),
                        "items": end.items,
                        "credits": max(queue.maxsize - queue.qsize(), 0),
                        "state": "closed" if end.closed else "open",
                    }
                )
                if len(out) >= MAX_STREAMS:
                    return out
        return out


class LabelCache:
    """Each node's label (its task name's index) for the task-name lists of the last few DAGs
    run: every run of a DAG shares its names list, so a service running one DAG again and
    again labels its nodes once."""

    KEPT = 8

    def __init__(self) -> None:
        # id(names) -> (names itself, so the id stays its own; its length; labels, index, names)
        self._found: dict[int, tuple[Any, int, list[int], dict[str, int], list[str]]] = {}
        self._edges: dict[int, tuple[Any, int, list[tuple[int, int, int]]]] = {}

    def edges(self, names: Any, scheduler: Any, labelled: int) -> list[tuple[int, int, int]]:
        """The scheduler's edges by label; the same for every run of a DAG (not grown)."""
        found = self._edges.get(id(names))
        if found is not None and found[0] is names and found[1] == labelled:
            return found[2]
        edges: list[tuple[int, int, int]] = scheduler.edge_counts_by_label()
        if labelled == len(names) and id(names) in self._found:
            if len(self._edges) >= self.KEPT:
                del self._edges[next(iter(self._edges))]
            self._edges[id(names)] = (names, labelled, edges)
        return edges

    def of(self, names: Any) -> tuple[list[int], dict[str, int], list[str]]:
        found = self._found.get(id(names))
        if found is not None and found[0] is names and found[1] == len(names):
            return found[2], found[3], found[4]
        index: dict[str, int] = {}
        shown: list[str] = []
        for name in dict.fromkeys(names):
            index[name] = len(shown)
            shown.append(clip(name))
        labels = list(map(index.__getitem__, names))
        if len(self._found) >= self.KEPT:
            del self._found[next(iter(self._found))]
        self._found[id(names)] = (names, len(names), labels, index, shown)
        return labels, index, shown


# the monitor watching each engine (a dashboard and a report of one engine share it)
_MONITORS: weakref.WeakKeyDictionary[Any, EngineMonitor] = weakref.WeakKeyDictionary()


class EngineMonitor:
    """The runs of one engine: a RunMonitor per run it prepares from now on (and per run in
    progress now), finished ones kept (at most MAX_RUNS), newest first. `start()` looks at the
    runs every TICK (setting `ticked`) until `stop()`; several users of one engine share one
    monitor (`EngineMonitor.of(engine)`), which runs while any of them needs it."""

    def __init__(self, engine: ExecutionEngine, label: str | None = None) -> None:
        self.engine, self.label = engine, label
        self.runs: dict[int, RunMonitor] = {}  # by id(), in order of creation
        self._by_run_id: dict[str, list[RunMonitor]] = {}
        self._stops: list[Callable[[], None]] = []
        self._users = 0
        self._label_cache = LabelCache()
        self._ticker: asyncio.Task[None] | None = None
        self.ticked = asyncio.Event()

    @classmethod
    def of(cls, engine: ExecutionEngine, label: str | None = None) -> EngineMonitor:
        """The engine's monitor (made on first use; `label` names the runs of a new one)."""
        found = _MONITORS.get(engine)
        if found is None:
            found = _MONITORS[engine] = cls(engine, label)
        elif label is not None and found.label is None:
            found.label = label
        return found

    @classmethod
    def attached(cls, engine: ExecutionEngine) -> EngineMonitor | None:
        return _MONITORS.get(engine)

    def start(self) -> None:
        """Watch the engine's runs (one more user) and look at them every TICK."""
        self._users += 1
        if self._users > 1:
            return
        self._stops.append(self.engine.events.subscribe(self._on_event, RunStarted, RunFinished))
        self._stops.append(self.engine.observe_runs(self._watch))
        self.ticked = asyncio.Event()
        self._ticker = asyncio.ensure_future(self._tick_forever())

    async def stop(self) -> None:
        """One user less; the last one stops the looks and the runs' hooks (the runs seen so
        far stay listed, a run in progress with its counts as they were)."""
        self._users = max(self._users - 1, 0)
        if self._users:
            return
        for stop in self._stops:
            stop()
        self._stops.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.tick()
        for run in self.runs.values():
            if run.driver is not None:
                run.detach()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.tick()
            self.ticked.set()
            self.ticked = asyncio.Event()

    def _watch(self, driver: Driver) -> None:
        run = RunMonitor(driver, self.label, self._label_cache)
        self.runs[id(run)] = run
        self._by_run_id.setdefault(run.run_id, []).append(run)
        self._evict()

    def _on_event(self, event: Event) -> None:
        live = [r for r in self._by_run_id.get(event.run_id, ()) if r.driver is not None]
        if not live:
            return
        if isinstance(event, RunStarted):
            live[-1].started()
        elif isinstance(event, RunFinished):
            # the oldest live one of that id: runs of one id end in the order they started
            live[0].finished(event.status)

    def _evict(self) -> None:
        done = [k for k, r in self.runs.items() if r.driver is None]
        for key in done[: max(len(done) - MAX_RUNS, 0)]:
            run = self.runs.pop(key)
            same = self._by_run_id.get(run.run_id, [])
            if run in same:
                same.remove(run)
            if not same:
                self._by_run_id.pop(run.run_id, None)

    def tick(self) -> None:
        for run in list(self.runs.values()):
            run.tick()
        self._evict()

    def newest_first(self) -> list[RunMonitor]:
        return list(reversed(self.runs.values()))

    def find(self, run_id: str) -> RunMonitor | None:
        """The newest run of that id."""
        found = self._by_run_id.get(run_id)
        return found[-1] if found else None


@contextlib.asynccontextmanager
async def watch_runs(engine: ExecutionEngine) -> AsyncIterator[EngineMonitor]:
    """Watch the engine's runs while the block runs, without serving a page (for
    `write_report(path, engine=engine)` afterwards): the same monitor a Dashboard uses."""
    monitor = EngineMonitor.of(engine)
    monitor.start()
    try:
        yield monitor
    finally:
        await monitor.stop()


T = TypeVar("T")


class _Batches(Generic[T]):
    """The batches a run's state handed over since the last tick, with their times, thinned
    evenly over the tick: once they hold more than KEPT_PER_TICK items, about half of them are
    dropped and later ones are kept with half the chance (and so on), so a tick samples all of
    it, not only its last moments. Dropped at random, not every other one: the dispatches and
    the completions are thinned on their own, and a deterministic choice on both sides can keep
    exactly the dispatches whose completions it drops. O(1) per batch, amortised."""

    __slots__ = ("_batches", "_items", "_keep")

    def __init__(self) -> None:
        self._batches: list[tuple[float, list[T]]] = []
        self._items = 0
        self._keep = 1.0  # the chance a batch is kept

    def add(self, batch: list[T]) -> None:
        if self._keep < 1.0 and random() >= self._keep:
            return
        self._batches.append((time.monotonic(), batch))
        self._items += len(batch)
        if self._items > KEPT_PER_TICK and len(self._batches) > 1:
            self._batches = [b for b in self._batches if random() < 0.5]
            self._items = sum(len(b) for _, b in self._batches)
            self._keep /= 2

    def take(self) -> list[tuple[float, list[T]]]:
        """The batches kept since the last take, oldest first; starts over."""
        batches, self._batches = self._batches, []
        self._items, self._keep = 0, 1.0
        return batches
