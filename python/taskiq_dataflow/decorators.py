"""taskiq-flow's `decorators` module: `pipeline_task`, `pipeline_task_multi_output`, and the
functions that read what they declared.

The keys live in the `TaskSpec` that `pipeline_task` attaches (see `task.py`); these functions
read it from a task, or search every task decorated in this process (`get_task_by_output`,
`get_all_pipeline_outputs`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import DAGValidationError
from .task import (
    InEngine,
    TaskSpec,
    declared_tasks,
    get_spec,
    infer_inputs,
    pipeline_task,
    task_display_name,
)

__all__ = [
    "get_all_pipeline_outputs",
    "get_pipeline_metadata",
    "get_task_by_output",
    "get_task_inputs",
    "get_task_outputs",
    "is_pipeline_task",
    "pipeline_task",
    "pipeline_task_multi_output",
    "validate_pipeline_outputs",
]


def pipeline_task_multi_output(
    outputs: Mapping[str, Any] | Sequence[str],
    inputs: Sequence[str] | None = None,
    retries: int | None = None,
    **options: Any,
) -> Any:
    """`pipeline_task(outputs=[...])`: a task producing several keys, returned as a mapping
    {key: value} or a tuple in the order of `outputs`. `outputs` may map each key to its type
    (as taskiq-flow has it); the types are kept as the `output_types` metadata."""
    if isinstance(outputs, str):
        raise TypeError(
            f"pipeline_task_multi_output: outputs must list several keys, not the string "
            f"{outputs!r} (for one output use pipeline_task(output={outputs!r}))"
        )
    keys = list(outputs)
    if not keys:
        raise ValueError("pipeline_task_multi_output: outputs is empty; list the output keys")
    if isinstance(outputs, Mapping):
        options.setdefault("output_types", dict(outputs))
    return pipeline_task(outputs=keys, inputs=inputs, retries=retries, **options)


def is_pipeline_task(func: Any) -> bool:
    """Whether `func` (a function, or the taskiq task wrapping one) has a `@pipeline_task`."""
    return _spec(func) is not None


def get_task_outputs(func: Any) -> list[str]:
    """The output keys `func` declares ([] when it has no `@pipeline_task` or no output)."""
    spec = _spec(func)
    return [] if spec is None else list(spec.outputs)


def get_task_inputs(func: Any) -> list[str]:
    """The input keys of `func`: declared with `inputs=`, else its parameters without a
    default ([] when it has no `@pipeline_task`)."""
    spec = _spec(func)
    if spec is None:
        return []
    return list(spec.inputs) if spec.inputs is not None else list(infer_inputs(func))


def get_pipeline_metadata(func: Any) -> dict[str, Any]:
    """What `@pipeline_task` declared on `func`, under taskiq-flow's keys (`output`,
    `inputs`, `retries`, `retry_delay`, `retry_backoff`, `retry_jitter`, `resources`,
    `is_pipeline_task`, `multiple_outputs`, `output_types`) plus `outputs`, `name`, `timeout`,
    `pool`, `cache` and the extra metadata given; {} when `func` has none. An option not set
    is None: the engine's default applies."""
    spec = _spec(func)
    if spec is None:
        return {}
    meta = dict(spec.metadata)
    return {
        **meta,
        "output": spec.outputs[0] if spec.outputs else None,
        "outputs": list(spec.outputs),
        "inputs": get_task_inputs(func),
        "name": spec.name,
        "retries": spec.retries,
        "retry_delay": spec.retry_delay,
        "retry_backoff": spec.retry_backoff,
        "retry_jitter": spec.retry_jitter,
        "timeout": spec.timeout,
        "pool": spec.pool,
        "cache": spec.cache,
        "resources": meta.get("resources", {}),
        "is_pipeline_task": True,
        "multiple_outputs": len(spec.outputs) > 1,
        "output_types": meta.get("output_types", {}),
    }


def get_task_by_output(output_name: str) -> Any | None:
    """The `@pipeline_task` task of this process that produces `output_name`, or None.

    Two live tasks declaring it raise ValueError naming both (taskiq-flow returns the last
    one decorated)."""
    found = [t for t in declared_tasks() if output_name in _outputs_of(t)]
    if len(found) > 1:
        names = ", ".join(f"'{task_display_name(t)}'" for t in found[:5])
        raise ValueError(
            f"output '{output_name}' is declared by {len(found)} tasks ({names}): "
            "look it up on the pipeline's registry instead (registry.get_producer)"
        )
    return found[0] if found else None


def get_all_pipeline_outputs() -> list[str]:
    """Every output key declared by a live `@pipeline_task` task of this process, once each,
    in the order the tasks were decorated."""
    keys: dict[str, None] = {}
    for task in declared_tasks():
        keys.update(dict.fromkeys(_outputs_of(task)))
    return list(keys)


def validate_pipeline_outputs(tasks: Iterable[Any]) -> None:
    """Raise DAGValidationError (a PipelineError and a ValueError) when two of `tasks` declare
    the same output key, naming the key and both tasks; a task without `@pipeline_task` is a
    TypeError naming it."""
    producer: dict[str, Any] = {}
    problems = []
    for task in tasks:
        spec = _spec(task)
        if spec is None:
            raise TypeError(
                f"task {task_display_name(task)!r} has no @pipeline_task: it declares no output"
            )
        for key in spec.outputs:
            first = producer.setdefault(key, task)
            if first is not task:
                problems.append(
                    f"Output '{key}' is produced by two tasks: '{task_display_name(first)}' "
                    f"and '{task_display_name(task)}'"
                )
    if problems:
        raise DAGValidationError(problems)


def _spec(func: Any) -> TaskSpec | None:
    # An InEngine wrapper carries a spec of its own making, not a @pipeline_task's.
    if isinstance(func, InEngine):
        func = func.original_func
    return get_spec(func)


def _outputs_of(task: Any) -> Sequence[str]:
    spec = get_spec(task)
    return () if spec is None else spec.outputs
