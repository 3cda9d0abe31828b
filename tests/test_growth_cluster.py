"""Tasks added at run time run on the NATS worker cluster (real nats-server, real workers)."""

from __future__ import annotations

import os
from typing import Any

import cluster_tasks
import pytest
from cluster_support import WorkerProcesses
from conftest import run
from taskiq_dataflow import DAG, DAGNode, ExecutionEngine, add_tasks
from taskiq_dataflow.cluster import DataflowNatsBroker

ITEMS = 50


@pytest.fixture(scope="module")
def workers(server: Any) -> Any:
    pool = WorkerProcesses(server.url, workers=2)
    pool.launch()
    try:
        pool.ready()
        yield pool
    finally:
        pool.stop()


async def adder() -> tuple[int, ...]:
    """Runs in the engine's process (local): adds worker tasks reading its own outputs."""
    add_tasks(DAGNode(cluster_tasks.index, output=f"k{i}", inputs=[f"i{i}"]) for i in range(ITEMS))
    add_tasks(DAGNode(cluster_tasks.where, output=f"w{i}", inputs=[]) for i in range(4))
    return tuple(range(ITEMS))


def test_added_tasks_run_on_the_workers(server: Any, workers: Any) -> None:
    dag = DAG()
    outputs = [f"i{i}" for i in range(ITEMS)]
    dag.add_node(DAGNode(adder, outputs=outputs, inputs=[], metadata={"local": True}))
    broker = DataflowNatsBroker(server.url, codec=cluster_tasks.broker.codec)
    out = run(ExecutionEngine(broker, dag).execute())
    assert [out[f"k{i}"] for i in range(ITEMS)] == list(range(ITEMS))
    pids = {out[f"w{i}"]["pid"] for i in range(4)}
    assert os.getpid() not in pids and pids <= set(workers.children())
