"""The runtime of a map node: a sub-flow run once per item of a list known only at run time.

`Flow.map` compiles the sub-flow into a `Template`; its `MapTask` is one in-process task of the
outer DAG that, once the list exists, builds one DAG with a copy of the template per item and
runs it on a nested engine with the outer run's broker, transport kind and options. With a run
store the nested run is recorded under an id derived from the outer run's, so restarting the
outer run does not run the items that completed again.

This module knows nothing of the Flow DSL (it takes a compiled template), so it can be replaced
on its own: by tasks that add tasks to their own run once DAGs grow while they run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..dataflow.dag import DAG
from ..events import EventBus
from ..execution_engine import ExecutionEngine, current_run
from ..store import nested_run_id, resumable
from ..task import TaskSpec

if TYPE_CHECKING:
    from ..execution_engine import _Current
    from ..store import RunStore

# -- the settings of the run a map node belongs to --------------------------------------------


class _Outer(NamedTuple):
    broker: Any
    options: dict[str, Any]  # engine options the nested runs inherit


def _outer_of(engine: ExecutionEngine | None) -> _Outer:
    """The broker and settings a map's nested runs inherit from the run the map is part of."""
    if engine is None:
        return _Outer(None, {"transport": "local"})
    return _Outer(engine.broker, engine.inherited_settings())


# -- map nodes --------------------------------------------------------------------------------


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
    """The task of a map node: builds one DAG with a copy of the sub-flow per item and runs it
    on a nested engine (same broker, transport kind and options as the run it belongs to)."""

    def __init__(
        self,
        name: str,
        template: Template,
        outputs: tuple[str, ...],
        events: EventBus,
        max_parallel: int | None,
    ) -> None:
        self.name = name
        # its node's name in the DAG it runs in (differs from `name` for a map inside a mapped
        # sub-flow, see _dag): names its nested run in a run store
        self.node_name = name
        self.events = events
        self.max_parallel = max_parallel
        self.template = template
        # one task for the engine: in its own process on NATS; no retry or timeout of the
        # whole map (its items' tasks have theirs)
        self.__dataflow__ = TaskSpec(
            outputs=outputs, inputs=None, name=name, retries=0, timeout=math.inf, local=True
        )

    def __repr__(self) -> str:
        return f"<map {self.name}>"

    def _as_node(self, node_name: str) -> MapTask:
        task = copy.copy(self)
        task.node_name = node_name
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
        current = current_run()
        store = None if current is None else current.engine.store
        dag, inputs, sinks = self._dag(len(values), values, store is not None)
        outer = _outer_of(None if current is None else current.engine)
        options = dict(outer.options)
        if self.max_parallel is not None:
            options["max_parallel"] = self.max_parallel
        assert self.events is not None
        if store is None:
            engine = ExecutionEngine(outer.broker, dag, **options)
            engine.events = self.events
            produced = await engine.execute(inputs)
        else:
            assert current is not None
            produced = await self._run_stored(dag, inputs, outer.broker, options, store, current)
        results = [produced[k] for k in sinks]
        return dict(zip(keys, results, strict=True)) if keys is not None else results

    async def _run_stored(
        self,
        dag: DAG,
        inputs: dict[str, Any],
        broker: Any,
        options: dict[str, Any],
        store: RunStore,
        outer: _Current,
    ) -> dict[str, Any]:
        """Run the items as a nested run recorded in `store`, continuing the stored one when
        the outer run is a restart and the items are the same."""
        engine = ExecutionEngine(broker, dag, store=store, **options)
        # the nested engine keeps its own bus, which the store records: the map node's bus is
        # shared by every run of the node. Its listeners still get every item's events.
        events = self.events
        assert events is not None
        engine.events.subscribe(lambda event: events.emit(event) if events else None)
        run_id = nested_run_id(outer.run_id, self.node_name)
        restore = resumable(store, dag, run_id, inputs) if outer.restarting else None
        if restore is None:
            # a fresh run under an id the store may know from an earlier one (other items,
            # or a run started again under its id): its old rows must not be restored later
            store.discard(run_id)
        return await engine._run(
            inputs, run_id, None, restore, parent=outer.run_id, restarting=restore is not None
        )

    def _dag(
        self, n: int, items: list[Any], stored: bool = False
    ) -> tuple[DAG, dict[str, Any], list[str]]:
        t = self.template
        prefixes = [f"{self.name}[{i}]." for i in range(n)]
        tasks: list[Any] = []
        names: list[str] = []
        inputs: list[Sequence[str]] = []  # the DAG's columns, handed over as they are
        outputs: list[Sequence[str]] = []
        metadata: list[dict[str, Any] | None] = []
        for task, name, ins, outs, meta in zip(
            t.tasks, t.names, t.inputs, t.outputs, t.metadata, strict=True
        ):
            if stored and isinstance(task, MapTask):
                # a map inside the mapped sub-flow names its nested run after its own node:
                # one copy per item, or every item's inner map would share one stored run
                tasks += [task._as_node(p + name) for p in prefixes]
            else:
                tasks += [task] * n
            names += [p + name for p in prefixes]
            inputs += _prefixed(prefixes, ins)
            outputs += _prefixed(prefixes, outs)
            metadata += [meta] * n
        sources = [p + t.source for p in prefixes]
        dag = DAG.from_columns(tasks, names, inputs, outputs, metadata, sources, True)
        return dag, dict(zip(sources, items, strict=True)), [p + t.sink for p in prefixes]


def map_event_buses(dag: DAG) -> list[EventBus]:
    """The event buses of the map nodes in `dag`, and of the maps inside their sub-flows.

    A map node runs its items as nested runs that report to the node's bus, not to the outer
    engine's: a progress display subscribes to these too, so that a map over 50,000 items counts
    50,000 items' tasks rather than one node."""
    buses: dict[int, EventBus] = {}
    pending = dag.distinct_tasks()
    while pending:
        task = pending.pop()
        events = task.events if isinstance(task, MapTask) else None
        if events is not None and id(events) not in buses:
            buses[id(events)] = events
            pending += task.template.tasks
    return list(buses.values())


def _prefixed(prefixes: list[str], keys: Sequence[str]) -> list[tuple[str, ...]]:
    if not keys:
        return [()] * len(prefixes)
    if len(keys) == 1:
        key = keys[0]
        return [(p + key,) for p in prefixes]
    return [tuple([p + k for k in keys]) for p in prefixes]
