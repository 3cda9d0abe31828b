"""A small run beside a big one on one engine (issue 10, shared limits): how long the second
run waits for its first steps while the first still has most of a 100,000-task DAG to go.

In-process: `ExecutionEngine(None, dag, max_parallel=256)` over the wide 1,000 x 100 no-op DAG
(each task sleeps 0 s: one event-loop turn). Run A starts; 50 ms later run B starts on the same
engine; measured: the time from B's start to its 5th and its 1,000th completed step, and how much
of A was done by then, against B alone on an idle engine. Best and median of 5.

    .venv/bin/python benches/bench_fairness.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import wide


async def step(*args: Any) -> None:
    await asyncio.sleep(0)


def build() -> Any:
    from taskiq_dataflow.dataflow.dag import DAG

    preds = wide(1000, 100)
    keys = [f"k{i}" for i in range(len(preds))]
    n = len(preds)
    inputs = [tuple(keys[p] for p in ps) for ps in preds]
    dag = DAG.from_columns([step] * n, ["step"] * n, inputs, [(k,) for k in keys], [None] * n)
    dag.graph  # noqa: B018 - built before the timing
    return dag


async def first_steps(engine: Any, marks: tuple[int, ...]) -> list[float]:
    began, seen, times = time.perf_counter(), 0, []
    async for _ in engine.execute_async():
        seen += 1
        if seen in marks:
            times.append(time.perf_counter() - began)
            if len(times) == len(marks):
                break  # leaving early cancels this run only
    return times


async def beside(dag: Any) -> tuple[list[float], float]:
    from taskiq_dataflow import ExecutionEngine

    engine = ExecutionEngine(None, dag, max_parallel=256)
    big = engine.start()
    await asyncio.sleep(0.05)
    times = await first_steps(engine, (5, 1000))
    done = big.progress()["done"] / len(dag)
    big.cancel()
    await asyncio.gather(big, return_exceptions=True)
    return times, done


async def alone(dag: Any) -> list[float]:
    from taskiq_dataflow import ExecutionEngine

    return await first_steps(ExecutionEngine(None, dag, max_parallel=256), (5, 1000))


def main() -> None:
    dag = build()
    solo = [asyncio.run(alone(dag)) for _ in range(5)]
    shared = [asyncio.run(beside(dag)) for _ in range(5)]
    for i, mark in enumerate((5, 1000)):
        a = [t[i] * 1e3 for t in solo]
        b = [t[0][i] * 1e3 for t in shared]
        print(
            f"B's step {mark:>5}: alone best {min(a):8.2f} ms median {statistics.median(a):8.2f}"
            f" | beside A best {min(b):8.2f} ms median {statistics.median(b):8.2f}"
        )
    print(f"A done when B had 1,000 steps: {max(d for _, d in shared):.1%} at most")


if __name__ == "__main__":
    main()
