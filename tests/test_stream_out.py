"""Streams out of a run: the caller reads a stream as it is produced (`RunHandle.stream`), an
external input may be an async iterable (a stream for its readers), and one generator may feed
several output streams (StreamItem)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from cluster_support import two_services
from conftest import run
from taskiq_dataflow import (
    DataflowRegistry,
    ExecutionEngine,
    StreamError,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.streams import StreamItem
from taskiq_dataflow.task import RemoteTask

# set by the caller once it read an item: the producers below go on only then, so a test
# passes only when items reach the caller (or a reader) while their producer still runs
gate: dict[str, asyncio.Event] = {}


@pipeline_task(output="bar")
async def produce(foo: int) -> AsyncIterator[int]:
    for i in range(foo):
        yield i * 2
        if i == 0:
            await asyncio.wait_for(gate["read"].wait(), 5)


@pipeline_task(output="total")
async def add_up(bar: list[int]) -> int:
    return sum(bar)


@pipeline_task(output="plain")
async def not_a_stream(foo: int) -> int:
    return foo


def engine_of(*tasks, external=("foo",)):
    registry = DataflowRegistry()
    for key in external:
        registry.register_external_input(key)
    for task in tasks:
        registry.register_task(task)
    return ExecutionEngine(None, registry.build_dag())


async def read_with_gate(items: AsyncIterator[int]) -> list[int]:
    seen = []
    async for item in items:
        seen.append(item)
        gate["read"].set()
    return seen


def test_the_caller_reads_a_stream_as_it_is_produced():
    engine = engine_of(produce, add_up)

    async def main():
        gate["read"] = asyncio.Event()
        handle = engine.start({"foo": 4})
        seen = await read_with_gate(handle.stream("bar").stream())
        return seen, await handle

    seen, out = run(main())
    assert seen == [0, 2, 4, 6]
    assert out == {"bar": [0, 2, 4, 6], "total": 12}


def test_two_readers_of_one_stream_each_get_every_item():
    engine = engine_of(produce)

    async def main():
        gate["read"] = asyncio.Event()
        handle = engine.start({"foo": 3})
        first, second = handle.stream("bar"), handle.stream("bar")
        got = await asyncio.gather(read_with_gate(first), second.collect())
        return got, await handle

    (first, second), out = run(main())
    assert first == second == [0, 2, 4] and out == {"bar": [0, 2, 4]}


@pipeline_task(output="bar")
async def fail_first(foo: int) -> AsyncIterator[int]:
    raise ValueError("no items today")
    yield foo


def test_a_stream_whose_run_failed_before_its_producer_ran_ends_with_the_failure():
    registry = DataflowRegistry()
    registry.register_task(fail_first)
    registry.register_task(produce, inputs=["plain"], output="more")
    registry.register_task(not_a_stream)
    engine = ExecutionEngine(None, registry.build_dag())

    async def main():
        handle = engine.start({"foo": 1})
        watched = handle.stream("more")  # its producer waits for 'plain', and the run fails
        with pytest.raises(TaskFailedError, match="no items today"):
            await handle
        with pytest.raises(StreamError, match="stream 'more' ended with its run: .*no items"):
            await asyncio.wait_for(watched.collect(), 5)

    run(main())


def test_streaming_what_is_no_stream_or_too_late_says_why():
    engine = engine_of(produce, not_a_stream)

    async def main():
        gate["read"] = asyncio.Event()
        gate["read"].set()
        handle = engine.start({"foo": 2})
        with pytest.raises(TypeError, match="task 'not_a_stream', which is not an async gen"):
            handle.stream("plain")
        with pytest.raises(KeyError, match="no task of run .* produces 'foo'"):
            handle.stream("foo")
        await handle
        with pytest.raises(RuntimeError, match=r"right after engine\.start\(\)"):
            handle.stream("bar")

    run(main())


# -- an async iterable as an external input ------------------------------------------------------


@pipeline_task(output="seen")
async def read_live(foo: AsyncIterator[int]) -> list[int]:
    return await read_with_gate(foo)


@pipeline_task(output="summed")
async def sum_list(foo: list[int]) -> int:
    return sum(foo)


async def gated_source(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i
        if i == 0:
            await asyncio.wait_for(gate["read"].wait(), 5)


def test_an_async_iterable_input_is_a_stream_for_its_readers_and_a_list_for_the_others():
    engine = engine_of(read_live, sum_list)

    async def main():
        gate["read"] = asyncio.Event()
        return await engine.execute({"foo": gated_source(4)})

    # the input is no output of the run
    assert run(main()) == {"seen": [0, 1, 2, 3], "summed": 6}


def test_an_async_iterable_for_a_key_a_task_produces_is_refused():
    engine = engine_of(produce, add_up)

    async def main():
        await engine.execute({"foo": 1, "bar": gated_source(1)})

    with pytest.raises(ValueError, match="input 'bar' is an async iterable but no task reads"):
        run(main())


# -- one generator, several output streams -------------------------------------------------------


@pipeline_task(outputs=["evens", "odds"])
async def split(n: int) -> AsyncIterator[StreamItem]:
    for i in range(n):
        yield StreamItem("evens" if i % 2 == 0 else "odds", i)


@pipeline_task(output="e")
async def evens_live(evens: AsyncIterator[int]) -> list[int]:
    return [v async for v in evens]


@pipeline_task(output="o")
async def odds_sum(odds: list[int]) -> int:
    return sum(odds)


@pipeline_task(outputs=["evens", "odds"])
async def bad_split(n: int) -> AsyncIterator[int]:
    yield n


def test_one_generator_feeds_several_output_streams():
    engine = engine_of(split, evens_live, odds_sum, external=("n",))

    async def main():
        handle = engine.start({"n": 7})
        odds = handle.stream("odds")
        return await odds.collect(), await handle

    odds, out = run(main())
    assert odds == [1, 3, 5]
    assert out == {"evens": [0, 2, 4, 6], "odds": [1, 3, 5], "e": [0, 2, 4, 6], "o": 9}


def test_a_generator_of_several_outputs_must_yield_stream_items():
    engine = engine_of(bad_split, external=("n",))
    with pytest.raises(TaskFailedError, match=r"must yield StreamItem\(key, value\)"):
        run(engine.execute({"n": 1}))


# -- on the cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services(server):
    with two_services(server.url) as both:
        yield both


def cluster_engine(server, registry):
    return ExecutionEngine(DataflowNatsBroker(server.url), registry.build_dag())


def test_the_caller_reads_a_remote_generator_as_it_is_produced(server, services):
    registry = DataflowRegistry()
    registry.register_task("svc_a:double", inputs=["foo"], output="doubled")
    registry.register_task("svc_b:count", inputs=["doubled"], output="bar", stream=True)
    engine = cluster_engine(server, registry)

    async def main():
        handle = engine.start({"foo": 3})
        seen = []
        async for item in handle.stream("bar").stream():
            seen.append((item, handle.progress()["done"]))
        return seen, await handle

    seen, out = run(asyncio.wait_for(main(), 30))
    assert [item for item, _ in seen] == [0, 10, 20, 30, 40, 50]
    assert seen[0][1] == 1  # only 'double' had completed when the first item came
    assert out == {"doubled": 6, "bar": [0, 10, 20, 30, 40, 50]}


def test_a_remote_generator_feeds_several_streams_and_a_remote_reader(server, services):
    registry = DataflowRegistry()
    registry.register_task("svc_a:double", inputs=["foo"], output="doubled")
    split_ref = RemoteTask("svc_b:split", ["doubled"], outputs=["evens", "odds"], stream=True)
    registry.register_task(split_ref)
    registry.register_task(RemoteTask("svc_a:evens", ["evens"], "read", streams=["evens"]))
    engine = cluster_engine(server, registry)

    async def main():
        handle = engine.start({"foo": 3})
        odds = handle.stream("odds")
        await handle  # the caller may read after the run: its end never made the producer wait
        return await odds.collect(), await handle

    odds, out = run(asyncio.wait_for(main(), 30))
    assert odds == [1, 3, 5]
    assert out["odds"] == [1, 3, 5] and out["read"] == [0, 2, 4]


def test_an_async_iterable_input_streams_to_a_remote_reader(server, services):
    registry = DataflowRegistry()
    registry.register_external_input("bar")
    registry.register_task(RemoteTask("svc_a:total", ["bar"], "total", streams=["bar"]))
    engine = cluster_engine(server, registry)

    async def source():
        for i in range(5):
            yield i

    assert run(asyncio.wait_for(engine.execute({"bar": source()}), 30)) == {
        "total": [0, 1, 2, 3, 4]
    }
