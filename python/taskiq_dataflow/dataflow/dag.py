"""DAG and DAGNode: task columns in Python, the graph itself in Rust (`_core.Graph`).

A DAG stores one entry per task in parallel lists (task, name, inputs, outputs, metadata) and
builds its Rust graph lazily, in one call, the first time a structural question is asked. Node
objects are views (dag, id) made on access, so a million-task DAG holds no per-node Python object.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence, Set
from typing import TYPE_CHECKING, Any, TextIO

from .. import _core
from ..errors import CycleError, DAGValidationError, format_cycle
from ..task import check_keys, get_spec, infer_inputs, outputs_of, task_display_name

if TYPE_CHECKING:
    from .registry import DataflowRegistry


class DAGNode:
    """A task in a DAG with its I/O keys.

    Made by users (`DAGNode(task=f, output="x", inputs=["a"])`, then `dag.add_node(node)`) or handed
    out by a DAG as a view of its node `id`. Two views of the same node compare equal.
    """

    __slots__ = ("_dag", "_id", "_own")

    def __init__(
        self,
        task: Any = None,
        output: str | None = None,
        inputs: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        outputs: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        self._dag: DAG | None = None
        self._id = -1
        self._own = _node_fields(task, output, outputs, inputs, metadata, name)

    @classmethod
    def _view(cls, dag: DAG, node_id: int) -> DAGNode:
        node = cls.__new__(cls)
        node._dag = dag
        node._id = node_id
        node._own = None
        return node

    def _field(self, column: str) -> Any:
        if self._dag is None:
            return self._own[column]
        return getattr(self._dag, column)[self._id]

    @property
    def id(self) -> int:
        """Position in its DAG (insertion order); -1 before it is added to one."""
        return self._id

    @property
    def task(self) -> Any:
        return self._field("_tasks")

    @property
    def task_name(self) -> str:
        return self._field("_names")

    @property
    def outputs(self) -> list[str]:
        return list(self._field("_outputs"))

    @property
    def output(self) -> str | None:
        """The output key of a single-output task (the first key of a multi-output one)."""
        outputs = self._field("_outputs")
        return outputs[0] if outputs else None

    @property
    def inputs(self) -> list[str]:
        return list(self._field("_inputs"))

    @property
    def metadata(self) -> dict[str, Any]:
        if self._dag is None:
            return self._own["_metadata"]
        meta = self._dag._metadata[self._id]
        if meta is None:
            meta = self._dag._metadata[self._id] = {}
        return meta

    @property
    def dag(self) -> DAG | None:
        return self._dag

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DAGNode):
            return NotImplemented
        if self._dag is None or other._dag is None:
            return self is other
        return self._dag is other._dag and self._id == other._id

    def __hash__(self) -> int:
        if self._dag is None:
            return object.__hash__(self)
        return hash((id(self._dag), self._id))

    def __repr__(self) -> str:
        outs = ", ".join(self._field("_outputs"))
        return f"DAGNode({self.task_name!r}, id={self._id}, inputs={self.inputs}, outputs=[{outs}])"


def _node_fields(
    task: Any,
    output: str | None,
    outputs: Sequence[str] | None,
    inputs: Sequence[str] | None,
    metadata: dict[str, Any] | None,
    name: str | None,
) -> dict[str, Any]:
    """A task's keys: explicit arguments, else its `pipeline_task` spec, else its signature."""
    spec = get_spec(task) if task is not None else None
    display = name or (task_display_name(task) if task is not None else "<task>")
    where = f"task {display!r}"
    if output is not None or outputs is not None:
        outs = outputs_of(output, outputs, where)
    else:
        outs = spec.outputs if spec is not None else ()
    if inputs is not None:
        ins = check_keys(inputs, where)
    elif spec is not None and spec.inputs is not None:
        ins = spec.inputs
    else:
        ins = infer_inputs(task) if task is not None else ()
    meta = dict(spec.metadata) if spec is not None and spec.metadata else {}
    if metadata:
        meta.update(metadata)
    return {
        "_tasks": task,
        "_names": display,
        "_inputs": ins,
        "_outputs": outs,
        "_metadata": meta,
    }


class _NodeList(Sequence[DAGNode]):
    """`dag.nodes`: a sequence of views, made as they are read."""

    __slots__ = ("_dag",)

    def __init__(self, dag: DAG) -> None:
        self._dag = dag

    def __len__(self) -> int:
        return len(self._dag._tasks)

    def __getitem__(self, index: Any) -> Any:
        n = len(self)
        if isinstance(index, slice):
            return [DAGNode._view(self._dag, i) for i in range(*index.indices(n))]
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"node index {index} out of range for a DAG of {n} nodes")
        return DAGNode._view(self._dag, index)

    def __iter__(self) -> Iterator[DAGNode]:
        dag = self._dag
        return (DAGNode._view(dag, i) for i in range(len(dag._tasks)))

    def __contains__(self, node: object) -> bool:
        return isinstance(node, DAGNode) and node._dag is self._dag

    def __repr__(self) -> str:
        return f"<{len(self)} nodes of {self._dag!r}>"


class _EdgeSet(Set[tuple[DAGNode, DAGNode]]):
    """`dag.edges`: a set of (producer, consumer) views backed by the Rust graph."""

    __slots__ = ("_dag",)

    def __init__(self, dag: DAG) -> None:
        self._dag = dag

    def __len__(self) -> int:
        return self._dag.graph.edge_count

    def __iter__(self) -> Iterator[tuple[DAGNode, DAGNode]]:
        dag = self._dag
        for a, b in dag.graph.edges():
            yield DAGNode._view(dag, a), DAGNode._view(dag, b)

    def __contains__(self, edge: object) -> bool:
        if not (isinstance(edge, tuple) and len(edge) == 2):
            return False
        a, b = edge
        if not (isinstance(a, DAGNode) and isinstance(b, DAGNode)):
            return False
        if a._dag is not self._dag or b._dag is not self._dag:
            return False
        return self._dag.graph.has_edge(a._id, b._id)

    def __repr__(self) -> str:
        return f"<{len(self)} edges of {self._dag!r}>"


NodeRef = DAGNode | int | str | Any


class DAG:
    """A directed acyclic graph of tasks wired by data keys (plus any explicit edges)."""

    def __init__(self) -> None:
        self._tasks: list[Any] = []
        self._names: list[str] = []
        self._inputs: list[Sequence[str]] = []
        self._outputs: list[Sequence[str]] = []
        self._metadata: list[dict[str, Any] | None] = []
        self._edges: list[tuple[int, int]] = []
        self._external: list[str] = []
        self._strict_inputs = False
        self._graph: _core.Graph | None = None
        self._indexes: dict[str, tuple[int, dict[Any, list[int]]]] = {}

    @classmethod
    def _from_columns(
        cls,
        tasks: list[Any],
        names: list[str],
        inputs: list[Sequence[str]],
        outputs: list[Sequence[str]],
        metadata: list[dict[str, Any] | None],
        external: Iterable[str] = (),
        strict_inputs: bool = False,
    ) -> DAG:
        dag = cls()
        dag._tasks, dag._names, dag._inputs = tasks, names, inputs
        dag._outputs, dag._metadata = outputs, metadata
        dag._external = list(external)
        dag._strict_inputs = strict_inputs
        return dag

    # -- construction -------------------------------------------------------------------------

    def add_node(self, node: DAGNode) -> DAGNode:
        """Add a task node; returns the node, now bound to this DAG."""
        if not isinstance(node, DAGNode):
            raise TypeError(f"add_node expects a DAGNode, got {type(node).__name__}")
        if node._dag is self:
            return node
        if node._dag is not None:
            raise ValueError(f"node {node.task_name!r} already belongs to another DAG")
        own = node._own
        self._tasks.append(own["_tasks"])
        self._names.append(own["_names"])
        self._inputs.append(own["_inputs"])
        self._outputs.append(own["_outputs"])
        self._metadata.append(own["_metadata"] or None)
        node._dag, node._id, node._own = self, len(self._tasks) - 1, None
        self._graph = None
        return node

    def add_edge(self, from_task: NodeRef, to_task: NodeRef) -> None:
        """Add an explicit dependency: `to_task` runs after `from_task`."""
        self._edges.append((self._resolve(from_task), self._resolve(to_task)))
        self._graph = None

    def _resolve(self, ref: NodeRef) -> int:
        """A node id from a node, an id, a task name or a task object."""
        if isinstance(ref, DAGNode):
            if ref._dag is None:
                return self.add_node(ref)._id
            if ref._dag is not self:
                raise ValueError(f"node {ref.task_name!r} belongs to another DAG")
            return ref._id
        if isinstance(ref, int) and not isinstance(ref, bool):
            if not 0 <= ref < len(self._tasks):
                raise ValueError(f"no node with id {ref} (the DAG has {len(self._tasks)} nodes)")
            return ref
        matches = self._index("_names" if isinstance(ref, str) else "_tasks").get(ref)
        if not matches:
            raise ValueError(f"no node for {ref!r} in this DAG")
        if len(matches) > 1:
            raise ValueError(
                f"{ref!r} matches {len(matches)} nodes (ids {matches[:10]});"
                " pass the DAGNode instead"
            )
        return matches[0]

    def _index(self, column: str) -> dict[Any, list[int]]:
        """Name -> ids or task -> ids, built once per DAG shape."""
        cache = self._indexes.get(column)
        if cache is None or cache[0] != len(self._tasks):
            index: dict[Any, list[int]] = {}
            for i, item in enumerate(getattr(self, column)):
                index.setdefault(item, []).append(i)
            cache = self._indexes[column] = (len(self._tasks), index)
        return cache[1]

    # -- the Rust graph -----------------------------------------------------------------------

    @property
    def graph(self) -> _core.Graph:
        """The integer-id graph in Rust: ids are positions in `nodes`."""
        if self._graph is None:
            try:
                self._graph = _core.Graph(self._inputs, self._outputs, self._edges, self._external)
            except TypeError as exc:
                if len(exc.args) != 2 or not isinstance(exc.args[1], int):
                    raise
                node = exc.args[1]
                detail = exc.args[0].split(": ", 1)[-1]
                raise TypeError(f"task '{self._names[node]}' (node {node}): {detail}") from None
        return self._graph

    def validate(self) -> None:
        """Raise DAGValidationError listing every problem: missing inputs, duplicate outputs,
        cycles."""
        problems = self.graph.validate(self._strict_inputs)
        if not problems:
            return
        shared = {name for name, count in Counter(self._names).items() if count > 1}
        messages = [self._describe(p, shared) for p in problems]
        cycles = [p[1] for p in problems if p[0] == "cycle"]
        if cycles and len(problems) == len(cycles):
            raise CycleError([self._names[i] for i in cycles[0]], messages)
        raise DAGValidationError(messages)

    def _describe(self, problem: tuple[Any, ...], shared: set[str]) -> str:
        kind = problem[0]
        if kind == "missing_input":
            _, node, key = problem
            return (
                f"Task {self._label(node, shared)} requires input '{key}' but no task produces it "
                f"(if it is supplied at run time, declare it with register_external_input('{key}'))"
            )
        if kind == "duplicate_output":
            _, key, first, second = problem
            return (
                f"Output '{key}' is produced by two tasks: {self._label(first, shared)} and "
                f"{self._label(second, shared)}"
            )
        if kind == "cycle":
            return format_cycle([self._names[i] for i in problem[1]])
        _, a, b = problem
        return (
            f"Edge {a} -> {b} refers to a node that does not exist (the DAG has {len(self)} nodes)"
        )

    def _label(self, node_id: int, shared: set[str]) -> str:
        """The task's quoted name, with its first output when several tasks share the name."""
        name = self._names[node_id]
        if name in shared and self._outputs[node_id]:
            return f"'{name}' (output '{self._outputs[node_id][0]}')"
        return f"'{name}'"

    def _ids(self, call: Any) -> Any:
        try:
            return call()
        except _core.CycleError as exc:
            raise CycleError([self._names[i] for i in exc.args[1]]) from None

    def _views(self, ids: Iterable[int]) -> list[DAGNode]:
        view = DAGNode._view
        return [view(self, i) for i in ids]

    # -- queries ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def nodes(self) -> _NodeList:
        return _NodeList(self)

    @property
    def edges(self) -> _EdgeSet:
        return _EdgeSet(self)

    @property
    def roots(self) -> list[DAGNode]:
        return self._views(self.graph.roots())

    @property
    def leaves(self) -> list[DAGNode]:
        return self._views(self.graph.leaves())

    @property
    def levels(self) -> list[list[DAGNode]]:
        return self.get_parallel_levels()

    @property
    def external_inputs(self) -> list[str]:
        """Keys the DAG consumes that no task produces: they are given to `execute(inputs=...)`."""
        return self.graph.unproduced_inputs()

    @property
    def output_keys(self) -> list[str]:
        return self.graph.output_keys()

    def node(self, ref: NodeRef) -> DAGNode:
        """The node for an id, a task name, or a task object."""
        return DAGNode._view(self, self._resolve(ref))

    def topological_sort(self) -> list[DAGNode]:
        """Execution order; ties between independent tasks go in insertion order."""
        return self._views(self._ids(self.graph.topological_order))

    def get_parallel_levels(self) -> list[list[DAGNode]]:
        """Groups of tasks whose dependencies all lie in earlier groups."""
        return [self._views(level) for level in self._ids(self.graph.levels)]

    def get_ready_tasks(self, completed: Iterable[NodeRef]) -> list[DAGNode]:
        """Tasks not in `completed` whose dependencies are all in `completed`."""
        ids = [self._resolve(c) for c in completed]
        return self._views(self.graph.ready_given(ids))

    def predecessors(self, node: NodeRef) -> list[DAGNode]:
        return self._views(self.graph.predecessors(self._resolve(node)))

    def successors(self, node: NodeRef) -> list[DAGNode]:
        return self._views(self.graph.successors(self._resolve(node)))

    def ancestors(self, nodes: NodeRef | Iterable[NodeRef]) -> list[DAGNode]:
        return self._views(self.graph.ancestors(self._resolve_many(nodes)))

    def descendants(self, nodes: NodeRef | Iterable[NodeRef]) -> list[DAGNode]:
        return self._views(self.graph.descendants(self._resolve_many(nodes)))

    def _resolve_many(self, nodes: NodeRef | Iterable[NodeRef]) -> list[int]:
        if isinstance(nodes, (DAGNode, int, str)) or not isinstance(nodes, Iterable):
            return [self._resolve(nodes)]
        return [self._resolve(n) for n in nodes]

    def required_for(self, outputs: str | Iterable[str]) -> list[DAGNode]:
        """The tasks needed to produce `outputs`: their producers and everything upstream."""
        keys = [outputs] if isinstance(outputs, str) else list(outputs)
        try:
            return self._views(self.graph.required_for(keys))
        except KeyError as exc:
            raise KeyError(f"no task produces output {exc.args[0]!r}") from None

    def subgraph(self, outputs: str | Iterable[str]) -> DAG:
        """A new DAG with only the tasks needed to produce `outputs`."""
        ids = [n._id for n in self.required_for(outputs)]
        keep = set(ids)
        position = {old: new for new, old in enumerate(ids)}
        sub = DAG._from_columns(
            [self._tasks[i] for i in ids],
            [self._names[i] for i in ids],
            [self._inputs[i] for i in ids],
            [self._outputs[i] for i in ids],
            [self._metadata[i] for i in ids],
            self._external,
            self._strict_inputs,
        )
        sub._edges = [(position[a], position[b]) for a, b in self._edges if a in keep and b in keep]
        return sub

    def critical_path(
        self, weights: Sequence[float] | dict[str, float] | None = None
    ) -> tuple[float, list[DAGNode]]:
        """The heaviest dependency chain: (total weight, nodes). Weights default to 1 per task;
        a dict maps task names to weights (others count 1)."""
        if isinstance(weights, dict):
            weights = [float(weights.get(name, 1.0)) for name in self._names]
        total, path = self._ids(lambda: self.graph.critical_path(weights))
        return total, self._views(path)

    def print(self, file: TextIO | None = None, max_nodes: int = 200) -> None:
        """ASCII visualization to the console."""
        from ..visualization import DAGVisualizer

        print(DAGVisualizer.to_ascii(self, max_nodes=max_nodes), file=file or sys.stdout)

    def __repr__(self) -> str:
        return f"<DAG {len(self._tasks)} tasks>"


class DAGBuilder:
    """Programmatic DAG construction: `add_task(...)` calls or the chained `node(...).build()`."""

    def __init__(self) -> None:
        from .registry import DataflowRegistry

        self._registry = DataflowRegistry()

    def add_task(
        self,
        task: Any,
        output: str | None = None,
        inputs: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> DAGBuilder:
        self._registry.register_task(task, output=output, inputs=inputs, **kwargs)
        return self

    node = add_task

    @property
    def registry(self) -> DataflowRegistry:
        """The registry the builder fills (for inspection before `build()`)."""
        return self._registry

    def external_input(self, *keys: str) -> DAGBuilder:
        for key in keys:
            self._registry.register_external_input(key)
        return self

    def build(self) -> DAG:
        return self._registry.build_dag()
