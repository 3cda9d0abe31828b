"""Tasks of the multi-host drills (tests/e2e/test_multihost.py, benches/bench_multihost.py),
imported by the engine script and by `taskiq-dataflow worker multihost_tasks:broker` on every
host of the test bed.

Each worker process counts what it runs in a ledger file of its own, `$DRILL_LEDGER/<host>-<pid>`,
one byte per execution written straight to the file (O_APPEND, no buffer), so the counts survive
a worker that is killed or cut off: executions beyond one per task are re-executions.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from pathlib import Path
from typing import Any

from taskiq_dataflow import pipeline_task
from taskiq_dataflow.cluster import DataflowNatsBroker

LEDGER_ENV = "DRILL_LEDGER"  # the directory of the ledgers
HOST_ENV = "DRILL_HOST"  # the bed's name of the host this worker runs on
GATE_ENV = "DRILL_GATE"  # a file `gate` waits for
HEARTBEAT_TIMEOUT = 1.5

broker = DataflowNatsBroker(
    prefix="drill",
    heartbeat_interval=0.25,
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    progress_timeout=60.0,
    max_redeliveries=20,
    # a TCP connection whose peer vanished (link down, host dead) is noticed by nats-py's
    # pings: every 1 s, 3 unanswered ones and it fails over (the default is 2 minutes)
    ping_interval=1,
    max_outstanding_pings=3,
)

_ledger: int | None = None


def _count() -> None:
    global _ledger
    if _ledger is None:
        directory = os.environ.get(LEDGER_ENV)
        if not directory:
            return
        path = Path(directory) / f"{os.environ.get(HOST_ENV, 'here')}-{os.getpid()}"
        _ledger = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_ledger, b".")


@broker.task
async def noop(*args: Any) -> None:
    _count()


@broker.task
async def slow(*args: Any) -> None:
    _count()
    await asyncio.sleep(0.1)


BLOB_SIZE = 300 * 1024  # over the 256 KiB threshold: it goes through the object store


def blob_bytes(seed: int) -> bytes:
    return random.Random(seed).randbytes(BLOB_SIZE)


@broker.task
@pipeline_task(output="blob", pool="writers")
async def make_blob(seed: int) -> bytes:
    _count()
    return blob_bytes(seed)


@broker.task
@pipeline_task(output="opened", pool="readers")
async def gate() -> bool:
    """Waits for the file $DRILL_GATE (the drill creates it once it killed a server)."""
    _count()
    path = Path(os.environ[GATE_ENV])
    while not path.exists():
        await asyncio.sleep(0.05)
    return True


@broker.task
@pipeline_task(output="digest", pool="readers")
async def read_blob(blob: bytes, opened: bool) -> dict[str, Any]:
    _count()
    return {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob), "pid": os.getpid()}
