"""ExecutionEngine: runs a DAG with the Rust ready-set scheduler over any transport.

A task starts the moment its last input arrives; `max_parallel` bounds the tasks in flight. This
module is the public API: it builds a run's pure state (run_state.RunState) and hands it with a
transport to the async driver (driver.Driver). See ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple

from . import _core
from .dataflow.dag import DAG
from .driver import Driver
from .errors import (
    CompensationError,
    DataflowExecutionError,
    ExecutionCancelled,
    MissingInputError,
    TaskFailedError,
)
from .events import Event, EventBus, StepCompleted
from .run_state import Policy, RunConfig, RunState, StepResult, resolve_policy
from .seceding import in_worker_task, seceded
from .slots import SharedSlots
from .stream_wiring import feed_inputs
from .streams import Watch
from .transports.base import Transport
from .transports.local import LocalTransport

__all__ = [
    "CompensationError",
    "DataflowExecutionError",
    "ExecutionCancelled",
    "ExecutionEngine",
    "MissingInputError",
    "RunHandle",
    "StepResult",
    "TaskFailedError",
]


class ExecutionEngine:
    """Run a DAG: in-process by default, or through a taskiq broker or the NATS cluster.

    `max_parallel` bounds the tasks in flight across every concurrent run of this engine,
    shared fairly among them (`execute(..., max_parallel=)` bounds one run). `fail_fast` stops
    at the first failure, otherwise everything independent of the failures runs and their
    dependents are skipped. `retries`, `retry_delay`, `retry_backoff`, `retry_jitter` and
    `timeout` are defaults that a task's `pipeline_task(...)` overrides.
    `priority="critical_path"` runs the longest chains first.
    """

    def __init__(
        self,
        broker: Any = None,
        dag: DAG | None = None,
        max_parallel: int | None = None,
        fail_fast: bool = True,
        on_step_complete: Callable[[str, Any], Any] | None = None,
        *,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 2.0,
        retry_jitter: float = 0.0,
        timeout: float | None = None,
        transport: Transport | str = "auto",
        executor: Any = "thread",
        priority: str | Sequence[float] | None = None,
        cache: Any = None,
        store: Any = None,
    ) -> None:
        if dag is None:
            raise TypeError(
                "ExecutionEngine needs a dag (build one with DataflowRegistry.build_dag())"
            )
        if max_parallel is not None and max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
        self.broker = broker
        self.dag = dag
        self.max_parallel = max_parallel
        self.fail_fast = fail_fast
        self.on_step_complete = on_step_complete
        self.events = EventBus()
        self._defaults = Policy(retries, retry_delay, retry_backoff, retry_jitter, timeout)
        self._transport_spec = transport
        self._executor = executor
        self._priority = priority
        self.cache = cache  # a ResultCache for tasks declared with pipeline_task(cache=True)
        self.store = store  # a RunStore: provenance, restart() and replay()
        # the store's recording of this engine's runs: it also restores added tasks on restart
        self._recording = store.attach(self) if store is not None else None
        self._drivers: set[Driver] = set()  # the runs in progress (cancel() stops them all)
        self._slots: SharedSlots | None = None  # made at the first run with max_parallel set
        self.stats: dict[str, int] = {}  # the last run's transport counters (redeliveries...)
        if on_step_complete is not None:
            self.events.subscribe(self._call_on_step_complete, StepCompleted)

    async def _call_on_step_complete(self, event: Event) -> None:
        assert isinstance(event, StepCompleted) and self.on_step_complete is not None
        outcome = self.on_step_complete(event.task_name, event.result)
        if inspect.isawaitable(outcome):
            await outcome

    # -- public API ---------------------------------------------------------------------------

    async def execute(
        self,
        inputs: Mapping[str, Any] | None = None,
        pipeline_id: str | None = None,
        *,
        max_parallel: int | None = None,
    ) -> dict[str, Any]:
        """Run the DAG; returns every output key's value. `max_parallel` bounds this run's
        tasks in flight (within the engine's own bound, shared with its other runs)."""
        return await self._run(dict(inputs or {}), pipeline_id, None, limit=max_parallel)

    async def execute_async(
        self,
        inputs: Mapping[str, Any] | None = None,
        pipeline_id: str | None = None,
        *,
        max_parallel: int | None = None,
    ) -> AsyncIterator[StepResult]:
        """Run the DAG, yielding each step's result as it completes. Leaving the loop early
        (a `break`) cancels this run, not the engine's other runs."""
        queue: asyncio.Queue[StepResult | None] = asyncio.Queue()
        driver = self._prepare(
            dict(inputs or {}), pipeline_id, queue.put_nowait, limit=max_parallel
        )
        run = asyncio.ensure_future(self._drive(driver))
        run.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while True:
                step = await queue.get()
                if step is None:
                    break
                yield step
            await run
        finally:
            if not run.done():
                driver.cancel()
                await asyncio.gather(run, return_exceptions=True)

    def start(
        self,
        inputs: Mapping[str, Any] | None = None,
        pipeline_id: str | None = None,
        *,
        max_parallel: int | None = None,
    ) -> RunHandle:
        """Start a run without awaiting it (call it with the event loop running): the handle
        gives its id and live progress, cancels that run alone, and is awaited for its
        outputs (or its error). Bad inputs raise here, before anything starts."""
        driver = self._prepare(dict(inputs or {}), pipeline_id, None, limit=max_parallel)
        # the caller goes on running: it gives its worker slot back only while it awaits
        # the handle (RunHandle.result)
        return RunHandle(driver, asyncio.ensure_future(self._drive(driver, secede=False)))

    async def restart(self, run_id: str) -> dict[str, Any]:
        """Continue a failed or interrupted run from the store; completed tasks do not run."""
        from .store import restorable

        inputs, outputs = restorable(self._need_store("restart"), self.dag, run_id)
        return await self._run(dict(inputs), run_id, None, restore=outputs, restarting=True)

    async def replay(
        self, run_id: str, rerun: Iterable[str], pipeline_id: str | None = None
    ) -> dict[str, Any]:
        """A new run that re-runs the tasks named in `rerun` and everything downstream of
        them, reusing every other output of `run_id`."""
        from .store import restorable

        if isinstance(rerun, str):
            rerun = [rerun]
        inputs, outputs = restorable(self._need_store("replay"), self.dag, run_id, rerun)
        return await self._run(dict(inputs), pipeline_id, None, restore=outputs, parent=run_id)

    def _need_store(self, what: str) -> Any:
        if self.store is None:
            raise ValueError(
                f"{what}() needs a run store: ExecutionEngine(..., store=RunStore(path))"
            )
        return self.store

    def cancel(self) -> None:
        """Stop dispatching, cancel what is in flight, and end every run of this engine in
        progress with ExecutionCancelled."""
        for driver in list(self._drivers):
            driver.cancel()

    # -- the loop -----------------------------------------------------------------------------

    def _make_transport(self, run_id: str) -> Transport:
        spec = self._transport_spec
        if isinstance(spec, Transport):
            return spec
        from .cluster.broker import DataflowNatsBroker

        if spec == "nats" or (spec == "auto" and isinstance(self.broker, DataflowNatsBroker)):
            from .cluster.transport import NatsTransport

            if not isinstance(self.broker, DataflowNatsBroker):
                raise ValueError("transport='nats' needs a DataflowNatsBroker")
            return NatsTransport(self.broker, run_id)
        if spec == "local" or (spec == "auto" and _is_local_broker(self.broker)):
            return LocalTransport(self._executor)
        if spec in ("auto", "broker"):
            from .transports.broker import BrokerTransport

            if self.broker is None:
                raise ValueError("transport='broker' needs a taskiq broker")
            return BrokerTransport(self.broker)
        raise ValueError(
            f"unknown transport {spec!r}: use 'auto', 'local', 'broker', 'nats' or a Transport"
        )

    def _check_inputs(self, inputs: dict[str, Any]) -> None:
        missing = [k for k in self.dag.external_inputs if k not in inputs]
        if not missing:
            return
        graph, names = self.dag.graph, self.dag.task_names
        details = [
            f"task '{names[graph.consumers(k)[0]]}' requires input '{k}' but no task produces it "
            "and it was not given in inputs"
            for k in missing
        ]
        raise MissingInputError("; ".join(details))

    async def _run(
        self,
        inputs: dict[str, Any],
        pipeline_id: str | None,
        step_sink: Callable[[StepResult], None] | None,
        restore: Mapping[int, Mapping[str, Any]] | None = None,
        parent: str | None = None,
        restarting: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        driver = self._prepare(inputs, pipeline_id, step_sink, restore, parent, limit)
        if restarting and self._recording is not None:
            self._recording.restarting(driver.state.run_id)
        return await self._drive(driver)

    def _prepare(
        self,
        inputs: dict[str, Any],
        pipeline_id: str | None,
        step_sink: Callable[[StepResult], None] | None,
        restore: Mapping[int, Mapping[str, Any]] | None = None,
        parent: str | None = None,
        limit: int | None = None,
    ) -> Driver:
        """Check the run's inputs and build its state and driver (nothing starts yet)."""
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError(
                f"execute(max_parallel=...) must be an int of at least 1, got {limit!r}"
            )
        self.dag.validate()
        self._check_inputs(inputs)
        # async iterables among the inputs are streams: each gets a producer of its own
        dag, inputs, fed = feed_inputs(self.dag, inputs)
        slots = self._shared_slots()
        run_id = pipeline_id or uuid.uuid4().hex
        transport = self._make_transport(run_id)
        config = RunConfig(
            dag,
            self._defaults,
            self.fail_fast,
            0 if slots is not None else limit,  # shared: the slots grant capacity (slots.py)
            self._priorities(dag.graph, len(dag)),
            self.broker,
            caching=self.cache is not None,
            step_events=self.events.step_listeners,
            deliver_steps=step_sink is not None,
            router=transport.router(),
            recording=self._recording,
        )
        state = RunState(run_id, config, inputs, restore)
        if fed:
            # still inputs, not outputs of the run (their items are not recorded)
            state.inputs = {**inputs, **dict.fromkeys(fed)}
        return Driver(state, transport, self.events, self.cache, step_sink, parent, slots, limit)

    def _shared_slots(self) -> SharedSlots | None:
        if self.max_parallel is None:
            return None
        if self._slots is None:
            self._slots = SharedSlots(self.max_parallel)
        self._slots.total = self.max_parallel  # the attribute may have been set since
        return self._slots

    async def _drive(self, driver: Driver, secede: bool = True) -> dict[str, Any]:
        token = _CURRENT.set(_Current(self, driver.state.run_id, driver))
        self._drivers.add(driver)
        try:
            if secede and _leaves_process(driver):
                # a worker task awaiting a run on the cluster: its children may need the
                # very slot it holds (seceding.py)
                async with seceded():
                    return await driver.run()
            return await driver.run()
        finally:
            _CURRENT.reset(token)
            self._drivers.discard(driver)
            self.stats = driver.stats

    # -- per-task set-up (once per distinct task, not per node) --------------------------------

    def _priorities(self, graph: _core.Graph, size: int) -> list[float] | None:
        p = self._priority
        if p is None:
            return None
        if p == "critical_path":
            return graph.bottom_levels()
        if isinstance(p, str):
            raise ValueError(f"unknown priority {p!r}: use 'critical_path' or a list of numbers")
        given = [float(x) for x in p]
        # the producers of streamed inputs (feed_inputs) come after the DAG's nodes
        return given + [0.0] * (size - len(given)) if len(given) == len(self.dag) else given

    def _policy(self, task: Any, overrides: Mapping[str, Any] | None = None) -> Policy:
        """Retry and timeout settings of `task` (see run_state.resolve_policy)."""
        return resolve_policy(self._defaults, task, overrides)


class RunHandle:
    """A run started with `ExecutionEngine.start()`."""

    __slots__ = ("_driver", "_task", "_watches")

    def __init__(self, driver: Driver, task: asyncio.Future[dict[str, Any]]) -> None:
        self._driver, self._task = driver, task
        self._watches: list[Watch[Any]] = []  # the streams read with stream()
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future[dict[str, Any]]) -> None:
        """A run that failed or was cancelled ends the streams its caller reads (a stream whose
        producer never ran, or ran on a worker that is gone, would never end)."""
        if not self._watches:
            return
        error = ExecutionCancelled(self.run_id, {}) if task.cancelled() else task.exception()
        if error is not None:
            for watch in self._watches:
                watch._end(error)

    @property
    def run_id(self) -> str:
        return self._driver.state.run_id

    def progress(self) -> dict[str, Any]:
        """{"status": "running" | "succeeded" | "failed" | "cancelled", "total": tasks, and
        the scheduler's counts: "pending", "ready", "running", "done", "failed", "skipped"}."""
        state = self._driver.state
        status = state.status or "running"
        if status == "succeeded" and not self._task.done():
            status = "running"  # outputs are still being collected (the cluster's references)
        counts = state.scheduler.counts()
        # fail_fast stops before the scheduler hears of the failure: count it from the run
        counts["failed"] = max(counts["failed"], len(state.failures))
        return {"status": status, "total": len(state.tasks), **counts}

    def cancel(self) -> None:
        """Cancel this run alone; awaiting the handle then raises ExecutionCancelled."""
        self._driver.cancel()

    def stream(self, key: str) -> Watch[Any]:
        """The items of stream `key` (the output of an async generator task, here or on a
        worker) as they are produced: `async for item in run.stream("bar")` (or
        `run.stream("bar").stream()`, as Datagraph spells it). Ask before the run starts, that
        is before the caller first awaits after `engine.start()`; the items also reach the
        task's other readers, and the output as a list when it is kept."""
        state = self._driver.state
        producer = state.graph.producer(key)
        if producer is None:
            raise KeyError(f"no task of run {self.run_id} produces {key!r}: it cannot be streamed")
        name = state.names[producer]
        if not state.plan(producer).producer:
            raise TypeError(
                f"{key!r} is produced by task '{name}', which is not an async generator: await "
                "the run for its value (a RemoteTask needs stream=True)"
            )
        if state.attempts[producer] != 0 or key in state.values or state.status is not None:
            raise RuntimeError(
                f"task '{name}' producing {key!r} has started already: call run.stream({key!r}) "
                "right after engine.start(), before the caller awaits anything"
            )
        assert state.streaming is not None  # made with the producer's plan
        watch = state.streaming.watch(producer, key)
        self._watches.append(watch)
        return watch

    def done(self) -> bool:
        return self._task.done()

    async def result(self) -> dict[str, Any]:
        """The run's outputs (what `execute` returns); raises what `execute` raises. A
        worker task awaiting a run on the cluster gives its slot back meanwhile."""
        if self._task.done() or not _leaves_process(self._driver):
            return await asyncio.shield(self._task)
        async with seceded():
            return await asyncio.shield(self._task)

    def __await__(self) -> Any:
        return self.result().__await__()

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r}, {self.progress()['status']})"


class _Current(NamedTuple):
    engine: ExecutionEngine
    run_id: str
    # the run's driver, for tasks that add tasks to their own run (growth.add_tasks)
    driver: Any = None


_CURRENT: ContextVar[_Current | None] = ContextVar("taskiq_dataflow_engine", default=None)


def current_engine() -> ExecutionEngine | None:
    """The engine running the calling task (in the engine's process), else None: lets a
    control task such as a map node start nested runs with the same broker and settings."""
    current = _CURRENT.get()
    return None if current is None else current.engine


def current_run() -> _Current | None:
    """(engine, run id, driver) of the run the calling task belongs to, else None."""
    return _CURRENT.get()


def _leaves_process(driver: Driver) -> bool:
    """Whether awaiting this run, from a task a worker runs, waits on other workers' slots
    (an in-process run's tasks run on this loop, whatever slot the caller holds)."""
    return in_worker_task() and not isinstance(driver.transport, LocalTransport)


def _is_local_broker(broker: Any) -> bool:
    if broker is None:
        return True
    try:
        from taskiq import InMemoryBroker
    except ImportError:  # pragma: no cover - taskiq is a dependency
        return False
    return isinstance(broker, InMemoryBroker)
