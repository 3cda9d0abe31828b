"""Every error of the package: one root, `DataflowError`, so `except DataflowError` catches
whatever taskiq-dataflow raises. Each also derives from the builtin users (and taskiq-flow's
documentation) expect (`ValueError` for a bad graph, `RuntimeError` for a failed run...), and
each names the culprit: the task, the key, the cycle as a path, the worker, the frame.

The modules that raise them re-export them under their old paths (`taskiq_dataflow.store.
StoreError` is `taskiq_dataflow.errors.StoreError`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .error_modes import ErrorHandlingMode as ErrorHandlingMode  # taskiq-flow's path

if TYPE_CHECKING:
    from .events import TaskError

MAX_LISTED = 20


class DataflowError(Exception):
    """The root of every error taskiq-dataflow raises."""


class PipelineError(DataflowError):
    """A pipeline cannot be built or its run failed: the base of DAGValidationError (and
    CycleError), MissingInputError, TaskFailedError, DataflowExecutionError and
    CompensationError, as `except PipelineError` catches a failed pipeline in taskiq-flow."""


class DAGValidationError(PipelineError, ValueError):
    """The graph is invalid. `problems` lists every problem found, each a readable sentence."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            shown = self.problems[:MAX_LISTED]
            listed = "\n".join(f"  - {p}" for p in shown)
            more = len(self.problems) - len(shown)
            tail = f"\n  ... and {more} more (see .problems)" if more else ""
            message = f"the DAG has {len(self.problems)} problems:\n{listed}{tail}"
        super().__init__(message)


class CycleError(DAGValidationError):
    """The graph has a cycle; `cycle` is the path as task names, first name repeated at the end."""

    def __init__(self, cycle: Sequence[str], problems: Sequence[str] | None = None) -> None:
        self.cycle = list(cycle)
        super().__init__(problems or [format_cycle(self.cycle)])


def format_cycle(names: Sequence[str]) -> str:
    # "Circular dependency" is what taskiq-flow says, and what its users search for
    return "Circular dependency detected: " + " -> ".join(names)


class TaskFailedError(PipelineError, RuntimeError):
    """A task raised. Carries the task's name, exception type, message and traceback text."""

    def __init__(self, error: TaskError) -> None:
        self.error = error
        self.task_name = error.task_name
        super().__init__(f"{error}\n{error.traceback}".rstrip())


class DataflowExecutionError(PipelineError, RuntimeError):
    """With fail_fast=False: every failure and every skipped task, plus the outputs computed."""

    def __init__(
        self, failures: list[TaskError], skipped: dict[str, str], results: dict[str, Any]
    ) -> None:
        self.failures = failures
        self.skipped = skipped  # skipped task name -> the failed task it depended on
        self.results = results
        lines = [f"{len(failures)} task(s) failed, {len(skipped)} skipped:"]
        lines += [f"  - {f}" for f in failures[:20]]
        if skipped:
            names = list(skipped)[:20]
            more = f" and {len(skipped) - len(names)} more" if len(skipped) > len(names) else ""
            lines.append(f"  skipped: {', '.join(names)}{more}")
        super().__init__("\n".join(lines))


class ExecutionCancelled(DataflowError):
    """`cancel()` was called: the run stopped; `results` holds the outputs computed before.

    An ordinary exception, not an `asyncio.CancelledError`: the run ended (nothing cancelled
    the awaiting task), so a TaskGroup or `gather(return_exceptions=True)` must hand it to the
    caller with its results instead of treating it as the caller's own cancellation."""

    def __init__(self, run_id: str, results: dict[str, Any]) -> None:
        self.run_id = run_id
        self.results = results
        super().__init__(f"run {run_id} was cancelled ({len(results)} outputs computed)")


class CompensationError(PipelineError, RuntimeError):
    """Compensations that failed while undoing a failed run (each also reported as an event)."""

    def __init__(self, failures: list[TaskError]) -> None:
        self.failures = failures
        listed = "\n".join(f"  - {f}" for f in failures)
        super().__init__(f"{len(failures)} compensation(s) failed:\n{listed}")


class MissingInputError(PipelineError, ValueError):
    """execute() was not given an external input some task needs."""


class FlowError(DataflowError, ValueError):
    """A flow cannot be built as written; the message names the node(s) and key(s) at fault."""


class GrowthError(DataflowError, ValueError):
    """A running task's `add_tasks` call was refused (a duplicate or existing output key, an
    input nobody produces, a cycle among the added tasks): nothing of the batch was added."""


class StoreError(DataflowError, LookupError):
    """A run that is not in the store, or a DAG that does not match the stored run."""


class StreamError(DataflowError, RuntimeError):
    """The producer of a stream failed; raised to its streaming consumers."""


class BrokerConflictError(DataflowError, ValueError):
    """The tasks of one pipeline belong to two different DataflowNatsBrokers."""


class ClusterError(DataflowError, RuntimeError):
    """The cluster cannot make progress (server unreachable, login refused, no workers...)."""


class RemoteTaskError(DataflowError, LookupError):
    """A task known only by name (`RemoteTask`) was to run where it has no implementation."""


class ProtocolError(DataflowError, ValueError):
    """A frame that is not valid msgpack or not a frame of this protocol."""


class TaskArgumentError(DataflowError, TypeError):
    """An argument of a taskiq task that cannot be parsed to its parameter's type hint (where
    taskiq's receiver parses it); `task` and `parameter` name them."""

    def __init__(self, message: str, task: str = "", parameter: str = "") -> None:
        super().__init__(message)
        self.task = task
        self.parameter = parameter


class EncodeError(DataflowError, TypeError):
    """A value msgpack cannot carry."""


class CLIError(DataflowError):
    """A command-line error shown as one line (no traceback unless --traceback); `code` is the
    exit code."""

    def __init__(self, message: str, code: int = 2, detail: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail  # extra text for --traceback (e.g. a task's traceback)
