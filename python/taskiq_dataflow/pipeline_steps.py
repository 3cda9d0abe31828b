"""The steps of a sequential `Pipeline` (pipeliner.py) and how the chain becomes ONE run.

A step records what was chained: its task(s), where the previous step's result goes (the first
positional argument, the parameter `param_name`, or nowhere for `call_after`) and its fixed
keyword arguments. `expand()` turns the chain into the columns of one DAG: step i produces the
key `step[i]`; a `call_next` node reads `step[i-1]`, a `call_after` node runs after the node
of step i-1 (an explicit edge) without reading it, a group is one node per task plus a node
collecting their results in order. A map or a filter is one task in the engine's process that,
once the list exists, adds one task per item to the run (`growth.add_tasks`, private to it) and
a task gathering the items' results, and returns `result_of` that: the items run on the run's
transport (the cluster's workers for a DataflowNatsBroker), a failing item fails the run naming
the item's task (`step2.add_one[3]`). With `skip_errors=True` the items run as a nested run
that keeps going past failures, and the failed items are left out.

The engine gives a node its values by position when its keys are not its parameter names (a
pipeline's keys never are): `positional_order` puts a step's arguments in parameter order,
passing the default of a parameter left out before one given, and refuses (naming the step)
what cannot go by position: a keyword-only parameter, or one after a dependency.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .dataflow.dag import DAG
from .dataflow.graph import NodeFields
from .growth import NodeBatch, add_tasks, result_of
from .task import InEngine, TaskSpec, get_spec, original_function, task_display_name

CALL_NEXT, CALL_AFTER, MAP, FILTER, GROUP = "call_next", "call_after", "map", "filter", "group"


class _Flowing:
    """Stands for the value that flows into a step: the previous step's result, or an item."""

    def __repr__(self) -> str:
        return "<the previous step's result>"


FLOWING: Any = _Flowing()


@dataclass(frozen=True)
class Step:
    """One chained step: `tasks` (one, or several for a group), for each where the flowing
    value goes (`param_names`: None for the first positional argument) and its fixed keyword
    arguments (`kwargs`)."""

    kind: str
    tasks: tuple[Any, ...]
    param_names: tuple[str | None, ...]
    kwargs: tuple[dict[str, Any], ...]
    skip_errors: bool = False
    max_parallel: int | None = None

    def describe(self, index: int) -> str:
        names = ", ".join(task_display_name(t) for t in self.tasks)
        return f"step {index} ({self.kind}({names}))"

    def call(self, k: int, flowing: Any = FLOWING) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of task k given the flowing value."""
        param, kwargs = self.param_names[k], self.kwargs[k]
        if self.kind == CALL_AFTER:
            return (), dict(kwargs)
        if param is None:
            return (flowing,), dict(kwargs)
        return (), {param: flowing, **kwargs}


def check_task(task: Any, where: str) -> None:
    from taskiq.kicker import AsyncKicker

    if isinstance(task, AsyncKicker):
        raise TypeError(
            f"{where}: got a taskiq kicker ({task.task_name!r}); the engine runs the task "
            "itself: pass the @broker.task task, with its labels set on the decorator"
        )
    if not callable(task):
        raise TypeError(f"{where}: expected a @broker.task task or a function, got {task!r}")


def positional_order(
    where: str, task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> list[tuple[str, Any]]:
    """[(parameter, value)] in the order the engine passes them to `task`: by position, so the
    parameters given must be its first ones (a `*args` parameter takes the rest)."""
    func = original_function(task)
    name = task_display_name(task)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin: whatever it is given, by position
        if kwargs:
            raise TypeError(
                f"{where}: the signature of {name!r} cannot be read, so its keyword arguments "
                f"{sorted(kwargs)} cannot be placed: pass them by position"
            ) from None
        return [(f"arg{i}", value) for i, value in enumerate(args)]
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{where}: cannot call {name!r}{signature}: {exc}") from None
    order: list[tuple[str, Any]] = []
    # positional parameters left to their defaults, passed as such when a later one is given
    skipped: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        given = param.name in bound.arguments
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            values = bound.arguments.get(param.name, ())
            if values:
                order += _defaults(where, name, skipped, param.name)
            order += [(f"{param.name}[{i}]", v) for i, v in enumerate(values)]
            continue
        positional = param.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
        if not given:
            if positional:
                skipped.append(param)
            continue
        if positional:
            order += _defaults(where, name, skipped, param.name)
            order.append((param.name, bound.arguments[param.name]))
            continue
        raise TypeError(
            f"{where}: {name!r} gets its arguments by position (the engine passes a step's "
            f"values in parameter order), so its keyword-only parameter {param.name!r} cannot "
            f"be given: make it a positional parameter of {name!r}"
        )
    return order


def _defaults(
    where: str, name: str, skipped: list[inspect.Parameter], given: str
) -> list[tuple[str, Any]]:
    """The defaults of the positional parameters before `given` that were not given."""
    from .dependencies import _is_dependency

    for param in skipped:
        if _is_dependency(param.default):
            raise TypeError(
                f"{where}: {name!r} gets its arguments by position (the engine passes a step's "
                f"values in parameter order), so {given!r} cannot be given: it comes after "
                f"{param.name!r}, a dependency the task resolves itself; move {param.name!r} "
                f"after the parameters the pipeline gives"
            )
    order = [(param.name, param.default) for param in skipped]
    skipped.clear()
    return order


def node_task(task: Any) -> Any:
    """The task as a node: a taskiq task as it is (it runs where its broker runs tasks), a
    plain function in the engine's process (it cannot travel to a worker)."""
    if hasattr(task, "kiq"):
        return task
    spec = get_spec(task)
    if spec is None:
        spec = TaskSpec(outputs=(), inputs=None, name=task_display_name(task), local=True)
    elif not spec.local:
        spec = dataclasses.replace(spec, local=True)
    return InEngine(original_function(task), spec)


def value_key(index: int) -> str:
    return f"step[{index}]"


class _Columns:
    __slots__ = ("edges", "inputs", "names", "outputs", "tasks", "values")

    def __init__(self) -> None:
        self.tasks: list[Any] = []
        self.names: list[str] = []
        self.inputs: list[Sequence[str]] = []
        self.outputs: list[Sequence[str]] = []
        self.edges: list[tuple[int, int]] = []
        self.values: dict[str, Any] = {}  # the run's inputs: kiq()'s arguments and constants

    def add(self, task: Any, name: str, inputs: Sequence[str], output: str) -> int:
        self.tasks.append(task)
        self.names.append(name)
        self.inputs.append(tuple(inputs))
        self.outputs.append((output,))
        return len(self.tasks) - 1

    def keys(self, prefix: str, order: list[tuple[str, Any]], flowing_key: str) -> list[str]:
        """The input keys for `order`: the flowing value's key, or a constant given as a run
        input under `prefix.parameter`."""
        keys = []
        for param, value in order:
            if value is FLOWING:
                keys.append(flowing_key)
            else:
                key = f"{prefix}.{param}"
                self.values[key] = value
                keys.append(key)
        return keys


def expand(
    steps: Sequence[Step],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    broker: Any,
    engine_options: dict[str, Any],
    subscriptions: Sequence[tuple[Any, tuple[Any, ...]]] = (),
) -> tuple[DAG, dict[str, Any], str]:
    """The chain as one DAG, its inputs, and the key of the last step's value. The first step
    receives `args` and `kwargs` (kiq()'s arguments) besides its own keyword arguments;
    `subscriptions` (listener, event types) also hear the runs of skip_errors items."""
    cols = _Columns()
    last = -1  # the node whose output is the previous step's value
    for i, step in enumerate(steps):
        where = step.describe(i)
        key, prev = value_key(i), value_key(i - 1)
        if i == 0:
            task = step.tasks[0]
            clash = sorted(kwargs.keys() & step.kwargs[0].keys())
            if clash:
                raise TypeError(
                    f"{where}: kiq() gives {clash}, which the step already fixes; give each once"
                )
            order = positional_order(where, task, args, {**kwargs, **step.kwargs[0]})
            name = f"step{i}.{task_display_name(task)}"
            last = cols.add(node_task(task), name, cols.keys(key, order, prev), key)
        elif step.kind in (CALL_NEXT, CALL_AFTER):
            task = step.tasks[0]
            call_args, call_kwargs = step.call(0)
            order = positional_order(where, task, call_args, call_kwargs)
            name = f"step{i}.{task_display_name(task)}"
            node = cols.add(node_task(task), name, cols.keys(key, order, prev), key)
            if step.kind == CALL_AFTER:
                cols.edges.append((last, node))
            last = node
        elif step.kind == GROUP:
            members = []
            for k, task in enumerate(step.tasks):
                call_args, call_kwargs = step.call(k)
                order = positional_order(where, task, call_args, call_kwargs)
                member = f"{key}[{k}]"
                name = f"step{i}.group[{k}].{task_display_name(task)}"
                cols.add(node_task(task), name, cols.keys(member, order, prev), member)
                members.append(member)
            gather = InEngine(_gather_list, _local_spec(f"step{i}.group"))
            last = cols.add(gather, f"step{i}.group", members, key)
        else:
            fan_out = FanOut(i, step, broker, engine_options, subscriptions)
            last = cols.add(fan_out, fan_out.name, [prev], key)
    dag = DAG.from_columns(
        cols.tasks,
        cols.names,
        cols.inputs,
        cols.outputs,
        [None] * len(cols.tasks),
        list(cols.values),
        True,
    )
    for a, b in cols.edges:
        dag.add_edge(a, b)
    dag.validate()
    return dag, cols.values, value_key(len(steps) - 1)


def _local_spec(name: str) -> TaskSpec:
    return TaskSpec(outputs=(), inputs=None, name=name, local=True)


def _gather_list(*results: Any) -> list[Any]:
    return list(results)


class _Filtered:
    """The gathering task of a filter: the items whose predicate result is truthy."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __call__(self, *verdicts: Any) -> list[Any]:
        return [item for item, keep in zip(self.items, verdicts, strict=True) if keep]


class FanOut:
    """The task of a map or filter step: one task per item of the previous step's list."""

    def __init__(
        self,
        index: int,
        step: Step,
        broker: Any,
        engine_options: dict[str, Any],
        subscriptions: Sequence[tuple[Any, tuple[Any, ...]]] = (),
    ) -> None:
        self.index, self.step = index, step
        self.subscriptions = list(subscriptions)
        self.task = step.tasks[0]
        self.name = f"step{index}.{step.kind}"
        self.broker, self.engine_options = broker, engine_options
        self.where = step.describe(index)
        # where each item and the fixed arguments go, checked once for all items
        self.order = positional_order(self.where, self.task, *step.call(0))
        # in the engine's process (it adds tasks to the run); no retry or timeout of the
        # whole step (its items' tasks have theirs)
        self.__dataflow__ = TaskSpec(
            outputs=(), inputs=None, name=self.name, retries=0, timeout=math.inf, local=True
        )

    def __repr__(self) -> str:
        return f"<{self.where}>"

    async def __call__(self, items: Any) -> Any:
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise TypeError(
                f"{self.where} needs a list from the step before it, got "
                f"{type(items).__name__}: {items!r:.80}"
            )
        items = list(items)
        if not items:
            return []
        cols = _Columns()
        task, base = node_task(self.task), task_display_name(self.task)
        prefix = value_key(self.index)
        outs = [f"{prefix}[{j}]" for j in range(len(items))]
        batch = NodeBatch()
        for j, item in enumerate(items):
            item_key = f"{prefix}.items[{j}]"
            cols.values[item_key] = item
            keys = cols.keys(prefix, self.order, item_key)
            name = f"step{self.index}.{base}[{j}]"
            batch.append(NodeFields(task, name, keys, (outs[j],), {}))
        if self.step.skip_errors:
            return await self._run_apart(batch, cols.values, items, outs)
        gathered = f"{prefix}.gathered"
        gather: Any = _Filtered(items) if self.step.kind == FILTER else _gather_list
        batch.append(
            NodeFields(
                InEngine(gather, _local_spec(f"{self.name}.gather")),
                f"{self.name}.gather",
                outs,
                (gathered,),
                {},
            )
        )
        add_tasks(batch, values=cols.values, max_parallel=self.step.max_parallel, private=True)
        return result_of(gathered)

    async def _run_apart(
        self, batch: NodeBatch, values: dict[str, Any], items: list[Any], outs: list[str]
    ) -> list[Any]:
        """skip_errors: the items as a run of their own that goes on past failures (a failure
        in the pipeline's run would end it); the failed items are left out."""
        from .execution_engine import ExecutionEngine

        dag = DAG.from_columns(
            [f.task for f in batch],
            [f.name for f in batch],
            [f.inputs for f in batch],
            [f.outputs for f in batch],
            [None] * len(batch),
            list(values),
            True,
        )
        options = {**self.engine_options, "skip_failed": True}
        if self.step.max_parallel is not None:
            options["max_parallel"] = self.step.max_parallel
        engine = ExecutionEngine(self.broker, dag, **options)
        for listener, types in self.subscriptions:
            engine.events.subscribe(listener, *types)
        done = await engine.execute(values)
        if self.step.kind == FILTER:
            return [item for item, out in zip(items, outs, strict=True) if done.get(out, False)]
        return [done[out] for out in outs if out in done]
