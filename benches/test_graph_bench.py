"""pytest-benchmark suite: the operations of bench_graph.py on a small DAG, per library.

Not part of the normal test run (pytest's testpaths is ["tests"]); run it with

    .venv/bin/python -m pytest benches/test_graph_bench.py --benchmark-only

`BENCH_NODES=100000` changes the graph size (default 10,000 nodes, ~30,000 edges).
"""

from __future__ import annotations

import graphlib
import os
from typing import Any

import pytest
from bench_graph import (
    Dag,
    graphlib_levels,
    make_dag,
    nx_build,
    register_tasks,
    rx_build,
    walk_graphlib,
    walk_ours,
    walk_rustworkx,
)
from taskiq_dataflow import _core

NODES = int(os.environ.get("BENCH_NODES", "10000"))
FAST, SLOW = 20, 3  # rounds for ours and rustworkx, and for graphlib and networkx


def run(benchmark: Any, fn: Any, *args: Any, rounds: int = FAST) -> Any:
    """A fixed number of rounds (no calibration), so the whole suite takes seconds."""
    return benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1)


def run_fresh(benchmark: Any, fn: Any, deps: dict[int, list[int]], *args: Any) -> Any:
    """`fn(sorter, *args)` on a new graphlib sorter each round (built untimed)."""
    return benchmark.pedantic(
        fn, setup=lambda: ((graphlib.TopologicalSorter(deps), *args), {}), rounds=SLOW
    )


@pytest.fixture(scope="module")
def dag() -> Dag:
    return make_dag(NODES, seed=42)


@pytest.fixture(scope="module")
def graph(dag: Dag) -> _core.Graph:
    return _core.Graph(*dag.key_lists())


@pytest.fixture(scope="module")
def rx_graph(dag: Dag) -> Any:
    pytest.importorskip("rustworkx")
    return rx_build(dag)


@pytest.fixture(scope="module")
def nx_graph(dag: Dag) -> Any:
    pytest.importorskip("networkx")
    return nx_build(dag)


# -- build -----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="build")
def test_build_ours_keys(benchmark: Any, dag: Dag) -> None:
    inputs, outputs = dag.key_lists()
    graph = run(benchmark, _core.Graph, inputs, outputs)
    assert graph.edge_count == dag.edge_count


@pytest.mark.benchmark(group="build")
def test_build_ours_edges(benchmark: Any, dag: Dag) -> None:
    graph = run(benchmark, _core.Graph.from_edges, dag.n, dag.edges())
    assert graph.edge_count == dag.edge_count


@pytest.mark.benchmark(group="build")
def test_build_rustworkx(benchmark: Any, dag: Dag) -> None:
    pytest.importorskip("rustworkx")
    assert run(benchmark, rx_build, dag).num_edges() == dag.edge_count


@pytest.mark.benchmark(group="build")
def test_build_networkx(benchmark: Any, dag: Dag) -> None:
    pytest.importorskip("networkx")
    assert run(benchmark, nx_build, dag, rounds=SLOW).number_of_edges() == dag.edge_count


@pytest.mark.benchmark(group="build")
def test_build_graphlib(benchmark: Any, dag: Dag) -> None:
    run(benchmark, graphlib.TopologicalSorter, dag.deps(), rounds=SLOW)


# -- validate / cycle check ------------------------------------------------------------------


@pytest.mark.benchmark(group="validate")
def test_validate_ours(benchmark: Any, graph: _core.Graph) -> None:
    assert run(benchmark, graph.validate, True) == []


@pytest.mark.benchmark(group="validate")
def test_validate_rustworkx(benchmark: Any, rx_graph: Any) -> None:
    import rustworkx as rx

    assert run(benchmark, rx.is_directed_acyclic_graph, rx_graph)


@pytest.mark.benchmark(group="validate")
def test_validate_networkx(benchmark: Any, nx_graph: Any) -> None:
    import networkx as nx

    assert run(benchmark, nx.is_directed_acyclic_graph, nx_graph, rounds=SLOW)


@pytest.mark.benchmark(group="validate")
def test_validate_graphlib(benchmark: Any, dag: Dag) -> None:
    run_fresh(benchmark, graphlib.TopologicalSorter.prepare, dag.deps())


# -- topological order -----------------------------------------------------------------------


@pytest.mark.benchmark(group="topological-order")
def test_topo_ours(benchmark: Any, graph: _core.Graph, dag: Dag) -> None:
    assert len(run(benchmark, graph.topological_order)) == dag.n


@pytest.mark.benchmark(group="topological-order")
def test_topo_rustworkx(benchmark: Any, rx_graph: Any, dag: Dag) -> None:
    import rustworkx as rx

    assert len(run(benchmark, rx.topological_sort, rx_graph)) == dag.n


@pytest.mark.benchmark(group="topological-order")
def test_topo_networkx(benchmark: Any, nx_graph: Any, dag: Dag) -> None:
    import networkx as nx

    order = run(benchmark, lambda: list(nx.topological_sort(nx_graph)), rounds=SLOW)
    assert len(order) == dag.n


@pytest.mark.benchmark(group="topological-order")
def test_topo_graphlib(benchmark: Any, dag: Dag) -> None:
    order = run_fresh(benchmark, lambda sorter: list(sorter.static_order()), dag.deps())
    assert len(order) == dag.n


# -- levels ----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="levels")
def test_levels_ours(benchmark: Any, graph: _core.Graph) -> None:
    assert sum(map(len, run(benchmark, graph.levels))) == graph.node_count


@pytest.mark.benchmark(group="levels")
def test_levels_rustworkx(benchmark: Any, rx_graph: Any, graph: _core.Graph) -> None:
    import rustworkx as rx

    assert len(run(benchmark, rx.topological_generations, rx_graph)) == len(graph.levels())


@pytest.mark.benchmark(group="levels")
def test_levels_networkx(benchmark: Any, nx_graph: Any, graph: _core.Graph) -> None:
    import networkx as nx

    levels = run(benchmark, lambda: list(nx.topological_generations(nx_graph)), rounds=SLOW)
    assert len(levels) == len(graph.levels())


@pytest.mark.benchmark(group="levels")
def test_levels_graphlib(benchmark: Any, dag: Dag, graph: _core.Graph) -> None:
    assert len(run_fresh(benchmark, graphlib_levels, dag.deps())) == len(graph.levels())


# -- scheduler walk --------------------------------------------------------------------------

BATCHES = pytest.mark.parametrize("batch", [1, 1024, 0], ids=["one", "1024", "frontier"])


def walk_group(batch: int) -> str:
    return f"walk-{'frontier' if batch == 0 else batch}"


@BATCHES
def test_walk_ours(benchmark: Any, graph: _core.Graph, batch: int) -> None:
    benchmark.group = walk_group(batch)
    assert run(benchmark, walk_ours, graph, batch) == graph.node_count


@BATCHES
def test_walk_rustworkx(benchmark: Any, rx_graph: Any, dag: Dag, batch: int) -> None:
    benchmark.group = walk_group(batch)
    assert run(benchmark, walk_rustworkx, rx_graph, batch) == dag.n


@BATCHES
def test_walk_graphlib(benchmark: Any, dag: Dag, batch: int) -> None:
    benchmark.group = walk_group(batch)
    assert run_fresh(benchmark, walk_graphlib, dag.deps(), batch) == dag.n


# -- registry --------------------------------------------------------------------------------


@pytest.mark.benchmark(group="registry")
def test_registry(benchmark: Any, dag: Dag) -> None:
    built = run(benchmark, lambda: register_tasks(dag).build_dag(), rounds=SLOW)
    assert len(built) == dag.n
