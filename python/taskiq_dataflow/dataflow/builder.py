"""DAGBuilder: a DAG from tasks, chained (`DAGBuilder().node(...).build()`) or in one call
(`DAGBuilder.from_tasks([...])`, as taskiq-flow's `dag_builder` module has it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import DAGValidationError
from ..task import task_display_name
from .graph import DAG, node_fields
from .registry import DataflowRegistry


class DAGBuilder:
    """Programmatic DAG construction: `add_task(...)` calls or the chained `node(...).build()`;
    the static `from_tasks`, `from_callable_tasks`, `validate_dag` and
    `analyze_missing_dependencies` work on lists of `@pipeline_task` tasks."""

    def __init__(self, *, strict_inputs: bool | None = None) -> None:
        self._registry = DataflowRegistry(strict_inputs=strict_inputs)

    def add_task(
        self,
        task: Any,
        output: str | None = None,
        inputs: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> DAGBuilder:
        self._registry.register_task(task, output=output, inputs=inputs, **kwargs)
        return self

    node = add_task

    def add_tasks(
        self,
        tasks: Any,
        outputs: Sequence[str | Sequence[str] | None] | None = None,
        inputs: Sequence[Sequence[str] | None] | None = None,
        **kwargs: Any,
    ) -> DAGBuilder:
        """Many tasks at once, a row each: `DataflowRegistry.register_tasks` (`names=`,
        `metadata=` as there)."""
        self._registry.register_tasks(tasks, outputs, inputs, **kwargs)
        return self

    @property
    def registry(self) -> DataflowRegistry:
        """The registry the builder fills (for inspection before `build()`)."""
        return self._registry

    def external_input(self, *keys: str) -> DAGBuilder:
        for key in keys:
            self._registry.register_external_input(key)
        return self

    def build(self) -> DAG:
        return self._registry.build_dag()

    # -- taskiq-flow's one-call builders -------------------------------------------------------

    @staticmethod
    def from_tasks(
        tasks: Iterable[Any],
        registry: DataflowRegistry | None = None,
        external_inputs: Sequence[str] | None = None,
    ) -> DAG:
        """The validated DAG of `tasks` (each `@pipeline_task`, or registered with its keys on
        `registry`), with `external_inputs` declared as given at run time.

        A task that declares no output raises ValueError naming it (taskiq-flow skips it
        silently). An external input that a task produces raises DAGValidationError naming
        the key and the task."""
        registry = DataflowRegistry() if registry is None else registry
        for task in tasks:
            registry.register_task(task)
        for key in external_inputs or ():
            producer = registry.get_producer(key)
            if producer is not None:
                raise DAGValidationError(
                    [
                        f"External input '{key}' is produced by task '{producer.task_name}': "
                        "an external input is given at run time, so it must not be a task's "
                        "output (drop it from external_inputs, or rename the output)"
                    ]
                )
            registry.register_external_input(key)
        dag = registry.build_dag()
        DAGBuilder.validate_dag(dag)
        return dag

    @staticmethod
    def from_callable_tasks(tasks: Iterable[Any], registry: DataflowRegistry | None = None) -> DAG:
        """`from_tasks` for plain `@pipeline_task` functions (not broker tasks): the same DAG,
        since both carry their keys in the same spec."""
        return DAGBuilder.from_tasks(tasks, registry)

    @staticmethod
    def validate_dag(dag: DAG) -> None:
        """Raise DAGValidationError when the DAG has no task, or (see `DAG.validate`) for a
        duplicated output, a cycle (as a path) or, with strict inputs, an unproduced input.

        A DAG of several disconnected parts is valid (taskiq-flow rejects it): its parts
        simply run side by side."""
        if not len(dag):
            raise DAGValidationError(
                [
                    "DAG validation failed: the DAG contains no tasks (give DAGBuilder.from_tasks "
                    "the @pipeline_task tasks of the pipeline)"
                ]
            )
        dag.validate()

    @staticmethod
    def analyze_missing_dependencies(
        tasks: Iterable[Any], registry: DataflowRegistry | None = None
    ) -> dict[str, list[str]]:
        """{task name: its input keys that no task produces and nobody declared external},
        for each of `tasks` that has any. Producers and declarations are those of `registry`;
        without one, the outputs of `tasks` themselves."""
        tasks = list(tasks)
        fields = [node_fields(task) for task in tasks]
        if registry is None:
            produced = {key for f in fields for key in f.outputs}
            declared: set[str] = set()
        else:
            produced = set(registry.get_outputs())
            declared = set(registry.declared_external)
        missing: dict[str, list[str]] = {}
        for task, f in zip(tasks, fields, strict=True):
            keys = [k for k in f.inputs if k not in produced and k not in declared]
            if keys:
                missing[task_display_name(task)] = keys
        return missing
