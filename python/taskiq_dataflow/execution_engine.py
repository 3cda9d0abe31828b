"""ExecutionEngine: runs a DAG with the Rust ready-set scheduler over any transport.

A task starts the moment its last input arrives; `max_parallel` bounds the tasks in flight. This
module is the public API: it builds a run's pure state (run_state.RunState) and hands it with a
transport to the async driver (driver.Driver). See ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _core
from .dataflow.dag import DAG
from .driver import Driver
from .error_modes import ErrorHandlingMode
from .errors import (
    CompensationError,
    DataflowExecutionError,
    ExecutionCancelled,
    MissingInputError,
    TaskFailedError,
)
from .events import Event, EventBus, StepCompleted, StepLogged
from .router import Router
from .run_state import Policy, RunConfig, RunState, SharedPlans, StepResult, resolve_policy
from .seceding import awaiting_slot, seceded_slot
from .slots import SharedSlots
from .stream_wiring import feed_inputs
from .streams import Watch
from .task_logs import capturing, labels_on, level_number
from .transports.base import Transport
from .transports.local import LocalTransport

if TYPE_CHECKING:
    from .metrics import EngineMetrics

__all__ = [
    "CompensationError",
    "DataflowExecutionError",
    "ErrorHandlingMode",
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

    taskiq-flow's options: `continue_on_error=True` is `fail_fast=False`; `skip_failed=True`
    also returns the outputs computed instead of raising (the failures are in
    `get_execution_report()`); `error_mode=` (an ErrorHandlingMode) says either in one word.
    `resource_aware=True` bounds the tasks in flight by what the machine has free for the
    tasks' `resource_profiles` (optimization.py), measured when the engine is made.
    `metrics=EngineMetrics()` counts its runs' tasks for Prometheus (taskiq_dataflow.metrics;
    off by default, and then the runs count nothing).

    `capture_logs`: the level from which the records a task logs (any logger, here or on a
    worker) are kept with its execution, when someone records them (a `store`, or a listener
    of StepLogged events); None captures nothing. Only records the logging configuration
    makes are seen (see task_logs.py).
    """

    def __init__(
        self,
        broker: Any = None,
        dag: DAG | None = None,
        max_parallel: int | None = None,
        fail_fast: bool | None = None,
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
        continue_on_error: bool = False,
        skip_failed: bool = False,
        error_mode: ErrorHandlingMode | str | None = None,
        resource_aware: bool = False,
        resource_profiles: Mapping[str, Any] | None = None,
        adaptive_parallelism: bool = False,
        metrics: EngineMetrics | None = None,
        capture_logs: str | int | None = "INFO",
    ) -> None:
        if dag is None:
            raise TypeError(
                "ExecutionEngine needs a dag (build one with DataflowRegistry.build_dag())"
            )
        if max_parallel is not None and max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
        if adaptive_parallelism:
            raise ValueError(
                "adaptive_parallelism=True is not supported: taskiq-dataflow does not size "
                "parallelism per level (there are no levels: a task starts as soon as its "
                "inputs are ready); use resource_aware=True with resource_profiles, or "
                "max_parallel="
            )
        self.broker = broker
        self.dag = dag
        self.error_mode = _error_mode(fail_fast, continue_on_error, skip_failed, error_mode)
        self.fail_fast = self.error_mode is ErrorHandlingMode.FAIL_FAST
        self.continue_on_error = self.error_mode is ErrorHandlingMode.CONTINUE_ON_ERROR
        self.skip_failed = self.error_mode is ErrorHandlingMode.SKIP_FAILED
        self.resource_aware = resource_aware
        self.resource_profiles = _resource_profiles(dag, resource_profiles, resource_aware)
        if resource_aware:
            from .optimization import ResourceAwareExecutor

            executor_ = ResourceAwareExecutor(max_parallel=max_parallel or 10)
            profiles = self.resource_profiles
            max_parallel = executor_.parallelism_for(profiles[name] for name in dag.task_names)
        self.max_parallel = max_parallel
        self.on_step_complete = on_step_complete
        self.events = EventBus()
        self._defaults = Policy(retries, retry_delay, retry_backoff, retry_jitter, timeout)
        self._transport_spec = transport
        # the broker for which "auto" was found to mean the in-process transport (no broker
        # type checks, nor their imports, at each run)
        self._local_for: Any = _UNDECIDED
        self._executor = executor
        self._priority = priority
        self.cache = cache  # a ResultCache for tasks declared with pipeline_task(cache=True)
        self.store = store  # a RunStore: provenance, restart() and replay()
        self.capture_logs = (
            None if capture_logs is None else level_number(capture_logs, "capture_logs")
        )
        # the store's recording of this engine's runs: it also restores added tasks on restart
        self._recording = store.attach(self) if store is not None else None
        self._drivers: set[Driver] = set()  # the runs in progress (cancel() stops them all)
        self._slots: SharedSlots | None = None  # made at the first run with max_parallel set
        self._plans = SharedPlans()
        self._valid: _core.Graph | None = None  # the graph validate() last passed
        self._size = 0  # its nodes
        self._external: list[str] = []  # that graph's keys given at run time
        self.stats: dict[str, int] = {}  # the last run's transport counters (redeliveries...)
        if metrics is not None and not hasattr(metrics, "run_meter"):
            raise TypeError(
                f"metrics must be a taskiq_dataflow.metrics.EngineMetrics, got {metrics!r}"
            )
        self.metrics = metrics
        self._last: Driver | None = None  # the latest run, for get_execution_report()
        self._observers: list[Callable[[Driver], None]] = []  # observe_runs()
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
        driver = self._prepare(
            dict(inputs) if inputs else {}, pipeline_id, None, limit=max_parallel
        )
        return await self._drive(driver)  # (not through _run: a coroutine less per run)

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
            dict(inputs) if inputs else {}, pipeline_id, queue.put_nowait, limit=max_parallel
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
        driver = self._prepare(
            dict(inputs) if inputs else {}, pipeline_id, None, limit=max_parallel
        )
        # the caller goes on running: it gives its slot back only while it awaits the
        # handle (RunHandle.result)
        return RunHandle(driver, asyncio.ensure_future(self._drive(driver, secede=False)))

    async def restart(self, run_id: str) -> dict[str, Any]:
        """Continue a failed or interrupted run from the store; completed tasks do not run."""
        from .store import restorable

        inputs, outputs = restorable(self._need_store("restart"), self.dag, run_id)
        return await self._run(dict(inputs), run_id, None, restore=outputs, restarting=True)

    async def replay(
        self,
        run_id: str,
        rerun: Iterable[str] | None = None,
        pipeline_id: str | None = None,
        *,
        rerun_nodes: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """A new run that re-runs the tasks named in `rerun` and everything downstream of
        them, reusing every other output of `run_id`. `rerun_nodes=` is lythonic's name for
        `rerun`."""
        from .store import restorable

        if rerun_nodes is not None:
            if rerun is not None:
                raise TypeError("replay(): give rerun= or rerun_nodes= (the same thing), not both")
            rerun = rerun_nodes
        if rerun is None:
            raise TypeError("replay() needs the tasks to re-run: rerun=[...] (or rerun_nodes=)")
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

    def get_execution_report(self) -> dict[str, Any]:
        """The latest run's counts (live while it runs): total_tasks, completed, failed,
        running, pending (not yet started, ready or waiting), skipped, success_rate,
        data_cache_size (values held: inputs and outputs), and ours: run_id, status
        ("not started", "running", "succeeded", "failed", "cancelled") and errors (one line
        per failed task, with its exception)."""
        driver = self._last
        if driver is None:
            total = len(self.dag.task_names)
            return {
                "run_id": None,
                "status": "not started",
                "total_tasks": total,
                "completed": 0,
                "failed": 0,
                "running": 0,
                "pending": total,
                "skipped": 0,
                "success_rate": 0,
                "data_cache_size": 0,
                "errors": [],
            }
        state = driver.state
        counts = state.scheduler.counts()
        total = len(state.tasks)
        completed, running = counts["done"], counts["running"]
        failed = max(counts["failed"], len(state.failures))
        return {
            "run_id": state.run_id,
            "status": state.status or "running",
            "total_tasks": total,
            "completed": completed,
            "failed": failed,
            "running": running,
            "pending": max(total - completed - failed - running - counts["skipped"], 0),
            "skipped": counts["skipped"],
            "success_rate": completed / total if total else 0,
            "data_cache_size": len(state.values),
            "errors": [str(failure) for failure in state.failures],
        }

    def observe_runs(self, observer: Callable[[Driver], None]) -> Callable[[], None]:
        """Call `observer(driver)` for each run in progress now and for each run this engine
        prepares from now on, before it starts (a monitor such as the dashboard sets
        `driver.state.monitor`): once per run, nothing per task. Returns a function that stops
        the calls."""
        self._observers.append(observer)
        for driver in list(self._drivers):
            observer(driver)

        def stop() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return stop

    def cancel(self) -> None:
        """Stop dispatching, cancel what is in flight, and end every run of this engine in
        progress with ExecutionCancelled."""
        for driver in list(self._drivers):
            driver.cancel()

    # -- the loop -----------------------------------------------------------------------------

    def _make_transport(self, run_id: str) -> Transport:
        spec = self._transport_spec
        # the engine's usual answer first: an ABC's isinstance costs more than the rest
        if spec == "auto" and self._local_for is self.broker:
            return self._local_transport()
        if isinstance(spec, Transport):
            return spec
        if spec == "local":
            return self._local_transport()
        from .cluster.broker import DataflowNatsBroker

        if spec == "nats" or (spec == "auto" and isinstance(self.broker, DataflowNatsBroker)):
            from .cluster.transport import NatsTransport

            if not isinstance(self.broker, DataflowNatsBroker):
                raise ValueError("transport='nats' needs a DataflowNatsBroker")
            return NatsTransport(self.broker, run_id)
        if spec == "auto" and _is_local_broker(self.broker):
            self._local_for = self.broker
            return self._local_transport()
        if spec in ("auto", "broker"):
            from .transports.broker import BrokerTransport

            if self.broker is None:
                raise ValueError("transport='broker' needs a taskiq broker")
            return BrokerTransport(self.broker)
        raise ValueError(
            f"unknown transport {spec!r}: use 'auto', 'local', 'broker', 'nats' or a Transport"
        )

    def _local_transport(self) -> LocalTransport:
        if self.metrics is not None:
            return self.metrics.local_transport(self._executor)  # times each task
        return LocalTransport(self._executor)

    def _check_inputs(self, inputs: dict[str, Any]) -> None:
        missing = [k for k in self._external if k not in inputs]
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
        dag = self.dag
        if self._valid is not dag.graph:  # validated once per graph shape, not once per run
            dag.validate()
            self._external = dag.external_inputs
            self._valid, self._size = dag.graph, len(dag)
        if self._external:
            self._check_inputs(inputs)
        # async iterables among the inputs are streams: each gets a producer of its own
        dag, inputs, fed = feed_inputs(self.dag, inputs) if inputs else (self.dag, inputs, [])
        slots = self._shared_slots()
        run_id = pipeline_id or new_run_id()
        transport = self._make_transport(run_id)
        level = self.capture_logs
        # a dashboard watching the engine's runs (observe_runs) shows what their tasks log
        wanted = level is not None and (self._observers or self.events.listens(StepLogged))
        capture = level if wanted else None
        if capture is not None or labels_on():
            transport.log_tasks(run_id, capture)
        elif transport.task_logs is not None:  # a Transport given to the engine, reused
            transport.task_logs = None
        router = transport.router()
        config = RunConfig(
            dag,
            self._defaults,
            self.fail_fast,
            0 if slots is not None else limit,  # shared: the slots grant capacity (slots.py)
            None if self._priority is None else self._priorities(dag.graph, len(dag)),
            self.broker,
            caching=self.cache is not None,
            step_events=self.events.step_listeners,
            deliver_steps=step_sink is not None,
            router=router,
            recording=self._recording,
            shared_plans=self._plans.valid_for(self._plan_settings(router)),
            shared_below=self._size,
        )
        state = RunState(run_id, config, inputs, restore)
        if fed:
            # still inputs, not outputs of the run (their items are not recorded)
            state.inputs = {**inputs, **dict.fromkeys(fed)}
        driver = Driver(state, transport, self.events, self.cache, step_sink, parent, slots, limit)
        if self.metrics is not None:
            driver.meter = self.metrics.run_meter(driver)
        for observer in self._observers:
            observer(driver)
        return driver

    def _plan_settings(self, router: Router) -> tuple[Any, ...]:
        """What a task's plan depends on besides the task (SharedPlans.valid_for)."""
        placement = (router.remote, router.streams_travel, router.default_pool)
        return (*placement, self.cache is not None, self.broker, self._defaults)

    def _shared_slots(self) -> SharedSlots | None:
        if self.max_parallel is None:
            return None
        if self._slots is None:
            self._slots = SharedSlots(self.max_parallel)
        self._slots.total = self.max_parallel  # the attribute may have been set since
        return self._slots

    async def _drive(self, driver: Driver, secede: bool = True) -> dict[str, Any]:
        # a task awaiting a nested run: its children may need the very slot it holds
        # (seceding.py); named before this run becomes the current one
        slot = awaiting_slot(_leaves_process(driver)) if secede else None
        token = _CURRENT.set(_Current(self, driver.state.run_id, driver))
        self._drivers.add(driver)
        self._last = driver
        logs = driver.transport.task_logs
        try:
            if slot is None and (logs is None or logs[1] is None):
                return await driver.run()  # the usual case, without the two context managers
            with capturing() if logs is not None and logs[1] is not None else _no_capture:
                if slot is not None:
                    async with seceded_slot(slot):
                        return await driver.run()
                return await driver.run()
        except DataflowExecutionError as exc:
            if not self.skip_failed:
                raise
            _log.warning("run %s: %s", driver.state.run_id, exc)
            return exc.results
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


def _error_mode(
    fail_fast: bool | None,
    continue_on_error: bool,
    skip_failed: bool,
    error_mode: ErrorHandlingMode | str | None,
) -> ErrorHandlingMode:
    """The one error mode the options say, or a TypeError naming the options that disagree."""
    said: dict[str, ErrorHandlingMode] = {}
    if fail_fast is not None:
        said[f"fail_fast={fail_fast}"] = (
            ErrorHandlingMode.FAIL_FAST if fail_fast else ErrorHandlingMode.CONTINUE_ON_ERROR
        )
    if continue_on_error:
        said["continue_on_error=True"] = ErrorHandlingMode.CONTINUE_ON_ERROR
    if skip_failed:
        said["skip_failed=True"] = ErrorHandlingMode.SKIP_FAILED
    if error_mode is not None:
        try:
            mode = ErrorHandlingMode(error_mode)
        except ValueError:
            names = ", ".join(m.name for m in ErrorHandlingMode)
            raise ValueError(f"unknown error_mode {error_mode!r}: use one of {names}") from None
        if mode is ErrorHandlingMode.DEAD_LETTER:
            raise ValueError(
                "error_mode=DEAD_LETTER is not supported: there is no dead-letter queue; use "
                "ErrorHandlingMode.CONTINUE_ON_ERROR and subscribe to StepFailed events "
                "(engine.events.subscribe(listener, StepFailed)) to collect the failed tasks"
            )
        said[f"error_mode={mode.name}"] = mode
    modes = set(said.values())
    # fail_fast=False is what both CONTINUE_ON_ERROR and SKIP_FAILED do
    if "fail_fast=False" in said and len(modes) == 2 and ErrorHandlingMode.SKIP_FAILED in modes:
        modes = {ErrorHandlingMode.SKIP_FAILED}
    if len(modes) > 1:
        raise TypeError(
            f"ExecutionEngine: {' and '.join(said)} contradict each other; give one of them"
        )
    return modes.pop() if modes else ErrorHandlingMode.FAIL_FAST


def _resource_profiles(
    dag: DAG, profiles: Mapping[str, Any] | None, resource_aware: bool
) -> dict[str, Any]:
    """Each distinct task's resource profile by task name: from `profiles`, else its
    `pipeline_task(..., resources=...)`, else the default."""
    if profiles is not None and not resource_aware:
        raise ValueError(
            "resource_profiles are used only with resource_aware=True: add resource_aware=True "
            "or drop resource_profiles"
        )
    if not resource_aware:
        return {}
    from .optimization import TaskResourceProfile, profile_of
    from .task import get_spec

    names = set(dag.task_names)
    given = dict(profiles or {})
    unknown = sorted(name for name in given if name not in names)
    if unknown:
        raise ValueError(
            f"resource_profiles name task(s) not in the DAG: {', '.join(map(repr, unknown))}; "
            f"its tasks are {', '.join(map(repr, sorted(names)))}"
        )
    result: dict[str, Any] = {}
    for task, name in zip(dag.tasks, dag.task_names, strict=True):
        spec = get_spec(task)
        declared = spec.metadata.get("resources") if spec is not None else None
        value = given.get(name, declared)
        where = f"resource profile of task {name!r}"
        result[name] = TaskResourceProfile() if value is None else profile_of(value, where)
    return result


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
        task awaiting it gives its slot back meanwhile (seceding.py)."""
        slot = None if self._task.done() else awaiting_slot(_leaves_process(self._driver))
        if slot is None:
            return await asyncio.shield(self._task)
        async with seceded_slot(slot):
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


_log = logging.getLogger(__name__)
_no_capture = contextlib.nullcontext()

_CURRENT: ContextVar[_Current | None] = ContextVar("taskiq_dataflow_engine", default=None)


def current_engine() -> ExecutionEngine | None:
    """The engine running the calling task (in the engine's process), else None: lets a
    control task such as a map node start nested runs with the same broker and settings."""
    current = _CURRENT.get()
    return None if current is None else current.engine


def current_run() -> _Current | None:
    """(engine, run id, driver) of the run the calling task belongs to, else None."""
    return _CURRENT.get()


_UNDECIDED = object()


class _RunIds:
    """Run ids in uuid4().hex's form (32 hex digits) at a tenth of its cost: a random prefix
    per process (drawn again in a forked child) and a counter."""

    def __init__(self) -> None:
        self._draw()
        os.register_at_fork(after_in_child=self._draw)

    def _draw(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.next = itertools.count(int.from_bytes(os.urandom(4))).__next__

    def __call__(self) -> str:
        return f"{self.prefix}{self.next() & 0xFFFF_FFFF_FFFF_FFFF:016x}"


new_run_id = _RunIds()


def _leaves_process(driver: Driver) -> bool:
    """Whether this run's tasks may run in other processes: a worker task awaiting it waits on
    other workers' slots (an in-process run's tasks run on the worker's loop, on no slot)."""
    return not isinstance(driver.transport, LocalTransport)


def _is_local_broker(broker: Any) -> bool:
    if broker is None:
        return True
    try:
        from taskiq import InMemoryBroker
    except ImportError:  # pragma: no cover - taskiq is a dependency
        return False
    return isinstance(broker, InMemoryBroker)
