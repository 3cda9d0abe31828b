"""A hung worker: what the healthy workers of a pool still do while one is SIGSTOPped (issue 9
item 15).

A nats-server on a free loopback port, 3 worker processes serving cluster_bench_tasks:broker
(`DataflowNatsBroker` defaults: heartbeat_timeout 3 s, max_redeliveries 5), and runs of the
wide 1,000 x 20 no-op DAG (20,000 tasks, 2 random parents per task in the layer above). Each
round runs the DAG with all 3 workers healthy, then again with one of them stopped by SIGSTOP
from before the run starts to after it ends (SIGCONT). A run that fails counts as 0 tasks/s.

    .venv/bin/python benches/bench_hung_worker.py [--rounds 3]

Run it against another checkout with PYTHONPATH=<checkout>/python:<checkout>/benches.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import wide  # noqa: E402

WORKERS = 3


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def build(cbt: Any, width: int, depth: int) -> Any:
    from taskiq_dataflow.dataflow.dag import DAG

    preds = wide(width, depth)
    keys = [f"k{i}" for i in range(len(preds))]
    inputs = [tuple(keys[p] for p in ps) for ps in preds]
    n = len(preds)
    return DAG.from_columns([cbt.noop] * n, ["noop"] * n, inputs, [(k,) for k in keys], [None] * n)


async def ready(cbt: Any) -> None:
    from taskiq_dataflow.cluster.protocol import HEARTBEAT

    nc = await cbt.broker.connect()
    seen: set[str] = set()
    done = asyncio.Event()

    async def on_beat(msg: Any) -> None:
        frame = cbt.broker.codec.read_frame(msg.data)
        if frame["t"] == HEARTBEAT:
            seen.add(frame["w"])
            if len(seen) >= WORKERS:
                done.set()

    await nc.subscribe(cbt.broker.heartbeat_subject, cb=on_beat)
    await asyncio.wait_for(done.wait(), 60)
    await nc.close()


def run_once(cbt: Any, dag: Any) -> tuple[float, str]:
    from taskiq_dataflow import ExecutionEngine

    began = time.perf_counter()
    try:
        asyncio.run(ExecutionEngine(cbt.broker, dag).execute())
    except Exception as exc:
        return 0.0, f"{type(exc).__name__}: {str(exc)[:160]}"
    return len(dag) / (time.perf_counter() - began), ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args()
    from taskiq_dataflow.cluster import NatsServer

    with NatsServer() as server:
        os.environ["DATAFLOW_NATS_URL"] = server.url
        import cluster_bench_tasks as cbt

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "taskiq_dataflow.cluster.serve",
             "cluster_bench_tasks:broker", "--workers", str(WORKERS)],
            env=env, start_new_session=True, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            asyncio.run(ready(cbt))
            dag = build(cbt, args.width, args.depth)
            run_once(cbt, dag)  # warm-up
            victim = children(supervisor.pid)[0]
            for round_ in range(1, args.rounds + 1):
                healthy, _ = run_once(cbt, dag)
                os.kill(victim, signal.SIGSTOP)
                try:
                    hung, failure = run_once(cbt, dag)
                finally:
                    os.kill(victim, signal.SIGCONT)
                time.sleep(4)  # the resumed worker is heard again before the next round
                note = f" ({failure})" if failure else ""
                print(
                    f"round {round_}: {WORKERS} healthy {healthy:,.0f} tasks/s; "
                    f"1 of {WORKERS} stopped {hung:,.0f} tasks/s{note}",
                    flush=True,
                )
        finally:
            os.killpg(supervisor.pid, signal.SIGTERM)
            supervisor.wait(30)


if __name__ == "__main__":
    main()
