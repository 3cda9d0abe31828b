"""The engine side of the multi-host drills: one run on the cluster, as a JSON line at the end.

    python multihost_run.py wide URLS WIDTH DEPTH     # the 1000 x 100-style no-op DAG
    python multihost_run.py blob URLS SEED            # a 300 KiB value from pool writers to readers

URLS is the comma list of the servers the engine connects to (the first is its own). While the
run goes, `MARK <percent> <seconds>` lines on stdout say how far it is (every 10 %) and when
(seconds since the run started), `BLOB <seconds>` that the large value was written: the drill
acts on them. The last line is JSON: how many tasks completed, how
many completions a node got (accepted twice: more than one), requeues, the engine's transport
stats, and completions per worker pid in 0.25 s buckets (the drill maps pids to hosts).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import multihost_tasks as tasks
from taskiq_dataflow import DataflowRegistry, ExecutionEngine
from taskiq_dataflow.dataflow.dag import DAG
from taskiq_dataflow.events import Event, StepCompleted, StepRequeued

BUCKET = 0.25


def wide(width: int, depth: int, task: Any = tasks.noop) -> DAG:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
    from common import wide as shape

    preds = shape(width, depth)
    n = len(preds)
    keys = [f"k{i}" for i in range(n)]
    inputs = [tuple(keys[p] for p in ps) for ps in preds]
    return DAG.from_columns(
        [task] * n, [task.task_name] * n, inputs, [(k,) for k in keys], [None] * n
    )


def slow_wide() -> DAG:
    """`taskiq-dataflow run multihost_run:slow_wide`: 40 x 30 tasks of 0.1 s each (a run of
    some seconds whatever the machine, for the drill that loses the engine's host)."""
    return wide(40, 30, tasks.slow)


def blob_dag() -> DAG:
    registry = DataflowRegistry()
    for task in (tasks.make_blob, tasks.gate, tasks.read_blob):
        registry.register_task(task)
    return registry.build_dag()


async def main(kind: str, urls: str, params: list[str]) -> dict[str, Any]:
    tasks.broker.use_servers(urls)
    if kind == "wide":
        dag, inputs = wide(int(params[0]), int(params[1])), {}
    else:
        dag, inputs = blob_dag(), {"seed": int(params[0])}
    total = len(dag.tasks)
    engine = ExecutionEngine(tasks.broker, dag, max_parallel=1024)
    completions: Counter[int] = Counter()
    per_worker: dict[str, Counter[int]] = defaultdict(Counter)
    requeued: list[float] = []
    start = time.monotonic()
    marks = iter(range(10, 101, 10))
    next_mark = next(marks)

    def on_event(event: Event) -> None:
        nonlocal next_mark
        now = time.monotonic() - start
        if isinstance(event, StepRequeued):
            requeued.append(now)
            return
        assert isinstance(event, StepCompleted)
        completions[event.node] += 1
        per_worker[event.worker or "engine"][int(now / BUCKET)] += 1
        if event.task_name.endswith("make_blob"):
            print(f"BLOB {now:.3f}", flush=True)
        while len(completions) * 100 >= next_mark * total:
            print(f"MARK {next_mark} {now:.3f}", flush=True)
            next_mark = next(marks, 1000)

    engine.events.subscribe(on_event, StepCompleted, StepRequeued)
    error = None
    outputs: dict[str, Any] = {}
    try:
        outputs = await engine.execute(inputs)
    except Exception as exc:  # reported in the JSON: the drill asserts on it
        error = f"{type(exc).__name__}: {exc}"
    elapsed = time.monotonic() - start
    timeline = {}
    for worker, buckets in per_worker.items():
        pid = worker.rsplit("-", 2)[1] if worker.count("-") >= 2 else worker
        timeline[pid] = [buckets.get(i, 0) for i in range(int(elapsed / BUCKET) + 1)]
    return {
        "tasks": total,
        "completed": len(completions),
        "accepted_twice": sum(1 for c in completions.values() if c > 1),
        "requeued": len(requeued),
        "requeued_at": [round(t, 2) for t in requeued[:1] + requeued[-1:]],
        "elapsed": round(elapsed, 3),
        "stats": dict(engine.stats),
        "error": error,
        "digest": outputs.get("digest"),
        "bucket": BUCKET,
        "timeline": timeline,
    }


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
    print(json.dumps(result), flush=True)
