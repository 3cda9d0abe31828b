"""What one engine keeps across its runs (issue 14: a small run in a service), and that what it
keeps never outlives what it depends on: plans per task, the validated graph, the transport
decision, the run ids."""

import asyncio
import contextvars
import re

import pytest
from conftest import run
from taskiq_dataflow import (
    DAG,
    CycleError,
    DAGNode,
    DataflowRegistry,
    ExecutionEngine,
    MissingInputError,
    pipeline_task,
)
from taskiq_dataflow import run_state as run_state_module
from taskiq_dataflow.execution_engine import new_run_id


def small() -> DAG:
    async def a():
        return 1

    async def b(a):
        return a + 1

    async def c(a):
        return a + 2

    async def d(b, c):
        return b + c

    reg = DataflowRegistry()
    reg.register_task(a, output="a")
    reg.register_task(b, output="b", inputs=["a"])
    reg.register_task(c, output="c", inputs=["a"])
    reg.register_task(d, output="d", inputs=["b", "c"])
    return reg.build_dag()


def count_plans(monkeypatch):
    made = []
    original = run_state_module.RunState._make_plan

    def counting(self, node, task, given):
        made.append(self.names[node])
        return original(self, node, task, given)

    monkeypatch.setattr(run_state_module.RunState, "_make_plan", counting)
    return made


def test_plans_are_made_once_per_task_per_engine(monkeypatch):
    made = count_plans(monkeypatch)
    engine = ExecutionEngine(None, small(), max_parallel=4)

    async def many():
        return [await engine.execute() for _ in range(5)]

    results = run(many())
    assert results == [{"a": 1, "b": 2, "c": 3, "d": 5}] * 5
    assert sorted(made) == ["a", "b", "c", "d"]
    # another engine over the same DAG makes its own
    run(ExecutionEngine(None, small()).execute())
    assert len(made) == 8


def test_plans_are_made_again_when_the_settings_they_depend_on_change(monkeypatch):
    made = count_plans(monkeypatch)
    engine = ExecutionEngine(None, small())
    run(engine.execute())
    assert len(made) == 4
    engine.broker = object()  # the broker a task's dependencies resolve against
    engine._transport_spec = "local"
    run(engine.execute())
    assert len(made) == 8


def test_a_node_with_its_own_settings_keeps_a_plan_of_its_own(monkeypatch):
    made = count_plans(monkeypatch)
    attempts = {"retried": 0}

    async def work(x, out):
        if out == "retried":
            attempts["retried"] += 1
            if attempts["retried"] % 2:
                raise RuntimeError("every first attempt fails")
        return x

    reg = DataflowRegistry()
    for key in ("x", "p", "r"):
        reg.register_external_input(key)
    # (keys that are not all parameter names bind positionally: work(x, p) and work(x, r))
    reg.register_task(work, output="plain", inputs=["x", "p"])
    reg.register_task(work, output="retried", inputs=["x", "r"], retries=1, retry_delay=0)
    engine = ExecutionEngine(None, reg.build_dag())
    given = {"p": "plain", "r": "retried"}
    assert run(engine.execute({"x": 1, **given})) == {"plain": 1, "retried": 1}
    assert run(engine.execute({"x": 2, **given})) == {"plain": 2, "retried": 2}
    # the plain node's plan is the engine's from the first run on; the node registered with
    # retries=1 gets its own plan in each run (and its retry), never the shared one
    assert made == ["work", "work", "work"]
    assert attempts["retried"] == 4


def test_a_task_added_while_the_run_goes_on_gets_no_plan_kept_by_the_engine(monkeypatch):
    from taskiq_dataflow import add_tasks

    made = count_plans(monkeypatch)

    async def grow():
        async def leaf():
            return 7

        add_tasks([DAGNode(task=leaf, output="leaf")])
        return 0

    dag = DAG()
    dag.add_node(DAGNode(task=grow, output="root"))
    engine = ExecutionEngine(None, dag)
    for _ in range(3):
        assert run(engine.execute())["leaf"] == 7
    # grow's plan is kept; each run's new `leaf` function gets its own, never a stale one
    assert made.count("grow") == 1
    assert made.count("leaf") == 3


def test_a_dag_changed_between_runs_is_validated_again():
    async def one():
        return 1

    dag = DAG()
    dag.add_node(DAGNode(task=one, output="x"))
    engine = ExecutionEngine(None, dag)
    assert run(engine.execute()) == {"x": 1}

    async def needs(missing):
        return missing

    dag.add_node(DAGNode(task=needs, output="y", inputs=["missing"]))
    with pytest.raises(MissingInputError, match="'needs' requires input 'missing'"):
        run(engine.execute())
    assert run(engine.execute({"missing": 5})) == {"x": 1, "y": 5}

    async def loop_a(b):
        return b

    async def loop_b(a):
        return a

    dag.add_node(DAGNode(task=loop_a, output="a", inputs=["b"]))
    dag.add_node(DAGNode(task=loop_b, output="b", inputs=["a"]))
    for _ in range(2):  # a failed validation is not remembered as a pass
        with pytest.raises(CycleError, match="loop_a"):
            run(engine.execute({"missing": 5}))


def test_each_task_still_runs_in_a_context_of_its_own():
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    @pipeline_task(output="first")
    async def first():
        seen.append(var.get())
        var.set("first")
        return 1

    @pipeline_task(output="second")
    async def second(first):
        seen.append(var.get())
        return first

    dag = DAG()
    dag.add_node(DAGNode(task=first))
    dag.add_node(DAGNode(task=second))
    engine = ExecutionEngine(None, dag)
    for _ in range(2):
        run(engine.execute())
    assert seen == ["unset", "unset", "unset", "unset"]


def test_run_ids_look_like_uuid4_hex_and_never_repeat():
    ids = {new_run_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_run_ids_differ_in_a_forked_child():
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids come from a prefix of its own
        os.write(write, new_run_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    mine = new_run_id()
    assert child[:16] != mine[:16]


def test_concurrent_runs_of_one_engine_keep_their_own_results():
    engine = ExecutionEngine(None, small(), max_parallel=3)

    async def callers():
        return await asyncio.gather(*(engine.execute() for _ in range(50)))

    assert run(callers()) == [{"a": 1, "b": 2, "c": 3, "d": 5}] * 50


def test_a_transport_given_to_the_engine_serves_run_after_run():
    """The first run takes the sink the transport made; each later run attaches its own, so
    the completions of tasks that suspend reach the run that is waiting for them."""
    from taskiq_dataflow.transports.local import LocalTransport

    async def a():
        await asyncio.sleep(0)  # suspends: its value comes back through the sink
        return 1

    async def b(a):
        return a + 1

    reg = DataflowRegistry()
    reg.register_task(a, output="a")
    reg.register_task(b, output="b", inputs=["a"])
    transport = LocalTransport()
    engine = ExecutionEngine(None, reg.build_dag(), transport=transport)

    async def three_runs():
        return [await asyncio.wait_for(engine.execute(), 5) for _ in range(3)]

    assert run(three_runs()) == [{"a": 1, "b": 2}] * 3
    # another DAG on the same transport: nothing the transport kept of the last run's tasks
    engine.dag = small()
    assert run(asyncio.wait_for(engine.execute(), 5)) == {"a": 1, "b": 2, "c": 3, "d": 5}


def test_every_run_of_an_engine_compensates_its_tasks():
    """A task with a compensation sets what its run keeps when the run first plans it: the
    engine's later runs, which start from its kept plans, must set it too."""
    from taskiq_dataflow import TaskFailedError

    undone = []

    async def undo(result):
        undone.append(result)

    @pipeline_task(output="x", compensate=undo)
    async def x():
        return "x-result"

    @pipeline_task(output="y", inputs=["x"])
    async def y(x):
        raise ValueError("y broke")

    reg = DataflowRegistry()
    reg.register_task(x)
    reg.register_task(y)
    engine = ExecutionEngine(None, reg.build_dag())
    for _ in range(3):
        with pytest.raises(TaskFailedError, match="y broke"):
            run(engine.execute())
    assert undone == ["x-result"] * 3
