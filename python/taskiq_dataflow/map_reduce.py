"""MapReduce: apply a task to every item, then aggregate, on the ready-set scheduler.

A map over N items is ONE DAG of N nodes: node i consumes the external key `"{output}[i].item"`
and produces `"{output}[i]"`. The Rust scheduler hands out at most `max_parallel` of them at a
time, so 100,000 items are 100,000 scheduled tasks, not a Python gather loop holding 100,000
coroutines.

    mapped = await MapReduce.map(broker, square, range(10), max_parallel=4)
    squares = (await mapped.wait_result()).return_value        # [0, 1, 4, ...] in item order
    total = await MapReduce.reduce(broker, sum_all, mapped, "mapped")
    final = await MapReduce.map_reduce(broker, square, range(10), sum_all)
    final = await MapReduce.map_reduce(broker, map_task=square, reduce_task=sum_all,
                                       items=range(10), reduce_chunk_size=100)
    sweep = await MapReduce.map_sweep(broker, train, {"lr": [0.1, 0.01], "batch": [32, 64]})

Each call runs to completion and returns a MapReduceResult; `wait_result()` gives a taskiq
TaskiqResult whose `return_value` is the value. A failing item raises at once (TaskFailedError
naming the node, e.g. `square[3]`, with its traceback), never a result with a silent gap.

taskiq-flow's options: `chunk_config=ChunkConfig(...)` runs each chunk of items as one task
(the items of a chunk one after the other; `max_parallel` bounds the chunks in flight and
`progress_callback` counts chunks); `param_name=` names the parameter an item is passed to,
and other keyword arguments that are not engine options are passed to every call of the task.
A task that runs in another process gets its arguments by position, so those must be its first
parameters (the error says which is missing); chunks need the function in this process.
`reduce(..., chunk_size=N)` reduces chunks of N in parallel, then the chunks' results;
`initial=` is the value of an empty reduction.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .dataflow.registry import DataflowRegistry
from .events import StepCompleted, StepFailed
from .execution_engine import ExecutionEngine
from .pipeline import check_engine_options, engine_option_names
from .task import SPEC_ATTR, get_spec, original_function, positional_params, task_display_name

__all__ = ["ChunkConfig", "MapReduce", "MapReduceResult", "MapResult"]

_NO_INITIAL: Any = object()


@dataclass
class ChunkConfig:
    """How `MapReduce.map` groups items into chunks, each run as one task.

    `chunk_size` items per chunk; `adaptive=True` sizes chunks from the number of items (half
    of them under 100 items, a hundredth over 10,000, within `min_chunk_size` and
    `max_chunk_size`); `max_chunks` caps the number of chunks by making them larger. Every item
    is in a chunk: unlike taskiq-flow 1.2.2, `max_chunks` never drops items.
    """

    chunk_size: int = 100
    max_chunks: int | None = None
    adaptive: bool = False
    min_chunk_size: int = 10
    max_chunk_size: int = 1000

    def __post_init__(self) -> None:
        for name in ("chunk_size", "min_chunk_size", "max_chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ChunkConfig: {name} must be a positive integer, got {value!r}")
        if self.max_chunks is not None and (
            isinstance(self.max_chunks, bool)
            or not isinstance(self.max_chunks, int)
            or self.max_chunks < 1
        ):
            raise ValueError(
                f"ChunkConfig: max_chunks must be a positive integer or None, got "
                f"{self.max_chunks!r}"
            )

    def size_for(self, total: int) -> int:
        size = self.chunk_size
        if self.adaptive:
            if total < 100:
                size = max(self.min_chunk_size, total // 2)
            elif total > 10000:
                size = min(self.max_chunk_size, max(self.min_chunk_size, total // 100))
        if self.max_chunks is not None and total > size * self.max_chunks:
            size = math.ceil(total / self.max_chunks)
        return max(size, 1)

    def calculate_chunks(self, items: Iterable[Any]) -> list[list[Any]]:
        """`items` cut into consecutive chunks (all of them, in order)."""
        items = list(items)
        size = self.size_for(len(items))
        return [items[i : i + size] for i in range(0, len(items), size)]


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


class MapResult(MapReduceResult):
    """What `MapReduce.map` and `map_sweep` return: `.results` is the list, in item order.

    Built like taskiq-flow's dataclass: `MapResult(results, output_name, items_processed,
    duration, errors=[])`. A failed item raises instead of landing in `errors`, so `errors` is
    empty and `success_rate` is 1.0 for every map that returns."""

    def __init__(
        self,
        results: list[Any],
        output_name: str,
        items_processed: int,
        duration: float,
        errors: list[BaseException] | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(
            output_name, results, items_processed, duration, task_id or uuid.uuid4().hex
        )
        self.errors = list(errors or [])

    @property
    def success_rate(self) -> float:
        if self.items_processed == 0:
            return 0.0
        return (self.items_processed - len(self.errors)) / self.items_processed


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
        param_name: str | None = None,
        chunk_config: ChunkConfig | None = None,
        progress_callback: Callable[[int, int], Any] | None = None,
        **options: Any,
    ) -> MapResult:
        """Apply `map_func(item)` to every item; the value is the list of results in item order.

        Keyword arguments that are engine options configure the run; any other is passed to
        every call (`map_func(item, **those)`), as is the item under `param_name` if given."""
        started = time.perf_counter()
        items = list(items)
        engine_options, task_kwargs = _split_options("MapReduce.map", map_func, options)
        engine_options = _options("MapReduce.map", map_func, max_parallel, engine_options)
        if chunk_config is not None and not isinstance(chunk_config, ChunkConfig):
            raise TypeError(
                f"MapReduce.map: 'chunk_config' must be a ChunkConfig, got {chunk_config!r}"
            )
        results = await _run_map(
            broker,
            map_func,
            items,
            output,
            engine_options,
            progress_callback,
            _ItemCall(param_name, task_kwargs, chunk_config),
        )
        return MapResult(results, output, len(items), time.perf_counter() - started)

    @staticmethod
    async def map_sweep(
        broker: Any,
        task: Callable[..., Any],
        param_values: Mapping[str, Iterable[Any]],
        output: str = "sweep",
        max_parallel: int | None = None,
        *,
        progress_callback: Callable[[int, int], Any] | None = None,
        **options: Any,
    ) -> MapResult:
        """Call `task(**combination, **kwargs)` for every combination of `param_values` (their
        Cartesian product, the last parameter varying fastest); the value is the list of
        results in that order. Other keyword arguments as for `map`."""
        started = time.perf_counter()
        if not isinstance(param_values, Mapping) or not param_values:
            raise TypeError(
                "MapReduce.map_sweep: param_values must be a non-empty dict of parameter name "
                f"-> list of values, got {param_values!r}"
            )
        names = list(param_values)
        combinations = [
            dict(zip(names, values, strict=True))
            for values in itertools.product(*(list(v) for v in param_values.values()))
        ]
        engine_options, task_kwargs = _split_options("MapReduce.map_sweep", task, options)
        clash = sorted(set(names) & set(task_kwargs))
        if clash:
            raise TypeError(
                f"MapReduce.map_sweep: {', '.join(map(repr, clash))} given both in "
                "param_values and as a keyword argument; give each once"
            )
        engine_options = _options("MapReduce.map_sweep", task, max_parallel, engine_options)
        results = await _run_map(
            broker,
            task,
            combinations,
            output,
            engine_options,
            progress_callback,
            _ItemCall(None, task_kwargs, None, spread=True),
        )
        return MapResult(results, output, len(combinations), time.perf_counter() - started)

    @staticmethod
    async def reduce(
        broker: Any,
        reduce_func: Callable[..., Any],
        mapped_result: Any,
        input_name: str = "mapped",
        output: str = "reduced",
        *,
        initial: Any = _NO_INITIAL,
        chunk_size: int | None = None,
        **engine_options: Any,
    ) -> MapReduceResult:
        """Run `reduce_func` once on the mapped list.

        `mapped_result` is what `MapReduce.map` returned (or a taskiq result, a mapping holding
        `input_name`, or the list itself). The list is bound to the parameter named
        `input_name` when `reduce_func` has one, else passed as the single positional argument.
        With `initial`, an empty list reduces to `initial` without calling `reduce_func`. With
        `chunk_size=N`, chunks of N items are reduced in parallel, then the list of their
        results is reduced (so `reduce_func` must accept its own results).
        """
        started = time.perf_counter()
        values = await _unwrap(mapped_result, input_name)
        options = _options("MapReduce.reduce", reduce_func, None, engine_options)
        value = await _reduce_values(
            broker, reduce_func, values, input_name, output, options, initial, chunk_size
        )
        count = len(values) if hasattr(values, "__len__") else 0
        return MapReduceResult(
            output, value, count, time.perf_counter() - started, uuid.uuid4().hex
        )

    @staticmethod
    async def map_reduce(
        broker: Any,
        map_func: Callable[..., Any] | None = None,
        items: Iterable[Any] | None = None,
        reduce_func: Callable[..., Any] | None = None,
        map_output: str = "mapped",
        reduce_output: str = "final",
        max_parallel: int | None = 10,
        *,
        map_task: Callable[..., Any] | None = None,
        reduce_task: Callable[..., Any] | None = None,
        map_param_name: str | None = None,
        chunk_config: ChunkConfig | None = None,
        reduce_chunk_size: int | None = None,
        initial: Any = _NO_INITIAL,
        progress_callback: Callable[[int, int], Any] | None = None,
        **options: Any,
    ) -> MapReduceResult:
        """Map `map_func` over `items`, then `reduce_func(mapped_list)`; the value is the reduction.

        The mapped list is kept at `.mapped` of the result. taskiq-flow's own source takes
        `(map_task, reduce_task, items)`; that order is accepted too (it cannot be ambiguous:
        a list is not callable), and so are its keywords `map_task=`, `reduce_task=`,
        `map_param_name=` and `reduce_chunk_size=` (the reduce's `chunk_size`). Keyword
        arguments that are not engine options are passed to every call of the map task.
        """
        started = time.perf_counter()
        map_func = _one_of("map_func", map_func, "map_task", map_task)
        reduce_func = _one_of("reduce_func", reduce_func, "reduce_task", reduce_task)
        if callable(items) and not callable(reduce_func) and isinstance(reduce_func, Iterable):
            items, reduce_func = reduce_func, items
        if map_func is None or reduce_func is None or items is None:
            raise TypeError(
                "MapReduce.map_reduce needs a map task, a reduce task and items: "
                "map_reduce(broker, map_task=..., reduce_task=..., items=[...])"
            )
        items = list(items)
        engine_options, task_kwargs = _split_options("MapReduce.map_reduce", map_func, options)
        map_options = _options("MapReduce.map_reduce", map_func, max_parallel, engine_options)
        mapped = await _run_map(
            broker,
            map_func,
            items,
            map_output,
            map_options,
            progress_callback,
            _ItemCall(map_param_name, task_kwargs, chunk_config),
        )
        reduce_options = _options("MapReduce.map_reduce", reduce_func, None, engine_options)
        value = await _reduce_values(
            broker,
            reduce_func,
            mapped,
            map_output,
            reduce_output,
            reduce_options,
            initial,
            reduce_chunk_size,
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


def _one_of(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if value is not None and alias_value is not None:
        raise TypeError(f"MapReduce.map_reduce: give {name} or {alias}, not both")
    return value if value is not None else alias_value


def _split_options(
    where: str, func: Any, options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(engine options, keyword arguments for every call of `func`) from `options`.

    A name that is neither an engine option nor a parameter of `func` raises, listing both."""
    known = set(engine_option_names())
    engine = {k: v for k, v in options.items() if k in known}
    rest = {k: v for k, v in options.items() if k not in known}
    if rest:
        params = _parameters(func)
        unknown = [k for k in rest if params is not None and k not in params]
        if unknown:
            raise TypeError(
                f"{where} got {', '.join(map(repr, unknown))}, which is neither an engine "
                f"option nor a parameter of {task_display_name(func)!r}; the engine accepts: "
                f"{', '.join(sorted(known))}"
            )
    return engine, rest


def _parameters(func: Any) -> set[str] | None:
    """The keyword-passable parameter names of `func`; None when it takes **kwargs."""
    target = getattr(func, "original_func", func)
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}


class _ItemCall:
    """How one item is passed to the task: as is, under `param_name`, with fixed keyword
    arguments, spread as keyword arguments (`spread`: a sweep's combination), by chunk."""

    __slots__ = ("chunks", "kwargs", "param_name", "spread")

    def __init__(
        self,
        param_name: str | None,
        kwargs: dict[str, Any],
        chunks: ChunkConfig | None,
        spread: bool = False,
    ) -> None:
        if param_name is not None and not isinstance(param_name, str):
            raise TypeError(f"param_name must be a parameter name, got {param_name!r}")
        self.param_name, self.kwargs, self.chunks, self.spread = (
            param_name,
            kwargs,
            chunks,
            spread,
        )

    @property
    def plain(self) -> bool:
        """Whether the engine can call the task itself with the item (no wrapper needed)."""
        return self.param_name is None and not self.kwargs and not self.spread and not self.chunks

    def node_callable(self, func: Any, broker: Any, options: dict[str, Any], where: str) -> Any:
        """A callable taking one item (or one chunk of items) that makes the call(s)."""
        target = _in_process(func, broker, options, where)
        param, kwargs, spread = self.param_name, self.kwargs, self.spread
        if param is not None:
            params = _parameters(target)
            if params is not None and param not in params:
                raise TypeError(
                    f"{where}: param_name {param!r} is not a parameter of "
                    f"{task_display_name(func)!r}"
                )

        def args_of(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
            if spread:
                return (), {**item, **kwargs}
            if param is not None:
                return (), {param: item, **kwargs}
            return (item,), kwargs

        call: Any
        if inspect.iscoroutinefunction(target):
            if self.chunks is not None:

                async def call(chunk: list[Any]) -> list[Any]:
                    out = []
                    for item in chunk:
                        args, kw = args_of(item)
                        out.append(await target(*args, **kw))
                    return out

            else:

                async def call(item: Any) -> Any:
                    args, kw = args_of(item)
                    return await target(*args, **kw)

        elif self.chunks is not None:

            def call(chunk: list[Any]) -> list[Any]:
                out = []
                for item in chunk:
                    args, kw = args_of(item)
                    out.append(target(*args, **kw))
                return out

        else:

            def call(item: Any) -> Any:
                args, kw = args_of(item)
                return target(*args, **kw)

        call.__name__ = getattr(target, "__name__", type(target).__name__)
        return _keep_spec(func, call)


def _in_process(func: Any, broker: Any, options: dict[str, Any], where: str) -> Any:
    """The function behind `func`, called in this process; a task of a broker that runs its
    tasks elsewhere cannot be, so it raises naming what to drop."""
    if not hasattr(func, "kiq"):
        return _awaitable_call(func)

    if _runs_here(func, broker, options):
        return func.original_func
    raise TypeError(
        f"{where}: chunk_config runs a chunk's items in one call here, but "
        f"{task_display_name(func)!r} runs on {type(broker).__name__}: drop chunk_config "
        "(each item is its own task, max_parallel bounds them), or map a plain function"
    )


def _runs_here(func: Any, broker: Any, options: dict[str, Any]) -> bool:
    """Whether the engine calls `func` in this process (as it does every task when its broker
    is None or in-memory, or with transport='local')."""
    if not hasattr(func, "kiq"):
        return True
    from .execution_engine import _is_local_broker

    transport = options.get("transport", "auto")
    return transport == "local" or (transport == "auto" and _is_local_broker(broker))


def _by_position(
    func: Any, items: list[Any], output: str, how: _ItemCall, where: str
) -> tuple[list[list[str]], dict[str, Any]]:
    """Each node's input keys and the values, for a task that runs elsewhere: its arguments
    travel by position, so the item (or a sweep's values) and the fixed keyword arguments
    must be its first parameters. A fixed argument is one input all the nodes share."""
    params = positional_params(original_function(func))
    if how.spread:
        per_item = list(items[0])
    else:
        first = how.param_name if how.param_name is not None else (params or ["item"])[0]
        per_item = [first]
    given = per_item + list(how.kwargs)
    name = task_display_name(func)
    unknown = [p for p in given if p not in params]
    missing = [p for p in params[: len(given)] if p not in given]
    if unknown or missing:
        fix = f"give {', '.join(missing)} too" if missing else "drop them"
        raise TypeError(
            f"{where}: {name!r} runs on another process, so its arguments travel by position "
            f"and {', '.join(map(repr, given))} must be its first parameters "
            f"({', '.join(params) or 'it has none'}): {fix}, or map a plain function"
        )
    values = {f"{output}.{p}": v for p, v in how.kwargs.items()}
    node_inputs = []
    for i, item in enumerate(items):
        keys = []
        for p in params[: len(given)]:
            if p in how.kwargs:
                keys.append(f"{output}.{p}")
            else:
                key = f"{output}[{i}].{p}"
                values[key] = item[p] if how.spread else item
                keys.append(key)
        node_inputs.append(keys)
    return node_inputs, values


async def _run_map(
    broker: Any,
    func: Any,
    items: list[Any],
    output: str,
    options: dict[str, Any],
    progress_callback: Callable[[int, int], Any] | None,
    how: _ItemCall | None = None,
) -> list[Any]:
    if not items:
        return []
    if not isinstance(output, str):
        raise TypeError(f"output must be a string key, got {output!r}")
    base = task_display_name(func)
    if how is None or how.plain:
        func = _node_callable(func)
    elif how.chunks is None and not _runs_here(func, broker, options):
        node_inputs, values = _by_position(func, items, output, how, f"map of {base!r}")
        return await _run_graph(
            broker, func, base, output, node_inputs, values, options, progress_callback
        )
    else:
        func = how.node_callable(func, broker, options, f"map of {base!r}")
        options = {**options, "transport": "local"}
        if how.chunks is not None:
            chunks = how.chunks.calculate_chunks(items)
            done = await _run_nodes(broker, func, base, chunks, output, options, progress_callback)
            return [value for chunk in done for value in chunk]
    return await _run_nodes(broker, func, base, items, output, options, progress_callback)


async def _run_nodes(
    broker: Any,
    func: Any,
    base: str,
    items: list[Any],
    output: str,
    options: dict[str, Any],
    progress_callback: Callable[[int, int], Any] | None,
) -> list[Any]:
    """One DAG of one node per item: `func(item)`; the results in item order."""
    in_keys = [f"{output}[{i}].item" for i in range(len(items))]
    node_inputs = [[key] for key in in_keys]
    values = dict(zip(in_keys, items, strict=True))
    return await _run_graph(
        broker, func, base, output, node_inputs, values, options, progress_callback
    )


async def _run_graph(
    broker: Any,
    func: Any,
    base: str,
    output: str,
    node_inputs: list[list[str]],
    values: dict[str, Any],
    options: dict[str, Any],
    progress_callback: Callable[[int, int], Any] | None,
) -> list[Any]:
    """One DAG of one node per entry of `node_inputs` (its input keys, given in `values`)."""
    n = len(node_inputs)
    out_keys = [f"{output}[{i}]" for i in range(n)]
    registry = DataflowRegistry()
    register = registry.register_task
    for i in range(n):
        register(func, out_keys[i], node_inputs[i], name=f"{base}[{i}]")
    dag = registry.build_dag(external_inputs=list(values))
    engine = ExecutionEngine(broker, dag, **options)
    if progress_callback is not None:
        done = 0

        def on_step(event: Any) -> Any:
            nonlocal done
            done += 1
            return progress_callback(done, n)

        engine.events.subscribe(on_step, StepCompleted, StepFailed)
    results = await engine.execute(values)
    return [results[key] for key in out_keys]


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


async def _reduce_values(
    broker: Any,
    func: Any,
    values: Any,
    input_name: str,
    output: str,
    options: dict[str, Any],
    initial: Any,
    chunk_size: int | None,
) -> Any:
    empty = hasattr(values, "__len__") and len(values) == 0
    if empty and initial is not _NO_INITIAL:
        return initial
    if chunk_size is None:
        return await _run_reduce(broker, func, values, input_name, output, options)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    values = list(values)
    if len(values) <= chunk_size:
        return await _run_reduce(broker, func, values, input_name, output, options)
    return await _run_chunked_reduce(broker, func, values, input_name, output, options, chunk_size)


async def _run_chunked_reduce(
    broker: Any,
    func: Any,
    values: list[Any],
    input_name: str,
    output: str,
    options: dict[str, Any],
    chunk_size: int,
) -> Any:
    """One DAG: a reduce node per chunk, a node collecting their results, the final reduce."""
    if input_name == output:
        raise ValueError(f"reduce output {output!r} must differ from its input_name {input_name!r}")
    name = task_display_name(func)
    node = _node_callable(func)
    registry = DataflowRegistry()
    chunks = [values[i : i + chunk_size] for i in range(0, len(values), chunk_size)]
    in_keys = [f"{input_name}[{i}]" for i in range(len(chunks))]
    part_keys = [f"{output}.part[{i}]" for i in range(len(chunks))]
    for i in range(len(chunks)):
        registry.register_task(node, part_keys[i], (in_keys[i],), name=f"{name}[{i}]")
    parts = f"{output}.parts"
    registry.register_task(_collect, parts, part_keys, name=f"{name}.collect")
    registry.register_task(node, output, (parts,), name=name)
    dag = registry.build_dag(external_inputs=in_keys)
    engine = ExecutionEngine(broker, dag, **options)
    results = await engine.execute(dict(zip(in_keys, chunks, strict=True)))
    return results[output]


def _collect(*parts: Any) -> list[Any]:
    return list(parts)


def _awaitable_call(func: Any) -> Any:
    """A callable object with an `async def __call__` as its bound `__call__` (so the engine
    awaits it rather than running it in a thread); anything else as it is."""
    if (
        not inspect.isroutine(func)
        and not inspect.iscoroutinefunction(func)
        and inspect.iscoroutinefunction(type(func).__call__)
    ):
        return func.__call__
    return func


def _node_callable(func: Any) -> Any:
    """`func` in a form the engine calls with the item as the single positional argument.

    The engine binds by keyword when a callable takes **kwargs or has no readable signature (a
    builtin such as `max`); such a function is wrapped so the item is passed by position, not
    under its generated key. A callable object with an `async def __call__` becomes its bound
    `__call__`, so that it is awaited rather than run in a thread.
    """
    if hasattr(func, "kiq"):
        return func  # a taskiq task: the broker needs the task itself
    target = _awaitable_call(func)
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
