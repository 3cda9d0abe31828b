"""ExecutionEngine: runs a DAG with the Rust ready-set scheduler over any transport.

The loop: the scheduler hands out the nodes whose inputs are all available (never more than
`max_parallel` running), the transport runs them and pushes completions back, each batch of
completions is one `complete_many` call that returns the next nodes to run. A task starts the
moment its last input arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from . import _core
from .dataflow.dag import DAG
from .events import (
    EventBus,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepRetried,
    StepSkipped,
    StepStarted,
    TaskError,
)
from .task import get_spec, original_function
from .transports.base import Completion, Job, Transport, task_error
from .transports.local import LocalTransport


class TaskFailedError(RuntimeError):
    """A task raised. Carries the task's name, exception type, message and traceback text."""

    def __init__(self, error: TaskError) -> None:
        self.error = error
        self.task_name = error.task_name
        super().__init__(f"{error}\n{error.traceback}".rstrip())


class DataflowExecutionError(RuntimeError):
    """With fail_fast=False: every failure and every skipped task, plus the outputs computed."""

    def __init__(
        self, failures: list[TaskError], skipped: dict[str, str], results: dict[str, Any]
    ) -> None:
        self.failures = failures
        self.skipped = skipped  # skipped task name -> the failed task it depended on
        self.results = results
        lines = [f"{len(failures)} task(s) failed, {len(skipped)} skipped:"]
        lines += [f"  - {f}" for f in failures[:20]]
        if skipped:
            names = list(skipped)[:20]
            more = f" and {len(skipped) - len(names)} more" if len(skipped) > len(names) else ""
            lines.append(f"  skipped: {', '.join(names)}{more}")
        super().__init__("\n".join(lines))


class ExecutionCancelled(asyncio.CancelledError):
    """`cancel()` was called: the run stopped; `results` holds the outputs computed before."""

    def __init__(self, run_id: str, results: dict[str, Any]) -> None:
        self.run_id = run_id
        self.results = results
        super().__init__(f"run {run_id} was cancelled ({len(results)} outputs computed)")


class MissingInputError(ValueError):
    """execute() was not given an external input some task needs."""


class StepResult:
    """One completed step, as yielded by `execute_async`."""

    __slots__ = ("attempt", "node", "outputs", "result", "task_name")

    def __init__(
        self, node: int, task_name: str, result: Any, outputs: dict[str, Any], attempt: int
    ) -> None:
        self.node, self.task_name, self.result = node, task_name, result
        self.outputs, self.attempt = outputs, attempt

    def __repr__(self) -> str:
        return f"StepResult({self.task_name!r}, outputs={list(self.outputs)})"


class _Policy:
    __slots__ = ("backoff", "delay", "jitter", "retries", "timeout")

    def __init__(
        self, retries: int, delay: float, backoff: float, jitter: float, timeout: float | None
    ):
        self.retries, self.delay, self.backoff = retries, delay, backoff
        self.jitter, self.timeout = jitter, timeout

    def delay_before(self, attempt: int) -> float:
        """Delay before `attempt` (2 = first retry): delay * backoff^(retry-1), plus jitter."""
        base = self.delay * (self.backoff ** (attempt - 2))
        return base + (random.uniform(0, self.jitter) if self.jitter else 0.0)


class ExecutionEngine:
    """Run a DAG: in-process by default, or through a taskiq broker or the NATS cluster.

    `max_parallel` bounds the tasks in flight; `fail_fast` stops at the first failure, otherwise
    everything independent of the failures runs and their dependents are skipped. `retries`,
    `retry_delay`, `retry_backoff`, `retry_jitter` and `timeout` are defaults that a task's
    `pipeline_task(...)` overrides. `priority="critical_path"` runs the longest chains first.
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
        self._defaults = _Policy(retries, retry_delay, retry_backoff, retry_jitter, timeout)
        self._transport_spec = transport
        self._executor = executor
        self._priority = priority
        self._cancel_requested = False
        self._running: asyncio.Event | None = None
        self._transport: Transport | None = None
        self._wake_cancel: Callable[[], None] | None = None
        self.stats: dict[str, int] = {}  # the last run's transport counters (redeliveries...)
        if on_step_complete is not None:
            self.events.subscribe(self._call_on_step_complete, StepCompleted)

    async def _call_on_step_complete(self, event: StepCompleted) -> None:
        outcome = self.on_step_complete(event.task_name, event.result)  # type: ignore[misc]
        if inspect.isawaitable(outcome):
            await outcome

    # -- public API ---------------------------------------------------------------------------

    async def execute(
        self, inputs: Mapping[str, Any] | None = None, pipeline_id: str | None = None
    ) -> dict[str, Any]:
        """Run the DAG; returns every output key's value."""
        return await self._run(dict(inputs or {}), pipeline_id, None)

    async def execute_async(
        self, inputs: Mapping[str, Any] | None = None, pipeline_id: str | None = None
    ) -> AsyncIterator[StepResult]:
        """Run the DAG, yielding each step's result as it completes."""
        queue: asyncio.Queue[StepResult | None] = asyncio.Queue()
        run = asyncio.ensure_future(self._run(dict(inputs or {}), pipeline_id, queue.put_nowait))
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
                self.cancel()
                await asyncio.gather(run, return_exceptions=True)

    def cancel(self) -> None:
        """Stop dispatching, cancel what is in flight, and end the run with ExecutionCancelled."""
        self._cancel_requested = True
        if self._transport is not None:
            self._transport.cancel()
        if self._wake_cancel is not None:
            self._wake_cancel()

    # -- the loop -----------------------------------------------------------------------------

    def _make_transport(self, run_id: str) -> Transport:
        spec = self._transport_spec
        if isinstance(spec, Transport):
            return spec
        from .cluster.broker import DataflowNatsBroker

        if spec == "nats" or (spec == "auto" and isinstance(self.broker, DataflowNatsBroker)):
            from .transports.nats import NatsTransport

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
        graph, names = self.dag.graph, self.dag._names
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
    ) -> dict[str, Any]:
        dag = self.dag
        self.dag.validate()
        self._check_inputs(inputs)
        run_id = pipeline_id or uuid.uuid4().hex
        graph = dag.graph
        priorities = self._priorities(graph)
        scheduler = _core.Scheduler(graph, priorities, self.max_parallel)
        transport = self._transport = self._make_transport(run_id)
        self._cancel_requested = False
        cancelled = asyncio.Event()
        self._wake_cancel = lambda: (cancelled.set(), transport.push(_WAKE))

        names, node_inputs, node_outputs, tasks = dag._names, dag._inputs, dag._outputs, dag._tasks
        values: dict[str, Any] = dict(inputs)
        attempts = [0] * len(dag)  # the attempt in flight per node; 0 = none
        plans: dict[int, tuple[Any, frozenset[str] | None, _Policy]] = {}
        failures: list[TaskError] = []
        skipped: dict[str, str] = {}
        bus = self.events
        step_events = bus.step_listeners
        started_at = time.perf_counter()
        first_error: TaskError | None = None
        status = "succeeded"
        get_value = values.__getitem__

        def plan(node: int) -> tuple[Any, frozenset[str] | None, _Policy]:
            task = tasks[node]
            found = plans.get(id(task))
            if found is None:
                found = plans[id(task)] = (
                    original_function(task),
                    _params(task),
                    self._policy(task),
                )
            return found

        def job(node: int, attempt: int) -> Job:
            func, params, policy = plan(node)
            keys = node_inputs[node]
            if params.issuperset(keys) if params is not None else _all_names(keys):
                kwargs = {k: values[k] for k in keys}
                return Job(
                    node, attempt, tasks[node], func, (), kwargs, names[node], policy.timeout
                )
            args = tuple(map(get_value, keys))
            return Job(node, attempt, tasks[node], func, args, {}, names[node], policy.timeout)

        async def dispatch(nodes: list[int]) -> None:
            if not nodes or self._cancel_requested:
                return
            for node in nodes:
                attempts[node] = 1
            if step_events:
                for node in nodes:
                    await bus.emit(StepStarted(run_id, node, names[node], 1))
            transport.kick([job(node, 1) for node in nodes])

        def retry_later(node: int, attempt: int, delay: float) -> None:
            def fire() -> None:
                if not self._cancel_requested:
                    attempts[node] = attempt
                    transport.kick([job(node, attempt)])

            if delay > 0:
                asyncio.get_running_loop().call_later(delay, fire)
            else:
                fire()

        await transport.startup()
        relax = _relaxed_gc(len(dag))
        relax.__enter__()
        if bus:
            await bus.emit(RunStarted(run_id, len(dag), tuple(inputs)))
        try:
            await dispatch(scheduler.start())
            if not scheduler.finished:
                async for batch in transport.listen():
                    if self._cancel_requested:
                        status = "cancelled"
                        break
                    done: list[int] = []
                    for c in batch:
                        if c is _WAKE or attempts[c.node] != c.attempt:
                            continue  # a wake-up, or a late duplicate of a superseded attempt
                        if c.ok:
                            try:
                                outs = _split(names[c.node], node_outputs[c.node], c.value)
                            except (TypeError, ValueError) as exc:
                                c = Completion(
                                    c.node, c.attempt, False, task_error(names[c.node], exc)
                                )
                            else:
                                attempts[c.node] = 0
                                values.update(outs)
                                done.append(c.node)
                                if step_events:
                                    await bus.emit(
                                        StepCompleted(
                                            run_id, c.node, names[c.node], c.value, c.attempt
                                        )
                                    )
                                if step_sink is not None:
                                    step_sink(
                                        StepResult(c.node, names[c.node], c.value, outs, c.attempt)
                                    )
                                continue
                        error: TaskError = c.value
                        policy = plan(c.node)[2]
                        if c.attempt <= policy.retries and not _is_cancel(error):
                            delay = policy.delay_before(c.attempt + 1)
                            attempts[c.node] = -1  # nothing in flight until the retry fires
                            if step_events:
                                await bus.emit(
                                    StepRetried(
                                        run_id, c.node, names[c.node], error, c.attempt + 1, delay
                                    )
                                )
                            retry_later(c.node, c.attempt + 1, delay)
                            continue
                        attempts[c.node] = 0
                        failures.append(error)
                        if step_events:
                            await bus.emit(
                                StepFailed(run_id, c.node, names[c.node], error, c.attempt)
                            )
                        if self.fail_fast:
                            first_error = error
                            break
                        lost = scheduler.fail(c.node)
                        for s in lost:
                            skipped[names[s]] = names[c.node]
                        if step_events:
                            for s in lost:
                                await bus.emit(StepSkipped(run_id, s, names[s], names[c.node]))
                        await dispatch(scheduler.take_ready())
                    if first_error is not None:
                        status = "failed"
                        break
                    if done:
                        await dispatch(scheduler.complete_many(done))
                    if scheduler.finished:
                        break
            if self._cancel_requested:
                status = "cancelled"
            else:
                if status != "succeeded":
                    transport.cancel()
                produced = {k: v for k, v in values.items() if k not in inputs}
                produced = await transport.materialize(produced)
        except BaseException as exc:
            status = "failed"
            self.stats = transport.stats()
            if bus:
                elapsed = time.perf_counter() - started_at
                await bus.emit(
                    RunFinished(run_id, status, scheduler.counts(), elapsed, exc, self.stats)
                )
            raise
        finally:
            relax.__exit__(None, None, None)
            self._transport = None
            self._wake_cancel = None
            if status != "succeeded":
                transport.cancel()
            await transport.shutdown()

        if status == "cancelled":
            produced = {k: v for k, v in values.items() if k not in inputs}
        self.stats = transport.stats()
        if status == "succeeded" and failures:
            status = "failed"
        error: BaseException | None = None
        if status == "cancelled":
            error = ExecutionCancelled(run_id, produced)
        elif first_error is not None:
            error = TaskFailedError(first_error)
        elif failures:
            error = DataflowExecutionError(failures, skipped, produced)
        if bus:
            elapsed = time.perf_counter() - started_at
            await bus.emit(
                RunFinished(run_id, status, scheduler.counts(), elapsed, error, self.stats)
            )
        if error is not None:
            raise error
        return produced

    # -- per-task set-up (once per distinct task, not per node) --------------------------------

    def _priorities(self, graph: _core.Graph) -> list[float] | None:
        p = self._priority
        if p is None:
            return None
        if p == "critical_path":
            return graph.bottom_levels()
        if isinstance(p, str):
            raise ValueError(f"unknown priority {p!r}: use 'critical_path' or a list of numbers")
        return [float(x) for x in p]

    def _policy(self, task: Any) -> _Policy:
        spec = get_spec(task)
        d = self._defaults
        if spec is None:
            return d

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return _Policy(
            pick(spec.retries, d.retries),
            pick(spec.retry_delay, d.delay),
            pick(spec.retry_backoff, d.backoff),
            pick(spec.retry_jitter, d.jitter),
            pick(spec.timeout, d.timeout),
        )


_WAKE: Any = Completion(-1, -1, False, None)


_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def _relaxed_gc(size: int) -> Iterator[None]:
    """Fewer cyclic-GC passes while a large run allocates its per-task objects.

    A run makes a few short-lived tuples per task; with a million-node graph alive, the default
    gen-0 threshold (700) triggers enough collections to double the engine's CPU per task.
    Restored when the last large run in the process ends.
    """
    global _gc_users, _gc_saved
    if size < 10_000:
        yield
        return
    if _gc_users == 0:
        _gc_saved = gc.get_threshold()
        gc.set_threshold(max(_gc_saved[0], 20_000), *_gc_saved[1:])
    _gc_users += 1
    try:
        yield
    finally:
        _gc_users -= 1
        if _gc_users == 0 and _gc_saved is not None:
            gc.set_threshold(*_gc_saved)


def _all_names(keys: Sequence[str]) -> bool:
    return all(k.isidentifier() for k in keys)


def _params(task: Any) -> frozenset[str] | None:
    """Parameter names that keys bind to by keyword; None when the callable takes **kwargs.

    A node whose input keys are not all parameter names (or, for **kwargs, not all Python
    names) gets its values positionally, in the order of its declared inputs; so does a
    callable whose signature cannot be read (builtins).
    """
    try:
        params = inspect.signature(original_function(task)).parameters
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(
        name
        for name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def _is_cancel(error: TaskError) -> bool:
    return error.type == "CancelledError"


def _is_local_broker(broker: Any) -> bool:
    if broker is None:
        return True
    try:
        from taskiq import InMemoryBroker
    except ImportError:  # pragma: no cover - taskiq is a dependency
        return False
    return isinstance(broker, InMemoryBroker)


def _split(name: str, outputs: Sequence[str], value: Any) -> dict[str, Any]:
    """A task's return value as {output key: value}."""
    if len(outputs) == 1:
        return {outputs[0]: value}
    if not outputs:
        return {}
    if isinstance(value, Mapping):
        missing = [k for k in outputs if k not in value]
        if missing:
            raise ValueError(
                f"task '{name}' returned a mapping without its output(s) {missing} "
                f"(it declares outputs {list(outputs)}, got keys {list(value)[:10]})"
            )
        return {k: value[k] for k in outputs}
    if isinstance(value, (tuple, list)) and len(value) == len(outputs):
        return dict(zip(outputs, value, strict=True))
    raise TypeError(
        f"task '{name}' declares outputs {list(outputs)}: return a mapping with those keys or a "
        f"tuple of {len(outputs)} values, not {type(value).__name__}"
    )
