"""Latency of a small run (issue 14): one 5-task DAG executed again and again by one engine.

The DAG: a -> b, a -> c, (b, c) -> d, d -> e; every task an `async def` no-op that takes its
parents' results (None) and returns None. One engine (or one hand-written loop) runs it over
and over, called by 1, 10 or 100 asyncio tasks at once (each caller starts its next run when
its last one returned); every run's latency is the wall time of its `execute()` call.

Systems, all in this one process, their rounds alternating so that they meet the same load:

- in-process: `ExecutionEngine(None, dag)` (the engine made once, as a service would);
- asyncio loop: the hand-written in-process peer, `graphlib.TopologicalSorter` and one
  asyncio task per ready node (bench_engine.py's loop);
- cluster: `ExecutionEngine(DataflowNatsBroker(...), dag, max_parallel=...)` made once, on a
  nats-server this script starts on a free loopback port and 2 worker processes
  (`python -m taskiq_dataflow.cluster.serve cluster_bench_tasks:broker --workers 2`);
- nats-py loop: the hand-written cluster peer: one nats-py connection, the same graphlib loop,
  1 msgpack message per task published to a queue group with a reply subject (one wildcard
  subscription for all the runs' replies), answered by 2 `cluster_bench_tasks.py hw-worker`
  processes (bench_cluster.py's peer worker).

    .venv/bin/python benches/bench_latency.py                        # ~2 min; markdown report
    .venv/bin/python benches/bench_latency.py --quick                # ~30 s
    .venv/bin/python benches/bench_latency.py --write BENCHMARKS.md  # and replace its section
    .venv/bin/python benches/bench_latency.py --json now.json --baseline before.json:LABEL

It then measures the chain latency of bench_cluster.py (ours and its nats-py loop on a chain of
1,000 tasks, 7 runs each, alternating, in a child process: `--chain N,ROUNDS`, 0 for none).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import graphlib
import json
import os
import platform
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from common import cpu_model, git_commit, loadavg, nproc, write_section  # noqa: E402

SECTION = "## Latency of a small run (issue 14)"
WORKERS = 2
# node -> its parents: a -> b, a -> c, (b, c) -> d, d -> e
NAMES = ["a", "b", "c", "d", "e"]
PREDS: list[tuple[int, ...]] = [(), (0,), (0,), (1, 2), (3,)]
SYSTEMS = {
    "inproc": "in-process `ExecutionEngine(None, dag)`",
    "asyncio": "hand-written asyncio loop (graphlib, 1 task per node)",
    "cluster": "cluster `ExecutionEngine(DataflowNatsBroker(...), dag, max_parallel=N)`",
    "cluster-unbounded": "cluster, the same without max_parallel (no shared slots)",
    "nats-py": "hand-written nats-py loop (graphlib, 1 msg per task)",
}
PEER = {"inproc": "asyncio", "cluster": "nats-py", "cluster-unbounded": "nats-py"}


async def noop(*args: Any) -> None:
    return None


def build_dag(task: Any) -> Any:
    from taskiq_dataflow.dataflow.dag import DAG

    keys = [f"k_{n}" for n in NAMES]
    inputs = [tuple(keys[p] for p in ps) for ps in PREDS]
    outputs = [(k,) for k in keys]
    n = len(NAMES)
    dag = DAG.from_columns([task] * n, list(NAMES), inputs, outputs, [None] * n)
    dag.graph  # noqa: B018 - built once, not per run
    return dag


# -- the systems: each an async callable running the DAG once ------------------------------------


def ours_inproc() -> Callable[[], Awaitable[Any]]:
    from taskiq_dataflow import ExecutionEngine

    engine = ExecutionEngine(None, build_dag(noop))
    return engine.execute


def asyncio_loop() -> Callable[[], Awaitable[Any]]:
    async def run() -> dict[int, Any]:
        sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
        for node, ps in enumerate(PREDS):
            sorter.add(node, *ps)
        sorter.prepare()
        results: dict[int, Any] = {}
        running: dict[asyncio.Task[Any], int] = {}
        while sorter.is_active():
            for node in sorter.get_ready():
                args = [results[p] for p in PREDS[node]]
                running[asyncio.ensure_future(noop(*args))] = node
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                node = running.pop(task)
                results[node] = task.result()
                sorter.done(node)
        return results

    return run


class ClusterEngine:
    def __init__(self, max_parallel: int) -> None:
        import cluster_bench_tasks as cbt
        from taskiq_dataflow import ExecutionEngine

        self.cbt = cbt
        self.engine = ExecutionEngine(
            cbt.broker, build_dag(cbt.noop), max_parallel=max_parallel or None
        )

    async def ready(self) -> None:
        """Until both workers heart-beat."""
        from taskiq_dataflow.cluster.protocol import HEARTBEAT

        broker = self.cbt.broker
        nc = await broker.connect()
        seen: set[str] = set()
        done = asyncio.Event()

        async def on_beat(msg: Any) -> None:
            frame = broker.codec.read_frame(msg.data)
            if frame["t"] == HEARTBEAT:
                seen.add(frame["w"])
                if len(seen) >= WORKERS:
                    done.set()

        await nc.subscribe(broker.heartbeat_subject, cb=on_beat)
        try:
            await asyncio.wait_for(done.wait(), 60)
        finally:
            await nc.close()

    async def close(self) -> None:
        close = getattr(self.engine, "aclose", None)
        if close is not None:
            await close()


class NatsPyLoop:
    """One connection, one subscription for every run's replies; per run a graphlib sorter."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def start(self) -> None:
        import msgpack
        import nats
        from cluster_bench_tasks import HW_SUBJECT

        self.pack, self.unpack = msgpack.packb, msgpack.unpackb
        self.subject = HW_SUBJECT
        self.nc = await nats.connect(self.url)
        self.prefix = f"hw.lat.{uuid.uuid4().hex}"
        self.runs: dict[str, Callable[[Any], Awaitable[None]]] = {}
        self.count = 0

        async def on_result(msg: Any) -> None:
            handler = self.runs.get(msg.subject)
            if handler is not None:
                await handler(msg)

        await self.nc.subscribe(f"{self.prefix}.*", cb=on_result)
        await self.nc.flush()

    async def ready(self, count: int) -> None:
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(seen)} of {count} hand-written workers answered")
            for _ in range(8):
                with contextlib.suppress(Exception):
                    msg = await self.nc.request(self.subject, self.pack([0, "pid", []]), timeout=2)
                    seen.add(self.unpack(msg.data)[1])

    async def run(self) -> dict[int, Any]:
        nc, pack, unpack, subject = self.nc, self.pack, self.unpack, self.subject
        self.count += 1
        inbox = f"{self.prefix}.{self.count}"
        sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
        for node, ps in enumerate(PREDS):
            sorter.add(node, *ps)
        sorter.prepare()
        results: dict[int, Any] = {}
        finished = asyncio.get_running_loop().create_future()

        async def send(nodes: tuple[int, ...]) -> None:
            for node in nodes:
                args = [results[p] for p in PREDS[node]]
                await nc.publish(subject, pack([node, "noop", args]), reply=inbox)

        async def on_result(msg: Any) -> None:
            node, value = unpack(msg.data)
            results[node] = value
            sorter.done(node)
            await send(sorter.get_ready())
            if not sorter.is_active() and not finished.done():
                finished.set_result(None)

        self.runs[inbox] = on_result
        try:
            await send(sorter.get_ready())
            await finished
        finally:
            del self.runs[inbox]
        return results

    async def close(self) -> None:
        await self.nc.close()


# -- measuring ------------------------------------------------------------------------------------


async def measure(run: Callable[[], Awaitable[Any]], callers: int, per_caller: int) -> list[float]:
    """`callers` tasks each running `per_caller` runs one after another; every run's latency."""
    latencies: list[float] = []
    clock = time.perf_counter

    async def caller() -> None:
        for _ in range(per_caller):
            t0 = clock()
            result = await run()
            latencies.append(clock() - t0)
            if len(result) != len(NAMES):
                raise AssertionError(f"{len(result)} results, not {len(NAMES)}")

    await asyncio.gather(*[caller() for _ in range(callers)])
    return latencies


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    s = sorted(latencies)
    return {
        "runs": len(s),
        "p50": pct(s, 0.5) * 1e3,
        "p99": pct(s, 0.99) * 1e3,
        "mean": statistics.fmean(s) * 1e3,
        "rate": len(s) / seconds if seconds > 0 else 0.0,
    }


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from bench_cluster import bench_env, launch, stop_group
    from taskiq_dataflow.cluster.server import NatsServer

    systems = [s for s in args.systems.split(",") if s]
    callers_list = [int(c) for c in args.callers.split(",") if c]
    res: dict[str, Any] = {
        "load_before": loadavg(),
        "machine": f"{cpu_model()} ({nproc()} CPUs), Python {platform.python_version()}, "
        f"commit {git_commit()}",
        "max_parallel": args.max_parallel,
        "rounds": args.rounds,
        "records": [],
    }
    log = open(os.devnull, "wb")  # noqa: SIM115 - the workers' output
    procs = []
    with NatsServer() as server:
        os.environ["DATAFLOW_NATS_URL"] = os.environ["BENCH_NATS_URL"] = server.url
        runners: dict[str, Callable[[], Awaitable[Any]]] = {}
        closers: list[Callable[[], Awaitable[None]]] = []
        try:
            if "inproc" in systems:
                runners["inproc"] = ours_inproc()
            if "asyncio" in systems:
                runners["asyncio"] = asyncio_loop()
            if "cluster" in systems or "cluster-unbounded" in systems:
                cmd = [sys.executable, "-m", "taskiq_dataflow.cluster.serve",
                       "cluster_bench_tasks:broker", "--workers", str(WORKERS)]  # fmt: skip
                procs.append(launch(cmd, bench_env(server.url), log))
                cluster = ClusterEngine(args.max_parallel)
                await cluster.ready()
                closers.append(cluster.close)
                if "cluster" in systems:
                    runners["cluster"] = cluster.engine.execute
                if "cluster-unbounded" in systems:
                    runners["cluster-unbounded"] = ClusterEngine(0).engine.execute
            if "nats-py" in systems:
                cmd = [sys.executable, str(HERE / "cluster_bench_tasks.py"), "hw-worker",
                       server.url]  # fmt: skip
                procs += [launch(cmd, bench_env(server.url), log) for _ in range(WORKERS)]
                loop_ = NatsPyLoop(server.url)
                await loop_.start()
                await loop_.ready(WORKERS)
                runners["nats-py"] = loop_.run
                closers.append(loop_.close)
            # warm-up: imports, connections, first calls, the engines' caches
            for run in runners.values():
                await measure(run, 10, 20)
            samples: dict[tuple[str, int], list[float]] = {}
            seconds: dict[tuple[str, int], float] = {}
            for callers in callers_list:
                per_caller = max(args.min_per_caller, args.runs // callers)
                for _ in range(args.rounds):
                    for name in [s for s in systems if s in runners]:
                        gc.collect()
                        t0 = time.perf_counter()
                        lat = await measure(runners[name], callers, per_caller)
                        elapsed = time.perf_counter() - t0
                        samples.setdefault((name, callers), []).extend(lat)
                        seconds[name, callers] = seconds.get((name, callers), 0.0) + elapsed
                print(f"# {callers} callers done", file=sys.stderr, flush=True)
            for (name, callers), lat in samples.items():
                rec = {"system": name, "callers": callers, **summary(lat, seconds[name, callers])}
                res["records"].append(rec)
        finally:
            for close in closers:
                with contextlib.suppress(Exception):
                    await close()
            for proc in procs:
                stop_group(proc)
            log.close()
    res["load_after"] = loadavg()
    return res


# -- the report -----------------------------------------------------------------------------------


def find(recs: list[dict[str, Any]], system: str, callers: int) -> dict[str, Any] | None:
    return next((r for r in recs if r["system"] == system and r["callers"] == callers), None)


def render(res: dict[str, Any], command: str) -> str:
    recs = res["records"]
    lines = [
        SECTION,
        "",
        f"`{command}` on {res['machine']}; load average {res['load_before']} at the start, "
        f"{res['load_after']} at the end (other processes share these CPUs).",
        "",
        "The DAG: a -> b, a -> c, (b, c) -> d, d -> e, `async def` no-ops. One engine (or loop) "
        "made once runs it again and again for 1, 10 or 100 asyncio tasks calling it at once; a "
        "run's latency is the wall time of its `execute()` (the loop's run) call. The systems "
        f"run in the same process, their rounds alternating ({res['rounds']} rounds each); the "
        f"cluster rows on one nats-server (loopback) with {WORKERS} worker processes each, the "
        f"engine with `max_parallel={res['max_parallel']}`.",
        "",
        "| system | callers | runs | p50 ms | p99 ms | mean ms | runs/s | p50 ÷ peer's |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {name: i for i, name in enumerate(SYSTEMS)}
    for r in sorted(recs, key=lambda r: (order.get(r["system"], 9), r["callers"])):
        peer = find(recs, PEER.get(r["system"], ""), r["callers"])
        ratio = f"{r['p50'] / peer['p50']:.2f}x" if peer else ""
        lines.append(
            f"| {SYSTEMS.get(r['system'], r['system'])} | {r['callers']} | {r['runs']:,} | "
            f"{r['p50']:.3f} | {r['p99']:.3f} | {r['mean']:.3f} | {r['rate']:,.0f} | {ratio} |"
        )
    lines += ["", *targets(recs), *baseline(res), *chain_text(res), *NOTES]
    return "\n".join(lines).rstrip() + "\n"


NOTES = [
    "### Where a cluster run's time went, and goes",
    "",
    "- Before: every run opened its own NATS connection, subscribed to the heartbeats, pinged "
    "the workers and waited for their answers (at least one 10 ms quiet period; 200 ms when "
    "the workers' ping throttle of 20 ms swallowed the ping: the p99), then closed it all. Now "
    "the runs of a broker in an event loop share one `EngineSession` (cluster/session.py: one "
    "connection, one heartbeat subscription whose latest beats a new run starts from, one "
    "ticker for every run's silence checks); a run subscribes its own reply subject on it "
    "(the SUB leaves with its first tasks frame) and nothing else.",
    "- Per hop, nats-py cost each side two loop iterations on top of the socket read (the "
    "subscription's task, the flusher task). cluster/wire.py frames the bytes as they are "
    "received and hands the run's results and the worker's tasks frames to their handlers at "
    "once (in nats-py's reader task, as nats-py would), and writes the frames as PUB commands "
    "in one write per loop iteration (at once when nothing else runs in it). Reconnects, "
    "logins and TLS stay nats-py's (tests/test_cluster_latency_paths.py).",
    "- Concurrent runs each kept their own credit books and so all sent their first task to "
    "the same worker; they now take turns (the second worker was idle at 10 and 100 callers).",
    "- What is left at 1 caller is the engine's work per run and per hop (per hop ours and the "
    "nats-py loop are level: see the chain); at 10 and 100 callers the engine process is "
    "CPU-bound (about 450 µs of CPU per run against 110 µs for the nats-py loop, most of it in "
    "the per-run and per-task Python of the driver, the run state and the transport). With "
    "`max_parallel`, the shared slots' `rebalance()` is O(runs); it ran after every batch of "
    "every run (quadratic: 379 ms p50 at 100 callers) and now once per event-loop turn "
    "(`SharedSlots.rebalance_soon`), which is still what the rows with and without "
    "`max_parallel` differ by at 100 callers.",
    "- In-process, what the engine now keeps across its runs (a plan per task, the validated "
    "graph, the transport decision; run ids without uuid4; no SlotsGranted turn for a run "
    "alone; the Sink's Event made only when the driver waits) is the difference from the "
    "baseline. A DAG of 5 distinct tasks gained more (about 584 to 107 µs, a signature read "
    "per task per run before).",
    "",
]


def targets(recs: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in recs if r["system"].startswith("cluster")]
    if not rows:
        return []
    out = ["Targets (cluster): p50 <= 1 ms, p99 <= 3 ms.", "", "| engine | callers | p50 | p99 |",
           "|---|---:|---|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["system"], r["callers"])):
        p50 = "met" if r["p50"] <= 1 else "**missed**"
        p99 = "met" if r["p99"] <= 3 else "**missed**"
        out.append(
            f"| {r['system']} | {r['callers']} | {r['p50']:.2f} ms: {p50} | "
            f"{r['p99']:.2f} ms: {p99} |"
        )
    return [*out, ""]


def baseline(res: dict[str, Any]) -> list[str]:
    base = res.get("baseline")
    if not base:
        return []
    out = [
        f"Before and after (before = {base['label']}, load {base['load_before']} -> "
        f"{base['load_after']}); p50 / p99 in ms:",
        "",
        "| system | callers | before | after |",
        "|---|---:|---:|---:|",
    ]
    order = {name: i for i, name in enumerate(SYSTEMS)}
    for r in sorted(base["records"], key=lambda r: (order.get(r["system"], 9), r["callers"])):
        now = find(res["records"], r["system"], r["callers"])
        after = f"{now['p50']:.3f} / {now['p99']:.3f}" if now else "-"
        out.append(
            f"| {SYSTEMS.get(r['system'], r['system'])} | {r['callers']} | "
            f"{r['p50']:.3f} / {r['p99']:.3f} | {after} |"
        )
    return [*out, ""]


# -- chain latency (issue 14 item 2), in a child of its own (bench_cluster's systems run their
# own event loops) ----------------------------------------------------------------------------


def chain_child(n: int, rounds: int) -> None:
    """bench_cluster.py's ours and nats-py loop on a chain of n tasks, on one nats-server with
    2 workers each, their runs alternating; prints one JSON line of seconds per hop."""
    import bench_cluster as bc
    from common import chain
    from taskiq_dataflow.cluster.server import NatsServer

    with NatsServer() as server:
        os.environ["DATAFLOW_NATS_URL"] = os.environ["BENCH_NATS_URL"] = server.url
        systems = {"ours": bc.Ours(server.url, {}), "nats-py": bc.HandWritten(server.url, {})}
        try:
            for system in systems.values():
                system.start()
            built = {name: s.build(chain(n)) for name, s in systems.items()}
            for s in systems.values():
                s.run(s.build(chain(50)))
            hops: dict[str, list[float]] = {name: [] for name in systems}
            for _ in range(rounds):
                for name, s in systems.items():
                    gc.collect()
                    t0 = time.perf_counter()
                    s.run(built[name])
                    hops[name].append((time.perf_counter() - t0) / n)
        finally:
            for s in systems.values():
                s.stop()
    print("CHAIN " + json.dumps(hops), flush=True)


def measure_chain(n: int, rounds: int) -> dict[str, list[float]]:
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--chain-child", f"{n},{rounds}"],
        capture_output=True, text=True, check=True, timeout=900,
    ).stdout  # fmt: skip
    line = next(ln for ln in out.splitlines() if ln.startswith("CHAIN "))
    hops: dict[str, list[float]] = json.loads(line[6:])
    return hops


def chain_text(res: dict[str, Any]) -> list[str]:
    hops = res.get("chain")
    if not hops:
        return []
    n, rounds = res["chain_shape"]
    out = [
        f"### Chain latency (issue 14 item 2): chain of {n:,} tasks, per hop",
        "",
        f"bench_cluster.py's two systems on one nats-server (2 workers each), {rounds} runs "
        "each, alternating; per hop = wall time of a run / its length.",
        "",
        "| system | median µs/hop | best µs/hop | ÷ nats-py loop (median) |",
        "|---|---:|---:|---:|",
    ]
    loop = statistics.median(hops["nats-py"])
    for name, label in (("ours", "taskiq-dataflow"), ("nats-py", "hand-written nats-py loop")):
        med = statistics.median(hops[name])
        out.append(
            f"| {label} | {med * 1e6:,.0f} | {min(hops[name]) * 1e6:,.0f} | {med / loop:.2f}x |"
        )
    base = (res.get("baseline") or {}).get("chain")
    if base:
        b_ours, b_loop = statistics.median(base["ours"]), statistics.median(base["nats-py"])
        out += [
            "",
            f"Before: ours {b_ours * 1e6:,.0f} µs/hop, nats-py loop {b_loop * 1e6:,.0f} µs/hop "
            f"({b_ours / b_loop:.2f}x) in the baseline's run.",
        ]
    return [*out, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--callers", default="1,10,100")
    parser.add_argument("--runs", type=int, default=1000, help="runs per round (all callers)")
    parser.add_argument("--min-per-caller", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-parallel", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="fewer runs and rounds")
    parser.add_argument("--write", metavar="FILE", help="replace the section in this file")
    parser.add_argument("--json", metavar="FILE", help="dump the raw figures")
    parser.add_argument("--render", metavar="FILE", help="re-render a --json dump, no runs")
    parser.add_argument("--baseline", metavar="FILE:LABEL", help="an earlier --json dump")
    parser.add_argument(
        "--chain", metavar="N,ROUNDS", default="1000,7", help="chain latency ('0': none)"
    )
    parser.add_argument("--chain-child", metavar="N,ROUNDS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chain_child:
        n, rounds = map(int, args.chain_child.split(","))
        chain_child(n, rounds)
        return 0
    if args.quick:
        args.runs, args.rounds = 200, 2
    command = " ".join(["python", "benches/bench_latency.py", *map(shlex.quote, sys.argv[1:])])
    if args.render:
        res = json.loads(Path(args.render).read_text())
    else:
        res = asyncio.run(run_all(args))
        res["command"] = command
        n, _, rounds = args.chain.partition(",")
        if int(n) > 0:
            res["chain_shape"] = [int(n), int(rounds or 7)]
            res["chain"] = measure_chain(int(n), int(rounds or 7))
            res["load_after"] = loadavg()
    if args.baseline:
        path, _, label = args.baseline.partition(":")
        res["baseline"] = {**json.loads(Path(path).read_text()), "label": label or path}
    text = render(res, res.get("command", command))
    print(text)
    if args.json and not args.render:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.write:
        write_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
