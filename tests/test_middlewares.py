"""taskiq middlewares on the broker (pre_execute, on_error, post_execute, post_save) run around
tasks the engine runs itself, in taskiq's order, as through taskiq's own receiver; arguments
are parsed against type hints (taskiq's parse_params) and a value that cannot be is refused
naming the task and the parameter."""

from __future__ import annotations

import asyncio

import pytest
from conftest import run
from taskiq import InMemoryBroker, TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq_dataflow import (
    DataflowRegistry,
    ExecutionEngine,
    TaskArgumentError,
    TaskFailedError,
    pipeline_task,
)


class Recorder(TaskiqMiddleware):
    """Records each hook call as (tag, hook, task's short name, detail)."""

    def __init__(self, tag: str, calls: list) -> None:
        super().__init__()
        self.tag, self.calls = tag, calls

    def _note(self, hook: str, message: TaskiqMessage, detail: object = None) -> None:
        self.calls.append((self.tag, hook, message.task_name.rsplit(":", 1)[-1], detail))

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        self._note("pre_execute", message, (list(message.args), dict(message.kwargs)))
        return message

    async def post_execute(self, message: TaskiqMessage, result: TaskiqResult) -> None:
        await asyncio.sleep(0)  # an async hook is awaited
        self._note("post_execute", message, (result.is_err, result.return_value))

    def on_error(self, message: TaskiqMessage, result: TaskiqResult, exc: BaseException) -> None:
        self._note("on_error", message, (result.is_err, type(exc).__name__, str(exc)))

    def post_save(self, message: TaskiqMessage, result: TaskiqResult) -> None:
        self._note("post_save", message, result.return_value)


class Doubler(TaskiqMiddleware):
    """Replaces the message: every argument doubled (the task receives what pre_execute made)."""

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        message.kwargs = {k: v * 2 for k, v in message.kwargs.items()}
        return message


def make(broker: InMemoryBroker, fail: bool = False) -> DataflowRegistry:
    @broker.task
    @pipeline_task(output="y")
    async def inc(x: int) -> int:
        return x + 1

    @broker.task
    @pipeline_task(output="z")
    def square(y: int) -> int:  # blocking: runs in a thread, inside the middlewares
        if fail:
            raise ValueError(f"no square of {y}")
        return y * y

    @pipeline_task(output="w", local=True)
    def plain(z: int) -> int:  # no taskiq task: taskiq would never see it
        return z - 1

    registry = DataflowRegistry()
    for task in (inc, square, plain):
        registry.register_task(task)
    return registry


EXPECTED = [
    ("A", "pre_execute", "inc", ([], {"x": 2})),
    ("B", "pre_execute", "inc", ([], {"x": 2})),
    ("B", "post_execute", "inc", (False, 3)),
    ("A", "post_execute", "inc", (False, 3)),
    ("B", "post_save", "inc", 3),
    ("A", "post_save", "inc", 3),
    ("A", "pre_execute", "square", ([], {"y": 3})),
    ("B", "pre_execute", "square", ([], {"y": 3})),
    ("B", "post_execute", "square", (False, 9)),
    ("A", "post_execute", "square", (False, 9)),
    ("B", "post_save", "square", 9),
    ("A", "post_save", "square", 9),
]


def record(transport: str, fail: bool = False) -> list:
    calls: list = []
    broker = InMemoryBroker().with_middlewares(Recorder("A", calls), Recorder("B", calls))
    engine = ExecutionEngine(broker, make(broker, fail).build_dag(), transport=transport)
    if fail:
        with pytest.raises(TaskFailedError, match="no square of 3"):
            run(engine.execute({"x": 2}))
    else:
        assert run(engine.execute({"x": 2}))["w"] == 8
    return calls


def test_middlewares_run_in_taskiqs_order():
    # through the broker transport taskiq's own receiver (InMemoryBroker) runs them; in process
    # the engine does, and both records are the same
    assert record("broker") == EXPECTED
    assert record("local") == EXPECTED


def test_on_error_then_post_execute_see_the_failure():
    failed = [
        ("B", "on_error", "square", (True, "ValueError", "no square of 3")),
        ("A", "on_error", "square", (True, "ValueError", "no square of 3")),
        ("B", "post_execute", "square", (True, None)),
        ("A", "post_execute", "square", (True, None)),
        ("B", "post_save", "square", None),
        ("A", "post_save", "square", None),
    ]
    for transport in ("broker", "local"):
        calls = record(transport, fail=True)
        assert calls == [*EXPECTED[:8], *failed], transport


def test_pre_execute_can_replace_the_arguments():
    broker = InMemoryBroker().with_middlewares(Doubler())
    engine = ExecutionEngine(broker, make(broker).build_dag())
    # inc(4) = 5, square(10) = 100, plain: 99
    assert run(engine.execute({"x": 2}))["w"] == 99


# -- arguments against type hints --------------------------------------------------------------


def typed(broker: InMemoryBroker) -> DataflowRegistry:
    @broker.task
    @pipeline_task(output="total")
    async def add(count: int, ratio: float, tags: tuple[str, ...]) -> tuple:
        return (count, ratio, tags)

    registry = DataflowRegistry()
    registry.register_task(add)
    return registry


@pytest.mark.parametrize("transport", ["local", "broker"])
def test_arguments_are_parsed_to_their_hints(transport):
    broker = InMemoryBroker()
    registry = typed(broker)

    @pipeline_task(output="seen", local=True)
    def plain(count: int) -> object:  # not a taskiq task: taskiq would not parse its arguments
        return count

    registry.register_task(plain)
    engine = ExecutionEngine(broker, registry.build_dag(), transport=transport)
    out = run(engine.execute({"count": "11", "ratio": 2, "tags": ["a", "b"]}))
    assert out["total"] == (11, 2.0, ("a", "b"))
    assert [type(v) for v in out["total"]] == [int, float, tuple]
    assert out["seen"] == "11"


@pytest.mark.parametrize("transport", ["local", "broker"])
def test_an_argument_that_cannot_be_parsed_names_the_task_and_parameter(transport):
    broker = InMemoryBroker()
    engine = ExecutionEngine(broker, typed(broker).build_dag(), transport=transport)
    with pytest.raises(TaskFailedError) as info:
        run(engine.execute({"count": "eleven", "ratio": 1.0, "tags": []}))
    error = info.value.error
    assert error.type == "TaskArgumentError"
    assert error.message == (
        "Can't parse argument 'count' for task 'add': 'eleven' (str) is not a valid int "
        "(Input should be a valid integer, unable to parse string as an integer)"
    )
    assert isinstance(error.exception, TaskArgumentError)
    assert (error.exception.task, error.exception.parameter) == ("add", "count")


def test_a_broker_that_does_not_cast_types_is_not_parsed_for():
    broker = InMemoryBroker(cast_types=False)
    out = run(ExecutionEngine(broker, typed(broker).build_dag()).execute(
        {"count": "11", "ratio": 2, "tags": ["a"]}
    ))  # fmt: skip
    assert out["total"] == ("11", 2, ["a"])


def test_a_stream_producer_runs_inside_the_middlewares():
    calls: list = []
    broker = InMemoryBroker().with_middlewares(Recorder("A", calls))

    @broker.task
    @pipeline_task(output="ticks")
    async def ticks(n: int):
        for i in range(n):
            yield i

    @broker.task
    @pipeline_task(output="total", streams=["ticks"])
    async def total(ticks) -> int:
        return sum([i async for i in ticks])

    registry = DataflowRegistry()
    registry.register_task(ticks)
    registry.register_task(total)
    out = run(ExecutionEngine(broker, registry.build_dag()).execute({"n": "4"}))  # "4" -> 4
    assert out["total"] == 6
    assert [(hook, name) for _, hook, name, _ in calls] == [
        ("pre_execute", "ticks"), ("pre_execute", "total"),
        ("post_execute", "ticks"), ("post_save", "ticks"),
        ("post_execute", "total"), ("post_save", "total"),
    ]  # fmt: skip


def test_a_blocking_task_inside_middlewares_still_finds_its_run():
    # the thread keeps the task's context (growth.add_tasks finds the run through it)
    from taskiq_dataflow.execution_engine import current_run

    calls: list = []
    broker = InMemoryBroker().with_middlewares(Recorder("A", calls))

    @broker.task
    @pipeline_task(output="found")
    def look(x: int) -> bool:
        return current_run() is not None

    registry = DataflowRegistry()
    registry.register_task(look)
    assert run(ExecutionEngine(broker, registry.build_dag()).execute({"x": 1})) == {"found": True}
    assert [hook for _, hook, _, _ in calls] == ["pre_execute", "post_execute", "post_save"]
