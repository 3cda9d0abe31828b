"""Cluster faults that need a server of their own: credentials, and the server going away."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import cluster_tasks
import pytest
from cluster_support import WorkerProcesses, index_dag
from conftest import run
from taskiq_dataflow import DataflowRegistry, ExecutionEngine
from taskiq_dataflow.cluster import ClusterError, DataflowNatsBroker, NatsServer

USER, PASSWORD = "alice", "s3cret pass"


@pytest.fixture(scope="module")
def faults():
    """A server with a login and its worker; a plain server (to stop mid-run) and its worker."""
    with (
        NatsServer(extra_args=["--user", USER, "--pass", PASSWORD]) as secure,
        NatsServer() as fragile,
    ):
        secure_workers = WorkerProcesses(
            secure.url,
            env={cluster_tasks.USER_ENV: USER, cluster_tasks.PASSWORD_ENV: PASSWORD},
            connect={"user": USER, "password": PASSWORD},
        )
        fragile_workers = WorkerProcesses(fragile.url, concurrency=8)
        started = []
        try:
            for wp in (secure_workers, fragile_workers):
                started.append(wp.launch())
            for wp in started:
                wp.ready()
            yield SimpleNamespace(
                secure=secure,
                secure_workers=secure_workers,
                fragile=fragile,
                fragile_workers=fragile_workers,
            )
        finally:
            for wp in started:
                wp.stop()


@pytest.fixture
def fragile(faults):
    """The stoppable server, running, with its worker connected (a previous test may have
    stopped it)."""
    if faults.fragile.process is None:
        faults.fragile.start()
    faults.fragile_workers.wait_ready(1, timeout=20)
    return faults.fragile


def where_dag() -> Any:
    registry = DataflowRegistry()
    registry.register_task(cluster_tasks.where, output="where", inputs=[])
    return registry.build_dag()


# -- credentials ---------------------------------------------------------------------------------


def test_broker_without_credentials_fails_clearly(faults):
    broker = DataflowNatsBroker(faults.secure.url, progress_timeout=10)
    started = time.monotonic()
    with pytest.raises(ClusterError) as info:
        run(ExecutionEngine(broker, where_dag()).execute())
    message = str(info.value)
    assert f"cannot connect to NATS at {faults.secure.url}" in message
    assert "Authorization Violation" in message and "user=/password=" in message
    assert time.monotonic() - started < 5  # refused at once, not after progress_timeout


def test_broker_with_wrong_password_fails_clearly(faults):
    broker = DataflowNatsBroker(faults.secure.url, user=USER, password="nope", progress_timeout=10)
    with pytest.raises(ClusterError, match="refused the login"):
        run(ExecutionEngine(broker, where_dag()).execute())


def test_broker_with_credentials_runs_on_workers_with_credentials(faults):
    broker = DataflowNatsBroker(
        faults.secure.url, user=USER, password=PASSWORD, codec=cluster_tasks.codec
    )
    out = run(ExecutionEngine(broker, where_dag()).execute())
    assert out["where"]["pid"] in faults.secure_workers.children()


# -- the server going away mid-run ---------------------------------------------------------------


def stop_server_after(server: NatsServer, steps: int, restart_after: float | None = None):
    """An on_step_complete callback that stops `server` after `steps` completions (and starts
    it again `restart_after` seconds later); `.stopped_at` / `.restarted` record what it did."""
    state = SimpleNamespace(count=0, stopped_at=None, restarted=False)

    def restart() -> None:
        server.start()
        state.restarted = True

    def on_step(name: str, result: Any) -> None:
        state.count += 1
        if state.count == steps:
            server.stop()
            state.stopped_at = time.monotonic()
            if restart_after is not None:
                asyncio.get_running_loop().call_later(restart_after, restart)

    state.callback = on_step
    return state


def test_server_stopped_mid_run_fails_with_cluster_error(faults, fragile):
    progress_timeout = 3.0
    broker = DataflowNatsBroker(
        fragile.url, heartbeat_timeout=1.0, progress_timeout=progress_timeout
    )
    dag, inputs = index_dag(100, delay=0.05)
    stopper = stop_server_after(fragile, 5)
    engine = ExecutionEngine(broker, dag, max_parallel=8, on_step_complete=stopper.callback)
    with pytest.raises(ClusterError) as info:
        run(engine.execute(inputs))
    elapsed = time.monotonic() - stopper.stopped_at
    message = str(info.value)
    assert f"made no progress for {progress_timeout:.0f} s" in message
    assert "nothing heard from the NATS server" in message and fragile.url in message
    # measured from the stop, a little after the last thing heard
    assert progress_timeout - 0.5 <= elapsed < progress_timeout + 2.5, elapsed


def test_server_restarted_mid_run_completes(faults, fragile):
    """The server is back (same port, same store) well within progress_timeout, after an outage
    longer than heartbeat_timeout * max_redeliveries: the outage must not use up redeliveries."""
    port, store_dir = fragile.port, fragile.store_dir
    broker = DataflowNatsBroker(
        fragile.url, heartbeat_timeout=0.5, max_redeliveries=3, progress_timeout=10.0
    )
    dag, inputs = index_dag(60, delay=0.05)
    stopper = stop_server_after(fragile, 5, restart_after=2.5)
    engine = ExecutionEngine(broker, dag, max_parallel=8, on_step_complete=stopper.callback)
    out = run(engine.execute(inputs))
    assert stopper.restarted and (fragile.port, fragile.store_dir) == (port, store_dir)
    assert out == {f"k{i}": i for i in range(60)}
    assert stopper.count == 60
    assert engine.stats["redeliveries"] >= 1, engine.stats  # what the outage lost went again
