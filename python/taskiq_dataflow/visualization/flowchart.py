"""Mermaid flowchart text of a DAG that Mermaid will draw: never more edges than `max_edges`
(Mermaid's `maxEdges`, 500 by default) nor more text than `max_text_size` (its `maxTextSize`,
50,000 characters by default; past either Mermaid draws an error instead of the diagram).

The view, in order, is the first that fits:
1. every task (when the DAG has at most `collapse_above` tasks, or `collapse_above` is 0);
2. the DAG by task name (`collapse.py`);
3. a summary of that: the most frequent names and inputs with the heaviest edges between
   them, and a note node "N more task names / M edges not shown". Summarising rather than
   splitting into several diagrams keeps one picture whose every arrow is real, and a
   caller that wants more raises the limits (as it would Mermaid's).

Every view draws the external inputs (keys no task produces) as stadium-shaped `input`
nodes with arrows to their consumers."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from ..dataflow.graph import DAG
from .collapse import DEFAULT_COLLAPSE_ABOVE, Collapsed, collapse, collapses
from .labels import (
    TIMES,
    counted,
    cut,
    edge_keys,
    mermaid_edge_label,
    mermaid_length,
    mermaid_string,
)

MAX_EDGES = 500
MAX_TEXT_SIZE = 50_000

CLASS_DEFS = {
    "input": "classDef input fill:#e1f5fe,stroke:#01579b,stroke-width:2px;",
    "process": "classDef process fill:#fff3e0,stroke:#e65100,stroke-width:2px;",
    "output": "classDef output fill:#e8f5e9,stroke:#1b5e20,stroke-width:2px;",
    "note": "classDef note fill:#fffde7,stroke:#f57f17,stroke-dasharray:4 2;",
}


class Limits(NamedTuple):
    collapse_above: int = DEFAULT_COLLAPSE_ABOVE
    max_edges: int = MAX_EDGES
    max_text_size: int = MAX_TEXT_SIZE


def check_limits(collapse_above: int, max_edges: int, max_text_size: int) -> Limits:
    for name, value in (("max_edges", max_edges), ("max_text_size", max_text_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return Limits(collapse_above, max_edges, max_text_size)


def flowchart(dag: DAG, header: str, indent: str, styled: bool, limits: Limits) -> str:
    """Mermaid text for `dag` under `limits`, starting with `header` (`flowchart TD`), each
    statement indented by `indent`; `styled` gives task nodes a class (`process`, or `output`
    for tasks nothing depends on)."""
    head = [header, *(indent + CLASS_DEFS[c] for c in _classes(styled))]
    if not collapses(dag, limits.collapse_above):
        text = _fits(dag_lines(dag, head, indent, styled, limits.max_edges), limits)
        if text is not None:
            return text
    view = collapse(dag)
    if len(view.edges) + len(view.input_edges) <= limits.max_edges:
        text = _fits(_collapsed_lines(view, head, indent, styled, None), limits)
        if text is not None:
            return text
    return _summary(view, head, indent, styled, limits)


def _classes(styled: bool) -> tuple[str, ...]:
    return ("input", "process", "output", "note") if styled else ("input", "note")


def _fits(lines: list[str] | None, limits: Limits) -> str | None:
    if lines is None:
        return None
    text = "\n".join(lines)
    return text if mermaid_length(text) <= limits.max_text_size else None


def dag_lines(
    dag: DAG, head: list[str], indent: str, styled: bool, max_edges: int
) -> list[str] | None:
    """Every task (None when that is more than `max_edges` edges)."""
    graph = dag.graph
    if graph.edge_count > max_edges:
        return None
    external = graph.unproduced_inputs()
    consumers, edges = [], graph.edge_count
    for key in external:  # stops at the first key past the limit
        consumers.append(graph.consumers(key))
        edges += len(consumers[-1])
        if edges > max_edges:
            return None
    lines = list(head)
    lines += [
        f"{indent}in{j}([{mermaid_string(cut(key))}]):::input" for j, key in enumerate(external)
    ]
    leaves = set(graph.leaves()) if styled else set()
    for i, name in enumerate(dag.task_names):
        kind = (":::output" if i in leaves else ":::process") if styled else ""
        lines.append(f"{indent}n{i}[{mermaid_string(cut(name))}]{kind}")
    for j, nodes in enumerate(consumers):
        lines += [f"{indent}in{j} --> n{i}" for i in nodes]
    for a, b in graph.edges():
        keys = ", ".join(edge_keys(dag, a, b))
        arrow = f"-->|{mermaid_edge_label(cut(keys))}|" if keys else "-.->"
        lines.append(f"{indent}n{a} {arrow} n{b}")
    return lines


class _Shown(NamedTuple):
    """The part of a collapsed view a summary draws."""

    groups: set[int]
    inputs: set[int]
    edges: list[tuple[int, int, int]]
    input_edges: list[tuple[int, int, int]]


def _collapsed_lines(
    view: Collapsed, head: list[str], indent: str, styled: bool, shown: _Shown | None
) -> list[str]:
    """The collapsed view, or the part of it in `shown` and a note on the rest."""
    groups = range(len(view.names)) if shown is None else sorted(shown.groups)
    inputs = range(len(view.inputs)) if shown is None else sorted(shown.inputs)
    edges = view.edges if shown is None else shown.edges
    input_edges = view.input_edges if shown is None else shown.input_edges
    note = f"{view.task_count} tasks by name: {len(view.names)} names"
    lines = [*head, f"{indent}%% {note}"]
    lines += [
        f"{indent}in{j}([{mermaid_string(counted(cut(view.inputs[j]), view.input_counts[j]))}])"
        ":::input"
        for j in inputs
    ]
    sources = {a for a, b, _ in view.edges if a != b} if styled else set()
    for j in groups:
        kind = (":::process" if j in sources else ":::output") if styled else ""
        label = mermaid_string(counted(cut(view.names[j]), view.counts[j]))
        lines.append(f"{indent}g{j}[{label}]{kind}")
    lines += [f"{indent}in{j} {_arrow(count)} g{t}" for j, t, count in input_edges]
    lines += [f"{indent}g{a} {_arrow(count)} g{b}" for a, b, count in edges]
    if shown is not None:
        lines.append(f"{indent}more{{{{{mermaid_string(_rest(view, shown))}}}}}:::note")
    return lines


def _arrow(count: int) -> str:
    return "-->" if count == 1 else f"-->|{TIMES}{count}|"


def _rest(view: Collapsed, shown: _Shown) -> str:
    names = len(view.names) - len(shown.groups)
    inputs = len(view.inputs) - len(shown.inputs)
    edges = len(view.edges) + len(view.input_edges) - len(shown.edges) - len(shown.input_edges)
    hidden = [_many(names, "more task name")]
    if inputs:
        hidden.append(_many(inputs, "more input"))
    return f"{', '.join(hidden)} / {_many(edges, 'edge')} not shown"


def _many(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"


def _summary(view: Collapsed, head: list[str], indent: str, styled: bool, limits: Limits) -> str:
    """The most frequent names and inputs, as many as fit, with the heaviest edges among them
    (at most `max_edges`), and the note: the largest such view under both limits, found by
    bisection on the number of nodes shown (the text grows with it)."""
    # nodes ranked by how many tasks (or keys) they stand for, then by the dependencies they
    # take part in (an input read by every task ranks high); inputs are numbered -1 - j
    weight: Counter[int] = Counter()
    for a, b, count in view.edges:
        weight[a] += count
        weight[b] += count
    for j, t, count in view.input_edges:
        weight[-1 - j] += count
        weight[t] += count
    sizes = [*view.counts, *reversed(view.input_counts)]  # sizes[node] for node >= -len(inputs)
    ranked = sorted(
        [*range(len(view.names)), *(-1 - j for j in range(len(view.inputs)))],
        key=lambda node: (-sizes[node], -weight[node]),
    )
    # a node label takes at least 10 characters: more nodes than this never fit
    ranked = ranked[: limits.max_text_size // 10]
    rank = {node: r for r, node in enumerate(ranked)}
    # each edge with the rank it needs (its lower-ranked end), heaviest first
    candidates = sorted(
        [
            *((max(rank[a], rank[b]), count, a, b, False) for a, b, count in view.edges
              if a in rank and b in rank),
            *((max(rank[-1 - j], rank[t]), count, j, t, True) for j, t, count in view.input_edges
              if -1 - j in rank and t in rank),
        ],
        key=lambda edge: -edge[1],
    )  # fmt: skip

    def shown(size: int) -> _Shown:
        kept = ranked[:size]
        picked = [e for e in candidates if e[0] < size][: limits.max_edges]
        return _Shown(
            {n for n in kept if n >= 0},
            {-1 - n for n in kept if n < 0},
            sorted((a, b, count) for _, count, a, b, is_input in picked if not is_input),
            sorted((j, t, count) for _, count, j, t, is_input in picked if is_input),
        )

    def text(size: int) -> str | None:
        return _fits(_collapsed_lines(view, head, indent, styled, shown(size)), limits)

    low, high = 0, len(ranked)
    best = text(0)
    if best is None:
        raise ValueError(
            f"max_text_size={limits.max_text_size} is too small for even a summary of the "
            f"Mermaid diagram; raise it (Mermaid's own default is {MAX_TEXT_SIZE})"
        )
    while low < high:
        middle = (low + high + 1) // 2
        found = text(middle)
        if found is None:
            high = middle - 1
        else:
            low, best = middle, found
    return best
