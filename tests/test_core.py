"""Direct tests of the Rust module `taskiq_dataflow._core`: Graph and Scheduler."""

from __future__ import annotations

import math

import pytest
from taskiq_dataflow import _core
from taskiq_dataflow._core import CycleError, Graph, Scheduler, SchedulerError

STATES = ("pending", "ready", "running", "done", "failed", "skipped")


def diamond() -> Graph:
    """0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3, wired by keys."""
    return Graph([[], ["raw"], ["raw"], ["l", "r"]], [["raw"], ["l"], ["r"], ["out"]])


def states(sched: Scheduler, n: int) -> list[str]:
    return [sched.state(v) for v in range(n)]


def snapshot(sched: Scheduler, n: int):
    return states(sched, n), sched.counts(), sched.running, sched.finished


# -- module ------------------------------------------------------------------------------------


def test_module_exports():
    assert set(_core.__all__) == {
        "Graph",
        "Scheduler",
        "CycleError",
        "SchedulerError",
        "GrowthError",
        "NodeIds",
        "Levels",
        "share_slots",
        "__version__",
    }
    assert isinstance(_core.__version__, str) and _core.__version__.count(".") == 2
    assert issubclass(CycleError, ValueError) and issubclass(SchedulerError, ValueError)
    assert not issubclass(CycleError, SchedulerError)


# -- Graph construction ------------------------------------------------------------------------


def test_graph_from_keys():
    g = diamond()
    assert (g.node_count, g.edge_count, g.key_count, len(g)) == (4, 4, 4, 4)
    assert repr(g) == "<Graph 4 nodes, 4 edges, 4 keys>"
    assert g.edges() == [(0, 1), (0, 2), (1, 3), (2, 3)]
    assert g.validate() == [] and g.validate(strict_inputs=True) == []


def test_graph_accepts_tuples_lists_and_iterables_per_node():
    g = Graph([("a",), ["x"], iter(["x", "y"])], [["x"], ("y",), {"z"}])
    assert g.node_inputs(0) == ["a"] and g.node_inputs(2) == ["x", "y"]
    assert g.node_outputs(1) == ["y"] and g.node_outputs(2) == ["z"]
    assert g.edges() == [(0, 1), (0, 2), (1, 2)]


def test_graph_needs_sequences_of_nodes():
    # _core.pyi declares Sequence[Sequence[str]]: the node count sizes the graph up front.
    with pytest.raises(TypeError, match="has no len"):
        Graph(iter([[], ["x"]]), iter([["x"], ["y"]]))


def test_graph_mismatched_lengths():
    with pytest.raises(ValueError, match="inputs has 1 entries but outputs has 2"):
        Graph([[]], [[], []])
    with pytest.raises(ValueError, match="inputs has 3 entries but outputs has 0"):
        Graph([[], [], []], [])


@pytest.mark.parametrize(
    ("inputs", "outputs", "node", "what", "typename"),
    [
        ([["a"], ["b", 3]], [["x"], ["y"]], 1, "input", "int"),
        ([("a",), ("b", 3)], [["x"], ["y"]], 1, "input", "int"),  # the tuple fast path
        ([["a"], ["b"]], [["x"], [None]], 1, "output", "NoneType"),
        ([[b"a"], ["b"]], [["x"], ["y"]], 0, "input", "bytes"),
        ([[], [], []], [["x"], ["y"], [("z",)]], 2, "output", "tuple"),
    ],
)
def test_graph_non_string_key_names_the_node(inputs, outputs, node, what, typename):
    with pytest.raises(TypeError) as info:
        Graph(inputs, outputs)
    message, index = info.value.args
    assert index == node
    assert message == f"node {node}: {what} keys must be strings, got {typename}"


@pytest.mark.parametrize("side", ["input", "output"])
def test_graph_bare_string_instead_of_keys(side):
    keys = [["a"], "abc"]
    inputs, outputs = (keys, [["x"], ["y"]]) if side == "input" else ([[], []], keys)
    with pytest.raises(TypeError) as info:
        Graph(inputs, outputs)
    assert info.value.args == (f"node 1: {side} must be a sequence of keys, not a string", 1)


def test_graph_bad_argument_types():
    with pytest.raises(
        TypeError, match="node 1: input must be a sequence of keys, got int"
    ) as info:
        Graph([["a"], 5], [["x"], ["y"]])
    assert info.value.args[1] == 1
    with pytest.raises(TypeError):
        Graph(5, 5)
    with pytest.raises(TypeError):
        Graph([["a"]], [["b"]], external="a")  # a bare string, not a list of keys
    with pytest.raises(ValueError, match="length 2"):
        Graph([[]], [[]], edges=[(0, 0, 1)])
    with pytest.raises(OverflowError):
        Graph.from_edges(2, [(0, -1)])
    with pytest.raises(OverflowError):
        Graph.from_edges(-1, [])


def test_from_edges():
    g = Graph.from_edges(4, [(2, 1), (0, 1), (0, 1), (1, 3)])
    assert (g.node_count, g.edge_count, g.key_count) == (4, 3, 0)
    assert g.edges() == [(0, 1), (1, 3), (2, 1)]
    assert g.node_inputs(0) == [] and g.node_outputs(0) == []
    assert g.roots() == [0, 2] and g.leaves() == [3]
    assert g.topological_order() == [0, 2, 1, 3]
    assert Graph.from_edges(0, []).topological_order() == []


def test_empty_graph():
    g = Graph([], [])
    assert (len(g), g.edges(), g.validate()) == (0, [], [])
    assert g.topological_order() == [] and g.levels() == []
    assert g.critical_path() == (0.0, []) and g.bottom_levels() == []
    assert g.roots() == [] and g.leaves() == []
    sched = Scheduler(g)
    assert sched.start() == [] and sched.finished


# -- problems ----------------------------------------------------------------------------------


def test_bad_edge_problems():
    g = Graph.from_edges(2, [(0, 5), (7, 1), (0, 1)])
    assert g.validate() == [("bad_edge", 0, 5), ("bad_edge", 7, 1)]
    assert g.edges() == [(0, 1)]  # the bad edges are not in the graph
    assert g.topological_order() == [0, 1]
    g = Graph([[]], [["x"]], edges=[(0, 3)])
    assert g.validate() == [("bad_edge", 0, 3)]


def test_duplicate_output_problems():
    g = Graph([[], [], [], ["x"]], [["x"], ["y", "x"], ["x"], ["z"]])
    assert g.validate() == [("duplicate_output", "x", 0, 1), ("duplicate_output", "x", 0, 2)]
    assert g.producer("x") == 0  # the first node that lists it
    assert g.edges() == [(0, 3)]
    assert g.output_keys() == ["x", "y", "z"]


def test_missing_input_problems_only_when_strict():
    g = Graph([["a"], ["x", "ext", "b"]], [["x"], ["y"]], external=["ext"])
    assert g.validate() == []
    assert g.validate(strict_inputs=True) == [("missing_input", 0, "a"), ("missing_input", 1, "b")]
    assert g.validate(True) == g.validate(strict_inputs=True)
    # declared external keys are still unproduced inputs (the caller supplies them)
    assert g.unproduced_inputs() == ["a", "ext", "b"]


def test_cycle_problems_as_tuples():
    g = Graph.from_edges(5, [(2, 3), (3, 1), (1, 2), (4, 4), (0, 1)])
    assert g.validate() == [("cycle", [1, 2, 3, 1]), ("cycle", [4, 4])]
    assert Graph([["s"]], [["s"]]).validate() == [("cycle", [0, 0])]  # consumes its own output
    with pytest.raises(CycleError) as info:
        g.topological_order()
    assert info.value.args == ("cycle: 1 -> 2 -> 3 -> 1", [1, 2, 3, 1])
    for call in (g.levels, g.critical_path, g.bottom_levels):
        with pytest.raises(CycleError, match=r"cycle: 1 -> 2 -> 3 -> 1"):
            call()
    with pytest.raises(CycleError, match=r"cycle: 1 -> 2 -> 3 -> 1"):
        Scheduler(g)


def test_problems_are_listed_in_documented_order():
    g = Graph(
        [["s"], ["missing"], []],
        [["s"], ["dup"], ["dup"]],
        edges=[(0, 9)],
    )
    assert [p[0] for p in g.validate(strict_inputs=True)] == [
        "bad_edge",
        "duplicate_output",
        "missing_input",
        "cycle",
    ]


# -- queries -----------------------------------------------------------------------------------


def test_has_edge_and_edges():
    g = Graph([[], ["a"], ["a", "b"]], [["a"], ["b"], ["c"]], edges=[(1, 2)])
    assert g.edges() == [(0, 1), (0, 2), (1, 2)]  # the explicit edge merges with the keyed one
    assert g.has_edge(0, 1) and g.has_edge(1, 2) and not g.has_edge(2, 1)
    assert not g.has_edge(0, 0)


def test_producer_and_consumers():
    g = Graph([["in"], ["a", "a"], ["a", "in"]], [["a", "b"], ["c"], ["d"]])
    assert g.producer("a") == 0 and g.producer("b") == 0 and g.producer("d") == 2
    assert g.producer("in") is None and g.producer("unknown") is None
    assert g.consumers("a") == [1, 2]
    assert g.consumers("in") == [0, 2]
    assert g.consumers("d") == [] and g.consumers("unknown") == []


def test_node_inputs_and_outputs_keep_their_order():
    g = Graph([["z", "a", "m"], ["b"]], [["q", "p"], []])
    assert g.node_inputs(0) == ["z", "a", "m"] and g.node_outputs(0) == ["q", "p"]
    assert g.node_inputs(1) == ["b"] and g.node_outputs(1) == []


def test_unproduced_inputs_and_output_keys():
    g = Graph([["b"], ["a", "x"], ["c", "a", "y"]], [["x"], ["y"], ["z", "x"]])
    assert g.unproduced_inputs() == ["b", "a", "c"]  # first appearance
    assert g.output_keys() == ["x", "y", "z"]  # by producer; "x" of node 2 is a duplicate
    assert Graph([], []).unproduced_inputs() == [] and Graph([], []).output_keys() == []


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.predecessors(4),
        lambda g: g.successors(100),
        lambda g: g.node_inputs(4),
        lambda g: g.node_outputs(4),
        lambda g: g.has_edge(4, 0),
        lambda g: g.has_edge(0, 4),
        lambda g: g.ancestors([0, 4]),
        lambda g: g.descendants([4]),
    ],
)
def test_out_of_range_node_is_index_error(call):
    with pytest.raises(IndexError, match=r"^no node with id (4|100)$"):
        call(diamond())


def test_reachability_queries():
    g = diamond()
    assert g.predecessors(3) == [1, 2] and g.successors(0) == [1, 2]
    assert g.ancestors([3]) == [0, 1, 2] and g.descendants([0]) == [1, 2, 3]
    assert g.ancestors([1, 3]) == [0, 1, 2]  # a seed appears when it is an ancestor of one
    assert g.ancestors([]) == [] and g.descendants([3]) == []
    assert g.required_for(["l"]) == [0, 1] and g.required_for(["out", "raw"]) == [0, 1, 2, 3]
    assert g.ready_given([]) == [0] and g.ready_given([0]) == [1, 2]
    assert g.ready_given([0, 1, 99]) == [2]  # out-of-range ids are ignored


def test_required_for_unknown_or_unproduced_key():
    g = Graph([["ext"]], [["x"]])
    with pytest.raises(KeyError) as info:
        g.required_for(["x", "nope"])
    assert info.value.args == ("nope",)
    with pytest.raises(KeyError) as info:
        g.required_for(["ext"])
    assert info.value.args == ("ext",)


def test_levels_critical_path_bottom_levels():
    g = diamond()
    assert g.levels() == [[0], [1, 2], [3]]
    assert g.critical_path() == (3.0, [0, 1, 3])  # ties go to the smaller id
    assert g.critical_path([1.0, 1.0, 5.0, 1.0]) == (7.0, [0, 2, 3])
    assert g.bottom_levels() == [3.0, 2.0, 2.0, 1.0]
    assert g.bottom_levels([1.0, 1.0, 5.0, 1.0]) == [7.0, 2.0, 6.0, 1.0]
    with pytest.raises(ValueError, match="weights has 1 entries but the graph has 4 nodes"):
        g.critical_path([1.0])
    with pytest.raises(ValueError, match="weights has 5 entries but the graph has 4 nodes"):
        g.bottom_levels([1.0] * 5)


# -- Scheduler: state machine errors -----------------------------------------------------------


def test_scheduler_before_start():
    sched = Scheduler(diamond())
    for call in (lambda: sched.complete(0), lambda: sched.complete_many([0])):
        with pytest.raises(SchedulerError) as info:
            call()
        assert info.value.args == ("the scheduler has not started yet", None)
    for call in (lambda: sched.fail(0), lambda: sched.requeue(0)):
        with pytest.raises(SchedulerError, match="not started"):
            call()
    assert sched.take_ready() == []
    assert states(sched, 4) == ["pending"] * 4 and not sched.finished


def test_start_twice():
    sched = Scheduler(diamond())
    assert sched.start() == [0]
    with pytest.raises(SchedulerError) as info:
        sched.start()
    assert info.value.args == ("the scheduler has already started", None)
    assert states(sched, 4) == ["running", "pending", "pending", "pending"]


def test_complete_twice_names_the_node_and_its_state():
    sched = Scheduler(diamond())
    sched.start()
    assert sched.complete(0) == [1, 2]
    before = snapshot(sched, 4)
    with pytest.raises(SchedulerError) as info:
        sched.complete(0)
    assert info.value.args == ("node 0 is not running (it is done)", 0)
    assert str(info.value) == "('node 0 is not running (it is done)', 0)"
    assert snapshot(sched, 4) == before


def test_complete_a_node_never_handed_out():
    sched = Scheduler(diamond())
    sched.start()
    with pytest.raises(SchedulerError) as info:
        sched.complete(3)
    assert info.value.args == ("node 3 is not running (it is pending)", 3)
    queued = Scheduler(Graph.from_edges(2, []), capacity=1)
    assert queued.start() == [0]
    with pytest.raises(SchedulerError) as info:
        queued.complete(1)
    assert info.value.args == ("node 1 is not running (it is ready)", 1)
    with pytest.raises(SchedulerError) as info:
        sched.complete(4)
    assert info.value.args == ("node 4 does not exist", 4)


def test_complete_failed_and_skipped_nodes():
    sched = Scheduler(Graph.from_edges(2, [(0, 1)]))
    sched.start()
    assert sched.fail(0) == [1]
    with pytest.raises(SchedulerError) as info:
        sched.complete(0)
    assert info.value.args == ("node 0 is not running (it is failed)", 0)
    with pytest.raises(SchedulerError) as info:
        sched.fail(1)
    assert info.value.args == ("node 1 is not running (it is skipped)", 1)


@pytest.mark.parametrize(
    ("batch", "error"),
    [
        ([1, 2, 3], ("node 3 is not running (it is pending)", 3)),
        ([1, 0], ("node 0 is not running (it is done)", 0)),
        ([1, 2, 1], ("node 1 appears more than once in the batch", 1)),
        ([2, 2], ("node 2 appears more than once in the batch", 2)),
        ([1, 9], ("node 9 does not exist", 9)),
    ],
)
def test_complete_many_is_atomic(batch, error):
    sched = Scheduler(diamond())
    sched.start()
    sched.complete(0)
    before = snapshot(sched, 4)
    assert before[0] == ["done", "running", "running", "pending"]
    with pytest.raises(SchedulerError) as info:
        sched.complete_many(batch)
    assert info.value.args == error
    assert snapshot(sched, 4) == before, f"complete_many({batch}) changed state on error"
    assert sched.complete_many([2, 1]) == [3]
    assert sched.complete_many([]) == []
    assert sched.complete(3) == [] and sched.finished


def test_mark_done():
    g = Graph.from_edges(4, [(0, 1), (1, 2), (0, 3)])
    sched = Scheduler(g)
    with pytest.raises(SchedulerError) as info:
        sched.mark_done([1, 9])
    assert info.value.args == ("node 9 does not exist", 9)
    assert states(sched, 4) == ["pending"] * 4  # nothing changed
    sched.mark_done([1, 1])
    sched.mark_done([1])
    assert sched.counts()["done"] == 1
    assert sched.start() == [0, 2]  # 2 only needs 1, restored as done
    with pytest.raises(SchedulerError, match="already started"):
        sched.mark_done([0])
    assert sched.fail(0) == [3]  # 1 is done and 2 is running: neither is skipped
    assert states(sched, 4) == ["failed", "done", "running", "skipped"]
    assert sched.complete(2) == [] and sched.finished


def test_fail_skips_queued_and_pending_descendants():
    g = Graph.from_edges(5, [(0, 1), (1, 2), (2, 3), (0, 4)])
    sched = Scheduler(g, capacity=1)
    sched.mark_done([1])
    assert sched.start() == [0]
    assert states(sched, 5) == ["running", "done", "ready", "pending", "pending"]
    assert sched.fail(0) == [4]  # the search stops at the done node 1
    sched = Scheduler(Graph.from_edges(4, [(0, 1), (0, 2), (2, 3), (1, 3)]), capacity=1)
    sched.mark_done([2])
    assert sched.start() == [0]
    assert sched.fail(0) == [1, 3]
    assert sched.take_ready() == []
    assert sched.finished and sched.counts() == dict.fromkeys(STATES, 0) | {
        "done": 1,
        "failed": 1,
        "skipped": 2,
    }


def test_fail_frees_capacity_for_take_ready():
    sched = Scheduler(Graph.from_edges(4, [(0, 3)]), capacity=2)
    assert sched.start() == [0, 1]
    assert sched.fail(0) == [3]
    assert sched.running == 1 and sched.state(2) == "ready"
    assert sched.take_ready() == [2]
    assert sched.take_ready() == []


def test_requeue():
    sched = Scheduler(diamond())
    assert sched.start() == [0]
    assert sched.requeue(0) is None
    assert sched.state(0) == "ready" and sched.running == 0 and not sched.finished
    with pytest.raises(SchedulerError) as info:
        sched.requeue(0)
    assert info.value.args == ("node 0 is not running (it is ready)", 0)
    assert sched.take_ready() == [0]
    assert sched.complete(0) == [1, 2]
    with pytest.raises(SchedulerError) as info:
        sched.requeue(3)
    assert info.value.args == ("node 3 is not running (it is pending)", 3)
    with pytest.raises(SchedulerError, match="node 5 does not exist"):
        sched.requeue(5)


def test_cancel():
    g = Graph.from_edges(6, [(0, 1), (1, 2), (0, 3), (3, 4)])
    sched = Scheduler(g, capacity=2)
    assert sched.start() == [0, 5]
    assert sched.complete(0) == [1]
    assert states(sched, 6) == ["done", "running", "pending", "ready", "pending", "running"]
    assert sched.cancel() == [2, 3, 4]
    assert sched.running == 2 and not sched.finished  # running nodes stay running
    assert sched.complete(1) == []  # its successor was skipped
    assert sched.take_ready() == []
    assert sched.fail(5) == []
    assert sched.finished
    assert sched.counts() == {
        "pending": 0,
        "ready": 0,
        "running": 0,
        "done": 2,
        "failed": 1,
        "skipped": 3,
    }
    assert sched.cancel() == []


def test_cancel_before_start_skips_everything():
    sched = Scheduler(diamond())
    assert sched.cancel() == [0, 1, 2, 3]
    assert sched.start() == [] and sched.finished


# -- Scheduler: order, capacity, observation ---------------------------------------------------


def test_priorities_order():
    g = Graph.from_edges(6, [(5, 0)])
    sched = Scheduler(g, priorities=[9.0, 1.0, 5.0, 5.0, -2.0, 0.0])
    assert sched.start() == [2, 3, 1, 5, 4]  # highest first, ties by id
    assert sched.complete(5) == [0]
    default = Scheduler(Graph.from_edges(4, []))
    assert default.start() == [0, 1, 2, 3]  # no priorities: ascending id


def test_priorities_nan_runs_last_and_negative_zero_equals_zero():
    g = Graph.from_edges(5, [])
    sched = Scheduler(g, priorities=[math.nan, -math.inf, 0.0, -0.0, math.inf])
    assert sched.start() == [4, 2, 3, 1, 0]


def test_priorities_order_with_capacity():
    g = Graph.from_edges(5, [(0, 4)])
    sched = Scheduler(g, priorities=[1.0, 5.0, 3.0, 5.0, 10.0], capacity=2)
    assert sched.start() == [1, 3]
    assert sched.counts() == {
        "pending": 1,
        "ready": 2,
        "running": 2,
        "done": 0,
        "failed": 0,
        "skipped": 0,
    }
    assert sched.complete(1) == [2]
    assert sched.complete(3) == [0]
    assert sched.complete(0) == [4]  # newly ready, and higher than nothing queued
    assert sched.running == 2


def test_priorities_length():
    with pytest.raises(SchedulerError) as info:
        Scheduler(diamond(), priorities=[1.0])
    assert info.value.args == ("priorities has 1 entries but the graph has 4 nodes", None)


def test_capacity_take_ready_and_set_capacity():
    g = Graph.from_edges(6, [])
    sched = Scheduler(g, capacity=0)
    assert sched.start() == [] and sched.counts()["ready"] == 6
    assert sched.take_ready() == []
    sched.set_capacity(2)
    assert sched.take_ready() == [0, 1] and sched.running == 2
    assert sched.take_ready() == []
    sched.set_capacity(1)  # lowering stops nothing that runs
    assert sched.running == 2
    assert sched.complete(0) == [] and sched.complete(1) == [2]
    sched.set_capacity()  # unlimited
    assert sched.take_ready() == [3, 4, 5]
    assert sched.running == 4
    assert sched.complete_many([2, 3, 4, 5]) == [] and sched.finished


def test_state_names_and_counts_keys():
    g = Graph.from_edges(6, [(0, 1), (2, 3), (4, 5)])
    sched = Scheduler(g, capacity=2)
    assert set(sched.counts()) == set(STATES)
    assert sched.start() == [0, 2]
    sched.complete(0)  # hands out 1
    sched.fail(2)  # skips 3
    assert states(sched, 6) == ["done", "running", "failed", "skipped", "ready", "pending"]
    assert set(states(sched, 6)) == set(STATES)
    assert sched.counts() == dict.fromkeys(STATES, 1)
    assert sched.running == 1 and not sched.finished
    with pytest.raises(SchedulerError) as info:
        sched.state(6)
    assert info.value.args == ("node 6 does not exist", 6)


def _running(running: int, ready: int) -> _core.Scheduler:
    scheduler = _core.Scheduler(_core.Graph.from_edges(running + ready, []), None, running)
    assert len(scheduler.start()) == running
    return scheduler


def test_share_slots_gives_each_run_its_demand_and_a_share_of_the_rest():
    a, b, c = _running(2, 3), _running(1, 0), _running(0, 0)
    # demands 5, 1 and 0 of 12 slots: 6 left, 2 each
    assert _core.share_slots([a, b, c], 12, [0, 0, 0]) == [0]  # only a has ready nodes
    assert (a.capacity, b.capacity, c.capacity) == (7, 3, 2)
    assert a.take_ready() == [2, 3, 4]  # its capacity lets them all start


def test_share_slots_counts_seceded_nodes_outside_the_slots():
    a = _running(3, 1)  # 2 of the 3 running seceded: demand 2 of 4 slots
    assert _core.share_slots([a, _running(0, 0)], 4, [2, 0]) == [0]
    assert a.capacity == 3 + 1 + 1  # running, ready, a share of the 2 left


def test_share_slots_leaves_a_demand_that_does_not_fit_alone():
    a, b = _running(3, 2), _running(2, 0)
    assert _core.share_slots([a, b], 6, [0, 0]) is None
    assert (a.capacity, b.capacity) == (3, 2)  # unchanged


def test_share_slots_wants_one_seceded_count_per_scheduler():
    with pytest.raises(ValueError, match="one seceded count per scheduler"):
        _core.share_slots([_running(1, 0)], 4, [])
