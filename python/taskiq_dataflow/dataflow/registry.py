"""DataflowRegistry: tasks registered with their I/O keys, wired into a DAG by key names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..task import RemoteTask, get_spec, task_display_name
from .graph import DAG, DAGNode, node_fields
from .node import DataNode

TaskNode = DAGNode


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
    """

    def __init__(self, *, strict_inputs: bool | None = None) -> None:
        self.strict_inputs = strict_inputs
        self._dag = DAG()
        self._declared_external: dict[str, None] = {}
        # task -> (node, outputs, inputs) of its last registration: registering it again with
        # the same keys updates that node instead of adding a duplicate producer (the keys are
        # kept here so that the check, made on every registration, costs no call)
        self._last_by_task: dict[Any, tuple[DAGNode, Sequence[str], Sequence[str]]] = {}
        self._plain_names: dict[Any, str] = {}

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
        if isinstance(task, str):
            task = _remote(task, output, inputs, outputs, metadata)
        dag = self._dag
        plain = self._plain_names.get(task)  # its name, when the task has no pipeline_task spec
        if plain is None and get_spec(task) is None:
            plain = self._plain_names[task] = task_display_name(task)
        if (
            plain is not None
            and type(output) is str
            and inputs is not None
            and type(inputs) in (list, tuple)
            and outputs is None
            and not metadata
        ):
            # Fast path for generated DAGs: no spec to merge, keys given explicitly.
            ins: Sequence[str] = tuple(inputs)
            outs: Sequence[str] = (output,)
            name = name or plain
            meta = None
        else:
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
                dag.update_metadata(previous[0].id, meta)
            return previous[0]
        node = dag.append_node(task, name, ins, outs, meta)
        self._last_by_task[task] = (node, outs, ins)
        return node

    def clear(self) -> None:
        """Forget every task and declared external input (`strict_inputs` stays)."""
        self._dag = DAG()
        self._declared_external.clear()
        self._last_by_task.clear()
        self._plain_names.clear()

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
        dag.validate()
        return dag


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
