"""The runtime of a map node: a sub-flow run once per item of a list known only at run time.

`Flow.map` compiles the sub-flow into a `Template`; its `MapTask` is one in-process task of the
outer DAG that, once the list exists, adds one copy of the template per item to its own run
(`add_tasks`, private to it), plus one task that collects the items' results, and returns
`result_of` that task's output. The items are tasks of the run like any other: they run on its
transport (the cluster's workers, for a cluster run), under its retries, timeouts, bound and
run store, and a failing item fails the run (or, with fail_fast=False, skips what depends on the
map) naming the item's task.

This module knows nothing of the Flow DSL (it takes a compiled template).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..dataflow.graph import NodeFields
from ..driver import relaxed_gc
from ..growth import NodeBatch, add_tasks, result_of
from ..task import InEngine, TaskSpec


class Template(NamedTuple):
    """A sub-flow compiled once (by the Flow that maps it): its tasks with unprefixed names and
    keys, every argument passed by position, and its single source input and sink output."""

    tasks: list[Any]
    names: list[str]
    inputs: list[Sequence[str]]
    outputs: list[Sequence[str]]
    metadata: list[dict[str, Any] | None]
    source: str
    sink: str


class MapTask:
    """The task of a map node: adds a copy of the sub-flow per item to the run it is part of."""

    def __init__(
        self, name: str, template: Template, outputs: tuple[str, ...], max_parallel: int | None
    ) -> None:
        # its node's name in the run: prefixes the names and keys of its items (a map inside a
        # mapped sub-flow is copied per item under that item's prefix, see _batch)
        self.name = name
        self.max_parallel = max_parallel
        self.template = template
        # one task for the engine, in the engine's process (it adds tasks to the run); no retry
        # or timeout of the whole map (its items' tasks have theirs)
        self.__dataflow__ = TaskSpec(
            outputs=outputs, inputs=None, name=name, retries=0, timeout=math.inf, local=True
        )

    def __repr__(self) -> str:
        return f"<map {self.name}>"

    def _renamed(self, name: str) -> MapTask:
        task = copy.copy(self)
        task.name = name
        return task

    async def __call__(self, items: Any) -> Any:
        if isinstance(items, Mapping):
            keys: list[Any] | None = list(items)
            values = list(items.values())
        elif isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise TypeError(
                f"map node '{self.name}' needs a list (or a dict) to map over, "
                f"got {type(items).__name__}"
            )
        else:
            keys, values = None, list(items)
        if not values:
            return {} if keys is not None else []
        # 100,000s of long-lived objects made at once: without this, every few thousand of them
        # a full collection walks all those made so far
        with relaxed_gc(len(values) * len(self.template.tasks)):
            batch, given, sinks = self._batch(values)
            result = f"{self.name}[*]"
            collect = InEngine(_Collect(keys))
            batch.append(NodeFields(collect, result, sinks, (result,), {}))
            add_tasks(batch, values=given, max_parallel=self.max_parallel, private=True)
        return result_of(result)

    def _batch(self, items: list[Any]) -> tuple[NodeBatch, dict[str, Any], list[str]]:
        """One copy of the template per item, a column at a time (maps of 100,000s of items):
        its tasks, each item's source key with the item as its value, and the sink keys."""
        t = self.template
        n = len(items)
        prefixes = [f"{self.name}[{i}]." for i in range(n)]
        batch = NodeBatch()
        for task, name, ins, outs, meta in zip(
            t.tasks, t.names, t.inputs, t.outputs, t.metadata, strict=True
        ):
            meta = meta or {}
            names = [p + name for p in prefixes]
            if isinstance(task, MapTask):
                tasks: Iterable[Any] = [task._renamed(node) for node in names]
            else:
                tasks = [task] * n
            batch.extend(
                map(NodeFields, tasks, names, _prefixed(prefixes, ins), _prefixed(prefixes, outs),
                    [meta] * n)
            )  # fmt: skip
        sources = [p + t.source for p in prefixes]
        return batch, dict(zip(sources, items, strict=True)), [p + t.sink for p in prefixes]


class _Collect:
    """The last task of a map: the items' results as a list, or a dict by the mapped keys."""

    __slots__ = ("keys",)

    def __init__(self, keys: list[Any] | None) -> None:
        self.keys = keys

    def __call__(self, *results: Any) -> Any:
        if self.keys is None:
            return list(results)
        return dict(zip(self.keys, results, strict=True))


def _prefixed(prefixes: list[str], keys: Sequence[str]) -> list[tuple[str, ...]]:
    if not keys:
        return [()] * len(prefixes)
    if len(keys) == 1:
        key = keys[0]
        return [(p + key,) for p in prefixes]
    return [tuple([p + k for k in keys]) for p in prefixes]
