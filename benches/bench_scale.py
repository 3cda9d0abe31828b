"""Memory and CPU per task of a large in-process run (SCALING.md), phase by phase.

One fresh interpreter per size (this script with `--child`) builds a wide DAG of no-op async
tasks (WIDTH wide, node i of layer d > 0 reads 2 random keys of layer d - 1, seed 1), the way
bench_engine.py does (`DAG.from_columns`) or through `DataflowRegistry.register_task`
(`--build registry`), then runs it with `ExecutionEngine(None, dag).execute()`. After each phase
it collects garbage and reads VmRSS (the peak, VmHWM, is reset before the run through
/proc/self/clear_refs), so each phase's bytes are what it added:

- keys, inputs, outputs, columns: the Python side of the DAG (the key strings, one inputs and one
  outputs tuple per node, the tasks / names / metadata lists);
- graph: the Rust graph (`dag.graph`: keys interned, CSR edges) and `validate()`;
- scheduler: a Rust `Scheduler` over that graph alone (made and dropped, for the breakdown);
- run: the run's peak above the built DAG, RSS kept once it returned (its outputs dict and the
  run's values dict), CPU (`time.process_time()`) and wall time.

    .venv/bin/python benches/bench_scale.py                       # 1M tasks, ~15 s
    .venv/bin/python benches/bench_scale.py --tasks 5000000       # 2 GiB, ~1 min
    .venv/bin/python benches/bench_scale.py --build registry      # register_task loop instead
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from common import cpu_model, git_commit, loadavg, nproc, proc_status

WIDTH = 10_000


async def noop(*args: Any) -> None:
    return None


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _parents(n: int, seed: int) -> Iterator[tuple[int, int]]:
    """Per node after the first layer, 2 distinct random parents in the layer above: drawn as
    the DAG is built, so that no list of them is made and freed before the run."""
    rnd = random.Random(seed)
    sample, cols = rnd.sample, range(WIDTH)
    for i in range(WIDTH, n):
        base = (i // WIDTH - 1) * WIDTH
        a, b = sample(cols, 2)
        yield base + a, base + b


def child(n: int, build: str, seed: int) -> dict[str, Any]:
    from taskiq_dataflow import _core
    from taskiq_dataflow.dataflow.dag import DAG
    from taskiq_dataflow.dataflow.registry import DataflowRegistry
    from taskiq_dataflow.execution_engine import ExecutionEngine

    out: dict[str, Any] = {"tasks": n, "build": build}
    loop = asyncio.new_event_loop()
    warm = DAG.from_columns([noop] * 3, ["noop"] * 3, [(), ("w0",), ("w1",)],
                            [("w0",), ("w1",), ("w2",)], [None] * 3)  # fmt: skip
    loop.run_until_complete(ExecutionEngine(None, warm).execute())
    parents = _parents(n, seed)
    gc.collect()
    rss = [proc_status("VmRSS")]
    phases: dict[str, float] = {}

    def mark(name: str, began: float) -> None:
        phases[name + "_s"] = time.perf_counter() - began
        gc.collect()
        rss.append(proc_status("VmRSS"))
        out[name + "_bytes"] = rss[-1] - rss[-2]

    began = time.perf_counter()
    if build == "registry":
        registry = DataflowRegistry()
        register = registry.register_task
        for i in range(WIDTH):
            register(noop, output=f"k{i}", inputs=[])
        for i, (a, b) in enumerate(parents, WIDTH):
            register(noop, output=f"k{i}", inputs=[f"k{a}", f"k{b}"])
        mark("register", began)
        began = time.perf_counter()
        dag = registry.build_dag()  # builds the Rust graph and validates it
        mark("graph", began)
    else:
        keys = [f"k{i}" for i in range(n)]
        mark("keys", began)
        began = time.perf_counter()
        inputs: list[Any] = [()] * WIDTH
        inputs += [(keys[a], keys[b]) for a, b in parents]
        mark("inputs", began)
        began = time.perf_counter()
        outputs = [(k,) for k in keys]
        mark("outputs", began)
        began = time.perf_counter()
        dag = DAG.from_columns([noop] * n, ["noop"] * n, inputs, outputs, [None] * n)
        mark("columns", began)
        del keys, inputs, outputs
        began = time.perf_counter()
        dag.graph  # noqa: B018 - the Rust graph
        dag.validate()
        mark("graph", began)
    del parents
    out["edges"] = dag.graph.edge_count
    began = time.perf_counter()
    sched = _core.Scheduler(dag.graph)
    mark("scheduler", began)
    del sched
    gc.collect()
    rss0 = proc_status("VmRSS")
    out["dag_rss"] = rss0
    _reset_peak()
    began, cpu0 = time.perf_counter(), time.process_time()
    results = loop.run_until_complete(ExecutionEngine(None, dag).execute())
    out["run_s"] = time.perf_counter() - began
    out["run_cpu_s"] = time.process_time() - cpu0
    out["run_peak_bytes"] = proc_status("VmHWM") - rss0
    assert len(results) == n, len(results)
    gc.collect()
    out["run_kept_bytes"] = proc_status("VmRSS") - rss0
    del results
    gc.collect()
    out["after_results_dropped_bytes"] = proc_status("VmRSS") - rss0
    out.update(phases)
    out["total_peak_rss"] = max(proc_status("VmHWM"), rss0)
    return out


def report(r: dict[str, Any]) -> list[str]:
    n = r["tasks"]
    per = lambda key: f"{r[key] / n:,.0f} B/task ({r[key] / 2**20:,.0f} MiB)"  # noqa: E731
    lines = [f"{n:,} tasks, {r['edges']:,} edges, build: {r['build']}"]
    for phase in ("keys", "inputs", "outputs", "columns", "register", "graph", "scheduler"):
        if phase + "_bytes" in r:
            lines.append(f"  {phase:<10} {per(phase + '_bytes'):<28} {r[phase + '_s']:7.2f} s")
    lines += [
        f"  DAG built  RSS {r['dag_rss'] / 2**20:,.0f} MiB",
        f"  run        {r['run_s']:.2f} s wall, {r['run_cpu_s']:.2f} s CPU "
        f"({r['run_cpu_s'] / n * 1e6:.2f} us/task, {n / r['run_s']:,.0f} tasks/s)",
        f"  run peak   {per('run_peak_bytes')} above the built DAG",
        f"  run kept   {per('run_kept_bytes')} (outputs returned + values held)",
        f"  dropped    {per('after_results_dropped_bytes')} once the outputs are dropped",
        f"  peak RSS   {r['total_peak_rss'] / 2**30:.2f} GiB (VmHWM since the reset)",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--build", choices=("columns", "registry"), default="columns")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.tasks[0], args.build, args.seed)), flush=True)
        return
    print(f"{cpu_model()}, nproc {nproc()}, commit {git_commit()}, load {loadavg()}", flush=True)
    results = []
    for n in args.tasks:
        cmd = [sys.executable, __file__, "--child", "--tasks", str(n), "--build", args.build]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True)
        line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
        r = json.loads(line[len("RESULT ") :])
        r["load_after"] = loadavg()
        results.append(r)
        print("\n".join(report(r)) + f"\n  load after {r['load_after']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
