"""A hierarchical namespace of callables (lythonic's idiom): `ns.register(f,
nsref="pipeline.data:fetch")`, `ns.get("pipeline.data:fetch")`, `ns.pipeline.data.fetch(...)`.

The namespace is a source of tasks: `ns.build_dag()` wires every registered callable by key
names into one DAG, and a namespace given a broker registers each callable as a taskiq task
named by its nsref, so that cluster workers importing the same module find it by that name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .dataflow.graph import DAG
from .dataflow.registry import DataflowRegistry
from .task import get_spec


class NamespaceNode:
    """One registered callable: calling the node calls it; `task` is what a DAG runs (the
    taskiq task named `nsref` when the namespace has a broker, else the callable)."""

    __slots__ = ("func", "name", "nsref", "task")

    def __init__(self, nsref: str, func: Callable[..., Any], task: Any) -> None:
        self.nsref = nsref
        self.name = nsref.rsplit(":", 1)[-1]
        self.func = func
        self.task = task

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    # what Flow.node and DataflowRegistry read from a task, so a node can be given to them
    @property
    def original_func(self) -> Callable[..., Any]:
        func: Callable[..., Any] = getattr(self.task, "original_func", self.func)
        return func

    @property
    def task_name(self) -> str:
        return self.nsref

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.task, attr)  # kiq, labels... of a taskiq task

    def __repr__(self) -> str:
        return f"<NamespaceNode {self.nsref}>"


class Namespace:
    """Branches (separated by `.`) holding callables (the part after `:`)."""

    def __init__(self, broker: Any = None, *, _path: str = "") -> None:
        self._broker = broker
        self._path = _path
        self._branches: dict[str, Namespace] = {}
        self._leaves: dict[str, NamespaceNode] = {}

    def register(self, func: Callable[..., Any], nsref: str | None = None) -> NamespaceNode:
        """Register `func` under `nsref` ("branch.sub:name"; default: its module and name)."""
        if not callable(func):
            raise TypeError(f"Namespace.register takes a callable, got {type(func).__name__}")
        if nsref is None:
            plain = getattr(func, "original_func", func)
            nsref = f"{plain.__module__}:{plain.__name__}"
        branches, leaf = parse_nsref(nsref)
        full = f"{'.'.join(branches)}:{leaf}" if branches else leaf
        owner = self
        for part in branches:
            owner = owner._branch(part, create=True, nsref=full)
        if leaf in owner._leaves or leaf in owner._branches:
            raise ValueError(f"namespace already holds {full!r}; register under another nsref")
        task = func
        if self._broker is not None and not hasattr(func, "kiq"):
            task = self._broker.register_task(func, task_name=full)
        node = NamespaceNode(full, func, task)
        owner._leaves[leaf] = node
        return node

    def get(self, nsref: str) -> NamespaceNode:
        branches, leaf = parse_nsref(nsref)
        owner = self
        for part in branches:
            owner = owner._branch(part, create=False, nsref=nsref)
        node = owner._leaves.get(leaf)
        if node is None:
            raise KeyError(f"namespace has no {nsref!r} (names here: {owner._names()})")
        return node

    def _branch(self, part: str, *, create: bool, nsref: str) -> Namespace:
        branch = self._branches.get(part)
        if branch is None:
            if not create:
                where = self._path or "the root"
                raise KeyError(
                    f"namespace has no {nsref!r}: no branch {part!r} under {where} "
                    f"(names here: {self._names()})"
                )
            if part in self._leaves:
                raise ValueError(f"{nsref!r}: {part!r} is a callable here, not a branch")
            path = f"{self._path}.{part}" if self._path else part
            branch = self._branches[part] = Namespace(self._broker, _path=path)
        return branch

    def _names(self) -> list[str]:
        return [*self._branches, *self._leaves]

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        found: Any = self._branches.get(attr) or self._leaves.get(attr)
        if found is None:
            where = f"namespace branch {self._path!r}" if self._path else "namespace"
            raise AttributeError(f"{where} has no {attr!r} (names here: {self._names()})")
        return found

    def __iter__(self) -> Iterator[NamespaceNode]:
        """Every callable, branches depth-first, in registration order."""
        yield from self._leaves.values()
        for branch in self._branches.values():
            yield from branch

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, nsref: object) -> bool:
        if not isinstance(nsref, str):
            return False
        try:
            self.get(nsref)
        except (KeyError, ValueError):
            return False
        return True

    def build_dag(self, external_inputs: Sequence[str] | None = None) -> DAG:
        """Every callable as a task of one DAG, wired by key names: each produces its
        `pipeline_task` output(s), or the key named like its leaf when it declares none. The
        external inputs are, unless given, the keys no callable produces (as in a Flow)."""
        registry = DataflowRegistry()
        for node in self:
            spec = get_spec(node.task)
            output = None if spec is not None and spec.outputs else node.name
            registry.register_task(node.task, output=output, name=node.nsref)
        if external_inputs is None:
            tasks = registry.get_tasks()
            produced = {key for task in tasks for key in task.outputs}
            consumed = (key for task in tasks for key in task.inputs)
            external_inputs = list(dict.fromkeys(k for k in consumed if k not in produced))
        return registry.build_dag(external_inputs)

    def __repr__(self) -> str:
        return f"<Namespace {self._path or '(root)'}: {self._names()}>"


def parse_nsref(nsref: str) -> tuple[list[str], str]:
    """ "a.b:name" -> (["a", "b"], "name"); "name" -> ([], "name")."""
    if not isinstance(nsref, str):
        raise TypeError(f"an nsref must be a string like 'pipeline.data:fetch', got {nsref!r}")
    path, sep, leaf = nsref.rpartition(":")
    branches = path.split(".") if sep and path else []
    if not leaf.isidentifier() or not all(part.isidentifier() for part in branches):
        raise ValueError(
            f"bad nsref {nsref!r}: expected dotted branch names, ':' and a name, like "
            "'pipeline.data:fetch' (each part an identifier)"
        )
    return branches, leaf
