"""Two services share one NATS server: `taskiq-dataflow worker` processes of each (different
task sets, in one pool or in a pool each) and an engine of a third service that knows their
tasks by name only (remote_run.py). Every run succeeds: each task goes only to workers that
advertise it, and the caller reads the remote stream as it is produced."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import taskiq_dataflow

from .support import E2E, TESTS, URL_ENV, Processes, Server, Workers

pytestmark = pytest.mark.e2e

BOUND = 60.0  # seconds for 20 runs (each a few ms once the workers are known)
POOL_ENV = "DATAFLOW_TEST_POOL"  # remote_services' brokers take their pool from it
# every process runs the package this session tests (a checkout's, not only the installed one)
PATHS = [Path(taskiq_dataflow.__file__).resolve().parents[1], E2E, TESTS]
PYTHONPATH = {"PYTHONPATH": ":".join(map(str, PATHS))}


def engine(procs: Processes, server: Server, *args: str) -> dict[str, Any]:
    log = procs.home / f"remote-run-{time.monotonic_ns()}.log"
    env = procs.env({URL_ENV: server.url}, pythonpath=PATHS)
    proc = procs.spawn([sys.executable, str(E2E / "remote_run.py"), *args], env=env, log=log)
    proc.wait(BOUND)
    lines = [line for line in Path(log).read_text().splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}:\n{log.read_text()[-3000:]}"
    return json.loads(lines[-1])


def expected(n: int) -> dict[str, Any]:
    items = [i * 10 for i in range(2 * n)]
    # 'bar' is read live by every reader (the caller and svc_a:total): it is not kept
    return {"doubled": 2 * n, "bar": None, "label": f"b saw {2 * n}", "total": items, "live": items}


def services(procs: Processes, server: Server, pool_a: str, pool_b: str) -> list[Workers]:
    started = [
        Workers(procs, server.url, target, 2, pool, {POOL_ENV: pool, **PYTHONPATH})
        for target, pool in (
            ("remote_services:service_a", pool_a),
            ("remote_services:service_b", pool_b),
        )
    ]
    return [w.ready() for w in started]


def test_two_services_in_one_pool_share_a_server(procs: Processes, e2e_server: Server) -> None:
    pools = services(procs, e2e_server, "default", "default")
    report = engine(procs, e2e_server, "20")
    assert report.get("results") == [expected(n) for n in range(1, 21)], report
    for workers in pools:
        procs.end_group(workers.process)


def test_two_services_each_in_its_pool_share_a_server(procs: Processes, e2e_server: Server) -> None:
    pools = services(procs, e2e_server, "svc-a", "svc-b")
    report = engine(procs, e2e_server, "20", "svc-a", "svc-b")
    assert report.get("results") == [expected(n) for n in range(1, 21)], report
    for workers in pools:
        procs.end_group(workers.process)
