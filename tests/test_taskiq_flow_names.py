"""taskiq-flow's names, module paths and DAG/registry behaviour, as its docs and 1.2.2 source
have them, with our correctness where 1.2.2 is wrong (issue 11)."""

import importlib
import json

import pytest
from conftest import run
from taskiq_dataflow import (
    CycleError,
    DAGNode,
    DAGValidationError,
    DataCache,
    DataflowPipeline,
    DataflowRegistry,
    ExecutionEngine,
    MissingInputError,
    PipelineError,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow.dag_builder import DAGBuilder
from taskiq_dataflow.dataflow import DAG
from taskiq_dataflow.dataflow.node import DataNode
from taskiq_dataflow.decorators import (
    get_all_pipeline_outputs,
    get_pipeline_metadata,
    get_task_by_output,
    get_task_inputs,
    get_task_outputs,
    is_pipeline_task,
    pipeline_task_multi_output,
    validate_pipeline_outputs,
)
from taskiq_dataflow.visualization import DAGVisualizer, MermaidGenerator, visualize_pipeline

# -- names and module paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "taskiq_dataflow",
            [
                "DataNode",
                "DAGBuilder",
                "DAGVisualizer",
                "MermaidGenerator",
                "PipelineError",
                "pipeline_task_multi_output",
                "is_pipeline_task",
                "get_task_outputs",
                "get_pipeline_metadata",
                "get_task_by_output",
                "get_all_pipeline_outputs",
                "validate_pipeline_outputs",
                "visualize_pipeline",
            ],
        ),
        (
            "taskiq_dataflow.dag_builder",
            ["DAGBuilder"],
        ),
        (
            "taskiq_dataflow.dataflow",
            ["DAG", "DAGNode", "DataCache", "DataNode", "DataflowRegistry"],
        ),
        ("taskiq_dataflow.dataflow.node", ["DataNode"]),
        ("taskiq_dataflow.decorators", ["pipeline_task", "pipeline_task_multi_output"]),
        ("taskiq_dataflow.visualization", ["DAGVisualizer", "MermaidGenerator", "DAG"]),
        ("taskiq_dataflow.visualization.dag_visualizer", ["DAGVisualizer", "visualize_pipeline"]),
        ("taskiq_dataflow.visualization.mermaid", ["MermaidGenerator"]),
    ],
)
def test_documented_names_import(module, names):
    imported = importlib.import_module(module)
    missing = [n for n in names if not hasattr(imported, n)]
    assert not missing, f"{module} lacks {missing}"
    if module == "taskiq_dataflow":
        assert set(names) <= set(imported.__all__)


def test_one_dag_builder_everywhere():
    import taskiq_dataflow
    from taskiq_dataflow.dataflow.dag import DAGBuilder as FromDag

    assert taskiq_dataflow.DAGBuilder is DAGBuilder is FromDag


# -- pipeline_task ---------------------------------------------------------------------------


def test_pipeline_task_output_and_inputs_positional():
    @pipeline_task("doubled")
    def double(x):
        return 2 * x

    @pipeline_task("summed", ["a", "b"])
    def add(**kw):
        return kw["a"] + kw["b"]

    assert get_task_outputs(double) == ["doubled"] and get_task_inputs(double) == ["x"]
    assert get_task_outputs(add) == ["summed"] and get_task_inputs(add) == ["a", "b"]
    dag = DAGBuilder.from_tasks([double, add])
    assert run(ExecutionEngine(None, dag).execute({"x": 2, "a": 1, "b": 2})) == {
        "doubled": 4,
        "summed": 3,
    }


def test_pipeline_task_output_given_twice_is_refused():
    with pytest.raises(TypeError, match="given positionally and as output="):
        pipeline_task("a", output="b")
    with pytest.raises(TypeError, match="inputs given twice"):
        pipeline_task("a", ["x"], inputs=["y"])


def test_pipeline_task_refuses_max_retry_time():
    with pytest.raises(TypeError, match=r"max_retry_time= is not supported: .*timeout="):
        pipeline_task("a", max_retry_time=300)


def test_self_and_cls_are_never_inferred_as_inputs():
    @pipeline_task(output="m")
    def method(self, features):
        return features

    @pipeline_task(output="c")
    def classmethod_like(cls, features, scale=2):
        return features

    assert get_task_inputs(method) == ["features"]
    assert get_task_inputs(classmethod_like) == ["features"]
    registry = DataflowRegistry()
    registry.register_task(method)
    assert registry.get_data_dependencies(method) == ["features"]


# -- the decorators module -------------------------------------------------------------------


def test_is_pipeline_task_and_metadata(broker):
    @broker.task
    @pipeline_task(output="features", retries=2, description="extract")
    async def extract(data):
        return data

    async def plain(data):
        return data

    assert is_pipeline_task(extract) and is_pipeline_task(extract.original_func)
    assert not is_pipeline_task(plain)
    assert get_task_outputs(extract) == ["features"] and get_task_outputs(plain) == []
    meta = get_pipeline_metadata(extract)
    assert meta["output"] == "features" and meta["inputs"] == ["data"]
    assert meta["retries"] == 2 and meta["is_pipeline_task"] is True
    assert meta["multiple_outputs"] is False and meta["description"] == "extract"
    assert get_pipeline_metadata(plain) == {}


@pytest.mark.parametrize("outputs", [["half", "rest"], {"half": int, "rest": int}])
def test_pipeline_task_multi_output(outputs):
    @pipeline_task_multi_output(outputs=outputs)
    def split(value):
        return {"half": value // 2, "rest": value % 2}

    assert get_task_outputs(split) == ["half", "rest"]
    meta = get_pipeline_metadata(split)
    assert meta["multiple_outputs"] is True and meta["output"] == "half"
    assert meta["output_types"] == ({"half": int, "rest": int} if isinstance(outputs, dict) else {})
    dag = DAGBuilder.from_tasks([split])
    assert run(ExecutionEngine(None, dag).execute({"value": 7})) == {"half": 3, "rest": 1}


def test_pipeline_task_multi_output_refuses_a_string_or_nothing():
    with pytest.raises(TypeError, match="pipeline_task\\(output='x'\\)"):
        pipeline_task_multi_output(outputs="x")
    with pytest.raises(ValueError, match="outputs is empty"):
        pipeline_task_multi_output(outputs=[])


def test_task_by_output_and_all_outputs():
    @pipeline_task(output="names_test_only_key")
    def producer(x):
        return x

    assert get_task_by_output("names_test_only_key") is producer
    assert get_task_by_output("names_test_no_such_key") is None
    assert "names_test_only_key" in get_all_pipeline_outputs()

    @pipeline_task(output="names_test_only_key")
    def rival(y):
        return y

    with pytest.raises(ValueError, match=r"declared by 2 tasks \('producer', 'rival'\)"):
        get_task_by_output("names_test_only_key")


def test_validate_pipeline_outputs_checks_the_tasks_given():
    @pipeline_task(output="v")
    def one(a):
        return a

    @pipeline_task(output="v")
    def two(b):
        return b

    @pipeline_task(output="w")
    def three(c):
        return c

    validate_pipeline_outputs([one, three])  # `two` exists, but was not given
    with pytest.raises(PipelineError) as info:
        validate_pipeline_outputs([one, two, three])
    assert isinstance(info.value, ValueError)
    assert str(info.value) == "Output 'v' is produced by two tasks: 'one' and 'two'"
    with pytest.raises(TypeError, match="'len' has no @pipeline_task"):
        validate_pipeline_outputs([one, len])


# -- DataNode and the registry ---------------------------------------------------------------


def test_data_node():
    node = DataNode(name="features")
    assert node.producer_task is None and node.consumers == [] and node.is_external is False
    node.add_consumer(len)
    node.add_consumer(len)
    node.set_producer(abs)
    assert node.consumers == [len] and node.producer_task is abs
    external = DataNode(name="user_config", is_external=True)
    assert external.is_external


def test_registry_data_nodes_clear_and_contains():
    load, clean = make("load"), make("clean")
    registry = DataflowRegistry()
    registry.register_task(clean, output="clean", inputs=["raw"])  # consumer first
    registry.register_task(load, output="raw", inputs=["source"])
    registry.register_external_input("source")
    nodes = registry.data_nodes
    assert set(nodes) == {"clean", "raw", "source"}
    assert nodes["raw"].producer_task is load and nodes["raw"].consumers == [clean]
    assert not nodes["raw"].is_external  # taskiq-flow marks it external: its consumer came first
    assert nodes["source"].is_external and nodes["source"].consumers == [load]
    assert load in registry and registry.get_tasks()[0] in registry and len not in registry
    registry.clear()
    assert len(registry) == 0 and registry.get_external_inputs() == [] and load not in registry
    assert registry.data_nodes == {}


def test_producer_and_consumers_compare_with_the_task_object(broker):
    @broker.task
    @pipeline_task(output="raw")
    async def load(source):
        return source

    @broker.task
    @pipeline_task(output="clean")
    async def clean(raw):
        return raw

    registry = DataflowRegistry()
    registry.register_task(load)
    registry.register_task(clean)
    assert registry.get_producer("raw") == load
    assert registry.get_producer("raw") != clean
    assert clean in registry.get_consumers("raw")
    assert load not in registry.get_consumers("raw")
    # equal objects hash alike, so a node finds its task in a set and the other way round
    assert registry.get_producer("raw") in {load} and load in set(registry.get_tasks())


# -- external inputs: never by registration order --------------------------------------------


def make(name):
    async def f(**kwargs):
        return kwargs

    f.__name__ = name
    return f


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_external_inputs_do_not_depend_on_registration_order(order):
    tasks = [
        (make("load_data"), "raw_data", ["source"]),
        (make("broken_task"), "result", ["nonexistent_data"]),
    ]

    def registry(declare):
        reg = DataflowRegistry()
        for i in order:
            task, out, ins = tasks[i]
            reg.register_task(task, output=out, inputs=ins)
        for key in declare:
            reg.register_external_input(key)
        return reg

    # none declared: every unproduced input is external (taskiq-flow's dataflow guide)
    dag = registry([]).build_dag()
    assert sorted(dag.external_inputs) == ["nonexistent_data", "source"]
    # declared: they are the whole list (its registry example 3), whichever task came first
    with pytest.raises(DAGValidationError) as info:
        registry(["source"]).build_dag()
    assert str(info.value).startswith(
        "Task 'broken_task' requires input 'nonexistent_data' but no task produces it"
    )
    with pytest.raises(DAGValidationError, match="'load_data' requires input 'source'"):
        registry(["nonexistent_data"]).build_dag()


def test_strict_inputs_forces_either_rule():
    def registry(**options):
        reg = DataflowRegistry(**options)
        reg.register_task(make("a"), output="x", inputs=["given"])
        return reg

    with pytest.raises(DAGValidationError, match="'a' requires input 'given'"):
        registry(strict_inputs=True).build_dag()
    with pytest.raises(DAGValidationError, match="'a' requires input 'given'"):
        registry().build_dag(strict_inputs=True)
    lenient = registry(strict_inputs=False)
    lenient.register_external_input("other")
    assert lenient.build_dag().external_inputs == ["given"]


def test_automatic_external_input_is_required_at_run_time():
    @pipeline_task(output="raw")
    def load(source):
        return source

    dag = DAGBuilder.from_tasks([load])
    with pytest.raises(MissingInputError, match="task 'load' requires input 'source'"):
        run(ExecutionEngine(None, dag).execute({}))
    assert run(ExecutionEngine(None, dag).execute({"source": 1})) == {"raw": 1}


# -- DAGBuilder's one-call builders ----------------------------------------------------------


def chain():
    @pipeline_task(output="raw")
    def load(source):
        return source

    @pipeline_task(output="clean")
    def clean(raw):
        return raw

    @pipeline_task(output="stats")
    def analyze(clean):
        return clean

    return load, clean, analyze


def test_dag_builder_from_tasks():
    load, clean, analyze = chain()
    dag = DAGBuilder.from_tasks([analyze, clean, load], external_inputs=["source"])
    assert [n.task_name for n in dag.topological_sort()] == ["load", "clean", "analyze"]
    assert dag.external_inputs == ["source"]
    assert DAGBuilder.from_callable_tasks([load, clean]).output_keys == ["raw", "clean"]
    registry = DataflowRegistry()
    assert len(DAGBuilder.from_tasks([load], registry=registry)) == 1 and load in registry


def test_dag_builder_from_tasks_refusals():
    load, clean, _ = chain()
    with pytest.raises(DAGValidationError, match="External input 'raw' is produced by task 'load'"):
        DAGBuilder.from_tasks([load, clean], external_inputs=["raw"])

    async def undecorated(raw):
        return raw

    # taskiq-flow drops such a task without a word
    with pytest.raises(ValueError, match="task 'undecorated' declares no output"):
        DAGBuilder.from_tasks([load, undecorated])


def test_validate_dag():
    load, clean, _ = chain()

    @pipeline_task(output="other")
    def unrelated(seed):
        return seed

    # disconnected parts are a valid DAG (taskiq-flow 1.2.2 rejects them)
    DAGBuilder.validate_dag(DAGBuilder.from_tasks([load, clean, unrelated]))
    with pytest.raises(DAGValidationError, match="contains no tasks"):
        DAGBuilder.validate_dag(DAG())
    cyclic = DAG()
    a, b = DAGNode(make("a"), "x", ["y"]), DAGNode(make("b"), "y", ["x"])
    cyclic.add_node(a)
    cyclic.add_node(b)
    with pytest.raises(CycleError, match="Circular dependency detected: a -> b -> a"):
        DAGBuilder.validate_dag(cyclic)


def test_analyze_missing_dependencies():
    load, clean, analyze = chain()
    assert DAGBuilder.analyze_missing_dependencies([clean, analyze]) == {"clean": ["raw"]}
    registry = DataflowRegistry()
    registry.register_task(load)
    assert DAGBuilder.analyze_missing_dependencies([clean], registry) == {}
    assert DAGBuilder.analyze_missing_dependencies([load], registry) == {"load": ["source"]}
    registry.register_external_input("source")
    assert DAGBuilder.analyze_missing_dependencies([load, clean], registry) == {}


# -- DAG, DAGNode, DataCache -----------------------------------------------------------------


def diamond():
    registry = DataflowRegistry()
    registry.register_task(make("load"), output="raw", inputs=["source"])
    registry.register_task(make("tags"), output="tags", inputs=["raw"])
    registry.register_task(make("embed"), output="embedding", inputs=["raw"])
    registry.register_task(make("report"), output="report", inputs=["tags", "embedding"])
    return registry.build_dag()


def test_compute_levels_and_node_levels():
    dag = diamond()
    levels = dag.compute_levels()
    assert [[n.task_name for n in level] for level in levels] == [
        ["load"],
        ["tags", "embed"],
        ["report"],
    ]
    assert [n.level for n in dag.nodes] == [0, 1, 1, 2]
    assert DAGNode(make("alone"), "o", []).level == 0
    report = dag.nodes[3]
    assert [n.task_name for n in report.dependencies] == ["tags", "embed"]
    assert [n.task_name for n in dag.nodes[0].dependents] == ["tags", "embed"]
    assert report.dependents == [] and dag.nodes[0].dependencies == []


def test_compute_levels_reports_a_cycle():
    dag = DAG()
    dag.add_node(DAGNode(make("a"), "x", ["y"]))
    dag.add_node(DAGNode(make("b"), "y", ["x"]))
    with pytest.raises(CycleError, match="Circular dependency detected: a -> b -> a"):
        dag.compute_levels()


def test_get_node_by_task():
    load = make("load")
    dag = DAG()
    node = dag.add_node(DAGNode(load, "raw", []))
    assert dag.get_node_by_task(load) == node and dag.get_node_by_task(len) is None
    dag.add_node(DAGNode(load, "raw2", []))
    with pytest.raises(ValueError, match=r"task 'load' runs in 2 nodes \(ids \[0, 1\]\)"):
        dag.get_node_by_task(load)


def test_data_cache_size_and_keys():
    cache = DataCache()
    assert cache.size == 0 and cache.keys() == []
    cache.set("b", 1)
    cache.set("a", 2)
    assert cache.size == 2 and cache.keys() == ["b", "a"]


# -- errors ----------------------------------------------------------------------------------


def test_pipeline_error_is_the_base_of_build_and_run_failures():
    for error in (DAGValidationError, CycleError, MissingInputError, TaskFailedError):
        assert issubclass(error, PipelineError), error

    @pipeline_task(output="boom")
    def fail():
        raise RuntimeError("no")

    with pytest.raises(PipelineError, match="no"):
        run(ExecutionEngine(None, DAGBuilder.from_tasks([fail])).execute({}))


def test_registry_cycle_says_circular_dependency():
    registry = DataflowRegistry()
    registry.register_task(make("a"), output="x", inputs=["z"])
    registry.register_task(make("b"), output="y", inputs=["x"])
    registry.register_task(make("c"), output="z", inputs=["y"])
    with pytest.raises(CycleError) as info:
        registry.build_dag()
    assert str(info.value) == "Circular dependency detected: a -> b -> c -> a"


# -- the visualizer --------------------------------------------------------------------------


def test_visualizer_static_and_on_an_instance():
    dag = diamond()
    viz = DAGVisualizer(dag)
    for method in (
        "to_json",
        "to_cytoscape_json",
        "detect_critical_path",
        "find_parallelizable_groups",
        "to_dot",
        "to_mermaid",
        "to_ascii",
    ):
        assert getattr(viz, method)() == getattr(DAGVisualizer, method)(dag), method
    assert viz.to_graphviz() == DAGVisualizer.to_dot(dag)
    assert viz.visualize_ascii() == DAGVisualizer.to_ascii(dag)
    with pytest.raises(TypeError, match="takes a DAG, got list"):
        DAGVisualizer([])


def test_visualizer_json():
    data = DAGVisualizer.to_json(diamond())
    json.dumps(data)
    assert [n["id"] for n in data["nodes"]] == ["load", "tags", "embed", "report"]
    assert [n["level"] for n in data["nodes"]] == [0, 1, 1, 2]
    assert {"source": "load", "target": "tags", "keys": ["raw"]} in data["edges"]
    assert data["levels"] == [["load"], ["tags", "embed"], ["report"]]
    assert data["topological_order"] == ["load", "tags", "embed", "report"]
    assert data["is_cyclic"] is False and data["edge_count"] == 4


def test_visualizer_tells_apart_tasks_of_the_same_name():
    dag = DAG()
    step = make("step")
    dag.add_node(DAGNode(step, "a", []))
    dag.add_node(DAGNode(step, "b", ["a"]))
    assert DAGVisualizer.detect_critical_path(dag) == ["step#0", "step#1"]
    assert DAGVisualizer.to_json(dag)["edges"][0]["target"] == "step#1"


def test_visualizer_cytoscape_critical_path_and_groups():
    dag = diamond()
    elements = DAGVisualizer.to_cytoscape_json(dag)
    assert [e["data"]["id"] for e in elements["nodes"]] == ["load", "tags", "embed", "report"]
    positions = {e["data"]["id"]: e["position"] for e in elements["nodes"]}
    assert positions["tags"]["x"] == positions["embed"]["x"] > positions["load"]["x"]
    assert positions["tags"]["y"] != positions["embed"]["y"]
    assert {"id": "load->tags", "source": "load", "target": "tags", "keys": ["raw"]} in [
        e["data"] for e in elements["edges"]
    ]
    assert DAGVisualizer.detect_critical_path(dag) == ["load", "tags", "report"]
    assert DAGVisualizer.find_parallelizable_groups(dag) == [
        ["load"],
        ["tags", "embed"],
        ["report"],
    ]
    assert DAGVisualizer.detect_critical_path(DAG()) == []


def test_visualize_pipeline_and_pipeline_dag(broker):
    load, clean, analyze = chain()
    pipeline = DataflowPipeline.from_tasks(broker, [load, clean, analyze])
    assert pipeline._dag.output_keys == ["raw", "clean", "stats"]
    assert visualize_pipeline(pipeline) == DAGVisualizer.to_json(pipeline.dag)
    assert visualize_pipeline(pipeline.dag)["topological_order"] == ["load", "clean", "analyze"]
    with pytest.raises(TypeError, match="got int"):
        visualize_pipeline(3)


def test_mermaid_generator():
    mermaid = MermaidGenerator(diamond())
    text = mermaid.to_mermaid()
    assert text.splitlines()[0] == "flowchart TD"
    assert '    n0["load"]' in text and "    n0 -->|raw| n1" in text
    styled = mermaid.to_mermaid_with_styling(orientation="LR")
    assert styled.splitlines()[0] == "flowchart LR"
    assert '    in0(["source"]):::input' in styled and "    in0 --> n0" in styled
    assert '    n3["report"]:::output' in styled and '    n1["tags"]:::process' in styled
    assert '<div class="mermaid">' in mermaid.to_mermaid_interactive()
    with pytest.raises(ValueError, match="unknown Mermaid orientation 'UP': use one of TB"):
        mermaid.to_mermaid("UP")
