"""Shared helpers of the end-to-end layer: real processes only, each in its own process group,
each tagged so that a teardown can prove that nothing a test started outlives it.

Every process a test starts gets `DATAFLOW_E2E_TAG=<tag>` in its environment. Children inherit
it (nats-server started by `taskiq-dataflow server`, worker children started by the supervisor),
even the ones that move to a session of their own, so `/proc/*/environ` finds all of them, and
nothing that other helpers' tests run at the same time on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import taskiq_dataflow
from cluster_support import children_of, group_members
from taskiq_dataflow.cluster.server import free_port

E2E = Path(__file__).resolve().parent
TESTS = E2E.parent
ROOT = TESTS.parent
BIN = Path(sys.executable).parent
CLI = str(BIN / "taskiq-dataflow")
TAG_ENV = "DATAFLOW_E2E_TAG"
URL_ENV = "DATAFLOW_NATS_URL"
PACKAGE_ROOT = Path(taskiq_dataflow.__file__).resolve().parent.parent


# -- processes --------------------------------------------------------------------------------


def tagged(tag: str) -> dict[int, str]:
    """Live processes whose environment carries `tag`: pid -> command line."""
    needle = f"{TAG_ENV}={tag}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if _state(entry) == "Z":
                continue
            found[int(entry.name)] = _cmdline(entry)
    return found


def _state(entry: Path) -> str:
    # pid (comm) state ...: comm may hold spaces and parentheses, so split after the last ')'
    return (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]


def _cmdline(entry: Path) -> str:
    return (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return _cmdline(Path(f"/proc/{pid}"))
    return ""


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc children lists)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Processes:
    """Starts processes in their own process group, tagged; `close()` ends them all.

    `close()` sends SIGTERM to every group, waits, then SIGKILLs what is left, and finally
    kills any tagged process that escaped its group (a daemonised child): its return value
    lists the processes that survived the groups' end, which a teardown reports as a leak.
    """

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex
        self.started: list[subprocess.Popen[bytes]] = []
        self.home = Path(tempfile.mkdtemp(prefix="dataflow-e2e-"))
        self.logs: dict[int, Path] = {}  # pid -> where its output goes

    def env(self, extra: dict[str, str] | None = None, pythonpath: Sequence[Path] = ()) -> dict:
        """The environment of a user's shell: .venv/bin first on PATH, no DATAFLOW_NATS_URL
        unless given, a fresh HOME and TMPDIR, and the tag."""
        home = Path(tempfile.mkdtemp(prefix="home-", dir=self.home))
        (home / "tmp").mkdir()
        env = {k: v for k, v in os.environ.items() if k not in (URL_ENV, "PYTHONPATH")}
        # the toolchains installed under the real HOME stay the user's (rustup, cargo, pyenv
        # find them through HOME unless told): a fresh HOME is fresh user state, not a new box
        real_home = Path.home()
        for var, folder in (("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo"),
                            ("PYENV_ROOT", ".pyenv")):  # fmt: skip
            if var not in env and (real_home / folder).is_dir():
                env[var] = str(real_home / folder)
        env.update(
            PATH=os.pathsep.join([str(BIN), env.get("PATH", "/usr/bin:/bin")]),
            HOME=str(home),
            TMPDIR=str(home / "tmp"),
            PYTHONUNBUFFERED="1",
            **{TAG_ENV: self.tag},
        )
        # the package under test comes first, as in this process (a worktree's checkout, not
        # the one the venv's .pth names)
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (*pythonpath, PACKAGE_ROOT))
        env.update(extra or {})
        return env

    def spawn(
        self,
        cmd: list[str],
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        log: Path | None = None,
        stdin: Any = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start `cmd` as the leader of a new session (so of its own process group). Its
        stdout and stderr go to `log`, by default a new file (`output(proc)` reads it): a pipe
        nobody reads would block a chatty process."""
        if log is None:
            log = Path(tempfile.mkstemp(prefix="proc-", suffix=".log", dir=self.home)[1])
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=env if env is not None else self.env(), stdin=stdin,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.started.append(proc)
        self.logs[proc.pid] = log
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        """What a process started by `spawn` has written so far (stdout and stderr)."""
        return self.logs[proc.pid].read_text(errors="replace")

    def end_group(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        """SIGTERM the process's group, wait up to `grace` s, then SIGKILL it."""
        _kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.05)
        _kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def close(self, grace: float = 5.0) -> dict[int, str]:
        """End every group; kill and return the tagged processes still alive `grace` s later
        (they escaped their group, or ignore SIGTERM and SIGKILL came too late)."""
        for proc in reversed(self.started):
            self.end_group(proc)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not tagged(self.tag), grace, "tagged processes to exit")
        survivors = tagged(self.tag)
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)
        return survivors


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


# -- ports and servers ------------------------------------------------------------------------


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
        return True
    return False


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]


def start_server(procs: Processes, timeout: float = 10.0, extra: list[str] = ()) -> Server:
    """A real nats-server with JetStream on a free loopback port, in its own group."""
    from taskiq_dataflow.cluster.server import nats_server_binary

    port = free_port()
    store = tempfile.mkdtemp(prefix="nats-", dir=procs.home)
    cmd = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store, *extra]
    proc = procs.spawn(cmd, log=procs.home / f"nats-{port}.log")
    wait_until(lambda: listening(port) or proc.poll() is not None, timeout, "nats-server")
    if proc.poll() is not None:
        raise RuntimeError(f"nats-server exited with {proc.returncode}")
    return Server(f"nats://127.0.0.1:{port}", port, proc)


# -- workers ----------------------------------------------------------------------------------


class Workers:
    """`taskiq-dataflow worker TARGET --workers N [--pool P]`, the real command, in its own
    group; `ready()` returns once every child heart-beats on the server."""

    def __init__(
        self,
        procs: Processes,
        url: str,
        target: str = "e2e_tasks:broker",
        workers: int = 2,
        pool: str | None = None,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.procs, self.url, self.target = procs, url, target
        self.count, self.pool = workers, pool
        self.log_path = procs.home / f"workers-{uuid.uuid4().hex[:6]}.log"
        cmd = [CLI, "worker", target, "--workers", str(workers), *args]
        if pool:
            cmd += ["--pool", pool]
        self.process = procs.spawn(
            cmd,
            env=procs.env({URL_ENV: url, **(env or {})}, pythonpath=[E2E, TESTS]),
            log=self.log_path,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> set[int]:
        return descendants(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def ready(self, timeout: float = 30.0) -> Workers:
        asyncio.run(self._wait_beats(timeout))
        return self

    async def _wait_beats(self, timeout: float) -> None:
        import nats
        from taskiq_dataflow.cluster.protocol import DEFAULT_CODEC

        nc = await nats.connect(self.url)
        beating: set[int] = set()
        done = asyncio.Event()
        pool = self.pool or "default"

        async def on_beat(msg: Any) -> None:
            with contextlib.suppress(Exception):
                frame = DEFAULT_CODEC.read_frame(msg.data)
                pid = int(str(frame["w"]).rsplit("-", 2)[1])
                if frame.get("pool") == pool and pid in self.children():
                    beating.add(pid)
                    if len(beating) >= self.count:
                        done.set()

        try:
            await nc.subscribe("dataflow.heartbeat", cb=on_beat)
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"{self.count} worker(s) of pool {pool!r} did not heart-beat within "
                    f"{timeout:g} s (exit code {self.process.poll()}); log:\n{self.log()}"
                ) from None
        finally:
            await nc.close()

    def beating_pids(self) -> set[int]:
        """The worker children alive now (those that serve the pool)."""
        return {pid for pid in self.children() if "--child" in cmdline(pid)}


# -- commands ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"exit {self.code} after {self.seconds:.1f} s\n--- stdout\n{self.stdout[-3000:]}"
            f"\n--- stderr\n{self.stderr[-3000:]}"
        )


def run(
    procs: Processes,
    cmd: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> Outcome:
    """Run a command in its own group until it exits (at most `timeout` s, else its group is
    killed and the test fails), then end the group: what it left running in the background
    goes too. Output goes to files, since a background child would hold a pipe open."""
    logs = Path(tempfile.mkdtemp(prefix="out-", dir=procs.home))
    start = time.monotonic()
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env if env is not None else procs.env(),
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )  # fmt: skip
    procs.started.append(proc)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        procs.end_group(proc, grace=2)
        raise AssertionError(
            f"{cmd} did not finish within {timeout:g} s\n"
            + _outcome(proc, logs, time.monotonic() - start).describe()
        ) from None
    # judged as it was when the command exited: what the background left over prints while
    # it is stopped is not the command's output
    outcome = _outcome(proc, logs, time.monotonic() - start)
    procs.end_group(proc)
    return outcome


def _outcome(proc: subprocess.Popen[bytes], logs: Path, seconds: float) -> Outcome:
    code = proc.returncode if proc.returncode is not None else -1
    stdout, stderr = ((logs / name).read_text(errors="replace") for name in ("stdout", "stderr"))
    return Outcome(code, stdout, stderr, seconds)


# -- a bystander ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bystander(url: str) -> Iterator[Any]:
    """A plain nats-py client that is no part of the project: it publishes what it likes."""
    import nats

    nc = await nats.connect(url, allow_reconnect=False)
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
