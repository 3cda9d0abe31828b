"""Give a worker slot back while a task waits, and take one again after (Dask's secede/rejoin).

A cluster worker runs at most `concurrency` tasks at once. A task that awaits a sub-run on the
cluster would hold its slot while its children wait in the same worker's queue: enough such
parents and every slot is held by a waiter, so nothing runs again. `ExecutionEngine` therefore
secedes the calling worker task for as long as it awaits a run that leaves the process, and
`secede()` / `await rejoin()` / `async with seceded():` do the same for a task that waits on
anything else (a queue, a lock, an external service).

Outside a worker task (in-process runs, the engine's own process) there is no worker slot to give
back: the three do nothing there, so the same task code runs in-process and on the cluster. A
blocking task runs in a thread without the worker's context: these are for async tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol

__all__ = ["rejoin", "secede", "seceded"]


class SlotOwner(Protocol):
    """What holds the slots (cluster.worker.Worker)."""

    _stepping: Any  # the key of the task it is stepping in place right now, else None

    def _secede(self, key: Any) -> None: ...

    async def _rejoin(self, key: Any, wait: bool = True) -> None: ...


# the worker, in every context its tasks run in (set once, when it starts serving)
CURRENT_WORKER: ContextVar[SlotOwner | None] = ContextVar("taskiq_dataflow_worker", default=None)
# (the worker, the task's key) in the context of a worker task that continues in the loop; a
# task stepped in place (a quick one) is named by the worker's `_stepping` instead
CURRENT_SLOT: ContextVar[tuple[SlotOwner, Any] | None] = ContextVar(
    "taskiq_dataflow_worker_slot", default=None
)


def _current() -> tuple[SlotOwner, Any] | None:
    worker = CURRENT_WORKER.get()
    if worker is None:
        return None
    if worker._stepping is not None:
        return worker, worker._stepping
    return CURRENT_SLOT.get()


def in_worker_task() -> bool:
    """Whether the caller is a task a cluster worker runs (and so holds one of its slots)."""
    return _current() is not None


def secede() -> None:
    """Give the calling task's worker slot back (another task may start on it); calls nest,
    the slot comes back with the last matching `rejoin()` or when the task ends."""
    current = _current()
    if current is not None:
        current[0]._secede(current[1])


async def rejoin() -> None:
    """Take a worker slot again after `secede()`: waits while every slot is busy (a task
    rejoining goes before tasks not started yet)."""
    current = _current()
    if current is not None:
        await current[0]._rejoin(current[1])


@asynccontextmanager
async def seceded() -> AsyncIterator[None]:
    """`async with seceded(): await something_slow()`: no slot held inside the block."""
    current = _current()
    if current is None:
        yield
        return
    owner, key = current
    owner._secede(key)
    try:
        yield
    except asyncio.CancelledError:
        # the task is ending: waiting for a slot now would keep a cancelled task alive
        await owner._rejoin(key, wait=False)
        raise
    except BaseException:
        await owner._rejoin(key)
        raise
    else:
        await owner._rejoin(key)
