"""`taskiq-dataflow cluster BROKER TARGET`: a nats-server on a free port, N workers for BROKER and
one run of TARGET on them, everything stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, TextIO

from ..cluster.broker import NATS_URL_ENV
from ..errors import CLIError
from .console import Console
from .output import EXIT_FAILED, EXIT_TERMINATED, PROG
from .runner import run_pipeline
from .targets import load_cluster_broker


def cluster_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """nats-server + workers + `run`, all stopped at the end (server last, so neither the run
    nor the workers see it vanish)."""
    from ..cluster.server import NatsServer

    # until the run's own handler is installed, SIGTERM must still stop the workers and the
    # server (finally clauses), not end this process at once
    signal.signal(signal.SIGTERM, _exit_terminated)
    console = Console(err)
    server = NatsServer(die_with_parent=True)
    try:
        server.start()
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        raise CLIError(f"cannot start nats-server: {exc}", EXIT_FAILED) from exc
    try:
        os.environ[NATS_URL_ENV] = server.url  # read by the broker's module when imported
        broker = load_cluster_broker(args.target)
        supervisor = _start_workers(args, console)
        try:
            return asyncio.run(_cluster_run(args, out, console, broker, supervisor))
        finally:
            _stop_workers(supervisor)
    finally:
        server.close()


class _Workers:
    """The `worker` supervisor a `cluster` command runs, its output streamed through the
    console (above the progress bar) by a reader thread."""

    def __init__(self, process: subprocess.Popen[str], reader: threading.Thread) -> None:
        self.process = process
        self.reader = reader


def _exit_terminated(*_: object) -> None:
    raise SystemExit(EXIT_TERMINATED)


def _start_workers(args: argparse.Namespace, console: Console) -> _Workers:
    from ..cluster.server import die_with_parent

    cmd = [sys.executable, "-m", "taskiq_dataflow.cluster.serve", args.target,
           "--workers", str(args.workers), "--concurrency", str(args.concurrency),
           "--log-level", args.log_level, "--log-format", args.log_format]  # fmt: skip
    if args.pool:
        cmd += ["--pool", args.pool]
    workers_metrics = worker_metrics_address(args)
    if workers_metrics is not None:
        cmd += ["--metrics", workers_metrics]
    if args.metrics_push:
        cmd += ["--metrics-push", args.metrics_push]
    # its own session: Ctrl-C reaches only this process, which cancels the run first and then
    # stops the workers, instead of every process dying at once mid-frame
    process = subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    stream = process.stdout
    assert stream is not None

    def pump() -> None:
        for line in stream:
            console.echo(line.rstrip("\n"))

    reader = threading.Thread(target=pump, name="worker-output", daemon=True)
    reader.start()
    return _Workers(process, reader)


def _stop_workers(workers: _Workers) -> None:
    process = workers.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    workers.reader.join(5)


async def _cluster_run(
    args: argparse.Namespace, out: TextIO, console: Console, broker: Any, workers: _Workers
) -> int:
    pids = await _wait_for_workers(broker, args, workers)
    console.echo(
        f"{PROG}: nats-server on {os.environ[NATS_URL_ENV]}, {len(pids)} worker(s) of pool "
        f"{args.pool or broker.pool!r} ready: pids {', '.join(map(str, sorted(pids)))}"
    )
    run_args = argparse.Namespace(**{**vars(args), "target": args.pipeline, "broker": None})
    return await run_pipeline(run_args, out, console, broker)


async def _wait_for_workers(
    broker: Any, args: argparse.Namespace, workers: _Workers, timeout: float = 60.0
) -> set[int]:
    """The pids of the pool's workers once each of them heart-beats (so it has subscribed:
    tasks sent before would wait for a redelivery); fails with one line if the supervisor
    exits first (its own error line is above) or within `timeout`."""
    from ..cluster.protocol import ProtocolError, decode_heartbeat

    pool = args.pool or broker.pool
    pids: set[int] = set()
    ready = asyncio.Event()

    async def on_beat(msg: Any) -> None:
        try:
            beat = decode_heartbeat(broker.codec, msg.data)
            pid = int(beat.worker.rsplit("-", 2)[1])  # worker ids are <host>-<pid>-<hex>
        except (ProtocolError, IndexError, ValueError):
            return  # not a heartbeat we can read: not a worker of ours
        if beat.pool == pool:
            pids.add(pid)
            if len(pids) >= args.workers:
                ready.set()

    nc = await broker.connect_checked(f"{PROG}-cluster", broker.progress_timeout)
    try:
        await nc.subscribe(broker.heartbeat_subject, cb=on_beat)
        deadline = time.monotonic() + timeout
        while not ready.is_set():
            code = workers.process.poll()
            if code is not None:
                raise CLIError(f"the workers exited with {code} before the run", EXIT_FAILED)
            if time.monotonic() > deadline:
                raise CLIError(
                    f"{args.workers} worker(s) did not start within {timeout:g} s "
                    f"({len(pids)} did)",
                    EXIT_FAILED,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 0.2)
    finally:
        await nc.close()
    return pids


def worker_metrics_address(args: argparse.Namespace) -> str | None:
    """Where the workers' endpoint goes: --worker-metrics, else with --metrics HOST:PORT the
    next port on that host (port 0: a free one), else nowhere."""
    if args.worker_metrics is not None:
        return str(args.worker_metrics)
    if args.metrics is None:
        return None
    from ..metrics.serving import parse_address

    host, port = parse_address(args.metrics)
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port + 1 if port else 0}"


def _pythonpath() -> str:
    parts = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(parts)
