"""Worker processes: `taskiq-dataflow worker module:broker --workers N --pool P --concurrency K`.

The parent supervises N children and restarts one that crashes; each child imports the module
(so its @broker.task tasks are registered by name) and runs a Worker.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from .broker import DataflowNatsBroker

log = logging.getLogger("taskiq_dataflow.worker")


def load_broker(target: str) -> DataflowNatsBroker:
    """`module:attr` -> the DataflowNatsBroker it names (attr may be a zero-argument factory)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected module:broker, got {target!r}")
    module = importlib.import_module(module_name)
    try:
        obj: Any = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, DataflowNatsBroker):
        obj = obj()
    if not isinstance(obj, DataflowNatsBroker):
        raise ValueError(f"{target} is a {type(obj).__name__}, not a DataflowNatsBroker")
    return obj


def run_child(target: str, pool: str | None, concurrency: int) -> None:
    """One worker process, until SIGTERM/SIGINT."""
    from .worker import Worker

    broker = load_broker(target)
    worker = Worker(broker, pool=pool, concurrency=concurrency)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())


def supervise(target: str, workers: int, pool: str | None, concurrency: int) -> int:
    """Start `workers` children; restart any that dies until we are told to stop."""
    cmd = [sys.executable, "-m", "taskiq_dataflow.cluster.serve", "--child", target,
           "--concurrency", str(concurrency)]  # fmt: skip
    if pool:
        cmd += ["--pool", pool]
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [subprocess.Popen(cmd) for _ in range(workers)]
    log.warning("started %d worker process(es) for %s", workers, target)
    restarts: list[float] = []
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 10 * workers:
                log.error("workers crash in a loop (%d restarts in 60 s); giving up", len(restarts))
                stopping = True
                break
            log.warning("worker pid %d exited with %s; restarting it", child.pid, code)
            children[i] = subprocess.Popen(cmd)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskiq-dataflow worker")
    parser.add_argument("target", help="module:broker (a DataflowNatsBroker)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pool", default=None)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, os.getcwd())
    if args.child:
        run_child(args.target, args.pool, args.concurrency)
        return 0
    load_broker(args.target)  # fail here, once, with a clear message
    return supervise(args.target, args.workers, args.pool, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
