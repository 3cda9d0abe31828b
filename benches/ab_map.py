"""A map over N items in-process, timed and its peak memory read, in this interpreter: run it
once per checkout (PYTHONPATH picks which) to compare a map node's runtime before and after.

    PYTHONPATH=/tmp/old/python .venv/bin/python benches/ab_map.py [--n 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from taskiq_dataflow import Flow

    def numbers(n: int) -> list[int]:
        return list(range(n))

    def double(x: int) -> int:
        return 2 * x

    def inc(y: int) -> int:
        return y + 1

    def count(results: list[int]) -> int:
        return len(results)

    two = Flow("two")
    two.node(double) >> two.node(inc)
    flow = Flow("bench")
    flow.node(numbers) >> flow.map(two, name="items") >> flow.node(count)
    best = float("inf")
    for _ in range(args.repeat):
        began = time.perf_counter()
        out = asyncio.run(flow.run({"n": args.n}))
        best = min(best, time.perf_counter() - began)
        assert out["count"] == args.n and out["items"][-1] == 2 * (args.n - 1) + 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.n:,} items x 2 tasks: best {best:.2f} s ({2 * args.n / best:,.0f} tasks/s), "
        f"peak RSS {peak:,.0f} MB"
    )


if __name__ == "__main__":
    main()
