"""An engine of a third service, in a process of its own: it has no task of its own, only the
names of tasks the services of remote_services.py serve.

    python remote_run.py RUNS [POOL_A POOL_B]   # RUNS runs; each service's tasks in its pool

The server is $DATAFLOW_NATS_URL. Prints one JSON object: {"results": [outputs of each run],
"seconds"} (exit 0) or {"error": "<type>: <message>", "seconds"} (exit 1).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from taskiq_dataflow import DataflowRegistry, ExecutionEngine, RemoteTask
from taskiq_dataflow.cluster import DataflowNatsBroker


def registry_of(pool_a: str | None, pool_b: str | None) -> DataflowRegistry:
    registry = DataflowRegistry()
    registry.register_task(RemoteTask("svc_a:double", ["foo"], "doubled", pool=pool_a))
    registry.register_task(RemoteTask("svc_b:count", ["doubled"], "bar", stream=True, pool=pool_b))
    registry.register_task(RemoteTask("svc_b:label", ["doubled"], "label", pool=pool_b))
    registry.register_task(
        RemoteTask("svc_a:total", ["bar"], "total", streams=["bar"], pool=pool_a)
    )
    return registry


async def runs(engine: ExecutionEngine, count: int) -> list[dict[str, Any]]:
    out = []
    for n in range(1, count + 1):
        handle = engine.start({"foo": n})
        live = [item async for item in handle.stream("bar")]
        out.append({**(await handle), "live": live})
    return out


def main(argv: list[str]) -> int:
    pools = (argv[1], argv[2]) if len(argv) == 3 else (None, None)
    engine = ExecutionEngine(DataflowNatsBroker(), registry_of(*pools).build_dag())
    started = time.monotonic()
    try:
        results = asyncio.run(runs(engine, int(argv[0])))
    except Exception as exc:
        seconds = time.monotonic() - started
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "seconds": seconds}))
        return 1
    print(json.dumps({"results": results, "seconds": time.monotonic() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
