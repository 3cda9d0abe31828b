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
    .venv/bin/python benches/bench_scale.py --build public --tasks 10000000 --write BENCHMARKS.md

`--build public` goes through the public API end to end, as a user's script would: the keys
and input rows made in Python (`columns`: a list of str keys, a tuple of 2 of those keys per
row), one `DataflowRegistry.register_tasks` call (`register`), `build_dag()` (`graph`: the
registry's columns copied, the Rust graph built and validated), the registry and the columns
dropped, then `ExecutionEngine(None, dag).execute()`. It reports each phase's time and the
process's peak RSS over the whole run, and `--write` puts that in BENCHMARKS.md's section
"## Ten million tasks in one process (issue 14)".
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
from array import array
from collections.abc import Iterator
from itertools import repeat
from operator import add, mod
from typing import Any

from common import cpu_model, git_commit, loadavg, nproc, proc_status, write_section

WIDTH = 10_000
SECTION = "## Ten million tasks in one process (issue 14)"


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


def _parent_arrays(n: int, seed: int) -> tuple[array, array]:
    """The public path's DAG, as a generator would hand it over: for each node after the first
    layer, 2 distinct random parents in the layer above, as two compact arrays of ids (drawn
    with `choices`, much faster than a `sample` per node; the same shape as `_parents`)."""
    rnd = random.Random(seed)
    m = max(n - WIDTH, 0)
    first = rnd.choices(range(WIDTH), k=m)
    shift = rnd.choices(range(1, WIDTH), k=m)  # the second parent: another column of the layer
    bases = [(i // WIDTH - 1) * WIDTH for i in range(WIDTH, n)]
    a = array("l", map(add, bases, first))
    b = array("l", map(add, bases, map(mod, map(add, first, shift), repeat(WIDTH, m))))
    return a, b


def child(n: int, build: str, seed: int) -> dict[str, Any]:
    from taskiq_dataflow import _core
    from taskiq_dataflow.dataflow.dag import DAG
    from taskiq_dataflow.dataflow.registry import DataflowRegistry
    from taskiq_dataflow.execution_engine import ExecutionEngine

    out: dict[str, Any] = {"tasks": n, "build": build, "seed": seed}
    loop = asyncio.new_event_loop()
    warm = DAG.from_columns([noop] * 3, ["noop"] * 3, [(), ("w0",), ("w1",)],
                            [("w0",), ("w1",), ("w2",)], [None] * 3)  # fmt: skip
    loop.run_until_complete(ExecutionEngine(None, warm).execute())
    if build == "public":
        parent_a, parent_b = _parent_arrays(n, seed)  # the DAG's description, not timed
    parents = _parents(n, seed)
    gc.collect()
    rss = [proc_status("VmRSS")]
    phases: dict[str, float] = {}
    cpu = [time.process_time()]  # CPU time at the end of the last mark (its gc.collect excluded)

    def mark(name: str, began: float) -> None:
        phases[name + "_s"] = time.perf_counter() - began
        phases[name + "_cpu_s"] = time.process_time() - cpu[-1]
        gc.collect()
        rss.append(proc_status("VmRSS"))
        out[name + "_bytes"] = rss[-1] - rss[-2]
        cpu.append(time.process_time())

    began = time.perf_counter()
    if build == "public":
        keys = [f"k{i}" for i in range(n)]
        key = keys.__getitem__
        rows: list[tuple[str, ...]] = [()] * WIDTH
        rows += zip(map(key, parent_a), map(key, parent_b), strict=True)
        mark("columns", began)
        began = time.perf_counter()
        registry = DataflowRegistry()
        registry.register_tasks(noop, outputs=keys, inputs=rows)
        mark("register", began)
        del keys, rows
        began = time.perf_counter()
        dag = registry.build_dag()  # copies the columns, builds the Rust graph and validates it
        mark("graph", began)
        del registry
        gc.collect()
        out["registry_dropped_rss"] = proc_status("VmRSS")
    elif build == "registry":
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
    out["build_peak_rss"] = proc_status("VmHWM")  # the peak of everything before the run
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
            cpu = f" ({r[phase + '_cpu_s']:.2f} s CPU)" if phase + "_cpu_s" in r else ""
            lines.append(f"  {phase:<10} {per(phase + '_bytes'):<28} {r[phase + '_s']:7.2f} s{cpu}")
    lines += [
        f"  DAG built  RSS {r['dag_rss'] / 2**20:,.0f} MiB",
        f"  run        {r['run_s']:.2f} s wall, {r['run_cpu_s']:.2f} s CPU "
        f"({r['run_cpu_s'] / n * 1e6:.2f} us/task, {n / r['run_s']:,.0f} tasks/s)",
        f"  run peak   {per('run_peak_bytes')} above the built DAG",
        f"  run kept   {per('run_kept_bytes')} (outputs returned + values held)",
        f"  dropped    {per('after_results_dropped_bytes')} once the outputs are dropped",
        f"  peak RSS   {r['total_peak_rss'] / 2**30:.2f} GiB (VmHWM since the reset)",
    ]
    if r["build"] == "public":
        lines += [
            f"  end to end {e2e_seconds(r):.2f} s (columns + register + graph + run), peak RSS "
            f"{process_peak(r) / 2**30:.2f} GiB over the whole process",
        ]
    return lines


def e2e_seconds(r: dict[str, Any]) -> float:
    """The public path's end to end: the phases a user's script goes through."""
    return float(r["columns_s"] + r["register_s"] + r["graph_s"] + r["run_s"])


def e2e_cpu(r: dict[str, Any]) -> float:
    return float(r["columns_cpu_s"] + r["register_cpu_s"] + r["graph_cpu_s"] + r["run_cpu_s"])


def process_peak(r: dict[str, Any]) -> int:
    return int(max(r["build_peak_rss"], r["total_peak_rss"]))


def section(r: dict[str, Any], command: str, load: tuple[str, str]) -> str:
    """BENCHMARKS.md's section for one `--build public` run."""
    n = r["tasks"]
    gib = 2**30
    e2e = e2e_seconds(r)
    peak = process_peak(r)
    rows = [
        ("making the columns (keys, input tuples)", "columns"),
        ("`register_tasks(noop, outputs=keys, inputs=rows)`", "register"),
        ("`build_dag()` (columns copied, Rust graph built and validated)", "graph"),
    ]
    lines = [
        SECTION,
        "",
        f"`{command}` on {cpu_model()} ({nproc()} CPUs, shared; load {load[0]} before, "
        f"{load[1]} after), commit {git_commit()}. One run (it needs several GiB), in a fresh "
        "interpreter, GC on.",
        "",
        f"{n:,} no-op async tasks, {r['edges']:,} edges: bench_scale.py's wide DAG ({WIDTH:,} "
        "wide, each node after the first layer reads 2 distinct random keys of the layer above, "
        f"seed {r.get('seed', 1)}, drawn into two arrays of parent ids beforehand, untimed), "
        'through the public API only: the keys and rows made in Python (`keys = [f"k{i}" '
        "...]`, `rows += zip(map(keys.__getitem__, a), map(keys.__getitem__, b))`), "
        "one `DataflowRegistry.register_tasks` call, `build_dag()`, the registry and the "
        "columns dropped, then `ExecutionEngine(None, dag).execute()` (which returns every "
        "output). RSS is read after each phase (after a `gc.collect()`, not timed).",
        "",
        "| phase | wall | CPU | RSS added |",
        "|---|---:|---:|---:|",
    ]
    for label, phase in rows:
        lines.append(
            f"| {label} | {r[phase + '_s']:.2f} s | {r[phase + '_cpu_s']:.2f} s "
            f"| {r[phase + '_bytes'] / n:.0f} B/task |"
        )
    lines += [
        f"| `ExecutionEngine(None, dag).execute()` | {r['run_s']:.2f} s "
        f"({n / r['run_s']:,.0f} tasks/s) | {r['run_cpu_s']:.2f} s "
        f"({r['run_cpu_s'] / n * 1e6:.2f} us/task) "
        f"| peak {r['run_peak_bytes'] / n:.0f} B/task above the built DAG |",
        f"| **end to end** | **{e2e:.1f} s** (target < 60 s: {'met' if e2e < 60 else 'missed'})"
        f" | **{e2e_cpu(r):.1f} s** | **peak {peak / gib:.2f} GiB** (target < 6 GiB: "
        f"{'met' if peak < 6 * gib else 'missed'}) |",
        "",
        f"The built DAG alone (registry and columns dropped; the interpreter and the two "
        "parent-id arrays, 16 B/task, included): "
        f"{r['dag_rss'] / gib:.2f} GiB, {r['dag_rss'] / n:.0f} B/task. The peak, "
        f"{peak / n:.0f} B/task, is the built DAG plus the run's values and returned outputs "
        "(the columns and the registry are gone by then; the building phases peaked at "
        f"{r['build_peak_rss'] / gib:.2f} GiB).",
        "",
        f"Which phase is the limit: the run, {r['run_cpu_s'] / e2e_cpu(r):.0%} of the CPU end "
        f"to end. Registration and build (columns, `register_tasks`, `build_dag()`) take "
        f"{(e2e_cpu(r) - r['run_cpu_s']):.1f} s of CPU "
        f"({(e2e_cpu(r) - r['run_cpu_s']) / n * 1e6:.2f} us/task). Wall time is CPU time "
        "plus waiting for the CPU on a shared machine. Idle, wall would be about the CPU "
        f"column, {e2e_cpu(r):.0f} s: "
        + (
            f"under the 60 s target with {60 - e2e_cpu(r):.0f} s to spare."
            if e2e_cpu(r) < 60
            else 'over the 60 s target. SCALING.md ("The public API at 10M tasks") '
            "profiles the run and says what would bring it under."
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--build", choices=("columns", "registry", "public"), default="columns")
    parser.add_argument("--write", metavar="BENCHMARKS.md", help="(--build public) its section")
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
        load_before = loadavg()
        cmd = [sys.executable, __file__, "--child", "--tasks", str(n), "--build", args.build]
        cmd += ["--seed", str(args.seed)]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True)
        line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
        r = json.loads(line[len("RESULT ") :])
        r["load_after"] = loadavg()
        results.append(r)
        print("\n".join(report(r)) + f"\n  load after {r['load_after']}", flush=True)
        if args.write and args.build == "public":
            command = f"python benches/bench_scale.py --build public --tasks {n}"
            write_section(args.write, SECTION, section(r, command, (load_before, r["load_after"])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
