"""Tasks for the issue-5 features on the cluster; workers load `feature_tasks:broker`."""

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from cluster_tasks import broker
from taskiq_dataflow import Depends, pipeline_task

__all__ = ["broker"]


def get_multiplier() -> int:
    return 3


def note(name: str) -> None:
    """Append to the log file the test names, so the test sees what ran on the workers."""
    path = os.environ.get("DATAFLOW_TEST_LOG")
    if path:
        with Path(path).open("a") as f:
            f.write(f"{name}\n")


@broker.task
@pipeline_task(output="scaled")
async def scale(value: int, multiplier: int = Depends(get_multiplier)) -> int:
    note("scale")
    return value * multiplier


@broker.task
@pipeline_task(output="costly", cache=True)
def costly(value: int) -> tuple:
    note("costly")
    return (value, value * 2)


@broker.task
@pipeline_task(output="charged")
def charge(scaled: int) -> dict:
    note("charge")
    return {"charged": scaled}


@broker.task
@pipeline_task(output="shipped")
def ship(charged: dict, fail: bool) -> str:
    note("ship")
    if fail:
        raise RuntimeError("the ship sank")
    return "shipped"


@broker.task
@pipeline_task(output="total")
def total(numbers: list) -> int:
    note("total")
    return sum(numbers)


# -- streams between workers ---------------------------------------------------------------------


async def _ticks(count: int, pause: float):
    for i in range(count):
        if pause:
            await asyncio.sleep(pause)
        yield [i, time.time()]


@broker.task
@pipeline_task(output="ticks")
async def ticks(count: int, pause: float):
    """Yields [i, the time it was made]; the same items again when redelivered."""
    async for item in _ticks(count, pause):
        yield item


@broker.task
@pipeline_task(output="ticks", pool="streamgen")
async def ticks_in_own_pool(count: int, pause: float):
    """`ticks` on the "streamgen" pool, whose worker a test kills mid-stream."""
    async for item in _ticks(count, pause):
        yield item


@broker.task
@pipeline_task(output="seen", stream_buffer=4)
async def seen(ticks: AsyncIterator[list], lag: float) -> list:
    """[i, made, the time this consumer got it] per item."""
    out = []
    async for i, made in ticks:
        out.append([i, made, time.time()])
        if lag:
            await asyncio.sleep(lag)
    return out


@broker.task
@pipeline_task(output="broken")
async def broken(count: int):
    for i in range(count):
        yield i
    raise ValueError("the well ran dry")


@broker.task
@pipeline_task(output="sipped")
async def sipped(broken: AsyncIterator[int]) -> int:
    return sum([i async for i in broken])


@broker.task
@pipeline_task(output="tally")
def tally(ticks: list) -> list:
    """A list consumer of the stream: gets it whole."""
    return [i for i, _ in ticks]


# -- compensations that run on the workers ------------------------------------------------------


@broker.task
async def refund(charged: dict) -> None:
    note(f"refund:{charged['charged']}")


@broker.task
def refund_fails(charged: dict) -> None:
    note("refund_fails")
    raise RuntimeError("the bank is closed")


@broker.task
@pipeline_task(output="doubled")
async def double_ticks(ticks: AsyncIterator[list]):
    """A stream in, a stream out: starts with its producer, its consumer starts with it."""
    async for i, made in ticks:
        yield [i * 2, made]


@broker.task
@pipeline_task(output="seen", pool="streamuse", stream_buffer=4)
async def seen_in_own_pool(ticks: AsyncIterator[list]) -> list:
    """`seen` on the "streamuse" pool, whose worker a test kills mid-stream."""
    return [i async for i, _ in ticks]
