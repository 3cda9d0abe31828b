"""taskiq-dataflow: a dataflow DAG engine for taskiq with a Rust ready-set scheduler."""

from ._core import __version__
from .compose import Flow, FlowError, FlowNode
from .dataflow import DAG, DAGBuilder, DAGNode, DataCache, DataflowRegistry, TaskNode
from .dependencies import Depends
from .errors import (
    CycleError,
    DAGValidationError,
    DataflowError,
    GrowthError,
    StoreError,
    StreamError,
)
from .events import (
    Event,
    EventBus,
    RunFinished,
    RunGrew,
    RunStarted,
    StepCompensated,
    StepCompleted,
    StepFailed,
    StepRequeued,
    StepRetried,
    StepSkipped,
    StepStarted,
    TaskError,
)
from .execution_engine import (
    CompensationError,
    DataflowExecutionError,
    ExecutionCancelled,
    ExecutionEngine,
    MissingInputError,
    RunHandle,
    StepResult,
    TaskFailedError,
)
from .growth import add_tasks, result_of
from .map_reduce import MapReduce
from .pipeline import DataflowPipeline
from .result_cache import ResultCache
from .seceding import rejoin, secede, seceded
from .store import RunStore
from .streams import Stream
from .task import TaskSpec, pipeline_task
from .visualization import DAGVisualizer

__all__ = [
    "DAG",
    "CompensationError",
    "CycleError",
    "DAGBuilder",
    "DAGNode",
    "DAGValidationError",
    "DAGVisualizer",
    "DataCache",
    "DataflowError",
    "DataflowExecutionError",
    "DataflowPipeline",
    "DataflowRegistry",
    "Depends",
    "Event",
    "EventBus",
    "ExecutionCancelled",
    "ExecutionEngine",
    "Flow",
    "FlowError",
    "FlowNode",
    "GrowthError",
    "MapReduce",
    "MissingInputError",
    "ResultCache",
    "RunFinished",
    "RunGrew",
    "RunHandle",
    "RunStarted",
    "RunStore",
    "StepCompensated",
    "StepCompleted",
    "StepFailed",
    "StepRequeued",
    "StepResult",
    "StepRetried",
    "StepSkipped",
    "StepStarted",
    "StoreError",
    "Stream",
    "StreamError",
    "TaskError",
    "TaskFailedError",
    "TaskNode",
    "TaskSpec",
    "__version__",
    "add_tasks",
    "pipeline_task",
    "rejoin",
    "result_of",
    "secede",
    "seceded",
]

# -- Datagraph idioms: tasks of other services by name, streams out of a run ----------------------
from .errors import RemoteTaskError
from .streams import StreamItem, Watch
from .task import RemoteTask

__all__ += ["RemoteTask", "RemoteTaskError", "StreamItem", "Watch"]
