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
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .dataflow.graph import DAGNode, NodeFields
from .errors import GrowthError
from .execution_engine import current_run
from .run_state import Deferred

if TYPE_CHECKING:
    from .driver import Driver


def add_tasks(
    nodes: Iterable[DAGNode] | NodeBatch,
    *,
    values: Mapping[str, Any] | None = None,
    max_parallel: int | None = None,
    private: bool = False,
    priority: float | Sequence[float] | None = None,
) -> list[int]:
    """Add `nodes` (new `DAGNode`s, not in any DAG) to the run of the calling task; returns
    their node ids. Call it from a task running in the engine's process: an async one, or a
    blocking one in the thread pool (it waits while the engine's loop adds the batch).

    `values`: new keys with their values, readable by the added tasks at once (as run inputs
    are). `max_parallel`: most of these tasks in flight at once (besides the run's own bound).
    `private`: the added keys are the calling task's business: they stay out of the run's
    outputs and are dropped once the task's `result_of` them is recorded. `priority`: one for
    all of them or one per task (higher first among ready tasks; default 0)."""
    current = current_run()
    driver = None if current is None else current.driver
    if driver is None:
        raise GrowthError(
            "add_tasks() was called outside a running task: call it from a task that an "
            "ExecutionEngine runs in its own process (a blocking task in a process pool, "
            "executor='process', and a task on a cluster worker run in another process: "
            "neither can add tasks)"
        )
    fields = nodes if isinstance(nodes, NodeBatch) else _fields_of(nodes)
    batch = _Batch(fields, values, max_parallel, private, priority)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _add_from_thread(driver, batch)
    return _add(driver, batch)


class _Batch(NamedTuple):
    fields: list[NodeFields]
    values: Mapping[str, Any] | None
    max_parallel: int | None
    private: bool
    priority: float | Sequence[float] | None


def _add(driver: Driver, batch: _Batch) -> list[int]:
    event = driver.state.add_tasks(*batch)
    driver.sink.signal(event)
    return list(range(event.first, event.first + event.count))


def _add_from_thread(driver: Driver, batch: _Batch) -> list[int]:
    """A blocking task in its thread: the run's state lives on the loop's thread, so the batch
    is added there, and the thread waits for the ids (or the GrowthError, raised here)."""
    answer: concurrent.futures.Future[list[int]] = concurrent.futures.Future()

    def add() -> None:
        try:
            answer.set_result(_add(driver, batch))
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


def result_of(key: str) -> Any:
    """Return this from a task to make the value of `key` (an output of a task it added) its
    own output: its dependents wait for that task, and a failure there skips them.

        async def total(n: int) -> int:
            add_tasks([DAGNode(sum_to, output="sum", inputs=["n"])])
            return result_of("sum")
    """
    if not isinstance(key, str):
        raise TypeError(f"result_of() takes an output key (a str), got {type(key).__name__}")
    current = current_run()
    grown = None if current is None or current.driver is None else current.driver.state.grown
    if grown is None or (key not in grown.producer and key not in grown.given):
        raise GrowthError(
            f"result_of({key!r}): no task added to this run outputs {key!r}; add its producer "
            "with add_tasks() first"
        )
    return Deferred(key)


class NodeBatch(list[NodeFields]):
    """Tasks to add given as their column entries (what a map node builds by the 100,000):
    skips making a DAGNode per task."""


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
