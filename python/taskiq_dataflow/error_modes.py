"""How a run treats a failed task: taskiq-flow's `ErrorHandlingMode` (also importable from
`taskiq_dataflow.errors`, where taskiq-flow has it)."""

from __future__ import annotations

from enum import Enum

__all__ = ["ErrorHandlingMode"]


class ErrorHandlingMode(Enum):
    """What a run does when a task fails (taskiq-flow's `error_mode=` of ExecutionEngine).

    FAIL_FAST stops at the first failure and raises it (TaskFailedError). CONTINUE_ON_ERROR
    runs everything that does not depend on a failure, then raises DataflowExecutionError
    listing every failure (its `results` holds the outputs computed). SKIP_FAILED runs the same
    tasks but returns the outputs computed instead of raising; the failures are in
    `engine.get_execution_report()["errors"]` and logged as warnings. DEAD_LETTER is refused:
    there is no dead-letter queue (subscribe to StepFailed events to collect failures).
    """

    FAIL_FAST = "fail_fast"
    CONTINUE_ON_ERROR = "continue_on_error"
    SKIP_FAILED = "skip_failed"
    DEAD_LETTER = "dead_letter"
