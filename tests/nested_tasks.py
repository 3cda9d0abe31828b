"""Tasks that start runs of their own on the cluster (seceding.py), for tests/test_nested_runs.py
and tests/e2e/test_nested_runs.py. Workers load it as `nested_tasks:broker` (PYTHONPATH=tests);
the server comes from DATAFLOW_NATS_URL, which the test's WorkerProcesses set.

Every task counts how many tasks of its process hold a worker slot at once (`_active`; a parent
leaves the count while it awaits its sub-run, as it gave its slot back) and reports the highest
count seen, so a test can check the worker's concurrency bound.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from taskiq_dataflow import DataflowRegistry, ExecutionEngine, rejoin, secede, seceded
from taskiq_dataflow.cluster import DataflowNatsBroker

CHILDREN = 3
POOL_ENV = "DATAFLOW_TEST_POOL"  # as cluster_tasks.POOL_ENV

# the sub-runs go to the pool of the worker that runs the parent (WorkerProcesses sets it)
broker = DataflowNatsBroker(
    pool=os.environ.get(POOL_ENV, "default"),
    heartbeat_interval=0.2,
    heartbeat_timeout=1.0,
    progress_timeout=20.0,
)

_active = 0
_peak = 0


def _enter() -> None:
    global _active, _peak
    _active += 1
    _peak = max(_peak, _active)


def _leave() -> None:
    global _active
    _active -= 1


def report() -> dict[str, int]:
    return {"pid": os.getpid(), "peak": _peak}


@broker.task
async def child(parent: int, k: int, delay: float) -> int:
    _enter()
    try:
        await asyncio.sleep(delay)  # holds its slot meanwhile
        return parent * 10 + k
    finally:
        _leave()


def children_dag() -> Any:
    registry = DataflowRegistry()
    for key in ("parent", "delay", *(f"k{k}" for k in range(CHILDREN))):
        registry.register_external_input(key)
    for k in range(CHILDREN):
        registry.register_task(child, output=f"c{k}", inputs=["parent", f"k{k}", "delay"])
    return registry.build_dag()


_CHILDREN_DAG = children_dag()


@broker.task
async def parent(i: int, delay: float) -> dict[str, Any]:
    """Runs CHILDREN children on the cluster and waits for them: without seceding, parents
    holding every slot would wait forever for children queued behind them."""
    _enter()
    _leave()  # from here the engine gives the slot back for the sub-run
    inputs = {"parent": i, "delay": delay, **{f"k{k}": k for k in range(CHILDREN)}}
    outputs = await ExecutionEngine(broker, _CHILDREN_DAG).execute(inputs)
    _enter()  # rejoined: it holds a slot again
    try:
        await asyncio.sleep(delay)
        return {"children": [outputs[f"c{k}"] for k in range(CHILDREN)], **report()}
    finally:
        _leave()


@broker.task
async def handle_parent(i: int, delay: float) -> dict[str, Any]:
    """As `parent`, through a RunHandle awaited (engine.start)."""
    inputs = {"parent": i, "delay": delay, **{f"k{k}": k for k in range(CHILDREN)}}
    outputs = await ExecutionEngine(broker, _CHILDREN_DAG).start(inputs)
    return {"children": [outputs[f"c{k}"] for k in range(CHILDREN)], **report()}


_gate: asyncio.Event | None = None


@broker.task
async def waiter(explicit: bool) -> dict[str, Any]:
    """Waits for `opener` on the same worker without holding a slot (secede/rejoin, or the
    context manager), then holds its slot again for a moment."""
    global _gate
    if _gate is None:
        _gate = asyncio.Event()
    gate = _gate
    # it secedes after a first suspension, as a real waiter would: the next task then starts
    # from the worker's callback, not from the loop that stepped this one
    await asyncio.sleep(0.01)
    if explicit:
        secede()
        await gate.wait()
        await rejoin()
    else:
        async with seceded():
            await gate.wait()
    _enter()
    try:
        await asyncio.sleep(0.01)
    finally:
        _leave()
    return report()


@broker.task
async def opener() -> dict[str, Any]:
    global _gate
    if _gate is None:
        _gate = asyncio.Event()
    _gate.set()
    return report()


@broker.task
async def busy(i: int, delay: float) -> dict[str, Any]:
    """Holds its slot for `delay` (never secedes)."""
    _enter()
    try:
        await asyncio.sleep(delay)
    finally:
        _leave()
    return {"i": i, **report()}


@broker.task
async def refusing_child(parent: int, k: int, delay: float) -> int:
    if k == CHILDREN - 1:
        raise ValueError(f"child {k} of parent {parent} refuses")
    await asyncio.sleep(delay)
    return parent * 10 + k


def refusing_dag() -> Any:
    registry = DataflowRegistry()
    for key in ("parent", "delay", *(f"k{k}" for k in range(CHILDREN))):
        registry.register_external_input(key)
    for k in range(CHILDREN):
        registry.register_task(refusing_child, output=f"c{k}", inputs=["parent", f"k{k}", "delay"])
    return registry.build_dag()


_REFUSING_DAG = refusing_dag()


@broker.task
async def parent_of_refusing(i: int, delay: float) -> dict[str, Any]:
    """As `parent`, but its last child fails: the sub-run's error ends the parent."""
    inputs = {"parent": i, "delay": delay, **{f"k{k}": k for k in range(CHILDREN)}}
    outputs = await ExecutionEngine(broker, _REFUSING_DAG).execute(inputs)
    return {"children": [outputs[f"c{k}"] for k in range(CHILDREN)], **report()}
