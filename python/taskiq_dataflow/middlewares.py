"""What taskiq's receiver does around a task, done where the engine runs taskiq tasks itself (in
process, on cluster workers): the broker's middlewares and the arguments parsed by type hint.

For one call, in taskiq's order (taskiq/receiver/receiver.py): each middleware's `pre_execute`
(it may replace the message, hence the arguments); the arguments parsed against the function's
type hints with pydantic (taskiq's `parse_params`: "11" becomes 11 for an `int`); the call;
on failure each `on_error(message, result, exc)`, last middleware first; each
`post_execute(message, result)`, then each `post_save(message, result)`, last first. taskiq calls
`post_save` once its result backend stored the result; the engine keeps results itself, so here
it follows `post_execute` once the result is final.

Where taskiq's parser leaves a value it cannot parse as it is (and logs a warning), the task here
fails with a TaskArgumentError naming the task, the parameter, the value and the type: the task
would otherwise run on a value of the wrong type. A None is passed unparsed, as in taskiq.

Only taskiq tasks (made with `@broker.task`) get either, as under `taskiq worker`; a task with
no middleware hook and no parseable hint costs nothing per call.
"""

from __future__ import annotations

import inspect
import time
import typing
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import TaskArgumentError
from .streams import stream_params
from .task import get_spec, original_function

Call = Callable[..., Awaitable[Any]]
HOOKS = ("pre_execute", "post_execute", "on_error", "post_save")


class TaskHooks:
    """The middlewares and the argument parser of one taskiq task; `run(call, *args,
    **kwargs)` runs `call` (the task, or its blocking function sent to a thread) inside them."""

    __slots__ = ("_after", "_before", "_errors", "_parse", "_saved", "labels", "task_name")

    def parse(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments parsed to the task's type hints (as they are when it has none)."""
        return (args, kwargs) if self._parse is None else self._parse(args, kwargs)

    def __init__(self, task_name: str, labels: dict[str, Any], middlewares: list[Any],
                 parse: ArgumentParser | None) -> None:  # fmt: skip
        self.task_name = task_name
        self.labels = labels
        self._before = [m for m in middlewares if _overrides(m, "pre_execute")]
        # taskiq calls the after-hooks from the last middleware to the first
        self._errors = [m for m in reversed(middlewares) if _overrides(m, "on_error")]
        self._after = [m for m in reversed(middlewares) if _overrides(m, "post_execute")]
        self._saved = [m for m in reversed(middlewares) if _overrides(m, "post_save")]
        self._parse = parse

    @property
    def middlewares(self) -> bool:
        return bool(self._before or self._errors or self._after or self._saved)

    async def run(self, call: Call, /, *args: Any, **kwargs: Any) -> Any:
        if not self.middlewares:
            args, kwargs = self.parse(args, kwargs)
            return await call(*args, **kwargs)
        from taskiq import TaskiqMessage
        from taskiq.result import TaskiqResult

        message = TaskiqMessage(
            task_id=uuid.uuid4().hex, task_name=self.task_name, labels=dict(self.labels),
            args=list(args), kwargs=dict(kwargs),
        )  # fmt: skip
        for middleware in self._before:
            message = await _maybe(middleware.pre_execute(message))
        started = time.perf_counter()
        error: BaseException | None = None
        value = None
        try:
            call_args, call_kwargs = tuple(message.args), message.kwargs
            if self._parse is not None:
                call_args, call_kwargs = self._parse(call_args, call_kwargs)
            value = await call(*call_args, **call_kwargs)
        except BaseException as exc:  # taskiq's receiver reports every failure to on_error
            error = exc
        result: TaskiqResult[Any] = TaskiqResult(
            is_err=error is not None, log=None, return_value=value,
            execution_time=round(time.perf_counter() - started, 2), error=error,
            labels=message.labels,
        )  # fmt: skip
        if error is not None:
            for middleware in self._errors:
                await _maybe(middleware.on_error(message, result, error))
        for middleware in self._after:
            await _maybe(middleware.post_execute(message, result))
        for middleware in self._saved:
            await _maybe(middleware.post_save(message, result))
        if error is not None:
            raise error
        return value


def is_taskiq_task(task: Any) -> bool:
    """Whether `task` is a taskiq task, around whose calls hooks (middlewares, argument
    parsing) may run."""
    return isinstance(getattr(task, "task_name", None), str) and hasattr(task, "kiq")


def task_hooks(task: Any, broker: Any = None) -> TaskHooks | None:
    """The hooks of `task` (its own broker's middlewares, or `broker`'s: a cluster worker's),
    or None when it is no taskiq task or has nothing to run around its calls."""
    if not is_taskiq_task(task):
        return None
    task_name: str = task.task_name
    broker = broker if broker is not None else getattr(task, "broker", None)
    middlewares = list(getattr(broker, "middlewares", ()))
    # InMemoryBroker(cast_types=False) turns taskiq's parsing off: so it is here
    parsing = getattr(getattr(broker, "receiver", None), "validate_params", True)
    parse = ArgumentParser.of(task) if parsing else None
    hooks = TaskHooks(task_name, dict(getattr(task, "labels", {})), middlewares, parse)
    return hooks if hooks.middlewares or parse is not None else None


async def start_middlewares(broker: Any) -> None:
    """Each middleware's `startup()` (what `broker.startup()` runs for them)."""
    for middleware in getattr(broker, "middlewares", ()):
        if _overrides(middleware, "startup"):
            await _maybe(middleware.startup())


async def stop_middlewares(broker: Any) -> None:
    for middleware in getattr(broker, "middlewares", ()):
        if _overrides(middleware, "shutdown"):
            await _maybe(middleware.shutdown())


class ArgumentParser:
    """Each argument that has a type hint, parsed to it with pydantic (taskiq's parse_params);
    a value already of a plain class hint is passed as it is, without pydantic."""

    __slots__ = ("_by_name", "_positional", "task_name")

    def __init__(self, task_name: str, checks: list[tuple[str, Any, Any, bool]]) -> None:
        self.task_name = task_name
        # (name, hint, adapter, positional): in parameter order, so args[i] is _positional[i]
        self._positional = [c for c in checks if c[3]]
        self._by_name = {c[0]: c for c in checks}

    @staticmethod
    def of(task: Any) -> ArgumentParser | None:
        func = original_function(task)
        try:
            signature = inspect.signature(func)
            hints = typing.get_type_hints(func)
        except (TypeError, ValueError, NameError):
            return None  # taskiq parses nothing it cannot read the hints of either
        spec = get_spec(task)
        skipped = stream_params(func) | set(spec.streams if spec is not None else ())
        checks: list[tuple[str, Any, Any, bool]] = []
        positional = True
        for name, param in signature.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.KEYWORD_ONLY):
                positional = False
            hint = hints.get(name)
            if hint is None or hint is Any or name in skipped or param.kind in (
                param.VAR_POSITIONAL, param.VAR_KEYWORD
            ):  # fmt: skip
                if positional:
                    checks.append((name, None, None, True))  # still takes its slot in args
                continue
            checks.append((name, hint, _adapter(hint), positional))
        if all(c[2] is None for c in checks):
            return None
        name = task_name_of(task)
        return ArgumentParser(name, checks)

    def __call__(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        # copies only when a value changed: most arguments already are of their hint's type
        if args:
            parsed: list[Any] | None = None
            for i, (name, hint, adapter, _) in enumerate(self._positional[: len(args)]):
                if adapter is not None:
                    value = self._parse(name, hint, adapter, args[i])
                    if value is not args[i]:
                        parsed = parsed or list(args)
                        parsed[i] = value
            if parsed is not None:
                args = tuple(parsed)
        if kwargs:
            by_name = self._by_name
            changed: dict[str, Any] | None = None
            for key, value in kwargs.items():
                check = by_name.get(key)
                if check is not None and check[2] is not None:
                    new = self._parse(key, check[1], check[2], value)
                    if new is not value:
                        changed = changed or {}
                        changed[key] = new
            if changed:
                kwargs = {**kwargs, **changed}
        return args, kwargs

    def _parse(self, name: str, hint: Any, adapter: Any, value: Any) -> Any:
        if value is None or (type(hint) is type and type(value) is hint):
            return value
        try:
            return adapter.validate_python(value)
        except Exception as exc:  # pydantic's ValidationError, or what a validator raised
            detail = _first_error(exc)
            raise TaskArgumentError(
                f"Can't parse argument {name!r} for task {self.task_name!r}: {value!r} "
                f"({type(value).__name__}) is not a valid {_hint_name(hint)} ({detail})",
                task=self.task_name, parameter=name,
            ) from None  # fmt: skip


def task_name_of(task: Any) -> str:
    spec = get_spec(task)
    if spec is not None and spec.name:
        return spec.name
    return str(getattr(task, "task_name", getattr(task, "__name__", task)))


def _adapter(hint: Any) -> Any:
    """A pydantic TypeAdapter for `hint`, or None for a hint pydantic cannot build one for."""
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(hint)
    except Exception:  # PydanticSchemaGenerationError for an arbitrary class, among others
        return None  # taskiq's parse_obj_as fails on these too and keeps the value


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            found = errors()
        except Exception:
            found = None
        if found:
            return str(found[0].get("msg", exc))
    return str(exc)


def _hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else repr(hint).replace("typing.", "")


def _overrides(middleware: Any, hook: str) -> bool:
    from taskiq.abc.middleware import TaskiqMiddleware

    return getattr(type(middleware), hook, None) is not getattr(TaskiqMiddleware, hook)


async def _maybe(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
