import asyncio

import pytest
from taskiq import InMemoryBroker
from taskiq_dataflow import DataflowRegistry


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker()


@pytest.fixture(scope="module")
def server():
    """A real nats-server on a free loopback port, shared by a test module's tests."""
    from taskiq_dataflow.cluster import NatsServer

    with NatsServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def workers(server):
    """One worker process serving cluster_tasks' default pool on `server`, for a module's tests
    (a module that needs other workers defines its own `workers`)."""
    from cluster_support import WorkerProcesses

    with WorkerProcesses(server.url, workers=1) as wp:
        yield wp


def run(coro):
    """Run a coroutine on a fresh event loop (the suite needs no async plugin)."""
    return asyncio.run(coro)


def registry_of(*tasks, external=()):
    """A registry of `tasks` (keys from their pipeline_task specs) with `external` declared."""
    registry = DataflowRegistry()
    for key in external:
        registry.register_external_input(key)
    for task in tasks:
        registry.register_task(task)
    return registry


def dag_of(*tasks, external=()):
    return registry_of(*tasks, external=external).build_dag()


def call_cli(capsys, *args):
    """`taskiq_dataflow.cli.main(args)` in this process (fast): (exit code, stdout, stderr);
    argparse's own usage errors count as their exit code."""
    from taskiq_dataflow.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err
