"""The floor under a cluster hop (issue 14, chain latency): a bare request-reply through
nats-server, with nothing of ours and nothing of nats-py in it.

A chain task's hop is: the engine publishes a tasks frame, nats-server routes it, a worker
process wakes, answers, nats-server routes the answer, the engine wakes. This script does the
same with the least code there is: two asyncio protocols speaking the NATS text protocol
directly (CONNECT, SUB, PUB, MSG, PING/PONG) on loopback, a requester in this process and a
responder in another, one round trip at a time, a 16-byte payload each way. What a hop costs
beyond this is the engine's, the worker's and the client library's.

    .venv/bin/python benches/bench_hop_floor.py                 # 5 rounds of 2,000 hops
    .venv/bin/python benches/bench_hop_floor.py --hops 500 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\n'
PAYLOAD = b"0123456789abcdef"


class NatsText(asyncio.Protocol):
    """Just enough of the NATS client protocol: MSG frames to `on_msg`, PINGs answered."""

    def __init__(self, on_msg: Any) -> None:
        self.on_msg = on_msg
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line = self.buffer[:end]
            if line.startswith(b"MSG "):
                parts = line.split()
                size = int(parts[-1])
                start = end + 2
                if len(self.buffer) < start + size + 2:
                    return  # the payload is not all here yet
                reply = parts[3] if len(parts) == 5 else None
                payload = self.buffer[start : start + size]
                self.buffer = self.buffer[start + size + 2 :]
                self.on_msg(self, reply, payload)
                continue
            self.buffer = self.buffer[end + 2 :]
            if line == b"PING":
                assert self.transport is not None
                self.transport.write(b"PONG\r\n")
            elif line == b"PONG" and not self.ready.done():
                self.ready.set_result(None)
            elif line.startswith(b"-ERR"):
                raise RuntimeError(f"nats-server said {line.decode()}")

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


async def connect(url: str, on_msg: Any, subscribe: bytes) -> NatsText:
    where = urlparse(url)
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: NatsText(on_msg), where.hostname, where.port)
    protocol.send(CONNECT + subscribe + b"PING\r\n")
    await protocol.ready  # the server has our SUB once it answered the PING after it
    return protocol


async def respond(url: str) -> None:
    def answer(protocol: NatsText, reply: bytes | None, payload: bytes) -> None:
        if reply is not None:
            protocol.send(b"PUB %s %d\r\n%s\r\n" % (reply, len(payload), payload))

    await connect(url, answer, b"SUB floor.ping 1\r\n")
    print("ready", flush=True)
    await asyncio.Event().wait()


async def request(url: str, hops: int, rounds: int) -> list[float]:
    answered: asyncio.Future[None] | None = None

    def on_answer(protocol: NatsText, reply: bytes | None, payload: bytes) -> None:
        if answered is not None and not answered.done():
            answered.set_result(None)

    protocol = await connect(url, on_answer, b"SUB floor.inbox 2\r\n")
    ping = b"PUB floor.ping floor.inbox %d\r\n%s\r\n" % (len(PAYLOAD), PAYLOAD)
    loop = asyncio.get_running_loop()
    per_hop = []
    for _ in range(rounds + 1):  # the first round warms up
        start = time.perf_counter()
        for _ in range(hops):
            answered = loop.create_future()
            protocol.send(ping)
            await answered
        per_hop.append((time.perf_counter() - start) / hops)
    return per_hop[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--responder", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.responder:
        asyncio.run(respond(args.responder))
        return
    from taskiq_dataflow.cluster import NatsServer

    with NatsServer() as server:
        responder = subprocess.Popen(
            [sys.executable, __file__, "--responder", server.url], stdout=subprocess.PIPE
        )
        try:
            assert responder.stdout is not None
            if responder.stdout.readline().strip() != b"ready":
                raise SystemExit("the responder did not start")
            per_hop = asyncio.run(request(server.url, args.hops, args.rounds))
        finally:
            responder.kill()
            responder.wait()
    us = [1e6 * t for t in per_hop]
    print(
        f"bare NATS request-reply on loopback, {args.hops:,} hops x {args.rounds} rounds: "
        f"median {statistics.median(us):.0f} µs/hop, best {min(us):.0f} µs/hop"
    )


if __name__ == "__main__":
    main()
