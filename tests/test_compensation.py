import asyncio

import pytest
from conftest import run
from taskiq_dataflow import (
    DataflowExecutionError,
    DataflowRegistry,
    ExecutionEngine,
    StepCompensated,
    StepCompleted,
    TaskFailedError,
    pipeline_task,
)


def diamond(log, fail_in="join", broken_undo=None):
    """top -> (left, right) -> join; every task has a compensation that logs its result."""

    def undo(name):
        async def compensate(result):
            if name == broken_undo:
                raise RuntimeError(f"cannot undo {name}")
            log.append((name, result))

        return compensate

    def make(name, inputs, slow=0.0):
        @pipeline_task(output=name, inputs=inputs, compensate=undo(name), name=name)
        async def task(**kwargs):
            await asyncio.sleep(slow)
            if name == fail_in:
                raise ValueError(f"{name} broke")
            return f"{name}-result"

        task.__name__ = name
        return task

    registry = DataflowRegistry()
    registry.register_task(make("top", []))
    registry.register_task(make("left", ["top"]))
    registry.register_task(make("right", ["top"], slow=0.01))
    registry.register_task(make("join", ["left", "right"]))
    return registry.build_dag()


def test_compensation_in_reverse_topological_order_each_once_with_its_result():
    log = []
    events = []
    engine = ExecutionEngine(None, diamond(log))
    engine.events.subscribe(events.append, StepCompensated)
    with pytest.raises(TaskFailedError, match="join broke"):
        run(engine.execute())
    assert log == [("right", "right-result"), ("left", "left-result"), ("top", "top-result")]
    assert [e.task_name for e in events] == ["right", "left", "top"]
    assert all(e.error is None for e in events)


def test_failed_task_and_never_run_tasks_are_not_compensated():
    log = []
    with pytest.raises(TaskFailedError, match="left broke"):
        run(ExecutionEngine(None, diamond(log, fail_in="left")).execute())
    names = [name for name, _ in log]
    assert "left" not in names and "join" not in names
    assert names[-1] == "top"


def test_compensation_failures_are_reported_not_hidden():
    log = []
    engine = ExecutionEngine(None, diamond(log, broken_undo="left"))
    with pytest.raises(TaskFailedError) as info:
        run(engine.execute())
    errors = info.value.compensation_errors
    assert [e.task_name for e in errors] == ["left"]
    assert "cannot undo left" in errors[0].message
    assert "1 compensation(s) failed" in "\n".join(info.value.__notes__)
    assert [name for name, _ in log] == ["right", "top"]  # the others still ran


def test_compensation_with_fail_fast_false():
    log = []
    with pytest.raises(DataflowExecutionError):
        run(ExecutionEngine(None, diamond(log), fail_fast=False).execute())
    assert [name for name, _ in log] == ["right", "left", "top"]


def test_successful_run_compensates_nothing():
    log = []
    out = run(ExecutionEngine(None, diamond(log, fail_in=None)).execute())
    assert out["join"] == "join-result" and log == []


def test_a_restart_does_again_what_was_compensated_and_keeps_what_could_not_be(tmp_path):
    """Compensated tasks are undone: a restart runs them again. A task whose compensation
    failed still stands: a restart keeps its output instead of doing it twice."""
    from taskiq_dataflow import RunStore

    store = RunStore(tmp_path / "runs.db")
    with pytest.raises(TaskFailedError):
        run(
            ExecutionEngine(None, diamond([], broken_undo="left"), store=store).execute(
                pipeline_id="saga"
            )
        )
    rows = {r["task_name"]: r for r in store.get_task_executions("saga")}
    assert rows["top"]["status"] == rows["right"]["status"] == "compensated"
    assert rows["left"]["status"] == "completed"
    assert "compensation failed: RuntimeError: cannot undo left" in rows["left"]["error"]

    ran = []
    engine = ExecutionEngine(None, diamond([], fail_in=None), store=store)
    engine.events.subscribe(lambda e: ran.append(e.task_name), StepCompleted)
    assert run(engine.restart("saga"))["join"] == "join-result"
    assert sorted(ran) == ["join", "right", "top"]
