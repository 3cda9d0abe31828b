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
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from common import (
    Preds,
    chain,
    cpu_model,
    git_commit,
    loadavg,
    proc_status,
    taskiq_flow_dag,
    wide,
    write_section,
)

SECTION = "## In-process engine (issue 3)"
HERE = os.path.dirname(os.path.abspath(__file__))
MEM_GB = 8.0  # address-space cap of every measuring process (dask gets --dask-mem-gb)


# -- the DAGs (one generator for every system) -----------------------------------------------


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
    """A taskiq-dataflow DAG with these edges: node i produces k{i} and consumes its parents'."""
    from taskiq_dataflow.dataflow.dag import DAG

    n = len(preds)
    keys = [f"k{i}" for i in range(n)]
    inputs = [tuple(keys[p] for p in ps) for ps in preds]
    outputs = [(k,) for k in keys]
    dag = DAG.from_columns([noop] * n, ["noop"] * n, inputs, outputs, [None] * n)
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


# -- the floor: one coroutine step per task ------------------------------------------------------


def run_floor(dag: Any) -> int:
    """The least any in-process engine does per task, on our own Rust scheduler: gather the
    arguments, create the coroutine, step it once in a context of its own, store the value,
    complete the frontier in one call. No retries, errors, limits, events or suspension: not a
    peer, the ceiling a peer could reach (issue 14's "floor")."""
    import contextvars

    from taskiq_dataflow import _core

    scheduler = _core.Scheduler(dag.graph, None, None)
    inputs, outputs, tasks = dag.node_inputs, dag.node_outputs, dag.tasks
    values: dict[str, Any] = {}
    getitem, copy = values.__getitem__, contextvars.copy_context
    ready = scheduler.start()
    while ready:
        done = []
        for node in ready:
            coro = tasks[node](*map(getitem, inputs[node]))
            try:
                copy().run(coro.send, None)
            except StopIteration as stop:
                values[outputs[node][0]] = stop.value
                done.append(node)
        ready = scheduler.complete_many(done)
    return len(values)


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


def make_flow_noop() -> Any:
    """A fresh function per node: taskiq renames the function it decorates (appending
    `__taskiq_original` to its name), so registering one function 100k times grows its name
    quadratically, to tens of GB."""

    async def flow_noop(**kwargs: Any) -> None:
        global _flow_done
        _flow_done += 1
        return None

    return flow_noop


def build_flow(preds: Preds, prefix: str = "k") -> tuple[Any, Any]:
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
        DAGNode(task=broker.register_task(make_flow_noop(), task_name=f"{prefix}{i}"))
        for i in range(len(preds))
    ]
    return broker, taskiq_flow_dag(DAG, nodes, preds)


async def run_flow(built: tuple[Any, Any]) -> int:
    from taskiq_flow.execution_engine import ExecutionEngine

    broker, dag = built
    await broker.startup()
    results = await ExecutionEngine(broker, dag).execute(inputs={})
    return len(results)


def build_system(system: str, preds: Preds, prefix: str = "k") -> Any:
    if system in ("ours", "floor"):
        return build_ours(preds)
    if system == "graphlib":
        return preds
    if system.startswith("dask"):
        return build_dask(preds)
    if system == "taskiq-flow":
        return build_flow(preds, prefix)
    raise ValueError(f"unknown system {system!r}")


async def run_system(system: str, built: Any) -> int:
    """Run one built DAG to the end; returns the number of results (dask blocks the loop)."""
    if system == "ours":
        return await run_ours(built)
    if system == "graphlib":
        return await run_graphlib(built)
    if system == "floor":
        return run_floor(built)
    if system == "taskiq-flow":
        return await run_flow(built)
    return run_dask(built, "threaded" if system == "dask-threaded" else "sync")


# -- one measurement in a fresh interpreter -------------------------------------------------------


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(spec: dict[str, Any]) -> dict[str, Any]:
    global _flow_done
    system, shape = spec["system"], spec["shape"]
    warmup = system != "ours-cold"  # "ours-cold": the first execute() of a fresh process
    system = "ours" if system == "ours-cold" else system
    if spec.get("mem_gb"):
        # Address-space cap: a peer that needs tens of GB fails alone instead of pushing the
        # machine into the OOM killer.
        import resource

        limit = int(spec["mem_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    preds = make_preds(shape)
    n = len(preds)
    loop = asyncio.new_event_loop()
    if warmup:
        # First calls import and initialise lazily; every system gets one small run first.
        loop.run_until_complete(run_system(system, build_system(system, chain(3), "warm")))
        loop.run_until_complete(asyncio.sleep(0.01))  # let finalizers of the warm-up run
        _flow_done = 0
    built = build_system(system, preds)
    gc.collect()
    peak_reset = _reset_peak()
    rss0 = proc_status("VmRSS")
    hwm0 = proc_status("VmHWM")
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

    modules_before = set(sys.modules)
    try:
        started[0], started[1] = time.perf_counter(), time.process_time()
        count = loop.run_until_complete(run_system(system, built))
    except MemoryError:
        elapsed = time.perf_counter() - started[0]
        return {
            "tasks": n,
            "completed": 0,
            "elapsed": elapsed,
            "oom": spec["mem_gb"],
            "peak_bytes": max(proc_status("VmHWM") - rss0, 0),
            "capped": False,
        }
    elapsed = time.perf_counter() - started[0]
    cpu = time.process_time() - started[1]
    hwm1 = proc_status("VmHWM")
    if count != n:
        raise AssertionError(f"{system} produced {count} results for {n} tasks")
    base = rss0 if peak_reset else hwm0
    imported = sorted(set(sys.modules) - modules_before)
    return {
        "imported": len(imported),
        "imported_packages": sorted(
            {name.split(".")[0] for name in imported}
            - set(sys.stdlib_module_names)
            - {"__mp_main__", "cython_runtime"}
        ),
        "tasks": n,
        "completed": n,
        "elapsed": elapsed,
        "cpu": cpu,
        "peak_bytes": max(hwm1 - base, 0),
        "dag_rss": rss0,
        "peak_reset": peak_reset,
        "capped": False,
    }


def measure(
    system: str, shape: Sequence[Any], cap: float | None = None, mem_gb: float | None = None
) -> dict[str, Any]:
    spec = {
        "system": system,
        "shape": list(shape),
        "cap": cap,
        "mem_gb": MEM_GB if mem_gb is None else mem_gb,
    }
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    timeout = 900 if cap is None else cap + 60
    for attempt in (1, 2):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
                result.update(system=system, shape=list(shape))
                return result
        if attempt == 1:  # e.g. the package caught mid-edit in a working tree: one retry
            print(
                f"  {system} on {shape} failed, retrying in 10 s:\n{proc.stderr[-2000:]}",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(10)
    raise RuntimeError(f"{system} on {shape}: no result\n{proc.stdout}\n{proc.stderr}")


# -- the report -----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    from importlib import metadata

    cpu = cpu_model()
    versions = []
    for pkg in ("taskiq-dataflow", "taskiq", "taskiq-flow", "dask", "distributed"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{pkg} (not installed)")
    commit = git_commit()
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


def cpu_pressure() -> float | None:
    """Total µs that some runnable task waited for a CPU (Linux PSI), or None."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def rate(r: dict[str, Any]) -> float:
    return r["tasks"] / r["elapsed"]


NAMES = {
    "ours": "taskiq-dataflow `ExecutionEngine`",
    "ours-cold": "taskiq-dataflow, first `execute()` of the process",
    "graphlib": "hand-written asyncio + graphlib loop",
    "floor": "floor: one coroutine step per task, no engine (not a peer)",
    "taskiq-flow": "taskiq-flow 1.2.2 + `InMemoryBroker`",
    "dask-threaded": "dask `threaded.get` (sync no-ops)",
    "dask-sync": "dask `get`, synchronous (sync no-ops)",
}


def row(workload: str, r: dict[str, Any], ours: dict[str, Any]) -> str:
    name = NAMES[r["system"]]
    if r.get("oom"):
        return (
            f"| {workload} | {name} | {r['tasks']:,} | - | out of memory (cap {r['oom']:g} GB) "
            f"after {r['elapsed']:.0f} s | - | - | > {r['peak_bytes'] / r['tasks']:,.0f} |"
        )
    if r.get("capped"):
        return (
            f"| {workload} | {name} | {r['tasks']:,} | > {r['elapsed']:.0f} | not finished: "
            f"{r['completed']:,} tasks done in {r['elapsed']:.0f} s | - | - | - |"
        )
    ratio = rate(ours) / rate(r)
    cpu = r["cpu"] / r["tasks"] * 1e6
    mem = r["peak_bytes"] / r["tasks"]
    return (
        f"| {workload} | {name} | {r['tasks']:,} | {r['elapsed']:.3f} | {rate(r):,.0f} "
        f"| {ratio:,.2f} | {cpu:,.2f} | {mem:,.0f} |"
    )


def floor_line(res: dict[str, Any], shape: Sequence[Any], label: str) -> list[str]:
    """How far our CPU per task is from the floor's (absent from dumps made before it)."""
    if not any(r["system"] == "floor" for r in res["results"]):
        return []
    ours, floor = find(res, "ours", shape), find(res, "floor", shape)
    per = {k: r["cpu"] / r["tasks"] * 1e6 for k, r in (("ours", ours), ("floor", floor))}
    return [
        f"- {label}, CPU per task: ours {per['ours']:.2f} µs, the floor {per['floor']:.2f} µs "
        f"(ours is {per['ours'] / per['floor']:.2f}x the floor; issue 14's target 1.5 µs)."
    ]


def find(res: dict[str, Any], system: str, shape: Sequence[Any]) -> dict[str, Any]:
    for r in res["results"]:
        if r["system"] == system and r["shape"] == list(shape):
            return r
    raise KeyError((system, shape))


def render(res: dict[str, Any], command: str) -> str:
    m, sh = res["machine"], res["shapes"]
    W, P, M, C, S, FC = (sh[k] for k in ("wide", "prefix", "big", "chain", "slice", "flow_chain"))
    wl, ml, cl, sl = (shape_label(x) for x in (W, M, C, S))
    table = [
        "| workload | system | tasks | wall s | tasks/s | ours ÷ this | CPU µs/task "
        "| peak B/task above DAG |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    seen: list[tuple[str, list[Any]]] = []
    order = [W, P, M, C, S, FC]
    by_shape = sorted(res["results"], key=lambda r: order.index(r["shape"]))
    for r in by_shape:
        if (r["system"], r["shape"]) in seen:
            continue
        seen.append((r["system"], r["shape"]))
        label = shape_label(r["shape"])
        if r["shape"] == P:
            label += f" (first {P[2]} layers of {wl})"
        elif r["shape"] == S:
            label += " (slice)"
        table.append(row(label, r, find(res, "ours", r["shape"])))

    ours_w, loop_w = find(res, "ours", W), find(res, "graphlib", W)
    vs_loop = rate(ours_w) / rate(loop_w)
    vs_loop_cpu = loop_w["cpu"] / ours_w["cpu"]
    ours_m = find(res, "ours", M)
    cpu_big = ours_m["cpu"] / ours_m["tasks"] * 1e6
    mem_big = ours_m["peak_bytes"] / ours_m["tasks"]
    hop = {k: find(res, k, C)["elapsed"] / C[1] * 1e6 for k in ("ours", "graphlib")}
    flow_chain = find(res, "taskiq-flow", FC)
    flow_hop = flow_chain["elapsed"] / FC[1]
    ours_fc_hop = find(res, "ours", FC)["elapsed"] / FC[1] * 1e6
    cold = find(res, "ours-cold", FC)

    notes = []
    attempt = find(res, "taskiq-flow", W)
    if attempt.get("capped"):
        notes.append(
            f"- taskiq-flow did not finish the {wl} DAG: after {attempt['elapsed']:.0f} s it had "
            f"completed {attempt['completed']:,} of {attempt['tasks']:,} tasks. Every log call of "
            "its engine (several per task, whatever the log level) computes the step index with "
            "a full topological sort whose `list.index` makes it O(V·E). Its figures are on a "
            f"{sl} DAG from the same generator, which the other systems ran too, and on a "
            f"{shape_label(FC)}."
        )
    dask_w = find(res, "dask-threaded", W)
    if dask_w.get("oom"):
        notes.append(
            f"- dask did not finish the {wl} DAG within its {dask_w['oom']:g} GB cap "
            "(`--dask-mem-gb`): its static ordering (`dask.order`, run before any task) keeps, "
            "for every task, the set of roots it connects to; with 2 random parents per node "
            "those sets fill up to the whole first layer, so memory grows as tasks x width. "
            f"It is compared on the first {P[2]} layers of the same DAG ({P[1] * P[2]:,} tasks)."
        )

    lines = [
        SECTION,
        "",
        "No-op async tasks (`async def noop(*args): return None`) run in-process on DAGs from one "
        f"generator: {wl} (each node below the first layer has 2 random parents in the layer "
        f"above, seed 1), {ml} (same generator) and {cl}. Each figure comes from a fresh "
        "interpreter that builds the DAG, collects garbage, resets its peak RSS "
        "(`/proc/self/clear_refs`), runs a 3-task warm-up (first-call imports), and then times "
        "one run. Figures for the 100k DAG, its prefix and the chain are medians over "
        f"{res['repeat']} such processes per system, interleaved (ours, peer, ours, peer, ...) so "
        f"that load swings hit both; ours on {ml} is the median of "
        f"{len(ours_m.get('runs', [0]))}.",
        "",
        "*tasks/s* = tasks / wall time of the run; *ours ÷ this* = our tasks/s over that "
        "system's on the same DAG; *CPU µs/task* = `time.process_time()` over the run (every "
        "thread) / tasks; *peak B/task above DAG* = (VmHWM after the run - VmRSS of the built "
        "DAG) / tasks, which includes the dict of every task's result each system returns.",
        "",
        "- **taskiq-dataflow**: `ExecutionEngine(None, dag).execute()` (default in-process "
        "transport); the DAG is made with `DAG.from_columns` (node i produces key `k{i}` and "
        "consumes its parents' keys) and its Rust graph is built before the timing.",
        "- **hand-written loop**: `graphlib.TopologicalSorter` built from the same edges (inside "
        "the timing), `asyncio.create_task` per ready node with its parents' results as "
        "arguments, `asyncio.wait(FIRST_COMPLETED)`, `done(...)`.",
        "- **floor** (wide 1,000 x 100 only; not a peer): on our Rust `Scheduler`, each ready "
        "node's coroutine created and stepped once in its own context copy, its value stored, "
        "the frontier completed in one `complete_many`; no retries, errors, limits, events or "
        "suspended tasks. What an engine costs per task beyond it is its own bookkeeping.",
        "- **taskiq-flow 1.2.2**: its `ExecutionEngine` with taskiq's `InMemoryBroker("
        "max_stored_results=-1)` (the default of 100 evicts the results of a wave wider than 100 "
        "before taskiq-flow polls them, and the run never ends), one registered task per node "
        "(`async def (**kwargs)`); its DAG's node and edge lists are filled directly (its "
        "`add_node`/`add_edge` scan lists, so its own build would be quadratic). It fetches "
        "each result with `wait_result`, which polls every 0.2 s, and runs in waves.",
        "- **dask**: `dask.threaded.get` (nproc threads) and the synchronous `dask.get` on a "
        "graph dict `{key: (noop_sync, *parent_keys)}` with the same edges, all keys requested. "
        "Dask does not run coroutines, so its tasks are sync no-op functions: less work per task "
        "than the async systems do.",
        "",
        *notes,
        "",
        *table,
        "",
        "Targets:",
        "",
        f"- {wl}, ours ÷ hand-written loop: **{vs_loop:.2f}x** in tasks/s (target ≥ 3x): "
        + ("met" if vs_loop >= 3 else "**missed**")
        + f"; in CPU per task, {vs_loop_cpu:.2f}x.",
        *floor_line(res, W, wl),
        f"- engine CPU per task on {ml}: **{cpu_big:.2f} µs** (target < 5 µs): "
        + ("met." if cpu_big < 5 else "**missed**.")
        + f" Peak memory of that run: {mem_big:,.0f} B per task above the built DAG.",
        "",
        f"Chain latency per hop ({cl}): ours **{hop['ours']:.2f} µs**, the hand-written loop "
        f"{hop['graphlib']:.2f} µs ({hop['graphlib'] / hop['ours']:.1f}x ours). taskiq-flow "
        f"cannot run that chain in reasonable time (≥ 0.2 s of result polling per hop: over "
        f"{C[1] * 0.2 / 60:.0f} min); on a {shape_label(FC)} it took **{flow_hop * 1000:,.0f} ms "
        f"per hop** (ours on that chain: {ours_fc_hop:,.1f} µs per hop, fixed set-up included).",
        "",
        f"The first `execute()` of a process took {cold['elapsed']:.2f} s on the "
        f"{shape_label(FC)} (the row *first `execute()` of the process*), during which it "
        f"imported {cold.get('imported', '?')} modules "
        f"(outside the standard library: {', '.join(cold.get('imported_packages', [])) or '-'}); "
        "every other row is "
        "measured after a warm-up run.",
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
        f"load avg: {res['load_before']} before, {res['load_after']} after; "
        f"whole run {res['total_s'] / 60:.1f} min"
        + (
            f"; CPU pressure (PSI some) {res['cpu_pressure']:.0%} of the time"
            if "cpu_pressure" in res
            else ""
        ),
        "```",
        "",
        "Wall times on a machine shared with other jobs (see load and CPU pressure above): the "
        "CPU column is the steadier comparison; rerun on an idle machine before quoting small "
        "differences.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller DAGs, ~1 minute")
    parser.add_argument("--repeat", type=int, default=None, help="runs per median (default 5)")
    parser.add_argument(
        "--flow-cap",
        type=float,
        default=None,
        help="seconds taskiq-flow gets on the 100k DAG (default 120, quick 10)",
    )
    parser.add_argument(
        "--dask-mem-gb",
        type=float,
        default=4.0,
        help="memory cap of dask on the 100k DAG (0: none; it needs ~19 GB)",
    )
    parser.add_argument("--write", metavar="FILE", help="replace this section of FILE")
    parser.add_argument("--json", metavar="FILE", help="dump the raw figures")
    parser.add_argument("--render", metavar="FILE", help="re-render a --json dump, no measuring")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return

    quick = args.quick
    command = "python benches/bench_engine.py" + (" --quick" if quick else "")
    if args.render:
        with open(args.render) as f:
            res = json.load(f)
        report = render(res, res.get("command", command))
        print(report)
        if args.write:
            write_section(args.write, SECTION, report)
        return

    repeat = args.repeat or (1 if quick else 5)
    cap = args.flow_cap if args.flow_cap is not None else (10.0 if quick else 120.0)
    shapes = {
        "wide": ["wide", 1000, 100],
        "prefix": ["wide", 1000, 10],
        "big": ["wide", 2000, 100] if quick else ["wide", 10_000, 100],
        "chain": ["chain", 10_000],
        "slice": ["wide", 30, 10] if quick else ["wide", 100, 10],
        "flow_chain": ["chain", 10 if quick else 20],
    }
    W, P, M, C, S, FC = shapes.values()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results: list[dict[str, Any]] = []

    def save() -> None:
        if args.json:  # after every measurement, so a failure late in the run loses nothing
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)

    def once(system: str, shape: list[Any], **kw: Any) -> None:
        r = measure(system, shape, **kw)
        results.append(r)
        save()
        done = "" if r["completed"] == r["tasks"] else f" ({r['completed']:,} done)"
        log(f"  {system:14} {shape_label(shape):18} {r['elapsed']:8.3f} s{done}")

    def medians(systems: Sequence[str], shape: list[Any], times: int) -> None:
        """`times` fresh-process runs per system, interleaved so load swings hit all of them;
        each figure (wall, CPU, peak) is the median over its runs."""
        runs: dict[str, list[dict[str, Any]]] = {system: [] for system in systems}
        for _ in range(times):
            for system in systems:
                runs[system].append(measure(system, shape))
        for system in systems:
            mid = dict(runs[system][0])
            for key in ("elapsed", "cpu", "peak_bytes"):
                mid[key] = statistics.median(r[key] for r in runs[system])
            mid["runs"] = [r["elapsed"] for r in runs[system]]
            results.append(mid)
            save()
            log(
                f"  {system:14} {shape_label(shape):18} {mid['elapsed']:8.3f} s "
                f"({rate(mid):,.0f} tasks/s; runs {', '.join(f'{t:.3f}' for t in mid['runs'])})"
            )

    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "machine": machine(),
        "load_before": loadavg(),
        "repeat": repeat,
        "shapes": shapes,
        "command": command,
        "results": results,
    }
    pressure0 = cpu_pressure()
    medians(("ours", "graphlib", "floor"), W, repeat)
    once("dask-threaded", W, mem_gb=args.dask_mem_gb)
    medians(("ours", "graphlib", "dask-threaded", "dask-sync"), P, repeat)
    medians(("ours",), M, 1 if quick else 3)
    medians(("graphlib",), M, 1)
    medians(("ours", "graphlib"), C, repeat)
    once("taskiq-flow", W, cap=cap)
    for system in ("ours", "graphlib", "dask-threaded", "taskiq-flow"):
        once(system, S)
    for system in ("ours", "ours-cold", "taskiq-flow"):
        once(system, FC)
    res["load_after"] = loadavg()
    res["total_s"] = time.perf_counter() - t0
    pressure1 = cpu_pressure()
    if pressure0 is not None and pressure1 is not None:
        res["cpu_pressure"] = (pressure1 - pressure0) / 1e6 / res["total_s"]

    save()
    report = render(res, command)
    print(report)
    if args.write:
        write_section(args.write, SECTION, report)
        log(f"wrote {SECTION!r} to {args.write}")


if __name__ == "__main__":
    main()
