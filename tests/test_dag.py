import io

import pytest
from taskiq_dataflow import (
    DAG,
    CycleError,
    DAGBuilder,
    DAGNode,
    DAGValidationError,
    DAGVisualizer,
    DataCache,
)
from taskiq_dataflow.dataflow import DAG as DocDAG
from taskiq_dataflow.dataflow import DAGNode as DocDAGNode


def fn(name):
    def f(**kwargs):
        return kwargs

    f.__name__ = name
    return f


def diamond():
    return (
        DAGBuilder()
        .node(fn("load"), output="raw", inputs=[])
        .node(fn("left"), output="l", inputs=["raw"])
        .node(fn("right"), output="r", inputs=["raw"])
        .node(fn("join"), output="out", inputs=["l", "r"])
        .build()
    )


def names(nodes):
    return [n.task_name for n in nodes]


def test_doc_module_paths():
    assert DocDAG is DAG and DocDAGNode is DAGNode


def test_manual_dag_with_nodes_and_edges():
    dag = DAG()
    a = dag.add_node(DAGNode(task=fn("a"), output="x", inputs=["input_a"], metadata={"d": 1}))
    b = dag.add_node(DAGNode(task=fn("b"), output="y", inputs=[]))
    c = DAGNode(task=fn("c"), output="z", inputs=["x"])
    dag.add_node(c)
    dag.add_edge(b, c)  # explicit: c after b though no key links them
    assert len(dag.nodes) == 3 and len(dag.edges) == 2
    assert (a, c) in dag.edges and (b, c) in dag.edges and (c, a) not in dag.edges
    assert names(dag.roots) == ["a", "b"] and names(dag.leaves) == ["c"]
    assert names(dag.topological_sort()) == ["a", "b", "c"]
    assert [names(level) for level in dag.get_parallel_levels()] == [["a", "b"], ["c"]]
    assert a.metadata == {"d": 1} and a.inputs == ["input_a"] and a.output == "x"
    assert dag.external_inputs == ["input_a"]
    dag.validate()


def test_nodes_are_views_that_compare_equal():
    dag = diamond()
    first = dag.nodes[0]
    assert first == dag.node("load") == dag.node(0) == dag.nodes[-4]
    assert hash(first) == hash(dag.nodes[0])
    assert {first, dag.nodes[0]} == {first}
    assert dag.nodes[1:3] == [dag.nodes[1], dag.nodes[2]]
    with pytest.raises(IndexError, match="out of range"):
        dag.nodes[4]
    assert first.dag is dag and first.id == 0


def test_builder_add_task_form():
    builder = DAGBuilder()
    builder.add_task(fn("t1"), output="a", inputs=[])
    builder.add_task(fn("t2"), output="b", inputs=["a"])
    builder.add_task(fn("t3"), output="c", inputs=["a", "b"])
    dag = builder.build()
    assert len(dag.edges) == 3
    assert [names(level) for level in dag.levels] == [["t1"], ["t2"], ["t3"]]


def test_queries_on_diamond():
    dag = diamond()
    assert names(dag.predecessors("join")) == ["left", "right"]
    assert names(dag.successors("load")) == ["left", "right"]
    assert names(dag.ancestors("join")) == ["load", "left", "right"]
    assert names(dag.descendants(["left"])) == ["join"]
    assert names(dag.required_for("l")) == ["load", "left"]
    sub = dag.subgraph(["l"])
    assert names(sub.nodes) == ["load", "left"] and len(sub.edges) == 1
    total, path = dag.critical_path()
    assert total == 3 and names(path) == ["load", "left", "join"]
    total, path = dag.critical_path({"right": 5})
    assert total == 7 and names(path) == ["load", "right", "join"]
    with pytest.raises(KeyError, match="no task produces output 'nope'"):
        dag.required_for("nope")


def test_get_ready_tasks_walk():
    dag = diamond()
    completed = set()
    order = []
    while True:
        ready = dag.get_ready_tasks(completed)
        if not ready:
            break
        order.append(names(ready))
        completed.update(ready)
    assert order == [["load"], ["left", "right"], ["join"]]
    assert dag.get_ready_tasks([0]) == [dag.nodes[1], dag.nodes[2]]


def test_resolve_errors():
    dag = diamond()
    with pytest.raises(ValueError, match="no node for 'ghost'"):
        dag.node("ghost")
    with pytest.raises(ValueError, match="no node with id 9"):
        dag.add_edge(0, 9)
    other = diamond()
    with pytest.raises(ValueError, match="belongs to another DAG"):
        dag.add_edge(other.nodes[0], dag.nodes[1])
    with pytest.raises(TypeError, match="expects a DAGNode"):
        dag.add_node("x")


def test_manual_cycle_and_self_loop():
    dag = DAG()
    a = dag.add_node(DAGNode(task=fn("a"), output="x", inputs=[]))
    b = dag.add_node(DAGNode(task=fn("b"), output="y", inputs=["x"]))
    dag.add_edge(b, a)
    with pytest.raises(CycleError) as info:
        dag.validate()
    assert info.value.cycle == ["a", "b", "a"]
    with pytest.raises(CycleError, match="a -> b -> a"):
        dag.topological_sort()
    with pytest.raises(CycleError):
        dag.get_parallel_levels()

    loop = DAG()
    loop.add_node(DAGNode(task=fn("self"), output="s", inputs=["s"]))
    with pytest.raises(CycleError, match="self -> self"):
        loop.validate()


def test_disconnected_graph_is_valid():
    dag = DAG()
    for i in range(3):
        dag.add_node(DAGNode(task=fn(f"t{i}"), output=f"o{i}", inputs=[]))
    dag.validate()
    assert [names(level) for level in dag.levels] == [["t0", "t1", "t2"]]


def test_many_problems_are_listed_with_a_limit():
    dag = DAG()
    for i in range(30):
        dag.add_node(DAGNode(task=fn(f"t{i}"), output="same", inputs=[]))
    with pytest.raises(DAGValidationError) as info:
        dag.validate()
    assert len(info.value.problems) == 29
    assert "... and 9 more" in str(info.value)


def test_print_and_visualizers():
    dag = diamond()
    out = io.StringIO()
    dag.print(file=out)
    text = out.getvalue()
    assert "DAG: 4 tasks, 4 edges, 3 levels" in text
    assert "[0] load () => raw" in text
    assert "├─raw─> [1] left" in text and "└─raw─> [2] right" in text
    dot = DAGVisualizer.to_dot(dag)
    assert dot.startswith('digraph "dag" {') and 'n0 -> n1 [label="raw"];' in dot
    mermaid = DAGVisualizer.to_mermaid(dag)
    assert 'n0["load"]' in mermaid and "n1 -->|l| n3" in mermaid
    big = DAG()
    for i in range(10):
        big.add_node(DAGNode(task=fn(f"t{i}"), output=f"o{i}", inputs=[]))
    assert "... 7 more tasks" in DAGVisualizer.to_ascii(big, max_nodes=3)


def test_data_cache():
    cache = DataCache()
    cache.set("source", "file.csv")
    cache.set("n", 0)
    assert cache.get("source") == "file.csv" and cache.has("n") and "n" in cache
    assert cache.inject(["source", "n"]) == {"source": "file.csv", "n": 0}
    assert cache.get("nope", None) is None
    with pytest.raises(KeyError, match="no value for 'nope'"):
        cache.get("nope")
    with pytest.raises(KeyError, match="'a', 'b'"):
        cache.inject(["a", "source", "b"])
    assert len(cache) == 2 and sorted(cache) == ["n", "source"]
