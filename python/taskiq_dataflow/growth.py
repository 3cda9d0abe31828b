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
from collections.abc import Iterable

from .dataflow.graph import DAGNode, NodeFields
from .errors import GrowthError
from .execution_engine import current_run


def add_tasks(nodes: Iterable[DAGNode]) -> list[int]:
    """Add `nodes` (new `DAGNode`s, not in any DAG) to the run of the calling task; returns
    their node ids. Call it from an async task running in the engine's process."""
    current = current_run()
    driver = None if current is None else current.driver
    if driver is None:
        raise GrowthError(
            "add_tasks() was called outside a running task: call it from an async task that "
            "an ExecutionEngine runs in its own process (blocking tasks run in a thread and "
            "cluster workers in another process: neither can add tasks)"
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
        raise GrowthError(
            "add_tasks() was called from a thread: only an async task (on the engine's event "
            "loop) can add tasks; make the adding task `async def`"
        ) from None
    event = driver.state.add_tasks(_fields_of(nodes))
    driver.sink.signal(event)
    return list(range(event.first, event.first + event.count))


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
