"""`taskiq-dataflow runs ...` in this process: ls / show / tasks over a real SQLite run store,
restart and replay on the recorded target, RUN by unique prefix, values shown decoded, a
missing store never created, an old store migrated in place (issue 12, run history)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from conftest import call_cli
from taskiq_dataflow import ExecutionEngine, RunStore
from taskiq_dataflow.store import HOST

FLOWS = textwrap.dedent(
    """
    import pathlib

    from taskiq_dataflow import DataflowRegistry, pipeline_task

    HERE = pathlib.Path(__file__).parent


    def called(name):
        with (HERE / "calls.txt").open("a") as f:
            f.write(name + "\\n")


    @pipeline_task(output="made")
    def make(n: int) -> dict:
        called("make")
        return {"n": n, "pair": (n, n)}


    @pipeline_task(output="used")
    def use(made: dict) -> int:
        called("use")
        return made["n"] * 10


    @pipeline_task(output="last")
    def last(used: int) -> int:
        called("last")
        if (HERE / "fail.flag").exists():
            raise RuntimeError("last fails while fail.flag exists")
        return used + 1


    @pipeline_task(output="big")
    def big(n: int) -> str:
        return "x" * 5000


    registry = DataflowRegistry()
    for task in (make, use, last):
        registry.register_task(task)

    other = DataflowRegistry()
    other.register_task(make)
    other.register_task(big)


    def same(n):
        return n


    wide = DataflowRegistry()
    wide.register_external_input("n")
    for i in range(55):
        wide.register_task(same, output=f"k{i:02d}", inputs=["n"], name=f"same{i:02d}")
    """
)


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    (tmp_path / "hist_flows.py").write_text(FLOWS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATAFLOW_STORE", raising=False)
    sys.modules.pop("hist_flows", None)

    def invoke(*args):
        return call_cli(capsys, *args)

    yield invoke
    sys.modules.pop("hist_flows", None)


def calls(tmp_path):
    path = tmp_path / "calls.txt"
    found = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return found


def failed_run(cli, tmp_path, db="runs.db"):
    (tmp_path / "fail.flag").touch()
    code, _, err = cli("run", "hist_flows:registry", "-i", "n=4", "--store", db,
                         "--progress", "none")  # fmt: skip
    assert code == 1, err
    (tmp_path / "fail.flag").unlink()
    return re.search(r"run (\w+) \(recorded in ", err).group(1)


def test_ls_show_and_tasks_of_a_failed_run(cli, tmp_path):
    run_id = failed_run(cli, tmp_path)
    code, out, err = cli("runs", "ls", "--store", "runs.db")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["RUN", "STATUS", "STARTED", "DURATION", "DONE", "FAILED",
                              "TOTAL", "TARGET"]  # fmt: skip
    cells = row.split()
    assert run_id.startswith(cells[0]) and len(cells[0]) == 8
    assert cells[1] == "failed" and cells[-4:] == ["2", "1", "3", "hist_flows:registry"]

    code, out, _ = cli("runs", "ls", "--store", "runs.db", "--json")
    (listed,) = json.loads(out)
    assert listed["run_id"] == run_id and listed["status"] == "failed"
    counts = {"completed": 2, "failed": 1}
    assert listed["tasks"] == {"done": 2, "failed": 1, "total": 3, "by_status": counts}
    assert listed["owner_pid"] == os.getpid() and listed["target"] == "hist_flows:registry"

    code, out, err = cli("runs", "show", run_id[:6], "--store", "runs.db")
    assert code == 0, err
    assert f"run       {run_id}\n" in out and "status    failed\n" in out
    assert "tasks     2 done, 1 failed, 0 skipped, 0 running, of 3\n" in out
    assert "RuntimeError: last fails while fail.flag exists" in out
    assert "inputs\n  n: 4\n" in out
    # a tuple is not JSON: the value's repr says what it is
    assert "  made: {'n': 4, 'pair': (4, 4)}\n  used: 40\n" in out
    code, out, _ = cli("runs", "show", run_id[:6], "--store", "runs.db", "--json")
    shown = json.loads(out)
    assert shown["inputs"] == {"n": 4}
    assert shown["outputs"] == {"make": {"made": "{'n': 4, 'pair': (4, 4)}"}, "use": {"used": 40}}
    assert shown["error"].startswith("TaskFailedError: task 'last' failed")

    code, out, err = cli("runs", "tasks", run_id[:6], "--store", "runs.db", "--status", "failed")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["TASK", "ATTEMPT", "STATUS", "DURATION", "WORKER", "ERROR"]
    assert row.split()[:3] == ["last", "1", "failed"]
    assert row.endswith("RuntimeError: last fails while fail.flag exists")
    code, out, _ = cli("runs", "tasks", run_id, "--store", "runs.db", "--show-outputs", "--json")
    rows = {row["task"]: row for row in json.loads(out)}
    assert rows["use"]["outputs"] == {"used": 40} and rows["last"]["outputs"] is None
    assert rows["last"]["error"].startswith("RuntimeError: last fails")
    code, out, _ = cli("runs", "tasks", run_id, "--store", "runs.db", "--show-outputs",
                       "--name", "use")  # fmt: skip
    assert out.splitlines()[1].split()[:3] == ["use", "1", "completed"]
    assert out.splitlines()[2] == "    used: 40"
    code, _, err = cli("runs", "tasks", run_id, "--store", "runs.db", "--name", "usd")
    assert code == 2 and "no execution of a task named 'usd'; its tasks: last, make, use" in err


def test_restart_and_replay_run_on_the_recorded_target(cli, tmp_path):
    run_id = failed_run(cli, tmp_path)
    assert calls(tmp_path) == ["make", "use", "last"]
    code, out, err = cli("runs", "restart", run_id[:5], "--store", "runs.db", "--progress",
                         "none", "--json")  # fmt: skip
    assert code == 0, err
    assert f"run {run_id} restarted (recorded in runs.db)" in err
    assert json.loads(out)["last"] == 41
    assert calls(tmp_path) == ["last"]  # make and use completed before: not run again
    assert RunStore("runs.db").get_run(run_id)["status"] == "succeeded"

    code, out, err = cli("runs", "replay", run_id[:5], "--store", "runs.db", "--rerun", "use",
                         "--progress", "none")  # fmt: skip
    assert code == 0, err
    new_id = re.search(r"run (\w+), a replay of " + run_id, err).group(1)
    assert "last: 41" in out and calls(tmp_path) == ["use", "last"]
    code, out, _ = cli("runs", "show", new_id, "--store", "runs.db")
    assert f"parent    {run_id} (a replay; 1 task(s) reused)" in out
    assert "tasks     3 done, 0 failed" in out
    code, out, _ = cli("runs", "ls", "--store", "runs.db", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [new_id, run_id]  # newest first

    code, _, err = cli("runs", "replay", run_id, "--store", "runs.db", "--rerun", "nope")
    assert code == 2 and "no task named ['nope']" in err and "runs.db" in err
    code, _, err = cli("runs", "restart", run_id, "hist_flows:other", "--store", "runs.db")
    assert code == 2 and "made with a different DAG" in err
    code, _, err = cli("runs", "replay", run_id, "--store", "runs.db")
    assert code == 2 and "--rerun" in err


def test_a_run_started_from_python_needs_a_target_once(cli, tmp_path):
    from hist_flows import registry

    engine = ExecutionEngine(None, registry.build_dag(), store=RunStore(tmp_path / "runs.db"))
    asyncio.run(engine.execute({"n": 1}, pipeline_id="from-python"))
    calls(tmp_path)
    code, _, err = cli("runs", "restart", "from", "--store", "runs.db")
    assert code == 2
    assert "run from-python has no recorded target" in err
    assert "pass TARGET" in err and "runs restart from module:attr" in err
    code, out, err = cli("runs", "replay", "from", "hist_flows:registry", "--store", "runs.db",
                         "--rerun", "last", "--progress", "none")  # fmt: skip
    assert code == 0, err
    assert out.endswith("last: 11\n") and calls(tmp_path) == ["last"]
    code, out, _ = cli("runs", "ls", "--store", "runs.db", "--json")
    assert [r["target"] for r in json.loads(out)] == ["hist_flows:registry", None]


def test_run_by_prefix_exact_ambiguous_or_unknown(cli, tmp_path):
    from hist_flows import registry

    engine = ExecutionEngine(None, registry.build_dag(), store=RunStore(tmp_path / "runs.db"))
    for run_id in ("nightly-1", "nightly-12", "weekly"):
        asyncio.run(engine.execute({"n": 1}, pipeline_id=run_id))
    code, out, _ = cli("runs", "show", "nightly-1", "--store", "runs.db", "--json")
    assert code == 0 and json.loads(out)["run_id"] == "nightly-1"  # exact wins over prefix
    code, out, _ = cli("runs", "show", "we", "--store", "runs.db", "--json")
    assert code == 0 and json.loads(out)["run_id"] == "weekly"
    code, _, err = cli("runs", "tasks", "night", "--store", "runs.db")
    assert code == 2
    assert "run 'night' is ambiguous" in err and "nightly-1, nightly-12" in err
    code, _, err = cli("runs", "restart", "monthly", "--store", "runs.db")
    assert code == 2 and "no run 'monthly'" in err and "the newest: weekly, nightly-12" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    code, out, _ = cli("runs", "ls", "--store", "runs.db")
    # the shortest prefixes that tell them apart, at least 8 characters
    assert [line.split()[0] for line in out.splitlines()[1:]] == [
        "weekly", "nightly-12", "nightly-1"]  # fmt: skip
    code, out, _ = cli("runs", "ls", "--store", "runs.db", "--limit", "1", "--json")
    assert [r["run_id"] for r in json.loads(out)] == ["weekly"]
    code, out, _ = cli("runs", "ls", "--store", "runs.db", "--limit", "2", "-q")
    assert out == "weekly\nnightly-12\n"


def test_the_store_is_the_option_else_the_variable_else_the_default(cli, tmp_path, monkeypatch):
    code, _, err = cli("runs", "ls")
    assert code == 2
    assert "no run store at 'dataflow-runs.db' (default)" in err and "--store PATH" in err
    assert not (tmp_path / "dataflow-runs.db").exists()  # reading never creates a store
    code, _, err = cli("runs", "show", "x", "--store", "nowhere.db")
    assert code == 2 and "no run store at 'nowhere.db' (--store)" in err
    assert not (tmp_path / "nowhere.db").exists()
    (tmp_path / "notes.db").write_text("not a database, just text " * 100)
    code, _, err = cli("runs", "ls", "--store", "notes.db")
    assert code == 2 and "cannot read the run store 'notes.db' (--store)" in err
    assert "Traceback" not in err

    monkeypatch.setenv("DATAFLOW_STORE", str(tmp_path / "env.db"))
    code, _, err = cli("run", "hist_flows:registry", "-i", "n=2", "--progress", "none")
    assert code == 0, err
    assert f"(recorded in {tmp_path / 'env.db'})" in err  # run records there without --store
    code, out, _ = cli("runs", "ls", "--json")
    assert [r["status"] for r in json.loads(out)] == ["succeeded"]
    # the sqlite backup API: a plain file copy would miss what is still in the WAL file
    with (
        sqlite3.connect(tmp_path / "env.db") as src,
        sqlite3.connect(tmp_path / "dataflow-runs.db") as dst,
    ):
        src.backup(dst)
    monkeypatch.delenv("DATAFLOW_STORE")
    code, out, _ = cli("runs", "ls", "--json")  # now the default, in the current directory
    assert [r["status"] for r in json.loads(out)] == ["succeeded"]
    code, _, err = cli("runs", "ls", "--status", "failed")
    assert (
        code == 0 and err == "taskiq-dataflow: no runs with status 'failed' in dataflow-runs.db\n"
    )


def test_values_are_shown_decoded_or_say_why_not(cli, tmp_path):
    code, _, err = cli("run", "hist_flows:other", "-i", "n=3", "--store", "runs.db")
    assert code == 0, err
    run_id = json.loads(cli("runs", "ls", "--store", "runs.db", "--json")[1])[0]["run_id"]
    with sqlite3.connect(tmp_path / "runs.db") as db:  # 0xc1 is never valid msgpack
        db.execute("UPDATE task_executions SET outputs = x'c1c1' WHERE task_name = 'make'")
    code, out, err = cli("runs", "show", run_id, "--store", "runs.db")
    assert code == 0, err
    assert "  make: <2 stored bytes that do not decode (a codec registered when the value " in out
    # a long value is cut, with a note saying how long it is
    assert f'  big: "{"x" * 299}... (5002 chars; --json shows more)\n' in out
    code, out, _ = cli("runs", "show", run_id, "--store", "runs.db", "--json")
    outputs = json.loads(out)["outputs"]
    assert outputs["big"] == {"big": "x" * 5000}
    assert "do not decode" in outputs["make"]


def test_an_old_store_gains_the_new_columns_in_place(cli, tmp_path):
    db = sqlite3.connect(tmp_path / "old.db")
    db.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, parent_run_id TEXT, dag_fingerprint TEXT "
        "NOT NULL, status TEXT NOT NULL, inputs BLOB, started_at REAL NOT NULL, finished_at "
        "REAL, error TEXT);"
        "CREATE TABLE task_executions (run_id TEXT NOT NULL, node INTEGER NOT NULL, task_name "
        "TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL, inputs_digest TEXT, "
        "outputs BLOB, started_at REAL, finished_at REAL, error TEXT, worker TEXT, "
        "PRIMARY KEY (run_id, node, attempt));"
        "INSERT INTO runs VALUES ('old-run', NULL, 'f', 'failed', NULL, 1.0, 3.5, 'boom');"
        "INSERT INTO task_executions VALUES ('old-run', 0, 'a', 1, 'completed', NULL, NULL, "
        "1.0, 2.0, NULL, NULL);"
        "INSERT INTO task_executions VALUES ('old-run', 1, 'b', 1, 'failed', NULL, NULL, "
        "2.0, 3.0, 'ValueError: boom', 'w-1');"
    )
    db.commit()
    db.close()
    code, out, err = cli("runs", "ls", "--store", "old.db")
    assert code == 0, err
    cells = out.splitlines()[1].split()
    assert cells[0] == "old-run" and cells[1] == "failed"
    assert cells[-5:] == ["2.50s", "1", "1", "2", "-"]  # total: the tasks it recorded
    code, _, err = cli("runs", "restart", "old", "--store", "old.db")
    assert code == 2 and "run old-run has no recorded target" in err


def test_running_and_interrupted_runs_are_told_apart(cli, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    RunStore(tmp_path / "runs.db").close()
    with sqlite3.connect(tmp_path / "runs.db") as db:
        for run_id, pid, started in (("live", os.getpid(), 10.0), ("dead", dead.pid, 20.0)):
            db.execute(
                "INSERT INTO runs (run_id, dag_fingerprint, status, started_at, owner_host, "
                "owner_pid, heartbeat_at, target) VALUES (?, 'f', 'running', ?, ?, ?, ?, 'm:a')",
                (run_id, started, HOST, pid, started + 4),
            )
    code, out, _ = cli("runs", "ls", "--store", "runs.db")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["live"][1] == "running" and rows["dead"][1] == "interrupted"
    assert rows["dead"][4] == "4.00s+"  # until its last heartbeat, at least
    code, out, _ = cli("runs", "ls", "--store", "runs.db", "--status", "interrupted", "--json")
    assert [r["run_id"] for r in json.loads(out)] == ["dead"]
    code, out, _ = cli("runs", "show", "dead", "--store", "runs.db")
    assert "status    interrupted (its engine died: `runs restart` continues it)" in out
    code, out, _ = cli("runs", "show", "live", "--store", "runs.db")
    assert "status    running (its engine is alive)" in out
    code, _, err = cli("runs", "restart", "live", "--store", "runs.db")
    assert code == 2 and f"run live is still running (pid {os.getpid()} on {HOST})" in err


def test_runs_without_a_subcommand_prints_its_help(cli):
    code, _, err = cli("runs")
    assert code == 2
    for word in ("ls", "show", "tasks", "restart", "replay", "$DATAFLOW_STORE"):
        assert word in err


def test_a_file_target_is_recorded_absolute(cli, tmp_path, monkeypatch):
    (tmp_path / "fail.flag").touch()
    code, _, err = cli("run", "hist_flows.py:registry", "-i", "n=2", "--store", "runs.db")
    assert code == 1, err
    (tmp_path / "fail.flag").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    db = str(tmp_path / "runs.db")
    (listed,) = json.loads(cli("runs", "ls", "--store", db, "--json")[1])
    assert listed["target"] == f"{tmp_path / 'hist_flows.py'}:registry"
    code, out, err = cli("runs", "restart", listed["run_id"][:8], "--store", db)
    assert code == 0, err
    assert out.endswith("last: 21\n")


def test_show_lists_the_outputs_of_50_tasks_and_says_how_many_more(cli, tmp_path):
    code, _, err = cli("run", "hist_flows:wide", "-i", "n=7", "--store", "runs.db")
    assert code == 0, err
    code, out, _ = cli("runs", "show", "", "--store", "runs.db")
    assert code == 2  # an empty RUN is no prefix
    run_id = cli("runs", "ls", "-q", "--store", "runs.db")[1].strip()
    code, out, _ = cli("runs", "show", run_id, "--store", "runs.db")
    assert "  k49: 7\n" in out and "k50" not in out
    assert f"  ... and the outputs of 5 more tasks (`runs tasks {run_id} --show-outputs`" in out
    code, out, _ = cli("runs", "show", run_id, "--store", "runs.db", "--json")
    assert len(json.loads(out)["outputs"]) == 55
