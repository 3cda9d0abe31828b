"""Engine metrics (taskiq_dataflow.metrics): counts by task name, durations, the label cap,
independent registries, the endpoint. The cluster side is tested end to end in
tests/e2e/test_metrics.py."""

import asyncio
import time
import urllib.request

import pytest
from conftest import dag_of as build
from conftest import run
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from taskiq_dataflow import DataflowExecutionError, ExecutionEngine, pipeline_task
from taskiq_dataflow.metrics import OTHER, EngineMetrics, parse_address
from taskiq_dataflow.transports.local import LocalTransport


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0.0


def named(task_name, output, func, **options):
    func.__name__ = task_name
    return pipeline_task(output=output, inputs=[], **options)(func)


def test_counts_by_task_name_with_failures_and_retries():
    calls = {"flaky": 0}

    async def flaky():
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("first attempt fails")
        return 1

    async def broken():
        raise ValueError("always")

    @pipeline_task(output="after")
    async def after_broken(broken_out):
        return broken_out

    squares = [named("square", f"sq{i}", lambda i=i: i * i) for i in range(5)]
    tasks = [
        named("flaky", "flaky_out", flaky, retries=1),
        named("broken", "broken_out", broken, retries=2),
        after_broken,
        *squares,
    ]
    metrics = EngineMetrics()
    engine = ExecutionEngine(None, build(*tasks), fail_fast=False, metrics=metrics)
    with pytest.raises(DataflowExecutionError):
        run(engine.execute())
    assert value(metrics, "dataflow_tasks_started_total", task="square") == 5
    assert value(metrics, "dataflow_tasks_completed_total", task="square") == 5
    assert value(metrics, "dataflow_tasks_started_total", task="flaky") == 2
    assert value(metrics, "dataflow_tasks_retried_total", task="flaky") == 1
    assert value(metrics, "dataflow_tasks_completed_total", task="flaky") == 1
    assert value(metrics, "dataflow_tasks_failed_total", task="flaky") == 0
    assert value(metrics, "dataflow_tasks_started_total", task="broken") == 3
    assert value(metrics, "dataflow_tasks_retried_total", task="broken") == 2
    assert value(metrics, "dataflow_tasks_failed_total", task="broken") == 1
    assert value(metrics, "dataflow_tasks_started_total", task="after_broken") == 0  # skipped
    assert value(metrics, "dataflow_runs_total", status="failed") == 1
    assert value(metrics, "dataflow_runs_total", status="succeeded") == 0
    assert value(metrics, "dataflow_tasks_in_flight") == 0
    assert value(metrics, "dataflow_runs_in_progress") == 0

    calls["flaky"] = 0
    ok = ExecutionEngine(None, build(*squares), metrics=metrics)
    run(ok.execute())
    assert value(metrics, "dataflow_tasks_completed_total", task="square") == 10
    assert value(metrics, "dataflow_runs_total", status="succeeded") == 1


def test_durations_are_observed_per_task_in_buckets():
    @pipeline_task(output="slept")
    async def sleeper():
        await asyncio.sleep(0.06)
        return 1

    @pipeline_task(output="blocked")
    def blocking():
        time.sleep(0.03)
        return 2

    @pipeline_task(output="quick")
    async def quick():
        return 3

    metrics = EngineMetrics(buckets=(0.025, 0.05, 0.1, 1.0))
    run(ExecutionEngine(None, build(sleeper, blocking, quick), metrics=metrics).execute())
    name = "dataflow_task_duration_seconds_bucket"
    assert value(metrics, name, task="sleeper", le="0.05") == 0
    assert value(metrics, name, task="sleeper", le="0.1") == 1
    assert value(metrics, name, task="blocking", le="0.025") == 0
    assert value(metrics, name, task="blocking", le="0.1") == 1
    assert value(metrics, name, task="quick", le="0.025") == 1
    assert value(metrics, "dataflow_task_duration_seconds_count", task="quick") == 1
    assert value(metrics, "dataflow_task_duration_seconds_sum", task="sleeper") >= 0.06


def test_distinct_task_names_are_capped():
    tasks = [named(f"t{i}", f"o{i}", lambda: 1) for i in range(10)]
    metrics = EngineMetrics(max_label_values=3)
    run(ExecutionEngine(None, build(*tasks), metrics=metrics).execute())
    families = {f.name: f for f in text_string_to_metric_families(_scrape_text(metrics))}
    started = {
        s.labels["task"]: s.value
        for s in families["dataflow_tasks_started"].samples
        if s.name.endswith("_total")
    }
    assert len(started) == 4, started
    assert started[OTHER] == 7
    assert sum(started.values()) == 10


def test_two_engines_have_independent_registries():
    a, b = EngineMetrics(), EngineMetrics()
    task = named("alone", "out", lambda: 1)
    run(ExecutionEngine(None, build(task), metrics=a).execute())
    assert value(a, "dataflow_tasks_completed_total", task="alone") == 1
    assert value(b, "dataflow_tasks_completed_total", task="alone") == 0
    assert REGISTRY.get_sample_value("dataflow_tasks_completed_total", {"task": "alone"}) is None
    ExecutionEngine(None, build(task), metrics=b)  # a second engine on the same names: no clash


def test_stream_items_are_counted_by_key():
    @pipeline_task(output="numbers")
    async def produce():
        for i in range(4):
            yield i

    @pipeline_task(output="total")
    def total(numbers: list) -> int:
        return sum(numbers)

    metrics = EngineMetrics()
    out = run(ExecutionEngine(None, build(produce, total), metrics=metrics).execute())
    assert out["total"] == 6
    assert value(metrics, "dataflow_stream_items_total", key="numbers") == 4


def test_in_flight_is_read_while_the_run_goes_on():
    metrics = EngineMetrics()

    async def main():
        release = asyncio.Event()

        def waiter():
            async def wait():
                await release.wait()
                return 1

            return wait

        tasks = [named("waiter", f"w{i}", waiter()) for i in range(3)]
        handle = ExecutionEngine(None, build(*tasks), metrics=metrics).start()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if value(metrics, "dataflow_tasks_in_flight") == 3:
                break
        seen = (
            value(metrics, "dataflow_tasks_in_flight"),
            value(metrics, "dataflow_runs_in_progress"),
        )
        release.set()
        await handle
        return seen

    assert run(main()) == (3, 1)
    assert value(metrics, "dataflow_tasks_in_flight") == 0


def test_metrics_are_off_by_default():
    engine = ExecutionEngine(None, build(named("t", "o", lambda: 1)))
    assert engine.metrics is None
    assert type(engine._make_transport("r")) is LocalTransport
    driver = engine._prepare({}, None, None)
    assert driver.meter is None


def test_a_wrong_metrics_object_is_refused():
    with pytest.raises(TypeError, match="EngineMetrics"):
        ExecutionEngine(None, build(named("t", "o", lambda: 1)), metrics="on")


def test_served_over_http():
    metrics = EngineMetrics()
    run(ExecutionEngine(None, build(named("served", "o", lambda: 1)), metrics=metrics).execute())
    with metrics.serve(0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url, timeout=5) as response:
            text = response.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples["dataflow_tasks_completed_total", (("task", "served"),)] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("9464", ("127.0.0.1", 9464)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:80", ("::1", 80))],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(("text", "why"), [("x", "HOST:]PORT"), ("h:70000", "between 0")])
def test_parse_address_refuses(text, why):
    with pytest.raises(ValueError, match=why) as info:
        parse_address(text)
    assert repr(text) in str(info.value)


def _scrape_text(metrics):
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_durations_off_counts_without_timing():
    metrics = EngineMetrics(durations=False)
    engine = ExecutionEngine(None, build(named("untimed", "o", lambda: 1)), metrics=metrics)
    assert type(engine._make_transport("r")) is LocalTransport
    run(engine.execute())
    assert value(metrics, "dataflow_tasks_completed_total", task="untimed") == 1
    assert "dataflow_task_duration_seconds" not in _scrape_text(metrics)
    assert "dataflow_task_duration_seconds" in _scrape_text(EngineMetrics())  # on by default
