"""Worker loss through the driver, without a cluster: a transport reports jobs lost
(`WorkerLost` through the sink, as the NATS transport does when a worker stops heart-beating),
the run's state sends them again or fails them, and the driver carries that out, for the
run's tasks and for the compensations of a failed run alike."""

import asyncio

import pytest
from conftest import dag_of, run
from taskiq_dataflow import StepRequeued, StepRetried, TaskFailedError, pipeline_task
from taskiq_dataflow.driver import Driver
from taskiq_dataflow.events import EventBus
from taskiq_dataflow.run_state import COMPENSATION, Policy, RunConfig, RunState, WorkerLost
from taskiq_dataflow.transports.local import LocalTransport

DEFAULTS = Policy(0, 0.0, 2.0, 0.0, None)
BOUND = 5.0  # seconds: each run here takes milliseconds; a dropped loss would hang it


class Losing(LocalTransport):
    """Runs jobs here, except the first `times` kicks of the jobs `lose` picks: those are
    reported lost with workers w1, w2... and never run."""

    def __init__(self, lose, times, limit):
        super().__init__()
        self.lose, self.left, self.limit = lose, times, limit
        self.reported = 0

    def kick(self, jobs):
        kept = []
        for job in jobs:
            if self.left and self.lose(job):
                self.left -= 1
                self.reported += 1
                self.sink.signal(WorkerLost(f"w{self.reported}", [job], self.limit))
            else:
                kept.append(job)
        super().kick(kept)


def drive(transport, *tasks):
    state = RunState("r", RunConfig(dag_of(*tasks), DEFAULTS, step_events=True), {})
    bus, seen = EventBus(), []
    bus.subscribe(seen.append, StepRequeued, StepRetried)
    driver = Driver(state, transport, bus)
    return driver, seen


ran = []


@pipeline_task(output="a")
async def a():
    ran.append("a")
    return 1


@pipeline_task(output="b")
async def b(a):
    return a + 1


def test_a_lost_task_is_sent_again_and_the_run_goes_on():
    ran.clear()
    transport = Losing(lambda job: job.name == "a", times=2, limit=2)
    driver, seen = drive(transport, a, b)
    out = run(asyncio.wait_for(driver.run(), BOUND))
    assert out == {"a": 1, "b": 2}
    assert ran == ["a"]  # the lost kicks never ran it: the third one did
    assert [(e.task_name, e.attempt, e.worker, e.losses) for e in seen] == [
        ("a", 1, "w1", 1),
        ("a", 1, "w2", 2),
    ]  # no StepRetried: a loss is not a failed attempt


def test_a_task_lost_more_than_limit_times_fails_the_run_naming_its_workers():
    transport = Losing(lambda job: job.name == "a", times=2, limit=1)
    driver, seen = drive(transport, a, b)
    with pytest.raises(TaskFailedError, match=r"workers w1, w2 were lost while running task 'a'"):
        run(asyncio.wait_for(driver.run(), BOUND))
    assert [e.worker for e in seen] == ["w1"]


undone = []


@pipeline_task(output="x", compensate=lambda r: undone.append(r))
async def made():
    return "made"


@pipeline_task(output="y")
async def breaks(x):
    raise ValueError("breaks on purpose")


def is_compensation(job):
    return job.attempt == COMPENSATION


def test_a_lost_compensation_is_sent_again():
    undone.clear()
    driver, _ = drive(Losing(is_compensation, times=1, limit=1), made, breaks)
    with pytest.raises(TaskFailedError, match="breaks on purpose") as info:
        run(asyncio.wait_for(driver.run(), BOUND))
    assert undone == ["made"]
    assert not getattr(info.value, "compensation_errors", None)


def test_a_compensation_lost_too_often_is_a_compensation_error_naming_the_worker():
    undone.clear()
    driver, _ = drive(Losing(is_compensation, times=1, limit=0), made, breaks)
    with pytest.raises(TaskFailedError) as info:
        run(asyncio.wait_for(driver.run(), BOUND))
    assert undone == []
    (error,) = info.value.compensation_errors
    assert error.type == "ClusterError"
    assert "worker w1 was lost once while running task 'made'" in error.message
