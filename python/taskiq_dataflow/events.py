"""Run and step events: the single source for callbacks, progress bars, the CLI and stores.

Events are only built when someone listens, so an unobserved million-task run pays nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload


@dataclass(frozen=True, slots=True)
class Event:
    run_id: str


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    total: int
    inputs: tuple[str, ...] = ()
    input_values: dict[str, Any] = field(default_factory=dict, repr=False)
    restored: int = 0  # tasks whose outputs came from a previous run (restart, replay)
    parent_run_id: str | None = None  # the run a replay reuses
    # the outputs restored from the store, by key (a store digests a dependent's inputs by them)
    restored_values: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class RunGrew(Event):
    """Tasks of the run added `added` tasks to it (add_tasks, a map's items): it now has
    `total` tasks."""

    added: int
    total: int


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    status: str  # "succeeded" | "failed" | "cancelled"
    counts: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    error: BaseException | None = None
    stats: dict[str, int] = field(default_factory=dict)  # transport counters: redeliveries...


@dataclass(frozen=True, slots=True)
class StepStarted(Event):
    node: int
    task_name: str
    attempt: int


@dataclass(frozen=True, slots=True)
class StepCompleted(Event):
    node: int
    task_name: str
    result: Any
    attempt: int = 1
    duration: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict, repr=False)
    worker: str | None = None  # the cluster worker that ran it
    cached: bool = False  # served from the result cache, not run


@dataclass(frozen=True, slots=True)
class StepFailed(Event):
    node: int
    task_name: str
    error: TaskError
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log record a task made while it ran (task_logs.py captures them)."""

    time: float  # epoch seconds
    level: str  # "INFO", "WARNING"...
    logger: str
    message: str  # formatted, with the exception's traceback text appended when it had one


@dataclass(frozen=True, slots=True)
class StepLogged(Event):
    """The records one execution (`attempt`) of a task logged, here or on a worker; emitted
    before that execution's StepCompleted, StepRetried or StepFailed, and only when it logged
    anything (bounded: see task_logs.MAX_RECORDS, MAX_BYTES)."""

    node: int
    task_name: str
    attempt: int
    records: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True)
class StepRetried(Event):
    node: int
    task_name: str
    error: TaskError
    attempt: int  # the attempt about to run
    delay: float


@dataclass(frozen=True, slots=True)
class StepRequeued(Event):
    """The cluster worker running a step was lost: the same attempt goes to another worker
    (a loss uses up max_redeliveries, not the task's retries)."""

    node: int
    task_name: str
    attempt: int  # the attempt sent again
    worker: str  # the worker that stopped heart-beating while it ran the step
    losses: int  # how many times this attempt was lost so far


@dataclass(frozen=True, slots=True)
class StepSkipped(Event):
    node: int
    task_name: str
    because_of: str  # the failed task's name


@dataclass(frozen=True, slots=True)
class StepCompensated(Event):
    """A completed task's compensation ran after the run failed (error set if it failed)."""

    node: int
    task_name: str
    error: TaskError | None = None


@dataclass(frozen=True, slots=True)
class TaskError:
    """A task's failure as data: survives any transport, keeps the traceback text."""

    task_name: str
    type: str
    message: str
    traceback: str = ""
    exception: BaseException | None = None

    def __str__(self) -> str:
        return f"task '{self.task_name}' failed: {self.type}: {self.message}"


Listener = Callable[[Event], Awaitable[None] | None]
E = TypeVar("E", bound=Event)
E2 = TypeVar("E2", bound=Event)
E3 = TypeVar("E3", bound=Event)


class EventBus:
    """Subscribe callables to events; `subscribe(fn, StepCompleted)` filters by type."""

    def __init__(self) -> None:
        self._listeners: list[tuple[Listener, tuple[type[Event], ...]]] = []
        self.step_listeners = False  # anyone interested in per-step events?

    # typed so that a listener taking StepCompleted is accepted for subscribe(fn, StepCompleted)
    @overload
    def subscribe(self, listener: Listener) -> Callable[[], None]: ...
    @overload
    def subscribe(
        self, listener: Callable[[E], Awaitable[None] | None], event_type: type[E], /
    ) -> Callable[[], None]: ...
    @overload
    def subscribe(
        self,
        listener: Callable[[E | E2], Awaitable[None] | None],
        event_type: type[E],
        other: type[E2],
        /,
    ) -> Callable[[], None]: ...
    @overload
    def subscribe(
        self,
        listener: Callable[[E | E2 | E3], Awaitable[None] | None],
        event_type: type[E],
        other: type[E2],
        third: type[E3],
        /,
    ) -> Callable[[], None]: ...
    @overload
    def subscribe(self, listener: Listener, *types: type[Event]) -> Callable[[], None]: ...

    def subscribe(
        self, listener: Callable[[Any], Awaitable[None] | None], *types: type[Event]
    ) -> Callable[[], None]:
        """Call `listener(event)` for each event (of `types`, if given). Returns an unsubscribe."""
        entry = (listener, types or (Event,))
        self._listeners.append(entry)
        self._refresh()

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
                self._refresh()

        return unsubscribe

    def _refresh(self) -> None:
        run_level = (RunStarted, RunFinished)
        self.step_listeners = any(
            any(not issubclass(t, run_level) for t in types) for _, types in self._listeners
        )

    def listens(self, event_type: type[Event]) -> bool:
        """Whether an event of `event_type` would reach any listener (so it is worth making)."""
        return any(issubclass(event_type, types) for _, types in self._listeners)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    async def emit(self, event: Event) -> None:
        for listener, types in self._listeners:
            if isinstance(event, types):
                outcome = listener(event)
                if inspect.isawaitable(outcome):
                    await outcome
