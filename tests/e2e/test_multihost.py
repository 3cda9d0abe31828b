"""The cluster past one machine: hosts as network namespaces (tests/e2e/netbed.py), three
nats-servers joined by routes (JetStream, the object store R3), `taskiq-dataflow worker`s on each
host connected to their own host's server first, the engine on a host of its own.

The drills lose a host's link, a worker host's server, the engine's server, the server holding
a large value, and the engine's host itself; each asserts nothing is lost or accepted twice,
counts re-executions from the workers' ledgers, and bounds the time. The figures of the same
drills at full size are in RELIABILITY.md (benches/bench_multihost.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import netbed
from .support import CLI, E2E, PACKAGE_ROOT

pytestmark = pytest.mark.e2e

REASON = netbed.unavailable()
if REASON is not None and os.environ.get("CI") != "true":
    pytest.skip(f"multi-host test bed unavailable: {REASON}", allow_module_level=True)
# in CI a missing test bed is a failure, not a skip (the fixture raises why)

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
            netbed_ledger(): str(self.ledger),
            "DRILL_GATE": str(self.gate),
        }
        self.net = netbed.NetBed([*WORKER_HOSTS, ENGINE, SPARE])
        self.cluster = netbed.Cluster(self.net, WORKER_HOSTS, self.env)
        self.pools: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.cluster.start(ENGINE)
        for host in WORKER_HOSTS:
            self.worker(host, WORKERS_PER_HOST)

    def worker(self, host: str, count: int, pool: str | None = None) -> subprocess.Popen[bytes]:
        urls = ",".join(self.cluster.urls_from(host))
        argv = [CLI, "worker", "multihost_tasks:broker", "--server", urls, "--workers",
                str(count), "--concurrency", "64"]  # fmt: skip
        if pool:
            argv += ["--pool", pool]
        log = (self.tmp / f"worker-{host}-{pool or 'default'}.log").open("ab")
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
        for proc in self.pools:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.pools:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        self.cluster.close()
        self.net.close()


def runs(bed: Bed, *argv: str) -> subprocess.CompletedProcess[str]:
    """`taskiq-dataflow runs ...` on the spare engine host, on the shared run store."""
    return subprocess.run(
        bed.net[SPARE].command([CLI, "runs", *argv, "--store", str(bed.store)]),
        env=bed.env, capture_output=True, text=True, cwd=bed.tmp, timeout=120,
    )  # fmt: skip


def netbed_ledger() -> str:
    from .multihost_tasks import LEDGER_ENV

    return LEDGER_ENV


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if REASON is not None:
        pytest.fail(f"CI must run the multi-host drills, but: {REASON}")
    made = Bed(tmp_path_factory.mktemp("multihost"))
    try:
        made.start()
        wait_for_workers(made)
        yield made
    finally:
        made.close()


def wait_for_workers(bed: Bed, timeout: float = 60.0) -> None:
    """Until a small run has used a worker on every host (they heart-beat through the cluster)."""
    deadline = time.monotonic() + timeout
    while True:
        result = finish(bed.engine("wide", ",".join(bed.cluster.urls), "60", "10"), 60)
        assert result["error"] is None, result
        used = {bed.pid_hosts().get(pid) for pid in result["timeline"]}
        if set(WORKER_HOSTS) <= used:
            return
        assert time.monotonic() < deadline, f"workers of some hosts never ran a task: {used}"
        time.sleep(0.5)


def wait_mark(proc: subprocess.Popen[str], mark: str, timeout: float) -> float:
    """Read the engine's stdout until `mark` (e.g. "MARK 20"); returns when it came."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == mark:
            return time.monotonic()
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


def test_workers_on_every_host_run_one_dag(bed: Bed) -> None:
    bed.reset_ledger()
    result = finish(bed.engine("wide", ",".join(bed.cluster.urls), "200", "20"), 120)
    assert_whole(result)
    done = bed.executions()
    assert all(done[h] > 0 for h in WORKER_HOSTS), done
    assert sum(done.values()) == result["tasks"]  # nothing ran twice on a quiet cluster


def test_worker_host_cut_off_past_the_heartbeat_timeout_then_healed(bed: Bed) -> None:
    """100k tasks; h2's link is down for 2.5 heartbeat timeouts mid-run, then back."""
    from .multihost_tasks import HEARTBEAT_TIMEOUT

    bed.reset_ledger()
    started = time.monotonic()
    proc = bed.engine("wide", ",".join(bed.cluster.urls), "1000", "100")
    wait_mark(proc, "MARK 20", 120)
    before = bed.executions()
    bed.net.cut("h2")
    time.sleep(2.5 * HEARTBEAT_TIMEOUT)
    during = bed.executions()
    bed.net.heal("h2")
    result = finish(proc, 240)
    assert_whole(result)
    assert result["requeued"] > 0, "the cut-off host's tasks were never requeued"
    # the healthy hosts kept working while h2 was away
    assert during["h1"] > before["h1"] and during["h3"] > before["h3"], (before, during)
    executions = sum(bed.executions().values())
    assert executions >= result["tasks"]
    assert time.monotonic() - started < 300


def test_worker_hosts_server_killed_its_workers_fail_over(bed: Bed) -> None:
    bed.reset_ledger()
    proc = bed.engine("wide", ",".join(bed.cluster.urls_from("h1")), "400", "50")
    wait_mark(proc, "MARK 20", 120)
    bed.cluster.servers["h2"].kill()
    at_kill = bed.executions()["h2"]
    result = finish(proc, 180)
    assert_whole(result)
    # h2's workers reconnected to h1 or h3 and went on serving
    assert bed.executions()["h2"] > at_kill, "h2's workers never ran a task after the kill"
    restored(bed, "h2")


def test_engines_server_killed_the_engine_fails_over(bed: Bed) -> None:
    bed.reset_ledger()
    proc = bed.engine("wide", ",".join(bed.cluster.urls_from("h3")), "400", "50")
    wait_mark(proc, "MARK 20", 120)
    bed.cluster.servers["h3"].kill()
    result = finish(proc, 180)
    assert_whole(result)
    restored(bed, "h3")


def test_large_value_survives_the_loss_of_the_server_that_stored_it(bed: Bed) -> None:
    import hashlib

    from .multihost_tasks import blob_bytes

    writers = bed.worker("h1", 1, "writers")
    readers = bed.worker("h3", 1, "readers")
    try:
        proc = bed.engine("blob", ",".join(bed.cluster.urls_from("h2")), "7")
        wait_mark(proc, "BLOB", 60)
        leader = stream_leader(bed, "OBJ_dataflow-values")
        bed.cluster.servers[leader].kill()
        bed.gate.touch()
        result = finish(proc, 120)
        assert_whole(result)
        expected = hashlib.sha256(blob_bytes(7)).hexdigest()
        assert result["digest"]["sha256"] == expected
        assert result["stats"]["values_by_reference"] >= 1  # it went through the store
        replicas = stream_replicas(bed, "OBJ_dataflow-values")
        assert replicas == 3
        restored(bed, leader)
    finally:
        bed.gate.unlink(missing_ok=True)
        for proc_ in (writers, readers):
            proc_.terminate()
            proc_.wait(15)


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


def test_engine_host_lost_mid_run_another_host_restarts_the_run(bed: Bed) -> None:
    """The run store on a path both engine hosts reach (here the same file system; across
    machines a shared volume, docs/deployment.md): the engine's host is cut off and its engine
    killed mid-run; `runs restart` on another host completes the run."""
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
    assert early.returncode == 2 and "is still running" in early.stderr, early.stderr
    deadline = lost_at + 30
    while json.loads(runs(bed, "show", run_id, "--json").stdout)["status"] != "interrupted":
        assert time.monotonic() < deadline, "the run never showed as interrupted"
        time.sleep(0.5)
    second = runs(bed, "restart", run_id, "--server", urls, "--progress", "none", "--json")
    recovered = time.monotonic() - lost_at
    bed.net.heal(ENGINE)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"run {run_id} restarted" in second.stderr
    assert recovered < 60
    row = json.loads(runs(bed, "show", run_id, "--json").stdout)
    assert row["status"] == "succeeded", row
    assert row["tasks"]["done"] == row["tasks"]["total"] == 1200, row
    assert row["owner_host"] == SPARE, row
    # the restart ran what was left, not the whole run again
    after = sum(bed.executions().values())
    assert 0 < before < 1200, before
    assert after - before < 1200, (before, after)
