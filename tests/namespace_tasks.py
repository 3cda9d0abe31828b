"""A Namespace bound to a DataflowNatsBroker: imported by the test process and by the workers
(`namespace_tasks:broker`), each callable registered as the taskiq task named by its nsref, so
that a worker finds "pipeline.data:fetch" by that name (tests/test_lythonic_idioms.py)."""

from __future__ import annotations

import os

from taskiq_dataflow import Namespace, pipeline_task
from taskiq_dataflow.cluster import DataflowNatsBroker

broker = DataflowNatsBroker(heartbeat_interval=0.2)
ns = Namespace(broker)


def fetch(url: str) -> dict[str, object]:
    return {"source": url, "raw": [1, 2, 3], "pid": os.getpid()}


@pipeline_task(output="values")
def transform(fetch: dict[str, object]) -> list[int]:
    return [v * 2 for v in fetch["raw"]]  # type: ignore[attr-defined]


ns.register(fetch, nsref="pipeline.data:fetch")
ns.register(transform, nsref="pipeline.data:transform")
