"""MermaidGenerator: Mermaid.js flowcharts of a DAG, plain or styled (taskiq-flow's
`visualization.mermaid`). Node ids are `n<id>` (tasks), `in<j>` (external inputs), `g<j>`
(task names, in a collapsed view), so any task name is a valid label; every diagram stays
within Mermaid's edge and text limits (`flowchart.py`)."""

from __future__ import annotations

from ..dataflow.graph import DAG
from .collapse import DEFAULT_COLLAPSE_ABOVE
from .dag_visualizer import mermaid_direction
from .flowchart import MAX_EDGES, MAX_TEXT_SIZE, check_limits, flowchart


class MermaidGenerator:
    """`MermaidGenerator(dag).to_mermaid()`: the DAG as Mermaid flowchart text.

    Each method takes `collapse_above` (show the DAG by task name beyond this many tasks; 0:
    only when Mermaid's limits demand it), `max_edges` and `max_text_size` (Mermaid's
    `maxEdges` and `maxTextSize`: raise them with Mermaid's own)."""

    def __init__(self, dag: DAG) -> None:
        if not isinstance(dag, DAG):
            raise TypeError(f"MermaidGenerator(dag) takes a DAG, got {type(dag).__name__}")
        self.dag = dag

    def to_mermaid(
        self,
        orientation: str = "TB",
        *,
        collapse_above: int = DEFAULT_COLLAPSE_ABOVE,
        max_edges: int = MAX_EDGES,
        max_text_size: int = MAX_TEXT_SIZE,
    ) -> str:
        """One node per task (and per external input), one arrow per dependency labelled
        with the keys it carries."""
        limits = check_limits(collapse_above, max_edges, max_text_size)
        header = f"flowchart {mermaid_direction(orientation)}"
        return flowchart(self.dag, header, "    ", False, limits)

    def to_mermaid_with_styling(
        self,
        orientation: str = "LR",
        *,
        collapse_above: int = DEFAULT_COLLAPSE_ABOVE,
        max_edges: int = MAX_EDGES,
        max_text_size: int = MAX_TEXT_SIZE,
    ) -> str:
        """`to_mermaid` with classes: `input` (external inputs), `output` (tasks nothing
        depends on), `process` (the others)."""
        limits = check_limits(collapse_above, max_edges, max_text_size)
        header = f"flowchart {mermaid_direction(orientation)}"
        return flowchart(self.dag, header, "    ", True, limits)

    def to_mermaid_interactive(
        self,
        *,
        collapse_above: int = DEFAULT_COLLAPSE_ABOVE,
        max_edges: int = MAX_EDGES,
        max_text_size: int = MAX_TEXT_SIZE,
    ) -> str:
        """An HTML fragment: the styled diagram in a `mermaid` div, and the script that
        renders it and logs the node clicked."""
        code = self.to_mermaid_with_styling(
            collapse_above=collapse_above, max_edges=max_edges, max_text_size=max_text_size
        )
        return (
            "<script>\n"
            "mermaid.initialize({startOnLoad: true, securityLevel: 'loose', "
            "flowchart: {curve: 'basis'}});\n"
            "function onNodeClick(nodeId) { console.log('Node clicked:', nodeId); }\n"
            "</script>\n"
            f'<div class="mermaid">\n{code}\n</div>\n'
        )
