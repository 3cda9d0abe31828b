"""A map node over 100,000 items (issue 5): one registered no-op task per item.

- ours, cluster: `Flow.map(sub_flow)` with the sub-flow's task on 2 worker processes
  (`python -m taskiq_dataflow.cluster.serve cluster_bench_tasks:broker --workers 2`, against a
  nats-server this script starts on a free loopback port): the map task adds N tasks (and one
  collecting their results) to its own run, and the Rust scheduler dispatches them;
- ours, in-process: the same flow on the local default;
- dask: `client.map(ident, items)` + `client.gather` on `distributed.LocalCluster(n_workers=2,
  threads_per_worker=1, processes=True)`, the usual way to map a function over a list on a
  cluster; it runs fewer items (`--dask-n`, 0 leaves it out), its rate is per item.

Items per second over the wall time of the whole map, best of `--repeat` runs.

    .venv/bin/python benches/bench_map.py                         # ~1 min
    .venv/bin/python benches/bench_map.py --write BENCHMARKS.md   # and replace its section
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import bench_cluster, best_rates, rates_section, write_section  # noqa: E402

TITLE = "## Map nodes (issue 5)"


def flow_of(task):
    from taskiq_dataflow import Flow

    def numbers(n):
        return list(range(n))

    def count(results):
        return len(results)

    one = Flow("one")
    one.node(task)
    flow = Flow("bench")
    flow.node(numbers) >> flow.map(one, name="items") >> flow.node(count)
    return flow


def ours(n: int, broker, task) -> float:
    flow = flow_of(task)
    start = time.perf_counter()
    out = asyncio.run(flow.engine(broker).execute({"n": n}))
    elapsed = time.perf_counter() - start
    assert out["count"] == n and out["items"][-1] == n - 1, out["count"]
    return n / elapsed


def dask_rate(n: int) -> float:
    import cluster_bench_tasks as tasks
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(tasks.noop_sync, range(100)))  # warm-up
        start = time.perf_counter()
        results = client.gather(client.map(tasks.noop_sync, range(n), pure=False))
        elapsed = time.perf_counter() - start
    assert len(results) == n
    return n / elapsed


def measure(n: int, dask_n: int, repeat: int) -> dict[str, float]:
    with bench_cluster():
        import cluster_bench_tasks as tasks

        ours(1000, tasks.broker, tasks.ident)  # warm-up: both workers serving
        best = best_rates(
            [
                ("ours, cluster", lambda: ours(n, tasks.broker, tasks.ident)),
                ("ours, in-process", lambda: ours(n, None, tasks.ident.original_func)),
            ],
            repeat,
        )
    if dask_n:
        best["dask distributed"] = dask_rate(dask_n)
    return best


def render(best: dict[str, float], n: int, dask_n: int, repeat: int, command: str) -> str:
    setup = (
        f"A map over {n:,} items of a one-task sub-flow (dask: `client.map` over {dask_n:,} "
        f"items); 2 worker processes; best of {repeat} (dask: 1 run)."
    )
    lines = rates_section(TITLE, command, setup, best, "dask distributed", 1)
    lines += [
        "",
        "The map task adds a copy of the sub-flow per item to its own run (one `add_tasks` "
        "call, one `Scheduler.add_nodes` call into Rust) and returns `result_of` a task "
        "collecting them: the Rust scheduler hands out the items' tasks, batched into frames "
        "to the workers, rather than a Python loop submitting one future per item.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dask-n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", metavar="FILE")
    args = parser.parse_args()
    best = measure(args.n, args.dask_n, args.repeat)
    if not args.dask_n:  # no peer to quote a ratio against: the rates alone (before/after runs)
        for name, rate in best.items():
            print(f"{name}: {rate:,.0f} items/s")
        return 0
    command = "python benches/bench_map.py"
    text = render(best, args.n, args.dask_n, args.repeat, command)
    print(text)
    if args.write:
        write_section(args.write, TITLE, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
