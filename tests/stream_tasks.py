"""Stream tasks for the run-semantics tests on the cluster (issue 9 items 7 and 8); workers
load `stream_tasks:broker`. Producers and consumers sit in pools of their own, so each runs on
its own worker and every item crosses between two workers."""

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

from cluster_tasks import broker
from taskiq_dataflow import pipeline_task

__all__ = ["broker"]

MAKER, READER = "runs-make", "runs-read"


@broker.task
@pipeline_task(output="ticks", pool=MAKER)
async def endless(marker: str):
    """Counts for ever; writes `marker` when it is stopped, so the test sees it was."""
    try:
        for i in itertools.count():
            await asyncio.sleep(0.005)
            yield i
    finally:
        Path(marker).write_text("stopped")


@broker.task
@pipeline_task(output="checked", pool=READER)
async def fussy(ticks: AsyncIterator[int]) -> int:
    async for i in ticks:
        if i == 3:
            raise ValueError(f"item {i} is not welcome")
    return -1


@broker.task
@pipeline_task(output="report", pool=READER)
async def report(checked: int) -> str:
    return f"checked {checked}"


@broker.task
@pipeline_task(output="blobs", pool=MAKER)
async def blobs(count: int, size: int):
    """`count` items of `size` bytes: above the large-value threshold, each item travels
    through the JetStream object store."""
    for i in range(count):
        yield bytes([i % 256]) * size


@broker.task
@pipeline_task(output="sizes", pool=READER, stream_buffer=2)
async def sizes(blobs: AsyncIterator[bytes], wanted: int) -> list:
    """The first `wanted` items' (first byte, length); stops reading there."""
    out = []
    async for blob in blobs:
        out.append([blob[0], len(blob)])
        if len(out) == wanted:
            break
    return out


@broker.task
@pipeline_task(output="slow_ticks", pool=MAKER)
async def sleepy(marker: str, pause: float):
    """An item, then `pause` seconds before each next one; writes `marker` when stopped."""
    try:
        for i in itertools.count():
            yield i
            await asyncio.sleep(pause)
    finally:
        Path(marker).write_text("stopped")


@broker.task
@pipeline_task(output="first_tick", pool=READER)
async def first_tick(slow_ticks: AsyncIterator[int]) -> int:
    async for i in slow_ticks:
        return i
    return -1
