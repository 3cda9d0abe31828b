"""What `mypy.stubtest` (a step of scripts/test) cannot check about _core.pyi: return types.

stubtest compares names, kinds, signatures, bases and `__all__` of the stub with the compiled
module, but a pyo3 method has no return annotation at runtime, so it never looks at what a call
returns. Here every stubbed method and property is called (the scripts below must name them
all) and its value is checked against the stub's return annotation.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal, Self, Union

import pytest
from taskiq_dataflow import _core

STUB = Path(_core.__file__).with_name("_core.pyi")


def stub_namespace() -> dict[str, Any]:
    """The stub executed as Python with postponed annotations (its bodies are `...`)."""
    namespace: dict[str, Any] = {"__name__": "_core_stub"}
    source = "from __future__ import annotations\n" + STUB.read_text()
    exec(compile(source, str(STUB), "exec"), namespace)
    return namespace


STUB_NS = stub_namespace()


def stub_members(cls: str) -> dict[str, Any]:
    """The public methods and properties the stub declares on `cls`, `__new__` included."""
    body = vars(STUB_NS[cls])
    return {
        name: member
        for name, member in body.items()
        if isinstance(member, types.FunctionType | staticmethod | property)
        and (not name.startswith("_") or name in ("__new__", "__len__"))
    }


def return_type(cls: str, name: str) -> Any:
    member = stub_members(cls)[name]
    func = member.fget if isinstance(member, property) else member
    if isinstance(func, staticmethod):
        func = func.__func__
    hint = typing.get_type_hints(func, globalns=STUB_NS)["return"]
    return STUB_NS[cls] if hint is Self else hint


def conforms(value: Any, hint: Any) -> bool:
    """`value` is of the stub type `hint` (the few forms _core.pyi uses), stub classes standing
    for the runtime classes of the same name."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is None or hint is type(None):
        return value is None
    if hint is float:
        return type(value) is float
    if origin is Literal:
        return value in args
    if origin in (Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if origin is list:
        return type(value) is list and all(conforms(item, args[0]) for item in value)
    if origin is dict:
        return type(value) is dict and all(
            conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items()
        )
    if origin is tuple:
        return (
            type(value) is tuple
            and len(value) == len(args)
            and all(conforms(item, arg) for item, arg in zip(value, args, strict=True))
        )
    if isinstance(hint, type) and hint.__module__ == "_core_stub":
        return type(value) is getattr(_core, hint.__name__)
    assert isinstance(hint, type), f"conforms() does not know the stub type {hint!r}"
    return type(value) is hint


def test_the_checker_tells_types_apart():
    problem = return_type("Graph", "validate")
    assert conforms([("cycle", [0, 1, 0]), ("bad_edge", 0, 9)], problem)
    assert not conforms([("cycle", (0, 1, 0))], problem)
    assert not conforms([("loop", [0, 0])], problem)
    assert conforms(None, int | None) and conforms(3, int | None) and not conforms("3", int | None)
    assert not conforms(1, float) and not conforms(True, int)
    assert conforms({"done": 1}, dict[str, int]) and not conforms({"done": "1"}, dict[str, int])


def problem_graph() -> _core.Graph:
    """Every kind of problem: a missing input, a duplicate output, a cycle and a bad edge."""
    return _core.Graph(
        [["missing"], ["x", "c2"], ["c1"]],
        [["x"], ["c1"], ["c2", "x"]],
        edges=[(0, 7)],
    )


def chain_graph() -> _core.Graph:
    """0 -> 1 -> 2 -> 3 -> 4 by keys, and 5, 6 alone."""
    return _core.Graph(
        [[], ["k0"], ["k1"], ["k2"], ["k3"], [], []],
        [["k0"], ["k1"], ["k2"], ["k3"], ["k4"], ["k5"], ["k6"]],
        external=["ext"],
    )


# (method, arguments, graph): each call made once, on a fresh graph of that kind.
GRAPH_CALLS: list[tuple[str, tuple[Any, ...], Any]] = [
    ("__new__", ([["a"], ["x"]], [["x"], ["y"]], [(0, 1)], ["a"]), None),
    ("from_edges", (3, [(0, 1), (1, 2)]), None),
    ("node_count", (), chain_graph),
    ("edge_count", (), chain_graph),
    ("key_count", (), chain_graph),
    ("__len__", (), chain_graph),
    ("validate", (True,), problem_graph),
    ("topological_order", (), chain_graph),
    ("levels", (), chain_graph),
    ("roots", (), chain_graph),
    ("leaves", (), chain_graph),
    ("predecessors", (1,), chain_graph),
    ("successors", (1,), chain_graph),
    ("has_edge", (0, 1), chain_graph),
    ("edges", (), chain_graph),
    ("ancestors", ([3],), chain_graph),
    ("descendants", ([1],), chain_graph),
    ("required_for", (["k2"],), chain_graph),
    ("critical_path", ([1.0, 2.0, 1.0, 1.0, 1.0, 5.0, 1.0],), chain_graph),
    ("bottom_levels", (), chain_graph),
    ("ready_given", ([0, 5],), chain_graph),
    ("producer", ("k1",), chain_graph),
    ("producer", ("nobody",), chain_graph),
    ("consumers", ("k1",), chain_graph),
    ("node_inputs", (1,), chain_graph),
    ("node_outputs", (1,), chain_graph),
    ("unproduced_inputs", (), problem_graph),
    ("output_keys", (), problem_graph),
]

# Calls in this order on one scheduler of `chain_graph()`, so that each is allowed.
SCHEDULER_SCRIPT: list[tuple[str, tuple[Any, ...]]] = [
    ("mark_done", ([5],)),
    ("set_labels", (0, [0, 1, 0, 1, 0, 1, 2])),
    ("start", ()),
    ("running", ()),
    ("ready", ()),
    ("complete", (0,)),
    ("complete_many", ([1, 6],)),
    ("add_nodes", (["k6", "grown", "ext", "grown2"], [(1, 1), (1, 1)])),
    ("defer", (2, 7)),  # 3 waits for the added node 7 too
    ("new_group", (2,)),
    ("complete_many", ([7, 8],)),  # the added nodes: both read keys that are there
    ("requeue", (2,)),
    ("take_ready", ()),
    ("fail", (2,)),
    ("set_capacity", (2,)),
    ("capacity", ()),
    ("state", (0,)),
    ("counts", ()),
    ("labelled", ()),
    ("counts_by_label", ()),
    ("edge_counts_by_label", ()),
    ("cancel", ()),
    ("finished", ()),
]


def call(owner: Any, cls: str, name: str, args: tuple[Any, ...]) -> Any:
    if name == "__new__":
        return getattr(_core, cls)(*args)
    if isinstance(stub_members(cls)[name], property):
        assert not args
        return getattr(owner, name)
    return getattr(owner, name)(*args)


def test_every_stubbed_member_is_called_below():
    assert set(stub_members("Graph")) == {name for name, _, _ in GRAPH_CALLS}
    assert set(stub_members("Scheduler")) - {"__new__"} == {name for name, _ in SCHEDULER_SCRIPT}


@pytest.mark.parametrize(("name", "args", "make"), GRAPH_CALLS)
def test_graph_values_have_the_stub_types(name, args, make):
    owner = _core.Graph if make is None else make()
    value = call(owner, "Graph", name, args)
    hint = return_type("Graph", name)
    assert conforms(value, hint), f"Graph.{name}{args} returned {value!r}; the stub says {hint}"


def test_scheduler_values_have_the_stub_types():
    scheduler = call(None, "Scheduler", "__new__", (chain_graph(), [1.0] * 7, None))
    assert conforms(scheduler, return_type("Scheduler", "__new__"))
    for name, args in SCHEDULER_SCRIPT:
        value = call(scheduler, "Scheduler", name, args)
        hint = return_type("Scheduler", name)
        assert conforms(value, hint), (
            f"Scheduler.{name}{args} returned {value!r}; the stub says {hint}"
        )
    assert scheduler.finished


def test_stub_declares_the_errors_args():
    """The exception docstrings promise the shape of `args`; stubtest cannot see it."""
    with pytest.raises(_core.CycleError) as cycle:
        _core.Scheduler(problem_graph())
    message, path = cycle.value.args
    assert conforms(message, str) and conforms(path, list[int]) and path[0] == path[-1]
    scheduler = _core.Scheduler(chain_graph())
    scheduler.start()
    with pytest.raises(_core.SchedulerError) as not_running:
        scheduler.complete(3)
    assert not_running.value.args[1:] == (3,)
    with pytest.raises(_core.SchedulerError) as started:
        scheduler.start()
    assert started.value.args[1:] == (None,)
    with pytest.raises(_core.GrowthError) as refused:
        scheduler.add_nodes(["k0", "k1"], [(1, 1)])
    message, kind, nodes, key, producer = refused.value.args
    assert conforms(message, str) and (kind, nodes, key, producer) == (
        "output_exists",
        [0],
        "k1",
        1,
    )
