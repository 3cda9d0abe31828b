"""The dataflow graph: DAG, DAGNode, DAGBuilder, DataflowRegistry, DataCache.

Its modules import one way: `graph` (DAG, DAGNode) <- `registry` (DataflowRegistry, DAGBuilder)
<- `dag` (the documented path of all three); `cache` stands alone. The visualizer and the engine
sit above and read a DAG through its column API (see `graph.DAG`).
"""

from .cache import DataCache
from .graph import DAG, DAGNode
from .registry import DAGBuilder, DataflowRegistry, TaskNode

__all__ = ["DAG", "DAGBuilder", "DAGNode", "DataCache", "DataflowRegistry", "TaskNode"]
