"""A pipeline for the provenance tests; run as a script it executes with a store so a test can
SIGKILL it mid-run: `python provenance_pipeline.py DB RUN_ID LOG`."""

import asyncio
import datetime as dt
import os
import sys
from decimal import Decimal

from pydantic import BaseModel
from taskiq_dataflow import DataflowRegistry, ExecutionEngine, RunStore, pipeline_task


class Summary(BaseModel):
    total: Decimal
    when: dt.date


def make_registry(log_path: str | None = None, slow: float = 0.0, fail: set[str] = frozenset()):
    def note(name: str) -> None:
        if log_path:
            with open(log_path, "a") as f:
                f.write(name + "\n")
        if name in fail:
            raise RuntimeError(f"{name} failed on purpose")

    @pipeline_task(output="raw")
    async def load(n: int) -> tuple:
        note("load")
        return tuple(range(n))

    def part(i):
        @pipeline_task(output=f"part{i}", inputs=["raw"], name=f"part{i}")
        async def work(raw: tuple) -> set:
            await asyncio.sleep(slow)
            note(f"part{i}")
            return {x * i for x in raw}

        return work

    @pipeline_task(output="summary", inputs=[f"part{i}" for i in range(6)])
    async def summarize(*parts: set) -> Summary:
        note("summarize")
        return Summary(total=Decimal(sum(sum(p) for p in parts)) / 4, when=dt.date(2026, 1, 2))

    registry = DataflowRegistry()
    registry.register_external_input("n")
    registry.register_task(load)
    for i in range(6):
        registry.register_task(part(i))
    registry.register_task(summarize)
    return registry


if __name__ == "__main__":
    db, run_id, log = sys.argv[1:4]
    dag = make_registry(log, slow=float(os.environ.get("SLOW", "0.3"))).build_dag()
    engine = ExecutionEngine(None, dag, store=RunStore(db), max_parallel=1)
    asyncio.run(engine.execute({"n": 5}, pipeline_id=run_id))
