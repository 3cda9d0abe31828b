"""DAG, DAGNode and DAGBuilder: the documented module path `taskiq_dataflow.dataflow.dag`.

The DAG itself lives in `graph.py` and the builder in `builder.py` over the registry, so that the
dataflow modules import one way only: graph <- registry <- builder <- dag, graph <-
visualization.
"""

from .builder import DAGBuilder
from .graph import DAG, DAGNode, NodeFields, NodeRef, node_fields

__all__ = ["DAG", "DAGBuilder", "DAGNode", "NodeFields", "NodeRef", "node_fields"]
