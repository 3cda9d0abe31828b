"""Several hosts on one machine: network namespaces joined by veth links to a bridge.

Each host is a namespace with one interface (`eth0`, 10.77.0.N/24) whose other end is a port of
a bridge living in a namespace of its own (the switch), so no address of the test bed exists in
the root namespace: traffic between hosts stays inside the bed. `cut(host)` takes a host's
switch port down (its cable pulled), `heal(host)` puts it back. `close()` deletes the
namespaces, which removes every link with them.

A nats-server per host joined in a cluster (routes, JetStream), started with the project's
own `taskiq-dataflow server --cluster --routes` in that host's namespace, is `NetBed.cluster()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUBNET = "10.77.0"
CLIENT_PORT = 4222
ROUTE_PORT = 6222


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (not root, no iproute2), else None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    name = f"tdfprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Host:
    name: str  # the host's name in the bed (h1, h2, ...)
    netns: str  # its namespace
    address: str  # its eth0 address
    port: str  # its switch port, in the switch namespace

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run on this host: in its network namespace, and in a UTS namespace of its own
        whose hostname is the host's name (what worker ids and the run store's owner record
        show). Each step execs the next, so the process started is `argv`'s own."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', self.name, *argv]  # fmt: skip

    @property
    def nats_url(self) -> str:
        return f"nats://{self.address}:{CLIENT_PORT}"


class NetBed:
    def __init__(self, names: Sequence[str]) -> None:
        self.tag = secrets.token_hex(2)
        self.switch = f"tdf{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []
        try:
            self._make(names)
        except BaseException:
            self.close()
            raise

    def _make(self, names: Sequence[str]) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, name in enumerate(names, start=1):
            netns = f"tdf{self.tag}-{name}"
            _ip("netns", "add", netns)
            self._made.append(netns)
            port = f"p{i}"
            _ip("link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", port,
                "netns", self.switch)  # fmt: skip
            address = f"{SUBNET}.{i}"
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "link", "set", "eth0", "up")
            _ip("-n", self.switch, "link", "set", port, "master", "br0")
            _ip("-n", self.switch, "link", "set", port, "up")
            self.hosts[name] = Host(name, netns, address, port)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def cut(self, name: str) -> None:
        """Pull the host's cable: nothing reaches it or leaves it until heal()."""
        _ip("-n", self.switch, "link", "set", self.hosts[name].port, "down")

    def heal(self, name: str) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[name].port, "up")

    def close(self) -> None:
        for netns in reversed(self._made):
            # a namespace goes away once its last process has: kill what still runs in it
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        self._made.clear()

    def __enter__(self) -> NetBed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ClusterServer:
    """One `taskiq-dataflow server` of the cluster, on its host."""

    host: Host
    store_dir: str
    routes: list[str]
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "taskiq_dataflow", "server",
            "--host", self.host.address, "--port", str(CLIENT_PORT),
            "--cluster", str(ROUTE_PORT), "--routes", ",".join(self.routes),
            "--name", self.host.name, "--store-dir", self.store_dir,
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.host.command(argv), stdout=out, stderr=subprocess.STDOUT, env=self.env
            )

    def nats_pid(self) -> int | None:
        """The nats-server process itself (the command's child)."""
        if self.process is None:
            return None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                return int(pid)
        return None

    def kill(self) -> None:
        """SIGKILL the nats-server (a crash: no goodbye to clients or routes), then its command."""
        pid = self.nats_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


class Cluster:
    """nats-servers on `hosts` of `bed`, each routed to the others, JetStream on."""

    def __init__(self, bed: NetBed, hosts: Sequence[str], env: dict[str, str]) -> None:
        self.bed, self.env = bed, env
        self._tmp = tempfile.TemporaryDirectory(prefix="dataflow-netbed-")
        root = Path(self._tmp.name)
        self.servers: dict[str, ClusterServer] = {}
        for name in hosts:
            host = bed[name]
            routes = [
                f"nats://{bed[other].address}:{ROUTE_PORT}" for other in hosts if other != name
            ]
            store = root / f"js-{name}"
            store.mkdir()
            log = root / f"{name}.log"
            self.servers[name] = ClusterServer(host, str(store), routes, log, env)

    @property
    def urls(self) -> list[str]:
        return [s.host.nats_url for s in self.servers.values()]

    def urls_from(self, name: str) -> list[str]:
        """The cluster's URLs with host `name`'s own server first (how its workers list them)."""
        own = self.servers[name].host.nats_url
        return [own, *(u for u in self.urls if u != own)]

    def start(self, probe_host: str, timeout: float = 60.0) -> None:
        for server in self.servers.values():
            server.start()
        self.wait_ready(probe_host, timeout)

    def wait_ready(self, probe_host: str, timeout: float = 60.0) -> None:
        """Until every server has its routes and JetStream takes an R3 stream, asked from
        `probe_host`."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, server in self.servers.items():
                if server.process is not None and server.process.poll() is not None:
                    raise RuntimeError(f"server on {name} exited: {self.log(name)[-2000:]}")
            probe = subprocess.run(
                self.bed[probe_host].command(
                    [sys.executable, "-c", PROBE, json.dumps(self.urls), str(len(self.servers))]
                ),
                capture_output=True,
                text=True,
                env=self.env,
                timeout=30,
            )
            if probe.returncode == 0:
                return
            last = (probe.stdout + probe.stderr).strip()[-1000:]
            time.sleep(0.5)
        logs = "\n".join(f"--- {n}\n{self.log(n)[-1500:]}" for n in self.servers)
        raise TimeoutError(f"the NATS cluster was not ready in {timeout} s: {last}\n{logs}")

    def log(self, name: str) -> str:
        path = self.servers[name].log
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        self._tmp.cleanup()


# Run on a host of the bed: exits 0 once each server answers, sees the others and JetStream
# places a stream of `replicas` replicas.
PROBE = """
import asyncio, json, sys
import nats

async def main():
    urls, size = json.loads(sys.argv[1]), int(sys.argv[2])
    for url in urls:
        nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
        seen = set(nc._server_info.get("connect_urls") or ())
        if len(seen) < size:
            raise SystemExit(f"{url} sees {sorted(seen)}")
        await nc.close()
    nc = await nats.connect(urls, connect_timeout=1, allow_reconnect=False)
    js = nc.jetstream(timeout=2)
    name = "probe"
    try:
        await js.add_stream(name=name, subjects=["probe.x"], num_replicas=min(3, size))
        await js.delete_stream(name)
    finally:
        await nc.close()

asyncio.run(main())
"""


def run_json(cmd: list[str], env: dict[str, str], timeout: float) -> Any:
    """Run `cmd`, return the JSON its last stdout line holds (its stderr shown on failure)."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(
            f"{cmd[-3:]} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])
