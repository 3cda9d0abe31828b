"""NodeSequence and LevelSequence: what the DAG's queries return, views made on access.

`dag.topological_sort()`, `dag.levels`, `dag.roots`, `node.dependencies`... used to build a
list of DAGNode views, a million Python objects for a million-task DAG. They now return these
sequences over the ids the Rust graph computed (`_core.NodeIds`, `_core.Levels`: one flat id
array, plus the level offsets), and a view is made only when an item is read. As rustworkx's
`NodeIndices`, they are read-only; otherwise they behave as the lists they replace: len,
indexing (negative too), slices, iteration, `reversed`, `in`, `index`, `count`, `bool`,
equality with lists in either order, `+` with a list (giving a list). `.ids` gives the ids
themselves, for code that works on integers (`seq.ids.tolist()` as a list of ints).

This module knows the DAG only as the `NodeViews` protocol (it imports nothing of graph.py,
which imports it): `NodeSequence[DAGNode]` is what the DAG's methods are typed to return.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, TypeVar, overload

from .. import _core

__all__ = ["LevelSequence", "NodeSequence", "NodeViews"]

# How many nodes (levels) a repr names before it elides the rest.
_REPR_ITEMS = 10
_N = TypeVar("_N", covariant=True)


class NodeViews(Protocol[_N]):
    """What the sequences need of a DAG (`graph.DAG` is one, with DAGNode views)."""

    def view(self, node_id: int) -> _N:
        """The view of node `node_id`."""
        ...

    def iter_views(self, ids: Iterable[int]) -> Iterator[_N]:
        """The views of these ids, made as the iterator is read."""
        ...

    def node_id_of(self, value: object) -> int | None:
        """`value`'s id if it is a node of this DAG, -1 for a node of another DAG or of none
        (which no view of this DAG equals), None if it is not a node."""
        ...

    @property
    def tasks(self) -> Sequence[Any]: ...

    @property
    def task_names(self) -> Sequence[str]: ...


class NodeSequence(Sequence[_N]):
    """Nodes of a DAG by id (`ids`), each read as a view (DAGNode) when accessed."""

    __slots__ = ("_dag", "_ids", "_whole")
    __hash__: ClassVar[None]  # type: ignore[assignment]

    def __init__(self, dag: NodeViews[_N], ids: _core.NodeIds, *, whole: bool = False) -> None:
        """`whole`: `ids` hold every node `dag` had, once each (a topological order), so that
        `in` needs no scan."""
        self._dag = dag
        self._ids = ids
        self._whole = whole

    @property
    def ids(self) -> _core.NodeIds:
        """The node ids, in order (a sequence of ints; `.tolist()` for a list)."""
        return self._ids

    @property
    def dag(self) -> NodeViews[_N]:
        return self._dag

    def __len__(self) -> int:
        return len(self._ids)

    def __bool__(self) -> bool:
        return len(self._ids) > 0

    @overload
    def __getitem__(self, index: int) -> _N: ...
    @overload
    def __getitem__(self, index: slice) -> NodeSequence[_N]: ...
    def __getitem__(self, index: int | slice) -> _N | NodeSequence[_N]:
        if isinstance(index, slice):
            return NodeSequence(self._dag, self._ids[index])
        try:
            return self._dag.view(self._ids[index])
        except IndexError:
            raise IndexError(f"node index {index} out of range for {len(self)} nodes") from None

    def __iter__(self) -> Iterator[_N]:
        return self._dag.iter_views(self._ids)

    def __reversed__(self) -> Iterator[_N]:
        return self._dag.iter_views(reversed(self._ids))

    def _runs(self, value: object, ids: Sequence[int]) -> Iterator[int]:
        """Positions among `ids` of the nodes running `value`: a node equals its task."""
        tasks = self._dag.tasks
        return (i for i, node in enumerate(ids) if tasks[node] is value)

    def __contains__(self, value: object) -> bool:
        node = self._dag.node_id_of(value)
        if node is None:
            return next(self._runs(value, self._ids), None) is not None
        if self._whole:  # ids 0..len-1 in some order; nodes added since have larger ids
            return 0 <= node < len(self._ids)
        return node >= 0 and node in self._ids

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The first position of `value` (a node, or the task a node runs) in [start, stop)."""
        node = self._dag.node_id_of(value)
        stop = len(self) if stop is None else stop
        try:
            if node is not None:
                if node >= 0:
                    return self._ids.index(node, start, stop)
            else:
                first = slice(start, stop).indices(len(self))[0]
                found = next(self._runs(value, self._ids[start:stop]), None)
                if found is not None:
                    return first + found
        except ValueError:
            pass
        raise ValueError(f"{value!r} is not in the sequence")

    def count(self, value: Any) -> int:
        node = self._dag.node_id_of(value)
        if node is None:
            return sum(1 for _ in self._runs(value, self._ids))
        return self._ids.count(node) if node >= 0 else 0

    def __eq__(self, other: object) -> bool:
        """Equal as the lists of views would be: to a list or NodeSequence of the same nodes."""
        if isinstance(other, NodeSequence):
            if other._dag is self._dag:
                return self._ids == other._ids
            return not self and not other  # views of two DAGs are never equal
        if not isinstance(other, list):
            return NotImplemented
        if len(other) != len(self._ids):
            return False
        view, node_id_of = self._dag.view, self._dag.node_id_of
        for node, item in zip(self._ids, other, strict=True):
            own = node_id_of(item)
            if own is None:  # not a node: compared by the view (a node equals its task)
                if not view(node) == item:
                    return False
            elif own != node:
                return False
        return True

    def __add__(self, other: object) -> list[Any]:
        if not isinstance(other, list | NodeSequence):
            return NotImplemented
        return [*self, *other]

    def __radd__(self, other: object) -> list[Any]:
        if not isinstance(other, list):
            return NotImplemented
        return [*other, *self]

    def __mul__(self, times: int) -> list[_N]:
        if not isinstance(times, int):
            return NotImplemented
        return list(self) * times

    __rmul__ = __mul__

    def __repr__(self) -> str:
        names = self._dag.task_names
        shown = ", ".join(f"{names[i]}#{i}" for i in self._ids[:_REPR_ITEMS])
        more = f", ... ({len(self) - _REPR_ITEMS} more)" if len(self) > _REPR_ITEMS else ""
        return f"NodeSequence([{shown}{more}])"


class LevelSequence(Sequence[NodeSequence[_N]]):
    """The parallel levels of a DAG: each a NodeSequence, all backed by one `_core.Levels`."""

    __slots__ = ("_dag", "_levels")
    __hash__: ClassVar[None]  # type: ignore[assignment]

    def __init__(self, dag: NodeViews[_N], levels: _core.Levels) -> None:
        self._dag = dag
        self._levels = levels

    @property
    def ids(self) -> _core.Levels:
        """The levels as ids (a sequence of `_core.NodeIds`; `.tolist()` for lists of ints,
        `.ids` for every node level by level, `.offsets` for where each level starts)."""
        return self._levels

    @property
    def dag(self) -> NodeViews[_N]:
        return self._dag

    def __len__(self) -> int:
        return len(self._levels)

    def __bool__(self) -> bool:
        return len(self._levels) > 0

    @overload
    def __getitem__(self, index: int) -> NodeSequence[_N]: ...
    @overload
    def __getitem__(self, index: slice) -> LevelSequence[_N]: ...
    def __getitem__(self, index: int | slice) -> NodeSequence[_N] | LevelSequence[_N]:
        if isinstance(index, slice):
            return LevelSequence(self._dag, self._levels[index])
        try:
            return NodeSequence(self._dag, self._levels[index])
        except IndexError:
            raise IndexError(f"level index {index} out of range for {len(self)} levels") from None

    def __iter__(self) -> Iterator[NodeSequence[_N]]:
        dag = self._dag
        return (NodeSequence(dag, level) for level in self._levels)

    def __reversed__(self) -> Iterator[NodeSequence[_N]]:
        dag = self._dag
        return (NodeSequence(dag, level) for level in reversed(self._levels))

    def __eq__(self, other: object) -> bool:
        """Equal as the lists of lists of views would be."""
        if isinstance(other, LevelSequence):
            if other._dag is self._dag:
                return self._levels == other._levels
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        if not isinstance(other, list):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))

    def __add__(self, other: object) -> list[Any]:
        if not isinstance(other, list | LevelSequence):
            return NotImplemented
        return [*self, *other]

    def __radd__(self, other: object) -> list[Any]:
        if not isinstance(other, list):
            return NotImplemented
        return [*other, *self]

    def __repr__(self) -> str:
        levels = self._levels
        sizes = ", ".join(str(len(level)) for level in levels[:_REPR_ITEMS])
        more = ", ..." if len(levels) > _REPR_ITEMS else ""
        return (
            f"<LevelSequence: {len(levels)} levels, {len(levels.ids)} nodes; "
            f"level sizes [{sizes}{more}]>"
        )
