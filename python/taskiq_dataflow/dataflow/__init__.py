"""The dataflow graph: DAG, DAGNode, DAGBuilder, DataflowRegistry, DataCache."""

from .cache import DataCache
from .dag import DAG, DAGBuilder, DAGNode
from .registry import DataflowRegistry, TaskNode

__all__ = ["DAG", "DAGBuilder", "DAGNode", "DataCache", "DataflowRegistry", "TaskNode"]
