"""The `pipeline_task` decorator and the per-task spec it attaches."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, overload

from .errors import RemoteTaskError

# the decorated callable's own type (a function or a taskiq task), kept for type checkers
F = TypeVar("F", bound=Callable[..., Any])

SPEC_ATTR = "__dataflow__"

# Options of taskiq-flow's pipeline_task that have no meaning here: refused with what to use,
# rather than kept as metadata nobody reads.
_REFUSED = {
    "max_retry_time": "taskiq-dataflow has no bound on all retries together: bound each attempt "
    "with timeout= and their number with retries=",
}


@dataclass(frozen=True)
class TaskSpec:
    """What a task consumes and produces, and how it is run."""

    outputs: tuple[str, ...]
    inputs: tuple[str, ...] | None  # None: inferred from the function's parameters
    name: str | None = None
    retries: int | None = None
    retry_delay: float | None = None
    retry_backoff: float | None = None
    retry_jitter: float | None = None
    timeout: float | None = None
    pool: str | None = None
    compensate: Callable[..., Any] | None = None
    cache: bool = False
    local: bool = False  # always run in the engine's process, whatever the transport
    streams: tuple[str, ...] = ()  # input keys received as a Stream (as the producer yields)
    stream_buffer: int = 64
    min_ttl: float | timedelta | None = None  # seconds a cached result is always reused
    max_ttl: float | timedelta | None = None  # seconds after which it is never reused
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> str | None:
        return self.outputs[0] if len(self.outputs) == 1 else None


def outputs_of(output: str | None, outputs: Sequence[str] | None, where: str) -> tuple[str, ...]:
    if output is not None and outputs is not None:
        raise TypeError(f"{where}: give either output= or outputs=, not both")
    if output is not None:
        if not isinstance(output, str):
            raise TypeError(f"{where}: output must be a string, got {type(output).__name__}")
        return (output,)
    if outputs is None:
        return ()
    if isinstance(outputs, str):
        raise TypeError(f"{where}: outputs must be a list of strings; use output={outputs!r}")
    result = tuple(outputs)
    for key in result:
        if not isinstance(key, str):
            raise TypeError(f"{where}: output keys must be strings, got {key!r}")
    if len(set(result)) != len(result):
        raise ValueError(f"{where}: outputs list a key twice: {list(result)}")
    return result


@overload
def pipeline_task(
    func: F,
    *,
    output: str | None = ...,
    outputs: Sequence[str] | None = ...,
    inputs: Sequence[str] | None = ...,
    name: str | None = ...,
    retries: int | None = ...,
    retry_delay: float | None = ...,
    retry_backoff: float | None = ...,
    retry_jitter: float | None = ...,
    timeout: float | None = ...,
    pool: str | None = ...,
    compensate: Callable[..., Any] | None = ...,
    cache: bool = ...,
    min_ttl: float | timedelta | None = ...,
    max_ttl: float | timedelta | None = ...,
    local: bool = ...,
    streams: Sequence[str] = ...,
    stream_buffer: int = ...,
    **metadata: Any,
) -> F: ...


@overload
def pipeline_task(
    func: str | None = None,
    positional_inputs: Sequence[str] | None = None,
    *,
    output: str | None = ...,
    outputs: Sequence[str] | None = ...,
    inputs: Sequence[str] | None = ...,
    name: str | None = ...,
    retries: int | None = ...,
    retry_delay: float | None = ...,
    retry_backoff: float | None = ...,
    retry_jitter: float | None = ...,
    timeout: float | None = ...,
    pool: str | None = ...,
    compensate: Callable[..., Any] | None = ...,
    cache: bool = ...,
    min_ttl: float | timedelta | None = ...,
    max_ttl: float | timedelta | None = ...,
    local: bool = ...,
    streams: Sequence[str] = ...,
    stream_buffer: int = ...,
    **metadata: Any,
) -> Callable[[F], F]: ...


def pipeline_task(
    func: Any = None,
    positional_inputs: Sequence[str] | None = None,
    *,
    output: str | None = None,
    outputs: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    name: str | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    retry_backoff: float | None = None,
    retry_jitter: float | None = None,
    timeout: float | None = None,
    pool: str | None = None,
    compensate: Callable[..., Any] | None = None,
    cache: bool = False,
    min_ttl: float | timedelta | None = None,
    max_ttl: float | timedelta | None = None,
    local: bool = False,
    streams: Sequence[str] = (),
    stream_buffer: int = 64,
    **metadata: Any,
) -> Any:
    """Declare a task's output key(s) and input keys.

    Works under `@broker.task` (apply it first, i.e. below it) or on a plain function, bare
    (`@pipeline_task`) or called; as in taskiq-flow, the output and the inputs may be given
    positionally: `@pipeline_task("features", ["raw"])`.
    Inputs default to the names of the function's parameters that have no default value
    (never `self` or `cls`).
    `compensate(result)` undoes the task when a later failure fails the run; `cache=True`
    reuses results for the same inputs (always within `min_ttl` seconds, never after
    `max_ttl`, with a rising chance of refresh in between).
    """

    def decorate(target: F) -> F:
        where = f"pipeline_task on {_display_name(target)!r}"
        spec = TaskSpec(
            outputs=outputs_of(output, outputs, where),
            inputs=None if inputs is None else check_keys(inputs, where),
            name=name or _display_name(target),
            retries=retries,
            retry_delay=retry_delay,
            retry_backoff=retry_backoff,
            retry_jitter=retry_jitter,
            timeout=timeout,
            pool=pool,
            compensate=compensate,
            cache=cache,
            local=local,
            streams=tuple(streams),
            stream_buffer=stream_buffer,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            metadata=dict(metadata),
        )
        setattr(target, SPEC_ATTR, spec)
        _declared.add(target)
        return target

    for option in metadata.keys() & _REFUSED.keys():
        raise TypeError(f"pipeline_task: {option}= is not supported: {_REFUSED[option]}")
    if isinstance(func, str):
        if output is not None or outputs is not None:
            raise TypeError(
                f"pipeline_task({func!r}, ...): the output is given positionally and as "
                f"{'output=' if output is not None else 'outputs='}; give it once"
            )
        output, func = func, None
    if positional_inputs is not None:
        if func is not None or inputs is not None:
            raise TypeError(
                "pipeline_task: inputs given twice (positionally and as inputs=)"
                if inputs is not None
                else "pipeline_task: a second positional argument is the inputs list, "
                "after the output key: pipeline_task('key', ['input', ...])"
            )
        inputs = positional_inputs
    if func is not None:
        return decorate(func)
    return decorate


class _Declared:
    """Every target `pipeline_task` decorated in this process and still alive, in the order
    first decorated (what taskiq-flow's `get_task_by_output` and `get_all_pipeline_outputs`
    search). Weak references: declaring a task does not keep it alive."""

    def __init__(self) -> None:
        self._refs: dict[int, Callable[[], Any]] = {}

    def add(self, target: Any) -> None:
        key = id(target)
        if key in self._refs:
            return
        refs = self._refs

        def forget(_: object) -> None:
            refs.pop(key, None)

        try:
            self._refs[key] = weakref.ref(target, forget)
        except TypeError:  # not weakly referable (a callable object with __slots__): kept
            self._refs[key] = _Kept(target)

    def __iter__(self) -> Iterator[Any]:
        targets = [ref() for ref in list(self._refs.values())]
        return iter([t for t in targets if t is not None])


class _Kept:
    __slots__ = ("target",)

    def __init__(self, target: Any) -> None:
        self.target = target

    def __call__(self) -> Any:
        return self.target


_declared = _Declared()


def declared_tasks() -> list[Any]:
    """The targets `pipeline_task` decorated in this process and still alive, in that order."""
    return list(_declared)


def check_keys(keys: Sequence[str], where: str) -> tuple[str, ...]:
    if isinstance(keys, str):
        raise TypeError(f"{where}: inputs must be a list of strings, not the string {keys!r}")
    result = tuple(keys)
    for key in result:
        if not isinstance(key, str):
            raise TypeError(f"{where}: input keys must be strings, got {key!r}")
    return result


def get_spec(task: Any) -> TaskSpec | None:
    """The spec attached by `pipeline_task`, on the task or on the function a taskiq task wraps."""
    spec = getattr(task, SPEC_ATTR, None)
    if spec is None:
        spec = getattr(getattr(task, "original_func", None), SPEC_ATTR, None)
    return spec


class InEngine:
    """A plain function marked `local=True`: the NATS transport runs it in the engine's process,
    as it cannot travel to a worker (a plain function in a flow, a plain compensation).

    The engine calls `original_func` directly: no wrapper call at run time."""

    __slots__ = ("__dataflow__", "original_func")

    def __init__(self, func: Any, spec: TaskSpec | None = None) -> None:
        self.original_func = func
        self.__dataflow__ = spec or TaskSpec(
            outputs=(), inputs=None, name=_display_name(func), local=True
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.original_func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<in-process {self.__dataflow__.name}>"


def original_function(task: Any) -> Callable[..., Any]:
    """The plain callable behind a taskiq decorated task (or the task itself)."""
    func: Callable[..., Any] = getattr(task, "original_func", task)
    return func


def _display_name(task: Any) -> str:
    task_name = getattr(task, "task_name", None)
    if isinstance(task_name, str):
        # taskiq names tasks "module:function" and renames the wrapped function: keep the short part
        return task_name.rsplit(":", 1)[-1]
    return getattr(task, "__name__", None) or type(task).__name__


def task_display_name(task: Any) -> str:
    spec = get_spec(task)
    if spec is not None and spec.name:
        return spec.name
    return _display_name(task)


_RECEIVERS = ("self", "cls")


def infer_inputs(task: Any) -> tuple[str, ...]:
    """Parameter names without a default value: the keys the task must be given (`self` and
    `cls` are the method's receiver, never data)."""
    func = original_function(task)
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot infer the inputs of task {_display_name(task)!r} from its signature; "
            "pass inputs=[...]"
        ) from exc
    return tuple(
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.name not in _RECEIVERS
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


class RemoteTask:
    """A task implemented in another service, known here only by the name its workers register
    it under (`@broker.task(task_name=name)`), with its declared inputs and outputs.

    Nothing of it runs in this process: on the NATS cluster it goes only to workers that
    advertise `name`; anywhere else it fails with a RemoteTaskError. `stream=True` declares it
    an async generator: its output is a stream (consumers may read it as it is produced), and
    a worker whose implementation is not a generator fails it instead of hanging its readers.
    `register_task("svc:name", inputs=[...], output=...)` makes one from a string."""

    __slots__ = ("__dataflow__", "original_func", "task_name")

    def __init__(
        self,
        name: str,
        inputs: Sequence[str] = (),
        output: str | None = None,
        *,
        outputs: Sequence[str] | None = None,
        stream: bool = False,
        streams: Sequence[str] = (),
        stream_buffer: int = 64,
        pool: str | None = None,
        retries: int | None = None,
        retry_delay: float | None = None,
        retry_backoff: float | None = None,
        retry_jitter: float | None = None,
        timeout: float | None = None,
        compensate: Callable[..., Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a remote task's name must be a non-empty string, got {name!r}")
        where = f"remote task {name!r}"
        outs = outputs_of(output, outputs, where)
        if not outs:
            raise ValueError(f"{where} declares no output: pass output='key' (or outputs=[...])")
        if type(stream) is not bool:
            raise TypeError(f"{where}: stream must be True or False, got {stream!r}")
        self.task_name = name
        self.__dataflow__ = TaskSpec(
            outputs=outs,
            inputs=check_keys(inputs, where),
            name=name,
            retries=retries,
            retry_delay=retry_delay,
            retry_backoff=retry_backoff,
            retry_jitter=retry_jitter,
            timeout=timeout,
            pool=pool,
            compensate=compensate,
            streams=check_keys(streams, where),
            stream_buffer=stream_buffer,
        )
        self.original_func = _absent_producer(name) if stream else _absent_function(name)

    @property
    def stream(self) -> bool:
        """Whether its output is a stream (the remote implementation is an async generator)."""
        return inspect.isasyncgenfunction(self.original_func)

    def _key(self) -> tuple[Any, ...]:
        spec = self.__dataflow__
        return (self.task_name, spec.inputs, spec.outputs, self.stream, spec.streams, spec.pool)

    def __eq__(self, other: object) -> bool:
        # the same reference registered twice is one task (no duplicate producer)
        return type(other) is RemoteTask and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.original_func(*args, **kwargs)

    def __repr__(self) -> str:
        kind = "stream " if self.stream else ""
        return f"<remote {kind}task {self.task_name}>"


def _no_implementation(name: str) -> RemoteTaskError:
    return RemoteTaskError(
        f"task {name!r} is a remote task: it has no local implementation in this process; "
        "run it on the NATS cluster (ExecutionEngine(DataflowNatsBroker(...), dag)) with "
        "workers whose module registers it as @broker.task(task_name=" + repr(name) + ")"
    )


def _absent_function(name: str) -> Callable[..., Any]:
    async def remote(**inputs: Any) -> Any:
        raise _no_implementation(name)

    remote.__qualname__ = remote.__name__ = name
    return remote


def _absent_producer(name: str) -> Callable[..., Any]:
    async def remote(**inputs: Any) -> Any:
        raise _no_implementation(name)
        yield  # an async generator: the engine wires its output as a stream

    remote.__qualname__ = remote.__name__ = name
    return remote


# -- how a node's input keys bind to its task's parameters ---------------------------------------


def params_of(func: Any) -> frozenset[str] | None:
    """Parameter names that keys bind to by keyword; None when the callable takes **kwargs.

    A node whose input keys are not all parameter names (or, for **kwargs, not all Python
    names) gets its values positionally, in the order of its declared inputs; so does a
    callable whose signature cannot be read (builtins).
    """
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(
        name
        for name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def positional_params(func: Any) -> list[str]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]


def all_names(keys: Sequence[str]) -> bool:
    return all(k.isidentifier() for k in keys)
