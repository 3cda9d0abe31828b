"""Issue-5 features on the NATS cluster: dependency injection on the workers, the result cache,
compensation and provenance with restart."""

from pathlib import Path

import cluster_tasks
import feature_tasks as ft
import pytest
from cluster_support import WorkerProcesses
from conftest import registry_of as registry
from conftest import run
from taskiq_dataflow import (
    DataflowExecutionError,
    DataflowRegistry,
    ExecutionEngine,
    ResultCache,
    RunStore,
    StepCompensated,
    StepCompleted,
    TaskFailedError,
)
from taskiq_dataflow.cluster import DataflowNatsBroker


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    return tmp_path_factory.mktemp("features") / "ran.log"


@pytest.fixture(scope="module")
def workers(server, log_path):
    wp = WorkerProcesses(
        server.url, workers=2, target="feature_tasks:broker",
        env={"DATAFLOW_TEST_LOG": str(log_path)},
    )  # fmt: skip
    wp.start()
    try:
        yield wp
    finally:
        wp.stop()


@pytest.fixture
def ran(log_path):
    log_path.write_text("")
    return lambda: Path(log_path).read_text().split()


def broker_for(server) -> DataflowNatsBroker:
    return DataflowNatsBroker(server.url, heartbeat_timeout=1.0, codec=cluster_tasks.broker.codec)


def test_depends_is_resolved_on_the_worker(server, workers, ran):
    dag = registry(ft.scale, external=["value"]).build_dag()
    assert run(ExecutionEngine(broker_for(server), dag).execute({"value": 7})) == {"scaled": 21}
    assert ran() == ["scale"]


def test_cache_hit_skips_the_worker(server, workers, ran, tmp_path):
    dag = registry(ft.costly, external=["value"]).build_dag()
    cache = ResultCache(tmp_path / "cache.db")
    first = run(ExecutionEngine(broker_for(server), dag, cache=cache).execute({"value": 2}))
    events = []
    engine = ExecutionEngine(broker_for(server), dag, cache=cache)
    engine.events.subscribe(events.append, StepCompleted)
    second = run(engine.execute({"value": 2}))
    assert first == second == {"costly": (2, 4)}
    assert ran() == ["costly"] and [e.cached for e in events] == [True]


def shop(server, refund, **options) -> ExecutionEngine:
    """scale -> charge (compensated by `refund`) -> ship, which sinks when fail=True."""
    reg = DataflowRegistry()
    for key in ("value", "fail"):
        reg.register_external_input(key)
    reg.register_task(ft.scale)
    reg.register_task(ft.charge, compensate=refund)
    reg.register_task(ft.ship)
    return ExecutionEngine(broker_for(server), reg.build_dag(), **options)


def test_a_plain_compensation_runs_in_the_engine(server, workers, ran):
    undone = []
    with pytest.raises(TaskFailedError, match="the ship sank"):
        run(shop(server, undone.append).execute({"value": 1, "fail": True}))
    assert undone == [{"charged": 3}]


@pytest.mark.parametrize("fail_fast", [True, False])
def test_registered_compensations_run_on_the_workers(server, workers, ran, fail_fast):
    compensated = []
    engine = shop(server, ft.refund, fail_fast=fail_fast)
    engine.events.subscribe(compensated.append, StepCompensated)
    with pytest.raises((TaskFailedError, DataflowExecutionError), match="the ship sank"):
        run(engine.execute({"value": 2, "fail": True}))
    # the log is written only where DATAFLOW_TEST_LOG is set: on the workers
    assert "refund:6" in ran()
    assert [(e.task_name, e.error) for e in compensated] == [("charge", None)]


def test_a_failed_compensation_on_a_worker_is_reported(server, workers, ran):
    with pytest.raises(TaskFailedError, match="the ship sank") as caught:
        run(shop(server, ft.refund_fails).execute({"value": 1, "fail": True}))
    (error,) = caught.value.compensation_errors
    assert error.task_name == "charge" and "the bank is closed" in error.message
    assert "Traceback" in error.traceback and "refund_fails" in ran()


def test_provenance_and_restart_on_the_cluster(server, workers, ran, tmp_path):
    reg = registry(ft.scale, ft.charge, ft.ship, external=["value", "fail"])
    store = RunStore(tmp_path / "runs.db")
    engine = ExecutionEngine(broker_for(server), reg.build_dag(), store=store)
    with pytest.raises(TaskFailedError):
        run(engine.execute({"value": 2, "fail": True}, pipeline_id="c1"))
    rows = {r["task_name"]: r for r in store.get_task_executions("c1")}
    assert rows["scale"]["status"] == "completed" and rows["scale"]["worker"]
    assert rows["ship"]["status"] == "failed" and "the ship sank" in rows["ship"]["error"]
    assert ran() == ["scale", "charge", "ship"]
    with pytest.raises(TaskFailedError):  # the stored input still says fail=True
        run(engine.restart("c1"))
    assert ran()[3:] == ["ship"]  # only the failed task ran again


def test_streams_with_the_cluster_broker(server, workers, ran):
    import asyncio
    from collections.abc import AsyncIterator

    from taskiq_dataflow import pipeline_task

    @pipeline_task(output="numbers", inputs=[])
    async def numbers():
        for i in range(5):
            await asyncio.sleep(0.01)
            yield i

    @pipeline_task(output="squares")
    async def squares(numbers: AsyncIterator[int]) -> list:
        return [n * n async for n in numbers]

    dag = registry(numbers, squares, ft.total).build_dag()
    out = run(ExecutionEngine(broker_for(server), dag).execute())
    assert out == {"numbers": [0, 1, 2, 3, 4], "squares": [0, 1, 4, 9, 16], "total": 10}
    assert ran() == ["total"]  # the list consumer ran on a worker; the stream in the engine
