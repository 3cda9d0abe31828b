"""Cluster drills through the real commands: `taskiq-dataflow worker` processes, an engine in a
script of its own (engine_run.py), and a bystander nats-py client. A worker SIGKILLed and another
SIGSTOPped mid-run; a bystander publishing forged results and an oversized frame on the run's
own subjects. Each drill asserts the outcome and a bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .support import E2E, TESTS, URL_ENV, Processes, Server, Workers, bystander, wait_until

pytestmark = pytest.mark.e2e

PREFIX = "dataflow"
BOUND = 30.0  # seconds for a whole drill's run; each takes 2-4 s
MAX_PAYLOAD = 1024 * 1024  # nats-server's default


def start_engine(procs: Processes, server: Server, n: int, delay: float) -> tuple[Any, Path]:
    log = procs.home / f"engine-{time.monotonic_ns()}.log"
    env = procs.env({URL_ENV: server.url}, pythonpath=[E2E, TESTS])
    cmd = [sys.executable, str(E2E / "engine_run.py"), "spread", str(n), str(delay)]
    return procs.spawn(cmd, env=env, log=log), log


def outcome(proc: Any, log: Path, started: float) -> tuple[dict[str, Any], float]:
    """The engine script's JSON line, once it exited (within BOUND)."""
    proc.wait(BOUND)
    seconds = time.monotonic() - started
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}:\n{log.read_text()[-3000:]}"
    return json.loads(lines[-1]), seconds


async def watch_results(url: str, frames: int) -> None:
    """Return once `frames` result frames of any run went by: the run is under way."""
    seen = asyncio.Event()
    count = 0

    async def on_result(msg: Any) -> None:
        nonlocal count
        count += 1
        if count >= frames:
            seen.set()

    async with bystander(url) as nc:
        await nc.subscribe(f"{PREFIX}.results.>", cb=on_result)
        await asyncio.wait_for(seen.wait(), BOUND)


def test_a_worker_sigkilled_and_another_sigstopped_mid_run(procs, e2e_server):
    workers = Workers(procs, e2e_server.url, workers=3).ready()
    n = 80
    started = time.monotonic()
    engine, log = start_engine(procs, e2e_server, n, 0.1)  # 4 at a time: about 2 s of work
    asyncio.run(watch_results(e2e_server.url, 5))
    killed, stopped, survivor = sorted(workers.beating_pids())
    os.kill(killed, signal.SIGKILL)
    os.kill(stopped, signal.SIGSTOP)
    try:
        result, seconds = outcome(engine, log, started)
    finally:
        os.kill(stopped, signal.SIGCONT)
    items = result["results"]
    assert sorted(v["i"] for v in items.values()) == list(range(n))  # nothing lost or failed
    assert survivor in {v["pid"] for v in items.values()}
    assert seconds < BOUND
    # the supervisor replaced the killed worker; the stopped one, resumed, serves again
    wait_until(lambda: killed not in workers.children(), 10, "the killed worker to be gone")
    workers.ready(timeout=20)
    assert stopped in workers.beating_pids()


def forged(frame: dict[str, Any], fill: int = 0) -> bytes:
    """A results frame from a made-up worker for every task of `frame`, `fill` bytes long
    at least (more forged entries)."""
    from taskiq_dataflow.cluster.protocol import DEFAULT_CODEC, RESULTS

    seqs = [seq for seq, _ in frame["tasks"]]
    results: list[Any] = [[seq, True, {"i": -1, "pid": 0, "forged": True}] for seq in seqs]
    results.append([None, False, ["ProtocolError", "forged rejection", ""]])
    if fill:
        results += [[seq, True, "x" * 1000] for seq in range(1, fill // 1010)]
    return DEFAULT_CODEC.frame(RESULTS, w="intruder-1-abcdef", claims=seqs, results=results)


def test_a_bystander_forging_results_and_an_oversized_frame_changes_nothing(procs, e2e_server):
    workers = Workers(procs, e2e_server.url, workers=2).ready()
    pids = workers.beating_pids()
    n = 40
    published = {"forged": 0, "oversized": 0}

    async def forge(stop: asyncio.Event) -> None:
        async with bystander(e2e_server.url) as nc:

            async def on_tasks(msg: Any) -> None:
                from taskiq_dataflow.cluster.protocol import DEFAULT_CODEC

                frame = DEFAULT_CODEC.read_frame(msg.data)
                await nc.publish(frame["reply"], forged(frame))
                published["forged"] += 1
                with contextlib.suppress(Exception):  # just under the server's max_payload
                    await nc.publish(frame["reply"], forged(frame, MAX_PAYLOAD - 8192))
                    await nc.publish(f"{PREFIX}.tasks.default", forged(frame, MAX_PAYLOAD - 8192))
                    published["oversized"] += 1

            await nc.subscribe(f"{PREFIX}.worker.*", cb=on_tasks)
            await nc.subscribe(f"{PREFIX}.tasks.default", cb=on_tasks)
            await nc.flush()
            await stop.wait()

    async def main() -> tuple[dict[str, Any], float]:
        stop = asyncio.Event()
        forger = asyncio.ensure_future(forge(stop))
        await asyncio.sleep(0.3)  # subscribed before the engine sends anything
        started = time.monotonic()
        engine, log = start_engine(procs, e2e_server, n, 0.1)
        try:
            return await asyncio.to_thread(outcome, engine, log, started)
        finally:
            stop.set()
            await forger

    result, seconds = asyncio.run(main())
    items = result["results"]
    assert published["forged"] >= 1 and published["oversized"] >= 1, published
    assert sorted(v["i"] for v in items.values()) == list(range(n))
    assert not any(v.get("forged") for v in items.values())
    assert {v["pid"] for v in items.values()} <= pids  # computed by the real workers
    assert seconds < BOUND
    assert workers.beating_pids() == pids  # no worker died of it
