"""ExecutionCancelled is an ordinary exception (issue 9 item 10)."""

import asyncio

from conftest import dag_of as build
from conftest import run
from taskiq_dataflow import ExecutionCancelled, ExecutionEngine, pipeline_task


def _engine() -> ExecutionEngine:
    @pipeline_task(output="a", inputs=[])
    async def quick():
        return 1

    @pipeline_task(output="b")
    async def forever(a):
        await asyncio.sleep(30)

    return ExecutionEngine(None, build(quick, forever))


async def _cancel_soon(engine: ExecutionEngine) -> None:
    await asyncio.sleep(0.05)
    engine.cancel()


def test_execution_cancelled_is_not_a_cancelled_error():
    assert not issubclass(ExecutionCancelled, asyncio.CancelledError)
    assert issubclass(ExecutionCancelled, Exception)


def test_gather_return_exceptions_hands_back_the_results():
    async def main():
        engine = _engine()
        outcome, _ = await asyncio.gather(
            engine.execute(), _cancel_soon(engine), return_exceptions=True
        )
        return outcome

    outcome = run(main())
    assert isinstance(outcome, ExecutionCancelled)
    assert outcome.results == {"a": 1}


def test_task_group_raises_it_instead_of_swallowing_it():
    async def main():
        engine = _engine()
        async with asyncio.TaskGroup() as group:
            group.create_task(engine.execute())
            group.create_task(_cancel_soon(engine))

    try:
        run(main())
    except* ExecutionCancelled as group:
        (cancelled,) = group.exceptions
        assert cancelled.results == {"a": 1}
    else:
        raise AssertionError("the TaskGroup swallowed ExecutionCancelled")
