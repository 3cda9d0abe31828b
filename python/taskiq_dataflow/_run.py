"""One execution of a DAG: the engine loop and its per-run state.

The scheduler (Rust) hands out the nodes whose inputs all exist, never more than `max_parallel`
running; the transport runs them and pushes completions back; each batch of completions is one
`complete_many` call that returns the next nodes to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _core
from .dependencies import with_dependencies
from .errors import (
    CompensationError,
    DataflowExecutionError,
    ExecutionCancelled,
    TaskFailedError,
)
from .events import (
    RunFinished,
    RunStarted,
    StepCompensated,
    StepCompleted,
    StepFailed,
    StepRetried,
    StepSkipped,
    StepStarted,
    TaskError,
)
from .streams import Stream, StreamError, StreamRef, is_producer, pump, stream_params
from .task import InEngine, get_spec, original_function
from .transports.base import Completion, Job, Transport, task_error

if TYPE_CHECKING:
    from .execution_engine import ExecutionEngine


class StepResult:
    """One completed step, as yielded by `ExecutionEngine.execute_async`."""

    __slots__ = ("attempt", "node", "outputs", "result", "task_name")

    def __init__(
        self, node: int, task_name: str, result: Any, outputs: dict[str, Any], attempt: int
    ) -> None:
        self.node, self.task_name, self.result = node, task_name, result
        self.outputs, self.attempt = outputs, attempt

    def __repr__(self) -> str:
        return f"StepResult({self.task_name!r}, outputs={list(self.outputs)})"


class Policy(NamedTuple):
    retries: int
    delay: float
    backoff: float
    jitter: float
    timeout: float | None

    def delay_before(self, attempt: int) -> float:
        """Delay before `attempt` (2 = first retry): delay * backoff^(retry-1), plus jitter."""
        base = self.delay * (self.backoff ** (attempt - 2))
        return base + (random.uniform(0, self.jitter) if self.jitter else 0.0)


class Plan(NamedTuple):
    """How to call one distinct task (made once per task, not per node)."""

    func: Any
    params: frozenset[str] | None  # keyword-bindable names; None: takes **kwargs
    policy: Policy
    compensate: Any  # None, or a callable run with the task's result when a run fails
    cache: Any  # None, or (min_ttl, max_ttl) when results are cached
    producer: bool  # an async generator: its output key is a stream
    streams: frozenset[str]  # input keys it reads as streams
    buffer: int
    where: tuple[bool | None, str | None] | None  # (local, pool) given to register_task


WAKE: Any = Completion(-1, -1, False, None)
COMPENSATION = 0  # the attempt number of a compensation job (a task's attempts start at 1)

# Per-node settings register_task(...) accepts besides the task's own pipeline_task spec.
OVERRIDES = frozenset(
    {"retries", "retry_delay", "retry_backoff", "retry_jitter", "timeout", "compensate",
     "cache", "min_ttl", "max_ttl", "pool", "local", "streams", "stream_buffer"}
)  # fmt: skip


class Run:
    def __init__(
        self,
        engine: ExecutionEngine,
        run_id: str,
        inputs: dict[str, Any],
        transport: Transport,
        step_sink: Callable[[StepResult], None] | None,
        restore: Mapping[int, Mapping[str, Any]] | None,
        parent: str | None = None,
    ) -> None:
        dag = engine.dag
        self.engine, self.run_id, self.inputs, self.transport = engine, run_id, inputs, transport
        self.step_sink = step_sink
        self.parent = parent
        self.names, self.node_inputs = dag._names, dag._inputs
        self.node_outputs, self.tasks = dag._outputs, dag._tasks
        self.metadata = dag._metadata
        self.graph = dag.graph
        self.scheduler = _core.Scheduler(
            self.graph, engine._priorities(self.graph), engine.max_parallel
        )
        self.values: dict[str, Any] = dict(inputs)
        self.restored = dict(restore or {})
        if self.restored:
            self.forget_unkept_streams()
            self.scheduler.mark_done(list(self.restored))
            for outs in self.restored.values():
                self.values.update(outs)
        self.attempts = [0] * len(dag)  # the attempt in flight per node; 0 = none
        self.plans: dict[int, Plan] = {}
        self.results: dict[int, Any] = {}  # raw results of tasks that have a compensation
        self.failures: list[TaskError] = []
        self.skipped: dict[str, str] = {}
        self.bus = engine.events
        self.step_events = self.bus.step_listeners
        self.first_error: TaskError | None = None
        self.cache = engine.cache
        self.keeps_results = False  # some task has a compensation or a cache: look at plans
        self.streaming: Streaming | None = None  # set once a task produces or reads a stream
        self.stream_keys: dict[int, frozenset[str]] = {}

    def forget_unkept_streams(self) -> None:
        """A stream that every consumer read live was not kept (its stored value is None): its
        producer runs again when one of those consumers has to."""
        restored, consumers = self.restored, self.graph.consumers
        for node, outs in list(restored.items()):
            if (
                None in outs.values()
                and is_producer(original_function(self.tasks[node]))
                and any(c not in restored for k in self.node_outputs[node] for c in consumers(k))
            ):
                del restored[node]

    # -- per task -------------------------------------------------------------------------------

    def plan(self, node: int) -> Plan:
        task = self.tasks[node]
        meta = self.metadata[node]
        # settings given to register_task for this node make a plan of its own
        own = meta is not None and not OVERRIDES.isdisjoint(meta)
        key: Any = (id(task), node) if own else id(task)
        found = self.plans.get(key)
        if found is None:
            spec = get_spec(task)
            given = {k: meta[k] for k in OVERRIDES if k in meta} if own else {}

            def setting(name: str, default: Any = None) -> Any:
                if name in given:
                    return given[name]
                return getattr(spec, name, default) if spec is not None else default

            func = with_dependencies(original_function(task), self.engine.broker)
            plain = original_function(task)
            cache = None
            if setting("cache", False) and self.cache is not None:
                if is_producer(plain):
                    raise TypeError(
                        f"task '{self.names[node]}' is a stream producer (an async generator): "
                        "its items cannot be served from the cache; drop cache=True"
                    )
                cache = (setting("min_ttl"), setting("max_ttl"))
            found = self.plans[key] = Plan(
                func,
                params_of(plain),
                self.engine._policy(task, given),
                setting("compensate"),
                cache,
                is_producer(plain),
                frozenset(setting("streams", ())) | stream_params(plain),
                setting("stream_buffer", 64),
                (given.get("local"), given.get("pool"))
                if "local" in given or "pool" in given
                else None,
            )
            if found.compensate is not None or found.cache is not None:
                self.keeps_results = True
            if found.producer or found.streams:
                self.streaming = self.streaming or Streaming(self)
        return found

    def streams_of(self, node: int) -> frozenset[str]:
        """The input keys a node reads as streams: a stream-annotated parameter names the key
        bound to it, which is a key of another name when the node binds positionally."""
        plan = self.plan(node)
        if not plan.streams:
            return plan.streams
        found = self.stream_keys.get(node)
        if found is None:
            keys = self.node_inputs[node]
            found = plan.streams.intersection(keys)
            if not (plan.params.issuperset(keys) if plan.params is not None else all_names(keys)):
                names = positional_params(original_function(self.tasks[node]))
                found |= {k for k, p in zip(keys, names, strict=False) if p in plan.streams}
            self.stream_keys[node] = found
        return found

    def job(self, node: int, attempt: int) -> Job:
        plan = self.plan(node)
        keys, values = self.node_inputs[node], self.values
        func = plan.func
        stream = None
        if self.streaming is not None and (plan.producer or plan.streams):
            values = self.streaming.arguments(node, plan)
            if plan.producer:
                if self.streaming.remote(node):
                    stream = self.streaming.remote_producer(node)
                else:
                    func = functools.partial(self.streaming.produce, node, plan.func)
        params = plan.params
        if params.issuperset(keys) if params is not None else all_names(keys):
            kwargs = {k: values[k] for k in keys}
            args: tuple[Any, ...] = ()
        else:
            kwargs = {}
            args = tuple(map(values.__getitem__, keys))
        return Job(
            node, attempt, self.tasks[node], func, args, kwargs, self.names[node],
            plan.policy.timeout, stream, plan.where,
        )  # fmt: skip

    # -- dispatch -------------------------------------------------------------------------------

    async def dispatch(self, nodes: list[int]) -> None:
        if not nodes or self.engine._cancel_requested:
            return
        attempts, names, bus = self.attempts, self.names, self.bus
        for node in nodes:
            attempts[node] = 1
        if self.streaming is None:
            jobs = [self.job(node, 1) for node in nodes]  # their plans may reveal streams
        if self.streaming is not None:
            nodes = self.streaming.before_dispatch(nodes)
            # (again, the first time) now that consumers started with their producers have routes
            jobs = [self.job(node, 1) for node in nodes]
        if self.step_events:
            for node in nodes:
                await bus.emit(StepStarted(self.run_id, node, names[node], 1))
        if self.cache is not None:
            jobs = self.serve_from_cache(jobs)
        self.transport.kick(jobs)

    def serve_from_cache(self, jobs: list[Job]) -> list[Job]:
        """Answer cached tasks at once; the rest go to the transport."""
        todo = []
        for job in jobs:
            ttl = self.plan(job.node).cache
            if ttl is not None:
                hit, value = self.cache.lookup(job, *ttl)
                if hit:
                    self.transport.push(Completion(job.node, 1, True, value, cached=True))
                    continue
            todo.append(job)
        return todo

    def retry_later(self, node: int, attempt: int, delay: float) -> None:
        def fire() -> None:
            if not self.engine._cancel_requested:
                self.attempts[node] = attempt
                self.transport.kick([self.job(node, attempt)])

        if delay > 0:
            asyncio.get_running_loop().call_later(delay, fire)
        else:
            fire()

    # -- the loop -------------------------------------------------------------------------------

    async def execute(self) -> dict[str, Any]:
        engine, transport, bus, scheduler = self.engine, self.transport, self.bus, self.scheduler
        run_id = self.run_id
        status = "succeeded"
        started_at = time.perf_counter()
        produced: dict[str, Any] = {}
        compensation: list[TaskError] = []
        await transport.startup()
        relax = relaxed_gc(len(self.tasks))
        relax.__enter__()
        if bus:
            await bus.emit(
                RunStarted(
                    run_id,
                    len(self.tasks),
                    tuple(self.inputs),
                    self.inputs,
                    len(self.restored),
                    self.parent,
                    {k: v for outs in self.restored.values() for k, v in outs.items()},
                )
            )
        try:
            await self.dispatch(scheduler.start())
            if not scheduler.finished:
                async with contextlib.aclosing(transport.listen()) as batches:
                    async for batch in batches:
                        if engine._cancel_requested or await self.on_batch(batch):
                            break
            if engine._cancel_requested:
                status = "cancelled"
            else:
                if self.first_error is not None or self.failures:
                    status = "failed"
                    transport.cancel()
                    compensation = await self.compensate()
                produced = await transport.materialize(self.produced())
        except BaseException as exc:
            status = "failed"
            engine.stats = transport.stats()
            if bus:
                elapsed = time.perf_counter() - started_at
                await bus.emit(
                    RunFinished(run_id, status, scheduler.counts(), elapsed, exc, engine.stats)
                )
            raise
        finally:
            relax.__exit__(None, None, None)
            if status != "succeeded":
                transport.cancel()
            await transport.shutdown()

        engine.stats = transport.stats()
        error: BaseException | None = None
        if status == "cancelled":
            error = ExecutionCancelled(run_id, self.produced())
        elif self.first_error is not None:
            error = TaskFailedError(self.first_error)
        elif self.failures:
            error = DataflowExecutionError(self.failures, self.skipped, produced)
        if error is not None and compensation:
            error.compensation_errors = compensation  # type: ignore[attr-defined]
            error.add_note(str(CompensationError(compensation)))
        if bus:
            elapsed = time.perf_counter() - started_at
            await bus.emit(
                RunFinished(run_id, status, scheduler.counts(), elapsed, error, engine.stats)
            )
        if error is not None:
            raise error
        return produced

    def produced(self) -> dict[str, Any]:
        inputs = self.inputs
        return {k: v for k, v in self.values.items() if k not in inputs}

    async def on_batch(self, batch: list[Completion]) -> bool:
        """Apply a batch of completions; True when the run must stop (fail fast)."""
        attempts, names, bus, run_id = self.attempts, self.names, self.bus, self.run_id
        step_events, scheduler = self.step_events, self.scheduler
        values, node_outputs = self.values, self.node_outputs
        done: list[int] = []
        stop = False
        for c in batch:
            if c is WAKE or attempts[c.node] != c.attempt:
                continue  # a wake-up, or a late duplicate of a superseded attempt
            node = c.node
            if self.streaming is not None:
                if self.streaming.hold(c):
                    continue
                c = self.streaming.unstopped(c)
            if c.ok:
                outputs = node_outputs[node]
                outs = None
                if len(outputs) != 1:
                    try:
                        outs = split_outputs(names[node], outputs, c.value)
                    except (TypeError, ValueError) as exc:
                        c = Completion(node, c.attempt, False, task_error(names[node], exc))
                if c.ok:
                    if outs is None:
                        values[outputs[0]] = c.value  # the common case: no dict to build
                    else:
                        values.update(outs)
                    attempts[node] = 0
                    done.append(node)
                    if self.keeps_results:
                        plan = self.plan(node)
                        if plan.compensate is not None:
                            self.results[node] = c.value
                        if plan.cache is not None and not c.cached:
                            self.cache.store(self.job(node, 1), c.value)
                    if step_events or self.step_sink is not None:
                        if outs is None:
                            outs = {outputs[0]: c.value}
                        if step_events:
                            event = StepCompleted(
                                run_id, node, names[node], c.value, c.attempt, None, outs,
                                c.worker, c.cached,
                            )  # fmt: skip
                            await bus.emit(event)
                        if self.step_sink is not None:
                            self.step_sink(StepResult(node, names[node], c.value, outs, c.attempt))
                    continue
            error: TaskError = c.value
            policy = self.plan(node).policy
            if (
                c.attempt <= policy.retries
                and error.type != "CancelledError"
                and not stop
                # the items a streaming consumer read as they came cannot be read again
                and (self.streaming is None or node not in self.streaming.live)
            ):
                delay = policy.delay_before(c.attempt + 1)
                attempts[node] = -1  # nothing in flight until the retry fires
                if step_events:
                    await bus.emit(
                        StepRetried(run_id, node, names[node], error, c.attempt + 1, delay)
                    )
                self.retry_later(node, c.attempt + 1, delay)
                continue
            attempts[node] = 0
            streaming = self.streaming
            if streaming is None or node not in streaming.reported:
                self.failures.append(error)
                if streaming is not None:
                    streaming.failed(node, error)
                if step_events:
                    await bus.emit(StepFailed(run_id, node, names[node], error, c.attempt))
                if self.engine.fail_fast:
                    # keep recording this batch's completions (a restart skips them), run nothing
                    if self.first_error is None:
                        self.first_error = error
                    stop = True
                    continue
            if streaming is not None and streaming.failed_early(node):
                streaming.reported.add(node)
                continue  # the scheduler fails it once it hands it out
            lost = scheduler.fail(node)
            for s in lost:
                self.skipped[names[s]] = names[node]
            if step_events:
                for s in lost:
                    await bus.emit(StepSkipped(run_id, s, names[s], names[node]))
            await self.dispatch(scheduler.take_ready())
        if stop:
            if done:
                scheduler.complete_many(done)
            return True
        if done:
            await self.dispatch(scheduler.complete_many(done))
        return scheduler.finished

    # -- compensation ---------------------------------------------------------------------------

    async def compensate(self) -> list[TaskError]:
        """Undo every completed task that has a compensation, in reverse topological order,
        each once, with its own result. Returns the compensations that failed.

        A compensation registered on the broker (`@broker.task`) runs where the broker's tasks
        run (a cluster worker); a plain function runs in the engine's process."""
        if not self.results:
            return []
        failed: list[TaskError] = []
        order = [n for n in reversed(self.graph.topological_order()) if n in self.results]
        for node in order:
            name = self.names[node]
            action = self.plan(node).compensate
            task = action if isinstance(getattr(action, "task_name", None), str) else None
            func = with_dependencies(original_function(action), self.engine.broker)
            job = Job(
                node, COMPENSATION, task or InEngine(func), func, (self.results[node],), {},
                name, None,
            )  # fmt: skip
            done = await self.transport.call(job)
            error = None if done.ok else done.value
            if error is not None:
                failed.append(error)
            if self.bus:
                await self.bus.emit(StepCompensated(self.run_id, node, name, error))
        return failed


class Streaming:
    """Stream wiring of one run: consumers started with their producer, bounded buffers.

    Producer and consumer in this process share a Stream. When either runs elsewhere (a cluster
    worker), they share a route instead (cluster/streams.py): the producer's end sends the
    items over NATS, the consumer's end is a StreamReceiver.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.link = run.transport.stream_link()  # None: every stream stays in this process
        # producer -> its live consumers' ends: Streams, or StreamRefs when one side is remote
        self.subscribers: dict[int, list[Any]] = {}
        self.attached: dict[int, dict[str, Any]] = {}  # consumer -> key -> what it reads
        self.early: dict[int, Completion | None] = {}  # started before the scheduler said so
        self.handed: set[int] = set()  # early nodes the scheduler has since handed out
        self.live: set[int] = set()  # consumers that read a stream while it was produced
        self.reported: set[int] = set()  # early nodes whose failure the run already reported
        self.stopped: set[int] = set()  # producers cancelled because nobody reads them any more
        self.kept: dict[int, bool] = {}  # producer -> keeps its list, once a reader ended

    def remote(self, node: int) -> bool:
        run = self.run
        return self.link is not None and run.transport.runs_remotely(
            run.tasks[node], run.plan(node).where
        )

    def arguments(self, node: int, plan: Plan) -> Mapping[str, Any]:
        """The node's input values, its stream keys as Streams (StreamRefs for a remote node)."""
        streams = self.run.streams_of(node)
        if not streams:
            return self.run.values
        values = dict.fromkeys(self.run.node_inputs[node])
        attached = self.attached.get(node, {})
        remote = self.remote(node)
        for key in values:
            if key not in streams:
                values[key] = self.run.values[key]
            elif key in attached:
                values[key] = attached[key]
            else:  # the producer had finished: the whole stream at once
                items = list(self.run.values[key] or ())
                values[key] = StreamRef(key, "", "", 0, items) if remote else Stream.of(key, items)
        return values

    def keeps(self, producer: int) -> bool:
        """Whether the producer's items are kept as a list: unless every consumer reads the
        stream live (a final output, a list consumer, or a streaming consumer that could not
        start with it all need the list). Only true before any of its readers ended (an
        ended reader is no longer attached)."""
        run = self.run
        return any(
            not consumers or any(key not in self.attached.get(c, {}) for c in consumers)
            for key in run.node_outputs[producer]
            for consumers in [run.graph.consumers(key)]
        )

    def remote_producer(self, node: int) -> list[Any]:
        """What a producer running elsewhere needs: keep the list?, and its consumers' routes."""
        return [self.keeps(node), self.subscribers.get(node, [])]

    async def produce(self, node: int, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an async generator task here (see streams.pump)."""
        link = self.link
        sinks = [
            link.sender(end) if isinstance(end, StreamRef) else end
            for end in self.subscribers.get(node, [])
        ]
        return await pump(func(*args, **kwargs), sinks, self.keeps(node))

    def failed(self, node: int, error: TaskError) -> None:
        """A producer elsewhere failed for good (its workers may be dead): end its streams."""
        if self.link is not None and self.remote(node):
            exc = StreamError(f"task '{error.task_name}' failed: {error.type}: {error.message}")
            for end in self.subscribers.get(node, []):
                self.link.end(end, exc)

    def before_dispatch(self, nodes: list[int]) -> list[int]:
        """The nodes to start now: `nodes` without those started early (their result is
        already on its way; a held one is released), with the streaming consumers of the
        producers among them."""
        run = self.run
        fresh = []
        for node in nodes:
            if node in self.early:
                self.handed.add(node)
                held = self.early[node]
                if held is not None:
                    self.early[node] = None
                    run.transport.push(held)
            else:
                fresh.append(node)
        starting = {n for n in fresh if run.plan(n).producer}
        starting_early = []
        work = list(starting)
        while work:
            producer = work.pop()
            for key in run.node_outputs[producer]:
                for consumer in run.graph.consumers(key):
                    if self.startable(consumer, starting):
                        self.start_early(consumer)
                        starting.add(consumer)
                        starting_early.append(consumer)
                        if run.plan(consumer).producer:
                            work.append(consumer)
        return fresh + starting_early

    def startable(self, node: int, starting: set[int]) -> bool:
        run = self.run
        if node in self.early or run.attempts[node] != 0 or node in starting:
            return False
        streams = run.streams_of(node)
        if not streams:
            return False
        produced = run.values
        for key in run.node_inputs[node]:
            if key in produced:
                continue
            if key not in streams:
                return False
            producer = run.graph.producer(key)
            if producer not in starting:
                return False
        return True

    def start_early(self, node: int) -> None:
        run = self.run
        plan = run.plan(node)
        attached = self.attached.setdefault(node, {})
        streams = run.streams_of(node)
        for index, key in enumerate(run.node_inputs[node]):
            if key not in streams or key in run.values:
                continue
            producer = run.graph.producer(key)
            end: Any
            if self.link is None or not (self.remote(node) or self.remote(producer)):
                end = attached[key] = Stream(key, plan.buffer)
            else:
                end = self.link.route(node, index, key, plan.buffer)
                attached[key] = end if self.remote(node) else self.link.receiver(end)
            self.subscribers.setdefault(producer, []).append(end)
        run.attempts[node] = 1
        self.early[node] = None
        self.live.add(node)

    def hold(self, c: Completion) -> bool:
        """Keep an early node's result until the scheduler hands the node out. A failure is
        not kept from the run: it is reported at once (fail_fast stops the run now), and only
        the scheduler's part waits for the hand-out (see failed_early)."""
        node = c.node
        if node not in self.early:
            return False
        self.stop_reading(node)
        if node in self.handed:
            del self.early[node]
            self.handed.discard(node)
            return False
        self.early[node] = c
        return c.ok

    def stop_reading(self, node: int) -> None:
        """The node ended: its producers stop waiting for it, and one left without readers
        and not kept stops producing: cancelled now where the transport can (a producer in
        this process), else at its next item (streams.pump)."""
        run = self.run
        producers = {run.graph.producer(key) for key in self.attached.get(node, ())}
        # decided when the first of its readers ends, all still attached: a detached reader
        # would count as one that needs the whole list
        for p in producers - self.kept.keys():
            self.kept[p] = self.keeps(p)
        unkept = {p for p in producers if not self.kept[p]}
        attached = self.attached.pop(node, {})
        for end in attached.values():
            if isinstance(end, StreamRef):
                assert self.link is not None
                self.link.abandon(end)
            else:
                end._abandon()
        for producer in unkept:
            if (
                run.attempts[producer] > 0
                and producer not in self.stopped
                and not self.read_live(producer)
                and run.transport.stop(producer)
            ):
                self.stopped.add(producer)

    def read_live(self, producer: int) -> bool:
        """Whether a consumer still reads one of the producer's streams as it comes."""
        run = self.run
        return any(
            key in self.attached.get(consumer, ())
            for key in run.node_outputs[producer]
            for consumer in run.graph.consumers(key)
        )

    def unstopped(self, c: Completion) -> Completion:
        """A producer cancelled for want of readers completed: its stream was not kept, so
        its value is None, as if it had ended by itself."""
        if c.ok or c.node not in self.stopped or c.value.type != "CancelledError":
            return c
        return Completion(c.node, c.attempt, True, None, c.worker)

    def failed_early(self, node: int) -> bool:
        """Whether `node` failed before the scheduler handed it out (it is still pending there
        while its producer runs); its held failure is pushed again at the hand-out."""
        held = self.early.get(node)
        return held is not None and not held.ok


# -- helpers ----------------------------------------------------------------------------------

_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def relaxed_gc(size: int) -> Iterator[None]:
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


def all_names(keys: Sequence[str]) -> bool:
    return all(k.isidentifier() for k in keys)


def params_of(func: Any) -> frozenset[str] | None:
    """Parameter names that keys bind to by keyword; None when the callable takes **kwargs.

    A node whose input keys are not all parameter names (or, for **kwargs, not all Python
    names) gets its values positionally, in the order of its declared inputs; so does a
    callable whose signature cannot be read (builtins).
    """
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(
        name
        for name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def positional_params(func: Any) -> list[str]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]


def split_outputs(name: str, outputs: Sequence[str], value: Any) -> dict[str, Any]:
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
