"""Helpers for the cluster tests: worker supervisors in their own process group, readiness by
heartbeat, the process tree from /proc, a plain nats-py client for hand-made frames."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cluster_tasks
import nats
from taskiq_dataflow import DataflowRegistry
from taskiq_dataflow.cluster.protocol import HEARTBEAT, Codec

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CODEC = Codec()


def children_of(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc; psutil is not a dependency)."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the ')'
            state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                members.append(int(entry.name))
    return members


def worker_pid(worker_id: str) -> int:
    """The pid inside a worker id `<host>-<pid>-<hex>`."""
    return int(worker_id.rsplit("-", 2)[1])


def index_dag(n: int, delay: float) -> tuple[Any, dict[str, Any]]:
    """n independent tasks; task i returns i (its own input 'i<i>') after sleeping `delay`."""
    registry = DataflowRegistry()
    inputs: dict[str, Any] = {f"i{i}": i for i in range(n)}
    for key in (*inputs, "delay"):
        registry.register_external_input(key)
    for i in range(n):
        registry.register_task(cluster_tasks.index, output=f"k{i}", inputs=[f"i{i}", "delay"])
    return registry.build_dag(), {**inputs, "delay": delay}


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class WorkerProcesses:
    """`python -m taskiq_dataflow.cluster.serve cluster_tasks:broker ...` in its own session.

    `start()` returns once every child heart-beats on the server (so it has subscribed to its
    pool); `stop()` ends the whole process group and checks nothing is left.
    """

    def __init__(
        self,
        url: str,
        workers: int = 1,
        pool: str | None = None,
        concurrency: int | None = None,
        env: dict[str, str] | None = None,
        connect: dict[str, Any] | None = None,
        target: str = "cluster_tasks:broker",
    ) -> None:
        self.url, self.workers, self.pool = url, workers, pool
        self.target = target
        self.concurrency = concurrency
        self.extra_env = env or {}
        self.connect_kwargs = connect or {}
        self.process: subprocess.Popen[bytes] | None = None
        fd, self._log_path = tempfile.mkstemp(prefix="dataflow-workers-", suffix=".log")
        os.close(fd)

    def start(self, timeout: float = 30.0) -> WorkerProcesses:
        return self.launch().ready(timeout)

    def launch(self) -> WorkerProcesses:
        """Start the supervisor without waiting (several can then import in parallel)."""
        cmd = [sys.executable, "-m", "taskiq_dataflow.cluster.serve", self.target,
               "--workers", str(self.workers)]  # fmt: skip
        if self.pool:
            cmd += ["--pool", self.pool]
        if self.concurrency:
            cmd += ["--concurrency", str(self.concurrency)]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
            cluster_tasks.URL_ENV: self.url,
            cluster_tasks.POOL_ENV: self.pool or "default",
            **self.extra_env,
        }
        with open(self._log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def ready(self, timeout: float = 30.0) -> WorkerProcesses:
        """Wait for every child to heart-beat; on failure stop the group and raise."""
        try:
            self.wait_ready(self.workers, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[int]:
        return children_of(self.pid)

    def log(self) -> str:
        return Path(self._log_path).read_text(errors="replace")[-4000:]

    def wait_ready(self, count: int, timeout: float = 30.0) -> set[int]:
        """Wait until `count` children of the supervisor heart-beat; returns their pids."""
        return asyncio.run(self._wait_ready(count, timeout))

    async def _wait_ready(self, count: int, timeout: float) -> set[int]:
        nc = await nats.connect(self.url, **self.connect_kwargs)
        ready: set[int] = set()
        done = asyncio.Event()
        pool = self.pool or "default"

        async def on_beat(msg: Any) -> None:
            frame = CODEC.read_frame(msg.data)
            if frame["t"] == HEARTBEAT and frame["pool"] == pool:
                pid = worker_pid(frame["w"])
                if pid in self.children():
                    ready.add(pid)
                    if len(ready) >= count:
                        done.set()

        try:
            await nc.subscribe(cluster_tasks.broker.heartbeat_subject, cb=on_beat)
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except TimeoutError:
                code = self.process.poll() if self.process else None
                raise TimeoutError(
                    f"{count} worker(s) of pool {pool!r} did not heart-beat within {timeout} s "
                    f"(supervisor exit code {code}); log:\n{self.log()}"
                ) from None
        finally:
            await nc.close()
        return ready

    def stop(self) -> None:
        """SIGTERM the group (graceful), then SIGKILL what is left; nothing may survive."""
        if self.process is None:
            return
        pgid = self.process.pid  # a session leader: its pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not group_members(pgid), 5, "workers to exit")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(5)
        self.process = None
        wait_until(lambda: not group_members(pgid), 5, f"process group {pgid} to be gone")
        Path(self._log_path).unlink(missing_ok=True)

    def __enter__(self) -> WorkerProcesses:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def two_services(url: str, pool: str | None = None) -> Iterator[tuple[WorkerProcesses, ...]]:
    """A worker of each of remote_services' two services (different tasks, the same pool)."""
    with contextlib.ExitStack() as stack:  # whatever was launched is stopped, in any case
        both = []
        for target in ("remote_services:service_a", "remote_services:service_b"):
            workers = WorkerProcesses(url, workers=1, pool=pool, target=target).launch()
            stack.callback(workers.stop)
            both.append(workers)
        for workers in both:
            workers.ready()
        yield both[0], both[1]
