"""Fixtures of the end-to-end layer. Every process a test starts goes through `procs` (or the
module-wide `module_procs`); their teardown ends each process group and fails the test when a
nats-server, worker or CLI process it started is still alive afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import E2E, Processes, Server, Workers, start_server


def _closed(procs: Processes) -> None:
    survivors = procs.close()
    assert not survivors, (
        "processes started by the test survived its teardown (killed now): "
        + "; ".join(f"{pid}: {cmd}" for pid, cmd in survivors.items())
    )


@pytest.fixture
def procs() -> Iterator[Processes]:
    """Starts processes for one test; nothing it started may survive the test."""
    tracker = Processes()
    yield tracker
    _closed(tracker)


@pytest.fixture(scope="module")
def module_procs() -> Iterator[Processes]:
    """As `procs`, for what a whole module shares (a server, a pool of workers)."""
    tracker = Processes()
    yield tracker
    _closed(tracker)


@pytest.fixture(scope="module")
def e2e_server(module_procs: Processes) -> Server:
    """A real nats-server shared by a module's tests."""
    return start_server(module_procs)


@pytest.fixture(scope="module")
def e2e_workers(module_procs: Processes, e2e_server: Server) -> Workers:
    """Two real `taskiq-dataflow worker e2e_tasks:broker` processes serving the default pool."""
    return Workers(module_procs, e2e_server.url, workers=2).ready()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`-m e2e` / `-m "not e2e"` select this layer only if every module here is marked."""
    unmarked = sorted(
        {
            str(item.path.relative_to(config.rootpath))
            for item in items
            if item.path.is_relative_to(E2E) and item.get_closest_marker("e2e") is None
        }
    )
    if unmarked:
        raise pytest.UsageError(
            f"{', '.join(unmarked)}: every module of tests/e2e sets `pytestmark = pytest.mark.e2e`"
        )
