"""Map nodes with a run store: items are restorable one by one on restart; replay re-runs a map
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
from taskiq_dataflow.compose.map_node import MapTask as _MapTask
from taskiq_dataflow.store import nested_run_id, resumable

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


def completed_items(db: Path, run_id: str) -> set[str]:
    rows = RunStore(db).get_task_executions(f"{run_id}/squares")
    return {log_name(r["task_name"]) for r in rows if r["status"] == "completed"}


@pytest.mark.parametrize("fail_fast", [True, False])
def test_restart_reruns_only_the_failed_item_and_what_follows(tmp_path, fail_fast):
    db, log, flag = tmp_path / "runs.db", tmp_path / "log", tmp_path / "failed-once"
    engine = make_flow(log, flag).engine(store=RunStore(db), fail_fast=fail_fast)
    error = TaskFailedError if fail_fast else DataflowExecutionError
    with pytest.raises(error, match="item 13 failed on purpose"):
        run(engine.execute({"n": 20}, pipeline_id="r"))
    first = Counter(lines(log))
    assert first["work13"] == 1 and "label169" not in first and "summary" not in first
    nested = RunStore(db).get_run("r/squares")
    assert (nested["status"], nested["parent_run_id"]) == ("failed", "r")
    completed = completed_items(db, "r")
    if not fail_fast:  # every other item ran to the end
        assert completed == ALL_ITEMS - {"work13", "label169"}
        assert first == Counter(ALL_ITEMS - {"label169"})

    log.unlink()
    flow = make_flow(log, flag)
    steps = []
    flow["squares"].events.subscribe(steps.append, StepCompleted)  # still told of every item
    out = run(flow.engine(store=RunStore(db), fail_fast=fail_fast).restart("r"))
    assert out["summary"] == expected_summary()
    second = Counter(lines(log))
    assert len(steps) == sum(second.values()) - 1  # the items' tasks, not summary
    # no item task recorded as completed ran again; with fail_fast the ones in flight when
    # work(13) failed were stopped unrecorded, so they ran again too
    assert not completed & set(second)
    assert completed | set(second) == ALL_ITEMS | {"summary"}
    if not fail_fast:
        assert second == Counter(["work13", "label169", "summary"])
    store = RunStore(db)
    assert store.get_run("r")["status"] == store.get_run("r/squares")["status"] == "succeeded"


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
    store = RunStore(db)
    rows = store.get_task_executions("r/squares")
    assert len(rows) == 40 and {r["status"] for r in rows} == {"completed"}
    assert store.get_run("r/squares")["inputs"]["squares[0].x"] == 1  # the new items' run


def test_discard_forgets_a_run_and_its_nested_runs_only(tmp_path):
    store = RunStore(tmp_path / "runs.db")

    def neg(x):
        return -x

    flow = Flow()
    flow.node(neg)
    ids = ["a", "a/m", "a/m/x", "a/mm", "a/m-2", "a-b"]
    for run_id in ids:
        run(flow.engine(store=store).execute({"x": -1}, pipeline_id=run_id))
    store.discard("a/m")
    assert {r["run_id"] for r in store.list_runs()} == {"a", "a/mm", "a/m-2", "a-b"}
    assert store.get_task_executions("a/m") == store.get_task_executions("a/m/x") == []
    assert len(store.get_task_executions("a/mm")) == 1


def test_resumable_needs_the_same_dag_and_the_same_inputs(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    flow = make_flow(tmp_path / "log")
    run(flow.engine(store=store).execute({"n": 3}, pipeline_id="r"))
    task = next(t for t in flow.build_dag()._tasks if isinstance(t, _MapTask))
    dag, inputs, _ = task._dag(3, [0, 1, 2])
    assert store.get_run("r/squares")["inputs"] == inputs
    assert len(resumable(store, dag, "r/squares", inputs)) == 6  # work and label per item
    # 2.0 == 2, yet results of 2 are no results of 2.0
    assert resumable(store, dag, "r/squares", {**inputs, "squares[2].x": 2.0}) is None
    assert resumable(store, task._dag(2, [0, 1])[0], "r/squares", inputs) is None
    assert resumable(store, dag, "r/other", inputs) is None


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
    assert runs == {"base": None, "base/squares": "base", "p1": "base", "p2": "base",
                    "p2/squares": "p2"}  # fmt: skip


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
    ids = {r["run_id"] for r in RunStore(db).list_runs()}
    assert ids == {"g", "g/rows", *(f"g/rows/rows[{i}]%2Ecells" for i in range(3))}


def test_nested_run_ids_are_safe_in_nats_subjects_and_distinct():
    assert nested_run_id("r1", "squares") == "r1/squares"
    assert nested_run_id("r1", "norm.lengths") == "r1/norm%2Elengths"
    assert nested_run_id("r1", "a b*>/%é") == "r1/a%20b%2A%3E%2F%25%C3%A9"
    assert nested_run_id("r1", "a.b") != nested_run_id("r1", "a%2Eb")
    assert nested_run_id("r1", "rows[2].cells") == "r1/rows[2]%2Ecells"


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
    """The nested run id (here with an escaped '.') names reply and cancel subjects on NATS."""
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
        before = RunStore(db).get_task_executions("r/c%2Eitems")
        out = run(flow.engine(broker, store=RunStore(db)).restart("r"))
    assert out["c"] == list(range(20))
    after = {
        (r["task_name"], r["attempt"]): r for r in RunStore(db).get_task_executions("r/c%2Eitems")
    }
    echoes = [r for r in before if r["task_name"].endswith(".echo")]
    assert len(echoes) == 20 and all(r["worker"] for r in echoes)
    for row in before:  # what completed was restored, not recorded again
        if row["status"] == "completed":
            assert after[row["task_name"], row["attempt"]] == row
    assert after["c.items[13].check", 1]["status"] == "completed"


if __name__ == "__main__":
    db_path, run_id, log_path = sys.argv[1:4]
    engine = make_flow(Path(log_path), slow=0.02).engine(store=RunStore(db_path), max_parallel=1)
    asyncio.run(engine.execute({"n": 20}, pipeline_id=run_id))
