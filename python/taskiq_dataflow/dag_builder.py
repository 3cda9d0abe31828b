"""The documented module path of DAGBuilder (`taskiq_flow.dag_builder` in taskiq-flow)."""

from .dataflow.builder import DAGBuilder

__all__ = ["DAGBuilder"]
