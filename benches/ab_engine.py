"""Before/after on the in-process engine: `bench_engine.measure()` for ours and the hand-written
asyncio + graphlib loop, alternating, each run in a fresh interpreter whose PYTHONPATH picks the
checkout (`--before DIR`: another checkout's `python/`, e.g. a `git worktree` of an older
commit with its own built extension; the "after" is this checkout).

    .venv/bin/python benches/ab_engine.py --before /tmp/old/python [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_engine  # noqa: E402

SHAPES = {"wide 1,000 x 100": ["wide", 1000, 100], "chain 10,000": ["chain", 10_000]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the python/ dir of the older checkout")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sides = {"before": args.before, "after": str(HERE.parent / "python")}
    best: dict[tuple[str, str, str], float] = {}
    for _ in range(args.rounds):
        for label, shape in SHAPES.items():
            for side, path in sides.items():
                os.environ["PYTHONPATH"] = path
                for system in ("ours", "graphlib"):
                    r = bench_engine.measure(system, shape)
                    rate = r["tasks"] / r["elapsed"]
                    key = (label, side, system)
                    best[key] = max(best.get(key, 0.0), rate)
    print("| workload | before: ours / loop | after: ours / loop |")
    print("|---|---:|---:|")
    for label in SHAPES:
        cells = []
        for side in sides:
            ours, loop = best[label, side, "ours"], best[label, side, "graphlib"]
            cells.append(f"{ours:,.0f} / {loop:,.0f} tasks/s = **{ours / loop:.2f}x**")
        print(f"| {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
