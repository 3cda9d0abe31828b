"""MapReduce: apply a task to every item, then aggregate, on the ready-set scheduler.

A map over N items is ONE DAG of N nodes: node i consumes the external key `"{output}[i].item"`
and produces `"{output}[i]"`. The Rust scheduler hands out at most `max_parallel` of them at a
time, so 100,000 items are 100,000 scheduled tasks, not a Python gather loop holding 100,000
coroutines.

    mapped = await MapReduce.map(broker, square, range(10), max_parallel=4)
    squares = (await mapped.wait_result()).return_value        # [0, 1, 4, ...] in item order
    total = await MapReduce.reduce(broker, sum_all, mapped, "mapped")
    final = await MapReduce.map_reduce(broker, square, range(10), sum_all)

Each call runs to completion and returns a MapReduceResult; `wait_result()` gives a taskiq
TaskiqResult whose `return_value` is the value. A failing item raises at once (TaskFailedError
naming the node, e.g. `square[3]`, with its traceback), never a result with a silent gap.
"""

from __future__ import annotations

import functools
import inspect
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .dataflow.registry import DataflowRegistry
from .events import StepCompleted, StepFailed
from .execution_engine import ExecutionEngine
from .pipeline import check_engine_options
from .task import SPEC_ATTR, get_spec, task_display_name

__all__ = ["MapReduce", "MapReduceResult"]


class MapReduceResult:
    """The outcome of a map, a reduce or a map-reduce; behaves like a finished taskiq task.

    `await result.wait_result()` returns a `taskiq.TaskiqResult` (`.return_value`, `.is_err`,
    `.execution_time`). The value is also at `.return_value`; `.results` is the same value (the
    list of a map), `.output_name` its key, `.items_processed` and `.duration` describe the run.
    """

    def __init__(
        self,
        output_name: str,
        value: Any,
        items_processed: int,
        duration: float,
        task_id: str,
        mapped: Any = None,
    ) -> None:
        self.output_name = output_name
        self.return_value = value
        self.items_processed = items_processed
        self.duration = duration
        self.task_id = task_id
        self.mapped = mapped  # map_reduce: the mapped list the reduce consumed
        self.errors: list[BaseException] = []  # failures raise; kept for taskiq-flow's shape

    @property
    def results(self) -> Any:
        return self.return_value

    @property
    def success_rate(self) -> float:
        return 1.0 if self.items_processed else 0.0

    async def is_ready(self) -> bool:
        return True

    async def get_result(self, with_logs: bool = False) -> Any:
        from taskiq import TaskiqResult

        return TaskiqResult(
            is_err=False,
            log=None,
            return_value=self.return_value,
            execution_time=self.duration,
        )

    async def wait_result(
        self, check_interval: float = 0.2, timeout: float = -1.0, with_logs: bool = False
    ) -> Any:
        """The result as a `taskiq.TaskiqResult` (the run is already finished: no polling)."""
        return await self.get_result(with_logs=with_logs)

    def __repr__(self) -> str:
        return (
            f"MapReduceResult({self.output_name!r}, items_processed={self.items_processed}, "
            f"duration={self.duration:.3f}s)"
        )


class MapReduce:
    """Parallel map then reduce, each a DAG run by ExecutionEngine.

    Extra keyword arguments are engine options (`fail_fast`, `retries`, `retry_delay`,
    `timeout`, `transport`, `executor`, ...). `progress_callback(done, total)` is called after
    every finished item. A plain or async function runs in-process; a taskiq task runs through
    the broker (in-process for InMemoryBroker).
    """

    @staticmethod
    async def map(
        broker: Any,
        map_func: Callable[..., Any],
        items: Iterable[Any],
        output: str = "mapped",
        max_parallel: int | None = None,
        *,
        progress_callback: Callable[[int, int], Any] | None = None,
        **engine_options: Any,
    ) -> MapReduceResult:
        """Apply `map_func(item)` to every item; the value is the list of results in item order."""
        started = time.perf_counter()
        items = list(items)
        options = _options("MapReduce.map", map_func, max_parallel, engine_options)
        results = await _run_map(broker, map_func, items, output, options, progress_callback)
        return MapReduceResult(
            output, results, len(items), time.perf_counter() - started, uuid.uuid4().hex
        )

    @staticmethod
    async def reduce(
        broker: Any,
        reduce_func: Callable[..., Any],
        mapped_result: Any,
        input_name: str = "mapped",
        output: str = "reduced",
        **engine_options: Any,
    ) -> MapReduceResult:
        """Run `reduce_func` once on the mapped list.

        `mapped_result` is what `MapReduce.map` returned (or a taskiq result, a mapping holding
        `input_name`, or the list itself). The list is bound to the parameter named
        `input_name` when `reduce_func` has one, else passed as the single positional argument.
        """
        started = time.perf_counter()
        values = await _unwrap(mapped_result, input_name)
        options = _options("MapReduce.reduce", reduce_func, None, engine_options)
        value = await _run_reduce(broker, reduce_func, values, input_name, output, options)
        count = len(values) if hasattr(values, "__len__") else 0
        return MapReduceResult(
            output, value, count, time.perf_counter() - started, uuid.uuid4().hex
        )

    @staticmethod
    async def map_reduce(
        broker: Any,
        map_func: Callable[..., Any],
        items: Iterable[Any],
        reduce_func: Callable[..., Any],
        map_output: str = "mapped",
        reduce_output: str = "final",
        max_parallel: int | None = 10,
        *,
        progress_callback: Callable[[int, int], Any] | None = None,
        **engine_options: Any,
    ) -> MapReduceResult:
        """Map `map_func` over `items`, then `reduce_func(mapped_list)`; the value is the reduction.

        The mapped list is kept at `.mapped` of the result. taskiq-flow's own source takes
        `(map_task, reduce_task, items)`; that order is accepted too (it cannot be ambiguous:
        a list is not callable).
        """
        started = time.perf_counter()
        if callable(items) and not callable(reduce_func) and isinstance(reduce_func, Iterable):
            items, reduce_func = reduce_func, items
        items = list(items)
        map_options = _options("MapReduce.map_reduce", map_func, max_parallel, engine_options)
        mapped = await _run_map(broker, map_func, items, map_output, map_options, progress_callback)
        reduce_options = _options("MapReduce.map_reduce", reduce_func, None, engine_options)
        value = await _run_reduce(
            broker, reduce_func, mapped, map_output, reduce_output, reduce_options
        )
        return MapReduceResult(
            reduce_output,
            value,
            len(items),
            time.perf_counter() - started,
            uuid.uuid4().hex,
            mapped=mapped,
        )


def _options(
    where: str, func: Any, max_parallel: int | None, engine_options: dict[str, Any]
) -> dict[str, Any]:
    if not callable(func):
        raise TypeError(f"{where}: expected a function or a taskiq task, got {func!r}")
    if max_parallel is not None and (
        isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1
    ):
        raise ValueError(f"{where}: max_parallel must be a positive integer, got {max_parallel!r}")
    options = check_engine_options(engine_options, where)
    options.pop("max_parallel", None)
    # A plain function has no `kiq`: run it in-process whatever the broker.
    if "transport" not in options and not hasattr(func, "kiq"):
        options["transport"] = "local"
    options["max_parallel"] = max_parallel
    return options


async def _run_map(
    broker: Any,
    func: Any,
    items: list[Any],
    output: str,
    options: dict[str, Any],
    progress_callback: Callable[[int, int], Any] | None,
) -> list[Any]:
    n = len(items)
    if n == 0:
        return []
    if not isinstance(output, str):
        raise TypeError(f"output must be a string key, got {output!r}")
    base = task_display_name(func)
    func = _node_callable(func)
    out_keys = [f"{output}[{i}]" for i in range(n)]
    in_keys = [f"{key}.item" for key in out_keys]
    registry = DataflowRegistry()
    register = registry.register_task
    for i in range(n):
        register(func, out_keys[i], (in_keys[i],), name=f"{base}[{i}]")
    dag = registry.build_dag(external_inputs=in_keys)
    engine = ExecutionEngine(broker, dag, **options)
    if progress_callback is not None:
        done = 0

        def on_step(event: Any) -> Any:
            nonlocal done
            done += 1
            return progress_callback(done, n)

        engine.events.subscribe(on_step, StepCompleted, StepFailed)
    values = await engine.execute(dict(zip(in_keys, items, strict=True)))
    return [values[key] for key in out_keys]


async def _run_reduce(
    broker: Any,
    func: Any,
    values: Any,
    input_name: str,
    output: str,
    options: dict[str, Any],
) -> Any:
    if not isinstance(input_name, str) or not isinstance(output, str):
        raise TypeError(
            f"input_name and output must be string keys, got {input_name!r}, {output!r}"
        )
    if input_name == output:
        raise ValueError(f"reduce output {output!r} must differ from its input_name {input_name!r}")
    registry = DataflowRegistry()
    name = task_display_name(func)
    registry.register_task(_node_callable(func), output=output, inputs=[input_name], name=name)
    dag = registry.build_dag(external_inputs=[input_name])
    engine = ExecutionEngine(broker, dag, **options)
    results = await engine.execute({input_name: values})
    return results[output]


def _node_callable(func: Any) -> Any:
    """`func` in a form the engine calls with the item as the single positional argument.

    The engine binds by keyword when a callable takes **kwargs or has no readable signature (a
    builtin such as `max`); such a function is wrapped so the item is passed by position, not
    under its generated key. A callable object with an `async def __call__` becomes its bound
    `__call__`, so that it is awaited rather than run in a thread.
    """
    if hasattr(func, "kiq"):
        return func  # a taskiq task: the broker needs the task itself
    target = func
    if (
        not inspect.isroutine(func)
        and not inspect.iscoroutinefunction(func)
        and inspect.iscoroutinefunction(type(func).__call__)
    ):
        target = func.__call__
    try:
        params = inspect.signature(target).parameters.values()
        by_position = not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    except (TypeError, ValueError):
        by_position = False
    if by_position:
        return func if target is func else _keep_spec(func, target)
    call: Any
    if inspect.iscoroutinefunction(target):

        async def call(item: Any) -> Any:
            return await target(item)

    else:

        def call(item: Any) -> Any:
            return target(item)

    call.__name__ = getattr(func, "__name__", type(func).__name__)
    return _keep_spec(func, call)


def _keep_spec(original: Any, replacement: Any) -> Any:
    spec = get_spec(original)
    if spec is not None:
        replacement = functools.partial(replacement)  # bound methods take no attributes
        setattr(replacement, SPEC_ATTR, spec)
    return replacement


async def _unwrap(mapped: Any, input_name: str) -> Any:
    """The list a reduce consumes, from whatever the caller holds."""
    if isinstance(mapped, MapReduceResult):
        return mapped.return_value
    if hasattr(mapped, "wait_result") and hasattr(mapped, "task_id"):
        mapped = await mapped.wait_result()  # a kicked taskiq task
    if hasattr(mapped, "is_err") and hasattr(mapped, "return_value"):  # a TaskiqResult
        if mapped.is_err:
            raise RuntimeError(f"cannot reduce a failed result: {mapped.error!r}")
        return mapped.return_value
    if isinstance(mapped, Mapping):
        # e.g. the outputs of kiq_dataflow / ExecutionEngine.execute; else the mapping itself
        return mapped.get(input_name, mapped)
    if isinstance(mapped, Iterator):
        return list(mapped)  # one-shot: materialise so the task can read it
    return mapped
