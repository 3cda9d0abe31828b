"""DataflowRegistry.register_tasks: rows registered in bulk, as a register_task loop would."""

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskiq_dataflow import (
    DAGBuilder,
    DAGValidationError,
    DataflowRegistry,
    ExecutionEngine,
    RemoteTask,
    pipeline_task,
)
from taskiq_dataflow.dataflow.registry import RegisteredTasks, _fast_columns, _row_columns


async def add(**values):
    return 1 + sum(values.values())


async def mul(**values):
    out = 2
    for v in values.values():
        out *= v
    return out % 1_000_003


def plain(**values):
    return len(values)


def columns(dag):
    """Every column of a DAG, rows as tuples (what two registrations must agree on)."""
    return (
        list(dag.tasks),
        list(dag.task_names),
        [tuple(r) for r in dag.node_inputs],
        [tuple(r) for r in dag.node_outputs],
        [dict(m) if m else None for m in dag.node_metadata],
    )


def random_rows(n, seed, width=3):
    """Node i outputs k{i} and reads up to `width` distinct random earlier keys."""
    rnd = random.Random(seed)
    outputs = [f"k{i}" for i in range(n)]
    inputs = [
        [f"k{p}" for p in rnd.sample(range(i), min(i, rnd.randint(0, width)))] for i in range(n)
    ]
    return outputs, inputs


# -- the common case ------------------------------------------------------------------------


def test_one_task_for_every_row():
    registry = DataflowRegistry()
    nodes = registry.register_tasks(add, outputs=["a", "b", "c"], inputs=[[], ["a"], ("a", "b")])
    assert isinstance(nodes, RegisteredTasks) and len(nodes) == 3
    assert nodes.ids == range(0, 3)
    assert [n.output for n in nodes] == ["a", "b", "c"]
    assert nodes[2].inputs == ["a", "b"] and nodes[-1] == nodes[2] and nodes[2].task is add
    assert nodes[1:].ids == range(1, 3) and isinstance(nodes[1:], RegisteredTasks)
    assert "0..2" in repr(nodes)
    assert registry.get_tasks()[1] == nodes[1] and nodes[0] in registry
    dag = registry.build_dag()
    assert len(dag) == 3 and len(dag.edges) == 3
    assert asyncio.run(ExecutionEngine(None, dag).execute()) == {"a": 1, "b": 2, "c": 4}


def test_rows_are_stored_as_tuples_not_the_callers_lists():
    registry = DataflowRegistry()
    ins = [[], ["a"]]
    registry.register_tasks(add, outputs=["a", "b"], inputs=ins)
    ins[1].append("zzz")
    dag = registry.build_dag()
    assert dag.node_inputs[1] == ("a",) and dag.node_outputs[0] == ("a",)


def test_a_column_of_tasks_names_and_metadata():
    registry = DataflowRegistry()
    nodes = registry.register_tasks(
        [add, mul, add],
        outputs=["a", ["b", "c"], "d"],
        inputs=[(), ("a",), ("b", "c")],
        names=["first", "second", "third"],
        metadata=[{"tier": 1}, None, {"tier": 3}],
    )
    assert [n.task_name for n in nodes] == ["first", "second", "third"]
    assert nodes[1].outputs == ["b", "c"] and nodes[1].task is mul
    assert registry.get_task_metadata(nodes[0])["tier"] == 1
    assert registry.build_dag().node_metadata[1] is None


def test_one_name_and_one_metadata_for_all_rows():
    registry = DataflowRegistry()
    nodes = registry.register_tasks(add, outputs=["a", "b"], inputs=[[], []], names="gen",
                                    metadata={"pool": "cpu"})  # fmt: skip
    assert {n.task_name for n in nodes} == {"gen"}
    assert [registry.get_task_metadata(n)["pool"] for n in nodes] == ["cpu", "cpu"]


def test_after_register_task_and_after_a_built_graph():
    registry = DataflowRegistry()
    first = registry.register_task(add, output="a", inputs=[])
    assert registry.get_outputs() == ["a"]  # builds the registry DAG's graph
    nodes = registry.register_tasks(mul, outputs=["b", "c"], inputs=[["a"], ["b"]])
    assert nodes.ids == range(1, 3)
    assert registry.get_outputs() == ["a", "b", "c"]  # not a stale graph
    assert [n.task_name for n in registry.get_consumers("a")] == ["mul"]
    assert first.dependents == [nodes[0]]
    more = registry.register_tasks(add, outputs=["d"], inputs=[["c"]])
    assert more.ids == range(3, 4) and len(registry) == 4
    assert asyncio.run(ExecutionEngine(None, registry.build_dag()).execute())["d"] == 1 + 2 * 2


def test_zero_rows():
    registry = DataflowRegistry()
    nodes = registry.register_tasks(add, outputs=[], inputs=[])
    assert len(nodes) == 0 and list(nodes) == [] and len(registry) == 0


def test_clear_forgets_bulk_rows():
    registry = DataflowRegistry()
    registry.register_tasks(add, outputs=["a", "b"], inputs=[[], ["a"]])
    registry.clear()
    assert len(registry) == 0
    registry.register_tasks(add, outputs=["a"], inputs=[[]])
    assert len(registry.build_dag()) == 1


def test_builder_add_tasks():
    dag = (
        DAGBuilder()
        .add_tasks(add, ["a", "b"], [[], ["a"]], names="n")
        .add_task(mul, output="c", inputs=["b"])
        .build()
    )
    assert dag.task_names == ["n", "n", "mul"] and len(dag.edges) == 2


# -- the rules of register_task ------------------------------------------------------------------


def test_a_row_equal_to_the_one_before_updates_that_node():
    registry = DataflowRegistry()
    nodes = registry.register_tasks(
        add, outputs=["a", "a", "b"], inputs=[[], [], ["a"]],
        metadata=[{"v": 1}, {"v": 2}, None],
    )  # fmt: skip
    assert list(nodes.ids) == [0, 0, 1] and len(registry) == 2
    assert registry.get_task_metadata(nodes[0])["v"] == 2


def test_the_first_row_equal_to_the_last_register_task_updates_it():
    registry = DataflowRegistry()
    node = registry.register_task(add, output="a", inputs=[])
    nodes = registry.register_tasks(add, outputs=["a", "b"], inputs=[[], ["a"]])
    assert nodes[0] == node and list(nodes.ids) == [0, 1]


def test_equal_outputs_of_different_rows_are_reported_by_build_dag():
    registry = DataflowRegistry()
    registry.register_tasks([add, mul], outputs=["x", "x"], inputs=[[], []])
    assert len(registry) == 2
    with pytest.raises(DAGValidationError, match="Output 'x' is produced by two tasks"):
        registry.build_dag()
    registry = DataflowRegistry()
    registry.register_tasks(add, outputs=["x", "y", "x"], inputs=[[], [], []])
    assert len(registry) == 3  # not consecutive: a second producer, as in a loop
    with pytest.raises(DAGValidationError, match="Output 'x'"):
        registry.build_dag()


def test_keys_from_the_spec():
    @pipeline_task(output="raw", owner="ops")
    async def load(source):
        return [source]

    @pipeline_task(outputs=["lo", "hi"])
    async def split(raw):
        return min(raw), max(raw)

    registry = DataflowRegistry()
    nodes = registry.register_tasks([load, split], metadata={"tier": 2})
    assert nodes[1].outputs == ["lo", "hi"] and nodes[1].inputs == ["raw"]
    assert registry.get_task_metadata(load) == {
        "output": "raw", "outputs": ["raw"], "inputs": ["source"], "task_name": "load",
        "owner": "ops", "tier": 2,
    }  # fmt: skip
    # spec inputs with explicit outputs: many rows of one spec task
    more = DataflowRegistry().register_tasks(split, outputs=[["a", "b"], ["c", "d"]])
    assert [n.inputs for n in more] == [["raw"], ["raw"]]
    # a row's own None takes the spec too
    row = DataflowRegistry().register_tasks(load, outputs=["x", "y"], inputs=[None, ["x"]])
    assert [n.inputs for n in row] == [["source"], ["x"]]
    dag = DAGBuilder().add_tasks([load, split]).build()
    assert asyncio.run(ExecutionEngine(None, dag).execute({"source": 5})) == {
        "raw": [5], "lo": 5, "hi": 5,
    }  # fmt: skip


def test_remote_task_names():
    registry = DataflowRegistry()
    nodes = registry.register_tasks(
        "svc:fetch", outputs=["a", "b"], inputs=[[], ["a"]],
        metadata=[None, {"stream": True, "owner": "x"}],
    )  # fmt: skip
    tasks = [n.task for n in nodes]
    assert all(isinstance(t, RemoteTask) for t in tasks) and tasks[0] != tasks[1]
    assert not tasks[0].stream and tasks[1].stream
    assert registry.get_task_metadata(nodes[1]) == {
        "output": "b", "outputs": ["b"], "inputs": ["a"], "task_name": "svc:fetch", "owner": "x",
    }  # fmt: skip
    mixed = DataflowRegistry().register_tasks(
        [add, "svc:g"], outputs=["a", "b"], inputs=[[], ["a"]]
    )
    assert mixed[0].task is add and isinstance(mixed[1].task, RemoteTask)


def test_external_inputs_and_strict():
    registry = DataflowRegistry()
    registry.register_external_input("seed")
    registry.register_tasks(add, outputs=["a", "b"], inputs=[["seed"], ["a", "nobody"]])
    with pytest.raises(
        DAGValidationError, match=r"Task 'add' \(output 'b'\) requires input 'nobody'"
    ):
        registry.build_dag()
    dag = registry.build_dag(external_inputs=["nobody"])
    assert asyncio.run(ExecutionEngine(None, dag).execute({"seed": 1, "nobody": 10})) == {
        "a": 2, "b": 13,
    }  # fmt: skip


# -- bad input, each error naming the culprit ------------------------------------------------------


def test_column_shapes():
    registry = DataflowRegistry()
    with pytest.raises(ValueError, match=r"differ in length \(outputs 2, inputs 1\)"):
        registry.register_tasks(add, outputs=["a", "b"], inputs=[[]])
    with pytest.raises(ValueError, match=r"tasks 3, outputs 2"):
        registry.register_tasks([add, add, add], outputs=["a", "b"])
    with pytest.raises(ValueError, match=r"names 1"):
        registry.register_tasks(add, outputs=["a", "b"], inputs=[[], []], names=["x"])
    with pytest.raises(TypeError, match="outputs must be a list with one entry per row, got the "
                       "string 'ab'"):  # fmt: skip
        registry.register_tasks(add, outputs="ab", inputs=[[], []])
    with pytest.raises(TypeError, match="inputs must be a list with one entry per row, got set"):
        registry.register_tasks(add, outputs=["a"], inputs={("x",)})
    with pytest.raises(TypeError, match="give the rows' outputs"):
        registry.register_tasks(add)
    assert len(registry) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"outputs": ["a", 3]}, TypeError, r"row 1: task 'add': an output must be a key .* got 3"),
        ({"outputs": ["a", ["b", 4]]}, TypeError, r"row 1: task 'add': output keys must be str"),
        ({"outputs": ["a", []]}, ValueError, r"row 1: task 'add' declares no output"),
        ({"outputs": ["a", ["b", "b"]]}, ValueError, r"row 1: task 'add': outputs list a key tw"),
        ({"inputs": [[], "ab"]}, TypeError, r"row 1: task 'add': inputs must be a list of strings, "
         "not the string 'ab'"),
        ({"inputs": [[], 7]}, TypeError, r"row 1: task 'add': inputs must be a list of keys, got"),
        ({"names": ["x", 5]}, TypeError, r"row 1: task 'add': a task name must be a string, got 5"),
        ({"metadata": [None, 5]}, TypeError, r"row 1: task 'add': metadata must be a mapping"),
        ({"tasks": [add, [1]]}, TypeError, r"row 1: a task must be hashable, got list \[1\]"),
        ({"tasks": [add, "svc:x"], "inputs": None}, TypeError,
         r"row 1: remote task 'svc:x': pass inputs="),
    ],
)  # fmt: skip
def test_a_bad_row_is_named_and_nothing_is_registered(kwargs, error, message):
    registry = DataflowRegistry()
    registry.register_task(mul, output="before", inputs=[])
    args = {"tasks": add, "outputs": ["a", "b"], "inputs": [[], ["a"]], **kwargs}
    with pytest.raises(error, match=message):
        registry.register_tasks(args.pop("tasks"), **args)
    assert len(registry) == 1 and registry.get_outputs() == ["before"]


def test_a_non_string_input_key_is_named_by_build_dag_with_its_row():
    registry = DataflowRegistry()
    registry.register_task(mul, output="before", inputs=[])
    registry.register_tasks(add, outputs=["a", "b", "c"], inputs=[[], ["a"], ["b", 42]])
    with pytest.raises(
        TypeError,
        match=r"task 'add' \(node 3\): input keys must be strings, got int \(row 2 of the "
        r"register_tasks call that registered nodes 1 to 3\)",
    ):
        registry.build_dag()


def test_a_non_string_input_key_in_a_row_by_row_call_is_named_at_once():
    registry = DataflowRegistry()
    with pytest.raises(TypeError, match=r"row 2: task 'add': input keys must be strings, got 42"):
        # the None row (keys from the spec) makes the call go row by row
        registry.register_tasks(add, outputs=["a", "b", "c"], inputs=[None, ["a"], ["b", 42]])


# -- equivalence with the register_task loop ------------------------------------------------------


def loop_registry(tasks, outputs, inputs, names, metadata):
    """What register_tasks must match: one register_task call per row."""
    registry = DataflowRegistry()
    ids = []
    for row in range(len(outputs)):
        task = tasks[row] if isinstance(tasks, list) else tasks
        out = outputs[row]
        name = names[row] if isinstance(names, list) else names
        meta = metadata[row] if isinstance(metadata, list) else metadata
        keys = {"output": out} if isinstance(out, str) else {"outputs": out}
        ids.append(registry.register_task(task, inputs=inputs[row], name=name, **keys,
                                          **(meta or {})).id)  # fmt: skip
    return registry, ids


@st.composite
def bulk_cases(draw):
    n = draw(st.integers(0, 40))
    outputs, inputs = random_rows(n, draw(st.integers(0, 10**6)))
    # some rows with several outputs, some repeated (a re-registration), some key reused
    for row in range(n):
        choice = draw(st.integers(0, 9))
        if choice == 0:
            outputs[row] = [outputs[row], outputs[row] + "x"]
        elif choice == 1 and row:
            outputs[row], inputs[row] = outputs[row - 1], list(inputs[row - 1])
        elif choice == 2 and row:
            outputs[row] = f"k{draw(st.integers(0, row - 1))}"
        elif choice == 3:
            inputs[row] = tuple(inputs[row])
    pool = [add, mul, plain]
    tasks = draw(st.sampled_from(pool)) if draw(st.booleans()) else [
        draw(st.sampled_from(pool)) for _ in range(n)
    ]  # fmt: skip
    names = draw(st.sampled_from([None, "gen", "per row"]))
    if names == "per row":
        names = [draw(st.sampled_from(["p", "q"])) for _ in range(n)]
    metadata = draw(st.sampled_from([None, {"tier": 1}, "per row"]))
    if metadata == "per row":
        metadata = [draw(st.sampled_from([None, {"v": 1}, {"v": 2, "w": 3}])) for _ in range(n)]
    return tasks, outputs, inputs, names, metadata


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bulk_cases())
def test_register_tasks_equals_the_register_task_loop(case):
    tasks, outputs, inputs, names, metadata = case
    expected, expected_ids = loop_registry(tasks, outputs, inputs, names, metadata)
    registry = DataflowRegistry()
    nodes = registry.register_tasks(tasks, outputs, inputs, names=names, metadata=metadata)
    assert list(nodes.ids) == expected_ids
    assert columns(registry._dag) == columns(expected._dag)
    try:
        want = expected.build_dag()
    except DAGValidationError as exc:
        with pytest.raises(DAGValidationError) as got:
            registry.build_dag()
        assert str(got.value) == str(exc)
    else:
        assert columns(registry.build_dag()) == columns(want)
    # the row-by-row columns agree with the C-level ones wherever those apply
    n = len(outputs)
    fast = _fast_columns(tasks, outputs, inputs, names, metadata, n) if n else None
    if fast is not None:
        slow = _row_columns(tasks, outputs, inputs, names, metadata, n)
        assert [list(c) for c in fast] == [list(c) for c in slow]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(0, 10**6), st.integers(1, 4))
def test_two_calls_after_a_loop_equal_one_loop(n, seed, split):
    outputs, inputs = random_rows(n, seed)
    expected, _ = loop_registry(add, outputs, inputs, None, None)
    registry = DataflowRegistry()
    cut = n * split // 5
    for row in range(cut // 2):
        registry.register_task(add, output=outputs[row], inputs=inputs[row])
    registry.register_tasks(add, outputs[cut // 2 : cut], inputs[cut // 2 : cut])
    registry.register_tasks(add, outputs[cut:], inputs[cut:])
    assert columns(registry.build_dag()) == columns(expected.build_dag())


def oracle(outputs, inputs, task_of):
    values = {}
    for row, out in enumerate(outputs):
        args = [values[k] for k in inputs[row]]
        if task_of(row) is add:
            values[out] = 1 + sum(args)
        else:
            v = 2
            for a in args:
                v *= a
            values[out] = v % 1_000_003
    return values


@pytest.mark.parametrize("n", [1, 500, 5_000])
def test_a_generated_dag_runs(n):
    outputs, inputs = random_rows(n, n)
    tasks = [add if row % 3 else mul for row in range(n)]
    registry = DataflowRegistry()
    registry.register_tasks(tasks, outputs=outputs, inputs=inputs)
    dag = registry.build_dag()
    assert len(dag) == n and len(dag.edges) == sum(map(len, inputs))
    results = asyncio.run(ExecutionEngine(None, dag, max_parallel=64).execute())
    assert results == oracle(outputs, inputs, tasks.__getitem__)
