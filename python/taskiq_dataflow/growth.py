"""DAGs that grow while they run: a running task adds tasks to its own run.

    async def fan_out(n: int) -> int:
        add_tasks([DAGNode(square, output=f"sq{i}", inputs=[f"item{i}"]) ...])
        return n

Added tasks read keys of the run (any task's outputs, the run's inputs) or of tasks added in
the same call, and output new keys only; the batch is checked like a build (no duplicate
output, no missing input, no cycle) and refused whole with a GrowthError raised in the adding
task, which then fails like any task (fail_fast decides for the run). The Rust scheduler grows
in place, one call per batch: tasks whose inputs are all there run at once, the others when
their producers finish; the run ends when every task, added ones too, has.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .dataflow.graph import DAGNode, NodeFields
from .errors import GrowthError
from .execution_engine import current_run

if TYPE_CHECKING:
    from .driver import Driver


def add_tasks(nodes: Iterable[DAGNode]) -> list[int]:
    """Add `nodes` (new `DAGNode`s, not in any DAG) to the run of the calling task; returns
    their node ids. Call it from a task running in the engine's process: an async one, or a
    blocking one in the thread pool (it waits while the engine's loop adds the batch)."""
    current = current_run()
    driver = None if current is None else current.driver
    if driver is None:
        raise GrowthError(
            "add_tasks() was called outside a running task: call it from a task that an "
            "ExecutionEngine runs in its own process (a blocking task in a process pool, "
            "executor='process', and a task on a cluster worker run in another process: "
            "neither can add tasks)"
        )
    if current is not None and current.engine.store is not None:
        # a restart restores tasks by their place in the DAG: added ones have none there
        raise GrowthError(
            "add_tasks() cannot grow a run recorded in a RunStore (a restart could not restore "
            "the added tasks): run this DAG on an engine without store=, or build the tasks "
            "into the DAG"
        )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _add_from_thread(driver, _fields_of(nodes))
    return _add(driver, _fields_of(nodes))


def _add(driver: Driver, fields: list[NodeFields]) -> list[int]:
    event = driver.state.add_tasks(fields)
    driver.sink.signal(event)
    return list(range(event.first, event.first + event.count))


def _add_from_thread(driver: Driver, fields: list[NodeFields]) -> list[int]:
    """A blocking task in its thread: the run's state lives on the loop's thread, so the batch
    is added there, and the thread waits for the ids (or the GrowthError, raised here)."""
    answer: concurrent.futures.Future[list[int]] = concurrent.futures.Future()

    def add() -> None:
        try:
            answer.set_result(_add(driver, fields))
        except BaseException as exc:
            answer.set_exception(exc)

    if driver.pid != os.getpid():
        # a process pool forked from the loop's thread: the run's context came along
        raise GrowthError(
            "add_tasks() was called from another process (a blocking task in a process pool, "
            "executor='process'): it cannot reach its run; use executor='thread' or make "
            "the adding task `async def`"
        )
    loop = driver.loop
    try:
        if loop is None:
            raise RuntimeError("the run has not started")
        loop.call_soon_threadsafe(add)
    except RuntimeError as exc:  # the loop closed: the run is over
        raise GrowthError(
            f"add_tasks() cannot add tasks to run {driver.state.run_id}: its event loop does "
            f"not run ({exc})"
        ) from None
    return answer.result()


def _fields_of(nodes: Iterable[DAGNode]) -> list[NodeFields]:
    fields = []
    for node in nodes:
        if not isinstance(node, DAGNode):
            raise GrowthError(
                f"add_tasks() takes DAGNode objects, got {type(node).__name__}: wrap the task "
                "as DAGNode(task, output=..., inputs=[...])"
            )
        if node.dag is not None:
            raise GrowthError(
                f"task {node.task_name!r} is already node {node.id} of a DAG: add_tasks() takes "
                "new DAGNode objects"
            )
        fields.append(node._fields())
    return fields
