"""Flow composition: `>>` wiring, call nodes (inlined sub-flows), map nodes (nested DAGs)."""

from __future__ import annotations

import asyncio
import doctest
import time

import pytest
import taskiq_dataflow.compose as compose
from conftest import run
from taskiq_dataflow import (
    DAG,
    CycleError,
    DAGValidationError,
    DataflowExecutionError,
    ExecutionCancelled,
    ExecutionEngine,
    Flow,
    FlowError,
    FlowNode,
    MissingInputError,
    RunGrew,
    StepCompleted,
    TaskFailedError,
    pipeline_task,
)

# -- tasks --------------------------------------------------------------------------------------


def load(source):
    return [3, -1, 4, -1, 5]


def clean(data):
    return [x for x in data if x > 0]


def total(values):
    return sum(values)


def double(x):
    return 2 * x


def inc(x):
    return x + 1


async def ainc(x):
    await asyncio.sleep(0)
    return x + 1


def counted_sub(calls):
    """A one-node sub-flow whose task counts its calls."""

    def square(n):
        calls.append(n)
        return n * n

    sub = Flow("sq")
    sub.node(square)
    return sub


def chain_flow(name="sub"):
    sub = Flow(name)
    sub.node(double) >> sub.node(inc)
    return sub


# -- the module docstring ------------------------------------------------------------------------


def test_module_docstring_example_runs():
    result = doctest.testmod(compose, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


# -- >> wiring ----------------------------------------------------------------------------------


def test_chain_wires_each_output_into_the_next_input():
    flow = Flow("main")
    a, b, c = flow.node(load), flow.node(clean), flow.node(total)
    assert (a >> b) is b
    assert (a >> b >> c) is c  # wiring again what is already wired is a no-op
    assert b.inputs == ["load"] and c.inputs == ["clean"]
    assert flow.inputs == ["source"] and flow.outputs == ["total"]
    results = run(flow.run({"source": "s3://x"}))
    assert results == {"load": [3, -1, 4, -1, 5], "clean": [3, 4, 5], "total": 12}


def test_chain_in_one_expression_and_async_tasks():
    flow = Flow()
    last = flow.node(inc, name="one") >> flow.node(ainc, name="two") >> flow.node(inc, name="three")
    assert isinstance(last, FlowNode) and last.name == "three"
    assert run(flow.run({"x": 1})) == {"one": 2, "two": 3, "three": 4}


def test_output_keys_default_to_pipeline_task_output_or_node_name():
    @pipeline_task(output="raw")
    def fetch(url):
        return url.upper()

    @pipeline_task(output="parsed")
    def parse(raw):
        return raw.split("/")

    flow = Flow()
    f, p = flow.node(fetch), flow.node(parse)
    assert f.outputs == ("raw",) and f.output == "raw"
    assert f >> p is p
    assert p.inputs == ["raw"]  # already the same name: nothing renamed
    renamed = flow.node(double, output="twice")
    assert renamed.outputs == ("twice",)
    assert flow.node(inc).outputs == ("inc",)
    assert flow.node(inc).name == "inc_2"  # the same function twice: a unique name
    assert run(flow.run({"url": "a/b", "x": 1}))["parsed"] == ["A", "B"]


def test_input_produced_by_name_counts_as_bound():
    def config():
        return {"scale": 10}

    def scale(data, config):
        return [x * config["scale"] for x in data]

    flow = Flow()
    flow.node(config)
    flow.node(load) >> flow.node(scale)  # 'config' is produced: only 'data' is unbound
    assert run(flow.run({"source": None}))["scale"] == [30, -10, 40, -10, 50]


def test_ports_pick_an_output_and_an_input():
    @pipeline_task(outputs=["low", "high"])
    def split(values):
        return [v for v in values if v < 4], [v for v in values if v >= 4]

    def diff(a, b):
        return a - b

    flow = Flow()
    s = flow.node(split)
    d = flow.node(diff)
    flow.node(load) >> s
    assert s["high"] >> flow.node(total, name="sum_high") >> d["a"] is d
    s["low"] >> flow.node(total, name="sum_low") >> d["b"]
    results = run(flow.run({"source": None}))
    assert results["sum_high"] == 9 and results["sum_low"] == 1 and results["diff"] == 8


def test_fan_out_to_several_nodes():
    flow = Flow()
    a = flow.node(inc)
    b, c = flow.node(double), flow.node(inc, name="again")
    assert a >> [b, c] == [b, c]
    assert run(flow.run({"x": 4})) == {"inc": 5, "double": 10, "again": 6}


def test_unwired_inputs_are_external_and_required():
    def combine(left, right):
        return left + right

    flow = Flow()
    flow.node(inc) >> flow.node(combine)["left"]
    assert flow.inputs == ["x", "right"]
    assert run(flow.run({"x": 1, "right": 10}))["combine"] == 12
    with pytest.raises(MissingInputError, match="'combine' requires input 'right'"):
        run(flow.run({"x": 1}))


def test_build_dag_is_one_graph():
    flow = Flow()
    flow.node(load) >> flow.node(clean) >> flow.node(chain_flow(), name="c1")
    flow.node(clean, name="other", output="other")
    dag = flow.build_dag()
    assert isinstance(dag, DAG) and len(dag) == 5
    assert [n.task_name for n in dag.nodes] == ["load", "clean", "c1.double", "c1.inc", "other"]
    assert dag.external_inputs == ["source", "data"]
    node = dag.node("c1.inc")
    assert node.outputs == ["c1"] and node.inputs == ["c1.double"]
    assert len(dag.edges) == 3


def test_taskiq_tasks_run_through_the_broker(broker):
    @broker.task
    @pipeline_task(output="n")
    async def number(x):
        return x * 3

    @broker.task
    def plus_one(value):
        return value + 1

    flow = Flow()
    flow.node(number) >> flow.node(plus_one)
    assert run(flow.run({"x": 2}, broker=broker, transport="broker")) == {"n": 6, "plus_one": 7}


def test_renamed_inputs_reach_the_right_parameters():
    @pipeline_task(output="r", inputs=["b", "a"])  # declared in another order than parameters
    def ordered(a, b):
        return f"a={a} b={b}"

    def kw_only(*, value):
        return value * 10

    @pipeline_task(inputs=["x"])
    def takes_kwargs(**kw):
        return sorted(kw.items())

    def one():
        return 1

    def two():
        return 2

    flow = Flow()
    r = flow.node(ordered)
    flow.node(one) >> r["a"]
    flow.node(two) >> r["b"]
    flow.node(one, name="one_b") >> flow.node(kw_only)
    flow.node(two, name="two_b") >> flow.node(takes_kwargs)["x"]
    results = run(flow.run())
    assert results["r"] == "a=1 b=2"
    assert results["kw_only"] == 10
    assert results["takes_kwargs"] == [("x", 2)]


def test_keys_that_happen_to_name_other_parameters_are_not_swapped():
    def a():
        return "A"

    def b():
        return "B"

    def f(a, b):
        return a + b

    def g(a, b="default"):
        return (a, b)

    flow = Flow()
    node = flow.node(f)
    flow.node(b, output="x") >> node["a"]
    flow.node(a, output="y") >> node["b"]
    # g's only input 'a' is wired to the key 'b', the name of its other (optional) parameter
    flow.node(b, name="b2", output="b") >> flow.node(g)
    results = run(flow.run())
    assert results["f"] == "BA"
    assert results["g"] == ("B", "default")
    flow2 = Flow()
    h = flow2.node(f)
    with pytest.raises(FlowError, match="'a >> f': node 'f' already consumes 'b'"):
        flow2.node(a, output="b") >> h["a"]


def test_taskiq_task_that_cannot_take_renamed_inputs_by_position(broker):
    @broker.task
    def keyword_only(*, value):
        return value

    flow = Flow()
    flow.node(inc) >> flow.node(keyword_only)
    with pytest.raises(FlowError, match="node 'keyword_only'.*by position"):
        flow.build_dag()


# -- call nodes ---------------------------------------------------------------------------------


def test_call_node_inlines_the_sub_flow():
    flow = Flow()
    call = flow.node(chain_flow(), name="enrich")
    assert call.kind == "call" and call.inputs == ["x"] and call.outputs == ("enrich",)
    flow.node(inc, name="first") >> call >> flow.node(total)
    dag = flow.build_dag()
    assert [n.task_name for n in dag.nodes] == ["enrich.double", "enrich.inc", "first", "total"]
    assert dag.node("enrich.double").inputs == ["first"]
    assert dag.node("enrich.double").outputs == ["enrich.double"]
    assert dag.node("enrich.inc").outputs == ["enrich"]
    assert dag.node("total").inputs == ["enrich"]


def test_two_calls_of_one_sub_flow_do_not_collide():
    sub = chain_flow()
    flow = Flow()
    first = flow.node(sub, name="first")
    second = flow.node(sub, name="second")
    first >> second
    results = run(flow.run({"x": 3}))
    assert results == {
        "first.double": 6,
        "first": 7,
        "second.double": 14,
        "second": 15,
    }
    # without names: the sub-flow's name, made unique
    flow2 = Flow()
    assert flow2.node(sub).name == "sub" and flow2.node(sub).name == "sub_2"


def test_call_of_a_flow_that_calls_a_flow():
    inner = chain_flow("inner")
    middle = Flow("middle")
    middle.node(inner, name="in") >> middle.node(double, name="twice")
    flow = Flow()
    flow.node(middle, name="mid") >> flow.node(inc, name="last")
    results = run(flow.run({"x": 1}))
    assert results == {"mid.in.double": 2, "mid.in": 3, "mid": 6, "last": 7}


def test_call_node_unwired_takes_the_sub_flows_source_as_external_input():
    flow = Flow()
    flow.node(chain_flow(), name="c")
    assert flow.inputs == ["x"] and flow.outputs == ["c"]
    assert run(flow.run({"x": 5}))["c"] == 11


# -- map nodes ----------------------------------------------------------------------------------


def test_map_over_a_list_keeps_order():
    async def slow_first(n):
        await asyncio.sleep(0.001 * (10 - n))  # later items finish first
        return n * n

    sub = Flow("sq")
    sub.node(slow_first)
    flow = Flow()
    chunks = flow.map(sub, name="chunks")
    assert chunks.kind == "map" and chunks.inputs == ["n"] and chunks.outputs == ("chunks",)
    assert run(flow.run({"n": list(range(10))}))["chunks"] == [n * n for n in range(10)]


def test_map_over_a_dict_keeps_its_keys_and_empty_inputs():
    flow = Flow()
    flow.map(chain_flow(), name="m")
    assert run(flow.run({"x": {"a": 1, "b": 2}}))["m"] == {"a": 3, "b": 5}
    assert run(flow.run({"x": []}))["m"] == []
    assert run(flow.run({"x": {}}))["m"] == {}
    assert run(flow.run({"x": range(3)}))["m"] == [1, 3, 5]


def test_map_over_10000_items_is_10000_scheduled_tasks():
    calls = []
    flow = Flow()
    chunks = flow.map(counted_sub(calls), name="chunks")
    flow.node(load, output="items") >> flow.node(lambda items: list(range(10_000)), name="make")
    flow["make"] >> chunks >> flow.node(total)
    outer = flow.engine()
    steps = []
    outer.events.subscribe(lambda e: steps.append(e.task_name), StepCompleted)
    grew = []
    outer.events.subscribe(grew.append, RunGrew)
    assert len(outer.dag) == 4  # the map is one task of the graph built
    started = time.perf_counter()
    results = run(outer.execute({"source": None}))
    elapsed = time.perf_counter() - started
    assert results["total"] == sum(n * n for n in range(10_000))
    assert len(calls) == 10_000 and sorted(calls) == list(range(10_000))
    # one task per item, added to the run itself, and one collecting their results
    items = [name for name in steps if name.startswith("chunks[")]
    assert len(items) == 10_001 and items[-1] == "chunks[*]"
    assert all(name.endswith("].square") for name in items[:-1])
    assert [name for name in steps if not name.startswith("chunks[")] == [
        "load",
        "make",
        "chunks",
        "total",
    ]
    assert [(g.added, g.total) for g in grew] == [(10_001, 10_005)]
    # the items' keys are the map's own: not among the run's outputs
    assert set(results) == {"items", "make", "chunks", "total"}
    assert elapsed < 20


def test_map_of_a_two_node_sub_flow_schedules_every_node():
    flow = Flow()
    flow.map(chain_flow(), name="m")
    engine = flow.engine()
    seen = []
    engine.events.subscribe(lambda e: seen.append(e.task_name), StepCompleted)
    assert run(engine.execute({"x": list(range(1000))}))["m"] == [2 * x + 1 for x in range(1000)]
    assert len(seen) == 2000 + 2  # each item's two tasks, the collecting task, the map
    assert {"m[0].double", "m[0].inc", "m[999].inc"} <= set(seen)


def test_map_feeds_a_reduce_node():
    def split_text(text):
        return text.split(",")

    def tokenize(chunk):
        return chunk.split()

    def count(tokens):
        return len(tokens)

    def reduce(counts):
        return {"chunks": len(counts), "tokens": sum(counts)}

    words = Flow("words")
    words.node(tokenize) >> words.node(count)
    flow = Flow()
    flow.node(split_text) >> flow.map(words, name="chunks") >> flow.node(reduce)
    results = run(flow.run({"text": "a b, c d e, f"}))
    assert results["chunks"] == [2, 3, 1]
    assert results["reduce"] == {"chunks": 3, "tokens": 6}


def test_map_honours_max_parallel():
    class Gauge:
        def __init__(self):
            self.now = self.peak = 0

        async def __call__(self, item):
            self.now += 1
            self.peak = max(self.peak, self.now)
            await asyncio.sleep(0.002)
            self.now -= 1
            return item

    gauge = Gauge()
    sub = Flow("g")
    sub.node(gauge, name="gauge", output="g")
    flow = Flow()
    flow.map(sub, name="m", max_parallel=3)
    assert run(flow.run({"item": list(range(30))}))["m"] == list(range(30))
    assert gauge.peak == 3
    # without its own bound the map takes the run's max_parallel
    gauge.peak = 0
    flow2 = Flow()
    flow2.map(sub, name="m")
    run(flow2.run({"item": list(range(30))}, max_parallel=5))
    assert gauge.peak == 5


def test_map_items_are_tasks_of_the_run_under_its_settings(monkeypatch, broker):
    """No nested engine: the items run in the map's own run (one run id), on its broker and
    transport, under its retries."""
    made = []
    real_init = ExecutionEngine.__init__

    def recording(self, *args, **kwargs):
        made.append(self)
        real_init(self, *args, **kwargs)

    failed_once = set()

    def flaky(x):
        if x not in failed_once:
            failed_once.add(x)
            raise RuntimeError(f"first try of {x}")
        return -x

    sub = Flow("f")
    sub.node(flaky)
    flow = Flow()
    flow.map(sub, name="m")
    engine = flow.engine(broker, transport="local", retries=2, timeout=5)
    steps = []
    engine.events.subscribe(steps.append, StepCompleted)
    monkeypatch.setattr(ExecutionEngine, "__init__", recording)
    assert run(engine.execute({"x": [1, 2, 3]}))["m"] == [-1, -2, -3]
    assert made == []  # the map made no engine of its own
    assert len({step.run_id for step in steps}) == 1
    assert {step.task_name: step.attempt for step in steps if "flaky" in step.task_name} == {
        "m[0].flaky": 2,
        "m[1].flaky": 2,
        "m[2].flaky": 2,
    }


def test_map_of_a_sub_flow_with_a_call_and_a_map_inside():
    leaf = chain_flow("leaf")
    inner = Flow("inner")
    inner.node(leaf, name="c") >> inner.node(inc, name="after")
    row = Flow("row")
    row.map(inner, name="cells")
    flow = Flow()
    flow.map(row, name="rows")
    results = run(flow.run({"x": [[1, 2], [], [3]]}))
    assert results["rows"] == [[4, 6], [], [8]]


def test_map_item_failure_names_the_item_task():
    def fragile(n):
        if n == 3:
            raise ValueError("bad item 3")
        return n

    sub = Flow("f")
    sub.node(fragile)
    flow = Flow()
    flow.map(sub, name="items")
    with pytest.raises(TaskFailedError) as info:
        run(flow.run({"n": list(range(5))}))
    assert info.value.task_name == "items[3].fragile"
    assert "bad item 3" in str(info.value)


def test_map_failure_with_fail_fast_false_skips_dependents():
    def fragile(n):
        if n == 1:
            raise ValueError("no")
        return n

    sub = Flow("f")
    sub.node(fragile)
    flow = Flow()
    flow.map(sub, name="items") >> flow.node(total)
    flow.node(inc)
    with pytest.raises(DataflowExecutionError) as info:
        run(flow.run({"n": [0, 1, 2], "x": 1}, fail_fast=False))
    # the map, the task collecting its items and what reads the map: behind the failed item
    cause = "items[1].fragile"
    assert info.value.skipped == {"items": cause, "items[*]": cause, "total": cause}
    assert info.value.results == {"inc": 2}  # the items' own keys are not outputs of the run


def test_map_over_something_that_is_not_a_list():
    flow = Flow()
    flow.map(chain_flow(), name="m")
    with pytest.raises(TaskFailedError, match="map node 'm' needs a list"):
        run(flow.run({"x": "abc"}))


def test_map_without_a_flow_run_runs_in_process():
    flow = Flow()
    flow.map(chain_flow(), name="m")
    dag = flow.build_dag()
    assert run(ExecutionEngine(None, dag).execute({"x": [1, 2]}))["m"] == [3, 5]


# -- errors -------------------------------------------------------------------------------------


def test_cycle_through_rshift_names_the_path():
    flow = Flow()
    a, b, c = flow.node(inc, name="a"), flow.node(inc, name="b"), flow.node(inc, name="c")
    a >> b >> c
    with pytest.raises(CycleError, match=r"'c >> a' closes a cycle: c -> a -> b -> c") as info:
        c >> a
    assert info.value.cycle == ["c", "a", "b", "c"]
    flow2 = Flow()
    lone = flow2.node(inc, name="lone")
    with pytest.raises(CycleError, match="'lone >> lone' closes a cycle: lone -> lone"):
        lone >> lone


def test_cycle_by_names_is_reported_by_build_dag():
    @pipeline_task(output="p")
    def f(q):
        return q

    @pipeline_task(output="q")
    def g(p):
        return p

    flow = Flow()
    flow.node(f)
    flow.node(g)
    with pytest.raises(CycleError, match="f -> g -> f|g -> f -> g"):
        flow.build_dag()


def test_ambiguous_wiring_names_both_nodes():
    @pipeline_task(outputs=["low", "high"])
    def split(values):
        return values, values

    def pair(left, right):
        return left, right

    def nothing():
        return 0

    flow = Flow()
    s, p, n = flow.node(split), flow.node(pair), flow.node(nothing)
    with pytest.raises(
        FlowError, match=r"'split >> pair': node 'split' has 2 outputs.*split\['low'\]"
    ):
        s >> p
    with pytest.raises(FlowError, match=r"'nothing >> pair': node 'pair' has 2 unbound inputs"):
        n >> p
    with pytest.raises(FlowError, match=r"'pair >> nothing': node 'nothing' has no unbound input"):
        p >> n
    with pytest.raises(FlowError, match="node 'split' has no output 'mid'"):
        s["mid"] >> p
    with pytest.raises(FlowError, match="node 'pair' has no input 'middle'"):
        n >> p["middle"]
    n >> p["left"]
    with pytest.raises(
        FlowError, match="input 'left' of node 'pair' is already wired to 'nothing'"
    ):
        s["low"] >> p["left"]


def test_unknown_nodes():
    flow, other = Flow("main"), Flow("other")
    a, b = flow.node(inc), other.node(inc)
    with pytest.raises(FlowError, match="node 'inc' belongs to flow 'other'.*unknown node"):
        a >> b
    with pytest.raises(KeyError, match="flow 'main' has no node named 'nope'.*\\['inc'\\]"):
        flow["nope"]
    assert flow["inc"] is a and "inc" in flow and a in flow and b not in flow
    with pytest.raises(TypeError, match="right side must be a node.*flow.node"):
        a >> inc
    with pytest.raises(FlowError, match="already a node of flow 'other'"):
        flow.node(b)


def test_sub_flow_without_exactly_one_source_and_sink():
    def pair(left, right):
        return left + right

    two_sources = Flow("two_sources")
    two_sources.node(pair)
    two_sinks = Flow("two_sinks")
    two_sinks.node(inc) >> [two_sinks.node(double), two_sinks.node(inc, name="again")]
    no_source = Flow("no_source")
    no_source.node(lambda: 1, name="const")
    flow = Flow()
    with pytest.raises(FlowError, match=r"cannot call flow 'two_sources'.*2 source inputs"):
        flow.node(two_sources)
    with pytest.raises(FlowError, match=r"cannot map flow 'two_sinks'.*2 sink outputs"):
        flow.map(two_sinks)
    with pytest.raises(FlowError, match=r"cannot map flow 'no_source'.*0 source inputs"):
        flow.map(no_source)
    with pytest.raises(FlowError, match=r"cannot call flow 'main'.*0 source inputs.*0 sink"):
        flow.node(Flow("main"))
    # a sub-flow changed after the call was added is checked again when built
    sub = chain_flow()
    flow.node(sub, name="c")
    sub.node(pair)
    with pytest.raises(FlowError, match=r"cannot call flow 'sub'"):
        flow.build_dag()


def test_a_flow_cannot_call_itself():
    flow = chain_flow("me")
    with pytest.raises(FlowError, match="flow 'me' cannot call itself"):
        flow.node(flow)
    outer = Flow("outer")
    outer.node(flow, name="inner")
    with pytest.raises(FlowError, match="flow 'me' cannot map itself"):
        flow.map(outer)


def test_names_outputs_and_arguments_are_checked():
    flow = Flow("main")
    flow.node(inc, name="a")
    with pytest.raises(FlowError, match="already has a node named 'a'"):
        flow.node(double, name="a")
    with pytest.raises(FlowError, match="node 'b' would produce 'a', which node 'a' already"):
        flow.node(double, name="b", output="a")

    @pipeline_task(outputs=["p", "q"])
    def two(x):
        return x, x

    with pytest.raises(FlowError, match=r"node 'two'.*outputs \['p', 'q'\].*output='p2'"):
        flow.node(two, output="p2")
    renamed = flow.node(two, output=["p2", "q2"])
    assert renamed.outputs == ("p2", "q2")
    with pytest.raises(TypeError, match="node\\(\\) takes a function"):
        flow.node(42)
    with pytest.raises(TypeError, match="map\\(\\) takes a Flow"):
        flow.map(inc)
    with pytest.raises(ValueError, match="max_parallel must be a positive integer"):
        flow.map(chain_flow(), max_parallel=0)


def test_duplicate_outputs_across_calls_are_reported_at_build():
    flow = Flow()
    flow.node(chain_flow(), name="c")
    flow.node(inc, output="c.double")  # the call's inner key, produced twice
    with pytest.raises(DAGValidationError, match="Output 'c.double' is produced by two tasks"):
        flow.build_dag()


# -- on the NATS cluster ------------------------------------------------------------------------


def test_map_runs_on_the_nats_cluster():
    """The map's items run on cluster workers; the map task and plain functions run here."""
    import cluster_tasks
    from cluster_support import WorkerProcesses
    from taskiq_dataflow.cluster import DataflowNatsBroker, NatsServer

    def numbers(n):
        return list(range(n))

    echo_twice = Flow("echo_twice")
    echo_twice.node(cluster_tasks.echo) >> echo_twice.node(cluster_tasks.echo, output="again")
    flow = Flow("cluster")
    items = flow.map(echo_twice, name="items", max_parallel=8)
    flow.node(numbers) >> items >> flow.node(total)
    flow.node(echo_twice, name="one") >> flow.node(inc, name="after")
    with NatsServer() as server, WorkerProcesses(server.url, workers=2):
        broker = DataflowNatsBroker(
            server.url,
            codec=cluster_tasks.broker.codec,
            heartbeat_timeout=1.0,
            progress_timeout=20.0,
        )
        engine = flow.engine(broker)
        outer: list[StepCompleted] = []
        engine.events.subscribe(outer.append, StepCompleted)
        results = run(engine.execute({"n": 20, "value": 41}))
    assert results["items"] == list(range(20)) and results["total"] == sum(range(20))
    assert results["one"] == 41 and results["after"] == 42
    steps = [s for s in outer if s.task_name.startswith("items[") and s.task_name[-1] != "]"]
    assert len(steps) == 40 and all(s.worker for s in steps)  # every item task on a worker
    where = {s.task_name: s.worker for s in outer}
    assert where["numbers"] is None and where["items"] is None and where["total"] is None
    assert where["items[*]"] is None  # collecting the results needs no worker
    assert where["one.echo"] and where["one.echo_2"]  # the call's tasks went to the cluster


def test_a_100000_item_map_completes_on_the_cluster():
    import cluster_tasks
    from cluster_support import WorkerProcesses
    from taskiq_dataflow.cluster import DataflowNatsBroker, NatsServer

    def numbers(n):
        return list(range(n))

    echo = Flow("echo")
    echo.node(cluster_tasks.echo)
    flow = Flow("big")
    items = flow.map(echo, name="items")
    flow.node(numbers) >> items >> flow.node(total)
    on_workers = 0

    def count(step):
        nonlocal on_workers
        on_workers += step.worker is not None

    with NatsServer() as server, WorkerProcesses(server.url, workers=2):
        broker = DataflowNatsBroker(
            server.url, codec=cluster_tasks.broker.codec, heartbeat_timeout=2.0
        )
        engine = flow.engine(broker)
        engine.events.subscribe(count, StepCompleted)
        results = run(engine.execute({"n": 100_000}))
    assert results["items"] == list(range(100_000))
    assert results["total"] == sum(range(100_000))
    assert on_workers == 100_000  # 100,000 tasks added to the run, each run on a worker


def test_fan_out_checks_every_target_before_wiring():
    flow = Flow()
    a, b = flow.node(inc), flow.node(double)
    with pytest.raises(TypeError, match="right side must be a node.*got int"):
        a >> [b, 3]
    assert b.inputs == ["x"]  # nothing wired


def test_the_runs_timeout_bounds_each_item_not_the_whole_map():
    async def slow(n):
        await asyncio.sleep(0.01)
        return n

    sub = Flow("s")
    sub.node(slow)
    flow = Flow()
    flow.map(sub, name="m", max_parallel=1)
    # 20 items one at a time take 0.2 s: more than the per-task timeout, and that is fine
    assert run(flow.run({"n": list(range(20))}, timeout=0.1))["m"] == list(range(20))

    async def too_slow(n):
        await asyncio.sleep(1)

    sub2 = Flow("s2")
    sub2.node(too_slow)
    flow2 = Flow()
    flow2.map(sub2, name="m")
    with pytest.raises(TaskFailedError, match=r"m\[0\].too_slow' timed out"):
        run(flow2.run({"n": [0]}, timeout=0.05))


def test_cancelling_the_run_cancels_the_map_items():
    started = []

    async def forever(n):
        started.append(n)
        await asyncio.sleep(60)

    sub = Flow("s")
    sub.node(forever)
    flow = Flow()
    flow.map(sub, name="m")
    engine = flow.engine()

    async def go():
        task = asyncio.ensure_future(engine.execute({"n": list(range(5))}))
        while len(started) < 5:
            await asyncio.sleep(0.001)
        engine.cancel()
        return await task

    began = time.perf_counter()
    with pytest.raises(ExecutionCancelled):
        run(go())
    assert time.perf_counter() - began < 5
