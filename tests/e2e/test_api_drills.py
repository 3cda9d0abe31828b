"""Failure drills through the Python API (an engine in a script of its own) and the CLI: a
server that cannot be reached, and a task routed to a pool that no worker serves. Each fails
with one clear line that names the culprit and the fix, in a bounded time, with no traceback
noise."""

from __future__ import annotations

import json
import sys

import pytest

from .support import (
    CLI,
    E2E,
    TESTS,
    URL_ENV,
    Outcome,
    Processes,
    Server,
    Workers,
    run,
    start_server,
)

pytestmark = pytest.mark.e2e

# how long the drills may take: the README documents "within 5 s" for a server that cannot be
# reached (doubled for a loaded machine); the broker's timeouts below make the others quick
UNREACHABLE_BOUND = 10.0
NO_WORKER_BOUND = 15.0
# a quick failure detection, through the broker's own settings (read by e2e_tasks.make_broker)
QUICK = {"E2E_HEARTBEAT_TIMEOUT": "0.5", "E2E_MAX_REDELIVERIES": "1"}


def engine(procs: Processes, url: str, *graph: str, env: dict[str, str] | None = None):
    """Run tests/e2e/engine_run.py on `url`; returns the outcome and its JSON line."""
    environment = procs.env({URL_ENV: url, **(env or {})}, pythonpath=[E2E, TESTS])
    cmd = [sys.executable, str(E2E / "engine_run.py"), *graph]
    outcome = run(procs, cmd, timeout=60, env=environment, cwd=E2E)
    lines = [ln for ln in outcome.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"the engine printed no outcome: {outcome.describe()}"
    return outcome, json.loads(lines[-1])


def assert_quiet(outcome: Outcome) -> None:
    """No traceback and no line per failed attempt: the user reads one error."""
    assert "Traceback" not in outcome.stderr, outcome.describe()
    assert len(outcome.stderr.splitlines()) <= 3, (
        f"{len(outcome.stderr.splitlines())} lines of noise on stderr: {outcome.describe()}"
    )


@pytest.mark.parametrize(
    ("url", "env", "bound"),
    [
        ("nats://127.0.0.1:1", {}, UNREACHABLE_BOUND),
        # the bound is the broker's connect timeout: 1 s here, the default being 5 s
        ("nats://alice:s3cret-pw@127.0.0.1:1", {"DATAFLOW_CONNECT_TIMEOUT": "1"}, 4.0),
    ],
    ids=["default-timeout", "credentials-and-a-1s-timeout"],
)
def test_an_unreachable_server_fails_the_run_with_one_cluster_error_line(
    procs: Processes, url: str, env: dict[str, str], bound: float
):
    outcome, result = engine(procs, url, "spread", "2", "0", env=env)
    error = result.get("error", "")
    assert outcome.code == 1 and error.startswith("ClusterError: "), outcome.describe()
    assert "\n" not in error, f"not one line: {error!r}"
    assert "127.0.0.1:1" in error, f"the error does not name the server: {error!r}"
    assert "s3cret-pw" not in outcome.stdout + outcome.stderr, "the password was printed"
    assert result["seconds"] < bound and outcome.seconds < UNREACHABLE_BOUND, result
    assert_quiet(outcome)


def assert_names_the_pool(text: str) -> None:
    assert "'gpu'" in text, f"the error does not name the pool: {text!r}"
    assert "taskiq-dataflow worker" in text and "--pool gpu" in text, (
        f"the error does not say how to start a worker for the pool: {text!r}"
    )


def test_a_task_for_a_pool_nobody_serves_fails_naming_the_pool(
    procs: Processes, e2e_server: Server, e2e_workers: Workers
):
    """Workers serve the default pool; the task is for 'gpu'."""
    outcome, result = engine(procs, e2e_server.url, "gpu", env=QUICK)
    assert outcome.code == 1 and "error" in result, outcome.describe()
    assert_names_the_pool(result["error"])
    assert result["seconds"] < NO_WORKER_BOUND, result
    assert_quiet(outcome)


def test_a_task_for_a_pool_fails_naming_it_when_no_worker_runs_at_all(procs: Processes):
    server = start_server(procs)
    outcome, result = engine(procs, server.url, "gpu", env=QUICK)
    assert outcome.code == 1 and "error" in result, outcome.describe()
    assert_names_the_pool(result["error"])
    assert result["seconds"] < NO_WORKER_BOUND, result
    assert_quiet(outcome)


def test_the_cli_run_of_a_task_for_a_pool_nobody_serves_fails_naming_the_pool(
    procs: Processes, e2e_server: Server, e2e_workers: Workers
):
    env = procs.env({URL_ENV: e2e_server.url, **QUICK}, pythonpath=[E2E])
    outcome = run(procs, [CLI, "run", "e2e_tasks:gpu_registry"], timeout=60, env=env)
    assert outcome.code == 1, outcome.describe()
    errors = [ln for ln in outcome.stderr.splitlines() if "error" in ln.lower()]
    assert errors, outcome.describe()
    assert_names_the_pool(outcome.stderr)
    assert outcome.seconds < NO_WORKER_BOUND, outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
