"""DAGVisualizer: the DAG as ASCII, Graphviz DOT, or Mermaid text.

It reads a DAG through its column API and installs `to_ascii` as what `DAG.print` draws with,
so the DAG never imports the visualizer."""

from __future__ import annotations

import json

from .dataflow.graph import DAG, set_ascii_renderer


def _edge_keys(dag: DAG, a: int, b: int) -> list[str]:
    """The data keys that flow along a -> b (empty for an explicit edge)."""
    produced = set(dag.node_outputs[a])
    return [k for k in dag.node_inputs[b] if k in produced]


class DAGVisualizer:
    @staticmethod
    def to_ascii(dag: DAG, max_nodes: int = 200) -> str:
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
                    via = ", ".join(_edge_keys(dag, node, child)) or "after"
                    lines.append(f"      {branch}{via}─> [{child}] {names[child]}")
        return "\n".join(lines)

    @staticmethod
    def to_dot(dag: DAG, name: str = "dag") -> str:
        """Graphviz DOT: one box per task labelled with its outputs, edges labelled with keys."""
        lines = [f"digraph {json.dumps(name)} {{", "  rankdir=LR;", "  node [shape=box];"]
        outputs = dag.node_outputs
        for i, task_name in enumerate(dag.task_names):
            label = _dot_escape(task_name) + "\\n" + _dot_escape(", ".join(outputs[i]))
            lines.append(f'  n{i} [label="{label}"];')
        for a, b in dag.graph.edges():
            keys = ", ".join(_edge_keys(dag, a, b))
            attr = f" [label={json.dumps(keys)}]" if keys else " [style=dashed]"
            lines.append(f"  n{a} -> n{b}{attr};")
        lines.append("}")
        return "\n".join(lines)

    @staticmethod
    def to_mermaid(dag: DAG) -> str:
        """Mermaid flowchart text."""
        lines = ["graph TD"]
        for i, task_name in enumerate(dag.task_names):
            lines.append(f'  n{i}["{_mermaid_escape(task_name)}"]')
        for a, b in dag.graph.edges():
            keys = ", ".join(_edge_keys(dag, a, b))
            arrow = f"-->|{_mermaid_escape(keys)}|" if keys else "-.->"
            lines.append(f"  n{a} {arrow} n{b}")
        return "\n".join(lines)


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _mermaid_escape(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


set_ascii_renderer(DAGVisualizer.to_ascii)
