"""Tasks that log, for the cluster tests of per-task log capture: imported by the test process
and by the workers (`log_tasks:broker`, PYTHONPATH=tests), so that task names match."""

from __future__ import annotations

import asyncio
import logging

from taskiq_dataflow import DataflowRegistry, pipeline_task
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.task_logs import MAX_RECORDS

# the server comes from DATAFLOW_NATS_URL (set by the fixture), read by the broker itself
broker = DataflowNatsBroker(heartbeat_interval=0.2, heartbeat_timeout=1.0)
log = logging.getLogger("user.cluster")


@broker.task
@pipeline_task(output="greeting", inputs=["name"])
async def greet(name: str) -> str:
    log.info("greeting %s", name)  # an INFO record: workers log at WARNING on stderr
    await asyncio.sleep(0.01)
    log.warning("greeted %s", name)
    return f"hello {name}"


@broker.task
@pipeline_task(output="size", inputs=["greeting"])
def measure(greeting: str) -> int:
    logging.getLogger("user.cluster.thread").info("measuring %r in a thread", greeting)
    return len(greeting)


@broker.task
@pipeline_task(output="lines")
async def floods() -> int:
    for i in range(MAX_RECORDS + 10):
        log.info("line %d", i)
    return MAX_RECORDS + 10


@broker.task
@pipeline_task(output="never")
def breaks() -> int:
    try:
        raise KeyError("gone")
    except KeyError:
        log.exception("lookup failed")
    raise RuntimeError("broken on purpose")


greeting = DataflowRegistry()
greeting.register_external_input("name")
greeting.register_task(greet)
greeting.register_task(measure)

flooding = DataflowRegistry()
flooding.register_task(floods)

breaking = DataflowRegistry()
breaking.register_task(breaks)
