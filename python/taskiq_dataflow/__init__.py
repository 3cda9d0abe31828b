"""taskiq-dataflow: a dataflow DAG engine for taskiq with a Rust ready-set scheduler."""

from ._core import __version__
from .compose import Flow, FlowError, FlowNode
from .dashboard import Dashboard, serve_dashboard, watch_runs, write_report
from .dataflow import DAG, DAGBuilder, DAGNode, DataCache, DataflowRegistry, DataNode, TaskNode
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
from .dependencies import Depends
from .error_modes import ErrorHandlingMode
from .errors import (
    CycleError,
    DAGValidationError,
    DataflowError,
    GrowthError,
    PipelineError,
    RemoteTaskError,
    StoreError,
    StreamError,
    TaskArgumentError,  # issue 11 seeds: taskiq argument parsing,
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
from .map_reduce import ChunkConfig, MapReduce, MapReduceResult, MapResult
from .namespace import Namespace, NamespaceNode
from .optimization import ResourceAwareExecutor, TaskResourceProfile
from .pipeline import DataflowPipeline
from .pipeliner import Pipeline, PipelineMiddleware, PipelineTask  # issue 11: sequential Pipeline
from .result_cache import ResultCache
from .seceding import rejoin, secede, seceded
from .store import RunStore
from .streams import Stream, StreamItem, Watch
from .task import RemoteTask, TaskSpec, pipeline_task
from .visualization import DAGVisualizer, MermaidGenerator, visualize_pipeline

__all__ = [
    "DAG",
    "ChunkConfig",
    "CompensationError",
    "CycleError",
    "DAGBuilder",
    "DAGNode",
    "DAGValidationError",
    "DAGVisualizer",
    "Dashboard",
    "DataCache",
    "DataNode",
    "DataflowError",
    "DataflowExecutionError",
    "DataflowPipeline",
    "DataflowRegistry",
    "Depends",
    "ErrorHandlingMode",
    "Event",
    "EventBus",
    "ExecutionCancelled",
    "ExecutionEngine",
    "Flow",
    "FlowError",
    "FlowNode",
    "GrowthError",
    "MapReduce",
    "MapReduceResult",
    "MapResult",
    "MermaidGenerator",
    "MissingInputError",
    "Namespace",
    "NamespaceNode",
    "Pipeline",
    "PipelineError",
    "PipelineMiddleware",
    "PipelineTask",
    "RemoteTask",
    "RemoteTaskError",
    "ResourceAwareExecutor",
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
    "StreamItem",
    "TaskArgumentError",
    "TaskError",
    "TaskFailedError",
    "TaskNode",
    "TaskResourceProfile",
    "TaskSpec",
    "Watch",
    "__version__",
    "add_tasks",
    "get_all_pipeline_outputs",
    "get_pipeline_metadata",
    "get_task_by_output",
    "get_task_inputs",
    "get_task_outputs",
    "is_pipeline_task",
    "pipeline_task",
    "pipeline_task_multi_output",
    "rejoin",
    "result_of",
    "secede",
    "seceded",
    "serve_dashboard",
    "validate_pipeline_outputs",
    "visualize_pipeline",
    "watch_runs",
    "write_report",
]
