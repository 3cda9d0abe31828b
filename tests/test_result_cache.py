import pytest
from conftest import run
from taskiq_dataflow import (
    DataflowRegistry,
    ExecutionEngine,
    ResultCache,
    StepCompleted,
    pipeline_task,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build(calls, **cache_args):
    @pipeline_task(output="slow", cache=True, **cache_args)
    def expensive(x: int) -> dict:
        calls.append(x)
        return {"x": x, "squares": (x * x, x**3)}

    @pipeline_task(output="after")
    def after(slow: dict) -> int:
        return slow["x"] + 1

    registry = DataflowRegistry()
    registry.register_external_input("x")
    registry.register_task(expensive)
    registry.register_task(after)
    return registry.build_dag()


def test_cache_hit_skips_the_task_and_is_visible_in_events(tmp_path):
    calls = []
    cache = ResultCache(tmp_path / "cache.db")
    dag = build(calls)
    first = run(ExecutionEngine(None, dag, cache=cache).execute({"x": 4}))
    events = []
    engine = ExecutionEngine(None, dag, cache=ResultCache(tmp_path / "cache.db"))
    engine.events.subscribe(events.append, StepCompleted)
    second = run(engine.execute({"x": 4}))
    assert calls == [4]
    assert first == second
    assert second["slow"]["squares"] == (16, 64)  # the tuple comes back as a tuple
    cached = {e.task_name: e.cached for e in events}
    assert cached == {"expensive": True, "after": False}
    run(ExecutionEngine(None, dag, cache=cache).execute({"x": 5}))
    assert calls == [4, 5]  # other inputs, other entry


@pytest.mark.parametrize(
    ("age", "chance", "expect_rerun"),
    [
        (5, 0.0, False),  # younger than min_ttl: reused whatever the dice say
        (15, 0.9, False),  # half-way: refresh chance 0.5, dice 0.9 -> reuse
        (15, 0.1, True),  # half-way: dice 0.1 -> refresh
        (25, 0.99, True),  # past max_ttl: always recomputed
    ],
)
def test_ttl_window_and_probabilistic_refresh(age, chance, expect_rerun):
    calls = []
    clock = Clock()
    cache = ResultCache(clock=clock, chance=lambda: chance)
    dag = build(calls, min_ttl=10, max_ttl=20)
    run(ExecutionEngine(None, dag, cache=cache).execute({"x": 2}))
    clock.now += age
    run(ExecutionEngine(None, dag, cache=cache).execute({"x": 2}))
    assert len(calls) == (2 if expect_rerun else 1)


def test_without_a_cache_store_the_flag_does_nothing():
    calls = []
    dag = build(calls)
    run(ExecutionEngine(None, dag).execute({"x": 1}))
    run(ExecutionEngine(None, dag).execute({"x": 1}))
    assert calls == [1, 1]
