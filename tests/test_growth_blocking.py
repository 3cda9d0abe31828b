"""Blocking (sync `def`) tasks add tasks to their own run: they run in a copy of the run's
context in the thread pool, and add_tasks hands the batch to the engine's loop and waits for
the node ids or the GrowthError."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from taskiq_dataflow import DAG, DAGNode, ExecutionEngine, GrowthError, TaskFailedError, add_tasks
from taskiq_dataflow.events import StepCompleted
from taskiq_dataflow.execution_engine import current_run


def run(dag: DAG, inputs: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    engine = ExecutionEngine(None, dag, **options)
    return asyncio.run(asyncio.wait_for(engine.execute(inputs or {}), 30))


def dag_of(*nodes: DAGNode) -> DAG:
    dag = DAG()
    for node in nodes:
        dag.add_node(node)
    return dag


def double(x: int) -> int:
    return 2 * x


def test_a_blocking_task_adds_1000_tasks_and_gets_their_real_ids() -> None:
    seen: dict[str, Any] = {}

    def fan(count: int) -> int:
        seen["thread"] = threading.current_thread().name
        seen["run"] = current_run() is not None
        seen["ids"] = add_tasks(
            DAGNode(double, output=f"d{i}", inputs=["n"], name=f"d{i}") for i in range(count)
        )
        return 3

    engine = ExecutionEngine(None, dag_of(DAGNode(fan, output="n", inputs=["count"])))
    names: dict[int, str] = {}
    engine.events.subscribe(lambda e: names.__setitem__(e.node, e.task_name), StepCompleted)
    out = asyncio.run(asyncio.wait_for(engine.execute({"count": 1000}), 30))
    assert seen["thread"].startswith("dataflow-task") and seen["run"]
    assert seen["ids"] == list(range(1, 1001))
    assert len(out) == 1001 and out["d0"] == out["d999"] == 6
    # the ids name the tasks added, in order
    assert [names[i] for i in (1, 500, 1000)] == ["d0", "d499", "d999"]


def test_a_blocking_tasks_refused_batch_raises_growth_error_naming_the_key() -> None:
    caught: list[GrowthError] = []

    def adder() -> int:
        try:
            add_tasks([DAGNode(double, output="y", inputs=["nobody_makes_this"])])
        except GrowthError as exc:
            caught.append(exc)
            raise
        return 1

    with pytest.raises(TaskFailedError, match=r"nobody_makes_this") as failed:
        run(dag_of(DAGNode(adder, output="n")))
    assert "adder" in str(failed.value)
    assert len(caught) == 1 and "nobody_makes_this" in str(caught[0])
    assert caught[0].__traceback__ is not None  # raised in the task's own thread


def test_a_refused_batch_in_a_thread_can_be_caught_and_the_next_one_works() -> None:
    def adder() -> int:
        with pytest.raises(GrowthError, match=r"'n'"):
            add_tasks([DAGNode(double, output="n", inputs=["x"])])  # the adder's own output
        add_tasks([DAGNode(double, output="y", inputs=["n"])])
        return 5

    assert run(dag_of(DAGNode(adder, output="n"))) == {"n": 5, "y": 10}


def test_concurrent_blocking_adders() -> None:
    gate = threading.Barrier(4, timeout=10)  # all four add at the same time

    def adder(k: int) -> int:
        gate.wait()
        ids = [
            add_tasks([DAGNode(double, output=f"a{k}_{j}", inputs=[f"k{k}"], name=f"a{k}_{j}")])
            for j in range(50)
        ]
        assert len({i for batch in ids for i in batch}) == 50
        return k

    nodes = [DAGNode(adder, output=f"k{k}", inputs=[f"in{k}"], name=f"k{k}") for k in range(4)]
    out = run(dag_of(*nodes), {f"in{k}": k for k in range(4)}, executor="thread")
    assert len(out) == 4 + 4 * 50
    assert all(out[f"a{k}_{j}"] == 2 * k for k in range(4) for j in range(50))


def test_a_blocking_task_in_a_process_pool_cannot_add_tasks() -> None:
    with pytest.raises(TaskFailedError, match=r"process pool, executor='process'"):
        run(dag_of(DAGNode(process_adder, output="n")), executor="process")


def process_adder() -> int:  # module level: a process pool pickles it by name
    add_tasks([DAGNode(double, output="y", inputs=["n"])])
    return 1
