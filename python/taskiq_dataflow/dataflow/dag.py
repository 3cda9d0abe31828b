"""DAG, DAGNode and DAGBuilder: the documented module path `taskiq_dataflow.dataflow.dag`.

The DAG itself lives in `graph.py` and the builder with the registry it fills, so that the
dataflow modules import one way only: graph <- registry <- dag, graph <- visualization.
"""

from .graph import DAG, DAGNode, NodeFields, NodeRef, node_fields
from .registry import DAGBuilder

__all__ = ["DAG", "DAGBuilder", "DAGNode", "NodeFields", "NodeRef", "node_fields"]
