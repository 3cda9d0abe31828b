"""Per-task logs end to end: `taskiq-dataflow cluster ... --store DB --log-level INFO
--log-format json` prints a JSON line per record a task logs on its worker, naming the run and
the task; the same records are then in the store, printed by `runs logs` (cli/runs_logs.py,
driven by a script as the `runs` group will drive it). Real nats-server, real workers, the
console script in a subprocess, bounded times."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
from taskiq_dataflow import RunStore

from .support import CLI, ROOT, URL_ENV, Processes, run, start_server, wait_until

pytestmark = pytest.mark.e2e

FLOWS = textwrap.dedent(
    """
    import logging

    from taskiq_dataflow import DataflowRegistry, pipeline_task
    from taskiq_dataflow.cluster import DataflowNatsBroker

    broker = DataflowNatsBroker(heartbeat_interval=0.2)
    log = logging.getLogger("user.flow")


    @broker.task
    @pipeline_task(output="loaded")
    async def load(n: int) -> list[int]:
        log.info("loading %d rows", n)
        return list(range(n))


    @broker.task
    @pipeline_task(output="total", inputs=["loaded"])
    def total(loaded: list[int]) -> int:
        log.warning("summing %d rows", len(loaded))
        logging.getLogger("user.flow.debug").debug("not shown: below INFO")
        return sum(loaded)


    flow = DataflowRegistry()
    flow.register_external_input("n")
    flow.register_task(load)
    flow.register_task(total)


    @pipeline_task(output="here")
    async def here(n: int) -> int:  # not a broker task: `run` runs it in its own process
        log.info("here %d", n)
        return n


    local = DataflowRegistry()
    local.register_external_input("n")
    local.register_task(here)
    """
)

# the `runs` group (cli/runs.py) adds this command to its subparsers the same way, and the
# command line's main() turns a CLIError into its one line and exit code as this does
RUNS_LOGS = textwrap.dedent(
    """
    import argparse, sys
    from taskiq_dataflow.cli.runs_logs import add_logs_command
    from taskiq_dataflow.errors import CLIError

    parser = argparse.ArgumentParser(prog="taskiq-dataflow")
    runs = parser.add_subparsers(dest="command").add_parser("runs")
    add_logs_command(runs.add_subparsers(dest="runs_command_name"))
    args = parser.parse_args(sys.argv[1:])
    try:
        code = args.runs_command(args, sys.stdout, sys.stderr)
    except CLIError as exc:
        sys.stderr.write(f"taskiq-dataflow: error: {exc}\\n")
        code = exc.code
    sys.exit(code)
    """
)


def test_cluster_prints_json_task_logs_and_runs_logs_reads_them_back(procs: Processes) -> None:
    (procs.home / "log_flows.py").write_text(FLOWS)
    (procs.home / "runs_cli.py").write_text(RUNS_LOGS)
    env = procs.env(pythonpath=[ROOT / "python", procs.home])
    db = procs.home / "runs.db"
    cmd = [CLI, "cluster", "log_flows:broker", "log_flows:flow", "--workers", "1", "-i", "n=4",
           "--store", str(db), "--log-level", "INFO", "--log-format", "json",
           "--progress", "none"]  # fmt: skip
    outcome = run(procs, cmd, 60, env=env)
    assert outcome.code == 0, outcome.describe()
    assert outcome.stdout == "loaded: [0, 1, 2, 3]\ntotal: 6\n", outcome.describe()
    assert outcome.seconds < 30, outcome.describe()
    recorded = re.search(r"run ([0-9a-f]{32}) \(recorded in ", outcome.stderr)
    assert recorded, outcome.describe()
    run_id = recorded.group(1)

    lines = [json.loads(x) for x in outcome.stderr.splitlines() if x.startswith("{")]
    by_task = {line["task"]: line for line in lines if line["task"] is not None}  # DAG names
    assert set(by_task) == {"load", "total"}, outcome.describe()
    load, summing = by_task["load"], by_task["total"]
    assert (load["level"], load["logger"], load["message"]) == ("INFO", "user.flow",
                                                                "loading 4 rows")  # fmt: skip
    assert (summing["level"], summing["message"]) == ("WARNING", "summing 4 rows")
    for line in (load, summing):
        assert line["run_id"] == run_id and line["attempt"] == 1
        assert re.fullmatch(r".+-\d+-[0-9a-f]{6}", line["worker"]), line
        assert isinstance(line["time"], float)
    assert "not shown" not in outcome.stderr

    script = [sys.executable, str(procs.home / "runs_cli.py"), "runs", "logs", run_id[:8]]
    text = run(procs, [*script, "--store", str(db)], 30, env=env)  # RUN by a prefix of its id
    assert text.code == 0, text.describe()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO load\[1\] user\.flow: loading 4 rows\n"
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WARNING total\[1\] user\.flow: summing 4 rows\n",
        text.stdout,
    ), text.describe()
    assert text.seconds < 15, text.describe()

    only_env = {**env, "DATAFLOW_STORE": str(db)}  # the store as the runs group finds it
    only = run(procs, [*script, "total", "--json", "--level", "warning"], 30, env=only_env)
    assert only.code == 0, only.describe()
    [record] = [json.loads(x) for x in only.stdout.splitlines()]
    assert (record["task_name"], record["attempt"]) == ("total", 1)
    assert record["message"] == "summing 4 rows"

    unknown = run(procs, [*script, "nosuch", "--store", str(db)], 30, env=env)
    assert unknown.code == 2, unknown.describe()
    assert unknown.stderr == (
        f"taskiq-dataflow: error: run {run_id!r} has no task named 'nosuch' (store {db})\n"
    ), unknown.describe()


def test_runs_logs_names_a_missing_store_or_run(procs: Processes, tmp_path: Path) -> None:
    (procs.home / "runs_cli.py").write_text(RUNS_LOGS)
    env = procs.env(pythonpath=[ROOT / "python"])
    script = [sys.executable, str(procs.home / "runs_cli.py"), "runs", "logs"]
    missing = run(procs, [*script, "abc", "--store", str(tmp_path / "none.db")], 30, env=env)
    assert missing.code == 2, missing.describe()
    assert missing.stderr.startswith(
        f"taskiq-dataflow: error: no run store at '{tmp_path / 'none.db'}' (--store)"
    ), missing.describe()
    assert not (tmp_path / "none.db").exists()  # not created by looking
    empty = tmp_path / "runs.db"
    RunStore(empty).close()
    no_run = run(procs, [*script, "feedbeef", "--store", str(empty)], 30, env=env)
    assert no_run.code == 2, no_run.describe()
    assert no_run.stderr == (
        f"taskiq-dataflow: error: no run 'feedbeef' in {empty}; the store holds no runs\n"
    ), no_run.describe()


def test_run_shows_in_process_task_logs_at_its_log_level(procs: Processes) -> None:
    (procs.home / "log_flows.py").write_text(FLOWS)
    (procs.home / "runs_cli.py").write_text(RUNS_LOGS)
    env = procs.env(pythonpath=[ROOT / "python", procs.home])
    base = [CLI, "run", "log_flows:local", "-i", "n=5", "--progress", "none"]

    shown = run(procs, [*base, "--log-level", "info"], 30, env=env)
    assert shown.code == 0 and shown.stdout == "here: 5\n", shown.describe()
    assert "taskiq-dataflow: INFO user.flow: here 5\n" in shown.stderr, shown.describe()
    assert shown.seconds < 20, shown.describe()

    # the default shows WARNING and above, but a store still gets the task's INFO record
    db = procs.home / "runs.db"
    quiet = run(procs, [*base, "--store", str(db)], 30, env=env)
    assert quiet.code == 0 and "here 5" not in quiet.stderr, quiet.describe()
    recorded = re.search(r"run ([0-9a-f]{32}) \(recorded in ", quiet.stderr)
    assert recorded, quiet.describe()
    run_id = recorded.group(1)
    script = [sys.executable, str(procs.home / "runs_cli.py"), "runs", "logs", run_id]
    stored = run(procs, [*script, "--store", str(db), "--json"], 30, env=env)
    assert [json.loads(x)["message"] for x in stored.stdout.splitlines()] == ["here 5"]

    as_json = run(procs, [*base, "--log-level", "INFO", "--log-format", "json"], 30, env=env)
    assert as_json.code == 0, as_json.describe()
    [line] = [json.loads(x) for x in as_json.stderr.splitlines() if x.startswith("{")]
    assert (line["task"], line["attempt"], line["message"]) == ("here", 1, "here 5")
    assert re.fullmatch(r"[0-9a-f]{32}", line["run_id"]) and line["worker"] is None, line


def test_worker_log_level_info_shows_a_task_log_info(procs: Processes) -> None:
    """The users' report: worker logs were fixed at WARNING, so a task's log.info was lost."""
    (procs.home / "log_flows.py").write_text(FLOWS)
    server = start_server(procs)
    env = procs.env({URL_ENV: server.url}, pythonpath=[ROOT / "python", procs.home])
    log = procs.home / "worker.log"
    worker = procs.spawn([CLI, "worker", "log_flows:broker", "--workers", "1", "--log-level",
                          "INFO"], env=env, log=log)  # fmt: skip
    outcome = run(procs, [CLI, "run", "log_flows:flow", "-i", "n=3", "--progress", "none"], 60,
                  env=env)  # fmt: skip
    assert outcome.code == 0 and outcome.stdout == "loaded: [0, 1, 2]\ntotal: 3\n", (
        outcome.describe()
    )
    wait_until(lambda: "summing 3 rows" in log.read_text(errors="replace"), 10, "the worker log")
    procs.end_group(worker)
    text = log.read_text(errors="replace")
    assert re.search(r"user\.flow loading 3 rows\n", text), text
    assert "not shown: below INFO" not in text, text
    assert "serving pool" not in text, text  # the library's own INFO lines stay quiet
