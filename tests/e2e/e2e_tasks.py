"""Tasks of the end-to-end drills, imported by the test process and by real
`taskiq-dataflow worker e2e_tasks:broker` processes (PYTHONPATH=tests/e2e), so that task names
match on both sides. The broker's failure-detection timeouts come from the environment, so that
a drill can show they bound how long a failure takes to be reported.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from taskiq_dataflow import DataflowRegistry, pipeline_task
from taskiq_dataflow.cluster import DataflowNatsBroker

HEARTBEAT_TIMEOUT_ENV = "E2E_HEARTBEAT_TIMEOUT"
REDELIVERIES_ENV = "E2E_MAX_REDELIVERIES"


def make_broker(**overrides: object) -> DataflowNatsBroker:
    """The drills' broker: $DATAFLOW_NATS_URL, quick heartbeats, timeouts from the env."""
    settings: dict[str, object] = {
        "heartbeat_interval": 0.2,
        "heartbeat_timeout": float(os.environ.get(HEARTBEAT_TIMEOUT_ENV, "1.0")),
        "max_redeliveries": int(os.environ.get(REDELIVERIES_ENV, "5")),
        **overrides,
    }
    return DataflowNatsBroker(**settings)  # type: ignore[arg-type]


broker = make_broker()


@broker.task
async def where(i: int, delay: float = 0.0) -> dict[str, int]:
    """Which process ran item `i` (after `delay` s, so that a run lasts a while)."""
    if delay:
        await asyncio.sleep(delay)
    return {"i": i, "pid": os.getpid()}


@broker.task
@pipeline_task(output="placed", pool="gpu", inputs=[])
def on_gpu() -> dict[str, int]:
    return {"pid": os.getpid()}


@broker.task
@pipeline_task(output="ticks", inputs=["n", "delay"])
async def ticks(n: int, delay: float):
    """A stream producer on a worker: 0, 1, ... n-1, one every `delay` s."""
    for i in range(n):
        await asyncio.sleep(delay)
        yield i


@broker.task
@pipeline_task(output="heard")
async def hear(ticks: AsyncIterator[int]) -> dict[str, object]:
    """A streaming consumer on a worker: what it read, in order, and where."""
    return {"items": [i async for i in ticks], "pid": os.getpid()}


def streaming() -> tuple[DataflowRegistry, dict[str, object]]:
    registry = DataflowRegistry()
    for key in ("n", "delay"):
        registry.register_external_input(key)
    registry.register_task(ticks)
    registry.register_task(hear)
    return registry, {}


def spread(n: int, delay: float) -> tuple[DataflowRegistry, dict[str, object]]:
    """n independent `where` tasks, output `k<i>` from input `i<i>`."""
    registry = DataflowRegistry()
    inputs: dict[str, object] = {f"i{i}": i for i in range(n)}
    for key in (*inputs, "delay"):
        registry.register_external_input(key)
    for i in range(n):
        registry.register_task(where, output=f"k{i}", inputs=[f"i{i}", "delay"])
    return registry, {**inputs, "delay": delay}


# `taskiq-dataflow run e2e_tasks:gpu_registry`: one task for a pool that nobody serves
gpu_registry = DataflowRegistry()
gpu_registry.register_task(on_gpu)
