"""What one nats-server carries on loopback, for frames like ours (SCALING.md).

1. The real encoded sizes of the cluster's frames, made with cluster/protocol.py's own
   functions: a no-op task entry (`task_part(seq, encode_task_body(...))`, 2 parent values of
   None as its args), a result entry (`value_part(codec, seq, None)`), and the tasks / results
   frames of 1 and of 128 entries (the broker's default `batch_size`) with a run's real subjects.
2. Core NATS throughput: a publisher (this process) sends COUNT messages of each size to a
   subscriber in another process, through one nats-server (JetStream on) this script starts on
   a free loopback port. Flow control as ours has it: at most WINDOW bytes unacknowledged (the
   subscriber acks every quarter window), so nothing is dropped for a slow consumer. Rates are
   over the subscriber's wall time, first message to last; the server's CPU (utime + stime from
   /proc/PID/stat) is given per message. Best of `--repeat` runs per size.
3. JetStream object store (how values > 256 KiB travel): `put` then `get` of OBJECTS values of
   1 MiB through nats-py's object store, file storage, 1 replica.

    .venv/bin/python benches/bench_nats_wire.py                 # ~1 min
    .venv/bin/python benches/bench_nats_wire.py --json FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from common import cpu_model, git_commit, loadavg, nproc

WINDOW = 8 * 2**20  # bytes in flight at most (nats-py's subscriber holds 64 MiB by default)
SUBJECT = "wire.bench"
ACKS = "wire.acks"
TASK_NAME = "cluster_bench_tasks:noop"  # what a worker is sent for benches' `noop`


# -- 1. frame sizes --------------------------------------------------------------------------------


def frames(seq0: int = 1_000_000) -> dict[str, bytes]:
    """One of each frame, encoded as the engine and the workers encode them."""
    from taskiq_dataflow.cluster.broker import DataflowNatsBroker
    from taskiq_dataflow.cluster.protocol import (
        DEFAULT_CODEC,
        encode_results,
        encode_task_body,
        encode_tasks,
        task_part,
        value_part,
    )

    codec = DEFAULT_CODEC
    broker = DataflowNatsBroker("nats://127.0.0.1:4222")
    run = uuid.uuid4().hex
    reply = broker.reply_subject(run, os.urandom(16).hex())
    cancel = os.urandom(16).hex()
    worker = uuid.uuid4().hex
    body = encode_task_body(codec, TASK_NAME, [None, None], {}, None)
    tasks = [task_part(seq0 + i, body) for i in range(128)]
    results = [value_part(codec, seq0 + i, None) for i in range(128)]
    seqs = list(range(seq0, seq0 + 128))
    return {
        "task entry": tasks[0],
        "result entry": results[0],
        "tasks frame, 1 entry": encode_tasks(codec, tasks[:1], run, reply, cancel),
        "tasks frame, 128 entries": encode_tasks(codec, tasks, run, reply, cancel),
        "results frame, 1 entry + claim": encode_results(codec, worker, seqs[:1], results[:1]),
        "results frame, 128 entries": encode_results(codec, worker, [], results),
        "results frame, 128 entries + claims": encode_results(codec, worker, seqs, results),
        "reply subject": reply.encode(),
    }


# -- 2. core NATS: one subscriber process, this process publishing --------------------------------


async def subscribe(url: str, count: int, every: int) -> None:
    import nats

    nc = await nats.connect(url)
    done = asyncio.Event()
    got = nbytes = 0
    first = last = 0.0

    async def on_msg(msg: Any) -> None:
        nonlocal got, nbytes, first, last
        if got == 0:
            first = time.perf_counter()
        got += 1
        nbytes += len(msg.data)
        if got % every == 0 or got == count:
            await nc.publish(ACKS, str(got).encode())
        if got == count:
            last = time.perf_counter()
            done.set()

    await nc.subscribe(SUBJECT, cb=on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.flush()
    print("READY", flush=True)
    await asyncio.wait_for(done.wait(), 300)
    print("RESULT " + json.dumps({"got": got, "bytes": nbytes, "s": last - first}), flush=True)
    await nc.drain()


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


async def publish(url: str, payload: bytes, count: int, window: int, server_pid: int) -> dict:
    import nats

    every = max(1, window // 4)
    sub = subprocess.Popen(
        [sys.executable, __file__, "--subscriber", url, str(count), str(every)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sub.stdout is not None
    assert sub.stdout.readline().strip() == "READY"
    nc = await nats.connect(url, pending_size=4 * 2**20)
    acked = 0
    moved = asyncio.Event()

    async def on_ack(msg: Any) -> None:
        nonlocal acked
        acked = int(msg.data)
        moved.set()

    await nc.subscribe(ACKS, cb=on_ack)
    await nc.flush()
    ticks0, began = _cpu_ticks(server_pid), time.perf_counter()
    pub = nc.publish
    for sent in range(count):
        while sent - acked >= window:
            moved.clear()
            await nc.flush()
            await moved.wait()
        await pub(SUBJECT, payload)
    await nc.flush()
    out, _ = sub.communicate(timeout=300)
    wall = time.perf_counter() - began
    ticks = _cpu_ticks(server_pid) - ticks0
    await nc.close()
    r = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
    tick = os.sysconf("SC_CLK_TCK")
    return {
        "size": len(payload),
        "count": count,
        "received": r["got"],
        "sub_s": r["s"],
        "wall_s": wall,
        "msgs_per_s": r["got"] / r["s"],
        "mb_per_s": r["bytes"] / r["s"] / 1e6,
        "server_cpu_us_per_msg": ticks / tick / count * 1e6,
    }


# -- 3. the object store ---------------------------------------------------------------------------


async def object_store(url: str, objects: int, size: int) -> dict:
    import nats
    from nats.js.api import ObjectStoreConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    obs = await js.create_object_store("wirebench", ObjectStoreConfig(bucket="wirebench"))
    data = os.urandom(size)
    began = time.perf_counter()
    for i in range(objects):
        await obs.put(f"v{i}", data)
    put_s = time.perf_counter() - began
    began = time.perf_counter()
    for i in range(objects):
        got = await obs.get(f"v{i}")
        assert len(got.data) == size
    get_s = time.perf_counter() - began
    await nc.close()
    return {
        "objects": objects,
        "size": size,
        "put_per_s": objects / put_s,
        "put_mb_per_s": objects * size / put_s / 1e6,
        "get_per_s": objects / get_s,
        "get_mb_per_s": objects * size / get_s / 1e6,
    }


async def measure(count: int, objects: int, repeat: int) -> dict:
    from taskiq_dataflow.cluster import NatsServer

    f = frames()
    sizes = {name: len(b) for name, b in f.items()}
    payloads = {
        "tasks frame, 1 entry": f["tasks frame, 1 entry"],
        "tasks frame, 128 entries": f["tasks frame, 128 entries"],
        "results frame, 128 entries + claims": f["results frame, 128 entries + claims"],
        "64 KiB": os.urandom(64 * 1024),
        "256 KiB (largest value sent inline)": os.urandom(256 * 1024),
    }
    out: dict[str, Any] = {"sizes": sizes, "core": {}, "load_before": loadavg()}
    with NatsServer() as server:
        assert server.process is not None
        for name, payload in payloads.items():
            # about the same bytes for each size (and at least 2,000 messages); best of repeat
            n = max(2_000, min(count, count * 1024 // len(payload)))
            window = max(16, WINDOW // len(payload))
            runs = [
                await publish(server.url, payload, n, window, server.process.pid)
                for _ in range(repeat)
            ]
            out["core"][name] = max(runs, key=lambda r: r["msgs_per_s"])
        if objects:
            out["object_store"] = await object_store(server.url, objects, 2**20)
    out["load_after"] = loadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000, help="messages of the smallest size")
    parser.add_argument("--objects", type=int, default=50, help="1 MiB object store values")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per size")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--subscriber", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        url, count, every = args.subscriber
        asyncio.run(subscribe(url, int(count), int(every)))
        return
    print(f"{cpu_model()}, nproc {nproc()}, commit {git_commit()}, load {loadavg()}", flush=True)
    res = asyncio.run(measure(args.count, args.objects, args.repeat))
    for name, size in res["sizes"].items():
        print(f"{name:<40} {size:>7,} B")
    print(f"{'message':<40} {'size':>9} {'msgs/s':>10} {'MB/s':>8} {'server CPU us/msg':>18}")
    for name, r in res["core"].items():
        print(
            f"{name:<40} {r['size']:>9,} {r['msgs_per_s']:>10,.0f} {r['mb_per_s']:>8.1f} "
            f"{r['server_cpu_us_per_msg']:>18.2f}"
        )
    if "object_store" in res:
        o = res["object_store"]
        print(
            f"object store, {o['objects']} x 1 MiB: put {o['put_per_s']:.0f}/s "
            f"({o['put_mb_per_s']:.0f} MB/s), get {o['get_per_s']:.0f}/s "
            f"({o['get_mb_per_s']:.0f} MB/s)"
        )
    print(f"load {res['load_before']} before, {res['load_after']} after")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
