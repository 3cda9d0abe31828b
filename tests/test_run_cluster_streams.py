"""Streams between two workers on a real nats-server: a failing consumer fails the run at
once and its producer stops (issue 9 item 7); large stream items leave nothing in the object
store (item 8)."""

import asyncio
import time

import cluster_tasks
import nats
import pytest
import stream_tasks as st
from cluster_support import WorkerProcesses
from conftest import registry_of, run
from nats.js.errors import NotFoundError
from taskiq_dataflow import DataflowExecutionError, ExecutionEngine, TaskFailedError
from taskiq_dataflow.cluster import DataflowNatsBroker


@pytest.fixture(scope="module")
def workers(server):
    pools = [
        WorkerProcesses(server.url, workers=1, pool=pool, target="stream_tasks:broker")
        for pool in (st.MAKER, st.READER)
    ]
    for wp in pools:
        wp.launch()
    try:
        for wp in pools:
            wp.ready()
        yield pools
    finally:
        for wp in pools:
            wp.stop()


def engine_for(server, dag, **options) -> ExecutionEngine:
    broker = DataflowNatsBroker(server.url, heartbeat_timeout=1.0, codec=cluster_tasks.broker.codec)
    return ExecutionEngine(broker, dag, **options)


def wait_for_file(path, seconds=10):
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


def test_failing_consumer_on_a_worker_fails_the_run_at_once(server, workers, tmp_path):
    marker = tmp_path / "stopped"
    dag = registry_of(st.endless, st.fussy, external=["marker"]).build_dag()
    began = time.perf_counter()
    with pytest.raises(TaskFailedError, match="'fussy' failed: ValueError: item 3"):
        run(asyncio.wait_for(engine_for(server, dag).execute({"marker": str(marker)}), 30))
    assert time.perf_counter() - began < 10  # it took 31 s, the producer's give-up time
    assert wait_for_file(marker)  # the endless producer on its worker was cancelled


def test_without_fail_fast_the_producer_stops_and_dependents_are_skipped(server, workers, tmp_path):
    marker = tmp_path / "stopped"
    dag = registry_of(st.endless, st.fussy, st.report, external=["marker"]).build_dag()
    engine = engine_for(server, dag, fail_fast=False)
    began = time.perf_counter()
    with pytest.raises(DataflowExecutionError) as info:
        run(asyncio.wait_for(engine.execute({"marker": str(marker)}), 30))
    assert time.perf_counter() - began < 10
    assert [f.task_name for f in info.value.failures] == ["fussy"]
    assert info.value.skipped == {"report": "fussy"}
    assert info.value.results["ticks"] is None  # stopped for want of readers
    assert marker.exists()


async def objects_of(url, bucket, run_id):
    nc = await nats.connect(url)
    try:
        obs = await nc.jetstream().object_store(bucket)
        try:
            infos = await obs.list()
        except NotFoundError:  # an empty bucket
            return []
        return [i.name for i in infos if i.name.startswith(f"{run_id}.") and not i.deleted]
    finally:
        await nc.close()


@pytest.mark.parametrize("wanted", [6, 2], ids=["read-all", "stopped-early"])
def test_large_stream_items_between_workers_leave_nothing_in_the_store(server, workers, wanted):
    dag = registry_of(st.blobs, st.sizes, external=["count", "size", "wanted"]).build_dag()
    engine = engine_for(server, dag)
    size = engine.broker.large_value_threshold + 1000
    out = run(
        engine.execute({"count": 6, "size": size, "wanted": wanted}, pipeline_id=f"big{wanted}")
    )
    assert out["sizes"] == [[i, size] for i in range(wanted)]
    bucket = engine.broker.object_store_bucket
    assert run(objects_of(server.url, bucket, f"big{wanted}")) == []


def test_a_producer_on_a_worker_nobody_reads_is_cancelled_while_it_waits(server, workers, tmp_path):
    """The consumer is done after one item while its producer sleeps a minute before the
    next: the engine cancels the producer on its worker at once, it does not wait a minute."""
    marker = tmp_path / "stopped"
    dag = registry_of(st.sleepy, st.first_tick, external=["marker", "pause"]).build_dag()
    began = time.perf_counter()
    out = run(
        asyncio.wait_for(
            engine_for(server, dag).execute({"marker": str(marker), "pause": 60.0}), 30
        )
    )
    assert out == {"slow_ticks": None, "first_tick": 0}
    assert time.perf_counter() - began < 10
    assert wait_for_file(marker)
