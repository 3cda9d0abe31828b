"""Pipelines of the dashboard's end-to-end tests, imported by the CLI (and, for `cluster`, by its
workers: PYTHONPATH=tests/e2e). Each runs a few seconds, so the test can read the dashboard
while the run goes on.

- `local`: 1 + 3 x 40 tasks of three names sleeping a little, in process;
- `failing`: the same plus one task that raises (run it with --no-fail-fast);
- `on_cluster`: 40 tasks of `broker` (a worker runs a task only if registered on it).
"""

from __future__ import annotations

import asyncio
import os

from taskiq_dataflow import DAG, DAGNode
from taskiq_dataflow.cluster import DataflowNatsBroker

WIDTH = 40
DELAY = float(os.environ.get("DASHBOARD_E2E_DELAY", "0.05"))

broker = DataflowNatsBroker(heartbeat_interval=0.2, heartbeat_timeout=2.0)


async def start(n: int) -> int:
    return n


async def step(x: int) -> int:
    await asyncio.sleep(DELAY)
    return x + 1


async def broken(x: int) -> int:
    raise RuntimeError(f"broken on purpose at {x}")


@broker.task
async def remote_step(x: int) -> dict[str, int]:
    await asyncio.sleep(DELAY)
    return {"x": x, "pid": os.getpid()}


def _layers(dag: DAG, task: object) -> None:
    dag.add_node(DAGNode(start, output="l0", inputs=["n"], name="start"))
    for layer, name in enumerate(("load", "square", "total"), start=1):
        for i in range(WIDTH):
            inputs = ["l0"] if layer == 1 else [f"l{layer - 1}_{i}"]
            dag.add_node(DAGNode(task, output=f"l{layer}_{i}", inputs=inputs, name=name))


def _local() -> DAG:
    dag = DAG()
    _layers(dag, step)
    return dag


def _failing() -> DAG:
    dag = _local()
    dag.add_node(DAGNode(broken, output="never", inputs=["l1_0"], name="broken"))
    return dag


def _on_cluster() -> DAG:
    dag = DAG()
    for i in range(WIDTH):
        dag.add_node(DAGNode(remote_step, output=f"r{i}", inputs=["n"], name="remote_step"))
    return dag


local = _local()
failing = _failing()
on_cluster = _on_cluster()
