import asyncio
import time

import pytest
import taskiq_dataflow.map_reduce as map_reduce_module
from conftest import run
from taskiq import TaskiqResult
from taskiq_dataflow import (
    DataflowExecutionError,
    DataflowPipeline,
    ExecutionEngine,
    MapReduce,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow.map_reduce import MapReduceResult


async def value_of(result):
    return (await result.wait_result()).return_value


class Gauge:
    """Counts map calls in flight inside async map functions."""

    def __init__(self):
        self.now = self.peak = 0

    async def __call__(self, item):
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(0.005)
        self.now -= 1
        return item * 10


def test_map_returns_a_task_like_result_in_item_order():
    async def slower_first(x):
        await asyncio.sleep(0.002 * (10 - x))  # later items finish first
        return x * x

    async def go():
        mapped = await MapReduce.map(None, slower_first, range(10))
        result = await mapped.wait_result()
        return mapped, result

    mapped, result = run(go())
    assert isinstance(mapped, MapReduceResult)
    assert isinstance(result, TaskiqResult) and not result.is_err
    assert result.return_value == [x * x for x in range(10)]
    assert mapped.results == result.return_value and mapped.output_name == "mapped"
    assert mapped.items_processed == 10 and mapped.errors == []


def test_map_accepts_plain_async_and_taskiq_tasks(broker):
    @broker.task
    async def async_task(x):
        return x + 1

    @broker.task
    def sync_task(x):
        return x + 2

    def plain(x):
        return x + 3

    async def go():
        return [
            await value_of(await MapReduce.map(broker, f, [1, 2, 3]))
            for f in (async_task, sync_task, plain)
        ]

    assert run(go()) == [[2, 3, 4], [3, 4, 5], [4, 5, 6]]


def test_plain_function_runs_in_process_whatever_the_broker():
    class RemoteBroker:  # no worker would ever run a plain function sent through it
        pass

    mapped = run(MapReduce.map(RemoteBroker(), lambda x: -x, iter([1, 2])))
    assert mapped.return_value == [-1, -2]


def test_empty_items():
    calls = []

    def total(values):
        calls.append(list(values))
        return sum(values)

    async def go():
        mapped = await MapReduce.map(None, lambda x: x, [])
        reduced = await MapReduce.reduce(None, total, mapped, "mapped")
        both = await MapReduce.map_reduce(None, lambda x: x, [], total)
        return await value_of(mapped), await value_of(reduced), await value_of(both), both

    mapped, reduced, both, result = run(go())
    assert mapped == [] and reduced == 0 and both == 0 and result.mapped == []
    assert calls == [[], []]


@pytest.mark.parametrize("limit", [1, 3, 8])
def test_map_respects_max_parallel(limit):
    gauge = Gauge()
    mapped = run(MapReduce.map(None, gauge, range(30), max_parallel=limit))
    assert mapped.return_value == [i * 10 for i in range(30)]
    assert gauge.peak == limit


def test_map_unbounded_by_default_and_map_reduce_defaults_to_ten():
    gauge = Gauge()
    run(MapReduce.map(None, gauge, range(25)))
    assert gauge.peak == 25
    gauge = Gauge()
    final = run(MapReduce.map_reduce(None, gauge, range(40), sum))
    assert gauge.peak == 10
    assert final.return_value == sum(i * 10 for i in range(40))
    assert final.output_name == "final" and final.mapped == [i * 10 for i in range(40)]


def test_ten_thousand_items_are_one_dag_of_ten_thousand_nodes(monkeypatch):
    sizes = []

    class Recording(ExecutionEngine):
        def __init__(self, broker, dag, **kwargs):
            sizes.append((len(dag), kwargs.get("max_parallel")))
            super().__init__(broker, dag, **kwargs)

    monkeypatch.setattr(map_reduce_module, "ExecutionEngine", Recording)

    async def square(x):
        return x * x

    progress = []
    started = time.perf_counter()
    mapped = run(
        MapReduce.map(
            None,
            square,
            range(10_000),
            output="sq",
            max_parallel=64,
            progress_callback=lambda done, total: progress.append(done),
        )
    )
    elapsed = time.perf_counter() - started
    assert mapped.return_value == [x * x for x in range(10_000)]
    assert sizes == [(10_000, 64)]
    assert progress[-1] == 10_000 and len(progress) == 10_000
    assert elapsed < 10


def test_reduce_binds_by_name_or_position_and_accepts_what_callers_hold(broker):
    def by_name(values):
        return sum(values)

    @broker.task
    async def positional(items):
        return max(items)

    async def go():
        mapped = await MapReduce.map(broker, lambda x: x * 2, [1, 2, 3], output="values")
        taskiq_result = await mapped.wait_result()
        outputs = {"values": [5, 6]}
        return [
            await value_of(await MapReduce.reduce(broker, by_name, mapped, "values")),
            await value_of(await MapReduce.reduce(broker, positional, mapped, "mapped")),
            await value_of(await MapReduce.reduce(broker, by_name, taskiq_result, "values")),
            await value_of(await MapReduce.reduce(broker, by_name, outputs, "values")),
            await value_of(await MapReduce.reduce(broker, by_name, [1, 1], "values")),
            await value_of(await MapReduce.reduce(broker, by_name, iter([2, 2]), "values")),
        ]

    assert run(go()) == [12, 6, 12, 11, 2, 4]


def test_reduce_output_name_and_pipeline_task_reduce():
    @pipeline_task(output="ignored", inputs=["ignored_too"])
    def total(xs):
        return sum(xs)

    reduced = run(MapReduce.reduce(None, total, [1, 2], "xs", output="sum"))
    assert reduced.output_name == "sum" and reduced.return_value == 3


def test_failing_item_raises_naming_it():
    def fragile(x):
        if x == 3:
            raise ValueError(f"bad item {x}")
        return x

    with pytest.raises(TaskFailedError) as info:
        run(MapReduce.map(None, fragile, range(6)))
    assert info.value.task_name == "fragile[3]"
    assert "bad item 3" in str(info.value) and "Traceback" in str(info.value)

    with pytest.raises(DataflowExecutionError) as info:
        run(MapReduce.map(None, fragile, range(6), fail_fast=False))
    assert [f.task_name for f in info.value.failures] == ["fragile[3]"]
    assert len(info.value.results) == 5


def test_retries_are_engine_options():
    attempts = {}

    async def flaky(x):
        attempts[x] = attempts.get(x, 0) + 1
        if attempts[x] == 1:
            raise ConnectionError("first attempt fails")
        return x

    mapped = run(MapReduce.map(None, flaky, range(5), max_parallel=2, retries=1))
    assert mapped.return_value == list(range(5)) and set(attempts.values()) == {2}


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_parallel"):
        run(MapReduce.map(None, abs, [1], max_parallel=0))
    with pytest.raises(TypeError, match="'chunk_config'"):
        run(MapReduce.map(None, abs, [1], chunk_config=3))
    with pytest.raises(TypeError, match="function or a taskiq task"):
        run(MapReduce.map(None, "abs", [1]))
    with pytest.raises(ValueError, match="must differ"):
        run(MapReduce.reduce(None, sum, [1], "x", output="x"))


def test_map_output_feeds_a_dataflow_pipeline():
    @pipeline_task(output="report")
    def report(mapped):
        return {"n": len(mapped), "total": sum(mapped)}

    async def go():
        mapped = await MapReduce.map(None, lambda x: x + 1, range(4))
        pipeline = DataflowPipeline.from_tasks(None, [report])
        return await pipeline.kiq_dataflow(mapped=await value_of(mapped))

    assert run(go()) == {"report": {"n": 4, "total": 10}}


def test_builtins_and_callable_objects():
    class Shift:
        async def __call__(self, x):
            await asyncio.sleep(0)
            return x + 100

    async def go():
        return [
            await value_of(await MapReduce.map(None, str, [1, 2])),
            await value_of(await MapReduce.map(None, Shift(), [1, 2])),
            await value_of(await MapReduce.reduce(None, max, [3, 9, 2], "values")),
        ]

    assert run(go()) == [["1", "2"], [101, 102], 9]


def test_map_reduce_accepts_taskiq_flow_source_argument_order():
    final = run(MapReduce.map_reduce(None, lambda x: x * 3, sum, [1, 2, 3]))
    assert final.return_value == 18 and final.mapped == [3, 6, 9]


def test_functions_taking_kwargs_get_the_item_by_position():
    def plain(item, **options):
        return (item, options)

    async def coro(*args, **kwargs):
        return args

    async def go():
        return [
            await value_of(await MapReduce.map(None, plain, [1])),
            await value_of(await MapReduce.map(None, coro, [1, 2])),
            await value_of(await MapReduce.reduce(None, coro, [1, 2], "values")),
        ]

    assert run(go()) == [[(1, {})], [(1,), (2,)], ([1, 2],)]
