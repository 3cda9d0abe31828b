"""The cluster across hosts (issue 13): the multi-host drills at full size, and throughput of the
1000 x 100 no-op DAG on 2, 4 and 6 worker processes spread over three hosts, against the
hand-written nats-py loop on the same topology, in one run.

The hosts are network namespaces of this machine (tests/e2e/netbed.py): three worker hosts with
a nats-server each, routed into one cluster with JetStream, and engine hosts of their own; the
drills are tests/e2e/multihost_drills.py, the same code the e2e tests assert on. Needs root.

    .venv/bin/python benches/bench_multihost.py            # ~4 min; markdown on stdout
    .venv/bin/python benches/bench_multihost.py --write    # and RELIABILITY.md, BENCHMARKS.md

Throughput: 2 workers are 1 on h1 and 1 on h2, 4 are 2 + 1 + 1, 6 are 2 + 2 + 2; each worker
connects to its own host's server, the engine (or the hand-written driver) on host e1 to h1's.
Both sides' workers are single processes with one event loop; ours (`taskiq-dataflow worker
--concurrency 64`) also writes one byte per task to its drill ledger, the hand-written one
does not. The machine has 2 cores for the servers, the workers and the engine together, so
absolute rates say little; the ratio and the shape across worker counts are the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(HERE)]

from common import git_commit, loadavg, wide, write_section  # noqa: E402

from tests.e2e import multihost_drills as drills  # noqa: E402
from tests.e2e import netbed  # noqa: E402

DRILLS_TITLE = "## Drills on a three-host cluster (issue 13)"
SPEED_TITLE = "## The cluster across hosts (issue 13)"
SPREAD = {2: {"h1": 1, "h2": 1}, 4: {"h1": 2, "h2": 1, "h3": 1}, 6: {"h1": 2, "h2": 2, "h3": 2}}


def hw_driver(url: str, width: int, depth: int) -> None:
    """`--hw-driver`: the hand-written driver of bench_cluster.py, run on the engine's host."""
    import msgpack
    import nats
    from bench_cluster import HandWritten

    async def main() -> None:
        system = HandWritten.__new__(HandWritten)
        system.nc = await nats.connect(url)
        system.pack, system.unpack = msgpack.packb, msgpack.unpackb
        preds = wide(width, depth)
        start = time.perf_counter()
        done = await system.arun(preds)
        elapsed = time.perf_counter() - start
        await system.nc.close()
        print(json.dumps({"tasks": done, "elapsed": elapsed}))

    asyncio.run(main())


def throughput(bed: drills.Bed, workers: int, repeat: int) -> dict[str, Any]:
    url = bed.cluster.servers["h1"].host.nats_url
    spread = SPREAD[workers]
    row: dict[str, Any] = {"workers": workers, "spread": spread}
    for host, count in spread.items():
        bed.worker(host, count)
    drills.wait_for_workers(bed, tuple(spread))
    ours = []
    for _ in range(repeat):
        result = drills.finish(bed.engine("wide", url, "1000", "100"), 300)
        assert result["error"] is None and result["completed"] == result["tasks"], result
        ours.append(result["tasks"] / result["elapsed"])
    bed.stop_pools()
    hw = []
    hw_procs = []
    for host, count in spread.items():
        own = bed.cluster.servers[host].host.nats_url
        argv = [sys.executable, str(HERE / "cluster_bench_tasks.py"), "hw-worker", own]
        for _ in range(count):
            hw_procs.append(
                subprocess.Popen(
                    bed.net[host].command(argv),
                    env={**bed.env, "PYTHONPATH": f"{HERE}:{bed.env['PYTHONPATH']}"},
                )
            )
    time.sleep(2.0)  # their queue-group subscriptions cross the routes
    try:
        for _ in range(repeat):
            cmd = bed.net[drills.ENGINE].command(
                [sys.executable, __file__, "--hw-driver", url, "1000", "100"]
            )
            result = netbed.run_json(cmd, bed.env, 600)
            hw.append(result["tasks"] / result["elapsed"])
    finally:
        for proc in hw_procs:
            proc.terminate()
        for proc in hw_procs:
            proc.wait(15)
    row["ours"], row["nats-py"] = max(ours), max(hw)
    row["ours_all"], row["nats-py_all"] = ours, hw
    return row


def run_drills(bed: drills.Bed) -> dict[str, Any]:
    out = {}
    out["cut"] = drills.cut_worker_host(bed, 1000, 100, "h2")
    out["worker_server"] = drills.kill_worker_hosts_server(bed, 1000, 100, "h2")
    out["engine_server"] = drills.lose_engines_server(bed, 1000, 100, "h3", "kill")
    out["engine_server_cut"] = drills.lose_engines_server(bed, 1000, 100, "h3", "cut")
    out["large_value"] = drills.lose_large_values_server(bed)
    out["engine_host"] = drills.lose_engine_host(bed)
    for figures in out.values():
        figures.pop("result", None)
        for key in ("early", "second"):
            if key in figures:
                figures[key] = figures[key].returncode
    return out


def preamble(res: dict[str, Any], command: str) -> str:
    return (
        f"`{command}` on commit {res['commit']}; {res['machine']}; load average before: "
        f"{res['load']}. Hosts are network namespaces of this one machine (2 cores for "
        "everything): three worker hosts each with a nats-server (one cluster, routes, "
        "JetStream, object store R3) and `taskiq-dataflow worker` processes connected to their "
        "own host's server first, the engine on a host of its own."
    )


def render_drills(res: dict[str, Any], command: str) -> str:
    d = res["drills"]
    lines = [
        DRILLS_TITLE,
        "",
        preamble(res, command) + " Two worker processes per host, heartbeat timeout 1.5 s "
        "and pings every 1 s (tests/e2e/multihost_tasks.py). Re-executed: executions counted "
        "by the workers' ledgers beyond one per task, until they were quiet for 1 s after the "
        "run; a host healed only after its run ended (h3's cut) may still run frames that "
        "reach it late, after that count.",
        "",
        "| drill | tasks | lost | accepted twice | re-executed | requeued | run time | recovery |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    cut = d["cut"]
    lines.append(
        f"| h2's link down {cut['cut_for']:.1f} s at 10 %, then healed | {cut['tasks']:,} | "
        f"{cut['lost']} | {cut['accepted_twice']} | {cut['re_executed']} | {cut['requeued']} | "
        f"{cut['elapsed']:.1f} s | its tasks requeued {cut['requeued_after']:.1f} s after the "
        f"cut; h2 back at work {cut['rejoined_after']:.1f} s after the heal |"
    )
    ws = d["worker_server"]
    lines.append(
        f"| h2's nats-server SIGKILLed at 20 % | {ws['tasks']:,} | {ws['lost']} | "
        f"{ws['accepted_twice']} | {ws['re_executed']} | {ws['requeued']} | "
        f"{ws['elapsed']:.1f} s | h2's workers failed over and ran {ws['host_executions_after']:,}"
        f" more tasks, the first {ws['host_resumed_after']:.1f} s after the kill |"
    )
    es = d["engine_server"]
    lines.append(
        f"| the engine's nats-server (h3) SIGKILLed at 20 % | {es['tasks']:,} | {es['lost']} | "
        f"{es['accepted_twice']} | {es['re_executed']} | {es['requeued']} | "
        f"{es['elapsed']:.1f} s | completions resumed {es['resumed_after']:.1f} s after the "
        f"kill ({es['redeliveries']:,} sent again on reconnect, {es['duplicates_dropped']:,} "
        "late duplicates dropped) |"
    )
    ec = d["engine_server_cut"]
    lines.append(
        f"| h3, the engine's server's host, cut off at 20 % for the rest of the run | "
        f"{ec['tasks']:,} | {ec['lost']} | {ec['accepted_twice']} | {ec['re_executed']} | "
        f"{ec['requeued']} | {ec['elapsed']:.1f} s | completions resumed "
        f"{ec['resumed_after']:.1f} s after the cut (3 unanswered 1 s pings, then another "
        "server; h3's workers lost with it) |"
    )
    lv = d["large_value"]
    lines.append(
        f"| 300 KiB value written on h1, its stream leader ({lv['leader_killed']}) SIGKILLed, "
        f"read on h3 | {lv['tasks']} | {lv['lost']} | {lv['accepted_twice']} | "
        f"{lv['re_executed']} | {lv['requeued']} | {lv['elapsed']:.1f} s | read intact "
        f"({lv['intact']}), {lv['read_after']:.1f} s after the kill; bucket replicas "
        f"{lv['replicas']} |"
    )
    eh = d["engine_host"]
    lines.append(
        f"| the engine's host (e1) cut off and its engine killed 2 s in; `runs restart` on e2 "
        f"| {eh['tasks']:,} | {eh['lost']} | 0 | {eh['re_executed']} | - | - | run shown "
        f"interrupted {eh['interrupted_after']:.1f} s after the loss, completed "
        f"{eh['recovered']:.1f} s after it |"
    )
    healthy_before, healthy_during = cut["healthy_rate_before"], cut["healthy_rate_during"]
    lines += [
        "",
        f"While h2 was cut off, the healthy hosts (h1, h3) completed {healthy_during:,.0f} "
        f"tasks/s against {healthy_before:,.0f} tasks/s in the 2 s before the cut "
        f"({healthy_during / healthy_before:.2f}x; h2 had been doing "
        f"{cut['cut_host_rate_before']:,.0f} tasks/s, and the 2 cores it shared with them "
        "went to them). Re-executed tasks are the ones the lost host held or had in flight, or "
        "that were in flight when a server died: they ran elsewhere once the engine gave up on "
        "them, and the frames that reached the lost host late ran there too; the engine "
        "accepted one result of each and dropped the others as duplicates.",
        "",
    ]
    return "\n".join(lines)


def render_speed(res: dict[str, Any], command: str) -> str:
    lines = [
        SPEED_TITLE,
        "",
        preamble(res, command) + " The 1000 x 100 no-op DAG (100,000 tasks) on 2, 4 and 6 "
        "worker processes spread over the hosts, each connected to its own host's server; the "
        "engine, or the hand-written driver of bench_cluster.py (graphlib, one msgpack message "
        "per task to a queue group, one back), on host e1 connected to h1's server. Ours also "
        "writes one byte per task to the drills' ledger.",
        "",
        "| worker processes | spread | taskiq-dataflow (best) | hand-written nats-py loop (best) "
        "| ratio of the bests | ratio of the medians |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in res["throughput"]:
        spread = " + ".join(f"{n} on {h}" for h, n in row["spread"].items())
        medians = statistics.median(row["ours_all"]) / statistics.median(row["nats-py_all"])
        lines.append(
            f"| {row['workers']} | {spread} | {row['ours']:,.0f} tasks/s | "
            f"{row['nats-py']:,.0f} tasks/s | {row['ours'] / row['nats-py']:.2f}x | "
            f"{medians:.2f}x |"
        )
    lines += [
        "",
        "More workers do not make either faster here: the worker processes, three servers and "
        "the engine share 2 cores, so each added process takes CPU from the others, and the "
        "runs vary by up to a third from one to the next (all of them below). The ratio of "
        "the medians is the steadier figure.",
        "",
        f"Best of {res['repeat']} runs each; all runs: "
        + "; ".join(
            f"{r['workers']} workers: ours {', '.join(f'{x:,.0f}' for x in r['ours_all'])}, "
            f"nats-py {', '.join(f'{x:,.0f}' for x in r['nats-py_all'])}"
            for r in res["throughput"]
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--write",
        action="store_true",
        help="record the drills in RELIABILITY.md, the throughput in BENCHMARKS.md",
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--render", default=None, metavar="JSON", help="only render a run's JSON (its stderr)"
    )
    parser.add_argument("--hw-driver", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hw_driver:
        url, width, depth = args.hw_driver
        hw_driver(url, int(width), int(depth))
        return 0
    reason = netbed.unavailable()
    if reason:
        print(f"cannot make the test bed: {reason}", file=sys.stderr)
        return 2
    if args.render:
        res = json.loads(Path(args.render).read_text().strip().splitlines()[-1])
        return record(res, args.write)
    from bench_cluster import machine

    res = {
        "commit": git_commit(),
        "machine": machine()["cpu"],
        "load": loadavg(),
        "repeat": args.repeat,
    }
    with tempfile.TemporaryDirectory(prefix="bench-multihost-") as tmp:
        bed = drills.Bed(Path(tmp))
        try:
            bed.start(per_host=0)
            res["throughput"] = [throughput(bed, n, args.repeat) for n in (2, 4, 6)]
            bed.reset_ledger()
            for host in drills.WORKER_HOSTS:
                bed.worker(host, drills.WORKERS_PER_HOST)
            drills.wait_for_workers(bed)
            res["drills"] = run_drills(bed)
        finally:
            bed.close()
    print(json.dumps(res, default=str), file=sys.stderr)
    return record(res, args.write)


def record(res: dict[str, Any], write: bool) -> int:
    command = "benches/bench_multihost.py" + (" --write" if write else "")
    drills_text, speed_text = render_drills(res, command), render_speed(res, command)
    print(drills_text + "\n" + speed_text)
    if write:
        write_section(str(ROOT / "RELIABILITY.md"), DRILLS_TITLE, drills_text)
        write_section(str(ROOT / "BENCHMARKS.md"), SPEED_TITLE, speed_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
