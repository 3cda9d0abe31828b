"""pytest-benchmark suite: the operations of bench_graph.py on a small DAG, per library.

Not part of the normal test run (pytest's testpaths is ["tests"]); run it with

    .venv/bin/python -m pytest benches/ --benchmark-only

`BENCH_NODES=100000` changes the graph size (default 20,000 nodes, ~60,000 edges).
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

NODES = int(os.environ.get("BENCH_NODES", "20000"))

pytestmark = pytest.mark.benchmark(min_rounds=3, warmup=False)


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
    graph = benchmark(_core.Graph, inputs, outputs)
    assert graph.edge_count == dag.edge_count


@pytest.mark.benchmark(group="build")
def test_build_ours_edges(benchmark: Any, dag: Dag) -> None:
    graph = benchmark(_core.Graph.from_edges, dag.n, dag.edges())
    assert graph.edge_count == dag.edge_count


@pytest.mark.benchmark(group="build")
def test_build_rustworkx(benchmark: Any, dag: Dag) -> None:
    pytest.importorskip("rustworkx")
    assert benchmark(rx_build, dag).num_edges() == dag.edge_count


@pytest.mark.benchmark(group="build")
def test_build_networkx(benchmark: Any, dag: Dag) -> None:
    pytest.importorskip("networkx")
    assert benchmark(nx_build, dag).number_of_edges() == dag.edge_count


@pytest.mark.benchmark(group="build")
def test_build_graphlib(benchmark: Any, dag: Dag) -> None:
    benchmark(graphlib.TopologicalSorter, dag.deps())


# -- validate / cycle check ------------------------------------------------------------------


@pytest.mark.benchmark(group="validate")
def test_validate_ours(benchmark: Any, graph: _core.Graph) -> None:
    assert benchmark(graph.validate, True) == []


@pytest.mark.benchmark(group="validate")
def test_validate_rustworkx(benchmark: Any, rx_graph: Any) -> None:
    import rustworkx as rx

    assert benchmark(rx.is_directed_acyclic_graph, rx_graph)


@pytest.mark.benchmark(group="validate")
def test_validate_networkx(benchmark: Any, nx_graph: Any) -> None:
    import networkx as nx

    assert benchmark(nx.is_directed_acyclic_graph, nx_graph)


@pytest.mark.benchmark(group="validate")
def test_validate_graphlib(benchmark: Any, dag: Dag) -> None:
    deps = dag.deps()
    benchmark.pedantic(
        lambda s: s.prepare(),
        setup=lambda: ((graphlib.TopologicalSorter(deps),), {}),
        rounds=5,
    )


# -- topological order -----------------------------------------------------------------------


@pytest.mark.benchmark(group="topological-order")
def test_topo_ours(benchmark: Any, graph: _core.Graph, dag: Dag) -> None:
    assert len(benchmark(graph.topological_order)) == dag.n


@pytest.mark.benchmark(group="topological-order")
def test_topo_rustworkx(benchmark: Any, rx_graph: Any, dag: Dag) -> None:
    import rustworkx as rx

    assert len(benchmark(rx.topological_sort, rx_graph)) == dag.n


@pytest.mark.benchmark(group="topological-order")
def test_topo_networkx(benchmark: Any, nx_graph: Any, dag: Dag) -> None:
    import networkx as nx

    assert len(benchmark(lambda: list(nx.topological_sort(nx_graph)))) == dag.n


@pytest.mark.benchmark(group="topological-order")
def test_topo_graphlib(benchmark: Any, dag: Dag) -> None:
    deps = dag.deps()
    benchmark.pedantic(
        lambda s: list(s.static_order()),
        setup=lambda: ((graphlib.TopologicalSorter(deps),), {}),
        rounds=5,
    )


# -- levels ----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="levels")
def test_levels_ours(benchmark: Any, graph: _core.Graph) -> None:
    assert sum(map(len, benchmark(graph.levels))) == graph.node_count


@pytest.mark.benchmark(group="levels")
def test_levels_rustworkx(benchmark: Any, rx_graph: Any, graph: _core.Graph) -> None:
    import rustworkx as rx

    assert len(benchmark(rx.topological_generations, rx_graph)) == len(graph.levels())


@pytest.mark.benchmark(group="levels")
def test_levels_networkx(benchmark: Any, nx_graph: Any, graph: _core.Graph) -> None:
    import networkx as nx

    levels = benchmark(lambda: list(nx.topological_generations(nx_graph)))
    assert len(levels) == len(graph.levels())


@pytest.mark.benchmark(group="levels")
def test_levels_graphlib(benchmark: Any, dag: Dag) -> None:
    deps = dag.deps()
    benchmark.pedantic(
        graphlib_levels, setup=lambda: ((graphlib.TopologicalSorter(deps),), {}), rounds=5
    )


# -- scheduler walk --------------------------------------------------------------------------

BATCHES = pytest.mark.parametrize("batch", [1, 1024, 0], ids=["one", "1024", "frontier"])


@BATCHES
def test_walk_ours(benchmark: Any, graph: _core.Graph, batch: int) -> None:
    benchmark.group = f"walk-{batch}"
    assert benchmark(walk_ours, graph, batch) == graph.node_count


@BATCHES
def test_walk_rustworkx(benchmark: Any, rx_graph: Any, dag: Dag, batch: int) -> None:
    benchmark.group = f"walk-{batch}"
    assert benchmark(walk_rustworkx, rx_graph, batch) == dag.n


@BATCHES
def test_walk_graphlib(benchmark: Any, dag: Dag, batch: int) -> None:
    benchmark.group = f"walk-{batch}"
    deps = dag.deps()
    benchmark.pedantic(
        walk_graphlib,
        setup=lambda: ((graphlib.TopologicalSorter(deps), batch), {}),
        rounds=5,
    )


# -- registry --------------------------------------------------------------------------------


@pytest.mark.benchmark(group="registry")
def test_registry(benchmark: Any, dag: Dag) -> None:
    built = benchmark.pedantic(lambda: register_tasks(dag).build_dag(), rounds=3)
    assert len(built) == dag.n
