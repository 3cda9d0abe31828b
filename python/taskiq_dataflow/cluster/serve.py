"""Worker processes: `taskiq-dataflow worker module:broker --workers N --pool P --concurrency K`.

The parent first reaches the server once (so a wrong URL or login is one line, not a traceback
per child), then supervises N children and restarts one that crashes; each child imports the
module (so its @broker.task tasks are registered by name) and runs a Worker. A child that cannot
connect is not restarted, and a crash loop ends the supervisor: both exit non-zero.

With `--metrics [HOST:]PORT` (or `--metrics-push URL`) the parent serves one Prometheus endpoint
for all its children, restarted ones included (metrics/worker.py).

Logging (task_logs.configure): records at --log-level and above on stderr, as text or JSON lines
labelled with the run and task that logged them; records are made down to INFO either way, so
that an engine capturing a task's records (a run store) gets its log.info.
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
from typing import TYPE_CHECKING, Any

from ..errors import ClusterError
from ..task_logs import configure as configure_logging
from .broker import DataflowNatsBroker

if TYPE_CHECKING:
    from ..metrics.worker import PoolMetrics

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


# A child that cannot connect or log in exits with this code: restarting it cannot help, so
# the supervisor stops instead of printing the same error on every restart.
EXIT_CANNOT_CONNECT = 3
# the supervisor gave up on children that crash again and again
EXIT_CRASH_LOOP = 1
DEFAULT_RESTARTS_PER_WORKER = 10  # within 60 s, before the supervisor gives up
PROG = "taskiq-dataflow worker"


def _say(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def run_child(
    target: str,
    pool: str | None,
    concurrency: int,
    metered: bool = False,
    servers: list[str] | None = None,
) -> int:
    """One worker process, until SIGTERM/SIGINT; EXIT_CANNOT_CONNECT with one line when the
    server cannot be reached or refuses the login. `metered`: its metrics go to the directory
    its parent named in its environment; `servers` replace the broker's own."""
    from .worker import Worker

    broker = load_broker(target)
    if servers:
        broker.use_servers(servers)
    metrics = None
    if metered:
        from ..metrics.worker import WorkerMetrics

        metrics = WorkerMetrics()
    worker = Worker(broker, pool=pool, concurrency=concurrency, metrics=metrics)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    try:
        asyncio.run(main())
    except ClusterError as exc:
        _say(f"error: worker pid {os.getpid()}: {exc}")
        return EXIT_CANNOT_CONNECT
    return 0


def check_connection(broker: DataflowNatsBroker) -> None:
    """Connect once and close: raises ClusterError (one line) before any child is started."""

    async def probe() -> None:
        nc = await broker.connect_checked("dataflow-supervisor", broker.progress_timeout)
        await nc.close()

    asyncio.run(probe())


def supervise(
    target: str,
    workers: int,
    pool: str | None,
    concurrency: int,
    max_restarts: int | None = None,
    metrics: PoolMetrics | None = None,
    log_level: str = "WARNING",
    log_format: str = "text",
    servers: list[str] | None = None,
) -> int:
    """Start `workers` children; restart any that crashes until we are told to stop.

    Returns 0 when stopped by SIGTERM/SIGINT, EXIT_CANNOT_CONNECT when a child could not reach
    the server (not restarted), EXIT_CRASH_LOOP after more than `max_restarts` restarts
    within 60 s (default: 10 per worker). With `metrics`, the children write theirs to its
    directory."""
    limit = max_restarts if max_restarts is not None else DEFAULT_RESTARTS_PER_WORKER * workers
    cmd = [sys.executable, "-m", "taskiq_dataflow.cluster.serve", "--child", target,
           "--concurrency", str(concurrency), "--log-level", log_level,
           "--log-format", log_format]  # fmt: skip
    if pool:
        cmd += ["--pool", pool]
    if servers:
        cmd += ["--server", ",".join(servers)]
    env = None
    if metrics is not None:
        cmd.append("--metered")
        env = metrics.child_env()
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [subprocess.Popen(cmd, env=env) for _ in range(workers)]
    if metrics is not None:
        metrics.processes = workers
    log.warning(
        "started %d worker process(es) for %s: pids %s",
        workers,
        target,
        ", ".join(str(c.pid) for c in children),
    )
    code = 0
    restarts: list[float] = []
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(children):
            status = child.poll()
            if status is None or stopping:
                continue
            if metrics is not None:
                metrics.exited(child.pid)
                metrics.processes -= 1
            if status == EXIT_CANNOT_CONNECT:
                _say(f"error: worker pid {child.pid} cannot connect to NATS (above); stopping")
                code = EXIT_CANNOT_CONNECT
                stopping = True
                break
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > limit:
                _say(
                    f"error: workers crash in a loop ({len(restarts)} restarts in 60 s, the last "
                    f"pid {child.pid} exited with {status}); giving up"
                )
                code = EXIT_CRASH_LOOP
                stopping = True
                break
            children[i] = subprocess.Popen(cmd, env=env)
            if metrics is not None:
                metrics.processes += 1
                metrics.restarts += 1
            log.warning(
                "worker pid %d exited with %s; restarted it as pid %d",
                child.pid,
                status,
                children[i].pid,
            )
    _stop_children(children)
    if metrics is not None:
        metrics.processes = 0
    return code


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


LOG_FORMATS = ("text", "json")
WORKER_TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"  # as before --log-format


def serve(
    target: str,
    workers: int,
    pool: str | None,
    concurrency: int,
    max_restarts: int | None = None,
    metrics: str | None = None,
    metrics_push: str | None = None,
    log_level: str = "WARNING",
    log_format: str = "text",
    servers: list[str] | None = None,
) -> int:
    """The supervisor's whole life: load the broker and reach the server once (each failure
    one line), then supervise. `metrics` ([HOST:]PORT) serves the pool's metrics there,
    `metrics_push` (a Pushgateway URL) pushes them every 15 s; `servers` (--server) replace
    the broker's own."""
    configure_logging(log_level, log_format, text_format=WORKER_TEXT_FORMAT)
    try:
        broker = load_broker(target)
        if servers:
            broker.use_servers(servers)
    except (ImportError, ValueError, ClusterError) as exc:
        _say(f"error: cannot load broker {target!r}: {exc}")
        return 2
    try:
        check_connection(broker)
    except ClusterError as exc:
        _say(f"error: {exc}")
        return EXIT_CANNOT_CONNECT
    if metrics is None and metrics_push is None:
        return supervise(
            target, workers, pool, concurrency, max_restarts, None, log_level, log_format, servers
        )
    from ..metrics.serving import parse_address
    from ..metrics.worker import PoolMetrics

    try:
        address = None if metrics is None else parse_address(metrics)
        pool_metrics = PoolMetrics(address, metrics_push)
    except (ValueError, OSError) as exc:
        _say(f"error: {exc}")
        return 2
    try:
        if pool_metrics.server is not None:
            _say(f"worker metrics on {pool_metrics.server.url}")
        return supervise(
            target, workers, pool, concurrency, max_restarts, pool_metrics, log_level,
            log_format, servers,
        )  # fmt: skip
    finally:
        pool_metrics.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG)
    parser.add_argument("target", help="module:broker (a DataflowNatsBroker)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pool", default=None)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-restarts", type=int, default=None)
    parser.add_argument("--metrics", default=None, metavar="[HOST:]PORT")
    parser.add_argument("--metrics-push", default=None, metavar="URL")
    parser.add_argument("--log-level", type=log_level_name, default="WARNING")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text")
    parser.add_argument("--server", action="append", default=[], metavar="URL[,URL]")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--metered", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())
    if args.child:
        configure_logging(args.log_level, args.log_format, text_format=WORKER_TEXT_FORMAT)
        return run_child(args.target, args.pool, args.concurrency, args.metered, args.server)
    return serve(
        args.target, args.workers, args.pool, args.concurrency, args.max_restarts,
        args.metrics, args.metrics_push, args.log_level, args.log_format, args.server,
    )  # fmt: skip


def log_level_name(text: str) -> str:
    """An argparse type: a logging level's name, upper-cased (DEBUG, INFO, WARNING...)."""
    name = text.upper()
    if name not in logging.getLevelNamesMapping() or name == "NOTSET":
        known = ", ".join(n for n in logging.getLevelNamesMapping() if n != "NOTSET")
        raise argparse.ArgumentTypeError(f"{text!r} is not a logging level: use one of {known}")
    return name


if __name__ == "__main__":
    sys.exit(main())
