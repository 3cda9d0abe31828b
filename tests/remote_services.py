"""Two services for the remote task tests: each its own module and broker, with tasks the other
(and the engine's process) does not have. Workers load `remote_services:service_a` or
`remote_services:service_b`; the engine refers to their tasks by name only (RemoteTask).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.streams import StreamItem

POOL_ENV = "DATAFLOW_TEST_POOL"
_pool = os.environ.get(POOL_ENV, "default")

service_a = DataflowNatsBroker(pool=_pool)
service_b = DataflowNatsBroker(pool=_pool)


@service_a.task(task_name="svc_a:double")
async def double(foo: int) -> int:
    return foo * 2


@service_a.task(task_name="svc_a:total")
async def total(bar: AsyncIterator[int]) -> list[int]:
    # what arrived while the producer was still running: the stream was read live
    return [value async for value in bar]


@service_a.task(task_name="svc_a:evens")
async def evens(evens: AsyncIterator[int]) -> list[int]:
    return [value async for value in evens]


@service_b.task(task_name="svc_b:count")
async def count(doubled: int) -> AsyncIterator[int]:
    for i in range(doubled):
        yield i * 10


@service_b.task(task_name="svc_b:label")
def label(doubled: int) -> str:
    return f"b saw {doubled}"


@service_b.task(task_name="svc_b:split")
async def split(doubled: int) -> AsyncIterator[StreamItem]:
    for i in range(doubled):
        yield StreamItem("evens" if i % 2 == 0 else "odds", i)
