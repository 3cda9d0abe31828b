"""taskiq-flow's map-reduce API on us: ChunkConfig, MapResult, map_sweep, reduce(initial=,
chunk_size=), map_reduce(map_task=, reduce_task=, items=, reduce_chunk_size=), param_name and
keyword arguments passed to every call."""

import asyncio

import pytest
from conftest import run
from taskiq_dataflow import MapReduce, TaskFailedError
from taskiq_dataflow.map_reduce import ChunkConfig, MapResult


def test_chunk_config_keeps_every_item():
    items = list(range(25))
    assert ChunkConfig(chunk_size=10).calculate_chunks(items) == [
        items[0:10],
        items[10:20],
        items[20:25],
    ]
    # taskiq-flow 1.2.2 drops the items past max_chunks * chunk_size; we make chunks larger
    capped = ChunkConfig(chunk_size=5, max_chunks=2).calculate_chunks(items)
    assert len(capped) == 2 and [x for chunk in capped for x in chunk] == items
    adaptive = ChunkConfig(adaptive=True, min_chunk_size=3).calculate_chunks(items)
    assert [len(c) for c in adaptive] == [12, 12, 1]
    assert ChunkConfig().calculate_chunks([]) == []
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        ChunkConfig(chunk_size=0)


def test_map_result_has_taskiq_flows_fields():
    made = MapResult(results=[1, 2], output_name="out", items_processed=2, duration=0.5)
    assert made.results == [1, 2] and made.output_name == "out" and made.errors == []
    assert made.success_rate == 1.0
    assert MapResult([], "out", 0, 0.0).success_rate == 0.0

    mapped = run(MapReduce.map(None, lambda x: x * 2, [1, 2, 3], output="doubled"))
    assert isinstance(mapped, MapResult)
    assert mapped.results == [2, 4, 6] and mapped.output_name == "doubled"
    assert mapped.items_processed == 3 and mapped.success_rate == 1.0


def test_chunked_map_runs_a_task_per_chunk():
    in_flight = peak = 0
    progress: list[tuple[int, int]] = []

    async def square(x):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return x * x

    mapped = run(
        MapReduce.map(
            None,
            square,
            range(10),
            output="sq",
            max_parallel=2,
            chunk_config=ChunkConfig(chunk_size=3),
            progress_callback=lambda done, total: progress.append((done, total)),
        )
    )
    assert mapped.results == [x * x for x in range(10)]
    assert progress[-1] == (4, 4)  # four chunks: 3 + 3 + 3 + 1 items
    assert peak == 2  # the items of a chunk run one after the other


def test_param_name_and_keyword_arguments_reach_every_call():
    def scale(factor, value, offset=0):
        return value * factor + offset

    mapped = run(
        MapReduce.map(None, scale, [1, 2], output="s", param_name="value", factor=10, offset=1)
    )
    assert mapped.results == [11, 21]
    with pytest.raises(TypeError, match=r"'nope'.*neither an engine option nor a parameter"):
        run(MapReduce.map(None, scale, [1], output="s", nope=1))
    with pytest.raises(TypeError, match="param_name 'valu' is not a parameter of 'scale'"):
        run(MapReduce.map(None, scale, [1], output="s", param_name="valu", factor=1))


def test_broker_task_with_call_options(broker):
    @broker.task
    async def add(x, y):
        return x + y

    mapped = run(MapReduce.map(broker, add, [1, 2], output="sums", y=100))
    assert mapped.results == [101, 102]


def test_map_sweep_runs_every_combination_in_order():
    def train(learning_rate, batch_size, epochs):
        return (learning_rate, batch_size, epochs)

    swept = run(
        MapReduce.map_sweep(
            None,
            train,
            param_values={"learning_rate": [0.1, 0.01], "batch_size": [32, 64]},
            output="experiments",
            max_parallel=2,
            epochs=3,
        )
    )
    assert swept.results == [(0.1, 32, 3), (0.1, 64, 3), (0.01, 32, 3), (0.01, 64, 3)]
    assert swept.output_name == "experiments" and swept.items_processed == 4
    with pytest.raises(TypeError, match="'epochs' given both"):
        run(MapReduce.map_sweep(None, train, {"epochs": [1]}, "x", epochs=2))


def test_map_sweep_failure_names_the_combination_node():
    def fail_on_two(n):
        if n == 2:
            raise ValueError("two")
        return n

    with pytest.raises(TaskFailedError, match=r"fail_on_two\[1\]"):
        run(MapReduce.map_sweep(None, fail_on_two, {"n": [1, 2, 3]}, "out"))


def test_reduce_initial_is_the_value_of_an_empty_reduction():
    calls = []

    def total(values):
        calls.append(values)
        return sum(values)

    assert run(MapReduce.reduce(None, total, [], output="t", initial=7)).return_value == 7
    assert calls == []
    assert run(MapReduce.reduce(None, total, [1, 2], output="t", initial=7)).return_value == 3


def test_chunked_reduce_reduces_chunks_then_their_results():
    seen = []

    def total(values):
        seen.append(list(values))
        return sum(values)

    reduced = run(MapReduce.reduce(None, total, list(range(10)), output="t", chunk_size=4))
    assert reduced.return_value == 45
    assert sorted(seen[:3]) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert seen[3] == [6, 22, 17]


def test_map_reduce_with_taskiq_flows_keywords():
    final = run(
        MapReduce.map_reduce(
            None,
            map_task=lambda x: x + 1,
            reduce_task=sum,
            items=list(range(100)),
            max_parallel=20,
            reduce_chunk_size=30,
        )
    )
    assert final.return_value == sum(range(1, 101))
    assert final.mapped == list(range(1, 101))
    with pytest.raises(TypeError, match="map_func or map_task, not both"):
        run(MapReduce.map_reduce(None, abs, [1], sum, map_task=abs))
    empty = run(MapReduce.map_reduce(None, map_task=abs, reduce_task=sum, items=[], initial=0))
    assert empty.return_value == 0


def test_a_task_run_through_its_broker_gets_its_arguments_by_position(broker):
    calls = []

    @broker.task
    async def train(learning_rate, batch_size, epochs=1):
        calls.append((learning_rate, batch_size, epochs))
        return learning_rate * batch_size * epochs

    # transport="broker": every call goes through broker.kiq, as it would to a remote worker
    swept = run(
        MapReduce.map_sweep(
            broker,
            train,
            {"learning_rate": [1, 2], "batch_size": [10]},
            "runs",
            transport="broker",
            epochs=3,
        )
    )
    assert swept.results == [30, 60] and sorted(calls) == [(1, 10, 3), (2, 10, 3)]
    mapped = run(
        MapReduce.map(
            broker, train, [1, 2], "m", param_name="learning_rate", transport="broker", batch_size=5
        )
    )
    assert mapped.results == [5, 10]
    with pytest.raises(TypeError, match=r"travel by position.*give learning_rate too"):
        run(MapReduce.map(broker, train, [1], "m", param_name="batch_size", transport="broker"))
    with pytest.raises(TypeError, match=r"chunk_config runs a chunk's items in one call here"):
        run(
            MapReduce.map(
                broker, train, [1], "m", chunk_config=ChunkConfig(chunk_size=2), transport="broker"
            )
        )
