"""The dispatch interface: a transport is `kick` (send jobs) and `listen` (pushed completions)."""

from __future__ import annotations

import abc
import asyncio
import traceback
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from ..events import TaskError


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
    # (local, pool) given to register_task for this node (None: the task's own settings)
    where: tuple[bool | None, str | None] | None = None


class Completion(NamedTuple):
    node: int
    attempt: int
    ok: bool
    value: Any  # the task's return value, or a TaskError
    worker: str | None = None
    cached: bool = False


def task_error(name: str, exc: BaseException) -> TaskError:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return TaskError(name, type(exc).__name__, str(exc), text, exc)


class Transport(abc.ABC):
    """Runs jobs somewhere and pushes their completions back to the engine."""

    def __init__(self) -> None:
        self._done: list[Completion] = []
        self._wake = asyncio.Event()
        self.fatal: BaseException | None = None  # set when the transport cannot go on

    @abc.abstractmethod
    def kick(self, jobs: list[Job]) -> None:
        """Start `jobs` without blocking; each ends in exactly one pushed Completion."""

    def push(self, completion: Completion) -> None:
        self._done.append(completion)
        self._wake.set()

    async def listen(self) -> AsyncIterator[list[Completion]]:
        """Batches of completions, as soon as there are any (no timer, no polling)."""
        while True:
            if not self._done:
                self._wake.clear()
                await self._wake.wait()
            if self.fatal is not None:
                raise self.fatal
            batch, self._done = self._done, []
            yield batch

    async def call(self, job: Job) -> Completion:
        """Run one job to its end outside the engine loop (a compensation after the run
        failed): kicked like any other, its completion picked out of what is pushed."""
        self.kick([job])
        async for batch in self.listen():
            for c in batch:
                if c.node == job.node and c.attempt == job.attempt:
                    return c
        raise AssertionError("listen() ended")  # it never does: it raises or yields

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

    def runs_remotely(self, task: Any, where: tuple[bool | None, str | None] | None) -> bool:
        """Whether `task` (with a node's `Job.where`) runs in another process (its streams
        then travel over `stream_link`)."""
        return False

    def stream_link(self) -> Any:
        """Where stream items travel between processes (a cluster.streams.StreamLink); None
        when every stream stays in this process."""
        return None

    def stats(self) -> dict[str, int]:
        """Transport counters for the run (redeliveries, duplicates...)."""
        return {}
