"""Give a slot back while a task waits, and take one again after (Dask's secede/rejoin).

A bounded pool of slots deadlocks when a task that holds one waits for tasks that need one: a
cluster worker's `concurrency`, or, in the engine's process, `ExecutionEngine(max_parallel=N)`
(the engine's slots shared by its runs, slots.py) and a run's own `execute(max_parallel=)`.
With 2 slots and 2 parents that each await a sub-run, the children wait behind their parents
for ever. So a task that awaits a nested run gives its slot back for as long as it waits:

- an in-process task (run by the engine's own process) gives back its run's slot, whatever the
  nested run's transport and engine: it counts against neither the engine's `max_parallel`
  nor its run's own bound meanwhile, so that run (and the engine's other runs) may start other
  tasks in its place; a task that does not secede is bounded as before;
- a cluster worker task gives back its worker slot when the nested run leaves the process (an
  in-process sub-run's tasks run on the worker's loop, on no worker slot).

`secede()` / `await rejoin()` / `async with seceded():` do the same for a task that waits on
anything else (a queue, a lock, an event another task sets, an external service). Rejoining
waits while every slot is busy, and a task rejoining goes before tasks not started yet. In a
run with no bound at all (no `max_parallel` anywhere) there is nothing to give back: the three
do nothing there, so the same task code runs bounded or not, in-process or on the cluster. A
blocking task runs in a thread, holding a thread of its pool: these are for async tasks and do
nothing in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol

__all__ = ["rejoin", "secede", "seceded"]


class SlotOwner(Protocol):
    """What holds the slots (cluster.worker.Worker; slots.SharedSlots in-process)."""

    def _secede(self, key: Any) -> None: ...

    async def _rejoin(self, key: Any, wait: bool = True) -> None: ...


class WorkerSlots(SlotOwner, Protocol):
    _stepping: Any  # the key of the task it is stepping in place right now, else None


# the worker, in every context its tasks run in (set once, when it starts serving)
CURRENT_WORKER: ContextVar[WorkerSlots | None] = ContextVar("taskiq_dataflow_worker", default=None)
# (the worker, the task's key) in the context of a worker task that continues in the loop; a
# task stepped in place (a quick one) is named by the worker's `_stepping` instead
CURRENT_SLOT: ContextVar[tuple[SlotOwner, Any] | None] = ContextVar(
    "taskiq_dataflow_worker_slot", default=None
)
# (the run's sink, node id) in the context of an in-process task that continues in the loop
# (transports/local.py); one stepped in place is named by STEPPING instead
CURRENT_TASK: ContextVar[tuple[Any, int] | None] = ContextVar("taskiq_dataflow_task", default=None)


class Stepping:
    """The in-process task LocalTransport steps in place right now (its run's sink, its node):
    cheaper than a context variable set for every quick task."""

    __slots__ = ("node", "sink")

    def __init__(self) -> None:
        self.sink: Any = None
        self.node: int | None = None


STEPPING = Stepping()


def _in_process() -> tuple[SlotOwner, Any] | None:
    """(the slots of the caller's run, (its driver, its node)) for an in-process task of a
    bounded run, else None."""
    node = STEPPING.node
    if node is not None:
        sink = STEPPING.sink
    else:
        task = CURRENT_TASK.get()
        if task is None:
            return None
        sink, node = task
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None  # a blocking task's thread (it sees the loop's STEPPING, not its own)
    # (both import, through the transports, this module)
    from .execution_engine import current_run
    from .slots import slots_of

    run = current_run()
    driver = None if run is None else run.driver
    # not that task: a listener or a nested driver running in its context, or a blocking
    # task running a loop of its own in its thread
    if driver is None or driver.sink is not sink or driver.loop is not loop:
        return None
    slots = slots_of(driver)
    return None if slots is None else (slots, (driver, node))


def _in_worker() -> tuple[SlotOwner, Any] | None:
    worker = CURRENT_WORKER.get()
    if worker is None or asyncio._get_running_loop() is None:
        return None  # (a blocking task of an in-process run, in its thread)
    if worker._stepping is not None:
        return worker, worker._stepping
    return CURRENT_SLOT.get()


def _current() -> tuple[SlotOwner, Any] | None:
    # an in-process run inside a worker task: its tasks inherit the worker task's CURRENT_SLOT
    # but hold their own run's slot, not the worker's
    return _in_process() or _in_worker()


def in_worker_task() -> bool:
    """Whether the caller is a task a cluster worker runs (and so holds one of its slots)."""
    return _in_worker() is not None


def awaiting_slot(leaves_process: bool) -> tuple[SlotOwner, Any] | None:
    """The slot the caller gives back while it awaits a nested run: its in-process run's, or
    its worker's when the nested run `leaves_process` (module docstring)."""
    current = _in_process()
    if current is None and leaves_process:
        current = _in_worker()
    return current


def secede() -> None:
    """Give the calling task's slot back (another task may start on it); calls nest, the slot
    comes back with the last matching `rejoin()` or when the task ends."""
    current = _current()
    if current is not None:
        current[0]._secede(current[1])


async def rejoin() -> None:
    """Take a slot again after `secede()`: waits while every slot is busy (a task rejoining
    goes before tasks not started yet)."""
    current = _current()
    if current is not None:
        await current[0]._rejoin(current[1])


def seceded() -> AbstractAsyncContextManager[None]:
    """`async with seceded(): await something_slow()`: no slot held inside the block."""
    return seceded_slot(_current())


@asynccontextmanager
async def seceded_slot(current: tuple[SlotOwner, Any] | None) -> AsyncIterator[None]:
    """`seceded()` for a slot named beforehand (`awaiting_slot`), or for none."""
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
