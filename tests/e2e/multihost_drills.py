"""The multi-host drills, shared by tests/e2e/test_multihost.py (which asserts on them) and
benches/bench_multihost.py (which records their figures at full size in RELIABILITY.md).

A `Bed` is the test bed (netbed.py) with three nats-servers routed into one cluster, worker
pools on h1, h2 and h3 (each connected to its own host's server first), and two more hosts for
engines (e1, e2). Each drill runs the engine script (multihost_run.py) or the CLI on e1, does its
damage when the run is far enough, and returns the figures: tasks lost, accepted twice and run
again (the workers' ledgers), requeues, and how long recovery took.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import netbed
from .multihost_tasks import HEARTBEAT_TIMEOUT, LEDGER_ENV, blob_bytes
from .support import CLI, E2E, PACKAGE_ROOT

WORKER_HOSTS = ("h1", "h2", "h3")
ENGINE, SPARE = "e1", "e2"
WORKERS_PER_HOST = 2


class Bed:
    """The bed, its cluster and the worker pools, for the drills of this module."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ledger = tmp / "ledger"
        self.ledger.mkdir()
        self.gate = tmp / "gate"
        self.store = tmp / "runs.db"  # the run store both engine hosts reach
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(E2E), str(PACKAGE_ROOT)]),
            "PYTHONUNBUFFERED": "1",
            LEDGER_ENV: str(self.ledger),
            "DRILL_GATE": str(self.gate),
        }
        self.net = netbed.NetBed([*WORKER_HOSTS, ENGINE, SPARE])
        self.cluster = netbed.Cluster(self.net, WORKER_HOSTS, self.env)
        self.pools: list[subprocess.Popen[bytes]] = []

    def start(self, per_host: int = WORKERS_PER_HOST) -> None:
        self.cluster.start(ENGINE)
        for host in WORKER_HOSTS if per_host else ():
            self.worker(host, per_host)

    def stop_pools(self) -> None:
        for proc in self.pools:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.pools:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.pools.clear()

    def worker(self, host: str, count: int, pool: str | None = None) -> subprocess.Popen[bytes]:
        urls = ",".join(self.cluster.urls_from(host))
        argv = [CLI, "worker", "multihost_tasks:broker", "--server", urls, "--workers",
                str(count), "--concurrency", "64"]  # fmt: skip
        if pool:
            argv += ["--pool", pool]
        with (self.tmp / f"worker-{host}-{pool or 'default'}.log").open("ab") as log:
            proc = subprocess.Popen(
                self.net[host].command(argv),
                env={**self.env, "DRILL_HOST": host},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.pools.append(proc)
        return proc

    def executions(self) -> dict[str, int]:
        """Executions counted by the workers of each host so far."""
        counts = dict.fromkeys(WORKER_HOSTS, 0)
        for path in self.ledger.iterdir():
            counts[path.name.split("-")[0]] += path.stat().st_size
        return counts

    def pid_hosts(self) -> dict[str, str]:
        return {path.name.split("-")[1]: path.name.split("-")[0] for path in self.ledger.iterdir()}

    def reset_ledger(self) -> None:
        for path in self.ledger.iterdir():
            path.write_bytes(b"")

    def engine(self, *argv: str, host: str = ENGINE) -> subprocess.Popen[str]:
        script = [sys.executable, str(E2E / "multihost_run.py"), *argv]
        return subprocess.Popen(
            self.net[host].command(script),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def close(self) -> None:
        self.stop_pools()
        self.cluster.close()
        self.net.close()


def runs(bed: Bed, *argv: str) -> subprocess.CompletedProcess[str]:
    """`taskiq-dataflow runs ...` on the spare engine host, on the shared run store."""
    return subprocess.run(
        bed.net[SPARE].command([CLI, "runs", *argv, "--store", str(bed.store)]),
        env=bed.env, capture_output=True, text=True, cwd=bed.tmp, timeout=120,
    )  # fmt: skip


def wait_for_workers(
    bed: Bed, hosts: tuple[str, ...] = WORKER_HOSTS, timeout: float = 60.0
) -> None:
    """Until a small run has used a worker on each of `hosts` (their heartbeats cross the
    cluster's routes)."""
    deadline = time.monotonic() + timeout
    while True:
        result = finish(bed.engine("wide", ",".join(bed.cluster.urls), "60", "10"), 60)
        assert result["error"] is None, result
        used = {bed.pid_hosts().get(pid) for pid in result["timeline"]}
        if set(hosts) <= used:
            return
        assert time.monotonic() < deadline, f"workers of some hosts never ran a task: {used}"
        time.sleep(0.5)


def wait_mark(proc: subprocess.Popen[str], mark: str, timeout: float) -> float:
    """Read the engine's stdout until `mark` (e.g. "MARK 20"); returns the offset of the
    engine's clock (seconds since its run started) from ours: engine time = ours - offset."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        word, _, at = line.strip().rpartition(" ")
        if word == mark:
            return time.monotonic() - float(at)
        assert time.monotonic() < deadline, f"no {mark!r} within {timeout} s"
    raise AssertionError(f"the engine ended before {mark!r}: {proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]


def finish(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the run did not end within {timeout} s: {err[-3000:]}") from None
    assert proc.returncode == 0, f"engine exited {proc.returncode}: {err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def assert_whole(result: dict[str, Any]) -> None:
    assert result["error"] is None, result["error"]
    assert result["completed"] == result["tasks"], "tasks lost"
    assert result["accepted_twice"] == 0, "a task's result was accepted twice"


def restored(bed: Bed, host: str) -> None:
    """Start `host`'s server again (after a kill) and wait until the cluster is whole."""
    bed.cluster.servers[host].start()
    bed.cluster.wait_ready(ENGINE)


STREAM_INFO = """
import asyncio, json, sys
import nats

async def main():
    nc = await nats.connect(sys.argv[1].split(","), connect_timeout=1)
    info = await nc.jetstream().stream_info(sys.argv[2])
    print(json.dumps({"leader": info.cluster.leader, "replicas": info.config.num_replicas}))
    await nc.close()

asyncio.run(main())
"""


def _stream(bed: Bed, stream: str) -> dict[str, Any]:
    cmd = bed.net[ENGINE].command([sys.executable, "-c", STREAM_INFO, ",".join(bed.cluster.urls),
                                   stream])  # fmt: skip
    return netbed.run_json(cmd, bed.env, 30)  # type: ignore[no-any-return]


def stream_leader(bed: Bed, stream: str) -> str:
    return str(_stream(bed, stream)["leader"])


def stream_replicas(bed: Bed, stream: str) -> int:
    return int(_stream(bed, stream)["replicas"])


# -- the drills -----------------------------------------------------------------------------------


def tally(bed: Bed, result: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A drill's figures: what the engine saw, and executions from the ledgers (reset at the
    start of the drill, so that they count this run's alone), once they stopped growing: a
    worker cut off may still run what reached it late, after the run ended."""
    executions = settled(bed)
    return {
        "tasks": result["tasks"],
        "lost": result["tasks"] - result["completed"],
        "accepted_twice": result["accepted_twice"],
        "executions": executions,
        "re_executed": executions - result["tasks"],
        "requeued": result["requeued"],
        "redeliveries": result["stats"].get("redeliveries", 0),
        "duplicates_dropped": result["stats"].get("duplicates", 0),
        "elapsed": result["elapsed"],
        "error": result["error"],
        "result": result,
        **extra,
    }


def settled(bed: Bed, quiet: float = 1.0, limit: float = 15.0) -> int:
    """The ledgers' total once it did not change for `quiet` seconds (at most `limit`)."""
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = sum(bed.executions().values())
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.1)
    return last


def host_rates(bed: Bed, result: dict[str, Any], since: float, until: float) -> dict[str, float]:
    """Completions per second of each worker host's workers between two engine times."""
    bucket, hosts = result["bucket"], bed.pid_hosts()
    first, last = int(since / bucket), max(int(until / bucket), int(since / bucket) + 1)
    rates = dict.fromkeys(WORKER_HOSTS, 0.0)
    for pid, counts in result["timeline"].items():
        host = hosts.get(pid)
        if host is not None:
            rates[host] += sum(counts[first:last]) / ((last - first) * bucket)
    return rates


def resumed_after(bed: Bed, result: dict[str, Any], at: float, host: str | None = None) -> float:
    """Seconds from engine time `at` until the first completion (of `host`'s workers) in a
    bucket that starts after it; -1 when none came."""
    bucket, hosts = result["bucket"], bed.pid_hosts()
    start = int(at / bucket) + 1
    firsts = [
        start + next((i for i, n in enumerate(counts[start:]) if n), 10**9)
        for pid, counts in result["timeline"].items()
        if pid != "engine" and (host is None or hosts.get(pid) == host)
    ]
    first = min(firsts, default=10**9)
    return -1.0 if first >= 10**9 else round(first * bucket - at, 2)


def cut_worker_host(bed: Bed, width: int, depth: int, host: str = "h2") -> dict[str, Any]:
    """A `width` x `depth` run; `host`'s link goes down at 10 % for 2.5 heartbeat timeouts."""
    bed.reset_ledger()
    proc = bed.engine("wide", ",".join(bed.cluster.urls), str(width), str(depth))
    offset = wait_mark(proc, "MARK 10", 120)
    before = bed.executions()
    bed.net.cut(host)
    cut_at = time.monotonic() - offset
    time.sleep(2.5 * HEARTBEAT_TIMEOUT)
    during = bed.executions()
    bed.net.heal(host)
    healed_at = time.monotonic() - offset
    result = finish(proc, 300)
    first_requeue = result["requeued_at"][0] if result["requeued_at"] else -1.0
    rates_before = host_rates(bed, result, max(cut_at - 2, 0), cut_at)
    rates_during = host_rates(bed, result, cut_at, healed_at)
    healthy = [h for h in WORKER_HOSTS if h != host]
    return tally(
        bed, result, cut_for=round(healed_at - cut_at, 2), before=before, during=during,
        requeued_after=round(first_requeue - cut_at, 2) if first_requeue >= 0 else -1.0,
        rejoined_after=resumed_after(bed, result, healed_at, host),
        healthy_rate_before=sum(rates_before[h] for h in healthy),
        healthy_rate_during=sum(rates_during[h] for h in healthy),
        cut_host_rate_before=rates_before[host],
    )  # fmt: skip


def kill_worker_hosts_server(bed: Bed, width: int, depth: int, host: str = "h2") -> dict[str, Any]:
    """`host`'s server SIGKILLed at 20 %: its workers fail over to the others; then restored."""
    bed.reset_ledger()
    engine_first = next(h for h in WORKER_HOSTS if h != host)
    proc = bed.engine("wide", ",".join(bed.cluster.urls_from(engine_first)), str(width),
                      str(depth))  # fmt: skip
    offset = wait_mark(proc, "MARK 20", 120)
    bed.cluster.servers[host].kill()
    killed_at = time.monotonic() - offset
    at_kill = bed.executions()[host]
    result = finish(proc, 300)
    figures = tally(
        bed, result, host_executions_at_kill=at_kill,
        host_executions_after=bed.executions()[host] - at_kill,
        host_resumed_after=resumed_after(bed, result, killed_at, host),
    )  # fmt: skip
    restored(bed, host)
    return figures


def lose_engines_server(
    bed: Bed, width: int, depth: int, host: str = "h3", how: str = "kill"
) -> dict[str, Any]:
    """The server the engine is connected to (`host`, first in its list) lost at 20 %:
    SIGKILLed (`how="kill"`: its connections close at once), or its host's link cut for the
    rest of the run (`how="cut"`: its connections go silent, given up after unanswered
    pings; the host's workers are lost with it)."""
    bed.reset_ledger()
    proc = bed.engine("wide", ",".join(bed.cluster.urls_from(host)), str(width), str(depth))
    offset = wait_mark(proc, "MARK 20", 120)
    if how == "kill":
        bed.cluster.servers[host].kill()
    else:
        bed.net.cut(host)
    lost_at = time.monotonic() - offset
    try:
        result = finish(proc, 300)
    finally:
        if how == "cut":
            bed.net.heal(host)
    figures = tally(bed, result, resumed_after=resumed_after(bed, result, lost_at))
    if how == "kill":
        restored(bed, host)
    else:
        bed.cluster.wait_ready(ENGINE)
    return figures


def lose_large_values_server(bed: Bed, seed: int = 7) -> dict[str, Any]:
    """A 300 KiB value written by a worker on h1 (pool writers) and read by one on h3 (pool
    readers) after the object store stream's leader server is SIGKILLed in between."""
    writers = bed.worker("h1", 1, "writers")
    readers = bed.worker("h3", 1, "readers")
    bed.reset_ledger()
    try:
        proc = bed.engine("blob", ",".join(bed.cluster.urls_from("h2")), str(seed))
        wait_mark(proc, "BLOB", 60)
        leader = stream_leader(bed, OBJECT_STREAM)
        bed.cluster.servers[leader].kill()
        killed = time.monotonic()
        bed.gate.touch()
        result = finish(proc, 120)
        read_after = time.monotonic() - killed
        figures = tally(
            bed, result, leader_killed=leader, read_after=round(read_after, 2),
            intact=(result["digest"] or {}).get("sha256")
            == hashlib.sha256(blob_bytes(seed)).hexdigest(),
            replicas=stream_replicas(bed, OBJECT_STREAM),
        )  # fmt: skip
        restored(bed, leader)
        return figures
    finally:
        bed.gate.unlink(missing_ok=True)
        for pool in (writers, readers):
            pool.terminate()
            pool.wait(15)


OBJECT_STREAM = "OBJ_dataflow-values"


def lose_engine_host(bed: Bed) -> dict[str, Any]:
    """`taskiq-dataflow run --store` on e1; 2 s in, e1's link goes down and its engine is
    killed (the host died); `runs restart` on e2, on the same store, completes the run."""
    urls = ",".join(bed.cluster.urls)
    argv = [CLI, "run", "multihost_run:slow_wide", "--server", urls, "--store", str(bed.store),
            "--progress", "none", "--json"]  # fmt: skip
    first = subprocess.Popen(
        bed.net[ENGINE].command(argv), env=bed.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=bed.tmp,
    )  # fmt: skip
    assert first.stderr is not None
    line = first.stderr.readline()
    assert " run " in line, line
    run_id = line.split(" run ", 1)[1].split()[0]
    bed.reset_ledger()
    time.sleep(2.0)
    bed.net.cut(ENGINE)
    first.kill()
    first.wait(10)
    lost_at = time.monotonic()
    time.sleep(0.3)  # what the workers held ends (its results go nowhere)
    before = sum(bed.executions().values())
    # another host cannot see the engine's pid: the run is interrupted once its heartbeats in
    # the store are 5 beats (10 s) late, and until then `runs restart` refuses it
    early = runs(bed, "restart", run_id, "--server", urls)
    deadline = lost_at + 30
    while json.loads(runs(bed, "show", run_id, "--json").stdout)["status"] != "interrupted":
        assert time.monotonic() < deadline, "the run never showed as interrupted"
        time.sleep(0.5)
    interrupted_after = time.monotonic() - lost_at
    second = runs(bed, "restart", run_id, "--server", urls, "--progress", "none", "--json")
    recovered = time.monotonic() - lost_at
    bed.net.heal(ENGINE)
    row = json.loads(runs(bed, "show", run_id, "--json").stdout)
    after = settled(bed)
    return {
        "run_id": run_id, "early": early, "second": second, "row": row,
        "tasks": row["tasks"]["total"], "lost": row["tasks"]["total"] - row["tasks"]["done"],
        "executions_before_loss": before, "executions": after,
        "re_executed": after - row["tasks"]["total"],
        "interrupted_after": round(interrupted_after, 2), "recovered": round(recovered, 2),
    }  # fmt: skip
