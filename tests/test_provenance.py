import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import run
from provenance_pipeline import Summary, make_registry
from taskiq_dataflow import ExecutionEngine, RunStore, StoreError, TaskFailedError

HERE = Path(__file__).parent


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_store_records_runs_and_task_executions(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    engine = ExecutionEngine(None, make_registry().build_dag(), store=store)
    out = run(engine.execute({"n": 3}, pipeline_id="r1"))
    runs = store.list_runs()
    assert [(r["run_id"], r["status"]) for r in runs] == [("r1", "succeeded")]
    assert store.get_run("r1")["inputs"] == {"n": 3}
    rows = store.get_task_executions("r1")
    assert len(rows) == 8 and {r["status"] for r in rows} == {"completed"}
    by_name = {r["task_name"]: r for r in rows}
    assert by_name["load"]["outputs"] == {"raw": (0, 1, 2)}
    assert by_name["summarize"]["outputs"]["summary"] == out["summary"]
    assert all(r["inputs_digest"] and r["finished_at"] >= r["started_at"] for r in rows)
    assert by_name["part1"]["inputs_digest"] == by_name["part2"]["inputs_digest"]
    assert by_name["load"]["inputs_digest"] != by_name["part1"]["inputs_digest"]


def test_restart_a_failed_run_runs_only_what_is_left(tmp_path):
    db, log = tmp_path / "runs.db", tmp_path / "log"
    failing = ExecutionEngine(
        None, make_registry(str(log), fail={"part3"}).build_dag(), store=RunStore(db)
    )
    with pytest.raises(TaskFailedError, match="part3 failed"):
        run(failing.execute({"n": 4}, pipeline_id="run-a"))
    before = lines(log)
    assert "part3" in before and "summarize" not in before
    errors = [r for r in RunStore(db).get_task_executions("run-a") if r["status"] == "failed"]
    assert [r["task_name"] for r in errors] == ["part3"]
    assert "part3 failed on purpose" in errors[0]["error"]

    log.unlink()
    fixed = ExecutionEngine(None, make_registry(str(log)).build_dag(), store=RunStore(db))
    out = run(fixed.restart("run-a"))
    rerun = lines(log)
    assert "load" not in rerun and "part3" in rerun and "summarize" in rerun
    everything = {"load", *(f"part{i}" for i in range(6)), "summarize"}
    assert sorted(rerun) == sorted(everything - (set(before) - {"part3"}))
    assert isinstance(out["summary"], Summary) and out["raw"] == (0, 1, 2, 3)
    assert RunStore(db).get_run("run-a")["status"] == "succeeded"


def test_replay_recomputes_exactly_the_downstream_set(tmp_path):
    db, log = tmp_path / "runs.db", tmp_path / "log"
    engine = ExecutionEngine(None, make_registry(str(log)).build_dag(), store=RunStore(db))
    first = run(engine.execute({"n": 3}, pipeline_id="base"))
    log.unlink()
    again = run(engine.replay("base", rerun={"part2"}, pipeline_id="replayed"))
    assert sorted(lines(log)) == ["part2", "summarize"]
    assert again == first
    # restored values come back with their original types
    assert isinstance(again["raw"], tuple) and isinstance(again["part1"], set)
    assert isinstance(again["summary"], Summary)
    assert again["summary"].total == Decimal(sum(range(3)) * sum(range(6))) / 4
    assert RunStore(db).get_run("replayed")["parent_run_id"] == "base"
    log.unlink()
    run(engine.replay("base", rerun="load"))
    assert sorted(lines(log)) == sorted(["load", *(f"part{i}" for i in range(6)), "summarize"])


def test_store_errors_name_the_problem(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    engine = ExecutionEngine(None, make_registry().build_dag(), store=store)
    with pytest.raises(StoreError, match="no run 'nope'"):
        run(engine.restart("nope"))
    run(engine.execute({"n": 1}, pipeline_id="x"))
    with pytest.raises(StoreError, match=r"no task named \['ghost'\]"):
        run(engine.replay("x", rerun={"ghost"}))
    other = make_registry()
    other.register_task(lambda raw: 1, output="extra", inputs=["raw"])
    with pytest.raises(StoreError, match="different DAG"):
        run(ExecutionEngine(None, other.build_dag(), store=store).restart("x"))
    with pytest.raises(ValueError, match="needs a run store"):
        run(ExecutionEngine(None, make_registry().build_dag()).restart("x"))


def test_engine_killed_mid_run_restarts_from_the_store(tmp_path):
    db, log = tmp_path / "runs.db", tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": str(HERE), "SLOW": "0.3"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "provenance_pipeline.py"), str(db), "killed", str(log)],
        env=env,
    )
    deadline = time.monotonic() + 30
    while len(lines(log)) < 3 and time.monotonic() < deadline:  # load + two parts done
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    done_before = lines(log)
    assert "summarize" not in done_before and len(done_before) >= 3
    # its row still says running: the store tells the dead owner from a live one
    assert [(r["run_id"], r["status"]) for r in RunStore(db).list_runs()] == [
        ("killed", "interrupted")
    ]
    stored = {r["task_name"] for r in RunStore(db).get_task_executions("killed")
              if r["status"] == "completed"}  # fmt: skip
    assert stored and stored <= set(done_before)

    log.unlink()
    engine = ExecutionEngine(None, make_registry(str(log)).build_dag(), store=RunStore(db))
    out = run(engine.restart("killed"))
    rerun = lines(log)
    assert not stored & set(rerun)  # nothing recorded as completed ran again
    assert set(stored) | set(rerun) == {"load", *(f"part{i}" for i in range(6)), "summarize"}
    assert isinstance(out["summary"], Summary)
    assert RunStore(db).get_run("killed")["status"] == "succeeded"
