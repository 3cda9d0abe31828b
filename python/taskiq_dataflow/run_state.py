"""The run as a pure state machine: events in, batched instructions out.

`RunState` holds everything one execution of a DAG knows (values, attempts in flight, failures,
the Rust scheduler) and does no I/O: no asyncio, no transport, no event bus, no cache. The
driver (driver.py) feeds it events (a batch of completions, a retry that came due, a cancel)
and carries out what comes back, in order: emit these events, look these jobs up in the cache,
dispatch these jobs, retry this node after a delay, stop these producers, finish.

Instructions are per batch, never per task: one Dispatch carries every job a batch made ready.
A job is still one NamedTuple per task (the transports' unit), as before this split.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _core
from .dependencies import with_dependencies
from .errors import (
    ClusterError,
    DataflowExecutionError,
    ExecutionCancelled,
    GrowthError,
    TaskFailedError,
)
from .events import (
    Event,
    RunGrew,
    StepCompleted,
    StepFailed,
    StepLogged,
    StepRequeued,
    StepRetried,
    StepSkipped,
    StepStarted,
    TaskError,
)
from .growth_state import Growth
from .router import Placement, Router
from .streams import is_producer, stream_params
from .task import (  # the binding rules live with the tasks (the transports use them too)
    InEngine,
    all_names,
    get_spec,
    original_function,
    params_of,
    positional_params,
)
from .transports.base import Completion, Job, new_completion, new_job, task_error

if TYPE_CHECKING:
    from .dataflow.graph import NodeFields
    from .stream_wiring import Streaming

JITTER_SHARE = 0.1  # retry_jitter=True: up to this share of the delay is added at random
COMPENSATION = 0  # the attempt number of a compensation job (a task's attempts start at 1)

# Per-node settings register_task(...) accepts besides the task's own pipeline_task spec.
OVERRIDES = frozenset(
    {"retries", "retry_delay", "retry_backoff", "retry_jitter", "timeout", "compensate",
     "cache", "min_ttl", "max_ttl", "pool", "local", "streams", "stream_buffer"}
)  # fmt: skip

_HERE = Placement(True, None, "")  # a plain compensation: it cannot leave this process


# -- events in ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Completed:
    """A batch of completions (successes and failures) as the transports pushed them."""

    batch: list[Completion]


@dataclass(slots=True)
class TasksAdded:
    """A running task added tasks to the run (`RunState.add_tasks` already grew the scheduler):
    `ready` can run now, `skipped` read a key of a task that failed."""

    first: int
    count: int
    ready: list[int]
    skipped: list[int]


class Deferred:
    """What a task returns when a task it added computes its output (`growth.result_of`)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"result_of({self.key!r})"


@dataclass(slots=True)
class RetryDue:
    """The delay before a retry has passed: run `node` again as `attempt`."""

    node: int
    attempt: int


@dataclass(slots=True)
class SlotsGranted:
    """The engine's shared slots raised this run's capacity: dispatch what is ready."""


@dataclass(slots=True)
class Cancel:
    """Stop dispatching; the run ends as cancelled."""


@dataclass(slots=True)
class WorkerLost:
    """A cluster worker stopped heart-beating while it ran `jobs` (the jobs as they were kicked;
    the transport keeps their frames): send each again, or fail it once it was lost more than
    `limit` times (the transport's max_redeliveries)."""

    worker: str
    jobs: list[Job]
    limit: int


# -- instructions out -----------------------------------------------------------------------------


@dataclass(slots=True)
class Emit:
    """Hand these events to the bus, in order (made only when someone listens to steps)."""

    events: list[Event]


@dataclass(slots=True)
class Deliver:
    """Yield these step results to an `execute_async` caller."""

    steps: list[StepResult]


@dataclass(slots=True)
class LookUp:
    """Answer these jobs from the result cache; a miss is dispatched. `ttls[i]` is
    (min_ttl, max_ttl) of `jobs[i]`."""

    jobs: list[Job]
    ttls: list[tuple[Any, Any]]


@dataclass(slots=True)
class Dispatch:
    """Kick these jobs on the transport."""

    jobs: list[Job]


@dataclass(slots=True)
class StepInPlace:
    """Step these nodes' tasks in place (Transport.step_in_place) and feed what they returned
    to `stepped`: the plain in-process case, with no Job nor Completion per task. Their
    attempts stay 0 while they are stepped: `stepped` gives attempt 1 to those that took the
    long way (kicked, suspended, failed) before any completion of theirs is read."""

    nodes: list[int]


@dataclass(slots=True)
class RetryAt:
    """Feed RetryDue(node, attempt) back after `delay` seconds."""

    node: int
    attempt: int
    delay: float


@dataclass(slots=True)
class Stop:
    """Cancel these producers' jobs where the transport can (nobody reads their streams)."""

    nodes: list[int]


@dataclass(slots=True)
class Requeue:
    """Feed these completions back as if just pushed (results held while a node that started
    early with its producer waited for the scheduler to hand it out)."""

    completions: list[Completion]


@dataclass(slots=True)
class Store:
    """Put these (job, result) pairs in the result cache."""

    entries: list[tuple[Job, Any]]


@dataclass(slots=True)
class Finish:
    """The run is over: 'succeeded', 'failed' (compensate, then raise) or 'cancelled'."""

    status: str


Instruction = (
    Emit | Deliver | LookUp | Dispatch | StepInPlace | RetryAt | Stop | Requeue | Store | Finish
)


# -- per task -------------------------------------------------------------------------------------


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
    jitter: float | bool  # seconds of random extra delay; True (taskiq-flow's bool): 10% of it
    timeout: float | None

    def delay_before(self, attempt: int) -> float:
        """Delay before `attempt` (2 = first retry): delay * backoff^(retry-1), plus jitter."""
        base = self.delay * (self.backoff ** (attempt - 2))
        jitter = self.jitter
        if jitter is True:
            return base + random.uniform(0, base * JITTER_SHARE)
        return base + (random.uniform(0, jitter) if jitter else 0.0)


def resolve_policy(defaults: Policy, task: Any, overrides: Mapping[str, Any] | None) -> Policy:
    """Retry and timeout settings: register_task(...) keywords, then the task's pipeline_task
    spec, then the engine's defaults."""
    spec = get_spec(task)
    if spec is None and not overrides:
        return defaults
    given = overrides or {}

    def pick(name: str, default: Any) -> Any:
        value = given.get(name, getattr(spec, name, None))
        return default if value is None else value

    return Policy(
        pick("retries", defaults.retries),
        pick("retry_delay", defaults.delay),
        pick("retry_backoff", defaults.backoff),
        pick("retry_jitter", defaults.jitter),
        pick("timeout", defaults.timeout),
    )


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
    place: Placement  # where it runs, from the transport's Router


def _changes_nothing(plan: Plan) -> bool:
    """Whether a run that uses `plan` stays as it is (RunState.plan sets no flag for it)."""
    return plan.compensate is None and plan.cache is None and not (plan.producer or plan.streams)


class SharedPlans:
    """An engine's plans across its runs: id(task) -> (task, plan), the task kept so that its
    id cannot be reused by another object. Valid for one set of engine settings (`key`)."""

    __slots__ = ("by_task", "key", "plain")

    def __init__(self) -> None:
        self.key: tuple[Any, ...] = ()
        self.by_task: dict[int, tuple[Any, Plan]] = {}
        # id(task) -> plan, of the plans that change nothing in a run that uses them (no
        # cache, compensation or stream): a run starts with these (RunState.plans), and asks
        # plan() only for the others. An id here cannot be another task's: by_task holds it
        self.plain: dict[int, Plan] = {}

    def valid_for(self, key: tuple[Any, ...]) -> SharedPlans:
        """Itself, emptied first if the settings plans depend on changed."""
        if key != self.key:
            self.key, self.by_task, self.plain = key, {}, {}
        return self


@dataclass(slots=True)
class RunConfig:
    """What a run takes from its engine (so the state reads no engine internals)."""

    dag: Any
    defaults: Policy
    fail_fast: bool = True
    max_parallel: int | None = None
    priorities: list[float] | None = None
    broker: Any = None  # for task dependencies (taskiq's Context/TaskiqDepends)
    caching: bool = False  # a result cache exists: tasks declared cache=True use it
    step_events: bool = False  # someone listens to per-step events
    deliver_steps: bool = False  # an execute_async caller wants each StepResult
    router: Router = field(default_factory=Router.in_process)
    # the run store's recording (store._Recording): digests and restores added tasks
    recording: Any = None
    # plans kept by the engine across its runs, for the tasks of nodes below `shared_below`
    # (the engine's own DAG; tasks added by growth or by streamed inputs are per run): made
    # once per task per engine, not once per run, which is most of a small run's cost
    shared_plans: SharedPlans | None = None
    shared_below: int = 0


class RunState:
    """One execution of a DAG, without I/O. Feed `start()`, then `completed(batch)` or
    `handle(event)`; each returns the instructions to carry out. `status` is None while the
    run goes on."""

    # slots: over 30 attributes unshare an instance dict's keys (CPython 3.11), which made a
    # small run's state cost 1.2 us to build instead of 0.4 and slowed every attribute read
    __slots__ = (
        "_events",
        "_in_place",
        "_jobs",
        "_keeps",
        "_lookups",
        "_monitor",
        "_retries",
        "_steps",
        "_steps_ok",
        "_stores",
        "attempts",
        "awaited",
        "config",
        "defers_to",
        "deliver_steps",
        "fail_fast",
        "failures",
        "first_error",
        "graph",
        "grown",
        "inputs",
        "link",
        "losses",
        "metadata",
        "names",
        "node_inputs",
        "node_outputs",
        "plain",
        "plans",
        "requeue",
        "restored",
        "results",
        "router",
        "run_id",
        "scheduler",
        "skipped",
        "status",
        "step_events",
        "stops",
        "stream_keys",
        "streaming",
        "tasks",
        "values",
    )

    def __init__(
        self,
        run_id: str,
        config: RunConfig,
        inputs: dict[str, Any],
        restore: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> None:
        dag = config.dag
        self.run_id, self.config, self.inputs = run_id, config, inputs
        # the DAG's columns themselves (no copies): one list item per node
        self.names, self.node_inputs = dag.task_names, dag.node_inputs
        self.node_outputs, self.tasks = dag.node_outputs, dag.tasks
        self.metadata = dag.node_metadata
        self.graph = dag.graph
        self.router = config.router
        self.fail_fast, self.step_events = config.fail_fast, config.step_events
        self.deliver_steps = config.deliver_steps
        self.scheduler = _core.Scheduler(self.graph, config.priorities, config.max_parallel)
        self.values: dict[str, Any] = dict(inputs)
        self.restored = dict(restore or {})
        # the attempt in flight per node; 0 = none, -1 = waiting
        self.attempts = [0] * len(self.tasks)
        shared = config.shared_plans
        self.plans: dict[Any, Plan] = {} if shared is None else dict(shared.plain)
        self.results: dict[int, Any] = {}  # raw results of tasks that have a compensation
        self.failures: list[TaskError] = []
        self.skipped: dict[str, str] = {}
        self.first_error: TaskError | None = None
        self._keeps = False  # keeps_results
        self.link: Any = None  # the transport's stream link (set by the driver once started)
        self.streaming: Streaming | None = None  # set once a task produces or reads a stream
        self.stream_keys: dict[int, frozenset[str]] = {}
        self.status: str | None = None
        self._steps_ok = False  # in_place
        self._in_place: list[int] = []
        self._monitor: Any = None  # monitor
        # whether a node that returned in place needs nothing recorded but its value: read
        # once per batch, so kept up to date (_replain) by whatever changes what it depends on
        self.plain = False
        # what the current event produced, turned into instructions by _out()
        self._events: list[Event] = []
        self._steps: list[StepResult] = []
        self._jobs: list[Job] = []
        self._lookups: list[Job] = []
        self._retries: list[RetryAt] = []
        self._stores: list[tuple[Job, Any]] = []
        self.requeue: list[Completion] = []  # filled by the stream wiring
        self.stops: list[int] = []  # filled by the stream wiring
        # set once a task added tasks: the columns are then this run's copies, not the DAG's
        self.grown: Growth | None = None
        self.losses: dict[tuple[int, int], list[str]] = {}  # (node, attempt) -> workers lost
        # tasks that returned result_of(key): the node each waits for (the one computing its
        # result, or what that one waits for in turn), and per producer of such a key the
        # (node, key) pairs waiting for it
        self.defers_to: dict[int, int] = {}
        self.awaited: dict[int, list[tuple[int, str]]] = {}
        if self.restored:
            self._restore()

    def _restore(self) -> None:
        from .stream_wiring import forget_unkept_streams

        forget_unkept_streams(self)
        self.scheduler.mark_done(list(self.restored))
        for outs in self.restored.values():
            self.values.update(outs)

    # -- events in ------------------------------------------------------------------------------

    def start(self) -> list[Instruction]:
        self._dispatch(self.scheduler.start())
        self._check_finished()
        return self._out()

    def handle(
        self, event: Completed | RetryDue | SlotsGranted | Cancel | TasksAdded | WorkerLost
    ) -> list[Instruction]:
        if type(event) is Completed:
            return self.completed(event.batch)
        if type(event) is TasksAdded:
            return self._tasks_added(event)
        if type(event) is RetryDue:
            return self._retry_due(event.node, event.attempt)
        if type(event) is SlotsGranted:
            self._dispatch(self.scheduler.take_ready())
            return self._out()
        if type(event) is Cancel:
            return self.cancel()
        if type(event) is WorkerLost:
            return self._worker_lost(event)
        raise TypeError(f"RunState cannot handle {type(event).__name__}: {event!r}")

    def cancel(self) -> list[Instruction]:
        if self.status is None:
            self.status = "cancelled"
        return self._out()

    def _retry_due(self, node: int, attempt: int) -> list[Instruction]:
        if self.status is None:
            self.attempts[node] = attempt
            self._jobs.append(self.job(node, attempt))
        return self._out()

    def completed(self, batch: list[Completion]) -> list[Instruction]:
        """Apply a batch of completions: one complete_many call into the scheduler."""
        if self.status is not None:
            return []  # late arrivals after the end (a cancel, fail_fast): nothing to do
        if self._monitor is not None:
            self._monitor.completed(batch)
        done: list[int] = []
        return self._advance(done, self._record(batch, done))

    def stepped(
        self, nodes: list[int], done: list[int], values: list[Any], rest: list[int]
    ) -> list[Instruction]:
        """What the StepInPlace of `nodes` came to: `done[i]` returned `values[i]` without
        suspending; the others ended in a Completion on the sink (attempt 1), or go on as
        jobs; `rest` (a suffix of `nodes`) were not stepped (a plan made on the way asked for
        the long way) and are dispatched as jobs."""
        attempts = self.attempts
        if len(done) + len(rest) != len(nodes):
            returned = set(done)
            for node in nodes[: len(nodes) - len(rest)]:
                if node not in returned:
                    attempts[node] = 1
        if self.status is not None:
            return []
        if rest:
            self._dispatch_jobs(rest)
        if not self.plain:  # a task grew the run, or a stream or a monitor came
            for node in done:
                attempts[node] = 1
            pairs = zip(done, values, strict=True)
            ok = [new_completion((n, 1, True, v, None, False, None)) for n, v in pairs]
            return self.completed(ok)
        node_outputs, kept = self.node_outputs, self.values
        slow = None
        for node, value in zip(done, values, strict=True):
            try:
                (key,) = node_outputs[node]  # (cheaper than a len() check when it holds)
            except ValueError:  # no output, or a dict spread over its outputs (checked there)
                if slow is None:
                    slow = []
                attempts[node] = 1
                slow.append(new_completion((node, 1, True, value, None, False, None)))
                continue
            kept[key] = value
        if slow is not None:
            spread = {c.node for c in slow}
            finished = [node for node in done if node not in spread]
            return self._advance(finished, self._record(slow, finished))
        if rest:
            return self._advance(done, False)
        # the common case: _advance with _dispatch's in-place branch, whose checks held above
        ready = self.scheduler.complete_many(done) if done else None
        if not ready:
            self._check_finished()
            return self._out()
        return [StepInPlace(ready)]

    def _record(self, batch: list[Completion], done: list[int]) -> bool:
        """Record each completion; the nodes that succeeded go to `done`. True: the run stops
        (a failure under fail_fast)."""
        attempts, node_outputs, values = self.attempts, self.node_outputs, self.values
        plain = not (self._keeps or self.step_events or self.deliver_steps)
        # after growth, a result_of or a result awaited by one takes the long way
        grown, awaited = self.grown is not None, self.awaited
        streaming = self.streaming
        stop = False
        for c in batch:
            # unpacked, not read by name: a NamedTuple field costs a descriptor lookup
            node, attempt, ok, value, _, _, logs = c
            if attempts[node] != attempt:
                continue  # a late duplicate of a superseded attempt
            if streaming is not None:
                if streaming.hold(c):
                    continue
                c = streaming.unstopped(c)
                ok, logs = c.ok, c.logs
            if ok:
                outputs = node_outputs[node]
                if (
                    plain
                    and len(outputs) == 1
                    and not logs
                    and (not grown or (type(c.value) is not Deferred and node not in awaited))
                ):  # the hot path: nothing else to record
                    values[outputs[0]] = c.value if streaming is not None else value
                    attempts[node] = 0
                    done.append(node)
                    continue
                if c.logs:
                    self._logged(c)
                c = self._succeeded(c, outputs, done)
                if c.ok:
                    continue
            elif c.logs:
                self._logged(c)
            stop = self._failed(c, stop) or stop
        return stop

    def _advance(self, done: list[int], stop: bool) -> list[Instruction]:
        """The batch is recorded: complete `done` in the scheduler, dispatch what that made
        ready (unless the run stops), and say what to do."""
        if stop:
            if done:
                self.scheduler.complete_many(done)
            self.status = "failed"
            return self._out()
        if done:
            self._dispatch(self.scheduler.complete_many(done))
        self._check_finished()
        return self._out()

    # -- tasks added while the run goes on ------------------------------------------------------

    def add_tasks(
        self,
        added: Sequence[NodeFields],
        values: Mapping[str, Any] | None = None,
        max_parallel: int | None = None,
        private: bool = False,
        priority: float | Sequence[float] | None = None,
    ) -> TasksAdded:
        """Grow the run by `added` (one scheduler call for the batch); raises GrowthError, naming
        the task and key, with nothing added. Feed the returned event to `handle`.

        `values`: new keys available at once (like run inputs). `max_parallel`: most of the
        batch's tasks in flight at once. `private`: the batch's keys (and `values`) are the
        adding task's own: left out of the run's outputs, dropped once a task that returned
        result_of one of them has its result, and not readable by tasks added later.
        `priority`: one for the batch or one per task (higher runs first among ready tasks;
        default 0)."""
        if self.status is not None:
            raise GrowthError(f"cannot add tasks to run {self.run_id}: it has {self.status}")
        grown = self.grown if self.grown is not None else self._start_growing()
        given = grown.check_given(self, values) if values else None
        priorities = None
        if priority is not None:
            if isinstance(priority, (int, float)):
                priorities = [float(priority)] * len(added)
            else:
                priorities = [float(p) for p in priority]
                if len(priorities) != len(added):
                    raise GrowthError(
                        f"add_tasks() got {len(priorities)} priorities for {len(added)} tasks"
                    )
        recording, restored = self.config.recording, None
        if recording is not None:
            found = recording.restorable_added(self.run_id, added, given or {})
            if found:
                # completed by the run this one restarts: their outputs are given, not computed
                keep = [i for i in range(len(added)) if i not in found]
                added = [added[i] for i in keep]
                if priorities is not None:
                    priorities = [priorities[i] for i in keep]
                restored = {k: v for outs in found.values() for k, v in outs.items()}
                given = {**(given or {}), **restored}
        names, counts, reads = grown.flatten(added, self.inputs, given)
        group = None
        if max_parallel is not None:
            if max_parallel < 1:
                raise GrowthError(f"max_parallel must be at least 1, got {max_parallel}")
            group = self.scheduler.new_group(max_parallel)
        try:
            first, ready, skipped = self.scheduler.add_nodes(
                names, counts, priorities=priorities, group=group
            )
        except _core.GrowthError as exc:
            raise GrowthError(grown.explain(exc, added, self.names)) from None
        if given:
            self.values.update(given)
        if recording is not None:
            recording.added(self.run_id, first, added)
        grown.record(self, added, reads, given, private, restored)
        for node in skipped:
            self._skipped_at_once(node)
        if self.step_events:
            self._events.append(RunGrew(self.run_id, len(added), len(self.tasks)))
        return TasksAdded(first, len(added), ready, skipped)

    def _start_growing(self) -> Growth:
        self.names, self.node_inputs = list(self.names), list(self.node_inputs)
        self.node_outputs, self.tasks = list(self.node_outputs), list(self.tasks)
        self.metadata = list(self.metadata)
        self.grown = Growth(self)
        self.plain = False
        return self.grown

    def _skipped_at_once(self, node: int) -> None:
        assert self.grown is not None
        names = self.names
        upstream = self.grown.lost_upstream(self, node)
        self.skipped[names[node]] = upstream
        if self.step_events:
            self._events.append(StepSkipped(self.run_id, node, names[node], upstream))

    def _tasks_added(self, event: TasksAdded) -> list[Instruction]:
        self._dispatch(event.ready)
        self._check_finished()
        return self._out()

    # -- workers lost ---------------------------------------------------------------------------

    def _worker_lost(self, event: WorkerLost) -> list[Instruction]:
        """A loss is not a failed attempt: the job goes again as it was (same attempt, its
        retries left whole) and its node stays Running in the scheduler, so the slot it holds
        is the one it runs in again. A stream task goes again the same way, on the same
        routes, as the cluster's streams expect: a producer regenerates its items and skips
        what its consumers have; a consumer that had already read items fails, its producer
        naming them (cluster/streams.py), and that failure is final (_may_retry)."""
        if self.status is not None:
            return []
        attempts = self.attempts
        current = [job for job in event.jobs if attempts[job.node] == job.attempt]
        again, lost = self.requeue_lost(event.worker, current, event.limit)
        if again:
            self._jobs.extend(again)
            if self.step_events:
                run_id, losses, worker = self.run_id, self.losses, event.worker
                for job in again:
                    lost_so_far = len(losses[job.node, job.attempt])
                    self._events.append(
                        StepRequeued(run_id, job.node, job.name, job.attempt, worker, lost_so_far)
                    )
        # lost too often: a failure like any transport's, retried per the task's policy
        return self.completed(lost)

    def requeue_lost(
        self, worker: str, jobs: Sequence[Job], limit: int
    ) -> tuple[list[Job], list[Completion]]:
        """Count a loss of each of `jobs` with `worker`: the jobs to send again, and the
        failures of those lost more than `limit` times (the driver uses it for compensations,
        which run after the run's state is over)."""
        again: list[Job] = []
        lost: list[Completion] = []
        for job in jobs:
            key = (job.node, job.attempt)
            workers = self.losses.setdefault(key, [])
            workers.append(worker)
            if len(workers) <= limit:
                again.append(job)
                continue
            del self.losses[key]  # a retry, if any, is another attempt with losses of its own
            error = task_error(job.name, ClusterError(self._lost_message(job.name, workers)))
            lost.append(Completion(job.node, job.attempt, False, error, worker))
        return again, lost

    @staticmethod
    def _lost_message(name: str, workers: Sequence[str]) -> str:
        """Why a task failed without an answer: the workers that stopped heart-beating while
        they ran it (one lost more than once is named once, with its count)."""
        counts: dict[str, int] = {}
        for worker in workers:
            counts[worker[:80]] = counts.get(worker[:80], 0) + 1
        n = len(workers)
        if len(counts) == 1:
            (worker,) = counts
            times = "once" if n == 1 else f"{n} times"
            head = f"worker {worker} was lost {times} while running task '{name}'"
        else:
            named = ", ".join(w if k == 1 else f"{w} ({k} times)" for w, k in counts.items())
            why = (
                f"each of the {n} workers that held it stopped heart-beating"
                if len(counts) == n
                else f"lost {n} times"
            )
            head = f"workers {named} were lost while running task '{name}' ({why})"
        return (
            f"{head}: the task may be what kills or hangs them; raise max_redeliveries if they "
            "are just unstable"
        )

    # -- completions ----------------------------------------------------------------------------

    def _logged(self, c: Completion) -> None:
        """What an execution logged, before the event of its outcome."""
        assert c.logs is not None
        node = c.node
        if self._monitor is not None:
            self._monitor.logged(self.names[node], c.logs)
        if self.step_events:
            self._events.append(StepLogged(self.run_id, node, self.names[node], c.attempt, c.logs))

    def _succeeded(self, c: Completion, outputs: Sequence[str], done: list[int]) -> Completion:
        """Record a success (several outputs, a cache, a compensation, listeners); returns the
        completion turned into a failure when its value does not split into its outputs."""
        node, name = c.node, self.names[c.node]
        if type(c.value) is Deferred:
            return self._deferred(c, done)
        outs = None
        if len(outputs) != 1:
            try:
                outs = split_outputs(name, outputs, c.value)
            except (TypeError, ValueError) as exc:
                return Completion(node, c.attempt, False, task_error(name, exc))
        fills = None
        if self.awaited and node in self.awaited:
            try:
                fills = self._fills(node, outs if outs is not None else {outputs[0]: c.value})
            except (TypeError, ValueError) as exc:
                return Completion(node, c.attempt, False, task_error(name, exc))
        if outs is not None:
            self.values.update(outs)
        else:
            self.values[outputs[0]] = c.value
        self.attempts[node] = 0
        done.append(node)
        if c.cached and self._monitor is not None:
            self._monitor.cached(node)
        if self._keeps:
            plan = self.plan(node)
            if plan.compensate is not None:
                self.results[node] = c.value
            if plan.cache is not None and not c.cached:
                self._stores.append((self.job(node, 1), c.value))
        if self.step_events or self.deliver_steps:
            if outs is None:
                outs = {outputs[0]: c.value}
            if self.step_events:
                event = StepCompleted(
                    self.run_id, node, name, c.value, c.attempt, None, outs, c.worker, c.cached
                )
                self._events.append(event)
            if self.deliver_steps:
                self._steps.append(StepResult(node, name, c.value, outs, c.attempt))
        if fills:
            self._fill(fills, c.attempt)
        return c

    # -- results computed by added tasks ----------------------------------------------------------

    def _deferred(self, c: Completion, done: list[int]) -> Completion:
        """`c` returned result_of(key): the node counts as done for the scheduler (its slot is
        free) but its dependents also wait for the task computing `key`, and its output is
        recorded when that task's is."""
        node, key = c.node, c.value.key
        grown = self.grown
        if (
            grown is not None
            and key in self.values
            and (key in grown.producer or key in grown.given)
        ):
            # computed already (or restored): an ordinary result
            value = Completion(node, c.attempt, True, self.values[key])
            return self._succeeded(value, self.node_outputs[node], done)
        producer = None if grown is None else grown.producer.get(key)
        if producer is None:
            return self._refused(c, f"returned result_of({key!r}), but no added task outputs it")
        target = producer
        while target in self.defers_to:  # it waits for a result itself: wait for that one
            target = self.defers_to[target]
        self.attempts[node] = 0
        if self.scheduler.state(target) in ("failed", "skipped"):
            self._skip_awaiting(target, [(node, key)])
            self._skip(node)  # its dependents are skipped as they would be behind `target`
            return c
        try:
            self.scheduler.defer(node, target)
        except _core.GrowthError as exc:
            self.attempts[node] = c.attempt
            return self._refused(c, f"returned result_of({key!r}): {exc.args[0]}")
        self.defers_to[node] = target
        self.awaited.setdefault(producer, []).append((node, key))
        assert grown is not None
        for output in self.node_outputs[node]:
            grown.waiting[output] = key
        done.append(node)
        return c

    def _refused(self, c: Completion, why: str) -> Completion:
        name = self.names[c.node]
        error = task_error(name, GrowthError(f"task {name!r} {why}"))
        return Completion(c.node, c.attempt, False, error)

    def _fills(self, producer: int, outs: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """The outputs of the tasks waiting (through result_of) for `producer`'s `outs`, and of
        those waiting for them in turn; raises when one does not split into its outputs."""
        found: list[tuple[int, dict[str, Any]]] = []
        todo = [(producer, outs)]
        while todo:
            p, p_outs = todo.pop()
            for node, key in self.awaited.get(p, ()):
                node_outs = split_outputs(self.names[node], self.node_outputs[node], p_outs[key])
                found.append((node, node_outs))
                todo.append((node, node_outs))
        return found

    def _fill(self, fills: list[tuple[int, dict[str, Any]]], attempt: int) -> None:
        names, grown = self.names, self.grown
        assert grown is not None
        for node, outs in fills:
            producer = self.defers_to.pop(node)
            self.values.update(outs)
            for output in outs:
                grown.waiting.pop(output, None)
            value = outs[self.node_outputs[node][0]] if len(outs) == 1 else outs
            if self.step_events:
                event = StepCompleted(
                    self.run_id, node, names[node], value, attempt, None, outs, None, False
                )
                self._events.append(event)
            if self.deliver_steps:
                self._steps.append(StepResult(node, names[node], value, outs, attempt))
            grown.drop_private(self, producer)
        for node, _ in fills:
            self.awaited.pop(node, None)

    def _skip_awaiting(self, cause: int, waiting: list[tuple[int, str]]) -> None:
        """The tasks in `waiting` never get their output (`cause`, computing it, failed or was
        skipped): they count as skipped, and so do those waiting for them."""
        names = self.names
        while waiting:
            node, _ = waiting.pop()
            self.defers_to.pop(node, None)
            if self.grown is not None:
                for output in self.node_outputs[node]:
                    self.grown.waiting.pop(output, None)
            self.skipped[names[node]] = names[cause]
            if self.step_events:
                self._events.append(StepSkipped(self.run_id, node, names[node], names[cause]))
            waiting += self.awaited.pop(node, ())

    def _failed(self, c: Completion, stopping: bool) -> bool:
        """Retry, or record a failure for good; True when the run must stop (fail_fast)."""
        node, error = c.node, c.value
        if self._monitor is not None:
            self._monitor.failed(c, self.names[node])
        if not stopping and self._may_retry(c):
            return False
        self.attempts[node] = 0
        streaming = self.streaming
        if streaming is None or node not in streaming.reported:
            self.failures.append(error)
            if streaming is not None:
                streaming.failed(node, error)
            if self.step_events:
                self._events.append(
                    StepFailed(self.run_id, node, self.names[node], error, c.attempt)
                )
            if self.fail_fast:
                # keep recording this batch's completions (a restart skips them), run nothing
                if self.first_error is None:
                    self.first_error = error
                return True
        if streaming is not None and streaming.failed_early(node):
            streaming.reported.add(node)
            return False  # the scheduler fails it once it hands it out
        self._skip(node)
        return False

    def _may_retry(self, c: Completion) -> bool:
        node, error = c.node, c.value
        policy = self.plan(node).policy
        if (
            c.attempt > policy.retries
            or error.type == "CancelledError"
            # the items a streaming consumer read as they came cannot be read again
            or (self.streaming is not None and node in self.streaming.live)
        ):
            return False
        attempt = c.attempt + 1
        delay = policy.delay_before(attempt)
        if self.step_events:
            self._events.append(
                StepRetried(self.run_id, node, self.names[node], error, attempt, delay)
            )
        if delay > 0:
            self.attempts[node] = -1  # nothing in flight until the retry fires
            self._retries.append(RetryAt(node, attempt, delay))
        else:
            self.attempts[node] = attempt
            self._jobs.append(self.job(node, attempt))
        return True

    def _skip(self, node: int) -> None:
        names = self.names
        lost = self.scheduler.fail(node)
        if self.awaited:
            for n in (node, *lost):
                if n in self.awaited:
                    self._skip_awaiting(node, self.awaited.pop(n))
        for s in lost:
            self.skipped[names[s]] = names[node]
        if self.step_events:
            for s in lost:
                self._events.append(StepSkipped(self.run_id, s, names[s], names[node]))
        self._dispatch(self.scheduler.take_ready())

    def _check_finished(self) -> None:
        if self.status is None and self.scheduler.finished:
            self.status = "failed" if self.failures or self.first_error else "succeeded"

    # -- dispatch -------------------------------------------------------------------------------

    def _replain(self) -> None:
        self.plain = (
            self._steps_ok
            and self.streaming is None
            and self.grown is None
            and self._monitor is None
            and not (self._keeps or self.step_events or self.deliver_steps)
        )

    @property
    def in_place(self) -> bool:
        """Set by the driver when its transport steps plain tasks in place: ready nodes then
        go out as StepInPlace while nothing asks for more than their values (`plain`)."""
        return self._steps_ok

    @in_place.setter
    def in_place(self, allowed: bool) -> None:
        self._steps_ok = allowed
        self._replain()

    @property
    def keeps_results(self) -> bool:
        """Some task has a compensation or a cache: look at plans."""
        return self._keeps

    @keeps_results.setter
    def keeps_results(self, keeps: bool) -> None:
        self._keeps = keeps
        self._replain()

    @property
    def monitor(self) -> Any:
        """An observer told of each batch (the dashboard's RunMonitor): None costs nothing."""
        return self._monitor

    @monitor.setter
    def monitor(self, monitor: Any) -> None:
        self._monitor = monitor
        self._replain()

    def _dispatch(self, nodes: list[int]) -> None:
        if not nodes or self.status is not None:
            return
        if self._monitor is not None:
            self._monitor.dispatched(nodes)
        if self.plain:  # (their attempts stay 0 while stepped: StepInPlace)
            self._in_place.extend(nodes)
            return
        self._dispatch_jobs(nodes)

    def _dispatch_jobs(self, nodes: list[int]) -> None:
        if self.streaming is None:
            jobs = self._first_jobs(nodes)  # (which sets their attempts)
        else:
            attempts = self.attempts
            for node in nodes:
                attempts[node] = 1
        if self.streaming is not None:
            # consumers start with their producers: their routes exist before any job is
            # built (so the jobs above are made again once per run, by the batch whose plans
            # revealed the run's first stream)
            nodes = self.streaming.before_dispatch(nodes)
            jobs = [self.job(node, 1) for node in nodes]
        if self.step_events:
            run_id, names = self.run_id, self.names
            self._events.extend(StepStarted(run_id, n, names[n], 1) for n in nodes)
        if self._keeps and self.config.caching:
            jobs = self._split_cached(jobs)
        self._jobs.extend(jobs)

    def _split_cached(self, jobs: list[Job]) -> list[Job]:
        todo = []
        for job in jobs:
            if self.plan(job.node).cache is None:
                todo.append(job)
            else:
                self._lookups.append(job)
        return todo

    def _out(self) -> list[Instruction]:
        if not (
            self._events
            or self._steps
            or self._stores
            or self.requeue
            or self._lookups
            or self._retries
            or self.stops
        ):  # the common case: jobs to dispatch, perhaps the end
            if self._in_place and self.status is None:
                step, self._in_place = self._in_place, []
                if not self._jobs:
                    return [StepInPlace(step)]
                jobs, self._jobs = self._jobs, []
                return [StepInPlace(step), Dispatch(jobs)]
            jobs = self._jobs
            if jobs:
                self._jobs = []
                if self.status is None:
                    return [Dispatch(jobs)]
                return [Dispatch(jobs), Finish(self.status)]
            return [] if self.status is None else [Finish(self.status)]
        out: list[Instruction] = []
        if self._events:
            out.append(Emit(self._events))
            self._events = []
        if self._steps:
            out.append(Deliver(self._steps))
            self._steps = []
        if self._stores:
            out.append(Store(self._stores))
            self._stores = []
        if self.requeue:
            out.append(Requeue(self.requeue))
            self.requeue = []
        if self._lookups:
            lookups, self._lookups = self._lookups, []
            out.append(LookUp(lookups, [self.plan(j.node).cache for j in lookups]))
        if self._in_place:
            out.append(StepInPlace(self._in_place))
            self._in_place = []
        if self._jobs:
            out.append(Dispatch(self._jobs))
            self._jobs = []
        if self._retries:
            out.extend(self._retries)
            self._retries = []
        if self.stops:
            out.append(Stop(self.stops))
            self.stops = []
        if self.status is not None:
            out.append(Finish(self.status))
        return out

    # -- jobs -----------------------------------------------------------------------------------

    def plan(self, node: int) -> Plan:
        task = self.tasks[node]
        meta = self.metadata[node]
        # settings given to register_task for this node make a plan of its own
        own = meta is not None and not OVERRIDES.isdisjoint(meta)
        key: Any = (id(task), node) if own else id(task)
        found = self.plans.get(key)
        if found is None:
            shared = self.config.shared_plans
            if shared is not None and not own and node < self.config.shared_below:
                kept = shared.by_task.get(key)
                if kept is None or kept[0] is not task:
                    kept = shared.by_task[key] = (task, self._make_plan(node, task, {}))
                    shared.plain.pop(key, None)
                    if _changes_nothing(kept[1]):
                        shared.plain[key] = kept[1]
                found = self.plans[key] = kept[1]
            else:
                given = {k: meta[k] for k in OVERRIDES if k in meta} if own else {}
                found = self.plans[key] = self._make_plan(node, task, given)
            if found.compensate is not None or found.cache is not None:
                self.keeps_results = True
            if (found.producer or found.streams) and self.streaming is None:
                from .stream_wiring import Streaming

                self.streaming = Streaming(self)
                self.plain = False
        return found

    def _make_plan(self, node: int, task: Any, given: dict[str, Any]) -> Plan:
        spec = get_spec(task)

        def setting(name: str, default: Any = None) -> Any:
            if name in given:
                return given[name]
            return getattr(spec, name, default) if spec is not None else default

        plain = original_function(task)
        producer = is_producer(plain)
        cache = None
        if setting("cache", False) and self.config.caching:
            if producer:
                raise TypeError(
                    f"task '{self.names[node]}' is a stream producer (an async generator): "
                    "its items cannot be served from the cache; drop cache=True"
                )
            cache = (setting("min_ttl"), setting("max_ttl"))
        where = (
            (given.get("local"), given.get("pool")) if "local" in given or "pool" in given else None
        )
        return Plan(
            with_dependencies(plain, self.config.broker),
            params_of(plain),
            resolve_policy(self.config.defaults, task, given),
            setting("compensate"),
            cache,
            producer,
            frozenset(setting("streams", ())) | stream_params(plain),
            setting("stream_buffer", 64),
            self.router.place(task, where),
        )

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

    def _first_jobs(self, nodes: list[int]) -> list[Job]:
        """`[self.job(node, 1) for node in nodes]` while no stream is wired, in one loop: the
        engine's hottest path, so the plan lookup and the Job are inlined."""
        tasks, metadata, names = self.tasks, self.metadata, self.names
        node_inputs, plans, values, attempts = (
            self.node_inputs,
            self.plans,
            self.values,
            self.attempts,
        )
        plan_of = self.plan
        getitem = values.__getitem__
        jobs: list[Job] = []
        append = jobs.append
        for node in nodes:
            attempts[node] = 1
            task = tasks[node]
            plan = plans.get(id(task)) if metadata[node] is None else None
            if plan is None:
                plan = plan_of(node)
                if self.streaming is not None:
                    # this plan revealed the run's first stream: _dispatch starts over
                    for rest in nodes:
                        attempts[rest] = 1
                    break
            keys = node_inputs[node]
            func, params, policy, _, _, _, _, _, place = plan
            if params.issuperset(keys) if params is not None else all_names(keys):
                args: tuple[Any, ...] = ()
                kwargs = {k: getitem(k) for k in keys}
            else:
                args, kwargs = tuple(map(getitem, keys)), {}
            append(new_job((
                node, 1, task, func, args, kwargs, names[node], policy.timeout, None, place,
            )))  # fmt: skip
        return jobs

    def job(self, node: int, attempt: int) -> Job:
        plan = self.plan(node)
        keys = self.node_inputs[node]
        values: Mapping[str, Any] = self.values
        func = plan.func
        stream = None
        if self.streaming is not None and (plan.producer or plan.streams):
            values, func, stream = self.streaming.wire(node, plan)
        params = plan.params
        if params.issuperset(keys) if params is not None else all_names(keys):
            kwargs = {k: values[k] for k in keys}
            args: tuple[Any, ...] = ()
        else:
            kwargs = {}
            args = tuple(map(values.__getitem__, keys))
        return Job(
            node, attempt, self.tasks[node], func, args, kwargs, self.names[node],
            plan.policy.timeout, stream, plan.place,
        )  # fmt: skip

    # -- the end --------------------------------------------------------------------------------

    def produced(self) -> dict[str, Any]:
        inputs = self.inputs
        if self.grown is not None and self.grown.unlisted:
            unlisted = self.grown.unlisted
            return {k: v for k, v in self.values.items() if k not in inputs and k not in unlisted}
        # a copy in C, then the few inputs taken out: not a Python loop over every value
        produced = dict(self.values)
        for key in inputs:
            produced.pop(key, None)
        return produced

    def compensations(self) -> list[Job]:
        """One job per completed task that has a compensation, in reverse topological order,
        each called with its task's own result."""
        if not self.results:
            return []
        jobs = []
        order = self.graph.topological_order()
        if self.grown is not None:  # added tasks only read older ones: they come after
            order = order + self.grown.order()
        for node in reversed(order):
            if node not in self.results:
                continue
            action = self.plan(node).compensate
            func = with_dependencies(original_function(action), self.config.broker)
            if isinstance(getattr(action, "task_name", None), str):
                task, place = action, self.router.place(action)
            else:  # a plain function runs here (a fresh wrapper: never cached by the router)
                task, place = InEngine(func), _HERE
            name, result = self.names[node], self.results[node]
            jobs.append(Job(node, COMPENSATION, task, func, (result,), {}, name, None, None, place))
        return jobs

    def error(self, produced: dict[str, Any]) -> BaseException | None:
        """The exception the run ends with (None when it succeeded)."""
        if self.status == "cancelled":
            return ExecutionCancelled(self.run_id, self.produced())
        if self.first_error is not None:
            return TaskFailedError(self.first_error)
        if self.failures:
            return DataflowExecutionError(self.failures, self.skipped, produced)
        return None


# -- helpers --------------------------------------------------------------------------------------


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
