"""The DAG's column API: what the registry, the visualizer, the store and the engine read a DAG
through instead of its private attributes."""

from __future__ import annotations

import ast
import hashlib
import io
from pathlib import Path

import pytest
import taskiq_dataflow
from taskiq_dataflow import DAG, CycleError, DAGNode, DAGValidationError, DataflowRegistry
from taskiq_dataflow.dataflow import graph as graph_module
from taskiq_dataflow.dataflow.dag import DAGBuilder
from taskiq_dataflow.errors import DataflowError
from taskiq_dataflow.store import dag_fingerprint


def fn(name):
    def f(**kwargs):
        return kwargs

    f.__name__ = name
    return f


LOAD, LEFT, RIGHT, JOIN = fn("load"), fn("left"), fn("right"), fn("join")


def diamond() -> DAG:
    return (
        DAGBuilder()
        .node(LOAD, output="raw", inputs=[])
        .node(LEFT, output="l", inputs=["raw"], colour="red")
        .node(RIGHT, output="r", inputs=["raw"])
        .node(JOIN, output="out", inputs=["l", "r"])
        .build()
    )


def test_columns_match_the_node_views():
    dag = diamond()
    nodes = list(dag.nodes)
    assert list(dag.task_names) == [n.task_name for n in nodes]
    assert [list(k) for k in dag.node_inputs] == [n.inputs for n in nodes]
    assert [list(k) for k in dag.node_outputs] == [n.outputs for n in nodes]
    assert list(dag.tasks) == [LOAD, LEFT, RIGHT, JOIN]
    # nodes without metadata hold None, so a million plain nodes hold no dict each
    assert list(dag.node_metadata) == [None, {"colour": "red"}, None, None]
    assert dag.declared_external == [] and dag.strict_inputs is False  # automatic external inputs
    assert dag.explicit_edges == []


def test_columns_are_the_dag_itself_not_copies():
    dag = diamond()
    assert dag.task_names is dag.task_names and dag.node_inputs is dag.node_inputs


def test_ids_views_and_order():
    dag = diamond()
    assert dag.ids_named("left") == [1] and dag.ids_named("nobody") == ()
    assert dag.ids_of_task(JOIN) == [3] and dag.ids_of_task(fn("join")) == ()
    assert dag.view(2) == dag.nodes[2] and dag.views([3, 0]) == [dag.nodes[3], dag.nodes[0]]
    assert dag.topological_ids() == [n.id for n in dag.topological_sort()]
    assert dag.level_ids() == [[n.id for n in level] for level in dag.levels] == [[0], [1, 2], [3]]


def test_level_ids_name_the_cycle():
    dag = DAG.from_columns([LOAD, LEFT], ["a", "b"], [("y",), ("x",)], [("x",), ("y",)], [None] * 2)
    with pytest.raises(CycleError, match="a -> b -> a|b -> a -> b"):
        dag.level_ids()
    with pytest.raises(CycleError):
        dag.topological_ids()


def test_distinct_tasks_once_each_in_first_use_order_and_kept_current():
    dag = DAG.from_columns(
        [JOIN, LOAD, JOIN, LOAD],
        ["j", "l", "j", "l"],
        [()] * 4,
        [(f"k{i}",) for i in range(4)],
        [None] * 4,
    )
    assert dag.distinct_tasks() == [JOIN, LOAD]
    dag.append_node(RIGHT, "r", (), ("k9",))
    assert dag.distinct_tasks() == [JOIN, LOAD, RIGHT]
    dag.distinct_tasks().clear()  # a copy: the caller cannot empty the DAG's cache
    assert dag.distinct_tasks() == [JOIN, LOAD, RIGHT]


def test_append_node_returns_its_view_and_the_graph_follows():
    dag = diamond()
    assert [n.task_name for n in dag.leaves] == ["join"]
    node = dag.append_node(fn("save"), "save", ("out",), ("saved",), {"retries": 2})
    assert node.id == 4 and node.dag is dag and node.metadata == {"retries": 2}
    assert [n.task_name for n in dag.leaves] == ["save"]  # the Rust graph was rebuilt
    assert dag.append_node(fn("x"), "x", (), ("x",), {}).metadata == {}  # made on first use
    assert dag.node_metadata[5] == {}


def test_update_metadata_does_not_touch_a_shared_dict():
    shared = {"team": "a"}
    dag = DAG.from_columns([LOAD, LEFT], ["a", "b"], [(), ()], [("x",), ("y",)], [shared, shared])
    dag.update_metadata(0, {"team": "b", "v": 1})
    assert dag.node_metadata[0] == {"team": "b", "v": 1}
    assert dag.node_metadata[1] == {"team": "a"} and shared == {"team": "a"}


def test_copy_has_its_own_columns_and_edges():
    dag = DAG()
    a = dag.add_node(DAGNode(task=LOAD, output="x", inputs=[]))
    b = dag.add_node(DAGNode(task=LEFT, output="y", inputs=[]))
    dag.add_edge(a, b)
    same = dag.copy()
    assert same.explicit_edges == [(0, 1)] and same.strict_inputs is False
    assert [n.task_name for n in same.topological_sort()] == ["load", "left"]
    strict = dag.copy(external=["k"], strict_inputs=True)
    assert strict.declared_external == ["k"] and strict.strict_inputs is True
    strict.append_node(RIGHT, "right", ("k",), ("z",))
    assert len(dag) == 2 and len(strict) == 3 and dag.declared_external == []


def test_from_columns_with_columns_of_different_lengths_names_each_length():
    with pytest.raises(DAGValidationError, match=r"tasks 2, names 1, inputs 2, outputs 2"):
        DAG.from_columns([LOAD, LEFT], ["a"], [(), ()], [("x",), ("y",)], [None, None])


def test_the_old_private_constructor_still_works_until_every_reader_moves():
    dag = DAG._from_columns([LOAD], ["a"], [()], [("x",)], [None])
    assert dag.task_names == ["a"] and dag._views([0]) == [dag.view(0)]


def test_fingerprint_is_unchanged_so_stored_runs_still_restart():
    dag = diamond()
    old_shape = (
        ["load", "left", "right", "join"],
        [(), ("raw",), ("raw",), ("l", "r")],
        [("raw",), ("l",), ("r",), ("out",)],
        [],
    )
    expected = hashlib.blake2b(repr(old_shape).encode(), digest_size=16).hexdigest()
    assert dag_fingerprint(dag) == expected


def test_print_draws_with_the_renderer_the_visualizer_installed(monkeypatch):
    out = io.StringIO()
    diamond().print(file=out)
    assert out.getvalue().startswith("DAG: 4 tasks, 4 edges, 3 levels")
    monkeypatch.setattr(graph_module, "_ascii_renderer", None)
    with pytest.raises(DataflowError, match="import taskiq_dataflow.visualization"):
        diamond().print(file=out)


def test_registry_returns_the_same_node_when_a_task_is_registered_again():
    registry = DataflowRegistry()
    first = registry.register_task(LOAD, output="x", inputs=[])
    again = registry.register_task(LOAD, output="x", inputs=[], note="hi")
    assert again == first and len(registry) == 1 and again.metadata == {"note": "hi"}
    other = registry.register_task(LOAD, output="y", inputs=["x"])
    assert other.id == 1 and len(registry) == 2


# Attributes only the DAG and its DAGNode views may touch. A reader's own attributes
# (`self._dag` of the registry) are its business, so `self.` accesses are not counted.
PRIVATE = {
    "_tasks", "_names", "_inputs", "_outputs", "_metadata", "_edges", "_external",
    "_strict_inputs", "_graph", "_indexes", "_distinct", "_index", "_ids", "_views", "_resolve",
    "_from_columns", "_view", "_id", "_own", "_describe", "_label", "_dag", "_fields",
}  # fmt: skip
READERS = (
    "dataflow/registry.py",
    "dataflow/builder.py",
    "visualization/collapse.py",
    "visualization/dag_visualizer.py",
    "visualization/dot.py",
    "visualization/flowchart.py",
    "visualization/labels.py",
    "visualization/mermaid.py",
    "store.py",
)


def private_reads(source: str) -> list[str]:
    return [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr in PRIVATE
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]


@pytest.mark.parametrize("reader", READERS)
def test_readers_use_no_private_attribute_of_the_dag(reader):
    source = (Path(taskiq_dataflow.__file__).parent / reader).read_text()
    touched = private_reads(source)
    assert not touched, f"{reader} reads the DAG's private attributes: {touched}"


def test_private_reads_are_found_through_any_expression():
    source = "def f(self, dag):\n    return self._dag._names, dag._inputs, self._own_thing\n"
    assert private_reads(source) == ["line 2: ._names", "line 2: ._inputs"]
