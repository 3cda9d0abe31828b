"""The dataflow graph: DAG, DAGNode, DAGBuilder, DataflowRegistry, DataCache, DataNode.

Its modules import one way: `graph` (DAG, DAGNode) <- `registry` (DataflowRegistry) <-
`builder` (DAGBuilder) <- `dag` (the documented path of DAG, DAGNode and DAGBuilder); `cache`,
`node` (DataNode) and `sequences` (what DAG queries return) stand alone. The visualizer and the
engine sit above and read a DAG through its column API (see `graph.DAG`).
"""

from .builder import DAGBuilder
from .cache import DataCache
from .graph import DAG, DAGNode
from .node import DataNode
from .registry import DataflowRegistry, TaskNode
from .sequences import LevelSequence, NodeSequence

__all__ = [
    "DAG",
    "DAGBuilder",
    "DAGNode",
    "DataCache",
    "DataNode",
    "DataflowRegistry",
    "LevelSequence",
    "NodeSequence",
    "TaskNode",
]
