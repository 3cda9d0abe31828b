import asyncio

import pytest
from conftest import run
from taskiq_dataflow import (
    CycleError,
    DAGValidationError,
    DataflowExecutionError,
    DataflowPipeline,
    DataflowRegistry,
    MissingInputError,
    RunFinished,
    StepCompleted,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow.pipeline import DataflowPipeline as DocPath  # the documented module path


@pytest.fixture
def tasks(broker):
    @broker.task
    @pipeline_task(output="raw")
    async def load(source: str) -> list[int]:
        return [3, -1, 4, 0, 5]

    @broker.task
    @pipeline_task(output="clean")
    async def clean(raw: list[int], threshold: int) -> list[int]:
        return [x for x in raw if x > threshold]

    @broker.task
    @pipeline_task(output="report")
    def report(clean: list[int], source: str) -> dict:
        return {"source": source, "total": sum(clean)}

    return load, clean, report


def test_from_tasks_and_kiq_dataflow_return_every_output(broker, tasks):
    assert DocPath is DataflowPipeline
    pipeline = DataflowPipeline.from_tasks(broker, list(tasks))
    assert pipeline.required_inputs() == ["source", "threshold"]
    result = run(pipeline.kiq_dataflow(source="s3://x", threshold=0))
    assert result == {
        "raw": [3, -1, 4, 0, 5],
        "clean": [3, 4, 5],
        "report": {"source": "s3://x", "total": 12},
    }


def test_external_inputs_are_the_given_keys_any_task_consumes(broker, tasks):
    load, clean, report = tasks
    # registration order does not matter: consumers may come before their producers, and
    # `source` reaches the non-root task `report` as well as the root `load`.
    pipeline = DataflowPipeline.from_tasks(broker, [report, clean, load])
    result = run(pipeline.kiq_dataflow(threshold=3, source="a", unused="ignored"))
    assert result["report"] == {"source": "a", "total": 9}
    assert "unused" not in result
    dag = pipeline.build_dag(["threshold", "source", "unused"])
    assert sorted(dag.external_inputs) == ["source", "threshold"]


def test_missing_input_names_key_and_tasks(broker, tasks):
    pipeline = DataflowPipeline.from_tasks(broker, list(tasks))
    with pytest.raises(MissingInputError) as info:
        run(pipeline.kiq_dataflow(source="x"))
    message = str(info.value)
    assert "'threshold'" in message and "'clean'" in message
    assert "kiq_dataflow(threshold=...)" in message
    with pytest.raises(MissingInputError) as info:
        run(pipeline.kiq_dataflow())
    assert "'source'" in str(info.value) and "'load', 'report'" in str(info.value)


def test_dag_is_cached_per_input_keys_and_rebuilt_after_adding(broker, tasks):
    load, clean, report = tasks
    pipeline = DataflowPipeline.from_tasks(broker, [load, clean])
    first = pipeline.build_dag(["source", "threshold"])
    assert pipeline.build_dag(["threshold", "source", "extra"]) is first
    assert pipeline.dag is first
    assert pipeline.add_dataflow_task(report) is pipeline
    rebuilt = pipeline.build_dag(["source", "threshold"])
    assert rebuilt is not first and len(rebuilt) == 3
    assert run(pipeline.kiq_dataflow(source="s", threshold=4))["report"]["total"] == 5


def test_pipeline_without_external_inputs():
    @pipeline_task(output="b")
    def double(a):
        return a * 2

    @pipeline_task(output="a")
    def seed():
        return 21

    # the first task consumes a key another task produces: nothing is external
    pipeline = DataflowPipeline.from_tasks(None, [double, seed])
    assert pipeline.required_inputs() == []
    assert run(pipeline.kiq_dataflow()) == {"b": 42, "a": 21}


def test_multi_output_tasks_and_plain_functions():
    @pipeline_task(outputs=["lo", "hi"])
    async def split(values):
        return min(values), max(values)

    @pipeline_task(output="span")
    def span(lo, hi):
        return hi - lo

    pipeline = DataflowPipeline.from_tasks(None, [split, span])
    assert run(pipeline.kiq_dataflow(values=[4, 9, 1])) == {"lo": 1, "hi": 9, "span": 8}


def test_wiring_errors_are_raised_by_from_tasks():
    @pipeline_task(output="x")
    def first(a):
        return a

    @pipeline_task(output="x", name="second")
    def second(a):
        return a

    with pytest.raises(DAGValidationError) as info:
        DataflowPipeline.from_tasks(None, [first, second])
    assert "'first'" in str(info.value) and "'second'" in str(info.value)

    @pipeline_task(output="p")
    def ping(q):
        return q

    @pipeline_task(output="q")
    def pong(p):
        return p

    with pytest.raises(CycleError) as info:
        DataflowPipeline.from_tasks(None, [ping, pong])
    assert "ping -> pong -> ping" in str(info.value) or "pong -> ping -> pong" in str(info.value)


def test_bad_tasks_and_options_are_named():
    def undecorated(a):
        return a

    with pytest.raises(TypeError, match="'undecorated' has no @pipeline_task"):
        DataflowPipeline.from_tasks(None, [undecorated])

    @pipeline_task(output="y")
    def one(a):
        return a

    with pytest.raises(TypeError, match="list of tasks"):
        DataflowPipeline.from_tasks(None, one)
    with pytest.raises(TypeError, match="'max_paralel'.*max_parallel"):
        DataflowPipeline.from_tasks(None, [one], max_paralel=3)


def test_engine_options_apply_max_parallel():
    in_flight = peak = 0

    @pipeline_task(output="out", inputs=["x"])
    async def work(x):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return x

    registry = DataflowRegistry()
    registry.register_external_input("x")
    for i in range(12):
        registry.register_task(work, output=f"out{i}", inputs=["x"], name=f"work{i}")
    pipeline = DataflowPipeline.from_registry(registry, max_parallel=3)
    result = run(pipeline.kiq_dataflow(x=1))
    assert len(result) == 12 and peak == 3
    peak = 0
    run(pipeline.create_engine(["x"], max_parallel=5).execute({"x": 1}))
    assert peak == 5


def test_failure_names_task_and_continue_on_error(broker):
    @broker.task
    @pipeline_task(output="a")
    async def good(seed):
        return seed

    @broker.task
    @pipeline_task(output="b")
    async def bad(seed):
        raise ValueError(f"cannot use {seed}")

    @broker.task
    @pipeline_task(output="c")
    async def after(b):
        return b

    pipeline = DataflowPipeline.from_tasks(broker, [good, bad, after])
    with pytest.raises(TaskFailedError) as info:
        run(pipeline.kiq_dataflow(seed=7))
    assert info.value.task_name == "bad" and "cannot use 7" in str(info.value)

    lenient = DataflowPipeline.from_tasks(broker, [good, bad, after], continue_on_error=True)
    assert lenient.create_engine({"seed"}).fail_fast is False
    with pytest.raises(DataflowExecutionError) as info:
        run(lenient.kiq_dataflow(seed=7))
    assert info.value.results == {"a": 7}
    assert info.value.skipped == {"after": "bad"}


def test_broker_transport_option(broker):
    @broker.task
    @pipeline_task(output="y")
    async def inc(x):
        return x + 1

    pipeline = DataflowPipeline.from_tasks(broker, [inc], transport="broker")
    assert run(pipeline.kiq_dataflow(x=1)) == {"y": 2}


def test_subscribe_receives_events_of_every_run():
    @pipeline_task(output="y")
    def inc(x):
        return x + 1

    seen = []
    pipeline = DataflowPipeline.from_tasks(None, [inc])
    unsubscribe = pipeline.subscribe(lambda e: seen.append(type(e).__name__), StepCompleted)
    pipeline.subscribe(lambda e: seen.append(e.status), RunFinished)
    run(pipeline.kiq_dataflow(x=1))
    assert seen == ["StepCompleted", "succeeded"]
    unsubscribe()
    run(pipeline.kiq_dataflow(x=1))
    assert seen == ["StepCompleted", "succeeded", "succeeded"]


def test_visualize(broker, tasks):
    pipeline = DataflowPipeline.from_tasks(broker, list(tasks))
    data = pipeline.visualize()
    assert [n["task_name"] for n in data["nodes"]] == ["load", "clean", "report"]
    assert sorted(map(tuple, data["edges"])) == [(0, 1), (1, 2)]
    assert sorted(data["external_inputs"]) == ["source", "threshold"]
    assert "digraph" in pipeline.visualize_dot()
    assert pipeline.visualize_mermaid().startswith("graph TD")
    assert len(pipeline) == 3 and pipeline.tasks == list(tasks)
