"""Tasks for the issue-5 features on the cluster; workers load `feature_tasks:broker`."""

import os
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
