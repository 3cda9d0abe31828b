"""Dependency injection for task parameters that are not data keys (taskiq-dependencies).

A parameter whose default is `Depends(...)` (or taskiq's `TaskiqDepends(...)`) is resolved like a
FastAPI dependency, including taskiq's `Context` and `TaskiqState` when a broker is known. Tasks
without such parameters are returned unchanged: the hot path pays nothing.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
from typing import Any

from taskiq_dependencies import DependencyGraph, Depends

__all__ = ["Depends", "has_dependencies", "with_dependencies"]

_wrapped: dict[tuple[int, int], Any] = {}


def has_dependencies(func: Any) -> bool:
    """A parameter defaults to Depends(...) or is annotated `Annotated[T, Depends(...)]`."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(_is_dependency(p.default) for p in params):
        return True
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:
        return False
    return any(any(map(_is_dependency, getattr(h, "__metadata__", ()))) for h in hints.values())


def _is_dependency(default: Any) -> bool:
    return type(default).__name__ == "Dependency" and hasattr(default, "dependency")


def with_dependencies(func: Any, broker: Any = None) -> Any:
    """`func`, or an async wrapper that resolves its Depends(...) parameters per call."""
    key = (id(func), id(broker))
    cached = _wrapped.get(key)
    if cached is not None:
        return cached
    if not has_dependencies(func):
        _wrapped[key] = func
        return func
    graph = DependencyGraph(func)
    is_async = inspect.iscoroutinefunction(func)
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def produce(*args: Any, **kwargs: Any) -> Any:
            async with graph.async_ctx(_initial_values(broker, func, args, kwargs)) as ctx:
                resolved = await ctx.resolve_kwargs()
            resolved.update(kwargs)
            async for item in func(*args, **resolved):
                yield item

        _wrapped[key] = produce
        return produce

    @functools.wraps(func)
    async def call(*args: Any, **kwargs: Any) -> Any:
        async with graph.async_ctx(_initial_values(broker, func, args, kwargs)) as ctx:
            resolved = await ctx.resolve_kwargs()
        resolved.update(kwargs)
        if not is_async:
            # a blocking task keeps running off the event loop, as it would without Depends
            call = functools.partial(func, *args, **resolved)
            return await asyncio.get_running_loop().run_in_executor(None, call)
        return await func(*args, **resolved)

    _wrapped[key] = call
    return call


def _initial_values(broker: Any, func: Any, args: Any, kwargs: Any) -> dict[Any, Any]:
    """What taskiq's own receiver provides to dependencies: the Context and the broker state."""
    if broker is None:
        return {}
    from taskiq import Context, TaskiqMessage, TaskiqState

    message = TaskiqMessage(
        task_id="dataflow",
        task_name=getattr(func, "__name__", "task"),
        labels={},
        args=list(args),
        kwargs=dict(kwargs),
    )
    return {Context: Context(message, broker), TaskiqState: broker.state}
