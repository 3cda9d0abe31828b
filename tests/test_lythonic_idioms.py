"""lythonic's idioms: a Namespace of callables as the source of a DAG's tasks and of worker task
names, `await flow(**inputs)`, `with Flow() as f:` validating on exit, replay(rerun_nodes=),
cache TTLs given as timedeltas."""

import importlib
import sys
from datetime import timedelta

import pytest
from conftest import run
from provenance_pipeline import make_registry
from taskiq import InMemoryBroker
from taskiq_dataflow import (
    CycleError,
    ExecutionEngine,
    Flow,
    Namespace,
    NamespaceNode,
    ResultCache,
    RunStore,
    pipeline_task,
)
from test_result_cache import Clock, build


def fetch(url: str) -> dict:
    return {"source": url, "raw": [1, 2, 3]}


def transform(fetch: dict) -> dict:
    return {"source": fetch["source"], "values": [v * 2 for v in fetch["raw"]]}


@pipeline_task(output="total")
def total(transform: dict) -> int:
    return sum(transform["values"])


def make_namespace(broker=None) -> Namespace:
    ns = Namespace(broker)
    ns.register(fetch, nsref="pipeline.data:fetch")
    ns.register(transform, nsref="pipeline.data:transform")
    ns.register(total, nsref="pipeline:total")
    return ns


def test_namespace_get_and_dot_access_call_the_callable():
    ns = make_namespace()
    node = ns.get("pipeline.data:fetch")
    assert isinstance(node, NamespaceNode)
    assert node.nsref == "pipeline.data:fetch" and node.name == "fetch"
    assert node(url="u") == {"source": "u", "raw": [1, 2, 3]}
    assert ns.pipeline.data.fetch(url="v")["source"] == "v"
    assert ns.pipeline.total is ns.get("pipeline:total")
    assert [n.nsref for n in ns] == [
        "pipeline:total", "pipeline.data:fetch", "pipeline.data:transform"
    ]  # fmt: skip
    assert "pipeline.data:transform" in ns and "pipeline.data:ghost" not in ns


def test_namespace_errors_name_the_path_and_what_is_there():
    ns = make_namespace()
    with pytest.raises(KeyError, match=r"no 'pipeline.data:ghost'.*\['fetch', 'transform'\]"):
        ns.get("pipeline.data:ghost")
    with pytest.raises(KeyError, match=r"no branch 'nope' under pipeline"):
        ns.get("pipeline.nope:fetch")
    with pytest.raises(AttributeError, match=r"branch 'pipeline.data' has no 'ghost'"):
        ns.pipeline.data.ghost  # noqa: B018
    with pytest.raises(ValueError, match="already holds 'pipeline.data:fetch'"):
        ns.register(transform, nsref="pipeline.data:fetch")
    with pytest.raises(ValueError, match="bad nsref 'pipeline.data:'"):
        ns.register(transform, nsref="pipeline.data:")
    with pytest.raises(ValueError, match="'total' is a callable here, not a branch"):
        ns.register(transform, nsref="pipeline.total:x")


def test_namespace_default_nsref_is_module_and_name():
    ns = Namespace()
    node = ns.register(fetch)
    assert node.nsref == f"{__name__}:fetch"
    assert ns.get(f"{__name__}:fetch") is node


def test_namespace_builds_a_dag_wired_by_leaf_names():
    dag = make_namespace().build_dag()
    assert sorted(dag.task_names) == ["pipeline.data:fetch", "pipeline.data:transform",
                                      "pipeline:total"]  # fmt: skip
    out = run(ExecutionEngine(None, dag).execute({"url": "u"}))
    assert out["transform"] == {"source": "u", "values": [2, 4, 6]}
    assert out["total"] == 12


def test_namespace_with_a_broker_names_taskiq_tasks_by_nsref():
    broker = InMemoryBroker()
    ns = make_namespace(broker)
    task = broker.find_task("pipeline.data:fetch")
    assert task is not None and task.original_func is fetch
    assert ns.get("pipeline.data:fetch").task is task
    assert hasattr(ns.pipeline.data.fetch, "kiq")  # the node forwards the taskiq task's API
    out = run(ExecutionEngine(broker, ns.build_dag(), transport="broker").execute({"url": "w"}))
    assert out["total"] == 12


def test_namespace_nodes_are_flow_tasks():
    ns = make_namespace()
    flow = Flow("enrich")
    flow.node(ns.get("pipeline.data:fetch")) >> flow.node(ns.pipeline.data.transform)
    assert run(flow.run({"url": "x"}))["transform"]["values"] == [2, 4, 6]


def test_awaiting_a_flow_runs_it_with_keyword_inputs():
    flow = Flow()
    flow.node(fetch) >> flow.node(transform) >> flow.node(total)
    assert run(flow(url="k")) == run(flow.run({"url": "k"}))
    assert run(flow(url="k"))["total"] == 12


def a(b: int) -> int:
    return b


def b(a: int) -> int:
    return a


def test_with_flow_validates_on_exit():
    cycle = pytest.raises(CycleError, match="Circular dependency|Cycle detected: a -> b -> a")
    with cycle, Flow("loop") as flow:
        flow.node(a)
        flow.node(b)  # consumes 'a' and produces 'b', which a consumes
    with Flow("fine") as flow:
        flow.node(fetch) >> flow.node(transform)
    assert len(flow) == 2


def test_with_flow_keeps_the_error_raised_inside():
    with pytest.raises(ZeroDivisionError), Flow() as flow:
        flow.node(a)
        flow.node(b)  # a cycle: validation would fail, but the block's own error is the one seen
        1 / 0  # noqa: B018


def test_replay_takes_rerun_nodes(tmp_path):
    log = tmp_path / "log"
    engine = ExecutionEngine(
        None, make_registry(str(log)).build_dag(), store=RunStore(tmp_path / "r.db")
    )
    first = run(engine.execute({"n": 3}, pipeline_id="base"))
    log.unlink()
    again = run(engine.replay("base", rerun_nodes={"part2"}))
    assert sorted(log.read_text().split()) == ["part2", "summarize"]
    assert again == first
    with pytest.raises(TypeError, match="rerun= or rerun_nodes="):
        run(engine.replay("base", {"part2"}, rerun_nodes={"part2"}))
    with pytest.raises(TypeError, match=r"needs the tasks to re-run: rerun=\[...\]"):
        run(engine.replay("base"))


@pytest.mark.parametrize(
    ("age", "expect_rerun"),
    [(timedelta(minutes=5), False), (timedelta(hours=2), True)],
)
def test_cache_ttls_take_timedeltas(age, expect_rerun):
    calls = []
    clock = Clock()
    cache = ResultCache(clock=clock, chance=lambda: 0.0)
    dag = build(calls, min_ttl=timedelta(minutes=10), max_ttl=timedelta(hours=1))
    run(ExecutionEngine(None, dag, cache=cache).execute({"x": 2}))
    clock.now += age.total_seconds()
    run(ExecutionEngine(None, dag, cache=cache).execute({"x": 2}))
    assert len(calls) == (2 if expect_rerun else 1)


def test_a_ttl_of_another_type_is_refused():
    cache = ResultCache()
    refused = "max_ttl must be a number of seconds or a datetime.timedelta, got str"
    with pytest.raises(TypeError, match=refused):
        cache.lookup(None, max_ttl="1d")  # refused before the job is read


def test_cluster_workers_find_namespace_tasks_by_nsref(server, monkeypatch):
    from cluster_support import WorkerProcesses

    monkeypatch.setenv("DATAFLOW_NATS_URL", server.url)
    sys.modules.pop("namespace_tasks", None)
    tasks = importlib.import_module("namespace_tasks")
    assert tasks.broker.find_task("pipeline.data:fetch").original_func is tasks.fetch
    with WorkerProcesses(server.url, target="namespace_tasks:broker") as workers:
        engine = ExecutionEngine(tasks.broker, tasks.ns.build_dag(), transport="nats")
        out = run(engine.execute({"url": "u"}))
        assert out["values"] == [2, 4, 6]
        assert out["fetch"]["pid"] in workers.children()  # ran on a worker, found by nsref
