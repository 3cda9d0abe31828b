"""The run store: restarts never mix executions, digests per run, interrupted runs
(issue 9 items 9, 11, 12)."""

import asyncio
import os
import sqlite3
import subprocess
import sys

import pytest
from conftest import registry_of, run
from taskiq_dataflow import ExecutionEngine, RunStore, TaskFailedError, pipeline_task
from taskiq_dataflow.store import HOST


class Opaque:
    """A value the store's codec cannot encode (no extension codec registered)."""

    def __init__(self, n):
        self.n = n


def deep(n):
    value = [n]
    for _ in range(2000):
        value = [value]
    return value


def depth_of(value):
    depth = 0
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value, depth = value[0], depth + 1
    return depth, value[0]


def chain(calls, fail_last, make):
    """make -> use -> last: `make` returns what `make` builds; `last` fails while fail_last."""

    @pipeline_task(output="made", inputs=["n"])
    async def produce(n):
        calls.append("produce")
        return make(n)

    @pipeline_task(output="used", inputs=["made"])
    async def use(made):
        calls.append("use")
        return made.n * 10 if isinstance(made, Opaque) else depth_of(made)[1] * 10

    @pipeline_task(output="last", inputs=["used"])
    async def last(used):
        calls.append("last")
        if fail_last:
            raise RuntimeError("last fails on purpose")
        return used + 1

    return registry_of(produce, use, last, external=["n"]).build_dag()


@pytest.mark.parametrize("make", [Opaque, deep], ids=["custom-class", "nested-too-deep"])
def test_restart_reruns_an_unstorable_task_and_everything_downstream(tmp_path, make):
    db, calls = tmp_path / "runs.db", []
    failing = ExecutionEngine(None, chain(calls, True, make), store=RunStore(db))
    with pytest.raises(TaskFailedError, match="last fails on purpose"):
        run(failing.execute({"n": 4}, pipeline_id="r"))
    assert calls == ["produce", "use", "last"]
    rows = {r["task_name"]: r for r in RunStore(db).get_task_executions("r")}
    assert rows["produce"]["status"] == "completed"
    assert "outputs not storable" in rows["produce"]["error"]

    calls.clear()
    fixed = ExecutionEngine(None, chain(calls, False, make), store=RunStore(db))
    out = run(fixed.restart("r"))
    # produce ran again, so use must too: its stored output came from the other execution
    assert calls == ["produce", "use", "last"]
    assert out["used"] == 40 and out["last"] == 41


def test_replay_of_an_unreplayed_unstorable_ancestor_reruns_its_dependents(tmp_path):
    db, calls = tmp_path / "runs.db", []
    engine = ExecutionEngine(None, chain(calls, False, Opaque), store=RunStore(db))
    run(engine.execute({"n": 2}, pipeline_id="first"))
    calls.clear()
    out = run(engine.replay("first", rerun=["last"]))
    assert calls == ["produce", "use", "last"]
    assert out["last"] == 21


def test_a_run_never_fails_because_an_output_cannot_be_stored(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    out = run(ExecutionEngine(None, chain([], False, deep), store=store).execute({"n": 3}))
    assert out["last"] == 31
    assert [r["status"] for r in store.list_runs()] == ["succeeded"]


def test_concurrent_runs_on_one_engine_record_the_digests_of_solo_runs(tmp_path):
    @pipeline_task(output="a", inputs=["n"])
    async def first(n):
        await asyncio.sleep(0.02 * n)
        return n * 2

    @pipeline_task(output="b", inputs=["a", "n"])
    async def second(a, n):
        await asyncio.sleep(0.01)
        return a + n

    store = RunStore(tmp_path / "runs.db")
    engine = ExecutionEngine(
        None, registry_of(first, second, external=["n"]).build_dag(), store=store
    )

    def digests(run_id):
        return {r["task_name"]: r["inputs_digest"] for r in store.get_task_executions(run_id)}

    async def both():
        await asyncio.gather(
            engine.execute({"n": 1}, pipeline_id="c1"), engine.execute({"n": 3}, pipeline_id="c3")
        )

    run(engine.execute({"n": 1}, pipeline_id="solo1"))
    run(engine.execute({"n": 3}, pipeline_id="solo3"))
    run(both())
    assert digests("c1") == digests("solo1")
    assert digests("c3") == digests("solo3")
    assert digests("c1")["second"] != digests("c3")["second"]


def test_a_restarted_run_digests_restored_inputs_as_the_first_run_did(tmp_path):
    db, calls = tmp_path / "runs.db", []
    failing = ExecutionEngine(None, chain(calls, True, lambda n: [n]), store=RunStore(db))
    with pytest.raises(TaskFailedError):
        run(failing.execute({"n": 4}, pipeline_id="r"))
    before = {r["task_name"]: r["inputs_digest"] for r in RunStore(db).get_task_executions("r")}
    store = RunStore(db)
    run(ExecutionEngine(None, chain(calls, False, lambda n: [n]), store=store).restart("r"))
    after = [r for r in store.get_task_executions("r") if r["task_name"] == "last"]
    assert {r["inputs_digest"] for r in after} == {before["last"]}


# -- interrupted runs -------------------------------------------------------------------------


def _set_owner(db, run_id, host, pid, heartbeat_at):
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE runs SET status = 'running', finished_at = NULL, owner_host = ?, "
            "owner_pid = ?, heartbeat_at = ? WHERE run_id = ?",
            (host, pid, heartbeat_at, run_id),
        )


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_running_row_whose_owner_is_gone_reports_interrupted(tmp_path):
    db, now = tmp_path / "runs.db", [1000.0]
    store = RunStore(db, clock=lambda: now[0], heartbeat=2.0)
    run(ExecutionEngine(None, chain([], False, lambda n: [n]), store=store).execute({"n": 1}, "x"))

    _set_owner(db, "x", HOST, os.getpid(), now[0])
    assert store.get_run("x")["status"] == "running"  # this process is alive
    _set_owner(db, "x", HOST, _dead_pid(), now[0])
    assert store.get_run("x")["status"] == "interrupted"
    assert [r["status"] for r in store.list_runs()] == ["interrupted"]

    _set_owner(db, "x", "elsewhere", 1, now[0])
    now[0] += 9.0  # four beats missed: maybe slow, not gone
    assert store.get_run("x")["status"] == "running"
    now[0] += 2.0
    assert store.list_runs()[0]["status"] == "interrupted"


def test_a_live_engine_refreshes_its_heartbeat(tmp_path):
    store = RunStore(tmp_path / "runs.db", heartbeat=0.05)
    seen = []

    @pipeline_task(output="a", inputs=[])
    async def slow():
        for _ in range(6):
            await asyncio.sleep(0.05)
            seen.append(store.get_run("live")["heartbeat_at"])
        return 1

    run(ExecutionEngine(None, registry_of(slow).build_dag(), store=store).execute(None, "live"))
    assert len(set(seen)) >= 3
    finished = store.get_run("live")
    assert finished["status"] == "succeeded" and finished["owner_pid"] == os.getpid()


def test_an_existing_database_gains_the_owner_columns_in_place(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, parent_run_id TEXT, dag_fingerprint "
            "TEXT NOT NULL, status TEXT NOT NULL, inputs BLOB, started_at REAL NOT NULL, "
            "finished_at REAL, error TEXT)"
        )
        conn.execute("INSERT INTO runs VALUES ('old', NULL, 'f', 'running', NULL, 1.0, NULL, NULL)")
    store = RunStore(db)
    assert store.get_run("old")["status"] == "running"  # no owner recorded: nothing to judge
    run(
        ExecutionEngine(None, chain([], False, lambda n: [n]), store=store).execute({"n": 1}, "new")
    )
    assert store.get_run("new")["owner_host"] == HOST
    assert [r["run_id"] for r in store.list_runs()] == ["old", "new"]


def test_heartbeat_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="heartbeat"):
        RunStore(tmp_path / "runs.db", heartbeat=0)
