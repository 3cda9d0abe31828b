"""Graph operations of taskiq-dataflow against graphlib, networkx and rustworkx (issue 2).

One run measures, on the same random DAG (default: 1,000,000 nodes, each depending on 3 distinct
random earlier nodes, so 2,999,994 edges; fixed seed):

1. graph build, validation (cycle check), topological order and parallel levels;
2. 1,000,000 tasks registered through `DataflowRegistry.register_task` + `build_dag()`: time and
   peak memory per task (tracemalloc and process RSS, each in a fresh subprocess);
3. the ready-set scheduler walked through the whole graph from Python, against
   `graphlib.TopologicalSorter` and `rustworkx.TopologicalSorter` doing the same walk.

Run from the repository root:

    .venv/bin/python benches/bench_graph.py                      # prints the markdown report
    .venv/bin/python benches/bench_graph.py --write BENCHMARKS.md  # also updates that file

`--nodes 100000` gives a quick run. `benches/test_graph_bench.py` reuses the helpers below.
"""

from __future__ import annotations

import argparse
import gc
import graphlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import cpu_model, git_commit, write_section
from taskiq_dataflow import DataflowRegistry, _core

SECTION = "## Graph operations (issue 2)"
PILOT_NODES = 100_000

# -- the DAG ---------------------------------------------------------------------------------


@dataclass
class Dag:
    """A random DAG as flat parent ids: node i's parents are `parents[offsets[i]:offsets[i+1]]`.

    As made by `make_dag`, every node's parents come before it (ids are in registration order:
    a topological order), so any prefix of the nodes is itself such a DAG. `shuffled` relabels
    the nodes at random, so that ids no longer follow the edges.
    """

    n: int
    offsets: array
    parents: array
    base: Dag | None = field(default=None, repr=False)
    shuffle_seed: int = 0
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def edge_count(self) -> int:
        return len(self.parents)

    def parents_of(self, i: int) -> array:
        return self.parents[self.offsets[i] : self.offsets[i + 1]]

    def parent_lists(self) -> list[list[int]]:
        par, off = self.parents, self.offsets
        return [par[off[i] : off[i + 1]].tolist() for i in range(self.n)]

    def prefix(self, m: int) -> Dag:
        """The first m nodes (of the unshuffled DAG, then shuffled alike)."""
        if self.base is not None:
            return self.base.prefix(m).shuffled(self.shuffle_seed)
        return Dag(m, self.offsets[: m + 1], self.parents[: self.offsets[m]])

    def shuffled(self, seed: int) -> Dag:
        """The same DAG with node ids randomly permuted."""
        new_id = list(range(self.n))
        random.Random(seed).shuffle(new_id)
        old_id = [0] * self.n
        for old, new in enumerate(new_id):
            old_id[new] = old
        offsets, parents = array("q", [0]), array("l")
        for old in old_id:
            parents.extend([new_id[p] for p in self.parents_of(old)])
            offsets.append(len(parents))
        return Dag(self.n, offsets, parents, base=self, shuffle_seed=seed)

    # Inputs of each library, built once and kept: the build timings start from them.

    def edges(self) -> list[tuple[int, int]]:
        """(parent, child) pairs, grouped by child."""
        if "edges" not in self._cache:
            self._cache["edges"] = [(p, i) for i, ps in enumerate(self.parent_lists()) for p in ps]
        return self._cache["edges"]

    def key_lists(self) -> tuple[list[list[str]], list[list[str]]]:
        """(inputs, outputs) for `_core.Graph`: node i outputs "k{i}" and inputs its parents'."""
        if "keys" not in self._cache:
            self._cache["keys"] = make_key_lists(self)
        return self._cache["keys"]

    def deps(self) -> dict[int, list[int]]:
        """{node: parents} for graphlib."""
        if "deps" not in self._cache:
            self._cache["deps"] = dict(enumerate(self.parent_lists()))
        return self._cache["deps"]

    def drop(self, *names: str) -> None:
        for name in names:
            self._cache.pop(name, None)


def make_dag(n: int, seed: int = 42, k: int = 3) -> Dag:
    """Node i depends on min(i, k) distinct random earlier nodes (nodes 0..k on all earlier)."""
    rng = random.Random(seed)
    rand = rng.randrange
    offsets = array("q", [0])
    parents = array("l")
    push, close = parents.append, offsets.append
    for i in range(n):
        if i <= k:
            parents.extend(range(i))
        else:
            ps: list[int] = []
            while len(ps) < k:
                p = rand(i)
                if p not in ps:
                    ps.append(p)
                    push(p)
        close(len(parents))
    return Dag(n, offsets, parents)


def make_key_lists(dag: Dag) -> tuple[list[list[str]], list[list[str]]]:
    outputs = [[f"k{i}"] for i in range(dag.n)]
    inputs = [[f"k{p}" for p in ps] for ps in dag.parent_lists()]
    return inputs, outputs


# -- timing ----------------------------------------------------------------------------------


def best_of(
    run: Callable[[Any], Any], repeat: int, setup: Callable[[], Any] | None = None
) -> float:
    """Least wall time of `repeat` calls of run(setup()); only `run` is timed.

    The cyclic GC is off during the timed call, as in `timeit`; the result is freed after the
    clock stops.
    """
    best = math.inf
    for _ in range(repeat):
        arg = setup() if setup is not None else None
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = run(arg)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        del result, arg
        best = min(best, elapsed)
    return best


OPS = ("build_keys", "build_edges", "validate", "topo", "levels")
OP_TITLES = {
    "build_keys": "build from key lists",
    "build_edges": "build from integer edges",
    "validate": "validate / cycle check",
    "topo": "topological order",
    "levels": "parallel levels",
}


def best_of_each(cases: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """`best_of` for several cases, their runs interleaved (a, b, a, b, ...) so that load from
    other processes on the machine falls on each alike."""
    best = dict.fromkeys(cases, math.inf)
    for _ in range(repeat):
        for name, case in cases.items():
            best[name] = min(best[name], best_of(lambda _, c=case: c(), 1))
    return best


def rx_build(dag: Dag) -> Any:
    import rustworkx as rx

    graph = rx.PyDiGraph()
    graph.add_nodes_from(range(dag.n))
    graph.add_edges_from_no_data(dag.edges())
    return graph


def bench_fast(dag: Dag, repeat: int) -> dict[str, dict[str, float]]:
    """taskiq-dataflow and rustworkx, each operation's runs interleaved between the two."""
    import rustworkx as rx

    inputs, outputs = dag.key_lists()
    edges, n = dag.edges(), dag.n
    graph = _core.Graph(inputs, outputs)
    assert graph.edge_count == dag.edge_count, (graph.edge_count, dag.edge_count)
    assert graph.validate(True) == []
    rx_graph = rx_build(dag)
    assert rx.is_directed_acyclic_graph(rx_graph)
    build = best_of_each(
        {
            "ours_keys": lambda: _core.Graph(inputs, outputs),
            "ours_edges": lambda: _core.Graph.from_edges(n, edges),
            "rx": lambda: rx_build(dag),
        },
        repeat,
    )
    ours = {"build_keys": build["ours_keys"], "build_edges": build["ours_edges"]}
    peer = {"build_edges": build["rx"]}
    for op, mine, theirs in (
        ("validate", lambda: graph.validate(True), lambda: rx.is_directed_acyclic_graph(rx_graph)),
        ("topo", graph.topological_order, lambda: rx.topological_sort(rx_graph)),
        ("levels", graph.levels, lambda: rx.topological_generations(rx_graph)),
    ):
        t = best_of_each({"ours": mine, "rx": theirs}, repeat)
        ours[op], peer[op] = t["ours"], t["rx"]
    return {"ours": ours, "rustworkx": peer}


def nx_build(dag: Dag) -> Any:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(range(dag.n))
    graph.add_edges_from(dag.edges())
    return graph


def bench_networkx(dag: Dag, repeat: int) -> dict[str, float]:
    import networkx as nx

    t = {"build_edges": best_of(lambda _: nx_build(dag), repeat)}
    graph = nx_build(dag)
    t["validate"] = best_of(lambda _: nx.is_directed_acyclic_graph(graph), repeat)
    t["topo"] = best_of(lambda _: list(nx.topological_sort(graph)), repeat)
    t["levels"] = best_of(lambda _: list(nx.topological_generations(graph)), repeat)
    return t


def graphlib_levels(sorter: graphlib.TopologicalSorter) -> list[tuple[int, ...]]:
    sorter.prepare()
    levels = []
    while sorter.is_active():
        ready = sorter.get_ready()
        levels.append(ready)
        sorter.done(*ready)
    return levels


def bench_graphlib(dag: Dag, repeat: int) -> dict[str, float]:
    deps = dag.deps()

    def fresh() -> graphlib.TopologicalSorter:
        return graphlib.TopologicalSorter(deps)

    return {
        "build_edges": best_of(lambda _: fresh(), repeat),
        # Each of these consumes a sorter, so each run gets a new one (built untimed).
        "validate": best_of(lambda s: s.prepare(), repeat, fresh),
        "topo": best_of(lambda s: list(s.static_order()), repeat, fresh),
        "levels": best_of(graphlib_levels, repeat, fresh),
    }


def bench_slow_peer(
    bench: Callable[[Dag, int], dict[str, float]], dag: Dag, repeat: int, limit: float
) -> tuple[dict[str, float], int | None]:
    """Run a slow peer at full size, unless a 100k-node pilot says an op would take > `limit` s:
    then the 100k-node figures are scaled linearly (which flatters the peer)."""
    if dag.n <= PILOT_NODES:
        return bench(dag, repeat), None
    pilot_dag = dag.prefix(PILOT_NODES)
    scale = dag.n / PILOT_NODES
    pilot = bench(pilot_dag, 1)
    if max(pilot.values()) * scale <= limit:
        del pilot_dag
        return bench(dag, repeat), None
    scaled = bench(pilot_dag, repeat)
    return {op: s * scale for op, s in scaled.items()}, PILOT_NODES


# -- scheduler walk --------------------------------------------------------------------------
# batch 0: complete the whole frontier at once; 1: one call per task; else up to `batch` ids
# at a time, in the order they became ready.


def walk_ours(graph: _core.Graph, batch: int) -> int:
    sched = _core.Scheduler(graph)
    queue = sched.start()
    if batch == 0:
        total, ready = 0, queue
        while ready:
            total += len(ready)
            ready = sched.complete_many(ready)
        return total
    if batch == 1:
        complete, extend = sched.complete, queue.extend
        for node in queue:  # the list grows as we go
            extend(complete(node))
        return len(queue)
    complete_many, head = sched.complete_many, 0
    while head < len(queue):
        ids = queue[head : head + batch]
        head += len(ids)
        queue.extend(complete_many(ids))
    return len(queue)


def walk_graphlib(sorter: graphlib.TopologicalSorter, batch: int) -> int:
    sorter.prepare()
    get_ready, done = sorter.get_ready, sorter.done
    if batch == 0:
        total, ready = 0, get_ready()
        while ready:
            total += len(ready)
            done(*ready)
            ready = get_ready()
        return total
    queue = list(get_ready())
    if batch == 1:
        extend = queue.extend
        for node in queue:
            done(node)
            extend(get_ready())
        return len(queue)
    head = 0
    while head < len(queue):
        ids = queue[head : head + batch]
        head += len(ids)
        done(*ids)
        queue.extend(get_ready())
    return len(queue)


def walk_rustworkx(graph: Any, batch: int) -> int:
    import rustworkx as rx

    sorter = rx.TopologicalSorter(graph)
    get_ready, done = sorter.get_ready, sorter.done
    if batch == 0:
        total, ready = 0, get_ready()
        while ready:
            total += len(ready)
            done(ready)
            ready = get_ready()
        return total
    queue = list(get_ready())
    if batch == 1:
        extend = queue.extend
        for node in queue:
            done(node)
            extend(get_ready())
        return len(queue)
    head = 0
    while head < len(queue):
        ids = queue[head : head + batch]
        head += len(ids)
        done(ids)
        queue.extend(get_ready())
    return len(queue)


def timed_walk(walk: Callable[[Any, int], int], batch: int, n: int) -> Callable[[Any], int]:
    def run(arg: Any) -> int:
        count = walk(arg, batch)
        assert count == n, (walk.__name__, batch, count, n)
        return count

    return run


def bench_walks(
    dag: Dag, batches: list[int], repeat: int, slow_repeat: int
) -> dict[int, dict[str, float]]:
    inputs, outputs = dag.key_lists()
    graph = _core.Graph(inputs, outputs)
    rx_graph = rx_build(dag)
    deps = dag.deps()
    results: dict[int, dict[str, float]] = {}
    for batch in batches:
        results[batch] = best_of_each(
            {
                "ours": lambda b=batch: timed_walk(walk_ours, b, dag.n)(graph),
                "rustworkx": lambda b=batch: timed_walk(walk_rustworkx, b, dag.n)(rx_graph),
            },
            repeat,
        )
        results[batch].update(
            # The sorter is the graph in graphlib: building it is not timed, prepare() is.
            graphlib=best_of(
                timed_walk(walk_graphlib, batch, dag.n),
                slow_repeat,
                lambda: graphlib.TopologicalSorter(deps),
            ),
        )
    return results


# -- registry (each measurement in a fresh interpreter) ----------------------------------------


def _task(**kwargs: Any) -> None:
    """The one function registered a million times."""


def _vm(field_name: str) -> int:
    """A VmRSS / VmHWM line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def register_tasks(dag: Dag, order: Sequence[int] | None = None) -> DataflowRegistry:
    """One `register_task` call per node (in `order`, default: by id), keys made in the loop
    as a user's code would make them."""
    par, off = dag.parents, dag.offsets
    registry = DataflowRegistry()
    register = registry.register_task
    for i in range(dag.n) if order is None else order:
        register(_task, output=f"k{i}", inputs=[f"k{p}" for p in par[off[i] : off[i + 1]]])
    return registry


def registry_child(n: int, seed: int, mode: str) -> dict[str, Any]:
    """Register n tasks and build the DAG; runs in a subprocess started by `bench_registry`."""
    import tracemalloc

    dag = make_dag(n, seed)
    gc.collect()
    if mode == "args":
        # The same loop without the registry: the cost of making the arguments.
        par, off = dag.parents, dag.offsets
        start = time.perf_counter()
        for i in range(n):
            _ = (f"k{i}", [f"k{p}" for p in par[off[i] : off[i + 1]]])
        return {"args_s": time.perf_counter() - start}
    order = None
    if mode == "shuffled":
        # Tasks registered in a random order: ids are no longer a topological order.
        order = array("l", range(n))
        random.Random(seed + 1).shuffle(order)
    rss0 = _vm("VmRSS")
    if mode == "tracemalloc":
        tracemalloc.start()
    start = time.perf_counter()
    registry = register_tasks(dag, order)
    registered = time.perf_counter()
    built = registry.build_dag()
    end = time.perf_counter()
    out: dict[str, Any] = {
        "register_s": registered - start,
        "build_dag_s": end - registered,
        "total_s": end - start,
        "nodes": len(built),
        "edges": built.graph.edge_count,
    }
    if mode == "tracemalloc":
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.update(tracemalloc_peak=peak, tracemalloc_current=current)
    else:
        out.update(rss_before=rss0, rss_after=_vm("VmRSS"), rss_peak=_vm("VmHWM"))
    return out


def bench_registry(n: int, seed: int, runs: int) -> dict[str, Any]:
    """Best time of `runs` clean runs (RSS from the same runs), then one run under tracemalloc."""

    def child(mode: str) -> dict[str, Any]:
        cmd = [sys.executable, __file__, "--registry-child", mode, "--nodes", str(n)]
        cmd += ["--seed", str(seed)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return json.loads(done.stdout)

    timed = min((child("time") for _ in range(runs)), key=lambda r: r["total_s"])
    traced = child("tracemalloc")
    args = child("args")
    shuffled = min((child("shuffled") for _ in range(runs)), key=lambda r: r["total_s"])
    return {
        **timed,
        **{k: v for k, v in traced.items() if k.startswith("tracemalloc")},
        **args,
        "shuffled": shuffled,
    }


# -- report ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = cpu_model()
    mem = "unknown"
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass

    def version(module: str) -> str:
        try:
            return __import__(module).__version__
        except ImportError:
            return "not installed"

    commit = git_commit()
    return {
        "cpu": model,
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "taskiq_dataflow": f"{_core.__version__}, commit {commit}",
        "rustworkx": version("rustworkx"),
        "networkx": version("networkx"),
    }


def extension_mtime() -> str:
    """When the loaded `_core` extension file was last written (a rebuild mid-run spoils it)."""
    stamp = os.stat(_core.__file__).st_mtime
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


VARIANTS = {
    "registration": "ids in registration order",
    "shuffled": "ids shuffled",
}


def ops_table(ops: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        "| operation | taskiq-dataflow | rustworkx | graphlib | networkx "
        "| ours / rustworkx (target <= 0.5) | graphlib / ours (target >= 20) "
        "| networkx / ours (target >= 20) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for op in OPS:
        ours = ops["ours"][op]
        # The peers build from integer edges only: both of our builds are compared with that.
        peer_op = "build_edges" if op.startswith("build") else op
        rx, gl, nx = (ops[p].get(peer_op) for p in ("rustworkx", "graphlib", "networkx"))
        r_rx, r_gl, r_nx = ratio(ours, rx), ratio(gl, ours), ratio(nx, ours)
        cells = ["-" if r_rx is None else f"{r_rx:.2f}x {verdict(r_rx <= 0.5)}"]
        for value in (r_gl, r_nx):
            cells.append("-" if value is None else f"{value:.1f}x {verdict(value >= 20)}")
        lines.append(
            f"| {OP_TITLES[op]} | {fmt_s(ours)} | {fmt_s(rx)} | {fmt_s(gl)} | {fmt_s(nx)} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def walks_table(walks: dict[int, dict[str, float]], n: int) -> list[str]:
    lines = [
        "| batch | taskiq-dataflow | per task (target <= 1 us) | rustworkx | graphlib "
        "| graphlib / ours (target >= 5) | rustworkx / ours |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for batch, t in walks.items():
        per_task = t["ours"] / n * 1e6
        name = "frontier" if batch == 0 else f"{batch:,}"
        lines.append(
            f"| {name} | {fmt_s(t['ours'])} | {per_task:.2f} us {verdict(per_task <= 1)} "
            f"| {fmt_s(t['rustworkx'])} | {fmt_s(t['graphlib'])} "
            f"| {t['graphlib'] / t['ours']:.1f}x {verdict(t['graphlib'] / t['ours'] >= 5)} "
            f"| {t['rustworkx'] / t['ours']:.1f}x |"
        )
    return lines


def report(res: dict[str, Any], command: str) -> str:
    n, e = res["nodes"], res["edges"]
    reg, mach, variants = res["registry"], res["machine"], res["variants"]
    levels = variants["registration"]["level_count"]
    lines = [
        SECTION,
        "",
        f"Command (from the repository root): `{command}`",
        "",
        "Machine: "
        + "; ".join(
            [
                f"{mach['cpu']}, nproc {mach['nproc']}, {mach['memory']} RAM",
                mach["os"],
                mach["python"],
                f"taskiq-dataflow {mach['taskiq_dataflow']}",
                f"rustworkx {mach['rustworkx']}",
                f"networkx {mach['networkx']}",
            ]
        )
        + ".",
        "",
        f"Graph: {n:,} nodes, {e:,} edges (node i depends on 3 distinct random earlier nodes, "
        f"seed {res['seed']}), {levels} levels. Every figure below comes from this one run. "
        f"Times are the best of {res['repeat']} runs for taskiq-dataflow and rustworkx and of "
        f"{res['slow_repeat']} for graphlib and networkx (`time.perf_counter`, cyclic GC off "
        "during the timed call, inputs built beforehand and not timed).",
    ]
    if "load_before" in res:
        lines[-1] += (
            f" 1-minute load average {res['load_before']:.1f} at the start of the run and "
            f"{res['load_after']:.1f} at the end, on {mach['nproc']} CPUs (other "
            "processes inflate wall times)."
        )
    if "extension_mtime" in res:
        lines[-1] += f" Extension module built {res['extension_mtime']} UTC."
    if res.get("extension_changed"):
        lines[-1] += " **The extension was rebuilt during this run: these figures are mixed.**"
    lines += [
        "",
        "Each table is given twice: with node ids in registration order (every edge goes from "
        "a smaller id to a larger one, as when each task is registered after the tasks it "
        "depends on; taskiq-dataflow's graph detects this and then validates, orders and levels "
        "in sequential passes) and with the same DAG's node ids randomly shuffled (the general "
        "case; every library gets the same relabelled graph).",
    ]
    for variant, title in VARIANTS.items():
        for peer, pilot in variants[variant]["scaled"].items():
            if pilot:
                lines.append(
                    f"{peer} ({title}) would take over {res['limit']:.0f} s for some operation "
                    f"at full size, so its figures were measured on the first {pilot:,} nodes "
                    f"and scaled by {n / pilot:g} (linear scaling flatters it)."
                )
    lines += ["", "### Whole-graph operations"]
    for variant, title in VARIANTS.items():
        lines += ["", f"#### {title.capitalize()}", "", *ops_table(variants[variant]["ops"])]
    prep = res["prep"]
    lines += [
        "",
        "What each column runs: taskiq-dataflow: `_core.Graph(inputs, outputs)` on prebuilt "
        '`[["k{p}", ...]]` / `[["k{i}"]]` lists (keys interned, edges derived by key), '
        "`Graph.from_edges(n, edges)` on a prebuilt list of `(parent, child)` tuples, "
        "`validate(strict_inputs=True)`, `topological_order()`, `levels()` (all return Python "
        "lists). rustworkx: `PyDiGraph()` + `add_nodes_from(range(n))` + "
        "`add_edges_from_no_data(edges)`, `is_directed_acyclic_graph`, `topological_sort`, "
        "`topological_generations` (these return rustworkx's own sequence types). graphlib: "
        "`TopologicalSorter({node: parents})`, `prepare()`, `list(static_order())`, and "
        "`prepare()` + a `get_ready()`/`done(*ready)` loop for levels (a new sorter for each, "
        "built untimed). networkx: `DiGraph()` + `add_nodes_from` + `add_edges_from(edges)`, "
        "`is_directed_acyclic_graph`, `list(topological_sort)`, "
        "`list(topological_generations)`. The peers have no key-based build, so both of our "
        "builds are compared with their build from integer edges.",
        "",
        "Making the inputs in Python (not part of the figures above): the key lists "
        f"{fmt_s(prep['key_lists'])}, the edge tuples {fmt_s(prep['edges'])}.",
        "",
        f"### {n:,} tasks through `DataflowRegistry`",
        "",
        '`register_task(fn, output=f"k{i}", inputs=[f"k{p}" for p in parents])` in a loop, '
        "then `build_dag()` (which builds the Rust graph and validates it), in a fresh "
        f"interpreter for each measurement; time is the best of {res['registry_runs']} runs, "
        "GC on as in normal use. Memory is counted from just before the loop (the parent ids "
        "are already in a compact array) and includes the key strings the loop makes.",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
    ]
    per = reg["nodes"]
    rss_delta = reg["rss_peak"] - reg["rss_before"]
    rss_kept = reg["rss_after"] - reg["rss_before"]
    shuffled = reg["shuffled"]
    lines += [
        f"| `register_task` loop | {fmt_s(reg['register_s'])} | |",
        f"| `build_dag()` | {fmt_s(reg['build_dag_s'])} | |",
        f"| total | {fmt_s(reg['total_s'])} | < 3 s: {verdict(reg['total_s'] < 3)} |",
        f"| of which making the arguments (same loop without `register_task`) "
        f"| {fmt_s(reg['args_s'])} | |",
        f"| total, tasks registered in random order (loop {fmt_s(shuffled['register_s'])}, "
        f"`build_dag()` {fmt_s(shuffled['build_dag_s'])}) | {fmt_s(shuffled['total_s'])} "
        f"| < 3 s: {verdict(shuffled['total_s'] < 3)} |",
        f"| peak RSS growth (VmHWM - VmRSS before) | {rss_delta / per:.0f} B/task "
        f"({rss_delta / 2**20:.0f} MiB) | < 1 KiB/task: {verdict(rss_delta / per < 1024)} |",
        f"| RSS growth kept after `build_dag()` | {rss_kept / per:.0f} B/task | |",
        f"| tracemalloc peak (Python allocations only; the Rust graph is not traced) "
        f"| {reg['tracemalloc_peak'] / per:.0f} B/task "
        f"| < 1 KiB/task: {verdict(reg['tracemalloc_peak'] / per < 1024)} |",
        "",
        "### Scheduler walk through the whole graph",
        "",
        "From Python, every task completed in the order it became ready. taskiq-dataflow: "
        "`Scheduler(graph)`, `start()`, then `complete_many(batch)` (`complete(node)` for batch "
        "1). rustworkx: `TopologicalSorter(graph)`, `get_ready()`/`done(batch)`. graphlib: "
        "`prepare()`, `get_ready()`/`done(*batch)` (the sorter is built untimed). "
        "'frontier' completes everything handed out so far in one call.",
    ]
    for variant, title in VARIANTS.items():
        lines += ["", f"#### {title.capitalize()}", "", *walks_table(variants[variant]["walks"], n)]
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_batches(text: str) -> list[int]:
    return [0 if b == "frontier" else int(b) for b in text.split(",")]


def bench_variant(dag: Dag, args: argparse.Namespace) -> dict[str, Any]:
    """Every library's whole-graph operations and walks on `dag`, with sanity checks."""
    import rustworkx as rx

    out: dict[str, Any] = {"ops": {}, "scaled": {}}
    log("  taskiq-dataflow and rustworkx ...")
    out["ops"].update(bench_fast(dag, args.repeat))
    graph = _core.Graph(*dag.key_lists())
    order = graph.topological_order()
    position = array("l", bytes(8 * dag.n))
    for at, node in enumerate(order):
        position[node] = at
    assert sorted(order) == list(range(dag.n))
    assert all(position[p] < position[i] for p, i in dag.edges()), "order breaks an edge"
    out["level_count"] = len(graph.levels())
    del graph, order, position
    assert len(rx.topological_generations(rx_build(dag))) == out["level_count"]
    for name, bench in (("graphlib", bench_graphlib), ("networkx", bench_networkx)):
        log(f"  {name} ...")
        out["ops"][name], out["scaled"][name] = bench_slow_peer(
            bench, dag, args.slow_repeat, args.limit
        )
        gc.collect()
    level_count = len(graphlib_levels(graphlib.TopologicalSorter(dag.deps())))
    assert level_count == out["level_count"], (level_count, out["level_count"])
    log("  scheduler walks ...")
    out["walks"] = bench_walks(dag, parse_batches(args.batches), args.repeat, args.slow_repeat)
    dag.drop("edges", "keys", "deps")
    gc.collect()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=7, help="runs for ours and rustworkx")
    parser.add_argument("--slow-repeat", type=int, default=2, help="for graphlib and networkx")
    parser.add_argument("--registry-runs", type=int, default=5)
    parser.add_argument(
        "--limit", type=float, default=60.0, help="seconds above which a peer runs at 100k nodes"
    )
    parser.add_argument("--batches", default="1,1024,frontier")
    parser.add_argument("--write", metavar="FILE", help="replace our section of FILE")
    parser.add_argument("--json", metavar="FILE", help="also dump the raw figures")
    parser.add_argument("--render", metavar="JSON", help="only re-render a --json dump")
    parser.add_argument("--registry-child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.render:
        with open(args.render) as f:
            res = json.load(f)
        for variant in res["variants"].values():
            variant["walks"] = {int(b): t for b, t in variant["walks"].items()}
        text = report(res, res["command"])
        print(text)
        if args.write:
            write_section(args.write, SECTION, text)
        return

    if args.registry_child:
        print(json.dumps(registry_child(args.nodes, args.seed, args.registry_child)))
        return

    start = time.perf_counter()
    dag = make_dag(args.nodes, args.seed)
    log(f"DAG: {dag.n:,} nodes, {dag.edge_count:,} edges in {time.perf_counter() - start:.1f} s")
    prep = {
        "key_lists": best_of(lambda _: make_key_lists(dag), 1),
        "edges": best_of(
            lambda _: [(p, i) for i, ps in enumerate(dag.parent_lists()) for p in ps], 1
        ),
    }
    res: dict[str, Any] = {
        "nodes": dag.n,
        "edges": dag.edge_count,
        "seed": args.seed,
        "repeat": args.repeat,
        "slow_repeat": args.slow_repeat,
        "registry_runs": args.registry_runs,
        "limit": args.limit,
        "machine": machine(),
        "load_before": os.getloadavg()[0],
        "extension_mtime": extension_mtime(),
        "prep": prep,
        "variants": {},
    }
    for variant, title in VARIANTS.items():
        log(f"{title} ...")
        vdag = dag if variant == "registration" else dag.shuffled(args.seed + 1)
        res["variants"][variant] = bench_variant(vdag, args)
        del vdag
    log("registry (subprocesses) ...")
    res["registry"] = bench_registry(args.nodes, args.seed, args.registry_runs)

    res["load_after"] = os.getloadavg()[0]
    if extension_mtime() != res["extension_mtime"]:
        res["extension_changed"] = True
        log("WARNING: the extension module was rebuilt during the run; measure again")
    res["command"] = "python " + " ".join(["benches/bench_graph.py", *sys.argv[1:]])
    text = report(res, res["command"])
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)
        log(f"wrote {args.write}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)


if __name__ == "__main__":
    main()
