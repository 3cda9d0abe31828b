"""DAGs that grow while they run (issue 10): a recursive fan-out where every task adds 10
children, to a given depth, against the same tree built before the run.

Each task of a level adds its 10 children with one `add_tasks` call (one `Scheduler.add_nodes`
call into Rust per batch); the leaves return their path. Depth 6 is 1,111,111 tasks. The
prebuilt case registers the same tree as one DAG and runs it, to show what growth costs on top.

    .venv/bin/python benches/bench_growth.py [--depth 6]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from typing import Any

from taskiq_dataflow import DAG, DAGNode, ExecutionEngine, add_tasks

FAN = 10


def children(path: str) -> list[str]:
    return [f"{path}.{i}" for i in range(FAN)]


def spreader(depth: int) -> Any:
    async def spread(path: str) -> tuple[str, ...]:
        kids = children(path)
        if path.count(".") + 1 < depth:
            add_tasks(DAGNode(spread, outputs=children(k), inputs=[k], name=k) for k in kids)
        else:
            add_tasks(DAGNode(leaf, output=f"{k}!", inputs=[k], name=k) for k in kids)
        return tuple(kids)

    return spread


async def leaf(path: str) -> str:
    return path


async def passthrough(path: str) -> tuple[str, ...]:
    return tuple(children(path))


def grown(depth: int) -> tuple[float, int]:
    dag = DAG()
    dag.add_node(DAGNode(spreader(depth), outputs=children("r"), inputs=["path"], name="r"))
    began = time.perf_counter()
    out = asyncio.run(ExecutionEngine(None, dag).execute({"path": "r"}))
    return time.perf_counter() - began, sum(k.endswith("!") for k in out)


def prebuilt(depth: int) -> tuple[float, int]:
    began = time.perf_counter()
    dag = DAG()
    level = ["r"]
    dag.add_node(DAGNode(passthrough, outputs=children("r"), inputs=["path"], name="r"))
    for d in range(1, depth + 1):
        nxt = [k for p in level for k in children(p)]
        for k in nxt:
            if d < depth:
                dag.add_node(DAGNode(passthrough, outputs=children(k), inputs=[k], name=k))
            else:
                dag.add_node(DAGNode(leaf, output=f"{k}!", inputs=[k], name=k))
        level = nxt
    out = asyncio.run(ExecutionEngine(None, dag).execute({"path": "r"}))
    return time.perf_counter() - began, sum(k.endswith("!") for k in out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--mode", choices=("grown", "prebuilt"), help="one case, in this process")
    args = parser.parse_args()
    if args.mode is None:  # each case in a fresh interpreter: its own peak RSS
        for mode in ("grown", "prebuilt"):
            cmd = [sys.executable, __file__, "--depth", str(args.depth), "--mode", mode]
            subprocess.run(cmd, check=True)
        return
    tasks = sum(FAN**d for d in range(args.depth + 1))
    took, leaves = (grown if args.mode == "grown" else prebuilt)(args.depth)
    assert leaves == FAN**args.depth
    label = "grown at run time" if args.mode == "grown" else "built before the run"
    print(
        f"{label}: {tasks:,} tasks in {took:.1f} s ({took / tasks * 1e6:.1f} us/task), "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB",
        flush=True,
    )


if __name__ == "__main__":
    main()
