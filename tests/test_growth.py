"""DAGs that grow while they run: a running task adds tasks to its own run (`add_tasks`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from taskiq_dataflow import (
    DAG,
    DAGNode,
    DataflowExecutionError,
    ExecutionEngine,
    GrowthError,
    RunStore,
    TaskFailedError,
    add_tasks,
    result_of,
)
from taskiq_dataflow.events import StepSkipped


def run(dag: DAG, inputs: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    return asyncio.run(ExecutionEngine(None, dag, **options).execute(inputs or {}))


def dag_of(*nodes: DAGNode) -> DAG:
    dag = DAG()
    for node in nodes:
        dag.add_node(node)
    return dag


async def double(x: int) -> int:
    return 2 * x


async def add(a: int, b: int) -> int:
    return a + b


def test_one_task_adds_100000_tasks() -> None:
    async def fan(count: int) -> int:
        ids = add_tasks(DAGNode(double, output=f"d{i}", inputs=["n"]) for i in range(count))
        assert len(ids) == count and ids[0] == 1
        return 3

    started = time.perf_counter()
    out = run(dag_of(DAGNode(fan, output="n", inputs=["count"])), {"count": 100_000})
    assert time.perf_counter() - started < 20
    assert len(out) == 100_001
    assert out["d0"] == out["d99999"] == 6


FAN, DEPTH = 10, 5


def children(path: str) -> list[str]:
    return [f"{path}.{i}" for i in range(FAN)]


async def spread(path: str) -> Any:
    """Outputs its children's paths (under their own names), after adding those children:
    each reads the path it was given and does the same, down to DEPTH."""
    kids = children(path)
    if path.count(".") + 1 < DEPTH:
        add_tasks(DAGNode(spread, outputs=children(kid), inputs=[kid], name=kid) for kid in kids)
    else:
        add_tasks(DAGNode(leaf, output=f"{kid}!", inputs=[kid], name=kid) for kid in kids)
    return tuple(kids)


async def leaf(path: str) -> str:
    return path


def test_a_recursive_fan_out_to_111111_tasks() -> None:
    started = time.perf_counter()
    root = DAGNode(spread, outputs=children("r"), inputs=["path"], name="r")
    out = run(dag_of(root), {"path": "r"})
    assert time.perf_counter() - started < 60
    assert sum(k.endswith("!") for k in out) == FAN**DEPTH
    assert len(out) == sum(FAN**d for d in range(1, DEPTH + 1)) + FAN**DEPTH  # keys, not tasks
    assert out["r.9.9.9.9.9!"] == "r.9.9.9.9.9"


# -- what added tasks may read, and when they run --------------------------------------------------


def test_added_tasks_read_the_adders_output_the_run_inputs_and_each_other() -> None:
    async def adder(base: int) -> int:
        # listed before its producer: a batch need not be in dependency order
        add_tasks(
            [
                DAGNode(add, output="total", inputs=["n", "twice"]),
                DAGNode(double, output="twice", inputs=["base"]),
            ]
        )
        return base + 1

    out = run(dag_of(DAGNode(adder, output="n", inputs=["base"])), {"base": 5})
    assert out == {"n": 6, "twice": 10, "total": 16}


def test_an_added_task_reading_a_finished_task_runs_at_once() -> None:
    seen: list[str] = []

    async def first() -> int:
        return 1

    async def slow(one: int) -> int:
        await asyncio.sleep(0.05)
        add_tasks([DAGNode(record, output="late", inputs=["one"])])
        return one

    async def record(one: int) -> int:
        seen.append("late")
        return one + 1

    out = run(dag_of(DAGNode(first, output="one"), DAGNode(slow, output="s", inputs=["one"])))
    assert out["late"] == 2 and seen == ["late"]


def test_a_failed_added_task_fails_the_run_naming_it() -> None:
    async def boom(n: int) -> int:
        raise RuntimeError(f"bad {n}")

    async def adder() -> int:
        add_tasks([DAGNode(boom, output="b", inputs=["n"], name="boomer")])
        return 1

    with pytest.raises(TaskFailedError, match=r"task 'boomer' failed: RuntimeError: bad 1"):
        run(dag_of(DAGNode(adder, output="n")))


def test_without_fail_fast_tasks_added_after_a_failure_are_skipped() -> None:
    events: list[StepSkipped] = []

    async def broken() -> int:
        raise ValueError("broken")

    async def later(x: int) -> int:
        await asyncio.sleep(0.05)  # broken has failed by now
        add_tasks([DAGNode(double, output="d", inputs=["bad"], name="reader")])
        return x

    dag = dag_of(DAGNode(broken, output="bad"), DAGNode(later, output="ok", inputs=["x"]))
    engine = ExecutionEngine(None, dag, fail_fast=False)
    engine.events.subscribe(events.append, StepSkipped)
    with pytest.raises(DataflowExecutionError) as info:
        asyncio.run(engine.execute({"x": 1}))
    assert info.value.skipped == {"reader": "broken"}
    assert [(e.task_name, e.because_of) for e in events] == [("reader", "broken")]


def test_compensations_of_added_tasks_run_before_their_producers() -> None:
    undone: list[str] = []

    def undo(name: str) -> Any:
        def compensate(result: Any) -> None:
            undone.append(name)

        return compensate

    async def fail(x: int) -> int:
        raise RuntimeError("late failure")

    async def adder() -> int:
        add_tasks(
            [
                DAGNode(
                    double, output="b", inputs=["a"], name="b", metadata={"compensate": undo("b")}
                ),
                DAGNode(
                    double, output="a", inputs=["n"], name="a", metadata={"compensate": undo("a")}
                ),
                DAGNode(fail, output="c", inputs=["b"], name="c"),
            ]
        )
        return 1

    dag = DAG()
    dag.add_node(DAGNode(adder, output="n", metadata={"compensate": undo("adder")}))
    with pytest.raises(TaskFailedError, match="late failure"):
        run(dag)
    assert undone == ["b", "a", "adder"]


# -- refused batches -------------------------------------------------------------------------------


def refused(batch: Any, inputs: dict[str, Any] | None = None) -> str:
    """The message of the GrowthError the adding task got (it fails the run as its error)."""
    caught: list[GrowthError] = []

    async def adder() -> int:
        try:
            add_tasks(batch())
        except GrowthError as exc:
            caught.append(exc)
            raise
        return 1

    dag = dag_of(DAGNode(adder, output="n"), DAGNode(double, output="existing", inputs=["n"]))
    with pytest.raises(TaskFailedError, match=r"task 'adder' failed: GrowthError"):
        run(dag, inputs)
    assert len(caught) == 1
    return str(caught[0])


def test_two_added_tasks_with_one_output_are_refused() -> None:
    message = refused(
        lambda: [
            DAGNode(double, output="x", inputs=["n"], name="one"),
            DAGNode(double, output="x", inputs=["n"], name="two"),
        ]
    )
    assert (
        message
        == "added tasks 'one' and 'two' both output key 'x': each key needs a single producer"
    )


def test_an_added_output_an_existing_task_produces_is_refused() -> None:
    message = refused(lambda: [DAGNode(double, output="existing", inputs=["n"], name="copy")])
    assert (
        "added task 'copy' outputs key 'existing', which task 'double' already produces" in message
    )


def test_an_added_output_named_like_a_run_input_is_refused() -> None:
    message = refused(
        lambda: [DAGNode(double, output="given", inputs=["n"], name="shadow")], {"given": 1}
    )
    assert "added task 'shadow' outputs key 'given', which is an input of the run" in message


def test_an_added_input_nobody_produces_is_refused() -> None:
    message = refused(lambda: [DAGNode(double, output="y", inputs=["nowhere"], name="lost")])
    assert "added task 'lost' reads key 'nowhere', which no task produces" in message


def test_a_cycle_among_added_tasks_is_refused_as_a_path() -> None:
    message = refused(
        lambda: [
            DAGNode(double, output="p", inputs=["q"], name="p"),
            DAGNode(double, output="q", inputs=["p"], name="q"),
        ]
    )
    assert message in (
        "added tasks form a cycle: 'p' -> 'q' -> 'p'",
        "added tasks form a cycle: 'q' -> 'p' -> 'q'",
    )


def test_a_refused_batch_adds_nothing_and_the_next_one_works() -> None:
    async def adder() -> int:
        with pytest.raises(GrowthError):
            add_tasks(
                [
                    DAGNode(double, output="k", inputs=["n"]),
                    DAGNode(double, output="k", inputs=["n"]),
                ]
            )
        add_tasks([DAGNode(double, output="k", inputs=["n"])])
        return 1

    assert run(dag_of(DAGNode(adder, output="n"))) == {"n": 1, "k": 2}


def test_add_tasks_outside_a_run_and_with_wrong_objects() -> None:
    with pytest.raises(GrowthError, match=r"outside a running task"):
        add_tasks([DAGNode(double, output="x", inputs=["n"])])

    attached = dag_of(DAGNode(double, output="x", inputs=["n"])).nodes[0]

    async def adder() -> int:
        add_tasks([attached])
        return 1

    with pytest.raises(
        TaskFailedError, match=r"already node 0 of a DAG: add_tasks\(\) takes new DAGNode"
    ):
        run(dag_of(DAGNode(adder, output="n")))

    async def wrong() -> int:
        add_tasks([double])  # type: ignore[list-item]
        return 1

    with pytest.raises(TaskFailedError, match=r"takes DAGNode objects, got function"):
        run(dag_of(DAGNode(wrong, output="n")))


def test_a_restart_restores_the_added_tasks_that_completed(tmp_path: Any) -> None:
    """An adder that returns result_of(...) completes once that result is in; until then a
    restart runs it again, and the tasks it adds again that completed are restored."""
    calls: list[str] = []
    work_calls: list[int] = []
    broken = {"yes": True}

    async def adder(n: int) -> Any:
        calls.append("adder")
        add_tasks(DAGNode(work, output=f"w{i}", inputs=["n"], name=f"w{i}") for i in range(5))
        add_tasks([DAGNode(last, output="last", inputs=["w4"])])
        return result_of("last")

    async def work(n: int) -> int:
        work_calls.append(n)
        return n

    async def last(w4: int) -> int:
        calls.append("last")
        if broken["yes"]:
            raise RuntimeError("last fails the first time")
        return w4 + 1

    dag = dag_of(DAGNode(adder, output="n2", inputs=["n"]))
    with pytest.raises(TaskFailedError, match="last fails"):
        engine = ExecutionEngine(None, dag, store=RunStore(tmp_path / "r.db"))
        asyncio.run(engine.execute({"n": 1}, pipeline_id="r"))
    assert len(work_calls) == 5
    broken["yes"] = False
    engine = ExecutionEngine(None, dag, store=RunStore(tmp_path / "r.db"))
    out = asyncio.run(engine.restart("r"))
    assert out["n2"] == out["last"] == 2 and out["w3"] == 1
    assert calls == ["adder", "last", "adder", "last"]
    assert len(work_calls) == 5  # every w_i was restored, none ran again
    # the run is complete now: a restart restores the adder itself
    assert (
        asyncio.run(ExecutionEngine(None, dag, store=RunStore(tmp_path / "r.db")).restart("r"))[
            "n2"
        ]
        == 2
    )
    assert calls == ["adder", "last", "adder", "last"]


# -- results computed by added tasks (result_of), given values, private batches, bounds ----------


async def halve(x: int) -> int:
    return x // 2


def test_a_task_returns_the_result_of_a_task_it_added_and_its_dependents_wait() -> None:
    order: list[str] = []

    async def plan(n: int) -> Any:
        add_tasks([DAGNode(slow_square, output="sq", inputs=["n"])])
        order.append("plan returned")
        return result_of("sq")

    async def slow_square(n: int) -> int:
        await asyncio.sleep(0.01)
        order.append("square done")
        return n * n

    async def after(planned: int) -> int:
        order.append("after ran")
        return planned + 1

    dag = dag_of(
        DAGNode(plan, output="planned", inputs=["n"]),
        DAGNode(after, output="after", inputs=["planned"]),
    )
    assert run(dag, {"n": 7}) == {"planned": 49, "after": 50, "sq": 49}
    assert order == ["plan returned", "square done", "after ran"]


def test_result_of_chains_and_splits_into_several_outputs() -> None:
    async def outer(n: int) -> Any:
        add_tasks([DAGNode(inner, output="pair", inputs=["n"])])
        return result_of("pair")

    async def inner(n: int) -> Any:
        add_tasks([DAGNode(both, output="both", inputs=["n"])])
        return result_of("both")

    async def both(n: int) -> tuple[int, int]:
        return n, -n

    dag = dag_of(DAGNode(outer, outputs=["plus", "minus"], inputs=["n"]))
    out = run(dag, {"n": 3})
    assert (out["plus"], out["minus"]) == (3, -3)


def test_a_failure_behind_result_of_skips_the_dependents_and_names_the_task() -> None:
    async def plan(n: int) -> Any:
        add_tasks([DAGNode(broken, output="x", inputs=["n"])])
        return result_of("x")

    async def broken(n: int) -> int:
        raise ValueError("broken on purpose")

    dag = dag_of(
        DAGNode(plan, output="planned", inputs=["n"]),
        DAGNode(double, output="after", inputs=["planned"]),
        DAGNode(double, output="other", inputs=["n"], name="other"),
    )
    with pytest.raises(DataflowExecutionError) as info:
        run(dag, {"n": 1}, fail_fast=False)
    assert [f.task_name for f in info.value.failures] == ["broken"]
    assert info.value.skipped == {"plan": "broken", "double": "broken"}
    assert info.value.results == {"other": 2}
    with pytest.raises(TaskFailedError, match="broken on purpose") as failed:
        run(dag, {"n": 1})
    assert failed.value.task_name == "broken"


def test_result_of_a_key_no_added_task_outputs_fails_the_task_naming_it() -> None:
    async def plan(n: int) -> Any:
        return result_of("nowhere")

    with pytest.raises(TaskFailedError, match=r"result_of\('nowhere'\): no task added to this"):
        run(dag_of(DAGNode(plan, output="p", inputs=["n"])), {"n": 1})


def test_result_of_a_task_that_reads_a_dependent_is_a_cycle() -> None:
    """The dependents of the adder would wait for a task that waits for them."""

    async def plan(n: int) -> Any:
        add_tasks([DAGNode(double, output="loop", inputs=["after"], name="reader")])
        return result_of("loop")

    dag = dag_of(
        DAGNode(plan, output="planned", inputs=["n"]),
        DAGNode(double, output="after", inputs=["planned"], name="after"),
    )
    with pytest.raises(TaskFailedError, match="cycle") as info:
        run(dag, {"n": 1})
    assert info.value.task_name == "plan"


def test_given_values_are_read_by_added_tasks_and_checked() -> None:
    async def spread(items: list[int]) -> Any:
        keys = [f"item{i}" for i in range(len(items))]
        add_tasks(
            [DAGNode(double, output=f"d{i}", inputs=[k]) for i, k in enumerate(keys)],
            values=dict(zip(keys, items, strict=True)),
        )
        return len(items)

    out = run(dag_of(DAGNode(spread, output="n", inputs=["items"])), {"items": [1, 2, 3]})
    assert out == {"n": 3, "d0": 2, "d1": 4, "d2": 6}  # given keys are inputs, not outputs

    async def clash(items: list[int]) -> int:
        add_tasks([], values={"items": 1})
        return 0

    with pytest.raises(TaskFailedError, match="values= gives key 'items', which the run already"):
        run(dag_of(DAGNode(clash, output="n", inputs=["items"])), {"items": [1]})


def test_a_private_batch_stays_out_of_the_outputs_and_is_dropped_once_used() -> None:
    seen: dict[str, Any] = {}

    async def plan(n: int) -> Any:
        add_tasks(
            [
                DAGNode(double, output="p.d", inputs=["p.x"], name="p.double"),
                DAGNode(halve, output="p.h", inputs=["p.d"], name="p.halve"),
            ],
            values={"p.x": n},
            private=True,
        )
        return result_of("p.h")

    async def later(planned: int) -> int:
        try:
            add_tasks([DAGNode(double, output="late", inputs=["p.d"], name="late")])
        except GrowthError as exc:
            seen["error"] = str(exc)
        return planned

    dag = dag_of(
        DAGNode(plan, output="planned", inputs=["n"]),
        DAGNode(later, output="later", inputs=["planned"]),
    )
    assert run(dag, {"n": 5}) == {"planned": 5, "later": 5}
    assert "reads key 'p.d', which belonged to tasks added privately" in seen["error"]


def test_max_parallel_bounds_the_batch_only() -> None:
    now = peak = 0

    async def gauge(x: int) -> int:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await asyncio.sleep(0.002)
        now -= 1
        return x

    async def plan(n: int) -> int:
        add_tasks(
            (DAGNode(gauge, output=f"g{i}", inputs=["n"], name=f"g{i}") for i in range(30)),
            max_parallel=3,
        )
        return n

    out = run(dag_of(DAGNode(plan, output="p", inputs=["n"])), {"n": 1})
    assert len(out) == 31 and peak == 3

    async def zero(n: int) -> int:
        add_tasks([DAGNode(gauge, output="g", inputs=["n"])], max_parallel=0)
        return n

    with pytest.raises(TaskFailedError, match="max_parallel must be at least 1, got 0"):
        run(dag_of(DAGNode(zero, output="p", inputs=["n"])), {"n": 1})


def test_a_task_added_while_a_result_is_awaited_that_reads_it_waits_for_it() -> None:
    async def plan(n: int) -> Any:
        add_tasks([DAGNode(slow, output="g", inputs=["n"])])
        return result_of("g")

    async def slow(n: int) -> int:
        await asyncio.sleep(0.05)
        return n * 10

    async def other(n: int) -> int:
        await asyncio.sleep(0.01)  # plan has returned, slow still runs
        add_tasks([DAGNode(double, output="reader", inputs=["planned"], name="reader")])
        return n

    dag = dag_of(
        DAGNode(plan, output="planned", inputs=["n"]),
        DAGNode(other, output="other", inputs=["n"]),
    )
    assert run(dag, {"n": 2})["reader"] == 40


def test_added_tasks_run_by_their_priority() -> None:
    order: list[str] = []

    async def note(name: str) -> str:
        order.append(name)
        return name

    async def plan(n: int) -> int:
        names = ["low", "high", "mid"]
        add_tasks(
            [DAGNode(note, output=k, inputs=[f"{k}.name"], name=k) for k in names],
            values={f"{k}.name": k for k in names},
            priority=[1, 10, 5],
        )
        return n

    run(dag_of(DAGNode(plan, output="p", inputs=["n"])), {"n": 1}, max_parallel=1)
    assert order == ["high", "mid", "low"]

    async def wrong(n: int) -> int:
        add_tasks([DAGNode(note, output="x", inputs=["n"])], priority=[1, 2])
        return n

    with pytest.raises(TaskFailedError, match="got 2 priorities for 1 tasks"):
        run(dag_of(DAGNode(wrong, output="p", inputs=["n"])), {"n": 1})
