import asyncio

import pytest
from taskiq import InMemoryBroker


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker()


def run(coro):
    """Run a coroutine on a fresh event loop (the suite needs no async plugin)."""
    return asyncio.run(coro)
