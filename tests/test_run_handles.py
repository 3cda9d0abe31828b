"""Run handles: start a run without awaiting it, watch its progress, cancel it alone, await
its outputs; in-process and on the NATS cluster."""

import asyncio

import cluster_tasks
import pytest
from cluster_support import index_dag
from conftest import dag_of, run
from taskiq_dataflow import (
    ExecutionCancelled,
    ExecutionEngine,
    MissingInputError,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow.cluster import DataflowNatsBroker


def gated():
    """A DAG `first -> second` whose first task waits for the returned event."""
    gate = asyncio.Event()

    @pipeline_task(output="x")
    async def first():
        await gate.wait()
        return 1

    @pipeline_task(output="y")
    async def second(x):
        return x + 1

    return dag_of(first, second), gate


def test_a_started_run_reports_progress_and_is_awaited_for_its_outputs():
    async def go():
        dag, gate = gated()
        handle = ExecutionEngine(None, dag).start(pipeline_id="run-1")
        assert handle.run_id == "run-1"
        await asyncio.sleep(0.05)
        during = handle.progress()
        gate.set()
        outputs = await handle
        return during, outputs, handle.progress(), handle.done()

    during, outputs, after, done = run(go())
    assert during["status"] == "running" and during["running"] == 1 and during["total"] == 2
    assert outputs == {"x": 1, "y": 2}
    assert after["status"] == "succeeded" and after["done"] == 2 and done


def test_cancelling_one_handle_leaves_the_engines_other_runs_alone():
    async def go():
        dag, gate = gated()
        engine = ExecutionEngine(None, dag)
        doomed, kept = engine.start(), engine.start()
        await asyncio.sleep(0.05)
        doomed.cancel()
        with pytest.raises(ExecutionCancelled):
            await doomed
        gate.set()
        return await kept, doomed.progress()["status"]

    assert run(go()) == ({"x": 1, "y": 2}, "cancelled")


def test_engine_cancel_still_cancels_every_run():
    async def go():
        dag, _ = gated()
        engine = ExecutionEngine(None, dag)
        handles = [engine.start(), engine.start()]
        await asyncio.sleep(0.05)
        engine.cancel()
        return await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)

    assert [type(r) for r in run(go())] == [ExecutionCancelled, ExecutionCancelled]


def test_leaving_execute_async_early_cancels_only_that_run():
    @pipeline_task(output="a")
    async def a():
        return 1

    @pipeline_task(output="b")
    async def b(a):
        await asyncio.sleep(0.2)
        return a

    async def go():
        dag_other, gate = gated()
        other = ExecutionEngine(None, dag_other)
        engine = ExecutionEngine(None, dag_of(a, b))
        other_handle = other.start()
        async for _ in engine.execute_async():
            break  # leaves early: this run is cancelled
        # the same engine's concurrent run is not: start one and leave another early
        kept = engine.start()
        async for _ in engine.execute_async():
            break
        gate.set()
        return await kept, await other_handle

    assert run(go()) == ({"a": 1, "b": 1}, {"x": 1, "y": 2})


def test_bad_inputs_raise_at_start_and_failures_at_await():
    @pipeline_task(output="out")
    async def needs(missing):
        return missing

    @pipeline_task(output="boom")
    async def boom():
        raise ValueError("no")

    async def go():
        with pytest.raises(MissingInputError, match="task 'needs' requires input 'missing'"):
            ExecutionEngine(None, dag_of(needs, external=["missing"])).start()
        handle = ExecutionEngine(None, dag_of(boom)).start()
        with pytest.raises(TaskFailedError, match="no"):
            await handle
        return handle.progress()

    progress = run(go())
    assert progress["status"] == "failed" and progress["failed"] == 1


def test_on_the_cluster_a_handle_cancels_its_run_alone(server, workers):
    dag, slow = index_dag(4, delay=30.0)
    quick = {**slow, "delay": 0.5}  # still in flight when the other run is cancelled
    engine = ExecutionEngine(DataflowNatsBroker(server.url, codec=cluster_tasks.broker.codec), dag)

    async def go():
        doomed, kept = engine.start(slow), engine.start(quick)
        for _ in range(200):  # both runs' tasks reach the worker
            if doomed.progress()["running"] == kept.progress()["running"] == 4:
                break
            await asyncio.sleep(0.02)
        doomed.cancel()
        with pytest.raises(ExecutionCancelled):
            await asyncio.wait_for(doomed.result(), 20)
        return kept.progress()["status"], await asyncio.wait_for(kept.result(), 20)

    status, outputs = run(go())
    assert status == "running" and outputs == {f"k{i}": i for i in range(4)}
