"""Per-task log capture on cluster workers (real nats-server, real worker processes): a task's
log.info on a worker comes back with its result and is in the store with the worker's
execution; bounded; a failed task's records too; nothing asked of workers when not captured."""

from __future__ import annotations

import log_tasks
import pytest
from cluster_support import WorkerProcesses, worker_pid
from conftest import run
from taskiq_dataflow import ExecutionEngine, RunStore, StepLogged, TaskFailedError
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.task_logs import DROPPED_LOGGER, MAX_RECORDS


@pytest.fixture(scope="module")
def workers(server):
    with WorkerProcesses(server.url, workers=1, target="log_tasks:broker") as wp:
        yield wp


def engine_of(server, registry, store=None):
    broker = DataflowNatsBroker(server.url, heartbeat_timeout=1.0, progress_timeout=20.0)
    return ExecutionEngine(broker, registry.build_dag(), store=store)


def test_a_task_log_info_on_a_worker_is_in_the_store_with_its_execution(server, workers, tmp_path):
    store = RunStore(tmp_path / "runs.db")
    engine = engine_of(server, log_tasks.greeting, store)
    outputs = run(engine.execute({"name": "ada"}, pipeline_id="c1"))
    assert outputs == {"greeting": "hello ada", "size": 9}
    rows = store.task_logs("c1")
    assert [(r["task_name"], r["level"], r["logger"], r["message"]) for r in rows] == [
        ("greet", "INFO", "user.cluster", "greeting ada"),
        ("greet", "WARNING", "user.cluster", "greeted ada"),
        ("measure", "INFO", "user.cluster.thread", "measuring 'hello ada' in a thread"),
    ]
    executions = {e["task_name"]: e for e in store.get_task_executions("c1")}
    for row in rows:
        execution = executions[row["task_name"]]
        assert (row["node"], row["attempt"]) == (execution["node"], execution["attempt"])
        assert worker_pid(execution["worker"]) in workers.children()  # ran on the worker
    store.close()


def test_records_from_a_worker_are_bounded_and_say_how_many_were_dropped(server, workers):
    engine = engine_of(server, log_tasks.flooding)
    seen: list[StepLogged] = []
    engine.events.subscribe(seen.append, StepLogged)
    assert run(engine.execute({})) == {"lines": MAX_RECORDS + 10}
    [event] = seen
    assert len(event.records) == MAX_RECORDS + 1
    assert event.records[0].message == "line 0"
    assert event.records[-1].logger == DROPPED_LOGGER
    assert event.records[-1].message.startswith("... 10 more records dropped")


def test_a_failed_task_on_a_worker_logs_before_it_fails(server, workers, tmp_path):
    store = RunStore(tmp_path / "runs.db")
    engine = engine_of(server, log_tasks.breaking, store)
    with pytest.raises(TaskFailedError, match="broken on purpose"):
        run(engine.execute({}, pipeline_id="c2"))
    [row] = store.task_logs("c2", "breaks")
    assert row["level"] == "ERROR" and row["message"].startswith("lookup failed\nTraceback")
    assert "KeyError: 'gone'" in row["message"]
    store.close()


def test_without_a_store_or_listener_no_records_travel(server, workers):
    engine = engine_of(server, log_tasks.greeting)
    transport = engine._make_transport("r-off")
    engine._transport_spec = transport
    assert run(engine.execute({"name": "bo"})) == {"greeting": "hello bo", "size": 8}
    assert transport.task_logs is None  # the tasks frames carried no logs field
