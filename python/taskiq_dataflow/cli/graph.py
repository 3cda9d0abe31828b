"""`taskiq-dataflow graph TARGET`: the task graph as ASCII, Graphviz DOT or Mermaid."""

from __future__ import annotations

import argparse
import asyncio
from typing import TextIO

from ..errors import DAGValidationError
from ..execution_engine import MissingInputError
from .output import input_error
from .targets import graph_dag, load_target


def graph_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..visualization import DAGVisualizer

    target = asyncio.run(load_target(args.target))
    try:
        dag = graph_dag(target)
        if args.format == "dot":
            text = DAGVisualizer.to_dot(dag)
        elif args.format == "mermaid":
            text = DAGVisualizer.to_mermaid(dag)
        else:
            text = DAGVisualizer.to_ascii(dag, max_nodes=args.max_nodes)
    except (MissingInputError, DAGValidationError) as exc:
        raise input_error(exc) from exc
    out.write(text + "\n")
    return 0
