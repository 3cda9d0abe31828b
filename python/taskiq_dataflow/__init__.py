"""taskiq-dataflow: a dataflow DAG engine for taskiq with a Rust ready-set scheduler."""

from ._core import __version__
from .dataflow import DAG, DAGBuilder, DAGNode, DataCache, DataflowRegistry, TaskNode
from .errors import CycleError, DAGValidationError
from .events import (
    Event,
    EventBus,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepRetried,
    StepSkipped,
    StepStarted,
    TaskError,
)
from .execution_engine import (
    DataflowExecutionError,
    ExecutionCancelled,
    ExecutionEngine,
    MissingInputError,
    StepResult,
    TaskFailedError,
)
from .map_reduce import MapReduce
from .pipeline import DataflowPipeline
from .task import TaskSpec, pipeline_task
from .visualization import DAGVisualizer

__all__ = [
    "DAG",
    "CycleError",
    "DAGBuilder",
    "DAGNode",
    "DAGValidationError",
    "DAGVisualizer",
    "DataCache",
    "DataflowExecutionError",
    "DataflowPipeline",
    "DataflowRegistry",
    "Event",
    "EventBus",
    "ExecutionCancelled",
    "ExecutionEngine",
    "MapReduce",
    "MissingInputError",
    "RunFinished",
    "RunStarted",
    "StepCompleted",
    "StepFailed",
    "StepResult",
    "StepRetried",
    "StepSkipped",
    "StepStarted",
    "TaskError",
    "TaskFailedError",
    "TaskNode",
    "TaskSpec",
    "__version__",
    "pipeline_task",
]
