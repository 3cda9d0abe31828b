"""What the dashboard costs the engine: the in-process 100k-task benchmark (bench_engine's wide
1,000 x 100 DAG of no-op async tasks) without a dashboard, with one attached, and with one
attached and a browser-like client reading its event stream (and fetching the run's snapshot
as the page does when it opens), alternating, best of N rounds, each measurement in a fresh
interpreter that runs the DAG `--runs` times back to back (so the dashboard's 0.5 s looks
fall inside the runs: one 100k run takes ~0.25 s on an idle machine).

    .venv/bin/python benches/bench_dashboard.py [--rounds 5] [--runs 4]

The issue's bound: attached (even with the client), at most 5% slower.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODES = ("off", "dashboard", "dashboard+client")
SHAPE = ["wide", 1000, 100]
# noop: bench_engine's no-op tasks; they never suspend, so a 100k run is one turn of the event
# loop and the dashboard looks at it only between runs. yielding: each task suspends once
# (asyncio.sleep(0)), so the looks and the client's reads fall inside the runs.
TASKS = ("noop", "yielding")


async def _yielding(*args: Any) -> None:
    await asyncio.sleep(0)


def _dag(tasks: str) -> Any:
    from bench_engine import build_ours, make_preds

    dag = build_ours(make_preds(SHAPE))
    if tasks == "yielding":
        from taskiq_dataflow.dataflow.dag import DAG

        n = len(dag)
        dag = DAG.from_columns(
            [_yielding] * n, ["yielding"] * n, dag.node_inputs, dag.node_outputs, [None] * n
        )
        dag.graph  # noqa: B018 - built before the timing, as bench_engine does
    return dag


async def _client(url: str, stop: asyncio.Event, seen: list[int]) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url + "api/events") as response:
        async for line in response.content:
            if line.startswith(b"event: snapshot"):
                seen[0] += 1
                async with session.get(url + "api/runs") as runs:
                    await runs.read()
            if stop.is_set():
                return


async def _measure(mode: str, tasks_kind: str, runs: int) -> dict[str, Any]:
    from taskiq_dataflow import ExecutionEngine
    from taskiq_dataflow.dashboard import Dashboard

    dag = _dag(tasks_kind)
    engine = ExecutionEngine(None, dag)
    dash = None
    client = None
    stop = asyncio.Event()
    seen = [0]
    if mode != "off":
        dash = Dashboard(engine, port=0)
        url = await dash.start()
        if mode == "dashboard+client":
            client = asyncio.ensure_future(_client(url, stop, seen))
            await asyncio.sleep(0.2)  # connected before the first run
    gc.collect()
    elapsed = 0.0
    tasks = 0
    for _ in range(runs):
        started = time.perf_counter()
        outputs = await engine.execute()
        elapsed += time.perf_counter() - started
        tasks += len(outputs)
        await asyncio.sleep(0.6)  # not timed: the client reads the finished run's snapshot
    stop.set()
    if client is not None:
        client.cancel()
        await asyncio.gather(client, return_exceptions=True)
    if dash is not None:
        await dash.stop()
    return {"mode": mode, "tasks": tasks, "elapsed": elapsed, "snapshots": seen[0]}


def measure(mode: str, tasks: str, runs: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--tasks", tasks, "--runs", str(runs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"{mode}: no result\n{proc.stdout}\n{proc.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=4, help="100k runs per measurement")
    parser.add_argument("--tasks", choices=TASKS, nargs="*", default=list(TASKS))
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = asyncio.run(_measure(args.child, args.tasks[0], args.runs))
        print("RESULT " + json.dumps(result), flush=True)
        return
    best: dict[tuple[str, str], float] = {}
    snapshots: dict[tuple[str, str], int] = {}
    for round_ in range(args.rounds):
        for tasks in args.tasks:
            for mode in MODES:
                r = measure(mode, tasks, args.runs)
                rate = r["tasks"] / r["elapsed"]
                key = (tasks, mode)
                best[key] = max(best.get(key, 0.0), rate)
                snapshots[key] = max(snapshots.get(key, 0), r["snapshots"])
                print(f"round {round_ + 1} {tasks} {mode}: {rate:,.0f} tasks/s", file=sys.stderr)
    print(
        f"load average {os.getloadavg()[0]:.2f}; best of {args.rounds} rounds of {args.runs} runs:"
    )
    print("| tasks | mode | tasks/s | vs off |")
    print("|---|---|---:|---:|")
    for tasks in args.tasks:
        for mode in MODES:
            key = (tasks, mode)
            note = f" ({snapshots[key]} snapshots read)" if mode == "dashboard+client" else ""
            ratio = best[key] / best[tasks, "off"]
            print(f"| {tasks} | {mode}{note} | {best[key]:,.0f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
