"""Tasks for tests/test_cluster_latency_paths.py, imported by the test process and by the
workers (`latency_tasks:broker`, PYTHONPATH=tests).

The server comes from $DATAFLOW_NATS_URL (the broker's own default); a login from
$DATAFLOW_TEST_NATS_USER / $DATAFLOW_TEST_NATS_PASSWORD, TLS (the server's certificate
authority) from $DATAFLOW_TEST_TLS_CA, as the test's fixture sets them.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any

from taskiq_dataflow import DataflowRegistry
from taskiq_dataflow.cluster import DataflowNatsBroker

USER_ENV = "DATAFLOW_TEST_NATS_USER"
PASSWORD_ENV = "DATAFLOW_TEST_NATS_PASSWORD"
TLS_CA_ENV = "DATAFLOW_TEST_TLS_CA"


def connection(ca: str | None = None, user: str | None = None, password: str = "") -> Any:
    """nats-py connection options for a login and a server certificate signed by `ca`."""
    options: dict[str, Any] = {}
    if user:
        options.update(user=user, password=password)
    if ca:
        options["tls"] = ssl.create_default_context(cafile=ca)
    return options


broker = DataflowNatsBroker(
    heartbeat_interval=0.2,
    heartbeat_timeout=1.0,
    **connection(
        os.environ.get(TLS_CA_ENV), os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV, "")
    ),
)


@broker.task
async def first(seed: int) -> int:
    return seed


@broker.task
async def plus_one(a: int) -> int:
    return a + 1


@broker.task
async def times_ten(a: int) -> int:
    await asyncio.sleep(0)  # goes on as an asyncio task on the worker
    return a * 10


@broker.task
async def total(b: int, c: int) -> int:
    return b + c


@broker.task
def double(d: int) -> int:  # blocking: a thread on the worker
    return d * 2


@broker.task
async def in_a_task() -> bool:
    """Whether the worker ran it with a current asyncio task (as nats-py's callbacks run)."""
    return asyncio.current_task() is not None


def small_dag() -> Any:
    """a -> b, a -> c, (b, c) -> d, d -> e, from the input `seed`."""
    registry = DataflowRegistry()
    registry.register_external_input("seed")
    registry.register_task(first, output="a", inputs=["seed"])
    registry.register_task(plus_one, output="b", inputs=["a"])
    registry.register_task(times_ten, output="c", inputs=["a"])
    registry.register_task(total, output="d", inputs=["b", "c"])
    registry.register_task(double, output="e", inputs=["d"])
    return registry.build_dag()


def expected(seed: int) -> dict[str, int]:
    return {"a": seed, "b": seed + 1, "c": 10 * seed, "d": 11 * seed + 1, "e": 22 * seed + 2}
