"""DataflowPipeline: tasks decorated with `@pipeline_task`, wired by their keys and run as a DAG.

    pipeline = DataflowPipeline.from_tasks(broker, [load, clean, report], max_parallel=8)
    results = await pipeline.kiq_dataflow(source="s3://bucket/file.csv")
    # {"raw": ..., "clean": ..., "report": ...}

The pipeline's external inputs are exactly the keyword arguments given to `kiq_dataflow` that some
task consumes (and no task produces). The DAG is built and validated once per set of input keys
and cached; `from_tasks` already validates the wiring (duplicate outputs, cycles), so a broken
pipeline fails where it is declared rather than at its first run.

taskiq-flow's map-reduce operations: `pipeline.map(task, items, output=...)` and
`pipeline.reduce(task, input_name=..., output=...)` record operations that
`kiq_map_reduce(**inputs)` runs (every map, then every reduce in the order added, a reduce
reading a map's output, an earlier reduce's or one of `inputs`); it returns every operation's
output. `kiq_map_reduce_advanced` and `kiq_map_sweep` run one map-reduce or sweep at once.

taskiq-flow 1.0's sequential `Pipeline` lived in this module; it is `pipeliner.Pipeline`, also
importable from here (and from the package).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .dataflow.dag import DAG
from .dataflow.registry import DataflowRegistry
from .errors import BrokerConflictError
from .events import Event
from .execution_engine import ExecutionEngine, MissingInputError
from .task import get_spec, task_display_name

__all__ = ["BrokerConflictError", "DataflowPipeline", "Pipeline", "cluster_broker_of"]

_UNSET: Any = object()  # reduce(initial=) not given


def cluster_broker_of(tasks: Iterable[Any]) -> Any:
    """The one DataflowNatsBroker the `@broker.task` tasks among `tasks` belong to, or None.

    A pipeline built without a broker runs its tasks where they were declared to run: on the
    cluster when they are tasks of a DataflowNatsBroker. Tasks of two different brokers raise
    BrokerConflictError naming a task of each, since one run talks to one cluster.
    """
    from .cluster.broker import DataflowNatsBroker

    found: Any = None
    first = ""
    for task in tasks:
        broker = getattr(task, "broker", None)
        if not isinstance(broker, DataflowNatsBroker):
            continue
        name = task_display_name(task)
        if found is None:
            found, first = broker, name
        elif broker is not found:
            raise BrokerConflictError(
                f"tasks {first!r} and {name!r} are tasks of two different DataflowNatsBrokers "
                f"({_broker_label(found)} and {_broker_label(broker)}); one run uses one "
                "cluster: declare them on the same broker, or give the broker to use explicitly"
            )
    return found


def _broker_label(broker: Any) -> str:
    from .cluster.redact import redact

    return f"servers {redact(broker.servers)}, pool {broker.pool!r}"


def engine_option_names() -> list[str]:
    """The keyword arguments ExecutionEngine accepts besides broker and dag."""
    params = inspect.signature(ExecutionEngine.__init__).parameters
    return [name for name in params if name not in ("self", "broker", "dag")]


def check_engine_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """Reject unknown engine options with a message that lists the known ones."""
    options = dict(options)
    known = engine_option_names()
    unknown = [name for name in options if name not in known]
    if unknown:
        raise TypeError(
            f"{where} got unexpected option(s) {', '.join(repr(n) for n in unknown)}; "
            f"the engine accepts: {', '.join(known)}"
        )
    return options


class DataflowPipeline:
    """A pipeline built from `@pipeline_task` tasks; `kiq_dataflow(**inputs)` runs it.

    `engine_options` are passed to every ExecutionEngine the pipeline creates: `max_parallel`,
    `fail_fast`, `retries`, `timeout`, `transport`, `executor`, `priority`, ...
    (and taskiq-flow's `continue_on_error`, `skip_failed`, `error_mode`, `resource_aware`).
    """

    def __init__(
        self,
        broker: Any = None,
        *,
        registry: DataflowRegistry | None = None,
        pipeline_id: str | None = None,
        **engine_options: Any,
    ) -> None:
        self.broker = broker
        self.pipeline_id = pipeline_id
        self.engine_options = check_engine_options(engine_options, type(self).__name__)
        self._registry = registry if registry is not None else DataflowRegistry()
        self._dags: dict[frozenset[str], DAG] = {}
        self._subscriptions: list[tuple[Callable[[Any], Any], tuple[type[Event], ...]]] = []
        self._maps: list[_MapOperation] = []
        self._reduces: list[_ReduceOperation] = []

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_tasks(
        cls, broker: Any, tasks: Iterable[Any], **engine_options: Any
    ) -> DataflowPipeline:
        """A pipeline of `tasks`, each decorated with `@pipeline_task(output=...)`.

        The wiring is validated here: an output produced by two tasks or a cycle raises
        DAGValidationError (a ValueError) naming the tasks.
        """
        if callable(tasks) or isinstance(tasks, (str, bytes)) or not isinstance(tasks, Iterable):
            raise TypeError(
                "DataflowPipeline.from_tasks expects a list of tasks, got "
                f"{type(tasks).__name__}: wrap a single task in a list"
            )
        pipeline = cls(broker, **engine_options)
        for task in tasks:
            pipeline._add(task)
        pipeline.validate()
        return pipeline

    @classmethod
    def from_registry(
        cls, registry: DataflowRegistry, broker: Any = None, **engine_options: Any
    ) -> DataflowPipeline:
        """A pipeline over an existing DataflowRegistry (its tasks and declared external inputs).

        Without `broker`, tasks declared with `@broker.task` on a DataflowNatsBroker make it
        the pipeline's broker, so they run on that cluster's workers (see cluster_broker_of).
        """
        if not isinstance(registry, DataflowRegistry):
            raise TypeError(f"expected a DataflowRegistry, got {type(registry).__name__}")
        if broker is None:
            broker = cluster_broker_of(node.task for node in registry.get_tasks())
        return cls(broker, registry=registry, **engine_options)

    def add_dataflow_task(self, task: Any) -> DataflowPipeline:
        """Add a `@pipeline_task` task; returns the pipeline for chaining."""
        self._add(task)
        return self

    def _add(self, task: Any) -> None:
        spec = get_spec(task)
        if spec is None or not spec.outputs:
            what = "has no @pipeline_task" if spec is None else "declares no output"
            raise TypeError(
                f"task {task_display_name(task)!r} {what}: decorate it with "
                "@pipeline_task(output='key') (under @broker.task) so the pipeline knows the key "
                "it produces, or register it on a DataflowRegistry with output='key'"
            )
        self._registry.register_task(task)
        self._dags.clear()

    # -- queries ------------------------------------------------------------------------------

    @property
    def registry(self) -> DataflowRegistry:
        return self._registry

    @property
    def tasks(self) -> list[Any]:
        """The tasks, in the order they were added."""
        return [node.task for node in self._registry.get_tasks()]

    def required_inputs(self) -> list[str]:
        """The keys `kiq_dataflow` must be given: consumed by some task, produced by none."""
        registry = self._registry
        return [k for k in registry.get_external_inputs() if registry.get_consumers(k)]

    def get_outputs(self) -> list[str]:
        return self._registry.get_outputs()

    @property
    def dag(self) -> DAG:
        """The DAG with every required input as an external input (for inspection and display)."""
        return self.build_dag()

    _dag = dag  # taskiq-flow's name, which its docs and users read

    def validate(self) -> None:
        """Raise DAGValidationError for duplicate outputs or cycles (inputs are checked at run)."""
        self.build_dag()

    def build_dag(self, input_keys: Iterable[str] | None = None) -> DAG:
        """The validated DAG for a run given `input_keys` (None: as if every input were given).

        Raises MissingInputError naming each required key that is not among `input_keys` and
        the tasks that consume it; DAGValidationError for duplicate outputs and cycles.
        """
        required = self.required_inputs()
        if input_keys is None:
            given = frozenset(required)
        else:
            keys = set(input_keys)
            missing = [k for k in required if k not in keys]
            if missing:
                self.build_dag()  # report a broken graph (duplicates, cycles) first
                raise MissingInputError(self._missing_message(missing))
            given = frozenset(k for k in required if k in keys)
        dag = self._dags.get(given)
        if dag is None:
            # `required` keeps registration order, so the DAG is the same whatever the order of
            # the keyword arguments.
            dag = self._registry.build_dag(external_inputs=[k for k in required if k in given])
            self._dags[given] = dag
        return dag

    def _missing_message(self, missing: Sequence[str]) -> str:
        parts = []
        for key in missing:
            consumers = [n.task_name for n in self._registry.get_consumers(key)]
            names = ", ".join(f"'{n}'" for n in consumers[:5])
            if len(consumers) > 5:
                names += f" and {len(consumers) - 5} more"
            task_word = "task" if len(consumers) == 1 else "tasks"
            parts.append(f"input '{key}' (needed by {task_word} {names})")
        listed = "; ".join(parts)
        example = ", ".join(f"{k}=..." for k in missing)
        return (
            f"the pipeline is missing {listed}, which no task produces: "
            f"pass it to kiq_dataflow({example})"
        )

    # -- running ------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Any], Any], *types: type[Event]) -> Callable[[], None]:
        """Subscribe `listener` to the events of every run (see ExecutionEngine.events)."""
        entry = (listener, types)
        self._subscriptions.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscriptions:
                self._subscriptions.remove(entry)

        return unsubscribe

    def create_engine(
        self, input_keys: Iterable[str] | None = None, **overrides: Any
    ) -> ExecutionEngine:
        """An ExecutionEngine for a run given `input_keys`, with `overrides` of the options."""
        options = {**self.engine_options, **check_engine_options(overrides, "create_engine")}
        broker = self.broker if self.broker is not None else cluster_broker_of(self.tasks)
        engine = ExecutionEngine(broker, self.build_dag(input_keys), **options)
        for listener, types in self._subscriptions:
            engine.events.subscribe(listener, *types)
        return engine

    async def kiq_dataflow(self, **inputs: Any) -> dict[str, Any]:
        """Run the pipeline; returns {output key: value} for every task's output(s).

        A failing task raises TaskFailedError (or, with fail_fast=False, DataflowExecutionError
        listing every failure), naming the task and carrying its traceback text.
        """
        engine = self.create_engine(inputs)
        return await engine.execute(inputs, pipeline_id=self.pipeline_id)

    # -- map-reduce operations (taskiq-flow) ---------------------------------------------------

    def map(
        self,
        task: Any,
        items: Iterable[Any],
        output: str,
        *,
        max_parallel: int | None = None,
        chunk_config: Any = None,
        param_name: str | None = None,
        progress_callback: Callable[[int, int], Any] | None = None,
        **options: Any,
    ) -> DataflowPipeline:
        """Record a map of `task` over `items` into the list `output`, run by kiq_map_reduce.

        The options are MapReduce.map's: engine options, or keyword arguments for every call.
        """
        from .map_reduce import _split_options

        self._check_operation_output("map", task, output)
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise TypeError(
                f"pipeline.map({task_display_name(task)!r}): items must be a list of items, got "
                f"{type(items).__name__}"
            )
        _split_options(f"pipeline.map({task_display_name(task)!r})", task, options)
        self._maps.append(
            _MapOperation(
                task,
                list(items),
                output,
                max_parallel,
                {
                    "chunk_config": chunk_config,
                    "param_name": param_name,
                    "progress_callback": progress_callback,
                    **options,
                },
            )
        )
        return self

    def reduce(
        self,
        task: Any,
        input_name: str,
        output: str,
        *,
        chunk_size: int | None = None,
        initial: Any = _UNSET,
        **engine_options: Any,
    ) -> DataflowPipeline:
        """Record a reduce of the list `input_name` by `task` into `output` (kiq_map_reduce).

        `initial` is the value of an empty reduction (without it, `task` gets the empty list),
        `chunk_size` as in MapReduce.reduce."""
        self._check_operation_output("reduce", task, output)
        if not isinstance(input_name, str):
            raise TypeError(f"pipeline.reduce: input_name must be a key, got {input_name!r}")
        options = check_engine_options(engine_options, "pipeline.reduce")
        self._reduces.append(
            _ReduceOperation(task, input_name, output, chunk_size, initial, options)
        )
        return self

    def _check_operation_output(self, kind: str, task: Any, output: str) -> None:
        if not callable(task):
            raise TypeError(f"pipeline.{kind}: expected a task or a function, got {task!r}")
        if not isinstance(output, str):
            raise TypeError(f"pipeline.{kind}: output must be a string key, got {output!r}")
        ops: list[_MapOperation | _ReduceOperation] = [*self._maps, *self._reduces]
        for op in ops:
            if op.output == output:
                raise ValueError(
                    f"pipeline.{kind}({task_display_name(task)!r}): output {output!r} is "
                    f"already produced by the operation of {task_display_name(op.task)!r}"
                )

    async def kiq_map_reduce(self, **inputs: Any) -> dict[str, Any]:
        """Run the recorded operations: every map, then every reduce in the order added.

        Returns {output: value} for each (a map's value is its list in item order). A
        reduce's `input_name` is a map's output, an earlier reduce's, or one of `inputs`.
        """
        from .map_reduce import MapReduce, _unwrap

        if not self._maps and not self._reduces:
            raise ValueError(
                "kiq_map_reduce: the pipeline has no map or reduce operation; add them with "
                "pipeline.map(task, items, output=...) and pipeline.reduce(task, "
                "input_name=..., output=...), or run its tasks with kiq_dataflow"
            )
        results: dict[str, Any] = {}
        for m in self._maps:
            options = {**self.engine_options, **m.options}
            max_parallel = m.max_parallel or options.pop("max_parallel", None)
            options.pop("max_parallel", None)
            mapped = await MapReduce.map(
                self.broker, m.task, m.items, m.output, max_parallel, **options
            )
            results[m.output] = mapped.results
        for r in self._reduces:
            if r.input_name in results:
                values = results[r.input_name]
            elif r.input_name in inputs:
                values = await _unwrap(inputs[r.input_name], r.input_name)
            else:
                known = [*results, *inputs]
                raise MissingInputError(
                    f"the reduce of {task_display_name(r.task)!r} reads {r.input_name!r}, which "
                    f"no map or earlier reduce produces and kiq_map_reduce was not given "
                    f"(known: {', '.join(map(repr, known)) or 'none'}): pass "
                    f"kiq_map_reduce({r.input_name}=[...])"
                )
            options = {**self.engine_options, **r.options}
            options.pop("max_parallel", None)
            if r.initial is not _UNSET:
                options["initial"] = r.initial
            reduced = await MapReduce.reduce(
                self.broker,
                r.task,
                values,
                r.input_name,
                r.output,
                chunk_size=r.chunk_size,
                **options,
            )
            results[r.output] = reduced.return_value
        return results

    async def kiq_map_reduce_advanced(
        self,
        map_task: Any,
        reduce_task: Any,
        items: Iterable[Any],
        map_output: str = "mapped",
        reduce_output: str = "reduced",
        map_param_name: str | None = None,
        max_parallel: int | None = None,
        reduce_chunk_size: int | None = None,
        **options: Any,
    ) -> Any:
        """Map `map_task` over `items`, reduce the list with `reduce_task`; returns the value
        (MapReduce.map_reduce with this pipeline's broker and engine options)."""
        from .map_reduce import MapReduce

        merged = {**self.engine_options, **options}
        pipeline_parallel = merged.pop("max_parallel", None)
        result = await MapReduce.map_reduce(
            self.broker,
            map_task=map_task,
            reduce_task=reduce_task,
            items=items,
            map_output=map_output,
            reduce_output=reduce_output,
            max_parallel=max_parallel or pipeline_parallel,
            map_param_name=map_param_name,
            reduce_chunk_size=reduce_chunk_size,
            **merged,
        )
        return result.return_value

    async def kiq_map_sweep(
        self,
        task: Any,
        param_values: Mapping[str, Iterable[Any]],
        output: str,
        max_parallel: int | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Run `task` on every combination of `param_values` (MapReduce.map_sweep); returns
        {output: results in combination order, "metadata": {items_processed, duration,
        success_rate, errors}}."""
        from .map_reduce import MapReduce

        merged = {**self.engine_options, **options}
        pipeline_parallel = merged.pop("max_parallel", None)
        swept = await MapReduce.map_sweep(
            self.broker, task, param_values, output, max_parallel or pipeline_parallel, **merged
        )
        return {
            output: swept.results,
            "metadata": {
                "items_processed": swept.items_processed,
                "duration": swept.duration,
                "success_rate": swept.success_rate,
                "errors": len(swept.errors),
            },
        }

    # -- display ------------------------------------------------------------------------------

    def visualize(self) -> dict[str, Any]:
        """The DAG as JSON-ready data: nodes (id, task_name, inputs, outputs) and edges."""
        dag = self.dag
        return {
            "nodes": [
                {
                    "id": node.id,
                    "task_name": node.task_name,
                    "inputs": node.inputs,
                    "outputs": node.outputs,
                }
                for node in dag.nodes
            ],
            "edges": [[a, b] for a, b in dag.graph.edges()],
            "external_inputs": dag.external_inputs,
        }

    def visualize_dot(self) -> str:
        from .visualization import DAGVisualizer

        return DAGVisualizer.to_dot(self.dag)

    def visualize_mermaid(self) -> str:
        from .visualization import DAGVisualizer

        return DAGVisualizer.to_mermaid(self.dag)

    def print_dag(self) -> None:
        self.dag.print()

    def __len__(self) -> int:
        return len(self._registry)

    def __repr__(self) -> str:
        return f"<DataflowPipeline {len(self)} tasks, outputs={self.get_outputs()}>"


class _MapOperation(NamedTuple):
    task: Any
    items: list[Any]
    output: str
    max_parallel: int | None
    options: dict[str, Any]  # MapReduce.map's keyword arguments


class _ReduceOperation(NamedTuple):
    task: Any
    input_name: str
    output: str
    chunk_size: int | None
    initial: Any  # _UNSET when not given
    options: dict[str, Any]  # engine options


# taskiq-flow's old path of the sequential Pipeline; imported last, as pipeliner reads this module
from .pipeliner import Pipeline  # noqa: E402
