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

# isort: split
# taskiq-flow's names of the DAG, the registry, the decorators and the visualizer (issue 11)
from .dataflow import DataNode
from .decorators import (
    get_all_pipeline_outputs,
    get_pipeline_metadata,
    get_task_by_output,
    get_task_inputs,
    get_task_outputs,
    is_pipeline_task,
    pipeline_task_multi_output,
    validate_pipeline_outputs,
)
from .errors import PipelineError
from .visualization import MermaidGenerator, visualize_pipeline

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
# taskiq-flow's names of the DAG, the registry, the decorators and the visualizer (issue 11)
__all__ += [
    "DataNode",
    "MermaidGenerator",
    "PipelineError",
    "get_all_pipeline_outputs",
    "get_pipeline_metadata",
    "get_task_by_output",
    "get_task_inputs",
    "get_task_outputs",
    "is_pipeline_task",
    "pipeline_task_multi_output",
    "validate_pipeline_outputs",
    "visualize_pipeline",
]
