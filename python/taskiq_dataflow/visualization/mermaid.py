"""MermaidGenerator: Mermaid.js flowcharts of a DAG, plain or styled (taskiq-flow's
`visualization.mermaid`). Node ids are `n<id>`, so any task name is a valid label."""

from __future__ import annotations

from ..dataflow.graph import DAG
from .dag_visualizer import _edge_keys, _mermaid_escape

# taskiq-flow's orientation names (TB is Mermaid's TD)
_DIRECTIONS = {"TB": "TD", "TD": "TD", "BT": "BT", "LR": "LR", "RL": "RL"}
_STYLES = (
    "    classDef input fill:#e1f5fe,stroke:#01579b,stroke-width:2px;",
    "    classDef process fill:#fff3e0,stroke:#e65100,stroke-width:2px;",
    "    classDef output fill:#e8f5e9,stroke:#1b5e20,stroke-width:2px;",
)


class MermaidGenerator:
    """`MermaidGenerator(dag).to_mermaid()`: the DAG as Mermaid flowchart text."""

    def __init__(self, dag: DAG) -> None:
        if not isinstance(dag, DAG):
            raise TypeError(f"MermaidGenerator(dag) takes a DAG, got {type(dag).__name__}")
        self.dag = dag

    def to_mermaid(self, orientation: str = "TB") -> str:
        """One node per task, one arrow per dependency labelled with the keys it carries."""
        lines = [f"flowchart {_direction(orientation)}"]
        lines += [
            f'    n{i}["{_mermaid_escape(name)}"]' for i, name in enumerate(self.dag.task_names)
        ]
        lines += self._edges()
        return "\n".join(lines)

    def to_mermaid_with_styling(self, orientation: str = "LR") -> str:
        """`to_mermaid` plus the external inputs as their own nodes, and classes: `input`
        (external inputs), `output` (tasks nothing depends on), `process` (the others)."""
        dag = self.dag
        lines = [f"flowchart {_direction(orientation)}", *_STYLES]
        external = dag.external_inputs
        for j, key in enumerate(external):
            lines.append(f'    in{j}(["{_mermaid_escape(key)}"]):::input')
        leaves = set(dag.graph.leaves())
        for i, name in enumerate(dag.task_names):
            kind = "output" if i in leaves else "process"
            lines.append(f'    n{i}["{_mermaid_escape(name)}"]:::{kind}')
        graph = dag.graph
        for j, key in enumerate(external):
            lines += [f"    in{j} --> n{i}" for i in graph.consumers(key)]
        lines += self._edges()
        return "\n".join(lines)

    def to_mermaid_interactive(self) -> str:
        """An HTML fragment: the styled diagram in a `mermaid` div, and the script that
        renders it and logs the node clicked."""
        code = self.to_mermaid_with_styling()
        return (
            "<script>\n"
            "mermaid.initialize({startOnLoad: true, securityLevel: 'loose', "
            "flowchart: {curve: 'basis'}});\n"
            "function onNodeClick(nodeId) { console.log('Node clicked:', nodeId); }\n"
            "</script>\n"
            f'<div class="mermaid">\n{code}\n</div>\n'
        )

    def _edges(self) -> list[str]:
        dag = self.dag
        lines = []
        for a, b in dag.graph.edges():
            keys = ", ".join(_edge_keys(dag, a, b))
            arrow = f"-->|{_mermaid_escape(keys)}|" if keys else "-.->"
            lines.append(f"    n{a} {arrow} n{b}")
        return lines


def _direction(orientation: str) -> str:
    try:
        return _DIRECTIONS[orientation]
    except KeyError:
        raise ValueError(
            f"unknown Mermaid orientation {orientation!r}: use one of TB, BT, LR, RL"
        ) from None
