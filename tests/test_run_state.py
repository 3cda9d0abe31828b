"""RunState on its own: events in, instructions out, with no transport and no event loop."""

import pytest
from conftest import dag_of
from taskiq_dataflow import (
    DataflowExecutionError,
    ExecutionCancelled,
    StepFailed,
    StepRequeued,
    StepRetried,
    StepSkipped,
    StepStarted,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow.router import Placement, Router
from taskiq_dataflow.run_state import (
    Cancel,
    Completed,
    Dispatch,
    Emit,
    Finish,
    LookUp,
    Policy,
    Requeue,
    RetryAt,
    RetryDue,
    RunConfig,
    RunState,
    StepInPlace,
    Stop,
    Store,
    WorkerLost,
)
from taskiq_dataflow.transports.base import Completion

DEFAULTS = Policy(0, 0.0, 2.0, 0.0, None)


@pipeline_task(output="a")
async def a():
    return 1


@pipeline_task(output="b")
async def b(a):
    return a + 1


@pipeline_task(output="c")
async def c(a):
    return a + 2


@pipeline_task(output="alone")
async def alone():
    return 0


def state_of(*tasks, inputs=None, **config):
    dag = dag_of(*tasks)
    state = RunState("r", RunConfig(dag, config.pop("defaults", DEFAULTS), **config), inputs or {})
    return state, {name: i for i, name in enumerate(dag._names)}


def kinds(instructions):
    return [type(i).__name__ for i in instructions]


def dispatched(instructions):
    (batch,) = [i for i in instructions if type(i) is Dispatch]
    return sorted((job.name, job.attempt) for job in batch.jobs)


def ok(node, value, attempt=1):
    return Completion(node, attempt, True, value)


def failed(node, name, attempt=1, kind="ValueError"):
    from taskiq_dataflow.events import TaskError

    return Completion(node, attempt, False, TaskError(name, kind, "boom", ""))


def test_a_chain_runs_to_the_end_one_dispatch_per_batch():
    state, n = state_of(a, b, c)
    assert dispatched(state.start()) == [("a", 1)]
    out = state.completed([ok(n["a"], 1)])
    assert kinds(out) == ["Dispatch"]  # b and c, in one instruction
    assert dispatched(out) == [("b", 1), ("c", 1)]
    assert [j.kwargs for j in out[0].jobs] == [{"a": 1}, {"a": 1}]
    assert state.completed([ok(n["b"], 2), ok(n["c"], 3)]) == [Finish("succeeded")]
    assert state.status == "succeeded" and state.produced() == {"a": 1, "b": 2, "c": 3}
    assert state.error(state.produced()) is None


def test_in_place_ready_nodes_go_out_as_one_step_and_their_values_advance_the_run():
    state, n = state_of(a, b, c)
    state.in_place = True
    assert state.start() == [StepInPlace([n["a"]])]
    assert state.attempts[n["a"]] == 0  # stepped, not in flight as a job
    out = state.stepped([n["a"]], [n["a"]], [1], [])
    assert out == [StepInPlace([n["b"], n["c"]])]
    assert state.attempts == [0, 0, 0]
    # c failed on the sink meanwhile: taking the long way, it became attempt 1, and its
    # Completion of attempt 1 is read as the one in flight
    assert state.stepped([n["b"], n["c"]], [n["b"]], [2], []) == []
    assert state.attempts[n["c"]] == 1
    assert state.completed([failed(n["c"], "c")]) == [Finish("failed")]
    assert state.status == "failed" and state.produced() == {"a": 1, "b": 2}


def test_in_place_nodes_not_stepped_go_out_as_jobs():
    state, n = state_of(a, b, c)
    state.in_place = True
    state.start()
    out = state.stepped([n["a"]], [n["a"]], [1], [])
    out = state.stepped([n["b"], n["c"]], [n["b"]], [2], [n["c"]])  # c asked for the long way
    assert dispatched(out) == [("c", 1)] and kinds(out) == ["Dispatch"]
    assert state.completed([ok(n["c"], 3)]) == [Finish("succeeded")]


def test_a_node_stepped_in_place_that_suspends_completes_as_attempt_1():
    state, n = state_of(a, b, c)
    state.in_place = True
    state.start()
    # a suspended: it goes on as a Task, whose Completion comes later
    assert state.stepped([n["a"]], [], [], []) == []
    assert state.attempts[n["a"]] == 1
    assert state.completed([ok(n["a"], 1)]) == [StepInPlace([n["b"], n["c"]])]
    # a late duplicate of a's attempt is not read again
    assert state.completed([ok(n["a"], 1)]) == []


def test_plain_follows_what_it_depends_on():
    state, _ = state_of(a, b)
    assert not state.plain  # until the driver's transport steps in place
    state.in_place = True
    assert state.plain
    state.monitor = object()  # a dashboard watching: every batch is recorded the long way
    assert not state.plain
    state.monitor = None
    assert state.plain
    state.keeps_results = True
    assert not state.plain
    state.keeps_results, state.in_place = False, False
    assert not state.plain


def test_kept_results_take_the_long_way_even_in_place():
    state, _ = state_of(a, b)
    state.in_place, state.keeps_results = True, True
    assert dispatched(state.start()) == [("a", 1)]


def test_a_late_duplicate_of_an_attempt_is_dropped():
    state, n = state_of(a, b)
    state.start()
    state.completed([ok(n["a"], 1)])
    assert state.completed([ok(n["a"], 99)]) == []  # a's attempt is over: nothing happens
    assert state.values["a"] == 1


def test_a_failure_with_a_delay_asks_for_a_retry_at_and_runs_when_it_is_due():
    state, n = state_of(a, b, defaults=Policy(2, 0.5, 3.0, 0.0, None), step_events=True)
    state.start()
    out = state.completed([failed(n["a"], "a")])
    (retry,) = [i for i in out if type(i) is RetryAt]
    assert (retry.node, retry.attempt, retry.delay) == (n["a"], 2, 0.5)
    assert [type(e) for e in out[0].events] == [StepRetried]
    assert state.completed([failed(n["a"], "a")]) == []  # attempt 1 is no longer in flight
    assert dispatched(state.handle(RetryDue(n["a"], 2))) == [("a", 2)]
    out = state.completed([failed(n["a"], "a", attempt=2)])
    assert [i.delay for i in out if type(i) is RetryAt] == [1.5]  # backoff 3: 0.5 * 3
    state.handle(RetryDue(n["a"], 3))
    out = state.completed([failed(n["a"], "a", attempt=3)])  # retries used up: fail fast
    assert type(out[-1]) is Finish and out[-1].status == "failed"
    assert isinstance(state.error({}), TaskFailedError)


def test_a_retry_without_delay_is_dispatched_in_the_same_batch():
    state, n = state_of(a, defaults=Policy(1, 0.0, 2.0, 0.0, None))
    state.start()
    assert dispatched(state.completed([failed(n["a"], "a")])) == [("a", 2)]


def test_without_fail_fast_dependents_are_skipped_and_the_rest_runs():
    state, n = state_of(a, b, c, alone, fail_fast=False, step_events=True)
    assert dispatched(state.start()) == [("a", 1), ("alone", 1)]
    out = state.completed([failed(n["a"], "a")])
    assert type(out[0]) is Emit
    assert [type(e) for e in out[0].events] == [StepFailed, StepSkipped, StepSkipped]
    assert state.status is None  # alone still runs
    out = state.completed([ok(n["alone"], 0)])
    assert out[-1] == Finish("failed")
    error = state.error(state.produced())
    assert isinstance(error, DataflowExecutionError)
    assert state.skipped == {"b": "a", "c": "a"}


def test_fail_fast_records_the_rest_of_the_batch_and_dispatches_nothing():
    state, n = state_of(a, alone, b)
    state.start()
    out = state.completed([failed(n["a"], "a"), ok(n["alone"], 0)])
    assert out == [Finish("failed")]
    assert state.values["alone"] == 0  # recorded: a restart skips it


def test_cancel_finishes_and_nothing_more_is_dispatched():
    state, n = state_of(a, b, defaults=Policy(1, 1.0, 2.0, 0.0, None))
    state.start()
    state.completed([failed(n["a"], "a")])  # a retry is pending
    assert state.handle(Cancel()) == [Finish("cancelled")]
    assert state.handle(RetryDue(n["a"], 2)) == [Finish("cancelled")]  # no Dispatch
    assert state.handle(Completed([ok(n["a"], 1, attempt=2)])) == []
    assert isinstance(state.error({}), ExecutionCancelled)


def test_events_and_steps_are_batched_in_order_only_when_wanted():
    state, n = state_of(a, b, c, step_events=True, deliver_steps=True)
    out = state.start()
    assert kinds(out) == ["Emit", "Dispatch"]  # StepStarted before the kick
    assert [type(e) for e in out[0].events] == [StepStarted]
    out = state.completed([ok(n["a"], 1)])
    assert kinds(out) == ["Emit", "Deliver", "Dispatch"]
    assert [type(e).__name__ for e in out[0].events] == [
        "StepCompleted", "StepStarted", "StepStarted",
    ]  # fmt: skip
    assert [s.task_name for s in out[1].steps] == ["a"]
    quiet, m = state_of(a, b)
    quiet.start()
    assert kinds(quiet.completed([ok(m["a"], 1)])) == ["Dispatch"]


def test_cached_tasks_are_looked_up_and_their_results_stored():
    @pipeline_task(output="x", cache=True, max_ttl=60)
    async def cached(a):
        return a

    state, n = state_of(a, cached, caching=True)
    state.start()
    out = state.completed([ok(n["a"], 1)])
    (lookup,) = out
    assert type(lookup) is LookUp and [j.name for j in lookup.jobs] == ["cached"]
    assert lookup.ttls == [(None, 60)]
    out = state.completed([ok(n["cached"], 1)])
    (store,) = [i for i in out if type(i) is Store]
    assert [(job.name, value) for job, value in store.entries] == [("cached", 1)]
    # a cache hit is not stored again
    state2, m = state_of(a, cached, caching=True)
    state2.start()
    state2.completed([ok(m["a"], 1)])
    hit = Completion(m["cached"], 1, True, 1, cached=True)
    assert not [i for i in state2.completed([hit]) if type(i) is Store]


def test_compensations_come_in_reverse_topological_order_with_each_result():
    undone = []

    @pipeline_task(output="a", compensate=lambda r: undone.append(r))
    async def first():
        return 1

    @pipeline_task(output="b", compensate=lambda r: undone.append(r))
    async def second(a):
        return 2

    @pipeline_task(output="z")
    async def breaks(b):
        raise ValueError

    state, n = state_of(first, second, breaks)
    state.start()
    state.completed([ok(n["first"], 1)])
    state.completed([ok(n["second"], 2)])
    state.completed([failed(n["breaks"], "breaks")])
    jobs = state.compensations()
    assert [(j.name, j.args, j.attempt) for j in jobs] == [("second", (2,), 0), ("first", (1,), 0)]
    assert all(j.place.local for j in jobs)  # plain functions: they run in the engine


def test_placement_is_resolved_once_per_task_and_rides_in_the_job():
    class Registered:  # what @broker.task gives: a name the workers know
        task_name = "mod:remote"

        async def __call__(self):
            return 1

    remote = pipeline_task(output="r", pool="gpu")(Registered())
    router = Router(remote=True, streams_travel=True, default_pool="default")
    state, _ = state_of(remote, a, router=router)
    places = {job.name: job.place for job in state.start()[0].jobs}
    # a plain function has no name the workers know: the transport refuses it by name
    assert places["a"] == Placement(False, None, "default")
    assert places[state.names[0]] == Placement(False, "mod:remote", "gpu")
    assert router.place(remote) is router.place(remote)  # resolved once, then looked up


def test_a_consumer_starts_with_its_producer_and_its_early_result_waits():
    @pipeline_task(output="items")
    async def produce():
        yield 1

    @pipeline_task(output="total", streams=["items"])
    async def consume(items):
        return 0

    state, n = state_of(produce, consume)
    assert dispatched(state.start()) == [("consume", 1), ("produce", 1)]  # one batch
    # the consumer ends first: held until the scheduler hands it out (its producer is done);
    # its producer, read by nobody now and not kept, is stopped
    assert state.completed([ok(n["consume"], 7)]) == [Stop([n["produce"]])]
    out = state.completed([failed(n["produce"], "produce", kind="CancelledError")])
    assert out == [Requeue([ok(n["consume"], 7)])]
    assert state.values["items"] is None  # stopped for want of readers: as if it had ended
    assert state.completed(out[0].completions) == [Finish("succeeded")]
    assert state.values["total"] == 7


# -- workers lost ---------------------------------------------------------------------------------


def test_a_lost_job_goes_again_as_the_same_attempt_without_using_a_retry():
    state, n = state_of(a, b, step_events=True)  # retries=0: a failure would be final
    (job,) = state.start()[1].jobs
    out = state.handle(WorkerLost("w1", [job], 1))
    assert kinds(out) == ["Emit", "Dispatch"]
    assert out[1].jobs[0] is job  # the job as kicked: the transport sends its kept frame
    assert out[0].events == [StepRequeued("r", n["a"], "a", 1, "w1", 1)]
    assert state.scheduler.state(n["a"]) == "running"  # its slot stays taken
    assert dispatched(state.completed([ok(n["a"], 1)])) == [("b", 1)]  # attempt 1 still counts


def test_a_job_lost_more_than_limit_times_fails_naming_the_task_and_its_worker():
    state, _ = state_of(a, alone, step_events=True)
    job = state.start()[1].jobs[0]
    assert job.name == "a"
    assert dispatched(state.handle(WorkerLost("w1", [job], 1))) == [("a", 1)]
    out = state.handle(WorkerLost("w1", [job], 1))
    assert out[-1] == Finish("failed")  # fail fast
    assert not [i for i in out if type(i) is Dispatch]
    error = state.first_error
    assert error is not None and (error.task_name, error.type) == ("a", "ClusterError")
    assert "worker w1 was lost 2 times while running task 'a'" in error.message
    assert "may be what kills or hangs them" in error.message
    assert [type(e) for e in out[0].events] == [StepFailed]
    assert isinstance(state.error({}), TaskFailedError)


def test_workers_lost_in_turn_are_each_named_once():
    state, _ = state_of(a, fail_fast=False)
    job = state.start()[0].jobs[0]
    for worker in ("w1", "w2", "w1"):
        state.handle(WorkerLost(worker, [job], 3))
    out = state.handle(WorkerLost("w3", [job], 3))
    assert out == [Finish("failed")]
    (error,) = state.failures
    assert "workers w1 (2 times), w2, w3 were lost while running task 'a'" in error.message
    assert "(lost 4 times)" in error.message
    two, _ = state_of(a)
    job = two.start()[0].jobs[0]
    two.handle(WorkerLost("w1", [job], 1))
    two.handle(WorkerLost("w2", [job], 1))
    assert "each of the 2 workers that held it stopped heart-beating" in two.first_error.message


def test_a_job_lost_too_often_is_retried_per_policy_with_losses_of_its_own():
    state, _ = state_of(a, defaults=Policy(1, 0.0, 2.0, 0.0, None), step_events=True)
    first = state.start()[1].jobs[0]
    out = state.handle(WorkerLost("w1", [first], 0))  # limit 0: the first loss fails it
    assert [type(e) for e in out[0].events] == [StepRetried]
    assert dispatched(out) == [("a", 2)]
    (retry,) = next(i for i in out if type(i) is Dispatch).jobs
    # the retry's first loss is over the limit too (no loss carried over from attempt 1)
    out = state.handle(WorkerLost("w2", [retry], 0))
    assert out[-1] == Finish("failed")
    assert "worker w2 was lost once while running task 'a'" in state.first_error.message


def test_a_loss_reported_for_an_attempt_no_longer_in_flight_changes_nothing():
    state, n = state_of(a, b, defaults=Policy(1, 0.0, 2.0, 0.0, None))
    job = state.start()[0].jobs[0]
    state.completed([failed(n["a"], "a")])  # attempt 2 is in flight now
    assert state.handle(WorkerLost("w1", [job], 0)) == []  # attempt 1: nothing to fail
    assert state.status is None
    state.completed([ok(n["a"], 1, attempt=2)])
    assert state.handle(WorkerLost("w1", [job], 0)) == []
    state.handle(Cancel())
    assert state.handle(WorkerLost("w1", [job], 0)) == []  # the run is over


def test_the_lost_jobs_of_one_worker_are_decided_in_one_batch():
    state, n = state_of(a, c, alone, fail_fast=False)
    jobs = state.start()[0].jobs
    assert [j.name for j in jobs] == ["a", "alone"]
    state.handle(WorkerLost("w1", jobs[:1], 1))  # a was lost once already
    out = state.handle(WorkerLost("w2", jobs, 1))
    # alone goes again; a fails, c is skipped, in the same answer
    assert dispatched(out) == [("alone", 1)]
    assert state.skipped == {"c": "a"}
    assert state.completed([ok(n["alone"], 0)]) == [Finish("failed")]


def test_an_unknown_event_is_refused_by_name():
    state, _ = state_of(a)
    with pytest.raises(TypeError, match="RunState cannot handle str"):
        state.handle("completed")  # type: ignore[arg-type]


def test_a_run_state_needs_no_event_loop():
    import asyncio

    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    state, n = state_of(a, b)
    state.start()
    state.completed([ok(n["a"], 1)])
    assert state.completed([ok(n["b"], 2)]) == [Finish("succeeded")]


def test_retry_jitter_true_adds_up_to_a_tenth_of_the_delay_as_taskiq_flow_means_it():
    from taskiq_dataflow.run_state import Policy

    share = [Policy(3, 2.0, 3.0, True, None).delay_before(3) for _ in range(200)]
    assert all(6.0 <= d <= 6.6 for d in share) and max(share) > 6.0  # 2 * 3, plus up to 10%
    seconds = [Policy(3, 2.0, 1.0, 1.5, None).delay_before(2) for _ in range(200)]
    assert all(2.0 <= d <= 3.5 for d in seconds) and max(seconds) > 2.6  # a number: seconds
    assert Policy(3, 2.0, 1.0, False, None).delay_before(2) == 2.0
