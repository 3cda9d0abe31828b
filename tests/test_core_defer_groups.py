"""The Scheduler binding's defer, groups and priorities of added nodes (`_core`)."""

from __future__ import annotations

import pytest
from taskiq_dataflow._core import Graph, GrowthError, Scheduler, SchedulerError


def map_run(capacity: int | None = None) -> Scheduler:
    """0 (a map task) outputs "items", 1 reads it; started, 0 running."""
    sched = Scheduler(Graph([[], ["items"]], [["items"], ["res"]]), capacity=capacity)
    assert sched.start() == [0]
    return sched


def items_and_gather(sched: Scheduler, n: int, group: int | None = None) -> tuple[int, list[int]]:
    """n items and a gather reading them all; returns (gather id, items handed out)."""
    names = [f"x{i}" for i in range(n)]
    first, ready, skipped = sched.add_nodes(names, [(0, 1)] * n, group=group)
    assert skipped == []
    gather, ready2, _ = sched.add_nodes([*names, "gathered"], [(n, 1)])
    assert ready2 == []
    assert first == 2 and gather == 2 + n
    return gather, ready


def test_readers_of_a_deferred_node_wait_for_the_gather():
    sched = map_run()
    gather, ready = items_and_gather(sched, 2)
    assert ready == [2, 3]
    sched.defer(0, gather)
    assert sched.complete(0) == []
    assert sched.state(1) == "pending"
    assert sched.complete_many([2, 3]) == [gather]
    assert sched.complete(gather) == [1]
    assert sched.complete(1) == [] and sched.finished


def test_a_failed_gather_skips_the_deferred_readers():
    sched = map_run()
    gather, _ = items_and_gather(sched, 2)
    sched.defer(0, gather)
    sched.complete(0)
    assert sched.fail(2) == [1, gather]
    assert sched.state(1) == "skipped"


def test_defer_errors_raise_scheduler_error_with_the_node():
    sched = map_run()
    gather, _ = items_and_gather(sched, 1)
    with pytest.raises(SchedulerError, match="not running") as not_running:
        sched.defer(1, gather)
    assert not_running.value.args[1] == 1
    with pytest.raises(SchedulerError, match="itself"):
        sched.defer(0, 0)
    with pytest.raises(SchedulerError, match="does not exist") as missing:
        sched.defer(0, 99)
    assert missing.value.args[1] == 99
    sched.complete(2)
    sched.complete(gather)
    with pytest.raises(SchedulerError, match="it is done") as done:
        sched.defer(0, gather)
    assert done.value.args[1] == gather
    # Nothing was deferred: 1 runs right after 0.
    assert sched.complete(0) == [1]


def test_a_defer_closing_a_cycle_raises_growth_error_with_the_path():
    sched = map_run()
    late, _, _ = sched.add_nodes(["res", "late"], [(1, 1)])  # reads 1, which waits on 0
    with pytest.raises(GrowthError) as refused:
        sched.defer(0, late)
    message, kind, nodes, key, producer = refused.value.args
    assert (kind, nodes, key, producer) == ("cycle", [late, 1, late], None, None)
    assert "cycle: 2 -> 1 -> 2" in message
    assert sched.complete(0) == [1]


def test_a_group_keeps_at_most_its_capacity_running():
    sched = map_run()
    group = sched.new_group(2)
    gather, ready = items_and_gather(sched, 5, group=group)
    assert ready == [2, 3]
    # Held items count as ready.
    assert sched.counts()["ready"] == 3 and sched.running == 3
    # A node outside the group runs at once.
    assert sched.add_nodes(["other"], [(0, 1)])[1] == [gather + 1]
    assert sched.complete(2) == [4]
    sched.fail(3)
    assert sched.take_ready() == [5]
    sched.requeue(4)
    assert sched.take_ready() == [4]
    assert sched.cancel() == [1, 6]
    assert sched.take_ready() == []


def test_groups_are_checked():
    sched = map_run()
    with pytest.raises(SchedulerError, match="capacity of at least 1"):
        sched.new_group(0)
    with pytest.raises(GrowthError) as unknown:
        sched.add_nodes(["x"], [(0, 1)], group=7)
    assert unknown.value.args[1:] == ("unknown_group", [], None, None)
    assert sched.counts()["pending"] == 1


def test_priorities_of_added_nodes():
    sched = Scheduler(Graph([[], []], [["a"], ["b"]]), capacity=1)
    assert sched.start() == [0]
    first, ready, _ = sched.add_nodes(["x", "y"], [(0, 1), (0, 1)], priorities=[-1.0, 5.0])
    assert (first, ready) == (2, [])
    # 3 (5.0) first, then 1 at the existing nodes' 0, then 2 (-1.0).
    assert sched.complete(0) == [3]
    assert sched.complete(3) == [1]
    assert sched.complete(1) == [2]
    with pytest.raises(GrowthError, match="priorities has 2 entries") as wrong:
        sched.add_nodes(["z"], [(0, 1)], priorities=[1.0, 2.0])
    assert wrong.value.args[1] == "priorities"
