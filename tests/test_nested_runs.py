"""Nested runs on the cluster (seceding.py): a worker task that awaits a sub-run, or calls
secede()/rejoin(), gives its slot back while it waits, so parents cannot hold every slot while
their children wait behind them. Real nats-server, real worker processes (nested_tasks.py);
the worker's slot bookkeeping is also checked directly, without a server.

Pools: "wide" (2 workers x 64 slots, the issue's case), "one" (1 worker x 1 slot: any task that
held its slot while it waited would deadlock), "eight" (2 workers x 8 slots, for the bound).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import nested_tasks
import pytest
from cluster_support import WorkerProcesses
from conftest import run
from taskiq_dataflow import DataflowRegistry, ExecutionEngine, rejoin, secede, seceded
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.cluster.worker import Worker
from taskiq_dataflow.seceding import CURRENT_WORKER

BOUND = 60.0  # seconds for the 200 x 3 run (about 2 s here); the others take well under 3


@pytest.fixture(scope="module")
def pools(server):
    wide = WorkerProcesses(
        server.url, workers=2, pool="wide", concurrency=64, target="nested_tasks:broker"
    )
    one = WorkerProcesses(server.url, pool="one", concurrency=1, target="nested_tasks:broker")
    eight = WorkerProcesses(
        server.url, workers=2, pool="eight", concurrency=8, target="nested_tasks:broker"
    )
    started = []
    try:
        for wp in (wide, one, eight):
            started.append(wp.launch())
        for wp in started:
            wp.ready()
        yield SimpleNamespace(wide=wide, one=one, eight=eight)
    finally:
        for wp in started:
            wp.stop()


def engine_for(server: Any, pool: str, dag: Any) -> ExecutionEngine:
    broker = DataflowNatsBroker(server.url, pool=pool, heartbeat_timeout=1.0, progress_timeout=20.0)
    return ExecutionEngine(broker, dag)


def parents_dag(n: int, task: Any = nested_tasks.parent) -> tuple[Any, dict[str, Any]]:
    registry = DataflowRegistry()
    registry.register_external_input("delay")
    for i in range(n):
        registry.register_external_input(f"i{i}")
        registry.register_task(task, output=f"p{i}", inputs=[f"i{i}", "delay"])
    return registry.build_dag(), {f"i{i}": i for i in range(n)}


def bounded(engine: ExecutionEngine, inputs: dict[str, Any], bound: float = 20.0) -> Any:
    return run(asyncio.wait_for(engine.execute(inputs), bound))


def expected_children(n: int) -> dict[str, list[int]]:
    return {f"p{i}": [i * 10 + k for k in range(nested_tasks.CHILDREN)] for i in range(n)}


# -- on the cluster ------------------------------------------------------------------------------


def test_200_parents_each_awaiting_3_children_on_2_workers_x_64_slots_complete(server, pools):
    dag, inputs = parents_dag(200)
    outputs = bounded(engine_for(server, "wide", dag), {**inputs, "delay": 0.05}, BOUND)
    assert {k: v["children"] for k, v in outputs.items()} == expected_children(200)
    assert len({v["pid"] for v in outputs.values()}) == 2  # both workers served parents
    # children and rejoined parents: never more than 64 holding a slot in one worker
    assert max(v["peak"] for v in outputs.values()) <= 64


def test_parents_awaiting_a_run_handle_give_their_slot_back_too(server, pools):
    dag, inputs = parents_dag(4, nested_tasks.handle_parent)
    outputs = bounded(engine_for(server, "one", dag), {**inputs, "delay": 0.01})
    assert {k: v["children"] for k, v in outputs.items()} == expected_children(4)


def test_parents_on_a_single_slot_worker_complete(server, pools):
    """One slot: a parent that kept it while waiting would starve its own children."""
    dag, inputs = parents_dag(5)
    outputs = bounded(engine_for(server, "one", dag), {**inputs, "delay": 0.01})
    assert {k: v["children"] for k, v in outputs.items()} == expected_children(5)
    assert max(v["peak"] for v in outputs.values()) == 1


@pytest.mark.parametrize("explicit", [True, False], ids=["secede-rejoin", "seceded-block"])
def test_a_task_waiting_on_another_task_of_its_worker_secedes_explicitly(server, pools, explicit):
    registry = DataflowRegistry()
    registry.register_external_input("explicit")
    for i in range(3):  # registered (and so sent) before the opener: they take the one slot
        registry.register_task(nested_tasks.waiter, output=f"w{i}", inputs=["explicit"])
    registry.register_task(nested_tasks.opener, output="opened")
    engine = engine_for(server, "one", registry.build_dag())
    outputs = bounded(engine, {"explicit": explicit})
    assert len({v["pid"] for v in outputs.values()}) == 1
    assert max(v["peak"] for v in outputs.values()) == 1  # rejoined one at a time


def test_tasks_that_do_not_secede_stay_within_the_concurrency_bound(server, pools):
    """Parents secede and rejoin among tasks that never do: at most 8 hold a slot per worker."""
    registry = DataflowRegistry()
    registry.register_external_input("delay")
    for i in range(60):
        registry.register_external_input(f"i{i}")
        task = nested_tasks.parent if i % 3 == 0 else nested_tasks.busy
        registry.register_task(task, output=f"o{i}", inputs=[f"i{i}", "delay"])
    inputs = {f"i{i}": i for i in range(60)}
    outputs = bounded(engine_for(server, "eight", registry.build_dag()), {**inputs, "delay": 0.05})
    assert len(outputs) == 60
    assert max(v["peak"] for v in outputs.values()) == 8  # full, and never over


# -- the worker's slot bookkeeping, without a server -----------------------------------------------


def slots_worker(concurrency: int) -> Worker:
    return Worker(DataflowNatsBroker("nats://127.0.0.1:1"), concurrency=concurrency)


def test_secede_gives_the_slot_back_once_for_nested_secedes():
    async def main() -> None:
        worker = slots_worker(2)
        worker._free = 0  # both slots held
        key = ("cancel", 1)
        worker._secede(key)
        worker._secede(key)  # a second sub-run of the same task
        assert worker._free == 1
        await worker._rejoin(key)
        assert worker._free == 1  # one secede still open
        await worker._rejoin(key)
        assert worker._free == 0 and not worker._seceded
        await worker._rejoin(key)  # not seceded: nothing to take
        assert worker._free == 0

    run(main())


def test_a_rejoining_task_waits_for_a_slot_and_goes_before_queued_entries():
    async def main() -> None:
        worker = slots_worker(1)
        key = ("cancel", 1)
        worker._free = 0
        worker._secede(key)
        worker._free -= 1  # another task took the slot
        worker._queue.append(("run", "reply", 2, "noop", [], {}, None, None, "cancel"))
        back = asyncio.ensure_future(worker._rejoin(key))
        await asyncio.sleep(0)
        assert not back.done()
        worker._release(("cancel", 9), None)  # that task ends: the rejoiner gets its slot
        await asyncio.wait_for(back, 1)
        assert worker._free == 0 and len(worker._queue) == 1  # the queued entry still waits

    run(main())


def test_a_task_cancelled_while_waiting_to_rejoin_frees_exactly_its_slot():
    async def main() -> None:
        worker = slots_worker(1)
        key = ("cancel", 1)
        worker._free = 0
        worker._secede(key)
        worker._free -= 1  # another task holds the slot
        back = asyncio.ensure_future(worker._rejoin(key))
        await asyncio.sleep(0)
        back.cancel()
        with pytest.raises(asyncio.CancelledError):
            await back
        worker._release(key, None)  # the cancelled task ends
        worker._release(("cancel", 9), None)  # and the other one
        assert worker._free == 1 and not worker._seceded and not worker._rejoiners

    run(main())


def test_a_task_that_ends_seceded_does_not_free_its_slot_twice():
    async def main() -> None:
        worker = slots_worker(1)
        key = ("cancel", 1)
        worker._free = 0
        worker._secede(key)
        worker._release(key, None)
        assert worker._free == 1 and not worker._seceded

    run(main())


def serving_worker(concurrency: int, **funcs: Any) -> Worker:
    """A worker that runs `funcs` from _pump without a server: results stay in its outbox."""
    worker = slots_worker(concurrency)
    CURRENT_WORKER.set(worker)  # as Worker.run() does: its tasks find it in their context
    worker._values = SimpleNamespace(threshold=1 << 30)  # type: ignore[assignment]
    worker._flush_scheduled = True  # no frame leaves: the outbox is read instead
    for name, func in funcs.items():
        worker._funcs[name] = (func, True, False, None)  # no taskiq hooks
    return worker


def entry(seq: int, name: str) -> tuple[Any, ...]:
    return ("run", "reply", seq, name, [], {}, None, None, "cancel")


def test_tasks_stepped_in_place_secede_their_own_slot():
    gate: asyncio.Event

    async def quick() -> int:
        secede()  # and ends without rejoining: its slot was given back already
        return 1

    async def waits() -> int:
        secede()  # in its first step, stepped in place
        await gate.wait()
        await rejoin()
        return 2

    async def main() -> None:
        nonlocal gate
        gate = asyncio.Event()
        worker = serving_worker(1, quick=quick, waits=waits)
        worker._queue.extend([entry(1, "waits"), entry(2, "quick"), entry(3, "quick")])
        worker._pump()
        # the waiter gave its slot back: both quick tasks ran on it
        assert not worker._queue and worker._free == 1
        assert worker._seceded == {("cancel", 1): 1}
        gate.set()
        await asyncio.sleep(0.01)
        assert worker._free == 1 and not worker._seceded and not worker._running
        assert len(worker._outbox["reply"]) == 3

    run(main())


# -- outside a worker ------------------------------------------------------------------------------


def test_secede_and_rejoin_do_nothing_outside_a_worker_task():
    async def leaf(x: int) -> int:
        secede()
        await rejoin()
        async with seceded():
            await asyncio.sleep(0)
        return x + 1

    async def outer(x: int) -> int:
        registry = DataflowRegistry()
        registry.register_external_input("x")
        registry.register_task(leaf, output="y", inputs=["x"])
        return (await ExecutionEngine(None, registry.build_dag()).execute({"x": x}))["y"] * 2

    registry = DataflowRegistry()
    registry.register_external_input("x")
    registry.register_task(outer, output="z", inputs=["x"])
    assert run(ExecutionEngine(None, registry.build_dag()).execute({"x": 1})) == {"z": 4}
