"""How a flow node's task receives its inputs once `>>` has renamed them.

The engine passes values by keyword when every input key is a parameter name, else by position
in key order. Wiring renames keys, so a node's task may need its keys reordered or an adapter
that passes the values under the names the task was written for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .._run import all_names, params_of, positional_params
from ..dependencies import has_dependencies
from ..errors import FlowError
from ..task import InEngine, TaskSpec, get_spec, original_function, task_display_name
from ..transports.local import _is_async


def bind(
    node_name: str, task: Any, orig: tuple[str, ...], keys: list[str], positional: bool
) -> tuple[Any, tuple[str, ...]]:
    """The task object and input keys (in argument order) with which the engine's binding rule
    gives each value to the parameter that `orig` (the node's original input names) names.
    `positional`: every key will be prefixed later (map copies), so values go by position."""
    func = original_function(task)
    params = params_of(func)

    def by_keyword(names: Sequence[str]) -> bool:
        return params.issuperset(names) if params is not None else all_names(names)

    plain = not hasattr(task, "kiq")
    adapter: tuple[str, ...] | None = None  # the names an adapter passes values under
    ordered = tuple(keys)
    if not positional and by_keyword(keys):
        # the engine passes each value under its key: right only if the keys are the names
        if ordered != orig:
            adapter = orig if by_keyword(orig) else ()
    elif by_keyword(orig):
        # the task took its inputs by keyword and now gets them by position: parameter order
        first = positional_params(func)[: len(orig)]
        if len(set(orig)) == len(orig) and set(first) == set(orig):
            ordered = tuple(keys[orig.index(p)] for p in first)
        else:
            adapter = orig
    # else: the task took its inputs by position, in this order, and still does
    if adapter is not None:
        if not plain:
            raise FlowError(
                f"node '{node_name}': taskiq task '{task_display_name(task)}' must receive its "
                f"inputs {list(orig)} by position once they are wired to keys {keys}, but they are "
                "not its first positional parameters; reorder its parameters, or wire by name "
                "(give the upstream node output='<parameter name>')"
            )
        if has_dependencies(func):
            raise FlowError(
                f"node '{node_name}': function '{task_display_name(task)}' takes Depends(...) "
                f"parameters and its inputs {list(orig)} cannot be passed by position; make "
                "them its first positional parameters"
            )
        func = adapt(func, adapter)
        ordered = tuple(keys)
    if not plain:
        return task, ordered
    spec = get_spec(task)
    if spec is None:
        spec = TaskSpec(outputs=(), inputs=None, name=task_display_name(task), local=True)
    elif not spec.local:
        spec = dataclasses.replace(spec, local=True)
    return InEngine(func, spec), ordered


def adapt(func: Any, names: tuple[str, ...]) -> Any:
    """`func` taking its inputs by position: as keywords `names` (or positionally if empty)."""
    if _is_async(func):

        async def call_async(*args: Any) -> Any:
            if names:
                return await func(**dict(zip(names, args, strict=True)))
            return await func(*args)

        return call_async

    def call(*args: Any) -> Any:
        if names:
            return func(**dict(zip(names, args, strict=True)))
        return func(*args)

    return call
