"""DataflowRegistry: tasks registered with their I/O keys, wired into a DAG by key names."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain, islice
from operator import eq
from typing import Any, overload

from ..task import RemoteTask, get_spec, infer_inputs, task_display_name
from .graph import DAG, DAGNode, node_fields
from .node import DataNode

TaskNode = DAGNode

_ROWS = (list, tuple)
_NODE_IN_MESSAGE = re.compile(r"\(node (\d+)\)")


class RegisteredTasks(Sequence[DAGNode]):
    """The nodes one `register_tasks` call registered, row by row: `nodes[i]` is row i's
    TaskNode (a view, made when it is read) and `nodes.ids` their node ids: a `range` when
    every row added a node, so a million rows cost no Python object per row."""

    __slots__ = ("_dag", "ids")

    def __init__(self, dag: DAG, ids: Sequence[int]) -> None:
        self._dag = dag
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> DAGNode: ...
    @overload
    def __getitem__(self, index: slice) -> RegisteredTasks: ...
    def __getitem__(self, index: int | slice) -> DAGNode | RegisteredTasks:
        if isinstance(index, slice):
            return RegisteredTasks(self._dag, self.ids[index])
        return self._dag.view(self.ids[index])

    def __iter__(self) -> Iterator[DAGNode]:
        return map(self._dag.view, self.ids)

    def __repr__(self) -> str:
        ids = self.ids
        shown = f"{ids.start}..{ids.stop - 1}" if isinstance(ids, range) and ids else list(ids)
        return f"<RegisteredTasks {len(ids)} rows, node ids {shown}>"


class DataflowRegistry:
    """Collects tasks and their data keys; `build_dag()` validates and returns the DAG.

    External inputs are the keys given at run time (`execute(inputs=...)`), and which keys
    they are never depends on the order tasks were registered in:

    - declare none, and every consumed key that no task produces is one (taskiq-flow's
      "automatic external inputs"): the run requires each, naming the task and the key when
      one is not given;
    - declare them (`register_external_input`, or `build_dag(external_inputs=...)`), and they
      are the whole list: `build_dag()` reports any other unproduced input, naming the task
      and the key (taskiq-flow's registry example 3).

    `strict_inputs=True` reports unproduced undeclared inputs even when none is declared;
    `strict_inputs=False` keeps them automatic even when some are.

    Tasks are registered one at a time (`register_task`) or a column of rows at a time
    (`register_tasks`, for generated DAGs of millions of tasks); both follow the same rules.
    """

    def __init__(self, *, strict_inputs: bool | None = None) -> None:
        self.strict_inputs = strict_inputs
        self._declared_external: dict[str, None] = {}
        self._new_dag()

    def _new_dag(self) -> None:
        self._new_columns([], [], [], [], [])
        # task -> (node, outputs, inputs) of its last registration: registering it again with
        # the same keys updates that node instead of adding a duplicate producer (the keys are
        # kept here so that the check, made on every registration, costs no call)
        self._last_by_task: dict[Any, tuple[DAGNode, Sequence[str], Sequence[str]]] = {}
        self._plain_names: dict[Any, str] = {}
        # node ids [start, stop) added by each register_tasks call, row r being node start + r:
        # build_dag names the row of a bad key the Rust build reports by node id
        self._batches: list[range] = []

    def _new_columns(
        self,
        tasks: list[Any],
        names: list[str],
        inputs: list[Sequence[str]],
        outputs: list[Sequence[str]],
        metadata: list[dict[str, Any] | None],
    ) -> None:
        # The registry's DAG is made over lists the registry keeps (`DAG.from_columns` takes its
        # columns, not copies), so that `register_tasks` extends them in place with one
        # list.extend per column instead of an `append_node` call per row.
        self._tasks, self._names, self._inputs = tasks, names, inputs
        self._outputs, self._metadata = outputs, metadata
        dag = self._dag = DAG.from_columns(tasks, names, inputs, outputs, metadata)
        self._owns_columns = (
            dag.tasks is tasks
            and dag.task_names is names
            and dag.node_inputs is inputs
            and dag.node_outputs is outputs
            and dag.node_metadata is metadata
        )

    # -- registration -------------------------------------------------------------------------

    def register_task(
        self,
        task: Any,
        output: str | None = None,
        inputs: Sequence[str] | None = None,
        *,
        outputs: Sequence[str] | None = None,
        name: str | None = None,
        **metadata: Any,
    ) -> TaskNode:
        """Register `task` as producing `output` (or `outputs`) from `inputs`.

        Missing arguments come from the task's `pipeline_task` spec, then from its signature.
        Registering the same task again with the same keys only updates its metadata.
        A string names a task implemented in another service (a `RemoteTask`: give its
        `inputs`, its output(s), and `stream=True` when it is an async generator).
        """
        # A plain task (no pipeline_task spec) seen before has its name here; a string never
        # has (it is a RemoteTask's name), nor has an unhashable task (TypeError, as before).
        plain = self._plain_names.get(task)
        if plain is None and not isinstance(task, str) and get_spec(task) is None:
            plain = self._plain_names[task] = task_display_name(task)
        if (
            plain is not None
            and type(output) is str
            and type(inputs) in _ROWS
            and outputs is None
            and not metadata
        ):
            # Fast path for generated DAGs: no spec to merge, keys given explicitly.
            ins: Sequence[str] = tuple(inputs)  # type: ignore[arg-type]
            outs: Sequence[str] = (output,)
            name = name or plain
            meta = None
        else:
            if isinstance(task, str):
                task = _remote(task, output, inputs, outputs, metadata)
            fields = node_fields(task, output, outputs, inputs, metadata, name)
            ins, outs, name, meta = fields.inputs, fields.outputs, fields.name, fields.metadata
            if not outs:
                raise ValueError(
                    f"task {name!r} declares no output: pass output='key' (or outputs=[...]) "
                    "to register_task or to @pipeline_task"
                )
        previous = self._last_by_task.get(task)
        if previous is not None and previous[1] == outs and previous[2] == ins:
            if meta:
                self._dag.update_metadata(previous[0].id, meta)
            return previous[0]
        node = self._dag.append_node(task, name, ins, outs, meta)
        self._last_by_task[task] = (node, outs, ins)
        return node

    def register_tasks(
        self,
        tasks: Any,
        outputs: Sequence[str | Sequence[str] | None] | None = None,
        inputs: Sequence[Sequence[str] | None] | None = None,
        *,
        names: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    ) -> RegisteredTasks:
        """Register many tasks at once: row i is `register_task(task_i, outputs[i], inputs[i],
        name=names[i], **metadata[i])`, with the same rules, in a few C-level list operations
        instead of a Python call per row (a generated DAG of a million tasks).

        - `tasks`: one task for every row, or a list / tuple with one per row (a string is a
          `RemoteTask` name, as for `register_task`: made per row from that row's keys);
        - `outputs`: per row, a key or a list of keys (None: from the task's spec);
        - `inputs`: per row, a list or tuple of keys; None (for all rows, or a row): from the
          task's spec, then its signature;
        - `names`: None (each task's display name), one name for all rows, or one per row;
        - `metadata`: one mapping for all rows (one dict, shared by the rows of a task: copy
          it before writing to one node's), or one mapping or None per row.

        Input rows are stored as tuples: a tuple as it is, a list copied into one (rows as
        tuples of shared key objects are the fastest). The columns must have the same length;
        a bad row raises before anything is registered, naming the row and its task. The keys
        inside input rows are read, and checked to be strings, by `build_dag()` (the Rust
        build reads every key anyway), which names the task, node and row. As with
        `register_task`: a task registered again with the same keys as its previous
        registration (the row before, for one task) updates that node instead of adding one;
        an output two rows produce is reported by `build_dag()`. Returns the rows' nodes
        (`.ids` is a `range` when each row added one).
        """
        n, single = _row_count(tasks, outputs, inputs, names, metadata)
        columns = None if n == 0 else _fast_columns(tasks, outputs, inputs, names, metadata, n)
        if columns is None:
            columns = _row_columns(tasks, outputs, inputs, names, metadata, n)
        return self._commit(*columns, single=single)

    def _commit(
        self,
        tasks: list[Any],
        names: list[str],
        inputs: list[Sequence[str]],
        outputs: list[Sequence[str]],
        metadata: list[dict[str, Any] | None],
        *,
        single: bool,
    ) -> RegisteredTasks:
        """Add the rows (checked) to the DAG: in bulk unless a row re-registers a task."""
        dag, n, last = self._dag, len(tasks), self._last_by_task
        start = len(dag)
        if n == 0:
            return RegisteredTasks(dag, range(start, start))
        single = single or tasks.count(tasks[0]) == n
        if single:
            firsts = {tasks[0]: 0}
            # one task: row r re-registers it when its keys equal row r - 1's
            again = any(map(eq, islice(outputs, 1, None), outputs)) and any(
                map(_same_row, islice(outputs, 1, None), outputs, islice(inputs, 1, None), inputs)
            )
        else:
            firsts = dict(zip(reversed(tasks), range(n - 1, -1, -1), strict=True))
            # several tasks: a re-registration needs an output key listed twice
            keys = sum(map(len, outputs))
            again = len(set(_flat(outputs))) != keys
        if not again and last:
            for row in firsts.values():
                previous = last.get(tasks[row])
                if (
                    previous is not None
                    and previous[1] == outputs[row]
                    and previous[2] == inputs[row]
                ):
                    again = True
                    break
        if again or not self._owns_columns:
            # row by row, exactly as register_task would
            ids: list[int] = []
            append, update = dag.append_node, dag.update_metadata
            for task, name, ins, outs, meta in zip(
                tasks, names, inputs, outputs, metadata, strict=True
            ):
                previous = last.get(task)
                if previous is not None and previous[1] == outs and previous[2] == ins:
                    if meta:
                        update(previous[0].id, meta)
                    ids.append(previous[0].id)
                    continue
                node = append(task, name, ins, outs, meta)
                last[task] = (node, outs, ins)
                ids.append(node.id)
            return RegisteredTasks(dag, ids)
        if start == 0:
            # An empty registry (no node, so no view of its DAG): a DAG over these columns.
            self._new_columns(tasks, names, inputs, outputs, metadata)
            dag = self._dag
        else:
            # The first row through append_node (which also drops the DAG's built graph), the
            # rest appended to the columns the DAG was made over.
            dag.append_node(tasks[0], names[0], inputs[0], outputs[0], metadata[0])
            self._tasks.extend(islice(tasks, 1, None))
            self._names.extend(islice(names, 1, None))
            self._inputs.extend(islice(inputs, 1, None))
            self._outputs.extend(islice(outputs, 1, None))
            self._metadata.extend(islice(metadata, 1, None))
        ids_range = range(start, start + n)
        self._batches.append(ids_range)
        lasts = range(n - 1, n) if single else dict(zip(tasks, range(n), strict=True)).values()
        for row in lasts:
            last[tasks[row]] = (dag.view(start + row), outputs[row], inputs[row])
        return RegisteredTasks(dag, ids_range)

    def clear(self) -> None:
        """Forget every task and declared external input (`strict_inputs` stays)."""
        self._declared_external.clear()
        self._new_dag()

    def register_external_input(self, input_name: str) -> None:
        """Declare a key that is supplied at run time rather than produced by a task."""
        if not isinstance(input_name, str):
            raise TypeError(f"an input name must be a string, got {input_name!r}")
        self._declared_external[input_name] = None

    # -- queries ------------------------------------------------------------------------------

    def get_tasks(self) -> list[TaskNode]:
        """Every registered task, as nodes (`.task`, `.task_name`, `.inputs`, `.outputs`)."""
        return list(self._dag.nodes)

    def get_outputs(self) -> list[str]:
        """Every output key, in registration order."""
        return self._dag.output_keys

    def get_external_inputs(self) -> list[str]:
        """Declared external inputs, then every other consumed key that no task produces."""
        keys = dict(self._declared_external)
        keys.update(dict.fromkeys(self._dag.external_inputs))
        return list(keys)

    @property
    def declared_external(self) -> list[str]:
        """The keys declared with `register_external_input`, in declaration order."""
        return list(self._declared_external)

    @property
    def data_nodes(self) -> dict[str, DataNode]:
        """Every data key (produced, consumed or declared) as a DataNode: its producer's task,
        its consumers' tasks, and whether it is external (given at run time)."""
        dag = self._dag
        nodes: dict[str, DataNode] = {}
        for task, outs in zip(dag.tasks, dag.node_outputs, strict=True):
            for key in outs:
                nodes[key] = DataNode(key, producer_task=task)
        for task, ins in zip(dag.tasks, dag.node_inputs, strict=True):
            for key in ins:
                node = nodes.get(key)
                if node is None:
                    node = nodes[key] = DataNode(key, is_external=True)
                node.add_consumer(task)
        for key in self._declared_external:
            nodes.setdefault(key, DataNode(key, is_external=True))
        return nodes

    def get_producer(self, output_key: str) -> TaskNode | None:
        node_id = self._dag.graph.producer(output_key)
        return None if node_id is None else self._dag.view(node_id)

    def get_consumers(self, input_key: str) -> list[TaskNode]:
        return self._dag.views(self._dag.graph.consumers(input_key))

    def _node_id(self, task: Any) -> int:
        dag = self._dag
        if isinstance(task, DAGNode) and task.dag is dag:
            return task.id
        ids = dag.ids_named(task) if isinstance(task, str) else dag.ids_of_task(task)
        if not ids:
            raise KeyError(f"task {_name_of(task)!r} is not registered")
        ins, outs = dag.node_inputs, dag.node_outputs
        if len(ids) > 1 and len({(ins[i], outs[i]) for i in ids}) > 1:
            raise ValueError(
                f"task {_name_of(task)!r} is registered {len(ids)} times with different keys; "
                "pass the TaskNode returned by register_task instead"
            )
        return ids[0]

    def get_data_dependencies(self, task: Any) -> list[str]:
        """The input keys of a task (a task object, its name, or its TaskNode)."""
        return list(self._dag.node_inputs[self._node_id(task)])

    def get_task_metadata(self, task: Any) -> dict[str, Any]:
        """`output`, `outputs`, `inputs` and any metadata given at registration."""
        node_id, dag = self._node_id(task), self._dag
        outs = dag.node_outputs[node_id]
        return {
            "output": outs[0] if len(outs) == 1 else None,
            "outputs": list(outs),
            "inputs": list(dag.node_inputs[node_id]),
            "task_name": dag.task_names[node_id],
            **(dag.node_metadata[node_id] or {}),
        }

    def __len__(self) -> int:
        return len(self._dag)

    def __contains__(self, task: object) -> bool:
        """Whether `task` (a task object, or a TaskNode of this registry) is registered."""
        if isinstance(task, DAGNode):
            return task.dag is self._dag
        try:
            return bool(self._dag.ids_of_task(task))
        except TypeError:  # unhashable: never registered
            return False

    def __repr__(self) -> str:
        return (
            f"<DataflowRegistry tasks={len(self._dag)}, "
            f"external_inputs={len(self.get_external_inputs())}>"
        )

    # -- building -----------------------------------------------------------------------------

    def build_dag(
        self, external_inputs: Sequence[str] | None = None, *, strict_inputs: bool | None = None
    ) -> DAG:
        """Wire producers to consumers, validate, and return the DAG.

        `external_inputs` adds to the declared external inputs; `strict_inputs` overrides the
        registry's (see the class for both). Raises DAGValidationError (a ValueError) listing
        every problem: an output two tasks produce, a cycle as a path, and once external inputs
        are declared, an input no task produces and nobody declared, naming the task and key.
        """
        external = list(self._declared_external)
        if external_inputs is not None:
            if isinstance(external_inputs, str):
                raise TypeError(
                    f"external_inputs must be a list of keys, not the string {external_inputs!r}"
                )
            external.extend(external_inputs)
        strict = self.strict_inputs if strict_inputs is None else strict_inputs
        if strict is None:
            strict = bool(external)
        dag = self._dag.copy(external=external, strict_inputs=strict)
        try:
            dag.validate()
        except TypeError as exc:
            raise self._with_row(exc) from None
        return dag

    def _with_row(self, exc: TypeError) -> TypeError:
        """A bad key the Rust build found, named by node id: add the register_tasks row."""
        found = _NODE_IN_MESSAGE.search(str(exc))
        node = -1 if found is None else int(found.group(1))
        for batch in self._batches:
            if node in batch:
                return TypeError(
                    f"{exc} (row {node - batch.start} of the register_tasks call that "
                    f"registered nodes {batch.start} to {batch.stop - 1})"
                )
        return exc


def _remote(
    name: str,
    output: str | None,
    inputs: Sequence[str] | None,
    outputs: Sequence[str] | None,
    metadata: dict[str, Any],
) -> RemoteTask:
    if inputs is None:
        raise TypeError(
            f"remote task {name!r}: pass inputs=[...] to register_task (its signature is in "
            "another service; inputs=[] when it takes none)"
        )
    return RemoteTask(name, inputs, output, outputs=outputs, stream=metadata.pop("stream", False))


def _name_of(task: Any) -> str:
    return task if isinstance(task, str) else task_display_name(task)


# -- register_tasks: its columns, checked -----------------------------------------------------

Columns = tuple[
    list[Any], list[str], list[Sequence[str]], list[Sequence[str]], list[dict[str, Any] | None]
]


def _same_row(outs: Any, outs_before: Any, ins: Any, ins_before: Any) -> bool:
    return bool(outs == outs_before and ins == ins_before)


def _flat(rows: list[Sequence[str]]) -> Iterator[str]:
    return chain.from_iterable(rows)


def _row_count(
    tasks: Any, outputs: Any, inputs: Any, names: Any, metadata: Any
) -> tuple[int, bool]:
    """The number of rows (every column the same length) and whether one task is for all."""
    single = not isinstance(tasks, _ROWS)
    lengths: dict[str, int] = {}
    for label, column, one in (
        ("tasks", None if single else tasks, False),
        ("outputs", outputs, False),
        ("inputs", inputs, False),
        ("names", names, isinstance(names, str)),
        ("metadata", metadata, isinstance(metadata, Mapping)),
    ):
        if column is None or one:
            continue
        if isinstance(column, str) or not isinstance(column, Sequence):
            what = f"the string {column!r}" if isinstance(column, str) else type(column).__name__
            raise TypeError(
                f"register_tasks: {label} must be a list with one entry per row, got {what}"
                + (" (for one task, use register_task)" if label in ("outputs", "inputs") else "")
            )
        lengths[label] = len(column)
    if not lengths:
        raise TypeError(
            "register_tasks: give the rows' outputs=[...] (and inputs=[...]), or a list of "
            "tasks: one entry per row"
        )
    if len(set(lengths.values())) > 1:
        given = ", ".join(f"{label} {length:,}" for label, length in lengths.items())
        raise ValueError(
            f"register_tasks: the columns differ in length ({given}); give one entry per row "
            "in each"
        )
    return next(iter(lengths.values())), single


def _fast_columns(
    tasks: Any, outputs: Any, inputs: Any, names: Any, metadata: Any, n: int
) -> Columns | None:
    """The columns, made by C-level list operations (a pass over each column, none per row),
    or None when some row needs a look of its own: a remote task, outputs from a spec, an
    unusual type or a bad row (`_row_columns` then takes each row, naming a bad one)."""
    if outputs is None:
        return None
    single = not isinstance(tasks, _ROWS)
    distinct = [tasks] if single else list(dict(zip(map(id, tasks), tasks, strict=True)).values())
    # per distinct task (a generated DAG runs a few): name, spec metadata, spec inputs
    display: dict[int, str] = {}
    spec_meta: dict[int, dict[str, Any] | None] = {}
    spec_ins: dict[int, Sequence[str]] = {}
    for task in distinct:
        if isinstance(task, str) or getattr(type(task), "__hash__", None) is None:
            return None
        spec = get_spec(task)
        key = id(task)
        display[key] = task_display_name(task)
        spec_meta[key] = dict(spec.metadata) if spec is not None and spec.metadata else None
        if inputs is None:
            if spec is not None and spec.inputs is not None:
                spec_ins[key] = spec.inputs
            else:
                try:
                    spec_ins[key] = infer_inputs(task)
                except TypeError:
                    return None

    def per_task(values: dict[int, Any]) -> list[Any]:
        if single:
            return [values[id(tasks)]] * n
        return list(map(values.__getitem__, map(id, tasks)))

    # outputs: a key per row (the usual case: one zip makes the 1-tuples), or lists of keys
    types = set(map(type, outputs))
    if types == {str}:
        outs: list[Sequence[str]] = list(zip(outputs, strict=True))
    elif types <= {str, list, tuple}:
        outs = []
        for out in outputs:
            if type(out) is str:
                outs.append((out,))
                continue
            row = tuple(out)
            if not row or len(set(row)) != len(row) or set(map(type, row)) != {str}:
                return None
            outs.append(row)
    else:
        return None
    # inputs: tuples are taken as they are, lists made tuples (no row can change later)
    if inputs is None:
        ins: list[Sequence[str]] = per_task(spec_ins)
    else:
        types = set(map(type, inputs))
        if types == {tuple}:
            ins = list(inputs)
        elif types <= {list, tuple}:
            ins = list(map(tuple, inputs))
        else:
            return None
    if names is None or names == "":
        name_col = per_task(display)
    elif isinstance(names, str):
        name_col = [names] * n
    elif set(map(type, names)) == {str} and "" not in names:
        name_col = list(names)
    else:
        return None
    if metadata is None or isinstance(metadata, Mapping):
        given = dict(metadata or {})
        merged = {key: {**(meta or {}), **given} or None for key, meta in spec_meta.items()}
        meta_col = per_task(merged)
    elif set(map(type, metadata)) <= {dict, type(None)} and not any(spec_meta.values()):
        meta_col = [dict(meta) if meta else None for meta in metadata]
    else:
        return None
    return list(tasks) if not single else [tasks] * n, name_col, ins, outs, meta_col


def _row_columns(
    tasks: Any, outputs: Any, inputs: Any, names: Any, metadata: Any, n: int
) -> Columns:
    """The columns made row by row, as `register_task` makes each node's fields; a bad row
    raises before anything is registered, naming the row and its task."""
    single = not isinstance(tasks, _ROWS)
    one_name = names is None or isinstance(names, str)
    one_meta = metadata is None or isinstance(metadata, Mapping)
    columns: Columns = ([], [], [], [], [])
    task_col, name_col, ins_col, outs_col, meta_col = columns
    for row in range(n):
        task = tasks if single else tasks[row]
        out = None if outputs is None else outputs[row]
        ins: Any = None if inputs is None else inputs[row]
        name = names if one_name else names[row]
        given = metadata if one_meta else metadata[row]
        try:
            where = f"task {_name_of(task)!r}" if isinstance(task, str) or _hashable(task) else ""
            if not where:
                raise TypeError(f"a task must be hashable, got {type(task).__name__} {task!r}")
            if given is not None and not isinstance(given, Mapping):
                raise TypeError(f"{where}: metadata must be a mapping or None, got {given!r}")
            meta = dict(given or {})
            if out is not None and not isinstance(out, (str, Sequence)):
                raise TypeError(f"{where}: an output must be a key or a list of keys, got {out!r}")
            if ins is not None and not hasattr(ins, "__iter__"):
                raise TypeError(f"{where}: inputs must be a list of keys, got {ins!r}")
            if name is not None and not isinstance(name, str):
                raise TypeError(f"{where}: a task name must be a string, got {name!r}")
            output, outs = (out, None) if out is None or isinstance(out, str) else (None, out)
            if isinstance(task, str):
                task = _remote(task, output, ins, outs, meta)
            fields = node_fields(task, output, outs, ins, meta, name)
            if not fields.outputs:
                raise ValueError(
                    f"task {fields.name!r} declares no output: give the row an output key "
                    "(or the task a @pipeline_task output)"
                )
        except (TypeError, ValueError) as exc:
            if type(exc) not in (TypeError, ValueError):
                raise
            raise type(exc)(f"register_tasks row {row}: {exc}") from None
        task_col.append(task)
        name_col.append(fields.name)
        ins_col.append(fields.inputs)
        outs_col.append(fields.outputs)
        meta_col.append(fields.metadata or None)
    return columns


def _hashable(task: Any) -> bool:
    try:
        hash(task)
    except TypeError:
        return False
    return True
