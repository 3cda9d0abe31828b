"""Graphviz DOT text of a DAG: one box per task, or one per task name once the DAG is larger
than `collapse_above` (see `collapse.py`), and its external inputs as ellipses."""

from __future__ import annotations

from ..dataflow.graph import DAG
from .collapse import DEFAULT_COLLAPSE_ABOVE, Collapsed, collapse, collapses
from .labels import TIMES, counted, cut, dot_string, edge_keys

RANKDIRS = ("TB", "LR", "BT", "RL")
_INPUT_STYLE = 'shape=ellipse, style=filled, fillcolor="#e1f5fe"'


def to_dot(
    dag: DAG,
    name: str = "dag",
    *,
    rankdir: str = "LR",
    collapse_above: int = DEFAULT_COLLAPSE_ABOVE,
) -> str:
    """The DAG as DOT: laid out along `rankdir` (TB, LR, BT, RL); by task name when it has
    more than `collapse_above` tasks (0: never)."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"unknown DOT rankdir {rankdir!r}: use one of {', '.join(RANKDIRS)}")
    head = [f"digraph {dot_string(name)} {{", f"  rankdir={rankdir};", "  node [shape=box];"]
    body = _collapsed(collapse(dag)) if collapses(dag, collapse_above) else _full(dag)
    return "\n".join([*head, *body, "}"])


def _full(dag: DAG) -> list[str]:
    graph = dag.graph
    external = graph.unproduced_inputs()
    lines = [
        f"  in{j} [label={dot_string(cut(key))}, {_INPUT_STYLE}];" for j, key in enumerate(external)
    ]
    outputs = dag.node_outputs
    for i, task_name in enumerate(dag.task_names):
        label = cut(task_name) + "\n" + cut(", ".join(outputs[i]))
        lines.append(f"  n{i} [label={dot_string(label)}];")
    for j, key in enumerate(external):
        lines += [f"  in{j} -> n{i};" for i in graph.consumers(key)]
    for a, b in graph.edges():
        keys = ", ".join(edge_keys(dag, a, b))
        attr = f" [label={dot_string(cut(keys))}]" if keys else " [style=dashed]"
        lines.append(f"  n{a} -> n{b}{attr};")
    return lines


def _collapsed(view: Collapsed) -> list[str]:
    note = f"{view.task_count} tasks by name: {len(view.names)} names"
    lines = [f"  label={dot_string(note)};", "  labelloc=t;"]
    lines += [
        f"  in{j} [label={dot_string(counted(cut(key), count))}, {_INPUT_STYLE}];"
        for j, (key, count) in enumerate(zip(view.inputs, view.input_counts, strict=True))
    ]
    lines += [
        f"  g{j} [label={dot_string(counted(cut(name), count))}];"
        for j, (name, count) in enumerate(zip(view.names, view.counts, strict=True))
    ]
    lines += [f"  in{j} -> g{t}{_count(count)};" for j, t, count in view.input_edges]
    lines += [f"  g{a} -> g{b}{_count(count)};" for a, b, count in view.edges]
    return lines


def _count(count: int) -> str:
    return "" if count == 1 else f' [label="{TIMES}{count}"]'
