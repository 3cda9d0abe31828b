"""The in-process engine of taskiq-dataflow against its peers (issue 3).

Every system runs the SAME generated DAGs of no-op async tasks, in this process's interpreter:

- wide: 1,000 wide x 100 deep (100,000 tasks); every node of layer d > 0 has 2 distinct random
  parents in layer d - 1 (fixed seed);
- chain: 10,000 tasks, each depending on the previous one (latency per hop);
- 1M: 10,000 wide x 100 deep (1,000,000 tasks), ours and the hand-written loop only: engine
  CPU per task and peak memory per task.

Systems:

- ours: `ExecutionEngine(None, dag).execute()` (default in-process LocalTransport);
- graphlib loop: the straightforward hand-written scheduler (graphlib.TopologicalSorter,
  `asyncio.create_task` per ready node, `asyncio.wait(FIRST_COMPLETED)`, `done(...)`);
- taskiq-flow 1.2.2: its `ExecutionEngine` over taskiq's `InMemoryBroker`. It cannot finish the
  100k DAG (its engine logs each step with a topological sort that costs O(V * E)), so it is
  first given `--flow-cap` seconds on it (the tasks it completed are counted), then run on a
  100 x 10 slice built by the same generator, and on a short chain;
- dask: `dask.threaded.get` (and the synchronous `dask.get` for reference) on a dask graph dict of
  sync no-op functions with the same edges: dask does not run coroutines.

Each measurement runs in a fresh interpreter (this script with `--child`): it builds the DAG,
collects garbage, resets the process's peak RSS (`/proc/self/clear_refs`), then times the run.
"Peak B/task" is (VmHWM after the run - VmRSS before it) / tasks: memory the run needed on top
of the built DAG. "CPU us/task" is `time.process_time()` over the run (all threads) / tasks.

    .venv/bin/python benches/bench_engine.py                          # ~9 min; markdown report
    .venv/bin/python benches/bench_engine.py --quick                  # ~1 min
    .venv/bin/python benches/bench_engine.py --write BENCHMARKS.md    # and replace its section

`benches/test_engine_bench.py` (pytest-benchmark) reuses the builders and runners below.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import graphlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

SECTION = "## In-process engine (issue 3)"
HERE = os.path.dirname(os.path.abspath(__file__))

Preds = list[tuple[int, ...]]

# -- the DAGs (one generator for every system) -----------------------------------------------


def wide(width: int, depth: int, seed: int = 1) -> Preds:
    """Node ids layer by layer; each node of layer d > 0 has 2 random parents in layer d - 1."""
    rnd = random.Random(seed)
    sample = rnd.sample
    cols = range(width)
    preds: Preds = [()] * width
    for d in range(1, depth):
        base = (d - 1) * width
        for _ in cols:
            a, b = sample(cols, 2)
            preds.append((base + a, base + b))
    return preds


def chain(n: int) -> Preds:
    return [()] + [(i - 1,) for i in range(1, n)]


def make_preds(shape: Sequence[Any]) -> Preds:
    if shape[0] == "wide":
        return wide(shape[1], shape[2], *shape[3:])
    if shape[0] == "chain":
        return chain(shape[1])
    raise ValueError(f"unknown shape {shape!r}")


def shape_label(shape: Sequence[Any]) -> str:
    if shape[0] == "wide":
        return f"wide {shape[1]:,} x {shape[2]}"
    return f"chain {shape[1]:,}"


# -- the tasks ---------------------------------------------------------------------------------


async def noop(*args: Any) -> None:
    return None


async def noop_kw(**kwargs: Any) -> None:
    return None


def noop_sync(*args: Any) -> None:
    return None


# -- ours ----------------------------------------------------------------------------------------


def build_ours(preds: Preds) -> Any:
    """A taskiq-dataflow DAG with the same edges: node i produces key k{i}, consumes its parents'."""
    from taskiq_dataflow.dataflow.dag import DAG

    n = len(preds)
    keys = [f"k{i}" for i in range(n)]
    inputs = [tuple(keys[p] for p in ps) for ps in preds]
    outputs = [(k,) for k in keys]
    dag = DAG._from_columns([noop] * n, ["noop"] * n, inputs, outputs, [None] * n)
    dag.graph  # noqa: B018 - the Rust graph is part of the built DAG, not of the run
    return dag


async def run_ours(dag: Any) -> int:
    from taskiq_dataflow import ExecutionEngine

    results = await ExecutionEngine(None, dag).execute()
    return len(results)


# -- the hand-written asyncio + graphlib loop ----------------------------------------------------


async def run_graphlib(preds: Preds) -> int:
    """What a competent engineer writes in an afternoon: ready set from graphlib, one Task each."""
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for node, ps in enumerate(preds):
        sorter.add(node, *ps)
    sorter.prepare()
    results: dict[int, Any] = {}
    running: dict[asyncio.Task[Any], int] = {}
    create_task = asyncio.create_task
    while sorter.is_active():
        for node in sorter.get_ready():
            task = create_task(noop(*[results[p] for p in preds[node]]))
            running[task] = node
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            node = running.pop(task)
            results[node] = task.result()
            sorter.done(node)
    return len(results)


# -- dask -----------------------------------------------------------------------------------------


def build_dask(preds: Preds) -> tuple[dict[str, Any], list[str]]:
    keys = [f"k{i}" for i in range(len(preds))]
    dsk = {keys[i]: (noop_sync, *(keys[p] for p in ps)) for i, ps in enumerate(preds)}
    return dsk, keys


def run_dask(built: tuple[dict[str, Any], list[str]], scheduler: str) -> int:
    import dask
    import dask.threaded

    dsk, keys = built
    get = dask.threaded.get if scheduler == "threaded" else dask.get
    return len(get(dsk, keys))


# -- taskiq-flow --------------------------------------------------------------------------------

_flow_done = 0


async def flow_noop(**kwargs: Any) -> None:
    global _flow_done
    _flow_done += 1
    return None


def build_flow(preds: Preds) -> tuple[Any, Any]:
    """One registered broker task per node (its engine keys state by task object).

    The DAG's node and edge lists are filled directly: taskiq-flow's `DAG.add_node` and
    `add_edge` are O(V) and O(E) membership scans, so its own build of 100k nodes alone would be
    quadratic. What is measured is its engine.
    """
    from taskiq import InMemoryBroker
    from taskiq_flow.dataflow.dag import DAG, DAGNode

    # max_stored_results=-1: the default (100) evicts results of waves wider than 100 before
    # taskiq-flow polls them, and the run never ends.
    broker = InMemoryBroker(max_stored_results=-1)
    nodes = [
        DAGNode(task=broker.register_task(flow_noop, task_name=f"k{i}"))
        for i in range(len(preds))
    ]
    dag = DAG(nodes=nodes)
    for i, ps in enumerate(preds):
        child = nodes[i]
        for p in ps:
            parent = nodes[p]
            dag.edges.append((parent, child))
            parent.dependents.append(child)
            child.dependencies.append(parent)
    return broker, dag


async def run_flow(built: tuple[Any, Any]) -> int:
    from taskiq_flow.execution_engine import ExecutionEngine

    broker, dag = built
    await broker.startup()
    results = await ExecutionEngine(broker, dag).execute(inputs={})
    return len(results)


# -- one measurement in a fresh interpreter -------------------------------------------------------


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(spec: dict[str, Any]) -> dict[str, Any]:
    system, shape = spec["system"], spec["shape"]
    preds = make_preds(shape)
    n = len(preds)
    if system == "ours":
        built: Any = build_ours(preds)
    elif system == "graphlib":
        built = preds
    elif system.startswith("dask"):
        built = build_dask(preds)
    elif system == "taskiq-flow":
        built = build_flow(preds)
    else:
        raise ValueError(system)
    gc.collect()
    peak_reset = _reset_peak()
    rss0 = _status("VmRSS")
    hwm0 = _status("VmHWM")
    started = [0.0, 0.0]

    cap = spec.get("cap")
    if cap:
        # taskiq-flow can hold the GIL in one pure-Python sort for minutes: a timer thread
        # reports how far it got and ends the process.
        def give_up() -> None:
            elapsed = time.perf_counter() - started[0]
            out = {"tasks": n, "completed": _flow_done, "elapsed": elapsed, "capped": True}
            print("RESULT " + json.dumps(out), flush=True)
            os._exit(0)

        threading.Timer(cap, give_up).start()

    def begin() -> None:
        started[0], started[1] = time.perf_counter(), time.process_time()

    async def timed_async() -> int:
        begin()
        if system == "ours":
            return await run_ours(built)
        if system == "graphlib":
            return await run_graphlib(built)
        return await run_flow(built)

    if system.startswith("dask"):
        begin()
        count = run_dask(built, "threaded" if system == "dask-threaded" else "sync")
    else:
        loop = asyncio.new_event_loop()
        count = loop.run_until_complete(timed_async())
    elapsed = time.perf_counter() - started[0]
    cpu = time.process_time() - started[1]
    hwm1 = _status("VmHWM")
    if count != n:
        raise AssertionError(f"{system} produced {count} results for {n} tasks")
    base = rss0 if peak_reset else hwm0
    return {
        "tasks": n,
        "completed": n,
        "elapsed": elapsed,
        "cpu": cpu,
        "peak_bytes": max(hwm1 - base, 0),
        "dag_rss": rss0,
        "peak_reset": peak_reset,
        "capped": False,
    }


def measure(system: str, shape: Sequence[Any], cap: float | None = None) -> dict[str, Any]:
    spec = {"system": system, "shape": list(shape), "cap": cap}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    timeout = None if cap is None else cap + 60
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            result.update(system=system, shape=list(shape))
            return result
    raise RuntimeError(f"{system} on {shape}: no result\n{proc.stdout}\n{proc.stderr}")


def repeated(system: str, shape: Sequence[Any], repeat: int, log: Any) -> dict[str, Any]:
    """Median (by wall time) of `repeat` fresh-process runs."""
    runs = []
    for _ in range(repeat):
        runs.append(measure(system, shape))
        r = runs[-1]
        log(
            f"  {system:14} {shape_label(shape):18} {r['elapsed']:8.3f} s "
            f"{r['tasks'] / r['elapsed']:12,.0f} tasks/s"
        )
    runs.sort(key=lambda r: r["elapsed"])
    best = dict(runs[len(runs) // 2])
    best["runs"] = [r["elapsed"] for r in runs]
    return best


# -- the report -----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    from importlib import metadata

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for pkg in ("taskiq-dataflow", "taskiq", "taskiq-flow", "dask", "distributed"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{pkg} (not installed)")
    try:
        commit = subprocess.run(
            ["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {
        "cpu": f"{cpu}, nproc {nproc}",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(versions),
        "commit": commit,
    }


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def fmt_rate(r: dict[str, Any]) -> str:
    return f"{r['tasks'] / r['elapsed']:,.0f}"


def fmt_mem(r: dict[str, Any]) -> str:
    return f"{r['peak_bytes'] / r['tasks']:,.0f}" if "peak_bytes" in r else "-"


def fmt_cpu(r: dict[str, Any]) -> str:
    return f"{r['cpu'] / r['tasks'] * 1e6:.2f}" if "cpu" in r else "-"


NAMES = {
    "ours": "taskiq-dataflow `ExecutionEngine`",
    "graphlib": "hand-written asyncio + graphlib loop",
    "taskiq-flow": "taskiq-flow 1.2.2 + `InMemoryBroker`",
    "dask-threaded": "dask `threaded.get` (sync no-ops)",
    "dask-sync": "dask `get` (synchronous, sync no-ops)",
}


def table(rows: list[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> list[str]:
    out = [
        "| workload | system | tasks | wall s | tasks/s | ours ÷ this | CPU µs/task "
        "| peak B/task above DAG |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload, r, ours in rows:
        ratio = "1.00" if ours is r else (
            f"{(ours['tasks'] / ours['elapsed']) / (r['tasks'] / r['elapsed']):,.2f}"
            if ours is not None else "-"
        )
        out.append(
            f"| {workload} | {NAMES[r['system']]} | {r['tasks']:,} | {r['elapsed']:.3f} "
            f"| {fmt_rate(r)} | {ratio} | {fmt_cpu(r)} | {fmt_mem(r)} |"
        )
    return out


def render(res: dict[str, Any], command: str) -> str:
    m = res["machine"]
    W, C, M, S = res["wide_shape"], res["chain_shape"], res["big_shape"], res["slice_shape"]
    wl, cl, ml, sl = (shape_label(x) for x in (W, C, M, S))
    w, c, b, s = res["wide"], res["chain"], res["big"], res["slice"]
    rows: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    for key in ("ours", "graphlib", "dask-threaded", "dask-sync"):
        rows.append((wl, w[key], w["ours"]))
    for key in ("ours", "graphlib", "taskiq-flow", "dask-threaded"):
        rows.append((f"{sl} (slice)", s[key], s["ours"]))
    for key in ("ours", "graphlib"):
        rows.append((ml, b[key], b["ours"]))
    for key in ("ours", "graphlib"):
        rows.append((cl, c[key], c["ours"]))
    fc = res["flow_chain"]
    rows.append((shape_label(res["flow_chain_shape"]), fc["taskiq-flow"], fc["ours"]))
    rows.append((shape_label(res["flow_chain_shape"]), fc["ours"], fc["ours"]))

    def rate(r: dict[str, Any]) -> float:
        return r["tasks"] / r["elapsed"]

    vs_loop = rate(w["ours"]) / rate(w["graphlib"])
    cpu_big = b["ours"]["cpu"] / b["ours"]["tasks"] * 1e6
    attempt = res["flow_attempt"]
    if attempt.get("capped"):
        flow_big = (
            f"taskiq-flow did not finish the {wl} DAG: after {attempt['elapsed']:.0f} s it had "
            f"completed {attempt['completed']:,} of {attempt['tasks']:,} tasks (its engine builds "
            "the `extra` of every log call with `_get_step_index`, a topological sort whose "
            "`list.index` makes it O(V * E), several times per task, whatever the log level). "
            f"Its figures below are on a {sl} DAG from the same generator (seed 1), on which the "
            "other systems ran too."
        )
    else:
        flow_big = f"taskiq-flow finished the {wl} DAG in {attempt['elapsed']:.1f} s."
    hop = {k: v["elapsed"] / v["tasks"] * 1e6 for k, v in c.items()}
    flow_hop = fc["taskiq-flow"]["elapsed"] / fc["taskiq-flow"]["tasks"] * 1e6
    ours_fc_hop = fc["ours"]["elapsed"] / fc["ours"]["tasks"] * 1e6
    lines = [
        SECTION,
        "",
        "No-op async tasks (`async def noop(*args): return None`) run in-process on the same "
        "generated DAGs: "
        f"{wl} (every node of a layer below the first has 2 random parents in the layer above, "
        f"seed 1), {ml} (same generator) and {cl}. Each figure comes from a fresh interpreter "
        "that builds the DAG, collects garbage, resets its peak RSS and then times the run; the "
        f"{wl} and chain figures are the median of {res['repeat']} such processes. "
        "*tasks/s* = tasks / wall time; *ours ÷ this* = our tasks/s over that system's on the same "
        "DAG; *CPU µs/task* = `time.process_time()` over the run (every thread) / tasks; "
        "*peak B/task above DAG* = (VmHWM after the run − VmRSS of the built DAG) / tasks.",
        "",
        "- **taskiq-dataflow**: `ExecutionEngine(None, dag).execute()` (default in-process "
        "transport), the DAG made with `DAG._from_columns` and its Rust graph built beforehand.",
        "- **hand-written loop**: `graphlib.TopologicalSorter` built from the same edges, "
        "`asyncio.create_task` per ready node with its parents' results as arguments, "
        "`asyncio.wait(FIRST_COMPLETED)`, `done(...)` (sorter construction is in the timing).",
        "- **taskiq-flow 1.2.2**: its `ExecutionEngine` with taskiq's `InMemoryBroker("
        "max_stored_results=-1)` (the default of 100 evicts the results of a wave wider than 100 "
        "before taskiq-flow polls them, and the run never ends), one registered task per node; "
        "its DAG's node and edge lists are filled directly (its `add_node`/`add_edge` scan "
        "lists, which would make the build itself quadratic). It fetches each result with "
        "`wait_result`, which polls every 0.2 s, and runs in waves.",
        "- **dask**: `dask.threaded.get` (thread pool of nproc workers) and the synchronous "
        "`dask.get` on a graph dict `{key: (noop_sync, *parent_keys)}` with the same edges, "
        "all keys requested. Dask does not run coroutines, so its tasks are sync no-ops: it does "
        "strictly less work per task than the async systems.",
        "",
        flow_big,
        "",
        *table(rows),
        "",
        "Targets:",
        "",
        f"- {wl}, ours ÷ hand-written loop: **{vs_loop:.2f}x** (target ≥ 3x): "
        + ("met." if vs_loop >= 3 else "**missed**."),
        f"- engine CPU per task on {ml}: **{cpu_big:.2f} µs** (target < 5 µs): "
        + ("met." if cpu_big < 5 else "**missed**."),
        "",
        f"Chain latency per hop ({cl}): ours **{hop['ours']:.2f} µs**, hand-written loop "
        f"{hop['graphlib']:.2f} µs ({hop['graphlib'] / hop['ours']:.1f}x ours). taskiq-flow "
        f"cannot run that chain (at ≥ 0.2 s of polling per hop it would take over "
        f"{C[1] * 0.2 / 60:.0f} min): on a {shape_label(res['flow_chain_shape'])} it took "
        f"**{flow_hop / 1000:,.0f} ms per hop** (ours on that chain: {ours_fc_hop:.1f} µs per "
        "hop, including the run's fixed set-up).",
        "",
        "Machine and command:",
        "",
        "```",
        f"{command}",
        f"cpu:      {m['cpu']}",
        f"os:       {m['os']}",
        f"python:   {m['python']}",
        f"packages: {m['packages']}",
        f"commit:   {m['commit']}",
        f"load avg: {res['load_before']} before, {res['load_after']} after "
        f"(total {res['total_s'] / 60:.1f} min)",
        "```",
        "",
        "The figures are wall times on a shared machine; rerun on an idle one before quoting "
        "small differences.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: str, section: str) -> None:
    """Replace this script's section of `path` (or append it); other sections are left as they are.

    The file is read right before writing, as another script maintains another section of it.
    """
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    start = text.find(SECTION)
    if start == -1:
        sep = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
        if text and not text.endswith("\n\n"):
            sep = "\n" if text.endswith("\n") else "\n\n"
        text = text + sep + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        rest = "" if end == -1 else text[end + 1 :]
        text = text[:start] + section + ("\n" + rest if rest else "")
    with open(path, "w") as f:
        f.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller DAGs, ~1 minute")
    parser.add_argument("--repeat", type=int, default=None, help="runs per wide/chain figure")
    parser.add_argument("--flow-cap", type=float, default=None,
                        help="seconds taskiq-flow gets on the wide DAG (default 120, quick 10)")
    parser.add_argument("--write", metavar="FILE", help="replace this section of FILE")
    parser.add_argument("--json", metavar="FILE", help="dump the raw figures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return

    quick = args.quick
    repeat = args.repeat or (1 if quick else 3)
    cap = args.flow_cap if args.flow_cap is not None else (10.0 if quick else 120.0)
    W = ["wide", 1000, 100]
    C = ["chain", 10_000]
    M = ["wide", 2000, 100] if quick else ["wide", 10_000, 100]
    S = ["wide", 30, 10] if quick else ["wide", 100, 10]
    FC = ["chain", 10 if quick else 20]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "machine": machine(), "load_before": loadavg(), "repeat": repeat,
        "wide_shape": W, "chain_shape": C, "big_shape": M, "slice_shape": S,
        "flow_chain_shape": FC,
    }
    log(f"wide DAG {shape_label(W)}")
    res["wide"] = {k: repeated(k, W, repeat, log)
                   for k in ("ours", "graphlib", "dask-threaded", "dask-sync")}
    log(f"chain {shape_label(C)}")
    res["chain"] = {k: repeated(k, C, repeat, log) for k in ("ours", "graphlib")}
    log(f"1M-task DAG {shape_label(M)}")
    res["big"] = {k: repeated(k, M, 1, log) for k in ("ours", "graphlib")}
    log(f"taskiq-flow on {shape_label(W)}, capped at {cap:.0f} s")
    res["flow_attempt"] = measure("taskiq-flow", W, cap=cap)
    log(f"  -> {res['flow_attempt']}")
    log(f"slice {shape_label(S)}")
    res["slice"] = {k: repeated(k, S, 1, log)
                    for k in ("ours", "graphlib", "dask-threaded", "taskiq-flow")}
    log(f"taskiq-flow chain {shape_label(FC)}")
    res["flow_chain"] = {k: repeated(k, FC, 1, log) for k in ("ours", "taskiq-flow")}
    res["load_after"] = loadavg()
    res["total_s"] = time.perf_counter() - t0

    command = "python benches/bench_engine.py" + (" --quick" if quick else "")
    report = render(res, command)
    print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.write:
        write_section(args.write, report)
        log(f"wrote {SECTION!r} to {args.write}")


if __name__ == "__main__":
    main()
