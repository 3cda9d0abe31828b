"""DAG and DAGNode: task columns in Python, the graph itself in Rust (`_core.Graph`).

A DAG stores one entry per task in parallel lists (task, name, inputs, outputs, metadata) and
builds its Rust graph lazily, in one call, the first time a structural question is asked. Node
objects are views (dag, id) made on access, so a million-task DAG holds no per-node Python object;
queries (`topological_sort()`, `levels`, `roots`, `predecessors`...) return sequences of such views
over the Rust id arrays (`sequences.py`), not lists.

This is the bottom of the dataflow layer: it imports neither the registry nor the visualizer.
They, the store and the engine read a DAG through its column API (`task_names`, `node_inputs`,
`tasks`, ..., `from_columns`, `append_node`), never through its private attributes.
`taskiq_dataflow.dataflow.dag` is the documented module that re-exports it with `DAGBuilder`.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from typing import Any, NamedTuple, TextIO, TypeVar

from .. import _core
from ..errors import CycleError, DAGValidationError, DataflowError, format_cycle
from ..task import check_keys, get_spec, infer_inputs, outputs_of, task_display_name
from .sequences import LevelSequence, NodeSequence

_T = TypeVar("_T")
AsciiRenderer = Callable[["DAG", int], str]
# Set by `taskiq_dataflow.visualization` when it is imported (the package's __init__ does): the
# visualizer depends on the DAG, so the DAG must not import the visualizer back.
_ascii_renderer: AsciiRenderer | None = None


def set_ascii_renderer(render: AsciiRenderer) -> None:
    """Install what `DAG.print` draws with: `render(dag, max_nodes) -> text`."""
    global _ascii_renderer
    _ascii_renderer = render


class NodeFields(NamedTuple):
    """One task's entry in the DAG's columns, before it is added to a DAG."""

    task: Any
    name: str
    inputs: Sequence[str]
    outputs: Sequence[str]
    metadata: dict[str, Any]


def node_fields(
    task: Any,
    output: str | None = None,
    outputs: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    name: str | None = None,
) -> NodeFields:
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
    return NodeFields(task, display, ins, outs, meta)


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
        self._own: NodeFields | None = node_fields(task, output, outputs, inputs, metadata, name)

    @classmethod
    def _view(cls, dag: DAG, node_id: int) -> DAGNode:
        node = cls.__new__(cls)
        node._dag = dag
        node._id = node_id
        node._own = None
        return node

    def _fields(self) -> NodeFields:
        """The entry of a node not (yet) in a DAG; a view reads its DAG's columns instead."""
        assert self._own is not None, "a DAG's node view has no fields of its own"
        return self._own

    @property
    def id(self) -> int:
        """Position in its DAG (insertion order); -1 before it is added to one."""
        return self._id

    @property
    def task(self) -> Any:
        dag = self._dag
        return self._fields().task if dag is None else dag._tasks[self._id]

    @property
    def task_name(self) -> str:
        dag = self._dag
        return self._fields().name if dag is None else dag._names[self._id]

    @property
    def outputs(self) -> list[str]:
        return list(self._output_keys())

    @property
    def output(self) -> str | None:
        """The output key of a single-output task (the first key of a multi-output one)."""
        outputs = self._output_keys()
        return outputs[0] if outputs else None

    def _output_keys(self) -> Sequence[str]:
        dag = self._dag
        return self._fields().outputs if dag is None else dag._outputs[self._id]

    @property
    def inputs(self) -> list[str]:
        dag = self._dag
        return list(self._fields().inputs if dag is None else dag._inputs[self._id])

    @property
    def metadata(self) -> dict[str, Any]:
        dag = self._dag
        return self._fields().metadata if dag is None else dag.metadata_of(self._id)

    @property
    def dag(self) -> DAG | None:
        return self._dag

    @property
    def level(self) -> int:
        """The node's parallel level: 0 without dependencies, else one more than the deepest
        dependency's (0 for a node not in a DAG)."""
        dag = self._dag
        return 0 if dag is None else dag.level_of(self._id)

    @property
    def dependencies(self) -> Sequence[DAGNode]:
        """The nodes this one runs after (its predecessors): a NodeSequence, [] outside a DAG."""
        dag = self._dag
        return [] if dag is None else NodeSequence(dag, dag.graph.predecessors(self._id))

    @property
    def dependents(self) -> Sequence[DAGNode]:
        """The nodes that run after this one (its successors): a NodeSequence, [] outside a
        DAG."""
        dag = self._dag
        return [] if dag is None else NodeSequence(dag, dag.graph.successors(self._id))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DAGNode):
            # A node equals the task it runs, so `registry.get_producer(key) == task` and
            # `task in registry.get_consumers(key)` hold as taskiq-flow's examples write them.
            return other is self.task
        if self._dag is None or other._dag is None:
            return self is other
        return self._dag is other._dag and self._id == other._id

    def __hash__(self) -> int:
        # The task's hash, so that a node and its task, being equal, hash alike.
        try:
            return hash(self.task)
        except TypeError:  # an unhashable task is never in a set to be found by its node
            return object.__hash__(self) if self._dag is None else hash((id(self._dag), self._id))

    def __repr__(self) -> str:
        outs = ", ".join(self._output_keys())
        return f"DAGNode({self.task_name!r}, id={self._id}, inputs={self.inputs}, outputs=[{outs}])"


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
            return self._dag.views(range(*index.indices(n)))
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"node index {index} out of range for a DAG of {n} nodes")
        return DAGNode._view(self._dag, index)

    def __iter__(self) -> Iterator[DAGNode]:
        dag = self._dag
        return (DAGNode._view(dag, i) for i in range(len(dag._tasks)))

    def __contains__(self, node: object) -> bool:
        return isinstance(node, DAGNode) and node.dag is self._dag

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
        if a.dag is not self._dag or b.dag is not self._dag:
            return False
        return self._dag.graph.has_edge(a.id, b.id)

    def __repr__(self) -> str:
        return f"<{len(self)} edges of {self._dag!r}>"


NodeRef = DAGNode | int | str | Any
_new_object = object.__new__


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
        self._distinct: tuple[int, list[Any]] = (0, [])
        self._level_by_id: tuple[_core.Graph, list[int]] | None = None

    # -- columns: the package's own API over the DAG -------------------------------------------
    #
    # The registry, the visualizer, the store and the engine read a DAG through these, never
    # through its private attributes. Each column is one list with an entry per node id; they
    # are handed out as they are (read-only by type, not copied), so reading a column of a
    # million-node DAG costs nothing and a reader loops over plain lists, not node views.

    @classmethod
    def from_columns(
        cls,
        tasks: list[Any],
        names: list[str],
        inputs: list[Sequence[str]],
        outputs: list[Sequence[str]],
        metadata: list[dict[str, Any] | None],
        external: Iterable[str] = (),
        strict_inputs: bool = False,
    ) -> DAG:
        """A DAG over these columns (taken, not copied): entry i of each is node i.

        `external` are the keys given at run time; `strict_inputs` makes `validate()` report any
        other consumed key that no task produces. The graph is not validated here."""
        lengths = {len(tasks), len(names), len(inputs), len(outputs), len(metadata)}
        if len(lengths) > 1:
            raise DAGValidationError(
                [
                    f"DAG.from_columns: the columns differ in length (tasks {len(tasks)}, names "
                    f"{len(names)}, inputs {len(inputs)}, outputs {len(outputs)}, metadata "
                    f"{len(metadata)}); give one entry per node in each"
                ]
            )
        dag = cls()
        dag._tasks, dag._names, dag._inputs = tasks, names, inputs
        dag._outputs, dag._metadata = outputs, metadata
        dag._external = list(external)
        dag._strict_inputs = strict_inputs
        return dag

    # The name benches and the engine used before the column API existed.
    _from_columns = from_columns

    @property
    def tasks(self) -> Sequence[Any]:
        """The task object of each node (a task used by several nodes appears once per node)."""
        return self._tasks

    @property
    def task_names(self) -> Sequence[str]:
        """The display name of each node's task."""
        return self._names

    @property
    def node_inputs(self) -> Sequence[Sequence[str]]:
        """The input keys of each node."""
        return self._inputs

    @property
    def node_outputs(self) -> Sequence[Sequence[str]]:
        """The output keys of each node."""
        return self._outputs

    @property
    def node_metadata(self) -> Sequence[dict[str, Any] | None]:
        """The metadata of each node; None where a node has none (most nodes of a large DAG)."""
        return self._metadata

    @property
    def explicit_edges(self) -> Sequence[tuple[int, int]]:
        """The (from id, to id) dependencies added with `add_edge`, not those wired by keys."""
        return self._edges

    @property
    def declared_external(self) -> Sequence[str]:
        """The keys this DAG was built to take at run time (see `external_inputs` for all
        unproduced keys)."""
        return self._external

    @property
    def strict_inputs(self) -> bool:
        """Whether `validate()` reports a consumed key that no task produces and that is not
        declared external."""
        return self._strict_inputs

    def metadata_of(self, node_id: int) -> dict[str, Any]:
        """Node `node_id`'s metadata, made (empty) on first use so that writes to it stay."""
        meta = self._metadata[node_id]
        if meta is None:
            meta = self._metadata[node_id] = {}
        return meta

    def distinct_tasks(self) -> list[Any]:
        """Each task object once (by identity), in order of first use: a DAG of a million nodes
        often runs a few dozen tasks, so per-task lookups loop over these, not over nodes."""
        count, distinct = self._distinct
        if count != len(self._tasks):
            tasks = self._tasks
            # id -> task pairs deduped by dict() itself: all in C, no Python loop per node
            distinct = list(dict(zip(map(id, tasks), tasks, strict=True)).values())
            self._distinct = (len(self._tasks), distinct)
        return list(distinct)

    def ids_named(self, name: str) -> Sequence[int]:
        """The ids of the nodes whose task is named `name`, ascending (empty if none)."""
        return self._index("_names").get(name, ())

    def ids_of_task(self, task: Any) -> Sequence[int]:
        """The ids of the nodes that run `task` (the object itself), ascending (empty if none)."""
        return self._index("_tasks").get(task, ())

    def view(self, node_id: int) -> DAGNode:
        """The DAGNode view of node `node_id`."""
        # Made here rather than through DAGNode._view: registering a task returns one, and the
        # extra call was a tenth of the cost of a registration.
        node = _new_object(DAGNode)
        node._dag = self
        node._id = node_id
        node._own = None
        return node

    def node_id_of(self, value: object) -> int | None:
        """`value`'s id if it is a node of this DAG, -1 for a node of another DAG or of none
        (no view of this DAG equals it), None if it is not a DAGNode."""
        if not isinstance(value, DAGNode):
            return None
        return value._id if value._dag is self else -1

    def views(self, ids: Iterable[int]) -> list[DAGNode]:
        """DAGNode views of these ids, in their order."""
        return list(self.iter_views(ids))

    def iter_views(self, ids: Iterable[int]) -> Iterator[DAGNode]:
        """DAGNode views of these ids, made one at a time as the iterator is read."""
        # the view made inline: a third faster than map(self.view, ids)
        new = _new_object
        for i in ids:
            node = new(DAGNode)
            node._dag = self
            node._id = i
            node._own = None
            yield node

    def topological_ids(self) -> _core.NodeIds:
        """`topological_sort()` as node ids (a sequence of ints held in Rust, equal to the list
        of them; `.tolist()` makes one); a cycle raises CycleError naming its tasks."""
        return self._ids(self.graph.topological_order)

    def level_ids(self) -> _core.Levels:
        """`get_parallel_levels()` as node ids (a sequence of `_core.NodeIds`, one flat array in
        Rust, equal to the list of lists of ids); a cycle raises CycleError naming its tasks."""
        return self._ids(self.graph.levels)

    def level_of(self, node_id: int) -> int:
        """Node `node_id`'s parallel level (see `DAGNode.level`), the levels computed once per
        graph shape."""
        graph = self.graph
        cached = self._level_by_id
        if cached is None or cached[0] is not graph:
            cached = self._level_by_id = (graph, self.level_ids().level_by_node(len(self._tasks)))
        return cached[1][node_id]

    def append_node(
        self,
        task: Any,
        name: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        metadata: dict[str, Any] | None = None,
    ) -> DAGNode:
        """Add a node from keys already checked (see `node_fields`); returns its view."""
        node = _new_object(DAGNode)
        node._dag = self
        node._id = len(self._tasks)
        node._own = None
        self._tasks.append(task)
        self._names.append(name)
        self._inputs.append(inputs)
        self._outputs.append(outputs)
        self._metadata.append(metadata or None)
        self._graph = None
        return node

    def update_metadata(self, node_id: int, metadata: dict[str, Any]) -> None:
        """Merge `metadata` into node `node_id`'s (a copy: nodes may share one metadata dict)."""
        self._metadata[node_id] = {**(self._metadata[node_id] or {}), **metadata}

    def copy(
        self, *, external: Iterable[str] | None = None, strict_inputs: bool | None = None
    ) -> DAG:
        """A new DAG with the same nodes and explicit edges (new columns, same task objects),
        taking `external` and `strict_inputs` when given, else this DAG's."""
        dag = DAG.from_columns(
            list(self._tasks),
            list(self._names),
            list(self._inputs),
            list(self._outputs),
            list(self._metadata),
            self._external if external is None else external,
            self._strict_inputs if strict_inputs is None else strict_inputs,
        )
        dag._edges = list(self._edges)
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
        own = node._fields()
        node._id = self.append_node(own.task, own.name, own.inputs, own.outputs, own.metadata).id
        node._dag, node._own = self, None
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
        matches = self.ids_named(ref) if isinstance(ref, str) else self.ids_of_task(ref)
        if not matches:
            raise ValueError(f"no node for {ref!r} in this DAG")
        if len(matches) > 1:
            raise ValueError(
                f"{ref!r} matches {len(matches)} nodes (ids {list(matches[:10])});"
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

    def _ids(self, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except _core.CycleError as exc:
            raise CycleError([self._names[i] for i in exc.args[1]]) from None

    # The name the engine and the visualizer used before `views` was public.
    _views = views

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
    def roots(self) -> NodeSequence[DAGNode]:
        return NodeSequence(self, self.graph.roots())

    @property
    def leaves(self) -> NodeSequence[DAGNode]:
        return NodeSequence(self, self.graph.leaves())

    @property
    def levels(self) -> LevelSequence[DAGNode]:
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

    def compute_levels(self) -> LevelSequence[DAGNode]:
        """The parallel levels (also `dag.levels` and each node's `level`), computed now: a
        cycle raises CycleError naming its tasks. taskiq-flow needs this call before `levels`
        is read; here `levels` is always current, so the call is only a check."""
        return self.get_parallel_levels()

    def get_node_by_task(self, task: Any) -> DAGNode | None:
        """The node that runs `task` (the task object), or None when no node does.

        A task used by several nodes is ambiguous: ValueError naming it and the node ids."""
        if isinstance(task, DAGNode):
            task = task.task
        ids = self.ids_of_task(task)
        if not ids:
            return None
        if len(ids) > 1:
            raise ValueError(
                f"task {task_display_name(task)!r} runs in {len(ids)} nodes (ids "
                f"{list(ids[:10])}): use dag.nodes or dag.node(id) to pick one"
            )
        return self.view(ids[0])

    # The queries below return sequences of views made on access (sequences.py), backed by
    # the ids Rust computed: no list of a million views for a million-task DAG.

    def topological_sort(self) -> NodeSequence[DAGNode]:
        """Execution order; ties between independent tasks go in insertion order."""
        return NodeSequence(self, self.topological_ids(), whole=True)

    def get_parallel_levels(self) -> LevelSequence[DAGNode]:
        """Groups of tasks whose dependencies all lie in earlier groups."""
        return LevelSequence(self, self.level_ids())

    def get_ready_tasks(self, completed: Iterable[NodeRef]) -> NodeSequence[DAGNode]:
        """Tasks not in `completed` whose dependencies are all in `completed`."""
        ids = [self._resolve(c) for c in completed]
        return NodeSequence(self, self.graph.ready_given(ids))

    def predecessors(self, node: NodeRef) -> NodeSequence[DAGNode]:
        return NodeSequence(self, self.graph.predecessors(self._resolve(node)))

    def successors(self, node: NodeRef) -> NodeSequence[DAGNode]:
        return NodeSequence(self, self.graph.successors(self._resolve(node)))

    def ancestors(self, nodes: NodeRef | Iterable[NodeRef]) -> NodeSequence[DAGNode]:
        return NodeSequence(self, self.graph.ancestors(self._resolve_many(nodes)))

    def descendants(self, nodes: NodeRef | Iterable[NodeRef]) -> NodeSequence[DAGNode]:
        return NodeSequence(self, self.graph.descendants(self._resolve_many(nodes)))

    def _resolve_many(self, nodes: NodeRef | Iterable[NodeRef]) -> list[int]:
        if isinstance(nodes, (DAGNode, int, str)) or not isinstance(nodes, Iterable):
            return [self._resolve(nodes)]
        return [self._resolve(n) for n in nodes]

    def required_for(self, outputs: str | Iterable[str]) -> NodeSequence[DAGNode]:
        """The tasks needed to produce `outputs`: their producers and everything upstream."""
        keys = [outputs] if isinstance(outputs, str) else list(outputs)
        try:
            return NodeSequence(self, self.graph.required_for(keys))
        except KeyError as exc:
            raise KeyError(f"no task produces output {exc.args[0]!r}") from None

    def subgraph(self, outputs: str | Iterable[str]) -> DAG:
        """A new DAG with only the tasks needed to produce `outputs`."""
        ids = self.required_for(outputs).ids.tolist()
        keep = set(ids)
        position = {old: new for new, old in enumerate(ids)}
        sub = DAG.from_columns(
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
        return total, self.views(path)

    def print(self, file: TextIO | None = None, max_nodes: int = 200) -> None:
        """ASCII visualization to the console."""
        if _ascii_renderer is None:
            raise DataflowError(
                "DAG.print has no renderer: import taskiq_dataflow.visualization (importing "
                "taskiq_dataflow does) to install DAGVisualizer.to_ascii"
            )
        print(_ascii_renderer(self, max_nodes), file=file or sys.stdout)

    def __repr__(self) -> str:
        return f"<DAG {len(self._tasks)} tasks>"
