"""ExecutionEngine(max_parallel=N) bounds tasks in flight across every concurrent run of the
engine, shares the slots fairly, and execute(max_parallel=) bounds one run; in-process and on
the NATS cluster."""

import asyncio
import time
from types import SimpleNamespace

import cluster_tasks
import pytest
from cluster_support import index_dag
from conftest import run
from hypothesis import given
from hypothesis import strategies as st
from taskiq_dataflow import DataflowRegistry, ExecutionEngine, StepCompleted, StepStarted, _core
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.slots import SharedSlots, water_fill


class Gauge:
    """Tasks in flight now, and the most ever."""

    def __init__(self):
        self.now = self.peak = 0

    async def task(self, x):
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.005)
        finally:
            self.now -= 1
        return x


def wide_dag(gauge, n, prefix="t"):
    registry = DataflowRegistry()
    registry.register_external_input("x")
    for i in range(n):
        registry.register_task(gauge.task, output=f"{prefix}{i}", inputs=["x"], name=f"{prefix}{i}")
    return registry.build_dag()


def test_ten_concurrent_runs_share_the_engines_bound():
    gauge = Gauge()
    engine = ExecutionEngine(None, wide_dag(gauge, 6), max_parallel=2)

    async def go():
        return await asyncio.gather(*(engine.execute({"x": i}) for i in range(10)))

    results = run(go())
    assert [r["t0"] for r in results] == list(range(10))
    assert gauge.peak == 2  # 10 runs x 6 tasks, never more than 2 in flight (it was 20)


def test_a_per_run_bound_within_the_engines():
    gauge = Gauge()
    engine = ExecutionEngine(None, wide_dag(gauge, 20))
    run(engine.execute({"x": 1}, max_parallel=3))
    assert gauge.peak == 3
    with pytest.raises(ValueError, match=r"execute\(max_parallel=...\) must be an int"):
        run(engine.execute({"x": 1}, max_parallel=0))
    shared = ExecutionEngine(None, wide_dag(gauge, 20), max_parallel=8)
    gauge.peak = 0

    async def go():
        await asyncio.gather(
            shared.execute({"x": 1}, max_parallel=2), shared.execute({"x": 2}, max_parallel=2)
        )

    run(go())
    assert gauge.peak == 4  # each run at most 2: the engine's 8 are not all used


def test_a_run_started_during_a_big_one_gets_its_share_at_once():
    gauge = Gauge()
    engine = ExecutionEngine(None, wide_dag(gauge, 400), max_parallel=4)

    async def go():
        big = engine.start({"x": 0})
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        steps = 0
        async for _ in engine.execute_async({"x": 1}):
            steps += 1
            if steps == 5:
                break  # leaving early cancels this run only
        latency = time.perf_counter() - started
        progress = big.progress()
        await big
        return latency, progress

    latency, progress = run(go())
    # first come, first served, the late run would get a slot only once the big one had none
    # left to fill (396 of 400 done); sharing fairly, its first steps come while the big run
    # is far from done
    assert progress["status"] == "running" and progress["done"] < 380, (progress, latency)
    assert gauge.peak <= 4


def test_water_fill_is_fair_and_uses_every_slot_asked_for():
    assert water_fill(10, [100, 100]) == [5, 5]
    assert water_fill(10, [2, 100]) == [2, 8]  # a small run's unused share goes to the big one
    assert water_fill(3, [5, 5, 5, 5]) == [1, 1, 1, 0]
    assert water_fill(4, [0, 0]) == [0, 0]
    assert sum(water_fill(7, [3, 9, 1, 4])) == 7


@given(st.integers(0, 300), st.lists(st.integers(0, 120), max_size=12))
def test_water_fill_gives_each_its_demand_or_an_equal_level(total, demand):
    targets = water_fill(total, demand)
    assert sum(targets) == min(total, sum(demand))
    assert all(0 <= t <= d for t, d in zip(targets, demand, strict=True))
    short = [t for t, d in zip(targets, demand, strict=True) if t < d]
    # a run left short of its demand is at the level: nobody else is more than one above it
    assert not short or max(targets) <= min(short) + 1


def test_on_the_cluster_concurrent_runs_share_the_bound(server, workers):
    dag, inputs = index_dag(6, delay=0.02)
    broker = DataflowNatsBroker(server.url, codec=cluster_tasks.broker.codec)
    engine = ExecutionEngine(broker, dag, max_parallel=2)
    flight = {"now": 0, "peak": 0}

    def count(event):
        flight["now"] += 1 if isinstance(event, StepStarted) else -1
        flight["peak"] = max(flight["peak"], flight["now"])

    engine.events.subscribe(count, StepStarted, StepCompleted)

    async def go():
        return await asyncio.gather(*(engine.execute(inputs) for _ in range(4)))

    results = run(go())
    assert all(r == {f"k{i}": i for i in range(6)} for r in results)
    assert flight["peak"] == 2


def _scheduler(running: int, ready: int) -> _core.Scheduler:
    """A scheduler of independent nodes, `running` of them running and `ready` ready."""
    scheduler = _core.Scheduler(_core.Graph.from_edges(running + ready, []), None, running)
    assert len(scheduler.start()) == running
    return scheduler


@given(
    st.integers(1, 300),
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 40), st.none() | st.integers(1, 60)),
        min_size=2, max_size=12,
    ),
)  # fmt: skip
def test_rebalance_grants_no_more_than_the_free_slots_and_all_that_fits(total, runs):
    """(running, ready, own limit) of each run: what rebalance sets each run's capacity to."""
    slots = SharedSlots(total)
    drivers = [
        SimpleNamespace(
            state=SimpleNamespace(status=None, scheduler=_scheduler(running, ready)),
            limit=limit, sink=SimpleNamespace(signal=lambda event: None),
        )
        for running, ready, limit in runs
    ]  # fmt: skip
    slots.drivers.extend(drivers)
    slots.rebalance()
    capacity = [d.state.scheduler.capacity for d in drivers]
    running = [r for r, _, _ in runs]
    granted = sum(max(c - r, 0) for c, r in zip(capacity, running, strict=True))
    assert granted <= max(total - sum(running), 0)
    for c, (r, _, limit) in zip(capacity, runs, strict=True):
        if limit is not None and r <= limit:
            assert c <= limit  # a run's own bound holds
    demand = [min(r + q, total if limit is None else limit) for r, q, limit in runs]
    held = [max(d, r) for d, r in zip(demand, running, strict=True)]  # (a run may be over)
    if sum(held) <= total:  # enough for all: each may start everything it has ready
        assert all(c >= d for c, d in zip(capacity, demand, strict=True))
