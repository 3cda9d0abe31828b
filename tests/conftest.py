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


# the modules that take longest (tens of seconds each, measured serially), longest first; an
# entry is a prefix of module paths (test_multihost: every tests/e2e/test_multihost*.py)
SLOW_MODULES = (
    "tests/e2e/test_multihost",
    "tests/e2e/test_wheel_install.py",
    "tests/e2e/test_dashboard_browser.py",
    "tests/e2e/test_readme_commands.py",
    "tests/e2e/test_cli_commands.py",
    "tests/e2e/test_runs_commands.py",
    "tests/e2e/test_dashboard_page.py",
    "tests/e2e/test_hostile_frames.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (scripts/test: `-n 2 --dist loadfile --no-loadscope-reorder`, a
    module to one worker, modules handed out in collection order) the slowest modules go first,
    so that no worker is left running one of them alone at the end. A plain run keeps the
    collection order."""
    if not hasattr(config, "workerinput"):
        return

    def key(item: pytest.Item) -> int:
        path = item.path.relative_to(config.rootpath).as_posix()
        return next(
            (i for i, m in enumerate(SLOW_MODULES) if path.startswith(m)), len(SLOW_MODULES)
        )

    items.sort(key=key)  # stable: the rest, and the tests within a module, keep their order
