import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from conftest import dag_of as build
from conftest import run
from taskiq_dataflow import (
    ExecutionEngine,
    Stream,
    StreamError,
    TaskFailedError,
    pipeline_task,
)


def test_streaming_consumer_starts_on_the_first_value_list_consumer_gets_the_list():
    stamps = {}

    @pipeline_task(output="numbers")
    async def produce(n: int):
        for i in range(n):
            await asyncio.sleep(0.02)
            yield i
        stamps["producer_end"] = time.perf_counter()

    @pipeline_task(output="doubled")
    async def double(numbers: AsyncIterator[int]):
        async for value in numbers:
            stamps.setdefault("first_output", time.perf_counter())
            yield value * 2

    @pipeline_task(output="total")
    def total(numbers: list) -> int:
        return sum(numbers)

    @pipeline_task(output="collected", streams=["doubled"])
    async def collect(doubled) -> list:
        return [v async for v in doubled]

    out = run(
        ExecutionEngine(None, build(produce, double, total, collect, external=["n"])).execute(
            {"n": 5}
        )
    )
    assert out["numbers"] == [0, 1, 2, 3, 4]
    assert out["total"] == 10
    assert out["collected"] == [0, 2, 4, 6, 8]
    assert stamps["first_output"] < stamps["producer_end"] - 0.05


def test_back_pressure_bounds_how_far_the_producer_runs_ahead():
    produced = consumed = 0
    lead = 0

    @pipeline_task(output="items", inputs=[])
    async def fast():
        nonlocal produced, lead
        for i in range(300):
            produced += 1
            lead = max(lead, produced - consumed)
            yield i

    @pipeline_task(output="seen", streams=["items"], stream_buffer=8)
    async def slow(items: Stream[int]) -> int:
        nonlocal consumed
        async for _ in items:
            consumed += 1
            await asyncio.sleep(0)
        return consumed

    out = run(ExecutionEngine(None, build(fast, slow)).execute())
    assert out["seen"] == 300
    assert out["items"] is None  # only a live consumer: the values were never accumulated
    assert lead <= 8 + 2


def test_consumer_that_cannot_start_early_gets_the_whole_stream():
    @pipeline_task(output="items", inputs=[])
    async def gen():
        for i in range(4):
            yield i

    @pipeline_task(output="gate", inputs=[])
    async def gate():
        await asyncio.sleep(0.05)
        return "open"

    @pipeline_task(output="got")
    async def late(items: AsyncIterator[int], gate: str) -> list:
        return [gate, *[v async for v in items]]

    out = run(ExecutionEngine(None, build(gen, gate, late)).execute())
    assert out["got"] == ["open", 0, 1, 2, 3]


def test_producer_failure_reaches_the_streaming_consumer():
    @pipeline_task(output="items", inputs=[])
    async def broken():
        yield 1
        raise ValueError("source went away")

    @pipeline_task(output="n")
    async def count(items: AsyncIterator[int]) -> int:
        return len([v async for v in items])

    with pytest.raises(TaskFailedError, match="source went away|failed: StreamError"):
        run(ExecutionEngine(None, build(broken, count)).execute())


def test_stream_helpers():
    async def main():
        stream = Stream.of("k", [3, 4])
        assert await stream.first() == 3
        with pytest.raises(StreamError, match="ended without a value"):
            await Stream.of("k", []).first()
        assert await Stream.of("k", [1, 2]).collect() == [1, 2]

    run(main())


def test_streams_with_the_broker_transport_run_in_the_engine(broker):
    @pipeline_task(output="items", inputs=[])
    async def gen():
        for i in range(3):
            yield i

    @pipeline_task(output="doubled")
    async def double(items: AsyncIterator[int]) -> list:
        return [2 * v async for v in items]

    @broker.task
    @pipeline_task(output="n")
    def count(items: list) -> int:
        return len(items)

    engine = ExecutionEngine(broker, build(gen, double, count), transport="broker")
    assert run(engine.execute()) == {"items": [0, 1, 2], "doubled": [0, 2, 4], "n": 3}


def test_register_task_makes_one_node_read_a_stream():
    """The same function: a list consumer in one node, a live reader with a buffer of 1 in
    another (register_task(..., streams=[...], stream_buffer=...))."""
    lead = []
    made = 0

    @pipeline_task(output="items", inputs=[])
    async def produce():
        nonlocal made
        for i in range(20):
            made += 1
            yield i

    async def read(items):
        if isinstance(items, Stream):
            out = []
            async for value in items:
                lead.append(made - len(out))
                out.append(value)
            return out
        return list(items)

    from taskiq_dataflow import DataflowRegistry

    registry = DataflowRegistry()
    registry.register_task(produce)
    registry.register_task(read, output="whole", inputs=["items"], name="whole")
    registry.register_task(
        read, output="live", inputs=["items"], name="live", streams=["items"], stream_buffer=1
    )
    out = run(ExecutionEngine(None, registry.build_dag()).execute())
    assert out["whole"] == out["live"] == list(range(20))
    assert lead and max(lead) <= 3


def test_a_stream_annotation_follows_positional_binding():
    """Keys that are not parameter names bind positionally: the stream-annotated parameter
    makes the key bound to it a stream."""

    @pipeline_task(output="unused", inputs=[])
    async def numbers():
        for i in range(3):
            yield i

    async def first_then_rest(values: AsyncIterator[int], label: str) -> str:
        assert isinstance(values, Stream)
        return f"{label}:{[v async for v in values]}"

    from taskiq_dataflow import DataflowRegistry

    registry = DataflowRegistry()
    registry.register_external_input("name")
    registry.register_task(numbers, output="n0")
    registry.register_task(first_then_rest, output="text", inputs=["n0", "name"])
    out = run(ExecutionEngine(None, registry.build_dag()).execute({"name": "x"}))
    assert out["text"] == "x:[0, 1, 2]"


def test_restart_runs_a_producer_again_when_its_stream_was_not_kept(tmp_path):
    """Its only consumer read it live, so the store holds no items: a restart that must run
    the consumer again runs the producer too, instead of handing it an empty stream."""
    from taskiq_dataflow import RunStore

    calls = []
    flaky = [True]

    @pipeline_task(output="items", inputs=[])
    async def produce():
        calls.append("produce")
        for i in range(5):
            yield i

    @pipeline_task(output="total")
    async def total(items: AsyncIterator[int]) -> int:
        values = [v async for v in items]
        if flaky[0]:
            raise RuntimeError("flaky")
        return sum(values)

    engine = ExecutionEngine(None, build(produce, total), store=RunStore(tmp_path / "runs.db"))
    with pytest.raises(TaskFailedError, match="flaky"):
        run(engine.execute(pipeline_id="s1"))
    flaky[0] = False
    assert run(engine.restart("s1")) == {"items": None, "total": 10}
    assert calls == ["produce", "produce"]


def test_a_cached_producer_is_refused_by_name(tmp_path):
    from taskiq_dataflow import ResultCache

    @pipeline_task(output="items", inputs=[], cache=True)
    async def produce():
        yield 1

    engine = ExecutionEngine(None, build(produce), cache=ResultCache(tmp_path / "c.db"))
    with pytest.raises(TypeError, match="task 'produce' is a stream producer"):
        run(engine.execute())
