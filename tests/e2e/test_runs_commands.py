"""`taskiq-dataflow runs ...` end to end: the console script in subprocesses over a real SQLite
run store written by real `run` processes (one SIGKILLed mid-run, one still going), restart
and replay from the command line (in process, and on real workers of a real nats-server), the
one error line and exit code of a bad RUN or store, bounded times."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import textwrap
from pathlib import Path

import pytest

from .support import (
    CLI,
    E2E,
    ROOT,
    TESTS,
    URL_ENV,
    Processes,
    Workers,
    run,
    start_server,
    wait_until,
)

pytestmark = pytest.mark.e2e

FLOWS = textwrap.dedent(
    """
    import os
    import pathlib
    import time

    from taskiq_dataflow import DataflowRegistry, pipeline_task
    from taskiq_dataflow.cluster import DataflowNatsBroker

    HERE = pathlib.Path(__file__).parent
    broker = DataflowNatsBroker()


    def called(name):
        with (HERE / "calls.txt").open("a") as f:
            f.write(f"{name} {os.getpid()}\\n")


    @pipeline_task(output="made")
    def make(n: int) -> dict:
        called("make")
        return {"n": n, "when": (n, "t")}


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


    @pipeline_task(output="held")
    def hold(made: dict) -> int:
        called("hold")
        deadline = time.monotonic() + 60
        while (HERE / "hold.flag").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return made["n"]


    @broker.task
    @pipeline_task(output="far")
    def far(n: int) -> int:
        called("far")
        return n * 2


    @broker.task
    @pipeline_task(output="farther")
    def farther(far: int) -> int:
        called("farther")
        if (HERE / "fail.flag").exists():
            raise RuntimeError("farther fails while fail.flag exists")
        return far + 1


    registry = DataflowRegistry()
    for task in (make, use, last):
        registry.register_task(task)

    held = DataflowRegistry()
    held.register_task(make)
    held.register_task(hold)

    remote = DataflowRegistry()
    remote.register_task(far)
    remote.register_task(farther)
    """
)


# the package of this checkout first (the same directory as the installed one, once merged)
PACKAGE = ROOT / "python"


@pytest.fixture
def home(procs: Processes) -> Path:
    (procs.home / "hist_e2e.py").write_text(FLOWS)
    return procs.home


def cli(procs: Processes, home: Path, *args: str, timeout: float = 30, env: dict | None = None):
    env = procs.env(env, pythonpath=[home, PACKAGE])
    return run(procs, [CLI, *args], timeout, env=env, cwd=home)


def calls(home: Path) -> list[str]:
    path = home / "calls.txt"
    found = [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []
    path.unlink(missing_ok=True)
    return found


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, stderr
    return errors[0]


def rows(db: Path, run_id: str) -> list[tuple[str, int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT task_name, attempt, status FROM task_executions WHERE run_id = ? "
            "ORDER BY node, attempt",
            (run_id,),
        ).fetchall()


def test_a_failed_run_listed_inspected_restarted_and_replayed(procs: Processes, home: Path):
    (home / "fail.flag").touch()
    first = cli(procs, home, "run", "hist_e2e:registry", "-i", "n=4", "--store", "h.db")
    assert first.code == 1, first.describe()
    run_id = re.search(r"run (\w{32}) \(recorded in h\.db\)", first.stderr).group(1)
    assert calls(home) == ["make", "use", "last"]
    (home / "fail.flag").unlink()

    ls = cli(procs, home, "runs", "ls", "--store", "h.db")
    assert ls.code == 0, ls.describe()
    cells = ls.stdout.splitlines()[1].split()
    assert run_id.startswith(cells[0]) and cells[1] == "failed"
    assert cells[-4:] == ["2", "1", "3", "hist_e2e:registry"]
    assert ls.seconds < 10, ls.describe()

    show = cli(procs, home, "runs", "show", run_id[:7], "--store", "h.db")
    assert show.code == 0, show.describe()
    assert f"run       {run_id}\n" in show.stdout and "status    failed\n" in show.stdout
    assert "inputs\n  n: 4\n" in show.stdout
    assert "  made: {'n': 4, 'when': (4, 't')}\n  used: 40\n" in show.stdout
    assert "RuntimeError: last fails while fail.flag exists" in show.stdout

    failed = cli(procs, home, "runs", "tasks", run_id[:7], "--store", "h.db", "--status",
                 "failed")  # fmt: skip
    assert failed.code == 0, failed.describe()
    (row,) = failed.stdout.splitlines()[1:]
    assert row.split()[:3] == ["last", "1", "failed"]
    assert row.endswith("RuntimeError: last fails while fail.flag exists")

    restart = cli(procs, home, "runs", "restart", run_id[:7], "--store", "h.db", "--json")
    assert restart.code == 0, restart.describe()
    assert f"run {run_id} restarted" in restart.stderr
    assert json.loads(restart.stdout)["last"] == 41
    assert calls(home) == ["last"]  # make and use are not run again
    assert rows(home / "h.db", run_id) == [
        ("make", 1, "completed"), ("use", 1, "completed"), ("last", 1, "completed")]  # fmt: skip

    replay = cli(procs, home, "runs", "replay", run_id[:7], "--store", "h.db", "--rerun", "use")
    assert replay.code == 0, replay.describe()
    new_id = re.search(rf"run (\w{{32}}), a replay of {run_id}", replay.stderr).group(1)
    assert replay.stdout.endswith("last: 41\n") and calls(home) == ["use", "last"]
    listed = json.loads(cli(procs, home, "runs", "ls", "--store", "h.db", "--json").stdout)
    assert [(r["run_id"], r["status"], r["parent_run_id"]) for r in listed] == [
        (new_id, "succeeded", run_id), (run_id, "succeeded", None)]  # fmt: skip
    assert all(r["target"] == "hist_e2e:registry" for r in listed)
    assert restart.seconds < 20 and replay.seconds < 20


def test_a_killed_run_is_interrupted_and_a_live_one_running(procs: Processes, home: Path):
    (home / "hold.flag").touch()
    env = procs.env(pythonpath=[home, PACKAGE])
    args = [CLI, "run", "hist_e2e:held", "--store", "h.db", "--progress", "none"]
    killed = procs.spawn([*args, "-i", "n=1"], env=env, cwd=home, log=home / "killed.log")
    live = procs.spawn([*args, "-i", "n=2"], env=env, cwd=home, log=home / "live.log")

    def holding() -> bool:
        path = home / "calls.txt"
        return path.exists() and path.read_text().count("hold") == 2

    wait_until(holding, 30, "both runs to be in their held task")
    run_ids = {}
    for name in ("killed", "live"):
        found = re.search(r"run (\w{32}) ", (home / f"{name}.log").read_text())
        assert found, (home / f"{name}.log").read_text()
        run_ids[name] = found.group(1)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    calls(home)

    ls = cli(procs, home, "runs", "ls", "--store", "h.db")
    assert ls.code == 0, ls.describe()
    status = {line.split()[0]: line.split()[1] for line in ls.stdout.splitlines()[1:]}
    assert status == {run_ids["killed"][:8]: "interrupted", run_ids["live"][:8]: "running"}
    interrupted = cli(procs, home, "runs", "ls", "--store", "h.db", "--status", "interrupted",
                      "--json")  # fmt: skip
    assert [r["run_id"] for r in json.loads(interrupted.stdout)] == [run_ids["killed"]]

    busy = cli(procs, home, "runs", "restart", run_ids["live"][:8], "--store", "h.db")
    assert busy.code == 2, busy.describe()
    assert f"run {run_ids['live']} is still running (pid {live.pid} " in one_error_line(busy.stderr)

    (home / "hold.flag").unlink()
    live.wait(20)
    assert live.returncode == 0, (home / "live.log").read_text()
    restart = cli(procs, home, "runs", "restart", run_ids["killed"][:8], "--store", "h.db")
    assert restart.code == 0, restart.describe()
    assert restart.stdout == 'made: {"n": 1, "when": [1, "t"]}\nheld: 1\n', restart.describe()
    assert calls(home) == ["hold"]  # the killed run's make had completed: not run again
    listed = json.loads(cli(procs, home, "runs", "ls", "--store", "h.db", "--json").stdout)
    assert {r["status"] for r in listed} == {"succeeded"}


def test_bad_run_ids_and_stores_are_one_line_and_exit_2(procs: Processes, home: Path):
    missing = cli(procs, home, "runs", "ls", "--store", "none.db")
    assert missing.code == 2, missing.describe()
    assert "no run store at 'none.db' (--store)" in one_error_line(missing.stderr)
    assert not (home / "none.db").exists()
    for n in (1, 2):
        made = cli(procs, home, "run", "hist_e2e:registry", "-i", f"n={n}", "--store", "h.db")
        assert made.code == 0, made.describe()
    ids = [r["run_id"] for r in json.loads(cli(procs, home, "runs", "ls", "--store", "h.db",
                                                "--json").stdout)]  # fmt: skip
    unknown = cli(procs, home, "runs", "show", "not-a-run", "--store", "h.db")
    assert unknown.code == 2, unknown.describe()
    line = one_error_line(unknown.stderr)
    assert "no run 'not-a-run' in h.db; the newest: " + ", ".join(ids) in line
    empty = cli(procs, home, "runs", "tasks", "", "--store", "h.db")
    assert empty.code == 2 and "RUN is empty" in one_error_line(empty.stderr)
    no_rerun = cli(procs, home, "runs", "replay", ids[0][:8], "--store", "h.db")
    assert no_rerun.code == 2 and "--rerun" in no_rerun.stderr  # argparse's usage error
    for outcome in (missing, unknown, empty, no_rerun):
        assert outcome.seconds < 10, outcome.describe()


def test_a_cluster_run_restarts_on_the_workers(procs: Processes, home: Path):
    server = start_server(procs)
    workers = Workers(procs, server.url, target="hist_e2e:broker", workers=1,
                      env={"PYTHONPATH": f"{home}:{PACKAGE}:{E2E}:{TESTS}"}).ready()  # fmt: skip
    env = {URL_ENV: server.url}
    (home / "fail.flag").touch()
    first = cli(procs, home, "run", "hist_e2e:remote", "-i", "n=5", "--store", "c.db", env=env)
    assert first.code == 1, first.describe()
    assert "farther fails while fail.flag exists" in one_error_line(first.stderr)
    (home / "fail.flag").unlink()
    run_id = re.search(r"run (\w{32}) ", first.stderr).group(1)
    calls(home)

    restart = cli(procs, home, "runs", "restart", run_id[:8], "--store", "c.db", "--json",
                  env=env)  # fmt: skip
    assert restart.code == 0, restart.describe()
    assert json.loads(restart.stdout) == {"far": 10, "farther": 11}
    ran = (home / "calls.txt").read_text().split()
    assert ran[0::2] == ["farther"]  # far completed before: not run again
    assert {int(pid) for pid in ran[1::2]} <= workers.beating_pids()  # on the worker
    tasks = cli(procs, home, "runs", "tasks", run_id[:8], "--store", "c.db", "--json")
    executions = {(t["task"], t["attempt"], t["status"]): t for t in json.loads(tasks.stdout)}
    assert set(executions) == {("far", 1, "completed"), ("farther", 1, "completed")}
    # each completion names the worker that ran it (worker ids are <host>-<pid>-<hex>)
    pids = {int(t["worker"].rsplit("-", 2)[1]) for t in executions.values()}
    assert pids <= workers.beating_pids(), executions
    assert restart.seconds < 30, restart.describe()
