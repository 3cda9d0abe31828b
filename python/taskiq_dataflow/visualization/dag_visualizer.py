"""DAGVisualizer: the DAG as ASCII, Graphviz DOT, Mermaid text, JSON or Cytoscape.js elements,
and its critical path and parallel groups.

Each method works both ways taskiq-flow's docs use it: on the class with the DAG as first
argument (`DAGVisualizer.to_dot(dag)`) and on an instance made for one DAG
(`DAGVisualizer(dag).to_dot()`). It reads a DAG through its column API and installs `to_ascii`
as what `DAG.print` draws with, so the DAG never imports the visualizer."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from .. import _core
from ..dataflow.graph import DAG, set_ascii_renderer
from ..errors import CycleError
from .collapse import DEFAULT_COLLAPSE_ABOVE
from .dot import to_dot as _to_dot
from .flowchart import MAX_EDGES, MAX_TEXT_SIZE, check_limits, flowchart
from .labels import edge_keys

P = ParamSpec("P")
R = TypeVar("R")


class _OfDAG(Generic[P, R]):
    """A function of a DAG: called on the class with the DAG, on an instance without it."""

    def __init__(self, func: Callable[Concatenate[DAG, P], R]) -> None:
        self._func = func
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Callable[Concatenate[DAG, P], R]: ...

    @overload
    def __get__(self, obj: DAGVisualizer, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, obj: DAGVisualizer | None, owner: type[Any]) -> Callable[..., Any]:
        if obj is None:
            return self._func
        return functools.partial(self._func, obj.dag)


def node_labels(dag: DAG) -> list[str]:
    """A unique label per node: its task's name, with `#id` where several nodes share it."""
    names = dag.task_names
    shared = {name for name, count in Counter(names).items() if count > 1}
    return [f"{name}#{i}" if name in shared else name for i, name in enumerate(names)]


def _to_ascii(dag: DAG, max_nodes: int = 200) -> str:
    """Tasks by parallel level, each with its inputs => outputs and the tasks it feeds."""
    graph = dag.graph
    levels = dag.level_ids()
    names, inputs, outputs = dag.task_names, dag.node_inputs, dag.node_outputs
    lines = [f"DAG: {len(dag)} tasks, {graph.edge_count} edges, {len(levels)} levels"]
    shown = 0
    for depth, level in enumerate(levels):
        lines.append(f"Level {depth}")
        for node in level:
            if shown == max_nodes:
                lines.append(f"... {len(dag) - shown} more tasks (raise max_nodes to see them)")
                return "\n".join(lines)
            shown += 1
            ins = ", ".join(inputs[node])
            outs = ", ".join(outputs[node])
            lines.append(f"  [{node}] {names[node]} ({ins}) => {outs}")
            succ = graph.successors(node)
            for j, child in enumerate(succ):
                branch = "└─" if j == len(succ) - 1 else "├─"
                via = ", ".join(edge_keys(dag, node, child)) or "after"
                lines.append(f"      {branch}{via}─> [{child}] {names[child]}")
    return "\n".join(lines)


def _to_mermaid(
    dag: DAG,
    orientation: str = "TB",
    *,
    collapse_above: int = DEFAULT_COLLAPSE_ABOVE,
    max_edges: int = MAX_EDGES,
    max_text_size: int = MAX_TEXT_SIZE,
) -> str:
    """Mermaid flowchart text that Mermaid draws: every task, or by task name beyond
    `collapse_above` tasks (0: never) or Mermaid's limits, summarised beyond those
    (`flowchart.py`)."""
    limits = check_limits(collapse_above, max_edges, max_text_size)
    return flowchart(dag, f"graph {mermaid_direction(orientation)}", "  ", False, limits)


def _to_json(dag: DAG) -> dict[str, Any]:
    """JSON-ready data: nodes (id, label, level, inputs, outputs, state), edges (source,
    target, keys), levels and topological order as node ids; `is_cyclic`, with empty levels
    and order, for a DAG that has a cycle."""
    labels = node_labels(dag)
    try:
        level_ids, order = dag.level_ids(), dag.topological_ids()
    except CycleError:
        level_ids, order, cyclic = _core.Levels(), _core.NodeIds(), True
    else:
        cyclic = False
    level_of = {i: depth for depth, level in enumerate(level_ids) for i in level}
    nodes = [
        {
            "id": labels[i],
            "label": dag.task_names[i],
            "level": level_of.get(i),
            "inputs": list(dag.node_inputs[i]),
            "outputs": list(dag.node_outputs[i]),
            "state": "pending",
        }
        for i in range(len(dag))
    ]
    edges = [
        {"source": labels[a], "target": labels[b], "keys": edge_keys(dag, a, b)}
        for a, b in dag.graph.edges()
    ]
    return {
        "nodes": nodes,
        "edges": edges,
        "levels": [[labels[i] for i in level] for level in level_ids],
        "topological_order": [labels[i] for i in order],
        "is_cyclic": cyclic,
        "node_count": len(dag),
        "edge_count": len(edges),
        "level_count": len(level_ids),
    }


# Cytoscape.js has no layout of its own in "preset" mode: nodes are laid out by level
# (left to right) and by position within the level.
_X_STEP, _Y_STEP = 200, 100


def _to_cytoscape_json(dag: DAG) -> dict[str, list[dict[str, Any]]]:
    """Cytoscape.js elements: {"nodes": [{"data", "position"}], "edges": [{"data"}]}."""
    labels = node_labels(dag)
    nodes = []
    for depth, level in enumerate(dag.level_ids()):
        for row, i in enumerate(level):
            nodes.append(
                {
                    "data": {"id": labels[i], "label": dag.task_names[i], "level": depth},
                    "position": {"x": depth * _X_STEP, "y": row * _Y_STEP},
                }
            )
    edges = [
        {
            "data": {
                "id": f"{labels[a]}->{labels[b]}",
                "source": labels[a],
                "target": labels[b],
                "keys": edge_keys(dag, a, b),
            }
        }
        for a, b in dag.graph.edges()
    ]
    return {"nodes": nodes, "edges": edges}


def _detect_critical_path(dag: DAG) -> list[str]:
    """The longest dependency chain, as node labels (task names); a cycle raises CycleError."""
    if not len(dag):
        return []
    labels = node_labels(dag)
    _, path = dag.critical_path()
    return [labels[node.id] for node in path]


def _find_parallelizable_groups(dag: DAG) -> list[list[str]]:
    """The parallel levels as node labels: each group's tasks may run at the same time."""
    labels = node_labels(dag)
    return [[labels[i] for i in level] for level in dag.level_ids()]


def _print_ascii(dag: DAG, max_nodes: int = 200) -> None:
    print(_to_ascii(dag, max_nodes))


class DAGVisualizer:
    """Renderings and analyses of a DAG (see the module): `DAGVisualizer.to_json(dag)` or
    `DAGVisualizer(dag).to_json()`."""

    def __init__(self, dag: DAG) -> None:
        if not isinstance(dag, DAG):
            raise TypeError(f"DAGVisualizer(dag) takes a DAG, got {type(dag).__name__}")
        self.dag = dag

    to_ascii = _OfDAG(_to_ascii)
    visualize_ascii = to_ascii
    print_ascii = _OfDAG(_print_ascii)
    to_dot = _OfDAG(_to_dot)
    to_graphviz = to_dot
    to_mermaid = _OfDAG(_to_mermaid)
    to_json = _OfDAG(_to_json)
    to_json_extended = to_json
    to_cytoscape_json = _OfDAG(_to_cytoscape_json)
    detect_critical_path = _OfDAG(_detect_critical_path)
    find_parallelizable_groups = _OfDAG(_find_parallelizable_groups)


def visualize_pipeline(pipeline: Any) -> dict[str, Any]:
    """`DAGVisualizer.to_json` of a pipeline's DAG (anything with a `.dag`, or a DAG)."""
    dag = pipeline if isinstance(pipeline, DAG) else getattr(pipeline, "dag", None)
    if not isinstance(dag, DAG):
        raise TypeError(
            f"visualize_pipeline takes a DataflowPipeline (or anything with a .dag) or a DAG, "
            f"got {type(pipeline).__name__}"
        )
    return _to_json(dag)


# taskiq-flow's orientation names (TB is Mermaid's TD)
_DIRECTIONS = {"TB": "TD", "TD": "TD", "BT": "BT", "LR": "LR", "RL": "RL"}


def mermaid_direction(orientation: str) -> str:
    try:
        return _DIRECTIONS[orientation]
    except KeyError:
        raise ValueError(
            f"unknown Mermaid orientation {orientation!r}: use one of TB, BT, LR, RL"
        ) from None


set_ascii_renderer(_to_ascii)
