"""The Flow DSL: nodes wired with `>>`, sub-flows called inline or mapped, and the expansion of
a whole flow into ONE DAG for the Rust scheduler (see the package docstring for an example).

A call node inlines the sub-flow's tasks (names and keys prefixed with the call's name); a map
node is one task of the DAG whose runtime lives in `map_node`, given the sub-flow compiled once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ..dataflow.dag import DAG
from ..errors import CycleError, FlowError
from ..execution_engine import ExecutionEngine
from ..pipeline import check_engine_options
from ..task import get_spec, infer_inputs, task_display_name
from .binding import bind
from .map_node import MapTask, Template

# -- nodes ------------------------------------------------------------------------------------


class _Port(NamedTuple):
    """`node["key"]`: one input (right of `>>`) or one output (left of `>>`) of a node."""

    node: FlowNode
    key: str

    def __rshift__(self, other: Any) -> Any:
        return self.node.flow._wire(self, other)


class FlowNode:
    """A node of a Flow: a task, a call of a sub-flow, or a map of a sub-flow over a list.

    `a >> b` wires a's single output into b's single unbound input and returns b; `a["key"]`
    picks one output (on the left of `>>`) or one input (on the right) by name.
    """

    __slots__ = (
        "_inputs",
        "_orig",
        "_wired",
        "flow",
        "kind",
        "max_parallel",
        "name",
        "outputs",
        "sub",
        "task",
    )

    def __init__(
        self,
        flow: Flow,
        name: str,
        kind: str,
        task: Any,
        sub: Flow | None,
        inputs: Sequence[str],
        outputs: Sequence[str],
        max_parallel: int | None = None,
    ) -> None:
        self.flow, self.name, self.kind = flow, name, kind
        self.task, self.sub = task, sub
        self._orig = tuple(inputs)  # the names the task (or the sub-flow's source) expects
        self._inputs = list(inputs)  # the keys it consumes: renamed by `>>`
        self._wired: set[int] = set()
        self.outputs = tuple(outputs)
        self.max_parallel = max_parallel

    @property
    def inputs(self) -> list[str]:
        """The keys the node consumes (after wiring)."""
        return list(self._inputs)

    @property
    def output(self) -> str:
        """The output key (the first one of a multi-output task)."""
        return self.outputs[0]

    def __getitem__(self, key: str) -> _Port:
        if not isinstance(key, str):
            raise TypeError(f"node '{self.name}': pick a port by key name, got {key!r}")
        return _Port(self, key)

    def __rshift__(self, other: Any) -> Any:
        return self.flow._wire(self, other)

    def __repr__(self) -> str:
        return (
            f"FlowNode({self.name!r}, kind={self.kind!r}, inputs={self._inputs}, "
            f"outputs={list(self.outputs)})"
        )


# -- flows ------------------------------------------------------------------------------------


class Flow:
    """A graph of tasks, sub-flow calls and maps, wired by key names and `>>`.

    `flow.node(fn_or_task_or_flow, name=None, output=None)` and `flow.map(sub_flow, ...)` add
    nodes; `flow.build_dag()` expands everything into one DAG; `await flow.run(inputs)` runs it.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"a flow name must be a string, got {name!r}")
        self.name = name or "flow"
        self._nodes: list[FlowNode] = []
        self._by_name: dict[str, FlowNode] = {}
        self._producers: dict[str, FlowNode] = {}

    # -- adding nodes ---------------------------------------------------------------------------

    def node(
        self, target: Any, name: str | None = None, output: str | Sequence[str] | None = None
    ) -> FlowNode:
        """Add a task (a function or a taskiq task), or a call of a sub-flow when `target` is a
        Flow: the call's input is the sub-flow's source input, its output the sub-flow's sink."""
        if isinstance(target, Flow):
            return self._add_sub(target, "call", name, output, None)
        if isinstance(target, (FlowNode, _Port)):
            owner = target.node if isinstance(target, _Port) else target
            raise FlowError(
                f"flow '{self.name}': {owner!r} is already a node of flow '{owner.flow.name}'; "
                "add its task, not the node"
            )
        if not callable(target):
            raise TypeError(
                f"flow '{self.name}': node() takes a function, a taskiq task or a Flow, "
                f"got {type(target).__name__}"
            )
        spec = get_spec(target)
        inputs = spec.inputs if spec is not None and spec.inputs is not None else None
        if inputs is None:
            inputs = infer_inputs(target)
        name = self._unique_name(name, task_display_name(target))
        declared = spec.outputs if spec is not None else ()
        if output is None:
            outputs = declared or (name,)
        elif isinstance(output, str):
            if len(declared) > 1:
                raise FlowError(
                    f"node '{name}': its task declares outputs {list(declared)}; "
                    f"output={output!r} cannot rename several keys (give a list of "
                    f"{len(declared)} keys)"
                )
            outputs = (output,)
        else:
            outputs = tuple(output)
            if declared and len(outputs) != len(declared):
                raise FlowError(
                    f"node '{name}': output={list(outputs)} renames {len(outputs)} keys but its "
                    f"task declares {len(declared)}: {list(declared)}"
                )
        return self._add(FlowNode(self, name, "task", target, None, inputs, outputs))

    def map(
        self,
        sub_flow: Flow,
        name: str | None = None,
        max_parallel: int | None = None,
        output: str | None = None,
    ) -> FlowNode:
        """Run `sub_flow` on each element of an upstream list (or each value of a dict, keeping
        its keys); the output is the list (dict) of the sub-flow's sink values, in order.

        Unwired, the node's input is an external input named like the sub-flow's source.
        `max_parallel` bounds the sub-flow tasks in flight (default: the run's max_parallel).
        """
        if not isinstance(sub_flow, Flow):
            raise TypeError(
                f"flow '{self.name}': map() takes a Flow, got {type(sub_flow).__name__} "
                "(wrap a single task in a Flow, or use MapReduce.map)"
            )
        if max_parallel is not None and (
            isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1
        ):
            raise ValueError(
                f"flow '{self.name}': max_parallel must be a positive integer, got {max_parallel!r}"
            )
        return self._add_sub(sub_flow, "map", name, output, max_parallel)

    def _add_sub(
        self,
        sub: Flow,
        kind: str,
        name: str | None,
        output: Any,
        max_parallel: int | None,
    ) -> FlowNode:
        what = "call" if kind == "call" else "map"
        if sub is self or self in sub._flows_inside():
            raise FlowError(f"flow '{self.name}' cannot {what} itself (through '{sub.name}')")
        source, _ = sub._ends(what)
        name = self._unique_name(name, sub.name)
        if output is not None and not isinstance(output, str):
            raise TypeError(f"node '{name}': output must be a key name, got {output!r}")
        node = FlowNode(self, name, kind, None, sub, (source,), (output or name,), max_parallel)
        return self._add(node)

    def _unique_name(self, name: str | None, base: str) -> str:
        if name is not None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"flow '{self.name}': a node name must be a string, got {name!r}")
            if name in self._by_name:
                raise FlowError(
                    f"flow '{self.name}' already has a node named '{name}'; give another name="
                )
            return name
        candidate, n = base, 1
        while candidate in self._by_name:
            n += 1
            candidate = f"{base}_{n}"
        return candidate

    def _add(self, node: FlowNode) -> FlowNode:
        for key in node.outputs:
            other = self._producers.get(key)
            if other is not None:
                raise FlowError(
                    f"node '{node.name}' would produce '{key}', which node '{other.name}' already "
                    f"produces in flow '{self.name}'; give one of them another output="
                )
        self._nodes.append(node)
        self._by_name[node.name] = node
        for key in node.outputs:
            self._producers[key] = node
        return node

    # -- wiring ---------------------------------------------------------------------------------

    def _wire(self, left: FlowNode | _Port, right: Any) -> Any:
        src = left.node if isinstance(left, _Port) else left
        fan_out = isinstance(right, (list, tuple)) and not isinstance(right, _Port)
        for item in right if fan_out else (right,):
            if not isinstance(item, (FlowNode, _Port)):
                hint = "flow.node(...)" if callable(item) or isinstance(item, Flow) else "a node"
                raise TypeError(
                    f"'{src.name} >> ...': the right side must be a node of flow '{self.name}' "
                    f"(make one with {hint}), got {type(item).__name__}"
                )
        if fan_out:
            for item in right:
                self._wire(left, item)
            return right
        dst = right.node if isinstance(right, _Port) else right
        arrow = f"'{src.name} >> {dst.name}'"
        if dst.flow is not self:
            raise FlowError(
                f"{arrow}: node '{dst.name}' belongs to flow '{dst.flow.name}', not to flow "
                f"'{self.name}' (unknown node here)"
            )
        out = self._output_of(left, arrow)
        index = self._input_of(dst, right, out, arrow)
        self._check_acyclic(src, dst, arrow)
        if index is not None:
            dst._inputs[index] = out
            dst._wired.add(index)
        return dst

    def _output_of(self, left: FlowNode | _Port, arrow: str) -> str:
        if isinstance(left, _Port):
            if left.key not in left.node.outputs:
                raise FlowError(
                    f"{arrow}: node '{left.node.name}' has no output '{left.key}' "
                    f"(its outputs: {list(left.node.outputs)})"
                )
            return left.key
        if len(left.outputs) != 1:
            first = left.outputs[0]
            raise FlowError(
                f"{arrow}: node '{left.name}' has {len(left.outputs)} outputs "
                f"{list(left.outputs)}; pick one: {left.name}['{first}'] >> ..."
            )
        return left.outputs[0]

    def _input_of(self, dst: FlowNode, right: Any, out: str, arrow: str) -> int | None:
        """Which input of `dst` receives `out`; None when it already consumes that key."""
        if isinstance(right, _Port):
            key = right.key
            for i, (orig, current) in enumerate(zip(dst._orig, dst._inputs, strict=True)):
                if key in (orig, current):
                    if current == out:
                        return None
                    if i in dst._wired:
                        raise FlowError(
                            f"{arrow}: input '{key}' of node '{dst.name}' is already wired to "
                            f"'{current}' (from node '{self._producers[current].name}')"
                        )
                    if out in dst._inputs:
                        raise FlowError(
                            f"{arrow}: node '{dst.name}' already consumes '{out}' as another input"
                        )
                    return i
            raise FlowError(
                f"{arrow}: node '{dst.name}' has no input '{key}' (its inputs: {dst._inputs})"
            )
        if out in dst._inputs:
            return None  # already wired by name
        unbound = [
            i
            for i, key in enumerate(dst._inputs)
            if i not in dst._wired and self._producers.get(key) in (None, dst)
        ]
        if len(unbound) != 1:
            keys = [dst._inputs[i] for i in unbound]
            if not unbound:
                why = "no unbound input (every input is wired with >> or produced by a node)"
            else:
                pick = f"... >> {dst.name}['{keys[0]}']"
                why = f"{len(unbound)} unbound inputs {keys}; pick one: {pick}"
            raise FlowError(f"{arrow}: node '{dst.name}' has {why}")
        return unbound[0]

    def _check_acyclic(self, src: FlowNode, dst: FlowNode, arrow: str) -> None:
        """Wiring src -> dst closes a cycle when src is dst or dst already reaches src."""
        path = [dst] if src is dst else self._path(dst, src)
        if path is None:
            return
        cycle = [src.name, *(n.name for n in path)] if src is not dst else [src.name, src.name]
        raise CycleError(cycle, [f"{arrow} closes a cycle: {' -> '.join(cycle)}"])

    def _path(self, start: FlowNode, goal: FlowNode) -> list[FlowNode] | None:
        """Nodes from start to goal following data keys, or None."""
        consumers: dict[str, list[FlowNode]] = {}
        for node in self._nodes:
            for key in node._inputs:
                consumers.setdefault(key, []).append(node)
        parent: dict[int, FlowNode | None] = {id(start): None}
        todo = [start]
        while todo:
            node = todo.pop()
            if node is goal:
                path = [node]
                while (prev := parent[id(path[-1])]) is not None:
                    path.append(prev)
                return path[::-1]
            for key in node.outputs:
                for nxt in consumers.get(key, ()):
                    if id(nxt) not in parent:
                        parent[id(nxt)] = node
                        todo.append(nxt)
        return None

    # -- queries --------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[FlowNode]:
        return list(self._nodes)

    def __getitem__(self, name: str) -> FlowNode:
        node = self._by_name.get(name)
        if node is None:
            raise KeyError(
                f"flow '{self.name}' has no node named {name!r} (its nodes: {list(self._by_name)})"
            )
        return node

    def __contains__(self, item: object) -> bool:
        if isinstance(item, FlowNode):
            return item.flow is self
        return item in self._by_name

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Any:
        return iter(list(self._nodes))

    @property
    def inputs(self) -> list[str]:
        """Source keys: consumed by some node, produced by none (the flow's external inputs)."""
        seen: dict[str, None] = {}
        for node in self._nodes:
            for key in node._inputs:
                if key not in self._producers:
                    seen[key] = None
        return list(seen)

    @property
    def outputs(self) -> list[str]:
        """Sink keys: produced by some node, consumed by none."""
        consumed = {key for node in self._nodes for key in node._inputs}
        return [key for key in self._producers if key not in consumed]

    def _ends(self, what: str) -> tuple[str, str]:
        """The single source input and single sink output a call or a map needs."""
        sources, sinks = self.inputs, self.outputs
        problems = []
        if len(sources) != 1:
            problems.append(f"{len(sources)} source inputs {sources}")
        if len(sinks) != 1:
            problems.append(f"{len(sinks)} sink outputs {sinks}")
        if problems:
            raise FlowError(
                f"cannot {what} flow '{self.name}': a sub-flow needs exactly one source input "
                f"and one sink output, it has {' and '.join(problems)}"
            )
        return sources[0], sinks[0]

    def _flows_inside(self) -> list[Flow]:
        found: list[Flow] = []
        for node in self._nodes:
            if node.sub is not None and node.sub not in found:
                found.append(node.sub)
                found.extend(f for f in node.sub._flows_inside() if f not in found)
        return found

    def __repr__(self) -> str:
        return f"<Flow {self.name!r}: {len(self._nodes)} nodes>"

    # -- building and running -------------------------------------------------------------------

    def build_dag(self) -> DAG:
        """The whole flow as ONE validated DAG: call nodes inlined, each map node one task."""
        cols = _Columns()
        self._expand(cols, "", {}, positional=False)
        produced = {key for outs in cols.outputs for key in outs}
        external = list(dict.fromkeys(k for ins in cols.inputs for k in ins if k not in produced))
        dag = DAG.from_columns(
            cols.tasks, cols.names, cols.inputs, cols.outputs, cols.metadata, external, True
        )
        dag.validate()
        return dag

    def engine(self, broker: Any = None, **engine_options: Any) -> ExecutionEngine:
        """An ExecutionEngine for `build_dag()` (its map nodes add their items to its runs:
        `.events` reports every item's steps, and a RunGrew per map)."""
        options = check_engine_options(engine_options, f"flow '{self.name}'")
        return ExecutionEngine(broker, self.build_dag(), **options)

    async def run(
        self, inputs: Mapping[str, Any] | None = None, broker: Any = None, **engine_options: Any
    ) -> dict[str, Any]:
        """Run the flow; returns every output key's value (like `ExecutionEngine.execute`)."""
        return await self.engine(broker, **engine_options).execute(inputs)

    async def __call__(self, **inputs: Any) -> dict[str, Any]:
        """`await flow(x=1)`: run it in process with these external inputs (lythonic's callable
        DAG); `flow.run(inputs, broker, ...)` takes a broker and engine options."""
        return await self.run(inputs)

    def __enter__(self) -> Flow:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Leaving `with Flow() as f:` validates the whole flow, as `build_dag()` does (unless
        the block raised: that error is the one to see)."""
        if exc_type is None:
            self.build_dag()

    def _template(self) -> Template:
        """This flow compiled for a map node: every argument passed by position, since each
        item's copy prefixes every key."""
        source, sink = self._ends("map")
        cols = _Columns()
        self._expand(cols, "", {}, positional=True)
        return Template(
            cols.tasks, cols.names, cols.inputs, cols.outputs, cols.metadata, source, sink
        )

    def _expand(
        self, cols: _Columns, prefix: str, rename: dict[str, str], *, positional: bool
    ) -> None:
        """Append this flow's tasks to `cols`: node names get `prefix`; keys get `prefix` unless
        `rename` maps them (a call's source and sink). `positional`: every final key will be
        prefixed later (map copies), so the engine passes every argument by position."""

        def key_of(key: str) -> str:
            return rename.get(key) or prefix + key

        for node in self._nodes:
            ins = [key_of(k) for k in node._inputs]
            outs = tuple(key_of(k) for k in node.outputs)
            name = prefix + node.name
            if node.kind == "call":
                assert node.sub is not None
                source, sink = node.sub._ends("call")
                node.sub._expand(
                    cols, name + ".", {source: ins[0], sink: outs[0]}, positional=positional
                )
            elif node.kind == "map":
                assert node.sub is not None
                task = MapTask(name, node.sub._template(), node.outputs, node.max_parallel)
                cols.add(task, name, tuple(ins), outs, None)
            else:
                task, keys = bind(node.name, node.task, node._orig, ins, positional)
                spec = get_spec(task)
                cols.add(
                    task, name, keys, outs, dict(spec.metadata) if spec and spec.metadata else None
                )


class _Columns:
    __slots__ = ("inputs", "metadata", "names", "outputs", "tasks")

    def __init__(self) -> None:
        self.tasks: list[Any] = []
        self.names: list[str] = []
        self.inputs: list[Sequence[str]] = []  # the DAG's columns, handed over as they are
        self.outputs: list[Sequence[str]] = []
        self.metadata: list[dict[str, Any] | None] = []

    def add(
        self,
        task: Any,
        name: str,
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        meta: dict[str, Any] | None,
    ) -> None:
        self.tasks.append(task)
        self.names.append(name)
        self.inputs.append(inputs)
        self.outputs.append(outputs)
        self.metadata.append(meta)
