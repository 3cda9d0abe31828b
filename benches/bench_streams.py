"""Stream throughput: one producer task yielding N small ints to one streaming consumer (issue 5).

Systems, side by side in one run, against one nats-server this script starts on a free port:

- ours, cluster: `count_up` and `drain` (benches/cluster_bench_tasks.py) registered on the
  DataflowNatsBroker, run by `ExecutionEngine` on 2 worker processes
  (`python -m taskiq_dataflow.cluster.serve cluster_bench_tasks:broker --workers 2`); the items
  travel producer worker -> consumer worker as msgpack frames, ordered, exactly once, with the
  consumer's default buffer of 64 (credits);
- ours, in-process: the same two functions on the local default (no NATS);
- nats-py, windowed: the straightforward hand-written equivalent with the same bounded buffer:
  a publisher process sends one msgpack message per item and stops when 64 are unacknowledged,
  a subscriber process acks every 32 items on a credit subject (no sequence numbers, no
  resend: it trusts NATS core to lose nothing);
- nats-py, unbounded: the publisher sends every item as fast as it can and the subscriber
  counts them: no flow control at all, the ceiling of one message per item.

Each figure is items per second over the wall time of the whole transfer (ours: the engine's
`execute`, which includes dispatching both tasks; nats-py: from the publisher's first message to
the subscriber's last), best of `--repeat` runs.

    .venv/bin/python benches/bench_streams.py                         # ~1 min
    .venv/bin/python benches/bench_streams.py --write BENCHMARKS.md   # and replace its section
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import msgpack

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import bench_cluster, best_rates, rates_section, write_section  # noqa: E402

TITLE = "## Streams (issue 5)"
WINDOW = 64


# -- the hand-written nats-py pair (each side its own process) ----------------------------------


async def hw_publish(url: str, n: int, windowed: bool) -> None:
    import nats

    nc = await nats.connect(url)
    acked = 0
    credit = asyncio.Event()

    async def on_credit(msg) -> None:
        nonlocal acked
        acked = int(msg.data)
        credit.set()

    await nc.subscribe("hw.credit", cb=on_credit)
    await nc.flush()
    print(f"start {time.time()}", flush=True)
    for i in range(n):
        while windowed and i >= acked + WINDOW:
            credit.clear()
            await credit.wait()
        await nc.publish("hw.items", msgpack.packb(i))
    await nc.flush()
    await nc.close()


async def hw_subscribe(url: str, n: int, windowed: bool) -> None:
    import nats

    nc = await nats.connect(url)
    done = asyncio.Event()
    count = 0

    async def on_item(msg) -> None:
        nonlocal count
        msgpack.unpackb(msg.data)
        count += 1
        if windowed and count % (WINDOW // 2) == 0:
            await nc.publish("hw.credit", str(count).encode())
        if count == n:
            done.set()

    await nc.subscribe("hw.items", cb=on_item, pending_msgs_limit=10 * n)
    await nc.flush()
    print("ready", flush=True)
    await done.wait()
    print(f"end {time.time()}", flush=True)
    await nc.close()


def hand_written(url: str, n: int, windowed: bool) -> float:
    """Items per second of the hand-written pair."""
    mode = "windowed" if windowed else "unbounded"
    args = [sys.executable, __file__, "--url", url, "--n", str(n), "--mode", mode]
    sub = subprocess.Popen([*args, "--side", "sub"], stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None
    assert sub.stdout.readline().strip() == "ready"
    pub = subprocess.run([*args, "--side", "pub"], capture_output=True, text=True, check=True)
    start = float(pub.stdout.split()[1])
    end = float(sub.stdout.readline().split()[1])
    sub.wait(30)
    return n / (end - start)


# -- ours ----------------------------------------------------------------------------------------


def ours(n: int, broker) -> float:
    import cluster_bench_tasks as tasks
    from taskiq_dataflow import DataflowRegistry, ExecutionEngine

    registry = DataflowRegistry()
    registry.register_external_input("n")
    if broker is None:  # the plain functions behind the tasks
        producer, consumer = tasks._count_up, tasks._drain
    else:
        producer, consumer = tasks.count_up, tasks.drain
    registry.register_task(producer, output="items", inputs=["n"])
    registry.register_task(consumer, output="count", inputs=["items"])
    engine = ExecutionEngine(broker, registry.build_dag())
    start = time.perf_counter()
    out = asyncio.run(engine.execute({"n": n}))
    elapsed = time.perf_counter() - start
    assert out["count"] == n, out
    return n / elapsed


def measure(n: int, repeat: int) -> dict[str, float]:
    with bench_cluster() as server:
        import cluster_bench_tasks as tasks

        ours(1000, tasks.broker)  # warm-up: both workers connected and serving
        return best_rates(
            [
                ("ours, cluster", lambda: ours(n, tasks.broker)),
                ("ours, in-process", lambda: ours(n, None)),
                ("nats-py, windowed", lambda: hand_written(server.url, n, True)),
                ("nats-py, unbounded", lambda: hand_written(server.url, n, False)),
            ],
            repeat,
        )


def render(best: dict[str, float], n: int, repeat: int, command: str) -> str:
    setup = (
        f"One producer yields {n:,} small ints to one streaming consumer (buffer {WINDOW}); "
        f"best of {repeat}."
    )
    lines = rates_section(TITLE, command, setup, best, "nats-py, windowed", 2)
    lines += [
        "",
        "Ours batches the items a producer yields in one turn of the event loop into one frame "
        "(the hand-written pair sends a message per item); it also numbers them, drops "
        "duplicates, re-sends lost ones and lets a redelivered producer skip what the consumer "
        "has, which the hand-written pair does not.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", metavar="FILE")
    parser.add_argument("--url")  # the hand-written sides:
    parser.add_argument("--side", choices=["pub", "sub"])
    parser.add_argument("--mode", choices=["windowed", "unbounded"])
    args = parser.parse_args()
    if args.side:
        side = hw_publish if args.side == "pub" else hw_subscribe
        asyncio.run(side(args.url, args.n, args.mode == "windowed"))
        return 0
    best = measure(args.n, args.repeat)
    command = "python benches/bench_streams.py" + (f" --n {args.n}" if args.n != 200_000 else "")
    text = render(best, args.n, args.repeat, command)
    print(text)
    if args.write:
        write_section(args.write, TITLE, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
