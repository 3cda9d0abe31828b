"""A failing streaming consumer fails the run at once; a producer nobody reads any more stops
(issue 9 item 7), in-process. The cluster variants are in test_run_cluster_streams.py."""

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest
from conftest import registry_of, run
from taskiq_dataflow import (
    DataflowExecutionError,
    ExecutionEngine,
    StepFailed,
    TaskFailedError,
    pipeline_task,
)


def endless_dag(stopped, extra=()):
    @pipeline_task(output="ticks", inputs=[])
    async def endless():
        try:
            for i in itertools.count():
                await asyncio.sleep(0.005)
                yield i
        finally:
            stopped.append(time.perf_counter())

    @pipeline_task(output="checked")
    async def fussy(ticks: AsyncIterator[int]) -> int:
        async for i in ticks:
            if i == 3:
                raise ValueError(f"item {i} is not welcome")
        return -1

    return registry_of(endless, fussy, *extra).build_dag()


def timed(engine, seconds=20):
    began = time.perf_counter()
    try:
        run(asyncio.wait_for(engine.execute(), seconds))
    finally:
        elapsed = time.perf_counter() - began
    return elapsed


def test_failing_consumer_of_an_endless_producer_fails_the_run_at_once():
    stopped, failed_at = [], []
    engine = ExecutionEngine(None, endless_dag(stopped))
    engine.events.subscribe(lambda e: failed_at.append(time.perf_counter()), StepFailed)
    began = time.perf_counter()
    with pytest.raises(TaskFailedError, match="'fussy' failed: ValueError: item 3"):
        run(asyncio.wait_for(engine.execute(), 20))
    assert time.perf_counter() - began < 5
    assert len(failed_at) == 1  # the consumer, reported once
    assert stopped  # the producer was cancelled with the run, not left running


def test_without_fail_fast_dependents_are_skipped_and_the_producer_stops():
    stopped = []

    @pipeline_task(output="report")
    async def report(checked: int) -> str:
        return f"checked {checked}"

    @pipeline_task(output="other", inputs=[])
    async def other() -> int:
        await asyncio.sleep(0.05)
        return 7

    engine = ExecutionEngine(None, endless_dag(stopped, (report, other)), fail_fast=False)
    began = time.perf_counter()
    with pytest.raises(DataflowExecutionError) as info:
        run(asyncio.wait_for(engine.execute(), 20))
    assert time.perf_counter() - began < 5
    error = info.value
    assert [f.task_name for f in error.failures] == ["fussy"]
    assert error.skipped == {"report": "fussy"}
    assert error.results["other"] == 7
    assert error.results["ticks"] is None  # stopped for want of readers: nothing kept
    assert stopped


def test_a_consumer_done_early_stops_an_endless_producer_and_the_run_succeeds():
    stopped = []

    @pipeline_task(output="ticks", inputs=[])
    async def endless():
        try:
            for i in itertools.count():
                yield i
        finally:
            stopped.append(True)

    @pipeline_task(output="head")
    async def head(ticks: AsyncIterator[int]) -> list:
        return [i async for i in itertools_islice(ticks, 3)]

    engine = ExecutionEngine(None, registry_of(endless, head).build_dag())
    out = run(asyncio.wait_for(engine.execute(), 20))
    assert out == {"ticks": None, "head": [0, 1, 2]}
    assert stopped


def test_a_producer_whose_list_someone_needs_is_not_stopped():
    @pipeline_task(output="ticks", inputs=[])
    async def finite():
        for i in range(50):
            yield i

    @pipeline_task(output="head")
    async def head(ticks: AsyncIterator[int]) -> list:
        return [i async for i in itertools_islice(ticks, 2)]

    @pipeline_task(output="total")
    def total(ticks: list) -> int:
        return sum(ticks)

    out = run(ExecutionEngine(None, registry_of(finite, head, total).build_dag()).execute())
    assert out["head"] == [0, 1] and out["total"] == sum(range(50))


async def itertools_islice(stream, n):
    if n <= 0:
        return
    seen = 0
    async for item in stream:
        yield item
        seen += 1
        if seen == n:
            return


def test_a_producer_waiting_long_between_items_is_cancelled_at_once():
    """Without fail_fast nothing cancels the run: the producer, asleep between two items, is
    cancelled the moment its last reader fails, not after its sleep."""
    stopped = []

    @pipeline_task(output="ticks", inputs=[])
    async def sleepy():
        try:
            yield 0
            await asyncio.sleep(60)
            yield 1
        finally:
            stopped.append(True)

    @pipeline_task(output="checked")
    async def picky(ticks: AsyncIterator[int]) -> int:
        async for i in ticks:
            raise ValueError(f"item {i} is not welcome")
        return -1

    engine = ExecutionEngine(None, registry_of(sleepy, picky).build_dag(), fail_fast=False)
    began = time.perf_counter()
    with pytest.raises(DataflowExecutionError) as info:
        run(asyncio.wait_for(engine.execute(), 30))
    assert time.perf_counter() - began < 5
    assert [f.task_name for f in info.value.failures] == ["picky"]
    assert info.value.results["ticks"] is None and stopped


def test_the_last_of_two_readers_ending_cancels_the_producer_at_once():
    stopped = []

    @pipeline_task(output="ticks", inputs=[])
    async def sleepy():
        try:
            for i in itertools.count():
                yield i
                await asyncio.sleep(60 if i else 0)
        finally:
            stopped.append(True)

    @pipeline_task(output="first")
    async def first(ticks: AsyncIterator[int]) -> list:
        return [i async for i in itertools_islice(ticks, 1)]

    @pipeline_task(output="second")
    async def second(ticks: AsyncIterator[int]) -> list:
        return [i async for i in itertools_islice(ticks, 2)]

    engine = ExecutionEngine(None, registry_of(sleepy, first, second).build_dag())
    began = time.perf_counter()
    out = run(asyncio.wait_for(engine.execute(), 30))
    assert time.perf_counter() - began < 5
    assert out == {"ticks": None, "first": [0], "second": [0, 1]}
    assert stopped
