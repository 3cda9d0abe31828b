"""The dispatch interface: a transport only kicks jobs; completions go to the run's one Sink."""

from __future__ import annotations

import abc
import asyncio
import functools
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..events import LogEntry, TaskError
from ..router import Placement, Router

if TYPE_CHECKING:
    from ..run_state import RunState


class Job(NamedTuple):
    node: int
    attempt: int
    task: Any  # the registered task object (a taskiq task or a plain callable)
    func: Any  # the plain callable behind it
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    name: str
    timeout: float | None
    # a stream producer that runs in another process: [keep its items?, [StreamRef, ...]]
    stream: Any = None
    # where it runs, resolved once per distinct task by the transport's Router (None: here)
    place: Placement | None = None


class Completion(NamedTuple):
    node: int
    attempt: int
    ok: bool
    value: Any  # the task's return value, or a TaskError
    worker: str | None = None
    cached: bool = False
    logs: tuple[LogEntry, ...] | None = None  # what it logged, when the run captures (task_logs)


# A Job or Completion from one tuple of every field, in C: the NamedTuple's own __new__ is a
# Python function, a call that the hot paths (one per task) skip.
new_job: Callable[[tuple[Any, ...]], Job] = functools.partial(tuple.__new__, Job)
new_completion: Callable[[tuple[Any, ...]], Completion] = functools.partial(
    tuple.__new__, Completion
)


def task_error(name: str, exc: BaseException) -> TaskError:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return TaskError(name, type(exc).__name__, str(exc), text, exc)


class Sink:
    """The one completion queue of a run: every transport (and a transport's in-process
    helper) appends here, the driver takes whole batches. `done` is public on purpose: the
    hot path appends to it directly and wakes the driver once per kick, not per completion.

    `control` carries the driver's own events (a retry that came due, a cancel) through the
    same wake-up, so that the driver waits on one thing."""

    __slots__ = ("_waiter", "control", "done", "fatal", "stepper", "taken")

    def __init__(self) -> None:
        self.done: list[Completion] = []
        self.control: list[Any] = []
        self.fatal: BaseException | None = None  # set when a transport cannot go on
        # the future the driver awaits while nothing has arrived (a bare future: an
        # asyncio.Event's wait and set cost a few Python calls each, once per batch); a run
        # whose tasks all finish in place never waits, and then pays for nothing per kick
        self._waiter: asyncio.Future[None] | None = None
        # the LocalTransport whose in-process tasks of this run capture their records lazily
        # (a record finds its task's TaskLog through the task's CURRENT_TASK: sink, node)
        self.stepper: Any = None
        self.taken = False  # a driver's: the next driver of its transport attaches its own

    def push(self, completion: Completion) -> None:
        self.done.append(completion)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def signal(self, event: Any) -> None:
        self.control.append(event)
        self.wake()

    def fail(self, exc: BaseException) -> None:
        self.fatal = exc
        self.wake()

    async def wait(self) -> None:
        """Until something arrived (returns at once when something is there already)."""
        if self.done or self.control or self.fatal is not None:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def take(self) -> list[Completion]:
        batch, self.done = self.done, []
        return batch


class Transport(abc.ABC):
    """Runs jobs somewhere; each kicked job ends in exactly one Completion on `self.sink`.

    A transport decides nothing about the run: where each task runs comes from its `router()`
    (asked once per distinct task, the answer travels in `Job.place`)."""

    def __init__(self) -> None:
        # a transport works on its own too (tests, a compensation call); the driver attaches
        # the run's sink before startup
        self.sink = Sink()
        # (run id, capture level or None) when its tasks get a task_logs.TaskLog: the run
        # captures their records, or this process labels records with their task
        self.task_logs: tuple[str, int | None] | None = None

    def log_tasks(self, run_id: str, level: int | None) -> None:
        """Give each task a TaskLog of `run_id`: its records at `level` and above (None:
        none) come back in its Completion's `logs`."""
        self.task_logs = (run_id, level)

    def attach(self, sink: Sink) -> None:
        """Send completions to `sink` (the driver's queue)."""
        self.sink = sink

    def push(self, completion: Completion) -> None:
        self.sink.push(completion)

    @abc.abstractmethod
    def kick(self, jobs: list[Job]) -> None:
        """Start `jobs` without blocking; each ends in exactly one Completion on the sink."""

    def steps_in_place(self) -> bool:
        """Whether `step_in_place` may be asked to run a run's plain tasks (the driver asks
        once per run, after startup)."""
        return False

    def step_in_place(
        self, state: RunState, nodes: list[int]
    ) -> tuple[list[int], list[Any], list[int]]:
        """Run the tasks of `nodes` (a RunState's StepInPlace, as attempt 1) as far as they go
        at once, reading their arguments from `state` without changing it. Returns (the nodes
        that returned, their values, the nodes not stepped); the others end on the sink as
        kicked jobs do."""
        raise NotImplementedError(f"{type(self).__name__} does not step tasks in place")

    def router(self) -> Router:
        """Placement of tasks for this transport: everything runs in this process."""
        return Router.in_process()

    async def startup(self) -> None:  # noqa: B027 - optional hook
        """Connect, spawn pools: whatever must happen before the first kick."""

    async def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release what startup took."""

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop in-flight work where the transport can."""

    def stop(self, node: int) -> bool:
        """Cancel the in-flight job of `node` now, where the transport can (its completion is
        then a CancelledError); False when it cannot, and the job runs on."""
        return False

    async def materialize(self, values: dict[str, Any]) -> dict[str, Any]:
        """Final outputs as values (a transport may hold large ones by reference)."""
        return values

    def stream_link(self) -> Any:
        """Where stream items travel between processes (a cluster.streams.StreamLink); None
        when every stream stays in this process."""
        return None

    def stats(self) -> dict[str, int]:
        """Transport counters for the run (redeliveries, duplicates...)."""
        return {}

    def queue_depths(self) -> dict[str, int]:
        """Tasks waiting in this process for a worker, by pool (read by the metrics when
        scraped, from another thread: no mutation, copies only)."""
        return {}
