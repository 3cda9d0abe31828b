import pytest
from taskiq_dataflow import (
    CycleError,
    DAGValidationError,
    DataflowRegistry,
    pipeline_task,
)


def make(name, *params):
    async def f(**kwargs):
        return kwargs

    f.__name__ = name
    return f


@pytest.fixture
def four(broker):
    @broker.task
    @pipeline_task(output="raw_data")
    async def load_data(source: str) -> dict:
        return {"source": source}

    @broker.task
    @pipeline_task(output="cleaned_data")
    async def clean_data(raw_data: dict) -> dict:
        return raw_data

    @broker.task
    @pipeline_task(output="features")
    async def extract_features(cleaned_data: dict) -> dict:
        return cleaned_data

    @broker.task
    @pipeline_task(output="report")
    async def generate_report(features: dict) -> dict:
        return features

    registry = DataflowRegistry()
    registry.register_task(load_data, output="raw_data", inputs=["source"])
    registry.register_task(clean_data, output="cleaned_data", inputs=["raw_data"])
    registry.register_task(extract_features, output="features", inputs=["cleaned_data"])
    registry.register_task(generate_report, output="report", inputs=["features"])
    return registry, (load_data, clean_data, extract_features, generate_report)


def test_documented_queries(four):
    registry, (_, clean, extract, report) = four
    assert [t.task_name for t in registry.get_tasks()] == [
        "load_data",
        "clean_data",
        "extract_features",
        "generate_report",
    ]
    assert registry.get_data_dependencies(report) == ["features"]
    assert registry.get_producer("features").task_name == "extract_features"
    assert registry.get_producer("features").task is extract
    assert registry.get_producer("nothing") is None
    assert [c.task_name for c in registry.get_consumers("raw_data")] == ["clean_data"]
    assert registry.get_consumers("unknown") == []
    assert registry.get_external_inputs() == ["source"]
    assert registry.get_outputs() == ["raw_data", "cleaned_data", "features", "report"]
    meta = registry.get_task_metadata(clean)
    assert meta["output"] == "cleaned_data" and meta["inputs"] == ["raw_data"]
    assert len(registry) == 4


def test_build_dag_shape(four):
    registry, _ = four
    dag = registry.build_dag()
    assert len(dag.nodes) == 4 and len(dag.edges) == 3
    assert [n.task_name for n in dag.topological_sort()] == [
        "load_data",
        "clean_data",
        "extract_features",
        "generate_report",
    ]
    assert [[n.task_name for n in level] for level in dag.levels] == [
        ["load_data"],
        ["clean_data"],
        ["extract_features"],
        ["generate_report"],
    ]
    assert [n.task_name for n in dag.roots] == ["load_data"]
    assert [n.task_name for n in dag.leaves] == ["generate_report"]
    assert dag.external_inputs == ["source"]


def test_inputs_inferred_from_spec_and_signature():
    @pipeline_task(output="c")
    def add(a, b, scale=1):
        return (a + b) * scale

    def plain(c):
        return c

    registry = DataflowRegistry()
    registry.register_external_input("a")
    registry.register_external_input("b")
    registry.register_task(add)
    registry.register_task(plain, output="d")
    assert registry.get_data_dependencies(add) == ["a", "b"]
    assert registry.get_data_dependencies(plain) == ["c"]
    dag = registry.build_dag()
    assert len(dag.edges) == 1


def test_missing_input_names_task_and_key(four, broker):
    registry, _ = four

    @broker.task
    @pipeline_task(output="result")
    async def broken_task(nonexistent_data: dict):
        return {"result": "broken"}

    registry.register_task(broken_task, output="result", inputs=["nonexistent_data"])
    registry.build_dag()  # none declared: an unproduced input is external, given at run time
    # declared, they are the whole list (taskiq-flow's registry example 3 plus this one line)
    registry.register_external_input("source")
    with pytest.raises(ValueError) as info:
        registry.build_dag()
    assert str(info.value).startswith(
        "Task 'broken_task' requires input 'nonexistent_data' but no task produces it"
    )
    assert isinstance(info.value, DAGValidationError)


def test_declared_external_input_is_not_missing():
    registry = DataflowRegistry()
    registry.register_task(make("a"), output="x", inputs=["given"])
    registry.register_task(make("b"), output="y", inputs=["also_given"])
    with pytest.raises(ValueError, match="'b' requires input 'also_given'"):
        registry.build_dag(external_inputs=["given"])
    registry.register_external_input("given")
    registry.register_external_input("also_given")
    dag = registry.build_dag()
    assert dag.external_inputs == ["given", "also_given"]
    assert registry.build_dag(external_inputs=["given"]) is not None


def test_duplicate_output_names_both_producers():
    registry = DataflowRegistry()
    registry.register_task(make("first"), output="x", inputs=[])
    registry.register_task(make("second"), output="x", inputs=[])
    with pytest.raises(DAGValidationError) as info:
        registry.build_dag()
    assert str(info.value) == "Output 'x' is produced by two tasks: 'first' and 'second'"


def test_cycle_is_a_path():
    registry = DataflowRegistry()
    registry.register_task(make("a"), output="x", inputs=["z"])
    registry.register_task(make("b"), output="y", inputs=["x"])
    registry.register_task(make("c"), output="z", inputs=["y"])
    with pytest.raises(CycleError) as info:
        registry.build_dag()
    assert str(info.value) == "Circular dependency detected: a -> b -> c -> a"
    assert info.value.cycle == ["a", "b", "c", "a"]


def test_every_problem_at_once():
    registry = DataflowRegistry(strict_inputs=True)
    registry.register_task(make("root"), output="r", inputs=[])
    registry.register_task(make("a"), output="x", inputs=["y"])
    registry.register_task(make("b"), output="y", inputs=["x"])
    registry.register_task(make("dup"), output="r", inputs=[])
    registry.register_task(make("lost"), output="l", inputs=["typo"])
    with pytest.raises(DAGValidationError) as info:
        registry.build_dag()
    problems = info.value.problems
    assert len(problems) == 3
    assert "Output 'r' is produced by two tasks: 'root' and 'dup'" in problems
    assert any(p.startswith("Task 'lost' requires input 'typo'") for p in problems)
    assert "Circular dependency detected: a -> b -> a" in problems
    assert str(info.value).startswith("the DAG has 3 problems:")


def test_same_name_tasks_are_told_apart_by_output():
    registry = DataflowRegistry(strict_inputs=True)
    f = make("step")
    registry.register_task(f, output="o1", inputs=[])
    registry.register_task(f, output="o2", inputs=["missing"])
    with pytest.raises(ValueError, match=r"Task 'step' \(output 'o2'\) requires input 'missing'"):
        registry.build_dag()
    with pytest.raises(ValueError, match="registered 2 times with different keys"):
        registry.get_data_dependencies(f)


def test_reregistering_same_task_is_idempotent():
    registry = DataflowRegistry()
    f = make("f")
    registry.register_task(f, output="x", inputs=[], version="1")
    registry.register_task(f, output="x", inputs=[], version="2")
    assert len(registry) == 1
    assert registry.get_task_metadata(f)["version"] == "2"


def test_bad_registrations():
    registry = DataflowRegistry()
    with pytest.raises(ValueError, match="declares no output"):
        registry.register_task(make("f"))
    with pytest.raises(TypeError, match="not the string"):
        registry.register_task(make("f"), output="x", inputs="abc", version=1)
    with pytest.raises(TypeError, match="either output= or outputs="):
        registry.register_task(make("f"), output="x", outputs=["y"])
    with pytest.raises(KeyError, match="not registered"):
        registry.get_data_dependencies(make("ghost"))
    with pytest.raises(TypeError):
        registry.register_external_input(3)


def test_non_string_key_names_the_task():
    registry = DataflowRegistry()
    registry.register_task(make("ok"), output="x", inputs=[])
    registry.register_task(make("bad"), output="y", inputs=[42])
    with pytest.raises(TypeError, match="task 'bad'.*input keys must be strings"):
        registry.build_dag()


def test_multiple_outputs():
    @pipeline_task(outputs=["lo", "hi"])
    def split(values):
        return min(values), max(values)

    registry = DataflowRegistry()
    registry.register_external_input("values")
    node = registry.register_task(split)
    registry.register_task(make("use"), output="span", inputs=["lo", "hi"])
    assert node.outputs == ["lo", "hi"] and node.output == "lo"
    dag = registry.build_dag()
    assert len(dag.edges) == 1
    assert registry.get_task_metadata(split)["outputs"] == ["lo", "hi"]
