"""`taskiq-dataflow graph TARGET`: the task graph as ASCII, Graphviz DOT or Mermaid."""

from __future__ import annotations

import argparse
import asyncio
from typing import TextIO

from ..dataflow.graph import DAG
from ..errors import CLIError, DAGValidationError
from ..execution_engine import MissingInputError
from .output import input_error
from .targets import graph_dag, load_target

# the formats each option of `graph` applies to: given with another, it is refused, not ignored
_APPLIES_TO = {
    "max_nodes": ("ascii",),
    "collapse_above": ("dot", "mermaid"),
    "direction": ("dot", "mermaid"),
    "max_edges": ("mermaid",),
    "max_text_size": ("mermaid",),
}


def graph_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for option, formats in _APPLIES_TO.items():
        if getattr(args, option) is not None and args.format not in formats:
            flag = "--" + option.replace("_", "-")
            raise CLIError(f"{flag} applies to --format {' or '.join(formats)}, not {args.format}")
    target = asyncio.run(load_target(args.target))
    try:
        dag = graph_dag(target)
    except (MissingInputError, DAGValidationError) as exc:
        raise input_error(exc) from exc
    try:
        text = _render(dag, args)
    except DAGValidationError as exc:
        raise input_error(exc) from exc
    except ValueError as exc:  # a limit no diagram fits in (the others argparse checked)
        raise CLIError(str(exc)) from None
    out.write(text + "\n")
    return 0


def _render(dag: DAG, args: argparse.Namespace) -> str:
    from ..visualization import DAGVisualizer
    from ..visualization.collapse import DEFAULT_COLLAPSE_ABOVE
    from ..visualization.flowchart import MAX_EDGES, MAX_TEXT_SIZE

    collapse_above = _given(args.collapse_above, DEFAULT_COLLAPSE_ABOVE)
    if args.format == "dot":
        rankdir = args.direction or "LR"
        return DAGVisualizer.to_dot(dag, rankdir=rankdir, collapse_above=collapse_above)
    if args.format == "mermaid":
        return DAGVisualizer.to_mermaid(
            dag,
            args.direction or "TB",
            collapse_above=collapse_above,
            max_edges=_given(args.max_edges, MAX_EDGES),
            max_text_size=_given(args.max_text_size, MAX_TEXT_SIZE),
        )
    return DAGVisualizer.to_ascii(dag, max_nodes=_given(args.max_nodes, 200))


def _given(value: int | None, default: int) -> int:
    return default if value is None else value
