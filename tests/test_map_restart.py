"""Map nodes with a run store: a map's items are tasks of its run, restorable one by one on
restart (found by name and inputs digest when the map adds them again); replay re-runs a map
node whole or restores it whole. Run as a script it executes the flow with a store so a test can
SIGKILL it mid-map: `python test_map_restart.py DB RUN_ID LOG`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import run
from taskiq_dataflow import (
    DataflowExecutionError,
    Flow,
    RunStore,
    StepCompleted,
    TaskFailedError,
)

HERE = Path(__file__).resolve().parent
ALL_ITEMS = {f"work{i}" for i in range(20)} | {f"label{i * i}" for i in range(20)}


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def make_flow(
    log: Path, fail_once: Path | None = None, slow: float = 0.0, start: Path | None = None
) -> Flow:
    """items -> map(work >> label) -> summary. `work(13)` fails while `fail_once` does not exist
    (and creates it); `start`, if given, is a file holding where the items start, read anew by
    every call of `items`, whose output (a range) the store cannot keep."""

    def note(name: str) -> None:
        with open(log, "a") as f:
            f.write(name + "\n")

    def items(n):
        if start is None:
            return list(range(n))
        first = int(start.read_text())
        return range(first, first + n)

    def work(x):
        time.sleep(slow)
        note(f"work{x}")
        if x == 13 and fail_once is not None and not fail_once.exists():
            fail_once.touch()
            raise RuntimeError("item 13 failed on purpose")
        return x * x

    def label(sq):
        note(f"label{sq}")
        return f"#{sq}"

    def summary(labels):
        note("summary")
        return " ".join(labels)

    sub = Flow("item")
    sub.node(work) >> sub.node(label)
    flow = Flow("main")
    flow.node(items) >> flow.map(sub, name="squares") >> flow.node(summary)
    return flow


def expected_summary(first: int = 0) -> str:
    return " ".join(f"#{i * i}" for i in range(first, first + 20))


def log_name(task_name: str) -> str:
    """'squares[3].work' -> 'work3', 'squares[3].label' -> 'label9': what the task logs."""
    item, task = task_name.removeprefix("squares[").split("].")
    return f"work{item}" if task == "work" else f"label{int(item) ** 2}"


def settle(log: Path, quiet: float = 0.3, limit: float = 10.0) -> None:
    """Wait until nothing has been written to `log` for `quiet` seconds."""
    deadline = time.monotonic() + limit
    seen = len(lines(log))
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet:
        time.sleep(0.02)
        now = len(lines(log))
        if now != seen:
            seen, quiet_since = now, time.monotonic()


def item_rows(db: Path, run_id: str) -> list[dict]:
    rows = RunStore(db).get_task_executions(run_id)
    return [r for r in rows if r["task_name"].startswith("squares[") and "]." in r["task_name"]]


def completed_items(db: Path, run_id: str) -> set[str]:
    return {log_name(r["task_name"]) for r in item_rows(db, run_id) if r["status"] == "completed"}


@pytest.mark.parametrize("fail_fast", [True, False])
def test_restart_reruns_only_the_failed_item_and_what_follows(tmp_path, fail_fast):
    db, log, flag = tmp_path / "runs.db", tmp_path / "log", tmp_path / "failed-once"
    engine = make_flow(log, flag).engine(store=RunStore(db), fail_fast=fail_fast)
    error = TaskFailedError if fail_fast else DataflowExecutionError
    with pytest.raises(error, match="item 13 failed on purpose"):
        run(engine.execute({"n": 20}, pipeline_id="r"))
    settle(log)  # a blocking item in flight when fail_fast stopped the run ends in its thread
    first = Counter(lines(log))
    assert first["work13"] == 1 and "label169" not in first and "summary" not in first
    assert RunStore(db).get_run("r")["status"] == "failed"
    completed = completed_items(db, "r")
    if not fail_fast:  # every other item ran to the end
        assert completed == ALL_ITEMS - {"work13", "label169"}
        assert first == Counter(ALL_ITEMS - {"label169"})

    log.unlink()
    engine = make_flow(log, flag).engine(store=RunStore(db), fail_fast=fail_fast)
    steps = []
    engine.events.subscribe(steps.append, StepCompleted)
    out = run(engine.restart("r"))
    assert out["summary"] == expected_summary()
    second = Counter(lines(log))
    ran = [s for s in steps if s.task_name.startswith("squares[") and "]." in s.task_name]
    assert len(ran) == sum(second.values()) - 1  # the items' tasks, not summary
    # no item task recorded as completed ran again; with fail_fast the ones in flight when
    # work(13) failed were stopped unrecorded, so they ran again too
    assert not completed & set(second)
    assert completed | set(second) == ALL_ITEMS | {"summary"}
    if not fail_fast:
        assert second == Counter(["work13", "label169", "summary"])
    assert RunStore(db).get_run("r")["status"] == "succeeded"
    # a second restart of the finished run runs nothing: every row it needs is still there
    log.unlink()
    again = run(make_flow(log, flag).engine(store=RunStore(db)).restart("r"))
    assert again["summary"] == expected_summary() and lines(log) == []


def test_restart_with_other_items_runs_the_map_afresh(tmp_path):
    db, log, flag, start = (tmp_path / name for name in ("runs.db", "log", "flag", "start"))
    start.write_text("0")
    engine = make_flow(log, flag, start=start).engine(store=RunStore(db), fail_fast=False)
    with pytest.raises(DataflowExecutionError):
        run(engine.execute({"n": 20}, pipeline_id="r"))
    old = [r for r in RunStore(db).get_task_executions("r") if r["task_name"] == "items"]
    assert old[0]["status"] == "completed" and old[0]["outputs"] is None  # not storable

    # the items are made again on restart and differ: no result of the old items may be reused
    log.unlink()
    start.write_text("1")
    out = run(make_flow(log, flag, start=start).engine(store=RunStore(db)).restart("r"))
    assert out["summary"] == expected_summary(first=1)
    assert sorted(lines(log)) == sorted(
        [f"work{i}" for i in range(1, 21)] + [f"label{i * i}" for i in range(1, 21)] + ["summary"]
    )


def test_discard_forgets_that_run_only(tmp_path):
    store = RunStore(tmp_path / "runs.db")

    def neg(x):
        return -x

    flow = Flow()
    flow.node(neg)
    for run_id in ["a", "a/m", "a-b"]:
        run(flow.engine(store=store).execute({"x": -1}, pipeline_id=run_id))
    store.discard("a")
    assert {r["run_id"] for r in store.list_runs()} == {"a/m", "a-b"}
    assert store.get_task_executions("a") == []
    assert len(store.get_task_executions("a/m")) == 1


def test_a_restart_restores_no_item_whose_inputs_differ(tmp_path):
    """2.0 == 2, yet results of 2 are no results of 2.0: items are restored by the digest of
    their inputs, not by name alone."""
    db = tmp_path / "runs.db"
    calls = Counter()
    values = {"now": [0, 1, 2]}

    def items(n):
        return iter(values["now"])  # not storable: made again on restart

    def work(x):
        calls[x] += 1
        if x == 1 and calls[x] == 1:
            raise RuntimeError("item 1 fails once")
        return repr(x)

    sub = Flow("item")
    sub.node(work)
    flow = Flow("main")
    flow.node(items) >> flow.map(sub, name="squares")
    with pytest.raises(TaskFailedError):
        run(flow.engine(store=RunStore(db)).execute({"n": 3}, pipeline_id="r"))
    assert calls == Counter([0, 1, 2])
    values["now"] = [0.0, 1, 2.0]  # equal, not the same
    out = run(flow.engine(store=RunStore(db)).restart("r"))
    assert out["squares"] == ["0.0", "1", "2.0"]
    assert calls == Counter([0, 1, 2] * 2)  # every item ran again (0.0 counts as 0)


def test_replay_runs_a_rerun_map_afresh_and_restores_any_other_whole(tmp_path):
    db, log = tmp_path / "runs.db", tmp_path / "log"
    engine = make_flow(log).engine(store=RunStore(db))
    first = run(engine.execute({"n": 20}, pipeline_id="base"))
    log.unlink()
    assert run(engine.replay("base", rerun={"summary"}, pipeline_id="p1")) == first
    assert lines(log) == ["summary"]
    log.unlink()
    assert run(engine.replay("base", rerun={"squares"}, pipeline_id="p2")) == first
    assert Counter(lines(log)) == Counter({*ALL_ITEMS, "summary"})
    runs = {r["run_id"]: r["parent_run_id"] for r in RunStore(db).list_runs()}
    assert runs == {"base": None, "p1": "base", "p2": "base"}


def test_a_map_inside_a_map_restores_each_inner_item(tmp_path):
    db, flag = tmp_path / "runs.db", tmp_path / "flag"
    calls = Counter()

    def cell(x):
        calls[x] += 1
        if x == 5 and not flag.exists():
            flag.touch()
            raise RuntimeError("cell 5 failed on purpose")
        return -x

    cells = Flow("cells")
    cells.node(cell)
    row = Flow("row")
    row.map(cells, name="cells")
    flow = Flow("grid")
    flow.map(row, name="rows")
    engine = flow.engine(store=RunStore(db), fail_fast=False)
    grid = [[0, 1, 2], [3, 4, 5], [6, 7]]
    with pytest.raises(DataflowExecutionError):
        run(engine.execute({"x": grid}, pipeline_id="g"))
    assert calls == Counter(range(8))
    out = run(flow.engine(store=RunStore(db)).restart("g"))
    assert out["rows"] == [[-x for x in r] for r in grid]
    assert calls == Counter(range(8)) + Counter([5])
    assert {r["run_id"] for r in RunStore(db).list_runs()} == {"g"}


def test_engine_killed_mid_map_restarts_without_rerunning_completed_items(tmp_path):
    db, log = tmp_path / "runs.db", tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen([sys.executable, __file__, str(db), "killed", str(log)], env=env)
    deadline = time.monotonic() + 30
    while len(lines(log)) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = lines(log)
    assert "summary" not in before and 8 <= len(before) < 40
    stored = completed_items(db, "killed")
    assert stored and stored <= set(before)

    log.unlink()
    out = run(make_flow(log).engine(store=RunStore(db)).restart("killed"))
    assert out["summary"] == expected_summary()
    rerun = lines(log)
    assert not stored & set(rerun)  # no item recorded as completed ran again
    assert stored | set(rerun) == ALL_ITEMS | {"summary"}


def test_map_restart_on_the_nats_cluster(tmp_path):
    """A map inside a call node (its items named 'c.items[i]...') on the workers, restarted."""
    import cluster_tasks
    from cluster_support import WorkerProcesses
    from taskiq_dataflow.cluster import DataflowNatsBroker, NatsServer

    flag = tmp_path / "flag"

    def check(value):
        if value == 13 and not flag.exists():
            flag.touch()
            raise RuntimeError("item 13 failed on purpose")
        return value

    item = Flow("item")
    item.node(cluster_tasks.echo) >> item.node(check)
    inner = Flow("inner")
    inner.map(item, name="items", max_parallel=8)
    flow = Flow("cluster")
    flow.node(inner, name="c")
    db = tmp_path / "runs.db"
    with NatsServer() as server, WorkerProcesses(server.url, workers=2):
        broker = DataflowNatsBroker(
            server.url, codec=cluster_tasks.broker.codec, heartbeat_timeout=1.0
        )
        engine = flow.engine(broker, store=RunStore(db), fail_fast=False)
        with pytest.raises(DataflowExecutionError):
            run(engine.execute({"value": list(range(20))}, pipeline_id="r"))
        before = items_of(RunStore(db).get_task_executions("r"))
        out = run(flow.engine(broker, store=RunStore(db)).restart("r"))
    assert out["c"] == list(range(20))
    after = {(r["task_name"], r["attempt"]): r for r in RunStore(db).get_task_executions("r")}
    echoes = [r for r in before if r["task_name"].endswith(".echo")]
    assert len(echoes) == 20 and all(r["worker"] for r in echoes)
    for row in before:  # what completed was restored, not run or recorded again
        if row["status"] == "completed":
            assert after[row["task_name"], row["attempt"]]["finished_at"] == row["finished_at"]
    assert after["c.items[13].check", 1]["status"] == "completed"


def items_of(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["task_name"].startswith("c.items[") and "]." in r["task_name"]]


if __name__ == "__main__":
    db_path, run_id, log_path = sys.argv[1:4]
    engine = make_flow(Path(log_path), slow=0.02).engine(store=RunStore(db_path), max_parallel=1)
    asyncio.run(engine.execute({"n": 20}, pipeline_id=run_id))
