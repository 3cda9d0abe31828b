"""Seceding in-process (seceding.py, slots.py): a task that awaits a nested run, or calls
secede()/rejoin()/seceded(), gives back its slot of the engine's `max_parallel` (and of its
run's own `execute(max_parallel=)`) while it waits; tasks that do not secede stay bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import run
from taskiq_dataflow import (
    DAGNode,
    DataflowRegistry,
    ExecutionCancelled,
    ExecutionEngine,
    add_tasks,
    rejoin,
    secede,
    seceded,
)
from taskiq_dataflow.execution_engine import current_engine

BOUND = 20.0  # seconds for the 200 x 3 runs (well under one here); a deadlock never ends


class Gauge:
    """Tasks holding a slot now (counted by the tasks themselves), and the most ever."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


def bounded(coro: Any, bound: float = BOUND) -> Any:
    return run(asyncio.wait_for(coro, bound))


# -- nested runs -----------------------------------------------------------------------------------

PARENTS, CHILDREN = 200, 3


def family_dag(gauge: Gauge, via_handle: bool = False, parents: int = PARENTS) -> Any:
    """A spawner and children c0..: a run with mode "top" has the spawner add the parents
    p0.. to it, each of which awaits a nested run of the same DAG on the same engine (mode
    ("sub", i)) where only the children do any work; the other tasks of a run return at
    once."""

    def parent(i: int) -> Any:
        async def task(mode: Any) -> Any:
            gauge.enter()
            gauge.leave()  # holds its slot up to here, none while the sub-run goes on
            engine = current_engine()
            assert engine is not None
            if via_handle:
                out = await engine.start({"mode": ("sub", i)})
            else:
                out = await engine.execute({"mode": ("sub", i)})
            gauge.enter()  # rejoined: a slot again
            try:
                await asyncio.sleep(0)
            finally:
                gauge.leave()
            return sorted(out[f"c{k}"] for k in range(CHILDREN))

        return task

    async def spawn(mode: Any) -> None:
        if mode == "top":
            add_tasks(
                DAGNode(parent(i), output=f"p{i}", inputs=["mode"], name=f"p{i}")
                for i in range(parents)
            )

    def child(k: int) -> Any:
        async def task(mode: Any) -> Any:
            if mode == "top":
                return None
            gauge.enter()
            try:
                await asyncio.sleep(0.001)
            finally:
                gauge.leave()
            return mode[1] * 10 + k

        return task

    registry = DataflowRegistry()
    registry.register_external_input("mode")
    registry.register_task(spawn, output="spawned", inputs=["mode"])
    for k in range(CHILDREN):
        registry.register_task(child(k), output=f"c{k}", inputs=["mode"], name=f"c{k}")
    return registry.build_dag()


def expected(n: int) -> dict[str, list[int]]:
    return {f"p{i}": [i * 10 + k for k in range(CHILDREN)] for i in range(n)}


@pytest.mark.parametrize("via_handle", [False, True], ids=["execute", "run-handle"])
def test_200_parents_each_awaiting_3_children_on_their_own_engine_with_4_slots_complete(
    via_handle: bool,
) -> None:
    gauge = Gauge()
    engine = ExecutionEngine(None, family_dag(gauge, via_handle), max_parallel=4)
    out = bounded(engine.execute({"mode": "top"}))
    assert {f"p{i}": out[f"p{i}"] for i in range(PARENTS)} == expected(PARENTS)
    # children and rejoined parents, in 201 concurrent runs: never more than 4 at once
    assert gauge.peak == 4, gauge.peak
    assert engine._slots is not None and not engine._slots.seceded  # nothing left over


def test_two_parents_on_two_slots_complete() -> None:
    """The smallest deadlock: two slots, both held by parents awaiting their children."""
    gauge = Gauge()
    engine = ExecutionEngine(None, family_dag(gauge, parents=2), max_parallel=2)
    out = bounded(engine.execute({"mode": "top"}), 5.0)
    assert out["p0"] == [0, 1, 2] and out["p1"] == [10, 11, 12]
    assert gauge.peak <= 2


def test_a_parent_bounded_by_its_own_run_awaits_a_sub_run_on_another_engine() -> None:
    """execute(max_parallel=1) on an engine without a bound: the parent gives its run's one
    slot back while it waits, so its sibling runs meanwhile."""
    log: list[str] = []
    children = DataflowRegistry()
    children.register_external_input("x")

    async def child(x: int) -> int:
        await asyncio.sleep(0.05)
        return x

    children.register_task(child, output="c", inputs=["x"])
    other = ExecutionEngine(None, children.build_dag(), max_parallel=1)

    async def parent(x: int) -> int:
        log.append("parent waits")
        out = await other.execute({"x": x})
        log.append("parent back")
        return out["c"]

    async def sibling(x: int) -> int:
        log.append("sibling")
        return x

    registry = DataflowRegistry()
    registry.register_external_input("x")
    registry.register_task(parent, output="p", inputs=["x"])
    registry.register_task(sibling, output="s", inputs=["x"])
    engine = ExecutionEngine(None, registry.build_dag())
    assert bounded(engine.execute({"x": 7}, max_parallel=1), 5.0) == {"p": 7, "s": 7}
    assert log == ["parent waits", "sibling", "parent back"]


# -- explicit secede / rejoin ----------------------------------------------------------------------


def waiter_and_setter(explicit: bool, log: list[str]) -> Any:
    """`waiter` (registered first, so it takes the one slot) waits for an event that only
    `setter` sets."""
    event = asyncio.Event()

    async def waiter(x: int) -> int:
        log.append("waiter waits")
        if explicit:
            secede()
            await event.wait()
            await rejoin()
        else:
            async with seceded():
                await event.wait()
        log.append("waiter back")
        return x

    async def setter(x: int) -> int:
        log.append("setter")
        event.set()
        return x

    registry = DataflowRegistry()
    registry.register_external_input("x")
    registry.register_task(waiter, output="w", inputs=["x"])
    registry.register_task(setter, output="s", inputs=["x"])
    return registry.build_dag()


@pytest.mark.parametrize("explicit", [True, False], ids=["secede-rejoin", "seceded-block"])
@pytest.mark.parametrize("bound", ["engine", "run"])
def test_seceded_around_an_event_wait_frees_the_slot(explicit: bool, bound: str) -> None:
    log: list[str] = []
    dag = waiter_and_setter(explicit, log)
    if bound == "engine":
        run_it = ExecutionEngine(None, dag, max_parallel=1).execute({"x": 1})
    else:
        run_it = ExecutionEngine(None, dag).execute({"x": 1}, max_parallel=1)
    assert bounded(run_it, 5.0) == {"w": 1, "s": 1}
    assert log == ["waiter waits", "setter", "waiter back"]


def test_a_rejoining_task_waits_for_the_busy_slot_and_goes_before_tasks_not_started() -> None:
    log: list[str] = []
    event = asyncio.Event()

    async def waiter(x: int) -> int:
        secede()
        secede()  # nested: the slot comes back with the last rejoin
        await event.wait()
        await rejoin()
        log.append("waiter rejoins")
        await rejoin()
        log.append("waiter rejoined")
        await asyncio.sleep(0.01)
        log.append("waiter done")
        return x

    async def setter(x: int) -> int:
        event.set()
        await asyncio.sleep(0.02)  # holds the one slot: the waiter must wait for it
        log.append("setter done")
        return x

    def later(name: str) -> Any:
        async def task(x: int) -> int:
            log.append(name)
            return x

        return task

    registry = DataflowRegistry()
    registry.register_external_input("x")
    registry.register_task(waiter, output="w", inputs=["x"])
    registry.register_task(setter, output="s", inputs=["x"])
    for name in ("t1", "t2"):
        registry.register_task(later(name), output=name, inputs=["x"], name=name)
    engine = ExecutionEngine(None, registry.build_dag(), max_parallel=1)
    assert bounded(engine.execute({"x": 1}), 5.0) == {"w": 1, "s": 1, "t1": 1, "t2": 1}
    assert log == ["waiter rejoins", "setter done", "waiter rejoined", "waiter done", "t1", "t2"]


def test_a_task_that_ends_seceded_gives_its_extra_slot_back() -> None:
    gauge = Gauge()
    event = asyncio.Event()

    async def leaves(x: int) -> int:
        secede()  # and never rejoins: the slot comes back when it ends
        await event.wait()  # set by a task that runs on the one slot it gave back
        return x

    async def busy(x: int) -> int:
        gauge.enter()
        event.set()
        try:
            await asyncio.sleep(0.002)
        finally:
            gauge.leave()
        return x

    registry = DataflowRegistry()
    registry.register_external_input("x")
    registry.register_task(leaves, output="l", inputs=["x"])
    for i in range(30):
        registry.register_task(busy, output=f"b{i}", inputs=["x"], name=f"b{i}")

    async def go(shared: bool) -> int:
        gauge.peak = 0
        event.clear()
        if shared:
            out = await ExecutionEngine(None, registry.build_dag(), max_parallel=1).execute(
                {"x": 1}
            )
        else:
            out = await ExecutionEngine(None, registry.build_dag()).execute(
                {"x": 1}, max_parallel=1
            )
        assert len(out) == 31
        return gauge.peak

    async def both() -> list[int]:
        return [await go(True), await go(False)]

    assert bounded(both(), 5.0) == [1, 1]  # the engine's bound, and a run's own


def test_a_run_cancelled_while_a_task_waits_to_rejoin_ends_and_frees_the_slots() -> None:
    event = asyncio.Event()

    async def waiter(x: int) -> int:
        async with seceded():
            await event.wait()
        return x

    async def setter(x: int) -> int:
        event.set()
        await asyncio.sleep(30)  # holds the one slot until cancelled
        return x

    registry = DataflowRegistry()
    registry.register_external_input("x")
    registry.register_task(waiter, output="w", inputs=["x"])
    registry.register_task(setter, output="s", inputs=["x"])
    engine = ExecutionEngine(None, registry.build_dag(), max_parallel=1)

    async def go() -> Any:
        handle = engine.start({"x": 1})
        while not event.is_set():
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # the waiter is waiting to rejoin now
        assert engine._slots is not None and len(engine._slots.rejoiners) == 1
        handle.cancel()
        with pytest.raises(ExecutionCancelled):
            await handle
        slots = engine._slots
        assert not slots.seceded and not slots.away and not slots.rejoiners

    bounded(go(), 5.0)
