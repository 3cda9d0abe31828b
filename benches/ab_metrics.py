"""What Prometheus metrics cost the in-process engine: `bench_engine`'s DAGs of no-op tasks run
with metrics off, on without task durations (`EngineMetrics(durations=False)`) and on, the three
alternating in one process; the best of `--rounds` per side, in tasks per CPU second (CPU time
is steadier than wall time on a shared machine). Figures in docs/metrics.md.

    .venv/bin/python benches/ab_metrics.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_engine
from taskiq_dataflow import ExecutionEngine
from taskiq_dataflow.metrics import EngineMetrics

SHAPES = {"wide 1,000 x 100": ["wide", 1000, 100], "chain 10,000": ["chain", 10_000]}
SIDES = ("off", "on, durations=False", "on")


def rate(dag: Any, side: str) -> float:
    options = {} if side == "off" else {"metrics": EngineMetrics(durations=side == "on")}
    engine = ExecutionEngine(None, dag, **options)
    gc.collect()
    started = time.process_time()
    tasks = len(asyncio.run(engine.execute()))
    return tasks / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"| DAG | {' | '.join(SIDES)} |")
    print("|---|" + "---:|" * len(SIDES))
    for label, shape in SHAPES.items():
        dag = bench_engine.build_ours(bench_engine.make_preds(shape))
        best = dict.fromkeys(SIDES, 0.0)
        for _ in range(args.rounds):
            for side in SIDES:
                best[side] = max(best[side], rate(dag, side))
        cells = [f"{best[s]:,.0f} ({best[s] / best['off']:.2f}x)" for s in SIDES]
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
