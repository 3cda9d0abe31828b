"""pytest-benchmark suite: the runs of bench_engine.py on small DAGs, per system.

Not part of the normal test run (pytest's testpaths is ["tests"]); run it with

    .venv/bin/python -m pytest benches/test_engine_bench.py --benchmark-only

Groups: a wide DAG (`BENCH_WIDTH` x `BENCH_DEPTH`, default 200 x 20 = 4,000 no-op tasks, 2 random
parents per node in the layer above), a chain (`BENCH_CHAIN`, default 2,000), and a tiny 10 x 3
DAG on which taskiq-flow runs too (one round: it polls results every 0.2 s). dask runs sync no-op
functions (it does not run coroutines). Needs the `bench` extra (taskiq-flow, dask).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bench_engine import (
    Preds,
    build_system,
    chain,
    run_system,
    wide,
)

WIDTH = int(os.environ.get("BENCH_WIDTH", "200"))
DEPTH = int(os.environ.get("BENCH_DEPTH", "20"))
CHAIN = int(os.environ.get("BENCH_CHAIN", "2000"))

SYSTEMS = ["ours", "graphlib", "dask-threaded", "dask-sync"]


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def runner(loop: asyncio.AbstractEventLoop, system: str, preds: Preds) -> Callable[[], int]:
    built = build_system(system, preds, prefix=f"{system}-{len(preds)}-")

    def run() -> int:
        count = loop.run_until_complete(run_system(system, built))
        assert count == len(preds)
        return count

    return run


def bench(benchmark: Any, run: Callable[[], int], rounds: int) -> None:
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("system", SYSTEMS)
def test_wide(benchmark: Any, loop: asyncio.AbstractEventLoop, system: str) -> None:
    preds = wide(WIDTH, DEPTH)
    benchmark.group = f"wide {WIDTH} x {DEPTH} ({len(preds):,} tasks)"
    bench(benchmark, runner(loop, system, preds), rounds=5)


@pytest.mark.parametrize("system", ["ours", "graphlib", "dask-sync"])
def test_chain(benchmark: Any, loop: asyncio.AbstractEventLoop, system: str) -> None:
    benchmark.group = f"chain {CHAIN:,}"
    bench(benchmark, runner(loop, system, chain(CHAIN)), rounds=5)


@pytest.mark.parametrize("system", [*SYSTEMS, "taskiq-flow"])
def test_tiny(benchmark: Any, loop: asyncio.AbstractEventLoop, system: str) -> None:
    preds = wide(10, 3)
    benchmark.group = "wide 10 x 3 (30 tasks), with taskiq-flow"
    rounds = 1 if system == "taskiq-flow" else 5
    bench(benchmark, runner(loop, system, preds), rounds=rounds)
