"""Several server URLs on the command line, and `taskiq-dataflow server --cluster --routes`, on
loopback: two servers routed into one cluster, a worker on one, the engine on the other, and
the errors of bad, missing and unreachable URLs (the multi-host drills are test_multihost.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from .support import (
    CLI,
    URL_ENV,
    Processes,
    descendants,
    free_port,
    listening,
    run,
    wait_until,
)
from .test_cli_commands import EXAMPLE, one_error_line

pytestmark = pytest.mark.e2e


def clustered_servers(procs: Processes) -> tuple[list[str], list[Any]]:
    """Two `taskiq-dataflow server`s on loopback, routed to each other: their client URLs and
    their processes."""
    ports = [(free_port(), free_port()) for _ in range(2)]
    servers = []
    for i, (client, route) in enumerate(ports):
        other = ports[1 - i][1]
        servers.append(procs.spawn(
            [CLI, "server", "--port", str(client), "--cluster", str(route), "--routes",
             f"nats://127.0.0.1:{other}", "--name", f"n{i}"],
            log=procs.home / f"server-{i}.log",
        ))  # fmt: skip
    for client, _ in ports:
        wait_until(lambda c=client: listening(c), 15, "a clustered server")
    return [f"nats://127.0.0.1:{client}" for client, _ in ports], servers


def ran_on(procs: Processes, cmd: list[str], env: dict[str, str], timeout: float) -> set[int]:
    """The pids that ran the example's tasks, once a run of `cmd` took them to a worker
    (until the routes carry the worker's heartbeats to the engine's server)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = run(procs, cmd, 60, env=env)
        assert outcome.code == 0, outcome.describe()
        pids = {v["pid"] for v in json.loads(outcome.stdout)["report"]["ran_on"].values()}
        if outcome.seconds < 5:
            return pids
        assert time.monotonic() < deadline, outcome.describe()


def test_worker_and_engine_on_different_servers_of_one_cluster(procs: Processes) -> None:
    (a, b), servers = clustered_servers(procs)
    log = procs.home / "server-0.log"
    wait_until(lambda: "cluster 'dataflow'" in log.read_text(), 10, "the server's banner")
    # the broker's own URL is unreachable: --server replaces it
    env = procs.env({URL_ENV: "nats://127.0.0.1:1"})
    # the worker is given b alone: it learns a from b's INFO (the cluster advertises it)
    workers = procs.spawn(
        [CLI, "worker", f"{EXAMPLE}:broker", "--workers", "1", "--server", b],
        env=env,
        log=procs.home / "worker.log",
    )
    cmd = [CLI, "run", f"{EXAMPLE}:registry", "-i", "source=x", "--json", "--server", a,
           "--progress", "none"]  # fmt: skip
    pids = ran_on(procs, cmd, env, 30)
    children = descendants(workers.pid)
    assert pids and pids <= set(children), (pids, children)  # the worker ran them, not the CLI
    # b dies: the worker fails over to a, the server it was never given, and serves on
    servers[1].kill()
    servers[1].wait(10)
    assert ran_on(procs, cmd, env, 30) == pids
    assert descendants(workers.pid) == children  # the same worker process, not a restart


@pytest.mark.parametrize(
    ("command", "culprit"),
    [
        (["run", f"{EXAMPLE}:registry", "--server", "http://h:4222"], "has scheme 'http'"),
        (["worker", f"{EXAMPLE}:broker", "--server", "nats://ok:4222,nats://:4222"], "no host"),
        (["server", "--routes", "nats://127.0.0.1:6222"], "--routes needs --cluster"),
    ],
    ids=["scheme", "no-host", "routes-without-cluster"],
)
def test_bad_urls_are_one_line_naming_the_culprit(
    procs: Processes, command: list[str], culprit: str
) -> None:
    outcome = run(procs, [CLI, *command], 20, env=procs.env())
    assert outcome.code == 2, outcome.describe()
    assert culprit in outcome.stderr, outcome.describe()
    assert "Traceback" not in outcome.stderr


def test_every_server_unreachable_is_one_line_naming_them_all(procs: Processes) -> None:
    urls = "nats://127.0.0.1:1,nats://alice:s3cret@127.0.0.1:2"
    env = procs.env({"DATAFLOW_CONNECT_TIMEOUT": "1"})
    cmd = [CLI, "worker", f"{EXAMPLE}:broker", "--workers", "1", "--server", urls]
    outcome = run(procs, cmd, 20, env=env)
    assert outcome.code == 3, outcome.describe()
    line = one_error_line(outcome.stderr)
    assert "127.0.0.1:1" in line and "alice:***@127.0.0.1:2" in line, line
    assert "s3cret" not in outcome.stderr
    assert outcome.seconds < 10, outcome.describe()


def test_server_option_on_an_in_process_pipeline_says_it_does_not_apply(
    procs: Processes,
) -> None:
    cmd = [CLI, "run", "examples.demo:registry", "-i", "source=x", "--server", "nats://h:4222"]
    outcome = run(procs, cmd, 30, env=procs.env())
    assert outcome.code == 2, outcome.describe()
    assert "--server is for tasks of a DataflowNatsBroker" in one_error_line(outcome.stderr)
