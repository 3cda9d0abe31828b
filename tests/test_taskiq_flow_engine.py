"""taskiq-flow's ExecutionEngine options: error modes, resource-aware parallelism, the report."""

import asyncio

import pytest
from conftest import dag_of as build
from conftest import run
from taskiq_dataflow import (
    DataflowExecutionError,
    ExecutionEngine,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow.errors import ErrorHandlingMode
from taskiq_dataflow.optimization import TaskResourceProfile
from taskiq_dataflow.optimization.parallel import ResourceAwareExecutor, get_default_executor


def _failing_dag():
    @pipeline_task(output="good")
    def good():
        return 1

    @pipeline_task(output="bad")
    def bad():
        raise ValueError("boom")

    @pipeline_task(output="after_bad")
    def after_bad(bad):
        return bad

    @pipeline_task(output="after_good")
    def after_good(good):
        return good + 1

    return build(good, bad, after_bad, after_good)


def test_error_mode_fail_fast_raises_the_first_failure():
    engine = ExecutionEngine(None, _failing_dag(), error_mode=ErrorHandlingMode.FAIL_FAST)
    with pytest.raises(TaskFailedError, match="bad"):
        run(engine.execute())
    assert engine.fail_fast


@pytest.mark.parametrize(
    "options",
    [
        {"error_mode": ErrorHandlingMode.CONTINUE_ON_ERROR},
        {"error_mode": "continue_on_error"},
        {"continue_on_error": True},
    ],
)
def test_continue_on_error_runs_the_rest_then_raises_every_failure(options):
    engine = ExecutionEngine(None, _failing_dag(), **options)
    with pytest.raises(DataflowExecutionError, match="boom") as caught:
        run(engine.execute())
    assert caught.value.results == {"good": 1, "after_good": 2}
    assert "after_bad" in caught.value.skipped
    assert engine.error_mode is ErrorHandlingMode.CONTINUE_ON_ERROR and not engine.fail_fast


@pytest.mark.parametrize(
    "options", [{"error_mode": ErrorHandlingMode.SKIP_FAILED}, {"skip_failed": True}]
)
def test_skip_failed_returns_the_outputs_and_reports_the_failures(options, caplog):
    engine = ExecutionEngine(None, _failing_dag(), **options)
    assert run(engine.execute()) == {"good": 1, "after_good": 2}
    report = engine.get_execution_report()
    assert report["status"] == "failed"
    assert report["failed"] == 1 and report["skipped"] == 1 and report["completed"] == 2
    assert len(report["errors"]) == 1 and "bad" in report["errors"][0]
    assert "boom" in report["errors"][0]
    assert "boom" in caplog.text  # not lost silently


def test_dead_letter_is_refused_with_what_to_use():
    with pytest.raises(ValueError, match=r"DEAD_LETTER.*CONTINUE_ON_ERROR.*StepFailed"):
        ExecutionEngine(None, _failing_dag(), error_mode=ErrorHandlingMode.DEAD_LETTER)


def test_unknown_error_mode_lists_the_modes():
    with pytest.raises(ValueError, match="unknown error_mode 'lenient'.*SKIP_FAILED"):
        ExecutionEngine(None, _failing_dag(), error_mode="lenient")


@pytest.mark.parametrize(
    "options",
    [
        {"fail_fast": True, "continue_on_error": True},
        {"continue_on_error": True, "skip_failed": True},
        {"error_mode": ErrorHandlingMode.FAIL_FAST, "skip_failed": True},
    ],
)
def test_contradicting_error_options_name_both(options):
    with pytest.raises(TypeError, match="contradict"):
        ExecutionEngine(None, _failing_dag(), **options)


def test_the_migration_guides_defaults_are_accepted():
    engine = ExecutionEngine(
        None,
        _failing_dag(),
        fail_fast=True,
        continue_on_error=False,
        skip_failed=False,
        error_mode=None,
        max_parallel=10,
        resource_aware=False,
        adaptive_parallelism=False,
    )
    assert engine.error_mode is ErrorHandlingMode.FAIL_FAST and engine.max_parallel == 10


def test_adaptive_parallelism_is_refused_with_what_to_use():
    with pytest.raises(ValueError, match=r"adaptive_parallelism.*resource_aware=True"):
        ExecutionEngine(None, _failing_dag(), adaptive_parallelism=True)


def _parallel_dag(width, peak):
    in_flight = 0

    def make(i):
        @pipeline_task(output=f"o{i}", inputs=[], name="heavy" if i % 2 else "light")
        async def t():
            nonlocal in_flight
            in_flight += 1
            peak.append(in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            return i

        return t

    return build(*(make(i) for i in range(width)))


def test_resource_aware_bounds_tasks_in_flight_by_their_profiles():
    peak: list[int] = []
    dag = _parallel_dag(6, peak)
    # more cores than any machine has free: one task at a time
    profiles = {
        "heavy": {"estimated_cpu_cores": 10_000.0},
        "light": {"estimated_cpu_cores": 10_000.0},
    }
    engine = ExecutionEngine(
        None, dag, max_parallel=4, resource_aware=True, resource_profiles=profiles
    )
    assert engine.max_parallel == 1
    assert run(engine.execute()) == {f"o{i}": i for i in range(6)}
    assert max(peak) == 1


def test_resource_aware_io_bound_tasks_take_no_core():
    peak: list[int] = []
    dag = _parallel_dag(6, peak)
    io = TaskResourceProfile(estimated_memory_mb=1, estimated_cpu_cores=10_000.0, io_bound=True)
    engine = ExecutionEngine(
        None, dag, max_parallel=3, resource_aware=True, resource_profiles={"heavy": io, "light": io}
    )
    assert engine.max_parallel == 3
    run(engine.execute())
    assert max(peak) == 3


def test_resource_aware_reads_pipeline_task_resources():
    @pipeline_task(output="x", resources=TaskResourceProfile(estimated_memory_mb=10**12))
    def huge():
        return 1

    engine = ExecutionEngine(None, build(huge), max_parallel=5, resource_aware=True)
    assert engine.max_parallel == 1  # no machine has an exabyte free


def test_resource_profiles_check_names_and_fields():
    dag = _parallel_dag(2, [])
    with pytest.raises(ValueError, match="not in the DAG: 'hevy'.*'heavy'"):
        ExecutionEngine(None, dag, resource_aware=True, resource_profiles={"hevy": {}})
    with pytest.raises(TypeError, match="task 'heavy'.*unknown field.*'cores'"):
        ExecutionEngine(None, dag, resource_aware=True, resource_profiles={"heavy": {"cores": 1}})
    with pytest.raises(ValueError, match="only with resource_aware=True"):
        ExecutionEngine(None, dag, resource_profiles={"heavy": {}})


def test_resource_aware_executor_bounds():
    executor = ResourceAwareExecutor(max_cpu_percent=50.0, max_parallel=8)
    # 4 free cores at 50% -> 2 cores: 4 tasks of half a core; 1000 MB at 80% -> 8 of 100 MB
    assert executor.get_optimal_parallelism(100, 0.5, resources=(4.0, 1000.0)) == 4
    assert executor.get_optimal_parallelism(200, 0.1, resources=(4.0, 1000.0)) == 4
    assert executor.get_optimal_parallelism(0, 0.0, resources=(0.0, 0.0)) == 8
    assert executor.get_optimal_parallelism(10**9, 100.0, resources=(4.0, 1000.0)) == 1
    assert 1 <= get_default_executor().get_optimal_parallelism(100, 0.5) <= 10
    with pytest.raises(ValueError, match="min_parallel <= max_parallel"):
        ResourceAwareExecutor(min_parallel=5, max_parallel=2)


def test_execution_report_before_and_after_a_run():
    engine = ExecutionEngine(None, _failing_dag(), continue_on_error=True)
    before = engine.get_execution_report()
    assert before["status"] == "not started"
    assert before["total_tasks"] == 4 and before["pending"] == 4
    with pytest.raises(DataflowExecutionError):
        run(engine.execute())
    report = engine.get_execution_report()
    assert {k: report[k] for k in ("total_tasks", "completed", "failed", "skipped")} == {
        "total_tasks": 4,
        "completed": 2,
        "failed": 1,
        "skipped": 1,
    }
    assert report["pending"] == 0 and report["running"] == 0
    assert report["success_rate"] == 0.5
    assert report["data_cache_size"] == 2  # good, after_good
