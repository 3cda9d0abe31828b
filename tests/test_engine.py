import asyncio
import itertools
import threading
import time

import pytest
from conftest import dag_of as build
from conftest import run
from taskiq_dataflow import (
    DAGBuilder,
    DataflowExecutionError,
    DataflowRegistry,
    ExecutionCancelled,
    ExecutionEngine,
    MissingInputError,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepRetried,
    StepSkipped,
    StepStarted,
    TaskFailedError,
    pipeline_task,
)


def test_ready_task_does_not_wait_for_unrelated_slow_task():
    stamps = {}

    @pipeline_task(output="slow")
    async def slow():
        await asyncio.sleep(0.5)
        stamps["slow_end"] = time.perf_counter()
        return 1

    @pipeline_task(output="fast")
    async def fast():
        await asyncio.sleep(0.01)
        return 2

    @pipeline_task(output="after_fast")
    async def after_fast(fast):
        stamps["after_fast_start"] = time.perf_counter()
        return fast + 1

    dag = build(slow, fast, after_fast)
    results = run(ExecutionEngine(None, dag).execute())
    assert results == {"slow": 1, "fast": 2, "after_fast": 3}
    assert stamps["after_fast_start"] < stamps["slow_end"] - 0.3


def test_max_parallel_bounds_tasks_in_flight():
    in_flight = 0
    peak = 0

    def make(i):
        @pipeline_task(output=f"o{i}", inputs=[])
        async def t():
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1
            return i

        t.__name__ = f"t{i}"
        return t

    for limit in (1, 3):
        peak = 0
        dag = build(*(make(i) for i in range(20)))
        results = run(ExecutionEngine(None, dag, max_parallel=limit).execute())
        assert results == {f"o{i}": i for i in range(20)}
        assert peak == limit


def test_sync_tasks_run_in_threads_and_respect_max_parallel():
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def make(i):
        @pipeline_task(output=f"o{i}", inputs=[])
        def t():
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.005)
            with lock:
                state["now"] -= 1
            return threading.current_thread().name

        return t

    dag = build(*(make(i) for i in range(12)))
    results = run(ExecutionEngine(None, dag, max_parallel=4).execute())
    assert all(name.startswith("dataflow-task") for name in results.values())
    assert state["peak"] == 4


def test_arguments_bound_by_name_from_any_key():
    @pipeline_task(output="a")
    def first(source):
        return source + "!"

    @pipeline_task(output="b")
    def second(a, source, factor):
        return f"{a}{source}" * factor

    dag = build(first, second, external=["source", "factor"])
    assert run(ExecutionEngine(None, dag).execute({"source": "x", "factor": 2})) == {
        "a": "x!",
        "b": "x!xx!x",
    }


def test_positional_binding_when_keys_are_not_parameter_names():
    async def add(left, right):
        return left + right

    dag = DAGBuilder().external_input("p", "q").add_task(add, output="s", inputs=["p", "q"]).build()
    assert run(ExecutionEngine(None, dag).execute({"p": 1, "q": 2})) == {"s": 3}


def test_multi_output_mapping_and_tuple():
    @pipeline_task(outputs=["lo", "hi"])
    def bounds(values):
        return min(values), max(values)

    @pipeline_task(outputs=["total", "count"])
    async def stats(values):
        return {"total": sum(values), "count": len(values), "extra": 0}

    @pipeline_task(output="span")
    def span(lo, hi, count):
        return (hi - lo) / count

    dag = build(bounds, stats, span, external=["values"])
    out = run(ExecutionEngine(None, dag).execute({"values": [1, 5, 3]}))
    assert out == {"lo": 1, "hi": 5, "total": 9, "count": 3, "span": 4 / 3}


def test_multi_output_bad_return_names_task():
    @pipeline_task(outputs=["a", "b"], inputs=[])
    def wrong():
        return 42

    @pipeline_task(outputs=["c", "d"], inputs=[])
    def partial():
        return {"c": 1}

    with pytest.raises(
        TaskFailedError, match=r"task 'wrong' failed: TypeError: .*outputs \['a', 'b'\]"
    ):
        run(ExecutionEngine(None, build(wrong)).execute())
    with pytest.raises(TaskFailedError, match=r"'partial' returned a mapping without .*\['d'\]"):
        run(ExecutionEngine(None, build(partial)).execute())


def test_raising_task_fails_run_with_name_type_message_traceback():
    @pipeline_task(output="a", inputs=[])
    async def good():
        return 1

    @pipeline_task(output="b")
    async def explode(a):
        raise KeyError(f"bad record {a}")

    @pipeline_task(output="c")
    async def never(b):
        raise AssertionError("must not run")

    with pytest.raises(TaskFailedError) as info:
        run(ExecutionEngine(None, build(good, explode, never)).execute())
    err = info.value
    assert err.task_name == "explode"
    assert err.error.type == "KeyError" and "bad record 1" in err.error.message
    assert "in explode" in err.error.traceback and "raise KeyError" in err.error.traceback
    assert str(err).startswith("task 'explode' failed: KeyError: 'bad record 1'")


def test_fail_fast_false_runs_independent_branch_and_skips_dependents():
    ran = []

    @pipeline_task(output="bad", inputs=[])
    def broken():
        raise ValueError("nope")

    @pipeline_task(output="child")
    def child(bad):
        ran.append("child")

    @pipeline_task(output="grandchild")
    def grandchild(child):
        ran.append("grandchild")

    @pipeline_task(output="ok", inputs=[])
    def independent():
        ran.append("independent")
        return "fine"

    @pipeline_task(output="ok2")
    def after_ok(ok):
        ran.append("after_ok")
        return ok + "!"

    dag = build(broken, child, grandchild, independent, after_ok)
    events = []
    engine = ExecutionEngine(None, dag, fail_fast=False)
    engine.events.subscribe(events.append, StepSkipped, StepFailed)
    with pytest.raises(DataflowExecutionError) as info:
        run(engine.execute())
    err = info.value
    assert sorted(ran) == ["after_ok", "independent"]
    assert err.results == {"ok": "fine", "ok2": "fine!"}
    assert [f.task_name for f in err.failures] == ["broken"]
    assert err.skipped == {"child": "broken", "grandchild": "broken"}
    assert "1 task(s) failed, 2 skipped" in str(err)
    assert {type(e).__name__ for e in events} == {"StepFailed", "StepSkipped"}


def test_retries_with_delay_and_backoff():
    calls = []

    @pipeline_task(output="x", inputs=[], retries=3, retry_delay=0.02, retry_backoff=2)
    async def flaky():
        calls.append(time.perf_counter())
        if len(calls) < 4:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    retried = []
    engine = ExecutionEngine(None, build(flaky))
    engine.events.subscribe(retried.append, StepRetried)
    assert run(engine.execute()) == {"x": "ok"}
    assert len(calls) == 4
    assert [e.attempt for e in retried] == [2, 3, 4]
    assert [round(e.delay, 3) for e in retried] == [0.02, 0.04, 0.08]
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08


def test_retries_exhausted_reports_last_error_and_engine_default():
    calls = 0

    @pipeline_task(output="x", inputs=[])
    def always():
        nonlocal calls
        calls += 1
        raise RuntimeError(f"attempt {calls}")

    engine = ExecutionEngine(None, build(always), retries=2)
    with pytest.raises(TaskFailedError, match="attempt 3"):
        run(engine.execute())
    assert calls == 3


def test_timeout_ends_promptly():
    @pipeline_task(output="x", inputs=[], timeout=0.05)
    async def hang():
        await asyncio.sleep(10)

    @pipeline_task(output="y", inputs=[])
    def hang_sync():
        time.sleep(0.5)

    start = time.perf_counter()
    with pytest.raises(TaskFailedError, match="'hang' timed out after 0.05 s"):
        run(ExecutionEngine(None, build(hang)).execute())
    assert time.perf_counter() - start < 1
    start = time.perf_counter()
    with pytest.raises(TaskFailedError, match="'hang_sync' timed out after 0.05 s"):
        run(ExecutionEngine(None, build(hang_sync), timeout=0.05).execute())
    assert time.perf_counter() - start < 0.4


def test_cancel_ends_promptly_with_clear_error():
    started = asyncio.Event

    @pipeline_task(output="a", inputs=[])
    async def quick():
        return 1

    @pipeline_task(output="b")
    async def forever(a):
        await asyncio.sleep(10)

    async def main():
        engine = ExecutionEngine(None, build(quick, forever))
        task = asyncio.ensure_future(engine.execute())
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        engine.cancel()
        with pytest.raises(ExecutionCancelled) as info:
            await task
        assert time.perf_counter() - start < 0.5
        assert info.value.results == {"a": 1}
        assert "was cancelled" in str(info.value)

    assert started is not None
    run(main())


def test_on_step_complete_and_events():
    seen = []

    async def on_step(task_name, result):
        seen.append((task_name, result))

    @pipeline_task(output="a", inputs=[])
    def one():
        return 1

    @pipeline_task(output="b")
    def two(a):
        return a + 1

    events = []
    engine = ExecutionEngine(None, build(one, two), on_step_complete=on_step)
    unsubscribe = engine.events.subscribe(events.append)
    run(engine.execute(pipeline_id="run-1"))
    assert seen == [("one", 1), ("two", 2)]
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "RunStarted",
        "StepStarted",
        "StepCompleted",
        "StepStarted",
        "StepCompleted",
        "RunFinished",
    ]
    assert all(e.run_id == "run-1" for e in events)
    assert isinstance(events[0], RunStarted) and events[0].total == 2
    assert isinstance(events[1], StepStarted) and isinstance(events[2], StepCompleted)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "succeeded"
    assert events[-1].counts["done"] == 2
    unsubscribe()
    events.clear()
    run(engine.execute())
    assert events == []


def test_execute_async_streams_steps():
    @pipeline_task(output="a", inputs=[])
    async def a():
        return 1

    @pipeline_task(output="b")
    async def b(a):
        await asyncio.sleep(0.01)
        return a + 1

    async def main():
        engine = ExecutionEngine(None, build(a, b))
        return [(s.task_name, s.result, s.outputs) async for s in engine.execute_async({})]

    assert run(main()) == [("a", 1, {"a": 1}), ("b", 2, {"b": 2})]


def test_execute_async_raises_failure():
    @pipeline_task(output="a", inputs=[])
    async def bad():
        raise ValueError("boom")

    async def main():
        async for _ in ExecutionEngine(None, build(bad)).execute_async():
            pass

    with pytest.raises(TaskFailedError, match="boom"):
        run(main())


def test_missing_external_input_names_task_and_key():
    @pipeline_task(output="a")
    def needs(source):
        return source

    with pytest.raises(MissingInputError, match="task 'needs' requires input 'source'"):
        run(ExecutionEngine(None, build(needs)).execute({}))


def test_broker_transport_with_inmemory_broker(broker):
    calls = []

    @broker.task
    @pipeline_task(output="raw")
    async def load(source):
        calls.append("load")
        return [source, source]

    @broker.task
    @pipeline_task(output="n")
    def count(raw):
        return len(raw)

    @broker.task
    @pipeline_task(output="bad", inputs=[])
    async def failing():
        raise ValueError("from the broker")

    dag = build(load, count, external=["source"])
    engine = ExecutionEngine(broker, dag, transport="broker")
    assert run(engine.execute({"source": "s"})) == {"raw": ["s", "s"], "n": 2}
    assert calls == ["load"]
    with pytest.raises(TaskFailedError, match="'failing' failed: ValueError: from the broker"):
        run(ExecutionEngine(broker, build(failing), transport="broker").execute())


def test_broker_transport_needs_taskiq_tasks(broker):
    @pipeline_task(output="x", inputs=[])
    def plain():
        return 1

    with pytest.raises(TaskFailedError, match="plain function"):
        run(ExecutionEngine(broker, build(plain), transport="broker").execute())


def test_process_pool_executor():
    dag = DAGBuilder().external_input("n").add_task(_square, output="sq", inputs=["n"]).build()
    out = run(ExecutionEngine(None, dag, executor="process").execute({"n": 7}))
    assert out == {"sq": 49}


def _square(n):
    return n * n


def test_priorities_critical_path_first():
    order = []

    def make(name, inputs):
        async def t(**kwargs):
            order.append(name)

        t.__name__ = name
        return t

    builder = DAGBuilder()
    builder.add_task(make("short", []), output="s", inputs=[])
    builder.add_task(make("long1", []), output="l1", inputs=[])
    builder.add_task(make("long2", []), output="l2", inputs=["l1"])
    builder.add_task(make("long3", []), output="l3", inputs=["l2"])
    dag = builder.build()
    run(ExecutionEngine(None, dag, max_parallel=1, priority="critical_path").execute())
    assert order[0] == "long1"
    order.clear()
    run(ExecutionEngine(None, dag, max_parallel=1).execute())
    assert order[0] == "short"


def test_engine_argument_errors():
    with pytest.raises(TypeError, match="needs a dag"):
        ExecutionEngine(None, None)
    dag = DAGBuilder().add_task(_square, output="x", inputs=[]).build()
    with pytest.raises(ValueError, match="max_parallel must be at least 1"):
        ExecutionEngine(None, dag, max_parallel=0)
    with pytest.raises(ValueError, match="unknown transport"):
        run(ExecutionEngine(None, dag, transport="carrier-pigeon").execute())


def test_register_task_settings_override_the_spec_per_node():
    calls = {"a": 0, "b": 0}

    def make(name):
        @pipeline_task(output=name, inputs=[], retries=0, name=name)
        def flaky():
            calls[name] += 1
            if calls[name] < 3:
                raise ConnectionError("again")
            return calls[name]

        return flaky

    registry = DataflowRegistry()
    registry.register_task(make("a"), retries=2)  # this node may retry; the spec says 0
    registry.register_task(make("b"))
    engine = ExecutionEngine(None, registry.build_dag(), fail_fast=False)
    with pytest.raises(DataflowExecutionError) as info:
        run(engine.execute())
    assert info.value.results == {"a": 3}
    assert [f.task_name for f in info.value.failures] == ["b"] and calls["b"] == 1
