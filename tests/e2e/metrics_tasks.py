"""Tasks of the metrics drills (tests/e2e/test_metrics.py). Each waits for the file named by
its `gate` input, so that the test scrapes the endpoints while the run is under way:

    taskiq-dataflow run metrics_tasks:gated -i gate=PATH               # in the run's process
    taskiq-dataflow cluster metrics_tasks:broker metrics_tasks:gated_on_workers -i gate=PATH
"""

from __future__ import annotations

import asyncio
import os
import time

from e2e_tasks import make_broker
from taskiq_dataflow import DataflowRegistry, pipeline_task

WAIT_AT_MOST = 30.0  # seconds: the drill creates the gate within its own bound

broker = make_broker()


async def _wait(gate: str) -> str:
    deadline = time.monotonic() + WAIT_AT_MOST
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} did not appear within {WAIT_AT_MOST:g} s")
        await asyncio.sleep(0.05)
    return "open"


@pipeline_task(output="opened", inputs=["gate"])
async def wait_for_gate(gate: str) -> str:
    return await _wait(gate)


@pipeline_task(output="after", inputs=["opened"])
def after_gate(opened: str) -> str:
    return opened + "ed"


@broker.task
@pipeline_task(output="opened", inputs=["gate"])
async def wait_on_worker(gate: str) -> str:
    return await _wait(gate)


gated = DataflowRegistry()
gated.register_external_input("gate")
gated.register_task(wait_for_gate)
gated.register_task(after_gate)

gated_on_workers = DataflowRegistry()
gated_on_workers.register_external_input("gate")
gated_on_workers.register_task(wait_on_worker)
