from typing import Annotated

from conftest import run
from taskiq import Context, TaskiqDepends
from taskiq_dataflow import DataflowRegistry, Depends, ExecutionEngine, pipeline_task


def get_multiplier() -> int:
    return 3


class Settings:
    def __init__(self) -> None:
        self.prefix = "v"


def test_depends_resolves_non_data_parameters():
    @pipeline_task(output="scaled")
    async def scale(value: int, multiplier: int = Depends(get_multiplier)) -> int:
        return value * multiplier

    @pipeline_task(output="label")
    def label(scaled: int, settings: Annotated[Settings, Depends(Settings)] = None) -> str:
        return f"{settings.prefix}{scaled}"

    registry = DataflowRegistry()
    registry.register_external_input("value")
    registry.register_task(scale)
    registry.register_task(label)
    assert registry.get_data_dependencies(scale) == ["value"]
    out = run(ExecutionEngine(None, registry.build_dag()).execute({"value": 5}))
    assert out == {"scaled": 15, "label": "v15"}


def test_taskiq_context_is_injected(broker):
    @broker.task
    @pipeline_task(output="name")
    async def who(x: int, context: Context = TaskiqDepends()) -> str:
        return f"{x}:{type(context.broker).__name__}"

    registry = DataflowRegistry()
    registry.register_external_input("x")
    registry.register_task(who)
    out = run(ExecutionEngine(broker, registry.build_dag()).execute({"x": 1}))
    assert out == {"name": "1:InMemoryBroker"}


def test_depends_on_a_stream_producer():
    @pipeline_task(output="numbers", inputs=["count"])
    async def numbers(count: int, multiplier: int = Depends(get_multiplier)):
        for i in range(count):
            yield i * multiplier

    registry = DataflowRegistry()
    registry.register_external_input("count")
    registry.register_task(numbers)
    assert run(ExecutionEngine(None, registry.build_dag()).execute({"count": 3})) == {
        "numbers": [0, 3, 6]
    }
