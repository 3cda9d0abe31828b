"""Property tests on random graphs: the Rust core and the DAG API against plain-Python oracles.

Every oracle here is written from the definition (heapq Kahn, graphlib, breadth-first search,
longest path by dynamic programming), never from the library's own code.
"""

from __future__ import annotations

import graphlib
import heapq
import itertools
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskiq_dataflow import DAG, CycleError, DAGNode, _core

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MAX_NODES = 10


# -- random graphs -----------------------------------------------------------------------------


@st.composite
def acyclic(draw, max_nodes=MAX_NODES):
    """(n, edges): a random DAG, ids shuffled so that id order is no topological order."""
    n = draw(st.integers(0, max_nodes))
    rank = draw(st.permutations(range(n)))  # rank[k]: the node at topological position k
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    density = draw(st.sampled_from([0.1, 0.25, 0.5]))
    picks = draw(st.lists(st.floats(0, 1), min_size=len(pairs), max_size=len(pairs)))
    edges = [(rank[i], rank[j]) for (i, j), p in zip(pairs, picks, strict=True) if p < density]
    return n, edges


@st.composite
def cyclic(draw, max_nodes=MAX_NODES):
    """(n, edges): a random DAG plus 1 to 3 edges that each close a cycle (self loops included)."""
    n = draw(st.integers(1, max_nodes))
    rank = draw(st.permutations(range(n)))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    picks = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    forward = [(i, j) for (i, j), p in zip(pairs, picks, strict=True) if p]
    # A back edge rank[j] -> rank[i] with i <= j closes a cycle when i == j (self loop) or
    # when the forward edges give a path i -> j; add the chain i -> ... -> j to be sure.
    back = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).map(sorted),
            min_size=1,
            max_size=3,
        )
    )
    chain = {(k, k + 1) for i, j in back for k in range(i, j)}
    edges = [(rank[i], rank[j]) for i, j in sorted(set(forward) | chain)]
    edges += [(rank[j], rank[i]) for i, j in back]
    return n, edges


def adjacency(n, edges):
    preds = {v: set() for v in range(n)}
    succs = {v: set() for v in range(n)}
    for a, b in edges:
        succs[a].add(b)
        preds[b].add(a)
    return preds, succs


def reach(succs, seeds):
    """Nodes at the end of a non-empty path from some seed (breadth-first search)."""
    seen = set()
    queue = deque(s for seed in seeds for s in succs[seed])
    while queue:
        v = queue.popleft()
        if v not in seen:
            seen.add(v)
            queue.extend(succs[v])
    return seen


def lexicographic_topo(n, preds, succs):
    """The lexicographically smallest topological order: Kahn with a min-heap."""
    indegree = {v: len(preds[v]) for v in range(n)}
    heap = [v for v in range(n) if indegree[v] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        u = heapq.heappop(heap)
        order.append(u)
        for w in succs[u]:
            indegree[w] -= 1
            if indegree[w] == 0:
                heapq.heappush(heap, w)
    assert len(order) == n, "oracle called on a cyclic graph"
    return order


def graphlib_levels(n, preds):
    level = {}
    for v in graphlib.TopologicalSorter({v: preds[v] for v in range(n)}).static_order():
        level[v] = 1 + max((level[p] for p in preds[v]), default=-1)
    groups = [[] for _ in range(1 + max(level.values(), default=-1))]
    for v in range(n):
        groups[level[v]].append(v)
    return groups


def graphlib_rounds(n, preds):
    sorter = graphlib.TopologicalSorter({v: preds[v] for v in range(n)})
    sorter.prepare()
    rounds = []
    while sorter.is_active():
        ready = sorter.get_ready()
        rounds.append(set(ready))
        sorter.done(*ready)
    return rounds


def is_topological(order, n, edges):
    position = {v: i for i, v in enumerate(order)}
    return sorted(order) == list(range(n)) and all(position[a] < position[b] for a, b in edges)


def cyclic_components(n, succs):
    """The strongly connected components that contain a cycle, as frozensets."""
    reachable = {v: reach(succs, [v]) for v in range(n)}
    return {
        frozenset({v} | {u for u in reachable[v] if v in reachable[u]})
        for v in range(n)
        if v in reachable[v]
    }


def check_cycle_path(path, edge_set, components, what):
    """A closed simple path of real edges, starting at the smallest id of its component."""
    assert len(path) >= 2 and path[0] == path[-1], f"{what}: {path} is not a closed path"
    assert len(set(path[:-1])) == len(path) - 1, f"{what}: {path} repeats a node"
    for a, b in itertools.pairwise(path):
        assert (a, b) in edge_set, f"{what}: {path} uses {a} -> {b}, which is not an edge"
    (component,) = [c for c in components if path[0] in c]
    assert set(path) <= component
    assert path[0] == min(component), f"{what}: {path} does not start at min of {component}"
    return component


def make_dag(n, edges, via_key):
    """A DAG of tasks t0..t{n-1}; each edge is wired by a data key or added explicitly."""
    inputs = [["ext"] if v % 3 == 0 else [] for v in range(n)]  # an unproduced key: no edge
    explicit = []
    for (a, b), keyed in zip(edges, via_key, strict=True):
        if keyed:
            inputs[b].append(f"k{a}")
        else:
            explicit.append((a, b))
    dag = DAG()
    for v in range(n):
        dag.add_node(DAGNode(output=f"k{v}", inputs=inputs[v], name=f"t{v}"))
    for a, b in explicit:
        dag.add_edge(a, b)
    return dag


@st.composite
def graphs(draw, kind=acyclic):
    """(n, edges, dag, graph): the same graph as a DAG (keys + explicit edges) and from_edges."""
    n, edges = draw(kind())
    via_key = draw(st.lists(st.booleans(), min_size=len(edges), max_size=len(edges)))
    doubled = draw(st.lists(st.sampled_from(edges), max_size=3)) if edges else []
    graph = _core.Graph.from_edges(n, edges + doubled)  # duplicate edges are merged
    return n, edges, make_dag(n, edges, via_key), graph


def ids(nodes):
    return [node.id for node in nodes]


# -- orders ------------------------------------------------------------------------------------


@SETTINGS
@given(graphs())
def test_same_graph_from_keys_and_from_edges(case):
    n, edges, dag, graph = case
    expected = sorted(set(edges))
    assert graph.edges() == expected
    assert dag.graph.edges() == expected
    assert graph.edge_count == len(dag.edges) == len(expected)
    assert graph.node_count == len(graph) == len(dag) == n
    assert dag.graph.validate() == [] and graph.validate() == []
    dag.validate()
    preds, succs = adjacency(n, edges)
    for v in range(n):
        assert graph.predecessors(v) == sorted(preds[v])
        assert graph.successors(v) == sorted(succs[v])
        assert ids(dag.predecessors(v)) == sorted(preds[v])
        assert ids(dag.successors(v)) == sorted(succs[v])
    assert graph.roots() == ids(dag.roots) == [v for v in range(n) if not preds[v]]
    assert graph.leaves() == ids(dag.leaves) == [v for v in range(n) if not succs[v]]
    edge_set = set(edges)
    for a in range(n):
        for b in range(n):
            assert graph.has_edge(a, b) == ((a, b) in edge_set)
            assert ((dag.nodes[a], dag.nodes[b]) in dag.edges) == ((a, b) in edge_set)


@SETTINGS
@given(graphs())
def test_topological_order_is_the_lexicographically_smallest(case):
    n, edges, dag, graph = case
    preds, succs = adjacency(n, edges)
    tuple(graphlib.TopologicalSorter({v: preds[v] for v in range(n)}).static_order())  # acyclic
    expected = lexicographic_topo(n, preds, succs)
    order = graph.topological_order()
    assert is_topological(order, n, edges), f"{order} is not a topological order of {edges}"
    assert order == expected, f"edges {edges}: got {order}, lexicographically smallest {expected}"
    assert ids(dag.topological_sort()) == expected


@SETTINGS
@given(graphs())
def test_levels_match_graphlib(case):
    n, edges, dag, graph = case
    preds, _ = adjacency(n, edges)
    expected = graphlib_levels(n, preds)
    assert graph.levels() == expected
    assert [ids(level) for level in dag.get_parallel_levels()] == expected
    assert [ids(level) for level in dag.levels] == expected


@SETTINGS
@given(graphs())
def test_ready_walk_matches_graphlib_rounds(case):
    n, edges, dag, graph = case
    preds, _ = adjacency(n, edges)
    rounds = []
    completed: set[int] = set()
    while True:
        ready = dag.get_ready_tasks(completed)
        assert ids(ready) == graph.ready_given(sorted(completed))
        if not ready:
            break
        assert ids(ready) == sorted(ids(ready))
        rounds.append(set(ids(ready)))
        completed.update(node.id for node in ready)
    assert rounds == graphlib_rounds(n, preds)
    assert completed == set(range(n))


# -- reachability ------------------------------------------------------------------------------


@SETTINGS
@given(graphs(), st.data())
def test_ancestors_descendants_required_for(case, data):
    n, edges, dag, graph = case
    preds, succs = adjacency(n, edges)
    seeds = data.draw(st.lists(st.integers(0, n - 1), max_size=4)) if n else []
    down = sorted(reach(succs, seeds))
    up = sorted(reach(preds, seeds))
    assert graph.descendants(seeds) == down, f"edges {edges}, seeds {seeds}"
    assert graph.ancestors(seeds) == up, f"edges {edges}, seeds {seeds}"
    assert ids(dag.descendants(seeds)) == down
    assert ids(dag.ancestors(seeds)) == up
    if seeds:
        keys = [f"k{s}" for s in seeds]
        needed = sorted(set(seeds) | reach(preds, seeds))
        assert ids(dag.required_for(keys)) == needed
        assert dag.graph.required_for(keys) == needed
        sub = dag.subgraph(keys)
        assert [node.task_name for node in sub.nodes] == [f"t{v}" for v in needed]
        position = {v: i for i, v in enumerate(needed)}
        inside = {(position[a], position[b]) for a, b in edges if a in position and b in position}
        assert set(sub.graph.edges()) == inside


# -- critical path -----------------------------------------------------------------------------


@SETTINGS
@given(graphs(), st.data())
def test_critical_path_is_a_heaviest_path(case, data):
    n, edges, dag, graph = case
    preds, succs = adjacency(n, edges)
    halves = st.integers(0, 20).map(lambda x: x / 2)  # exact in binary: sums compare with ==
    weights = data.draw(st.none() | st.lists(halves, min_size=n, max_size=n))
    w = weights or [1.0] * n
    heaviest: dict[int, float] = {}  # heaviest path ending at v, v included
    for v in lexicographic_topo(n, preds, succs):
        heaviest[v] = w[v] + max((heaviest[p] for p in preds[v]), default=0.0)
    below: dict[int, float] = {}  # heaviest path starting at v, v included
    for v in reversed(lexicographic_topo(n, preds, succs)):
        below[v] = w[v] + max((below[s] for s in succs[v]), default=0.0)
    expected = max(heaviest.values(), default=0.0)

    total, path = graph.critical_path(weights)
    assert total == expected, f"edges {edges}, weights {weights}: {total} != {expected}"
    assert graph.bottom_levels(weights) == [below[v] for v in range(n)]
    if n == 0:
        assert path == []
        return
    assert sum(w[v] for v in path) == total, f"path {path} does not weigh {total}"
    assert all((a, b) in set(edges) for a, b in itertools.pairwise(path)), path
    assert not preds[path[0]] and not succs[path[-1]], f"{path} is not root to leaf"
    by_name = {f"t{v}": w[v] for v in range(n)} if weights else None
    dag_total, dag_path = dag.critical_path(by_name)
    assert (dag_total, ids(dag_path)) == (total, path)


# -- cycles ------------------------------------------------------------------------------------


@SETTINGS
@given(graphs(kind=cyclic))
def test_cycles_are_always_reported_as_real_closed_paths(case):
    n, edges, dag, graph = case
    preds, succs = adjacency(n, edges)
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({v: preds[v] for v in range(n)}).prepare()
    components = cyclic_components(n, succs)
    edge_set = set(edges)

    for g in (graph, dag.graph):
        problems = g.validate()
        assert problems, f"edges {edges}: validate() reported no cycle"
        assert all(p[0] == "cycle" for p in problems), problems
        seen = [check_cycle_path(p[1], edge_set, components, "validate") for p in problems]
        assert set(seen) == components and len(seen) == len(components), (
            f"edges {edges}: one cycle per cyclic component expected, got {problems}"
        )
        for call in (g.topological_order, g.levels, g.critical_path, g.bottom_levels):
            with pytest.raises(_core.CycleError) as info:
                call()
            message, path = info.value.args
            check_cycle_path(path, edge_set, components, call.__name__)
            assert message == "cycle: " + " -> ".join(map(str, path))
        with pytest.raises(_core.CycleError) as info:
            _core.Scheduler(g)
        check_cycle_path(info.value.args[1], edge_set, components, "Scheduler")

    first = problems[0][1]
    with pytest.raises(CycleError) as info:
        dag.validate()
    assert info.value.cycle == [f"t{v}" for v in first]
    assert len(info.value.problems) == len(problems)
    for problem, text in zip(problems, info.value.problems, strict=True):
        assert text == "Circular dependency detected: " + " -> ".join(f"t{v}" for v in problem[1])
    for call in (dag.topological_sort, dag.get_parallel_levels, dag.critical_path):
        with pytest.raises(CycleError) as info:
            call()
        path = [int(name[1:]) for name in info.value.cycle]
        check_cycle_path(path, edge_set, components, call.__name__)
        assert " -> ".join(info.value.cycle) in str(info.value)


# -- the scheduler -----------------------------------------------------------------------------


def priority_order(priorities):
    """Sort key of the hand-out order: highest priority first, then ascending id."""
    if priorities is None:
        return lambda v: (0, v)
    return lambda v: (-priorities[v], v)


class Run:
    """Drives a Scheduler and checks every invariant after each call."""

    def __init__(self, n, edges, priorities=None, capacity=None, done=()):
        self.n = n
        self.edges = edges
        self.preds, self.succs = adjacency(n, edges)
        self.priorities = priorities
        self.capacity = capacity
        self.key = priority_order(priorities)
        self.sched = _core.Scheduler(_core.Graph.from_edges(n, edges), priorities, capacity)
        self.done = set(done)
        if done:
            self.sched.mark_done(list(done))
        self.running: set[int] = set()
        self.handed = {v: 0 for v in range(n)}
        self.requeued = {v: 0 for v in range(n)}
        self.failed: set[int] = set()
        self.skipped: set[int] = set()
        self.take(self.sched.start(), "start()")

    def states(self):
        return {v: self.sched.state(v) for v in range(self.n)}

    def take(self, out, call):
        ctx = f"edges {self.edges}, priorities {self.priorities}, capacity {self.capacity}: {call}"
        assert len(set(out)) == len(out), f"{ctx} handed out {out} with repeats"
        assert out == sorted(out, key=self.key), f"{ctx} handed out {out} not in priority order"
        for v in out:
            assert v not in self.done | self.failed | self.skipped | self.running, (
                f"{ctx} handed out node {v}, which is not waiting"
            )
            assert self.handed[v] == self.requeued[v], f"{ctx} handed out node {v} twice"
            missing = self.preds[v] - self.done
            assert not missing, f"{ctx} handed out node {v} before its predecessors {missing}"
            self.handed[v] += 1
        self.running.update(out)
        self.check(ctx)
        if out:  # what still waits comes after everything handed out, in priority order
            waiting = [v for v in range(self.n) if self.sched.state(v) == "ready"]
            late = [v for v in waiting if self.key(v) < self.key(out[-1])]
            assert not late, f"{ctx} handed out {out} while {late} waited with higher priority"

    def check(self, ctx, conserving=True):
        states = self.states()
        counts = self.sched.counts()
        assert sum(counts.values()) == self.n
        for name in ("pending", "ready", "running", "done", "failed", "skipped"):
            assert counts[name] == sum(1 for s in states.values() if s == name), (ctx, counts)
        assert {v for v, s in states.items() if s == "running"} == self.running, ctx
        assert {v for v, s in states.items() if s == "done"} == self.done, ctx
        assert {v for v, s in states.items() if s == "failed"} == self.failed, ctx
        assert {v for v, s in states.items() if s == "skipped"} == self.skipped, ctx
        assert self.sched.running == len(self.running)
        if self.capacity is not None:
            assert len(self.running) <= self.capacity, f"{ctx}: {len(self.running)} running"
        ready = [v for v, s in states.items() if s == "ready"]
        for v in ready:  # ready means: every predecessor done
            assert self.preds[v] <= self.done, f"{ctx}: node {v} ready too early"
        for v, s in states.items():
            if s == "pending":
                assert not self.preds[v] <= self.done, f"{ctx}: node {v} should be ready"
        if ready and conserving:  # work-conserving: nothing waits while there is room
            assert self.capacity is not None and len(self.running) >= self.capacity, (
                f"{ctx}: nodes {ready} wait although only {len(self.running)} run"
            )
        assert self.sched.finished == (
            not ready and not self.running and not any(s == "pending" for s in states.values())
        )

    def complete(self, nodes):
        for v in nodes:
            self.running.discard(v)
        self.done.update(nodes)
        if len(nodes) == 1:
            out = self.sched.complete(nodes[0])
            self.take(out, f"complete({nodes[0]})")
        else:
            out = self.sched.complete_many(nodes)
            self.take(out, f"complete_many({nodes})")

    def fail(self, node):
        states = self.states()
        # Oracle: what depends on `node` through nodes that have not run yet (without
        # mark_done that is every descendant of a running node: none of them ran).
        doomed = set()
        queue = deque(self.succs[node])
        while queue:
            v = queue.popleft()
            if v not in doomed and states[v] in ("pending", "ready"):
                doomed.add(v)
                queue.extend(self.succs[v])
        skipped = self.sched.fail(node)
        self.running.discard(node)
        self.failed.add(node)
        ctx = f"edges {self.edges}: fail({node})"
        assert skipped == sorted(doomed), f"{ctx} skipped {skipped}, expected {sorted(doomed)}"
        self.skipped.update(skipped)
        self.check(ctx, conserving=False)  # the freed capacity waits for take_ready()
        self.take(self.sched.take_ready(), f"take_ready() after fail({node})")

    def requeue(self, node):
        self.sched.requeue(node)
        self.running.discard(node)
        self.requeued[node] += 1
        self.check(f"requeue({node})", conserving=False)
        self.take(self.sched.take_ready(), f"take_ready() after requeue({node})")

    def finish(self):
        ctx = f"edges {self.edges}, priorities {self.priorities}, capacity {self.capacity}"
        assert self.sched.finished, f"{ctx}: not finished, states {self.states()}"
        assert not self.running
        counts = self.sched.counts()
        assert counts["done"] == len(self.done)
        assert counts["done"] + counts["failed"] + counts["skipped"] == self.n
        assert self.sched.take_ready() == []


schedules = st.tuples(
    acyclic(max_nodes=12),
    st.one_of(st.none(), st.integers(1, 4)),
    st.booleans(),
)


def draw_priorities(data, n, use):
    if not use:
        return None
    return data.draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0, 7.0]), min_size=n, max_size=n))


def stalled(run):
    return f"edges {run.edges}: nothing running but not finished, states {run.states()}"


@SETTINGS
@given(schedules, st.data())
def test_scheduler_hands_out_each_node_once_in_dependency_order(params, data):
    (n, edges), capacity, use_priorities = params
    run = Run(n, edges, draw_priorities(data, n, use_priorities), capacity)
    while run.running:
        running = sorted(run.running)
        batch = data.draw(st.lists(st.sampled_from(running), min_size=1, unique=True))
        run.complete(batch)
    assert run.sched.finished, stalled(run)
    run.finish()
    assert run.sched.counts()["done"] == n == len(run.done)
    assert all(count == 1 for count in run.handed.values()), run.handed


@SETTINGS
@given(schedules, st.data())
def test_scheduler_fail_skips_exactly_the_descendants(params, data):
    (n, edges), capacity, use_priorities = params
    run = Run(n, edges, draw_priorities(data, n, use_priorities), capacity)
    while run.running:
        node = data.draw(st.sampled_from(sorted(run.running)))
        if data.draw(st.integers(0, 3)) == 0:
            descendants = reach(run.succs, [node])
            run.fail(node)
            assert run.skipped >= descendants - run.done, "a descendant of a failed node ran"
        else:
            run.complete([node])
    assert run.sched.finished, stalled(run)
    run.finish()
    # Every node that did not run depends on a failed node.
    assert run.skipped == reach(run.succs, run.failed) - run.done - run.failed
    assert all(count == (v in run.done or v in run.failed) for v, count in run.handed.items())


@SETTINGS
@given(schedules, st.data())
def test_scheduler_with_requeue_mark_done_and_capacity_changes(params, data):
    (n, edges), capacity, use_priorities = params
    done = data.draw(st.lists(st.integers(0, n - 1), max_size=3)) if n else []
    run = Run(n, edges, draw_priorities(data, n, use_priorities), capacity, done=done)
    for _ in range(4 * n + 4):
        if not run.running:
            break
        action = data.draw(st.sampled_from(["complete", "complete", "fail", "requeue", "cap"]))
        if action == "cap":
            run.capacity = data.draw(st.one_of(st.none(), st.integers(1, 4)))
            run.sched.set_capacity(run.capacity)
            if run.capacity is not None and len(run.running) > run.capacity:
                # Lowering the capacity stops nothing that runs; finish the extra work first.
                run.complete(sorted(run.running)[: len(run.running) - run.capacity])
            run.take(run.sched.take_ready(), f"take_ready() after set_capacity({run.capacity})")
            continue
        node = data.draw(st.sampled_from(sorted(run.running)))
        if action == "complete":
            run.complete([node])
        elif action == "fail":
            run.fail(node)
        else:
            run.requeue(node)
    while run.running:
        run.complete([min(run.running)])
    assert run.sched.finished, stalled(run)
    run.finish()
