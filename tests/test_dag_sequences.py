"""The DAG's queries return lazy sequences (issue 14): NodeSequence / LevelSequence over the
Rust id arrays `_core.NodeIds` / `_core.Levels`. Everything a list of views offered must still
work, with the same results as the list the query used to return (`dag.views(ids)`)."""

# `a + [x]`, `not (a != b)` and `[] == a` are what is under test here, not style slips.
# ruff: noqa: RUF005, SIM202, SIM300

from __future__ import annotations

import copy
import pickle
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskiq_dataflow import DAG, CycleError, DAGNode, DAGVisualizer, _core
from taskiq_dataflow.dataflow.sequences import LevelSequence, NodeSequence

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fn(name):
    def f(**kwargs):
        return kwargs

    f.__name__ = name
    return f


SHARED = fn("shared")  # one task object run by two nodes: a node equals the task it runs


def small_dag() -> DAG:
    """load -> left, right -> join; `solo` alone; `shared` twice (after load, after join)."""
    dag = DAG()
    for task, out, ins in [
        (fn("load"), "raw", []),
        (fn("left"), "l", ["raw"]),
        (fn("right"), "r", ["raw"]),
        (fn("join"), "out", ["l", "r"]),
        (fn("solo"), "s", []),
        (SHARED, "x1", ["raw"]),
        (SHARED, "x2", ["out"]),
    ]:
        dag.add_node(DAGNode(task, output=out, inputs=ins))
    return dag


def ids(nodes) -> list[int]:
    return [n.id for n in nodes]


def names(nodes) -> list[str]:
    return [n.task_name for n in nodes]


# -- the sequences the DAG returns ---------------------------------------------------------------


def test_every_query_returns_a_sequence_equal_to_the_old_list():
    dag = small_dag()
    graph = dag.graph
    join = dag.node("join")
    cases = {
        "topological_sort": (dag.topological_sort(), graph.topological_order()),
        "roots": (dag.roots, graph.roots()),
        "leaves": (dag.leaves, graph.leaves()),
        "predecessors": (dag.predecessors("join"), graph.predecessors(3)),
        "successors": (dag.successors("load"), graph.successors(0)),
        "dependencies": (join.dependencies, graph.predecessors(3)),
        "dependents": (join.dependents, graph.successors(3)),
        "ancestors": (dag.ancestors(join), graph.ancestors([3])),
        "descendants": (dag.descendants("left"), graph.descendants([1])),
        "required_for": (dag.required_for("out"), graph.required_for(["out"])),
        "get_ready_tasks": (dag.get_ready_tasks(["load"]), graph.ready_given([0])),
    }
    for name, (seq, expected) in cases.items():
        assert type(seq) is NodeSequence, name
        assert type(seq.ids) is _core.NodeIds and seq.ids == expected, name
        old = dag.views(expected)
        assert seq == old and old == seq and list(seq) == old, name
        assert ids(seq) == expected.tolist(), name
    order = ["load", "left", "right", "join", "solo", "shared", "shared"]
    assert names(dag.topological_sort()) == order
    assert names(dag.roots) == ["load", "solo"] and names(dag.leaves) == [
        "solo",
        "shared",
        "shared",
    ]


def test_levels_are_sequences_of_sequences_over_one_id_array():
    dag = small_dag()
    for levels in (dag.levels, dag.get_parallel_levels(), dag.compute_levels()):
        assert type(levels) is LevelSequence
        assert type(levels.ids) is _core.Levels
        assert levels.ids == [[0, 4], [1, 2, 5], [3], [6]]
        assert levels.ids.ids == [0, 4, 1, 2, 5, 3, 6] and levels.ids.offsets == [0, 2, 5, 6, 7]
        assert [names(level) for level in levels] == [
            ["load", "solo"],
            ["left", "right", "shared"],
            ["join"],
            ["shared"],
        ]
        old = [dag.views(level) for level in dag.level_ids().tolist()]
        assert levels == old and old == levels and not (levels != old)
        assert all(type(level) is NodeSequence for level in levels)
        assert len(levels) == 4 and bool(levels)
        assert levels[-1] == [dag.nodes[6]] and levels[0][1] == dag.node("solo")
        assert type(levels[1:3]) is LevelSequence and levels[1:3] == old[1:3]
        assert (
            levels[::-2] == old[::-2] and levels[5:] == [] and list(reversed(levels)) == old[::-1]
        )
        assert old[2] in levels and [dag.nodes[3], dag.nodes[0]] not in levels
        assert levels.index(old[2]) == 2 and levels.count(old[1]) == 1
        assert levels + [[]] == [*old, []] and [[]] + levels == [[], *old]
        with pytest.raises(IndexError, match="level index 4 out of range for 4 levels"):
            levels[4]
        assert repr(levels) == "<LevelSequence: 4 levels, 7 nodes; level sizes [2, 3, 1, 1]>"
    assert [n.level for n in dag.nodes] == [0, 1, 1, 2, 0, 1, 3]


def test_the_list_behaviours_of_a_node_sequence():
    dag = small_dag()
    order = dag.topological_sort()
    old = dag.views(range(7))
    load, left, join, shared1, shared2 = (dag.nodes[i] for i in (0, 1, 3, 5, 6))
    assert len(order) == 7 and bool(order) and order.dag is dag
    assert order[0] == load and order[-1] == shared2 and order[-7] == load
    for bad in (7, -8, 10**30):
        with pytest.raises(IndexError, match="out of range for 7 nodes"):
            order[bad]
    with pytest.raises(TypeError):
        order["0"]
    for s in (slice(1, 3), slice(None, None, -1), slice(5, 1, -2), slice(9, 20), slice(-3, None)):
        assert type(order[s]) is NodeSequence and order[s] == old[s], s
    assert list(order) == old and list(reversed(order)) == old[::-1]
    assert [n for n in order if n.task_name == "join"] == [join]
    # in: by id for nodes, by the task a node runs for anything else
    assert load in order and join in order[1:4] and join not in order[:3]
    assert SHARED in order and SHARED not in order[:5] and load.task in order
    assert small_dag().nodes[0] not in order  # a node of another DAG
    assert DAGNode(fn("x"), output="q") not in order and None not in order and 0 not in order
    assert order.index(join) == 3 and order.index(SHARED) == 5 and order.index(SHARED, 6) == 6
    assert order.index(left, -6, -5) == 1 and order.index(SHARED, -2) == 5
    for missing in ((join, 4), (SHARED, 0, 5), (small_dag().nodes[0],), (object(),)):
        with pytest.raises(ValueError, match="is not in the sequence"):
            order.index(*missing)
    assert order.count(SHARED) == 2 and order.count(shared1) == 1 and order.count(object()) == 0
    # equality as lists of views compare: nodes by DAG and id, tasks by identity
    assert order == old and old == order and not (order != old) and order != old[:-1]
    assert order == [n.task for n in old] and order != old[::-1] and order != [*old[:6], load]
    assert order == dag.topological_sort() and order[2:4] == dag.nodes[2:4]
    assert order != tuple(old) and order != small_dag().topological_sort()
    assert dag.predecessors("load") == [] == small_dag().roots[:0]
    with pytest.raises(TypeError):
        hash(order)
    # concatenation and repetition give lists
    assert order + [load] == [*old, load] and [load] + order == [load, *old]
    assert order[:2] + order[5:] == [*old[:2], *old[5:]] and type(order + []) is list
    assert order[:2] * 2 == old[:2] * 2 == 2 * order[:2]
    with pytest.raises(TypeError):
        order + (load,)
    assert repr(order[:3]) == "NodeSequence([load#0, left#1, right#2])"
    assert repr(dag.predecessors(0)) == "NodeSequence([])"
    assert isinstance(order, Sequence) and isinstance(dag.levels, Sequence)


def test_in_index_count_and_equality_read_ids_not_views(monkeypatch):
    dag = small_dag()
    order, roots, nodes = dag.topological_sort(), dag.roots, list(dag.nodes)

    def no_views(*args):
        raise AssertionError("a view was made")

    monkeypatch.setattr(DAG, "view", no_views)
    monkeypatch.setattr(DAG, "iter_views", no_views)
    assert nodes[3] in order and nodes[4] in roots and nodes[1] not in roots
    assert order.index(nodes[5]) == 5 and roots.count(nodes[4]) == 1
    assert order == dag.topological_sort() and order == nodes and nodes == order
    assert order[1:3] == nodes[1:3] and len(order[::2]) == 4 and dag.levels == dag.levels


def test_unbound_node_and_empty_dag():
    node = DAGNode(fn("lonely"), output="x")
    assert node.dependencies == [] and node.dependents == [] and node.level == 0
    dag = DAG()
    for seq in (dag.topological_sort(), dag.roots, dag.leaves, dag.ancestors([])):
        assert len(seq) == 0 and not seq and seq == [] and [] == seq and list(seq) == []
        assert seq.ids == [] and list(reversed(seq)) == [] and node not in seq
        with pytest.raises(IndexError):
            seq[0]
    assert dag.levels == [] and not dag.levels and dag.levels.ids.tolist() == []
    assert repr(dag.levels) == "<LevelSequence: 0 levels, 0 nodes; level sizes []>"


def test_a_cycle_raises_cycle_error_naming_the_tasks():
    dag = DAG()
    a = dag.add_node(DAGNode(fn("a"), output="x", inputs=[]))
    b = dag.add_node(DAGNode(fn("b"), output="y", inputs=["x"]))
    dag.add_edge(b, a)
    calls = [
        dag.topological_sort,
        dag.get_parallel_levels,
        dag.compute_levels,
        lambda: dag.levels,
        dag.topological_ids,
        dag.level_ids,
        lambda: a.level,
    ]
    for call in calls:
        with pytest.raises(CycleError, match="a -> b -> a") as info:
            call()
        assert info.value.cycle == ["a", "b", "a"]
    assert names(dag.roots) == [] and names(a.dependencies) == ["b"]
    assert DAGVisualizer.to_json(dag)["is_cyclic"] is True


def test_a_query_sees_the_dag_it_was_made_on_and_a_new_one_after_a_change():
    dag = small_dag()
    order = dag.topological_sort()
    late = dag.add_node(DAGNode(fn("late"), output="z", inputs=["s"]))
    assert len(order) == 7 and len(dag.topological_sort()) == 8
    assert late not in order and late in dag.topological_sort() and dag.nodes[6] in order
    assert names(dag.leaves) == ["shared", "shared", "late"]


def test_a_long_chain_has_one_level_per_node_without_per_level_lists():
    n = 5000
    dag = DAG()
    for i in range(n):
        dag.add_node(DAGNode(fn(f"t{i}"), output=f"k{i}", inputs=[f"k{i - 1}"] if i else []))
    levels = dag.levels
    assert len(levels) == n and levels.ids.offsets == list(range(n + 1))
    assert levels[-1] == [dag.nodes[n - 1]] and levels[1234][0].id == 1234
    assert dag.nodes[4999] in dag.topological_sort() and dag.nodes[4999].level == 4999


# -- NodeIds and Levels, the Rust side -----------------------------------------------------------


def test_node_ids_behave_as_a_list_of_ints():
    ids_ = _core.NodeIds([3, 1, 4, 1, 5])
    lst = [3, 1, 4, 1, 5]
    assert isinstance(ids_, Sequence) and len(ids_) == 5 and bool(ids_) and not _core.NodeIds()
    assert ids_ == lst and lst == ids_ and ids_ != lst[:4] and ids_ != (3, 1, 4, 1, 5)
    assert ids_ == _core.NodeIds(lst) and ids_ == [3.0, 1, 4, 1, 5] and ids_ != ["3", 1, 4, 1, 5]
    assert ids_ < [3, 2] and ids_ > [3, 1, 4] and ids_ <= lst and ids_ >= _core.NodeIds(lst)
    assert ids_[1:] == lst[1:] and ids_[::-2] == lst[::-2] and ids_[-1] == 5
    assert type(ids_[1:3]) is _core.NodeIds and ids_[1:3][1:] == [4]
    assert list(ids_) == lst and list(reversed(ids_)) == lst[::-1] and ids_.tolist() == lst
    assert 4 in ids_ and 9 not in ids_ and -1 not in ids_ and 2**40 not in ids_ and 4.0 in ids_
    assert "4" not in ids_ and ids_.index(1) == 1 and ids_.index(1, 2) == 3 and ids_.count(1) == 2
    assert ids_.index(5, -1) == 4 and ids_.count(1.0) == 2
    with pytest.raises(ValueError, match="9 is not in NodeIds"):
        ids_.index(9)
    with pytest.raises(ValueError):
        ids_.index(3, 1)
    assert ids_ + [9] == [*lst, 9] and [9] + ids_ == [9, *lst] and (9,) + ids_ == [9, *lst]
    assert type(ids_ + ids_) is _core.NodeIds
    with pytest.raises(TypeError):
        ids_ + ["a"]
    with pytest.raises(TypeError):
        hash(ids_)
    with pytest.raises(IndexError, match="NodeIds index out of range"):
        ids_[5]
    with pytest.raises(TypeError, match="NodeIds indices must be integers or slices, not str"):
        ids_["a"]
    with pytest.raises(TypeError, match="node ids are ints"):
        _core.NodeIds([-1])
    assert repr(ids_) == "NodeIds([3, 1, 4, 1, 5])"
    assert repr(_core.NodeIds(range(11))) == "NodeIds([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...], len=11)"
    assert pickle.loads(pickle.dumps(ids_)) == ids_ and copy.deepcopy(ids_[1:]) == lst[1:]


def test_levels_behave_as_a_list_of_lists_of_ints():
    levels = _core.Levels([[0, 4], [1, 2], [3]])
    lists = [[0, 4], [1, 2], [3]]
    assert isinstance(levels, Sequence) and len(levels) == 3 and not _core.Levels()
    assert levels == lists and lists == levels and levels != lists[:2] and levels != [[0, 4]] * 3
    assert levels == [_core.NodeIds([0, 4]), [1, 2], [3.0]]
    assert levels != [[0, 4], [1, 2], (3,)]  # a tuple is no list, as in [[3]] != [(3,)]
    assert levels[1] == [1, 2] and type(levels[1]) is _core.NodeIds and levels[-1] == [3]
    assert levels[1:] == lists[1:] and levels[::-1] == lists[::-1] and levels[5:] == []
    assert list(levels) == lists and list(reversed(levels)) == lists[::-1]
    assert [1, 2] in levels and [2, 1] not in levels and levels.index([3]) == 2
    assert levels.count([0, 4]) == 1 and levels.tolist() == lists
    assert levels.ids == [0, 4, 1, 2, 3] and levels.offsets == [0, 2, 4, 5]
    assert levels[1:].ids == [1, 2, 3] and levels[1:].offsets == [0, 2, 3]
    assert levels.level_by_node(6) == [0, 1, 1, 2, 0, -1]
    with pytest.raises(ValueError, match="out of range"):
        levels.level_by_node(2)
    with pytest.raises(ValueError, match=r"\[9\] is not in Levels"):
        levels.index([9])
    with pytest.raises(TypeError):
        hash(levels)
    assert repr(levels) == "Levels([[0, 4], [1, 2], [3]], levels=3, nodes=5)"
    assert pickle.loads(pickle.dumps(levels)) == levels


def test_graph_ids_go_back_into_rust_calls():
    graph = _core.Graph.from_edges(4, [(0, 1), (1, 2), (0, 3)])
    assert graph.ancestors(graph.leaves()) == [0, 1]
    assert graph.descendants(graph.roots()[:1]) == [1, 2, 3]
    scheduler = _core.Scheduler(graph)
    scheduler.mark_done(graph.roots())
    assert scheduler.start() == [1, 3]
    order = graph.topological_order()
    assert order + [7] == [0, 1, 2, 3, 7] and list(reversed(order + [7])) == [7, 3, 2, 1, 0]


# -- against the old list semantics, on random DAGs ----------------------------------------------


@st.composite
def dags(draw, max_nodes=9):
    """A random DAG (ids shuffled against the edges), some nodes sharing a task object."""
    n = draw(st.integers(0, max_nodes))
    rank = draw(st.permutations(range(n)))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    picks = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    tasks = [fn("a"), fn("b"), None]
    dag = DAG()
    for i in range(n):
        task = draw(st.sampled_from(tasks)) if draw(st.booleans()) else fn(f"t{i}")
        dag.add_node(DAGNode(task, output=f"k{i}", inputs=[], name=f"n{i}"))
    for (i, j), p in zip(pairs, picks, strict=True):
        if p:
            dag.add_edge(rank[i], rank[j])
    return dag, tasks


def queries(dag: DAG, data) -> list[tuple[str, NodeSequence, list[int]]]:
    """(name, sequence, the ids of the old list) for each query."""
    graph, n = dag.graph, len(dag)
    found = [
        ("topological_sort", dag.topological_sort(), graph.topological_order().tolist()),
        ("roots", dag.roots, graph.roots().tolist()),
        ("leaves", dag.leaves, graph.leaves().tolist()),
    ]
    found += [
        (f"level {i}", level, ids_)
        for i, (level, ids_) in enumerate(zip(dag.levels, dag.level_ids().tolist(), strict=True))
    ]
    if n:
        v = data.draw(st.integers(0, n - 1))
        seeds = data.draw(st.lists(st.integers(0, n - 1), max_size=3))
        done = data.draw(st.lists(st.integers(0, n - 1), max_size=n))
        found += [
            ("predecessors", dag.predecessors(v), graph.predecessors(v).tolist()),
            ("successors", dag.nodes[v].dependents, graph.successors(v).tolist()),
            ("ancestors", dag.ancestors(seeds), graph.ancestors(seeds).tolist()),
            ("descendants", dag.descendants(seeds), graph.descendants(seeds).tolist()),
            ("ready", dag.get_ready_tasks(done), graph.ready_given(done).tolist()),
            ("order slice", dag.topological_sort()[1::2], graph.topological_order().tolist()[1::2]),
        ]
    return found


@SETTINGS
@given(dags(), st.data())
def test_sequences_answer_as_the_old_lists(made, data):
    dag, tasks = made
    n = len(dag)
    other = small_dag()
    probes = [*dag.nodes, other.nodes[0], DAGNode(fn("x"), output="q"), *tasks, object(), 0, None]
    for name, seq, expected in queries(dag, data):
        old = dag.views(expected)
        assert ids(seq) == expected and seq.ids == expected, name
        assert len(seq) == len(old) and bool(seq) == bool(old), name
        assert seq == old and old == seq and not (seq != old), name
        assert ids(reversed(seq)) == expected[::-1], name
        for i in data.draw(st.lists(st.integers(-n - 2, n + 2), max_size=4)):
            if -len(old) <= i < len(old):
                assert seq[i] == old[i], (name, i)
            else:
                with pytest.raises(IndexError):
                    seq[i]
        bounds = st.none() | st.integers(-n - 2, n + 2)
        for start, stop, step in data.draw(
            st.lists(st.tuples(bounds, bounds, st.none() | st.sampled_from([1, 2, -1, -3])))
        ):
            s = slice(start, stop, step)
            assert ids(seq[s]) == expected[s] and seq[s] == old[s], (name, s)
        for value in probes:
            assert (value in seq) == (value in old), (name, value)
            assert seq.count(value) == old.count(value), (name, value)
            start = data.draw(st.integers(-n - 1, n + 1))
            try:
                want = old.index(value, start)
            except ValueError:
                with pytest.raises(ValueError):
                    seq.index(value, start)
            else:
                assert seq.index(value, start) == want, (name, value, start)
        changed = data.draw(st.lists(st.sampled_from(probes), max_size=len(old) + 1))
        assert (seq == changed) == (old == changed) == (changed == seq), (name, changed)
        assert ids(seq + old) == expected * 2 and ids(old + seq) == expected * 2


@SETTINGS
@given(st.lists(st.integers(0, 20), max_size=12), st.data())
def test_node_ids_answer_as_a_list_of_ints(lst, data):
    seq = _core.NodeIds(lst)
    n = len(lst)
    assert seq == lst and lst == seq and list(seq) == lst and list(reversed(seq)) == lst[::-1]
    bounds = st.none() | st.integers(-n - 2, n + 2)
    for start, stop, step in data.draw(
        st.lists(st.tuples(bounds, bounds, st.none() | st.sampled_from([1, 3, -1, -2])))
    ):
        s = slice(start, stop, step)
        assert seq[s] == lst[s] and seq[s].tolist() == lst[s]
    other = data.draw(st.lists(st.integers(0, 20), max_size=12))
    for a, b in ((seq, other), (seq, _core.NodeIds(other))):
        assert (a == b) == (lst == other) and (a != b) == (lst != other)
        assert (a < b) == (lst < other) and (a <= b) == (lst <= other)
        assert (a > b) == (lst > other) and (a >= b) == (lst >= other)
    assert seq + other == lst + other and other + seq == other + lst
    for value in data.draw(st.lists(st.integers(-2, 22) | st.floats(0, 21), max_size=4)):
        assert (value in seq) == (value in lst) and seq.count(value) == lst.count(value)
        if value in lst:
            assert seq.index(value) == lst.index(value)
