"""A user program written against the typed API: tests/test_typed_api.py checks it with
mypy --strict (and pyright). Every `assert_type` below fails if a decorator or a listener
loses the type (an Any passes no assert_type)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import assert_type

from taskiq import InMemoryBroker, TaskiqResult
from taskiq_dataflow import (
    DataflowRegistry,
    EventBus,
    ExecutionEngine,
    ResultCache,
    RunFinished,
    StepCompleted,
    StepFailed,
    pipeline_task,
)

broker = InMemoryBroker()


@broker.task
@pipeline_task(output="doubled", retries=2, cache=True, min_ttl=timedelta(hours=1))
async def double(x: int) -> int:
    return x * 2


@pipeline_task(output="label")
def label(doubled: int, prefix: str = "n=") -> str:
    return f"{prefix}{doubled}"


@pipeline_task
def plain(x: int) -> float:
    return x / 2


assert_type(label(3), str)
assert_type(plain(3), float)

completed: list[str] = []
cached: list[bool] = []


def on_completed(event: StepCompleted) -> None:
    completed.append(event.task_name)  # StepCompleted attributes: no cast needed
    if event.task_name == "double":
        cached.append(event.cached)


async def on_end(event: StepCompleted | StepFailed) -> None:
    completed.append(event.task_name)


async def main() -> int:
    kicked = await double.kiq(3)
    result = await kicked.wait_result()
    assert_type(result, TaskiqResult[int])
    value: int = result.return_value

    registry = DataflowRegistry()
    registry.register_task(double)
    registry.register_task(label)
    engine = ExecutionEngine(broker, registry.build_dag(), cache=ResultCache())
    bus: EventBus = engine.events
    unsubscribe = bus.subscribe(on_completed, StepCompleted)
    bus.subscribe(on_end, StepCompleted, StepFailed)
    bus.subscribe(lambda event: None, RunFinished)
    outputs = await engine.execute({"x": 4})
    assert outputs == await engine.execute({"x": 4})
    unsubscribe()
    return value + len(outputs)


if __name__ == "__main__":
    print(asyncio.run(main()))
