"""Engine metrics of runs on the NATS cluster (a real nats-server and worker process): object
store bytes both ways, and queue depth per pool read while the run waits for worker credit."""

import asyncio
import os

import cluster_tasks
from conftest import run
from taskiq_dataflow import DataflowRegistry, ExecutionEngine
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.metrics import EngineMetrics

BIG = 3 * 1024 * 1024  # above nats-server's default max_payload: by reference


def engine_broker(server) -> DataflowNatsBroker:
    return DataflowNatsBroker(
        server.url, heartbeat_timeout=1.0, progress_timeout=20.0, codec=cluster_tasks.broker.codec
    )


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_object_store_bytes_and_task_counts_of_a_cluster_run(server, workers):
    blob = os.urandom(BIG)
    registry = DataflowRegistry()
    registry.register_external_input("blob")
    registry.register_task(cluster_tasks.measure, output="measured", inputs=["blob"])
    registry.register_task(cluster_tasks.echo, output="same", inputs=["blob"])
    metrics = EngineMetrics()
    engine = ExecutionEngine(engine_broker(server), registry.build_dag(), metrics=metrics)
    out = run(engine.execute({"blob": blob}))
    assert out["same"] == blob
    # the input went up once; echo's result came back by reference and was fetched here
    assert value(metrics, "dataflow_object_store_bytes_total", direction="put") >= BIG
    assert value(metrics, "dataflow_object_store_bytes_total", direction="get") >= BIG
    assert value(metrics, "dataflow_tasks_completed_total", task="measure") == 1
    assert value(metrics, "dataflow_tasks_completed_total", task="echo") == 1
    assert value(metrics, "dataflow_runs_total", status="succeeded") == 1
    assert value(metrics, "dataflow_redeliveries_total") == 0


def test_queue_depth_per_pool_while_tasks_wait_for_credit(server, workers):
    n = 1500
    registry = DataflowRegistry()
    registry.register_external_input("delay")
    inputs: dict[str, object] = {"delay": 0.02}
    for i in range(n):
        registry.register_external_input(f"i{i}")
        registry.register_task(cluster_tasks.index, output=f"k{i}", inputs=[f"i{i}", "delay"])
        inputs[f"i{i}"] = i
    metrics = EngineMetrics()
    engine = ExecutionEngine(engine_broker(server), registry.build_dag(), metrics=metrics)

    async def main() -> tuple[float, float]:
        handle = engine.start(inputs)
        deepest, in_flight = 0.0, 0.0
        while not handle.done():
            await asyncio.sleep(0.05)
            depth = value(metrics, "dataflow_queue_depth", pool="default")
            if depth > deepest:
                deepest, in_flight = depth, value(metrics, "dataflow_tasks_in_flight")
        out = await handle
        assert out == {f"k{i}": i for i in range(n)}
        return deepest, in_flight

    deepest, in_flight = run(main())
    # one worker holds at most its capacity (slots plus eight batches); the rest wait here
    assert 0 < deepest < n, deepest
    assert in_flight >= deepest  # the queued ones count as in flight (dispatched, not done)
    assert value(metrics, "dataflow_queue_depth", pool="default") == 0
    assert value(metrics, "dataflow_tasks_completed_total", task="index") == n


def test_a_worker_counts_its_tasks_by_name_and_samples_its_slots(server):
    from taskiq_dataflow.cluster.worker import Worker
    from taskiq_dataflow.metrics import WorkerMetrics

    served = DataflowNatsBroker(server.url, heartbeat_interval=0.1, heartbeat_timeout=1.0)

    async def quick(x: int) -> int:
        return x

    async def slow(x: int) -> int:
        await asyncio.sleep(0.05)
        return x

    def blocking(x: int) -> int:
        raise ValueError(f"no {x}")

    for name, func in (("wm:quick", quick), ("wm:slow", slow), ("wm:blocking", blocking)):
        served.register_task(func, task_name=name)
    registry = DataflowRegistry()
    registry.register_external_input("x")
    for i in range(3):
        registry.register_task("wm:quick", inputs=["x"], output=f"q{i}")
    registry.register_task("wm:slow", inputs=["x"], output="s")
    registry.register_task("wm:blocking", inputs=["x"], output="b")
    metrics = WorkerMetrics()
    worker = Worker(served, concurrency=4, metrics=metrics)
    engine = ExecutionEngine(
        DataflowNatsBroker(server.url, heartbeat_timeout=1.0), registry.build_dag(),
        fail_fast=False, transport="nats",
    )  # fmt: skip

    async def main() -> None:
        ready = asyncio.Event()
        serving = asyncio.ensure_future(worker.run(ready))
        await asyncio.wait_for(ready.wait(), 10)
        try:
            try:
                await engine.execute({"x": 7})
            except Exception as exc:
                assert "no 7" in str(exc)
            await asyncio.sleep(0.3)  # a heartbeat or two: the gauges are sampled there
        finally:
            worker.stop()
            await serving

    run(main())

    def get(name, **labels):
        return metrics.registry.get_sample_value(name, labels) or 0.0

    assert get("dataflow_worker_tasks_started_total", task="wm:quick") == 3
    assert get("dataflow_worker_tasks_completed_total", task="wm:quick") == 3
    assert get("dataflow_worker_tasks_completed_total", task="wm:slow") == 1
    assert get("dataflow_worker_tasks_failed_total", task="wm:blocking") == 1
    assert get("dataflow_worker_tasks_completed_total", task="wm:blocking") == 0
    assert get("dataflow_worker_task_duration_seconds_count", task="wm:slow") == 1
    assert get("dataflow_worker_task_duration_seconds_bucket", task="wm:slow", le="0.025") == 0
    assert get("dataflow_worker_slots") == 4
    assert get("dataflow_worker_busy_slots") == 0
