"""Per-task log capture in the engine's process (task_logs.py): async tasks stepped in place or
suspended, blocking ones in threads; bounded per execution; nothing done when nobody records
them; StepLogged before the step's outcome; the run store's task_logs table."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import taskiq_dataflow
from conftest import dag_of, run
from taskiq_dataflow import (
    Event,
    ExecutionEngine,
    LogEntry,
    RunStore,
    StepCompleted,
    StepFailed,
    StepLogged,
    StepRetried,
    StoreError,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow import task_logs as tl
from taskiq_dataflow.transports.local import LocalTransport

log = logging.getLogger("user.tasks")


@pytest.fixture(autouse=True)
def records_at_info():
    """Records at INFO exist (the root logger defaults to WARNING): capture sees what the
    logging configuration makes."""
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(saved)
    assert tl._handler not in root.handlers, "the capture handler outlived the run"


def engine_of(*tasks, **settings):
    engine = ExecutionEngine(None, dag_of(*tasks), **settings)
    events: list[Event] = []
    engine.events.subscribe(events.append, StepLogged, StepCompleted, StepFailed, StepRetried)
    return engine, events


def logged(events):
    return {e.task_name: e for e in events if isinstance(e, StepLogged)}


# -- capture ------------------------------------------------------------------------------------


@pipeline_task(output="quick")
async def quick() -> int:
    log.info("stepped in place %d", 1)
    return 1


@pipeline_task(output="slow", inputs=["quick"])
async def slow(quick: int) -> int:
    log.info("before the sleep")
    await asyncio.sleep(0.01)
    logging.getLogger("user.tasks.deep.er").warning("after it, from a child logger")
    return quick + 1


@pipeline_task(output="blocking", inputs=["quick"])
def blocking(quick: int) -> int:
    logging.getLogger("user").info("in thread")
    try:
        {}["missing"]
    except KeyError:
        log.exception("looked up %s", "missing")
    return quick


def test_async_and_blocking_tasks_records_come_with_their_execution():
    engine, events = engine_of(quick, slow, blocking)
    assert run(engine.execute({})) == {"quick": 1, "slow": 2, "blocking": 1}
    by_task = logged(events)
    assert [r.message for r in by_task["quick"].records] == ["stepped in place 1"]
    assert [(r.level, r.logger, r.message) for r in by_task["slow"].records] == [
        ("INFO", "user.tasks", "before the sleep"),
        ("WARNING", "user.tasks.deep.er", "after it, from a child logger"),
    ]
    in_thread, failed = by_task["blocking"].records
    assert (in_thread.logger, in_thread.message) == ("user", "in thread")
    assert failed.level == "ERROR"
    assert failed.message.startswith("looked up missing\nTraceback (most recent call last):")
    assert failed.message.rstrip().endswith("KeyError: 'missing'")
    for event in by_task.values():
        assert event.attempt == 1 and all(type(r) is LogEntry for r in event.records)
        assert all(r.time > 1.7e9 for r in event.records)
    # each StepLogged comes right before its own StepCompleted
    for i, event in enumerate(events):
        if isinstance(event, StepLogged):
            following = events[i + 1]
            assert isinstance(following, StepCompleted)
            assert (following.node, following.attempt) == (event.node, event.attempt)


@pipeline_task(output="one")
async def one() -> int:
    for i in range(3):
        log.info("one %d", i)
        await asyncio.sleep(0)
    return 1


@pipeline_task(output="two")
async def two() -> int:
    for i in range(3):
        log.info("two %d", i)
        await asyncio.sleep(0)
    return 2


def test_tasks_running_at_once_keep_their_own_records():
    engine, events = engine_of(one, two)
    run(engine.execute({}))
    by_task = logged(events)
    assert [r.message for r in by_task["one"].records] == ["one 0", "one 1", "one 2"]
    assert [r.message for r in by_task["two"].records] == ["two 0", "two 1", "two 2"]


calls = {"flaky": 0}


@pipeline_task(output="flaky", retries=1)
async def flaky() -> int:
    calls["flaky"] += 1
    log.warning("attempt %d", calls["flaky"])
    if calls["flaky"] == 1:
        raise RuntimeError("first time")
    return 7


def test_each_attempt_logs_for_itself_before_its_outcome():
    calls["flaky"] = 0
    engine, events = engine_of(flaky)
    assert run(engine.execute({})) == {"flaky": 7}
    kinds = [(type(e).__name__, getattr(e, "attempt", None)) for e in events]
    assert kinds == [("StepLogged", 1), ("StepRetried", 2), ("StepLogged", 2),
                     ("StepCompleted", 2)]  # fmt: skip
    first, second = (e for e in events if isinstance(e, StepLogged))
    assert [r.message for r in first.records] == ["attempt 1"]
    assert [r.message for r in second.records] == ["attempt 2"]


@pipeline_task(output="fails")
def fails() -> int:
    log.error("giving up")
    raise ValueError("no")


def test_a_failed_task_logs_before_its_failure():
    engine, events = engine_of(fails)
    with pytest.raises(TaskFailedError):
        run(engine.execute({}))
    assert [type(e).__name__ for e in events] == ["StepLogged", "StepFailed"]
    assert events[0].records[0].message == "giving up"


@pipeline_task(output="chatty")
async def chatty() -> int:
    for i in range(tl.MAX_RECORDS + 25):
        log.info("line %d", i)
    return 1


@pipeline_task(output="wordy")
async def wordy() -> int:
    log.info("x" * (tl.MAX_MESSAGE * 3))
    for _ in range(10):
        log.info("y" * (tl.MAX_BYTES // 4))
    return 1


def test_records_are_bounded_per_execution_with_a_marker_saying_how_many_were_dropped():
    engine, events = engine_of(chatty, wordy)
    run(engine.execute({}))
    by_task = logged(events)
    records = by_task["chatty"].records
    assert len(records) == tl.MAX_RECORDS + 1
    assert records[-2].message == f"line {tl.MAX_RECORDS - 1}"
    marker = records[-1]
    assert (marker.level, marker.logger) == ("WARNING", tl.DROPPED_LOGGER)
    assert marker.message.startswith("... 25 more records dropped")
    cut, *kept, dropped = by_task["wordy"].records
    assert len(cut.message) <= tl.MAX_MESSAGE and "characters cut" in cut.message
    assert cut.message.startswith("xxx") and cut.message.endswith("xxx")
    assert sum(len(r.message) for r in (cut, *kept)) <= tl.MAX_BYTES
    assert dropped.message.startswith(f"... {10 - len(kept)} more records dropped")


# -- off unless someone records them -------------------------------------------------------------


def test_nothing_is_captured_when_nobody_listens_for_records():
    seen: list[Event] = []
    engine = ExecutionEngine(None, dag_of(quick, slow))
    engine.events.subscribe(seen.append, StepCompleted)  # step events, but not StepLogged
    transport = LocalTransport()
    engine._transport_spec = transport
    run(engine.execute({}))
    assert transport.task_logs is None
    assert [type(e) for e in seen] == [StepCompleted, StepCompleted]


def test_capture_logs_none_captures_nothing_even_with_a_store(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    engine = ExecutionEngine(None, dag_of(quick), store=store, capture_logs=None)
    run(engine.execute({}, pipeline_id="r1"))
    assert store.task_logs("r1") == []


def test_the_capture_level_filters_records():
    engine, events = engine_of(slow, quick, capture_logs="WARNING")
    run(engine.execute({}))
    assert [r.message for e in logged(events).values() for r in e.records] == [
        "after it, from a child logger"
    ]
    with pytest.raises(ValueError, match="capture_logs 'LOUD' is not a logging level"):
        ExecutionEngine(None, dag_of(quick), capture_logs="LOUD")


LAST_RESORT = """
import asyncio, logging
from conftest import dag_of
from taskiq_dataflow import ExecutionEngine, StepLogged, pipeline_task

@pipeline_task(output="warns")
async def warns() -> int:
    logging.getLogger("unhandled").warning("seen on stderr")
    return 1

engine = ExecutionEngine(None, dag_of(warns))
got = []
engine.events.subscribe(got.append, StepLogged)
asyncio.run(engine.execute({}))
print(got[0].records[0].message)
"""


def test_records_nobody_handles_still_reach_stderr_while_a_run_captures():
    """The capture handler on the root logger must not silence Python's last resort (in a
    process of its own: pytest's own log handlers sit on the root logger here)."""
    here = Path(__file__).resolve().parent
    package = Path(taskiq_dataflow.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), str(here)])}
    proc = subprocess.run(
        [sys.executable, "-c", LAST_RESORT],
        capture_output=True, text=True, timeout=60, cwd=here, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "seen on stderr\n"
    assert proc.stderr == "seen on stderr\n"


def test_json_lines_name_the_run_and_task_of_each_record():
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(tl.JsonFormatter())
    logging.getLogger().addHandler(handler)
    tl.set_labels(True)
    try:
        engine = ExecutionEngine(None, dag_of(quick, blocking))  # no store: labels only
        run(engine.execute({}, pipeline_id="run-j"))
        log.info("outside any task")
    finally:
        tl.set_labels(False)
        logging.getLogger().removeHandler(handler)
    parsed = [json.loads(line) for line in lines]
    inside = {p["message"].split("\n")[0]: p for p in parsed if p["task"] is not None}
    assert inside["stepped in place 1"]["task"] == "quick"
    assert inside["in thread"]["task"] == "blocking"
    assert {p["run_id"] for p in inside.values()} == {"run-j"}
    assert {p["attempt"] for p in inside.values()} == {1}
    outside = next(p for p in parsed if p["message"] == "outside any task")
    assert (outside["run_id"], outside["task"], outside["attempt"]) == (None, None, None)
    assert set(outside) == {"time", "level", "logger", "message", "run_id", "task", "attempt",
                            "worker"}  # fmt: skip


# -- the store ------------------------------------------------------------------------------------


def test_the_store_keeps_each_execution_records_and_filters_by_task(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    engine = ExecutionEngine(None, dag_of(quick, slow, blocking), store=store)
    run(engine.execute({}, pipeline_id="r1"))
    rows = store.task_logs("r1")
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    assert {r["task_name"] for r in rows} == {"quick", "slow", "blocking"}
    assert set(rows[0]) == {"node", "task_name", "attempt", "time", "level", "logger", "message"}
    slow_rows = store.task_logs("r1", "slow")
    assert [(r["level"], r["message"]) for r in slow_rows] == [
        ("INFO", "before the sleep"),
        ("WARNING", "after it, from a child logger"),
    ]
    with pytest.raises(StoreError, match="run 'r1' has no task named 'nope'"):
        store.task_logs("r1", "nope")
    with pytest.raises(StoreError, match="no run 'r2' in the store at"):
        store.task_logs("r2")
    store.close()


def test_every_attempt_is_in_the_store_and_discard_forgets_them(tmp_path):
    calls["flaky"] = 0
    store = RunStore(tmp_path / "runs.db")
    engine = ExecutionEngine(None, dag_of(flaky), store=store)
    run(engine.execute({}, pipeline_id="r1"))
    rows = store.task_logs("r1", "flaky")
    assert [(r["attempt"], r["message"]) for r in rows] == [(1, "attempt 1"), (2, "attempt 2")]
    store.discard("r1")
    store.flush()
    assert sqlite3.connect(store.path).execute("SELECT COUNT(*) FROM task_logs").fetchone() == (0,)


runs_of = {"n": 0}


@pipeline_task(output="second_time")
def second_time() -> int:
    runs_of["n"] += 1
    log.info("execution %d", runs_of["n"])
    if runs_of["n"] == 1:
        raise RuntimeError("not yet")
    return 1


def test_a_restart_replaces_the_records_of_the_attempt_it_runs_again(tmp_path):
    runs_of["n"] = 0
    store = RunStore(tmp_path / "runs.db")
    engine = ExecutionEngine(None, dag_of(second_time), store=store)
    with pytest.raises(TaskFailedError):
        run(engine.execute({}, pipeline_id="r1"))
    assert [r["message"] for r in store.task_logs("r1")] == ["execution 1"]
    assert run(engine.restart("r1")) == {"second_time": 1}
    assert [(r["attempt"], r["message"]) for r in store.task_logs("r1")] == [(1, "execution 2")]


OLD_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, parent_run_id TEXT, dag_fingerprint TEXT NOT NULL,
    status TEXT NOT NULL, inputs BLOB, started_at REAL NOT NULL, finished_at REAL, error TEXT);
CREATE TABLE task_executions (run_id TEXT NOT NULL, node INTEGER NOT NULL,
    task_name TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL,
    inputs_digest TEXT, outputs BLOB, started_at REAL, finished_at REAL, error TEXT,
    worker TEXT, PRIMARY KEY (run_id, node, attempt));
INSERT INTO runs VALUES ('old', NULL, 'f', 'succeeded', NULL, 1.0, 2.0, NULL);
INSERT INTO task_executions VALUES ('old', 0, 'quick', 1, 'completed', 'd', NULL, 1.0, 2.0,
    NULL, NULL);
"""


def test_an_old_store_gains_the_task_logs_table_in_place(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.close()
    store = RunStore(path)
    assert store.task_logs("old") == [] and store.task_logs("old", "quick") == []
    engine = ExecutionEngine(None, dag_of(quick), store=store)
    run(engine.execute({}, pipeline_id="new"))
    assert [r["message"] for r in store.task_logs("new")] == ["stepped in place 1"]
    assert store.get_run("old")["status"] == "succeeded"
    store.close()


def test_entries_stay_within_the_bounds_when_threads_raced_past_them():
    """add() takes no lock: threads of one task logging at once may append past the bounds,
    which entries() cuts (a worker's frame must stay within what the engine accepts)."""
    log_ = tl.TaskLog("r", "t", 1, logging.INFO)
    entry = LogEntry(1.0, "INFO", "x", "m" * 100)
    log_._records = [entry] * (tl.MAX_RECORDS + 3)
    log_._size = tl.MAX_BYTES + 1
    records = log_.entries()
    assert records is not None
    kept, marker = records[:-1], records[-1]
    assert sum(len(r.message) + len(r.logger) for r in kept) <= tl.MAX_BYTES
    assert len(kept) == tl.MAX_BYTES // 101
    assert marker.message.startswith(f"... {tl.MAX_RECORDS + 3 - len(kept)} more records dropped")
    assert tl.TaskLog("r", "t", 1, logging.INFO).entries() is None


def test_capture_works_through_the_metrics_timed_transport():
    """With metrics on, in-process tasks run on metrics' TimedLocalTransport (a LocalTransport
    overriding _finished): tasks that go on in the loop or a thread keep their records."""
    from taskiq_dataflow.metrics import EngineMetrics

    engine, events = engine_of(quick, slow, blocking, metrics=EngineMetrics())
    assert run(engine.execute({})) == {"quick": 1, "slow": 2, "blocking": 1}
    by_task = logged(events)
    assert [r.message for r in by_task["slow"].records] == [
        "before the sleep",
        "after it, from a child logger",
    ]
    assert by_task["blocking"].records[0].message == "in thread"


@pipeline_task(output="mine")
async def with_a_thread() -> int:
    log.info("from the task")
    # a thread of its own (no context of the task's) logging while the task is stepped
    helper = threading.Thread(target=log.info, args=("from a thread",))
    helper.start()
    helper.join()
    return 1


def test_a_thread_logging_while_a_task_is_stepped_is_not_taken_for_the_task():
    engine, events = engine_of(with_a_thread)
    run(engine.execute({}))
    assert [r.message for r in logged(events)["with_a_thread"].records] == ["from the task"]
