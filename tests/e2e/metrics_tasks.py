"""Tasks of the metrics drills (tests/e2e/test_metrics.py): `taskiq-dataflow run
metrics_tasks:gated -i gate=PATH` runs one task that waits for PATH to exist, so that the test
scrapes the run's endpoint while the run is under way."""

from __future__ import annotations

import asyncio
import os
import time

from taskiq_dataflow import DataflowRegistry, pipeline_task

WAIT_AT_MOST = 30.0  # seconds: the drill creates the gate within its own bound


@pipeline_task(output="opened", inputs=["gate"])
async def wait_for_gate(gate: str) -> str:
    deadline = time.monotonic() + WAIT_AT_MOST
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} did not appear within {WAIT_AT_MOST:g} s")
        await asyncio.sleep(0.05)
    return "open"


@pipeline_task(output="after", inputs=["opened"])
def after_gate(opened: str) -> str:
    return opened + "ed"


gated = DataflowRegistry()
gated.register_external_input("gate")
gated.register_task(wait_for_gate)
gated.register_task(after_gate)
