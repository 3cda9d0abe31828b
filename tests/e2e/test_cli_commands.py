"""The `taskiq-dataflow` command end to end: real nats-servers, real `taskiq-dataflow worker`
processes, the console script in a subprocess. Where tasks ran (pids), exit codes, the one error
line, and bounded times."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from .support import (
    CLI,
    URL_ENV,
    Processes,
    Workers,
    cmdline,
    descendants,
    free_port,
    listening,
    run,
    start_server,
    wait_until,
)

pytestmark = pytest.mark.e2e

EXAMPLE = "examples.cluster_example"
SLOW = textwrap.dedent(
    """
    import asyncio
    import logging
    import time

    from taskiq_dataflow import DataflowRegistry, pipeline_task
    from taskiq_dataflow.cluster import DataflowNatsBroker

    broker = DataflowNatsBroker()


    @pipeline_task(output="a")
    async def waits(n: int) -> int:
        await asyncio.sleep(60)
        return n


    @pipeline_task(output="b")
    def blocks(n: int) -> int:  # in a thread: cannot be cancelled, must not delay the exit
        time.sleep(60)
        return n


    @broker.task
    @pipeline_task(output="c")
    async def remote(n: int) -> int:
        await asyncio.sleep(60)
        return n


    @broker.task
    @pipeline_task(output="said")
    async def talks(n: int) -> int:
        logging.getLogger("user.task").warning("worker says hi %d", n)
        await asyncio.sleep(0.8)  # a bar to write above, redrawn meanwhile
        return n


    local = DataflowRegistry()
    local.register_task(waits)
    local.register_task(blocks)
    on_cluster = DataflowRegistry()
    on_cluster.register_task(remote)
    chatty = DataflowRegistry()
    chatty.register_task(talks)
    """
)


def pids_ran_on(stdout: str) -> set[int]:
    report = json.loads(stdout)["report"]
    return {where["pid"] for where in report["ran_on"].values()}


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, stderr
    return errors[0]


def test_cluster_runs_the_tasks_on_the_workers_it_started(procs: Processes) -> None:
    cmd = [CLI, "cluster", f"{EXAMPLE}:broker", f"{EXAMPLE}:registry", "--workers", "2",
           "-i", "source=data.csv", "--json"]  # fmt: skip
    outcome = run(procs, cmd, 60)
    assert outcome.code == 0, outcome.describe()
    ready = re.search(r"2 worker\(s\) of pool 'default' ready: pids (\d+), (\d+)", outcome.stderr)
    assert ready, outcome.describe()
    workers = {int(pid) for pid in ready.groups()}
    ran_on = pids_ran_on(outcome.stdout)
    assert ran_on <= workers, outcome.describe()
    assert procs.started[-1].pid not in ran_on  # not the CLI's own process


def test_run_sends_a_registry_to_the_workers(procs: Processes) -> None:
    server = start_server(procs)
    workers = Workers(procs, server.url, target=f"{EXAMPLE}:broker", workers=2).ready()
    cmd = [CLI, "run", f"{EXAMPLE}:registry", "-i", "source=data.csv", "--json"]
    outcome = run(procs, cmd, 30, env=procs.env({URL_ENV: server.url}))
    assert outcome.code == 0, outcome.describe()
    assert pids_ran_on(outcome.stdout) <= workers.beating_pids(), outcome.describe()


@pytest.mark.parametrize(
    ("command", "code", "bound"),
    [
        # the default unreachable timeout (5 s) for run; a shorter one, set by the variable
        (["run", f"{EXAMPLE}:registry", "-i", "source=x"], 1, None),
        (["worker", f"{EXAMPLE}:broker", "--workers", "2"], 3, "1"),
    ],
    ids=["run", "worker"],
)
def test_unreachable_server_is_one_line_in_bounded_time(
    procs: Processes, command: list[str], code: int, bound: str | None
) -> None:
    env = {URL_ENV: "nats://alice:s3cret@127.0.0.1:1"}
    if bound:
        env["DATAFLOW_CONNECT_TIMEOUT"] = bound
    outcome = run(procs, [CLI, *command], 20, env=procs.env(env))
    assert outcome.code == code, outcome.describe()
    line = one_error_line(outcome.stderr)
    assert "cannot connect to NATS at nats://alice:***@127.0.0.1:1 within" in line
    assert "s3cret" not in outcome.stdout + outcome.stderr
    assert len(outcome.stderr.splitlines()) <= 2, outcome.describe()  # no nats-py noise
    assert outcome.seconds < 15, outcome.describe()


def test_worker_without_credentials_is_one_line_and_no_restarts(procs: Processes) -> None:
    server = start_server(procs, extra=["--user", "alice", "--pass", "s3cret"])
    cmd = [CLI, "worker", f"{EXAMPLE}:broker", "--workers", "2"]
    outcome = run(procs, cmd, 20, env=procs.env({URL_ENV: server.url}))
    assert outcome.code == 3, outcome.describe()
    assert "refused the login" in one_error_line(outcome.stderr)
    assert len(outcome.stderr.splitlines()) == 1, outcome.describe()
    assert outcome.seconds < 10, outcome.describe()


def test_supervisor_gives_up_on_a_crash_loop_with_a_non_zero_exit(procs: Processes) -> None:
    server = start_server(procs)
    (procs.home / "crashing.py").write_text(
        "import sys\nfrom taskiq_dataflow.cluster import DataflowNatsBroker\n"
        "broker = DataflowNatsBroker()\n"
        "if '--child' in sys.argv:\n    raise SystemExit(7)  # every worker dies at start\n"
    )
    env = procs.env({URL_ENV: server.url}, pythonpath=[procs.home])
    cmd = [CLI, "worker", "crashing:broker", "--workers", "1", "--max-restarts", "2"]
    outcome = run(procs, cmd, 60, env=env)
    assert outcome.code == 1, outcome.describe()
    assert "(3 restarts in 60 s" in one_error_line(outcome.stderr), outcome.describe()


def spawn_cli(procs: Processes, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    (procs.home / "slow_flows.py").write_text(SLOW)
    return procs.spawn([CLI, *args], env=env, log=procs.home / "cli.log")


def interrupt_when(procs: Processes, proc: subprocess.Popen[bytes], marker: str) -> str:
    log = procs.home / "cli.log"
    wait_until(lambda: marker in log.read_text(errors="replace"), 30, repr(marker))
    time.sleep(0.3)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)  # the CLI only, as a terminal's Ctrl-C reaches the group
    proc.wait(20)
    assert time.monotonic() - start < 15
    return log.read_text(errors="replace")


def test_cluster_writes_worker_lines_above_the_bar(procs: Processes) -> None:
    (procs.home / "slow_flows.py").write_text(SLOW)
    env = procs.env(pythonpath=[procs.home])
    cmd = [CLI, "cluster", "slow_flows:broker", "slow_flows:chatty", "--workers", "1",
           "-i", "n=7", "--progress", "bar"]  # fmt: skip
    outcome = run(procs, cmd, 60, env=env)
    assert outcome.code == 0, outcome.describe()
    assert outcome.stdout == "said: 7\n"
    # tqdm draws the bar with '\r' and no newline; a line written above it clears the bar
    # first and ends with its own newline, so it never shares a line with the bar
    (line,) = [x for x in outcome.stderr.split("\n") if "worker says hi 7" in x]
    text = line.rsplit("\r", 1)[-1]
    assert text.endswith("user.task worker says hi 7"), repr(line)
    assert "task/s" not in text and "%|" not in text, repr(line)
    assert "started 1 worker process(es)" in outcome.stderr  # the supervisor's own line too


def test_ctrl_c_cancels_run_with_exit_130(procs: Processes) -> None:
    env = procs.env(pythonpath=[procs.home])
    proc = spawn_cli(procs, ["run", "slow_flows:local", "-i", "n=1"], env)
    output = interrupt_when(procs, proc, "progress 0/2")
    assert proc.returncode == 130, output
    assert "finished cancelled" in output and "finished failed" not in output, output
    assert "the run was cancelled by Ctrl-C" in one_error_line(output)


def test_ctrl_c_cancels_cluster_without_noise(procs: Processes) -> None:
    env = procs.env(pythonpath=[procs.home])
    args = ["cluster", "slow_flows:broker", "slow_flows:on_cluster", "--workers", "1", "-i", "n=1"]
    proc = spawn_cli(procs, args, env)
    output = interrupt_when(procs, proc, "progress 0/1")
    assert proc.returncode == 130, output
    assert "the run was cancelled by Ctrl-C" in one_error_line(output)
    for noise in ("EOF", "Traceback", "Error", "exited with"):
        assert noise not in output.replace("error: the run was", ""), output
    assert not descendants(proc.pid), "the cluster's server or workers outlived it"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_server_stops_its_nats_server_and_removes_its_store(procs: Processes, sig: int) -> None:
    port = free_port()
    env = procs.env()
    proc = procs.spawn([CLI, "server", "--port", str(port)], env=env, log=procs.home / "srv.log")
    wait_until(lambda: listening(port), 10, "the server to listen")
    (nats,) = [p for p in descendants(proc.pid) if "nats-server" in cmdline(p)]
    store = Path(cmdline(nats).split(" -sd ")[1].split()[0])
    assert store.is_dir() and str(store).startswith(env["TMPDIR"])  # a temporary dir
    os.kill(proc.pid, sig)  # the command only: nats-server must not need the group's signal
    proc.wait(10)
    wait_until(lambda: not Path(f"/proc/{nats}").exists() or "Z" in _state(nats), 10, "exit")
    assert not listening(port)
    if sig == signal.SIGTERM:
        assert proc.returncode == 0
        assert not store.exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
