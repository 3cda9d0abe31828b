"""Fuzz every decoder of the cluster protocol: only ProtocolError may come out of them.

    nice -n 19 python benches/fuzz_decoders.py --count 1000000 --seed 1
    python benches/fuzz_decoders.py --deep          # only the deep and huge cases, once each

Inputs: random bytes; valid frames and values (results, tasks, heartbeats, every extension
type) mutated (bytes flipped, inserted, deleted, truncated, spliced); msgpack built from a
grammar with hostile parts (declared lengths that lie or are huge, unknown extension codes,
marker extensions out of place, extension payloads that are themselves hostile msgpack); and
deep nesting of arrays, maps, marker arrays and extension payloads, past every bound. Each goes
through `Codec.unpackb` (strict, lazy, tolerant), `Codec.read_frame` (strict, lazy,
tolerant) and every frame decoder of cluster/protocol.py (tasks, results, heartbeat, ping,
cancel, stream items/end/hello, credit), on a thread with a 512 KiB stack (so the stack
claim of MAX_DEPTH is fuzzed too).

Any other exception is a finding, printed with its input; a crash (stack overflow) kills the
process, which the caller sees as a non-zero exit. tests/test_fuzz_decoders.py runs a bounded
pass of this script in a subprocess; BENCHMARKS.md "Fuzzing (issue 9)" records a long run.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from taskiq_dataflow.cluster.protocol import (
    HEARTBEAT,
    MAX_DEPTH,
    MAX_EXT_DEPTH,
    RESULTS,
    TASKS,
    Codec,
    Credit,
    Heartbeat,
    Packed,
    ProtocolError,
    ValueRef,
    decode_cancel,
    decode_credit,
    decode_heartbeat,
    decode_ping,
    decode_results,
    decode_stream,
    decode_tasks,
    encode_cancel,
    encode_credit,
    encode_end,
    encode_heartbeat,
    encode_hello,
    encode_items,
    encode_tasks,
    failure_part,
    item_part,
    rejection_part,
    result_part,
    task_part,
)
from taskiq_dataflow.cluster.protocol import Failure as Failed


class Boxed:
    """A user type whose codec decodes its payload with the codec again (nesting via user code)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner


def make_codec() -> Codec:
    codec = Codec()
    codec.register(
        Boxed, 64, lambda b: codec.packb(b.inner), lambda data: Boxed(codec.unpackb(data))
    )

    def refuse(_: bytes) -> Any:
        raise ValueError("refused by a user codec")

    codec.register(type("Refused", (), {}), 65, lambda _: b"", refuse)
    return codec


CODEC = make_codec()
DECODERS: list[tuple[str, Callable[[bytes], Any]]] = [
    ("unpackb", CODEC.unpackb),
    ("unpackb lazy", lambda d: CODEC.unpackb(d, lazy=True)),
    ("unpackb tolerant", lambda d: CODEC.unpackb(d, tolerant=True)),
    ("read_frame", CODEC.read_frame),
    ("read_frame lazy", lambda d: CODEC.read_frame(d, lazy=True)),
    ("read_frame tolerant", lambda d: CODEC.read_frame(d, tolerant=True)),
    ("decode_tasks", lambda d: decode_tasks(CODEC, d)),
    ("decode_results", lambda d: decode_results(CODEC, d)),
    ("decode_heartbeat", lambda d: decode_heartbeat(CODEC, d)),
    ("decode_ping", decode_ping),
    ("decode_cancel", lambda d: decode_cancel(CODEC, d)),
    ("decode_stream", lambda d: decode_stream(CODEC, d)),
    ("decode_credit", lambda d: decode_credit(CODEC, d)),
]
EXT_CODES = [*range(0, 30), 64, 65, 66, 99, 127, -1, -128]


def seeds() -> list[bytes]:
    """Valid encodings to mutate: frames of each kind and values of every extension type."""
    import dataclasses
    import datetime as dt
    import decimal
    import enum
    import fractions
    import pathlib
    import uuid

    @dataclasses.dataclass
    class Row:
        a: int
        b: tuple[int, ...]

    class Hue(enum.IntEnum):
        RED = 1

    values: list[Any] = [
        None, True, -1, 2**63, 1.5, "text", b"\x00bin", [1, [2]], {"k": {"n": 1}},
        (1, (2, "x")), {1, 2}, frozenset({(3,)}), Row(1, (2,)), Hue.RED, fractions.Fraction(1, 3),
        pathlib.PurePosixPath("/x"), dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.date(2024, 1, 2),
        dt.time(1, 2), dt.timedelta(3), uuid.UUID(int=5), decimal.Decimal("1.5"), complex(1, 2),
        ValueRef("b", "n", 1), Packed(CODEC.packb((1,))), Boxed(Boxed((1,))),
    ]  # fmt: skip
    encoded = [CODEC.packb(v) for v in values]
    results = [result_part(i, data) for i, data in enumerate(encoded)]
    bodies = [
        task_part(i, CODEC.packb(["echo", [v], {"k": v}, None])) for i, v in enumerate(values)
    ]
    return [
        *encoded,
        CODEC.frame_of_parts(RESULTS, "results", results, w="w1", claims=[1, 2]),
        CODEC.frame_of_parts(TASKS, "tasks", bodies, run="r", reply="x"),
        CODEC.frame(HEARTBEAT, w="w1", pool="p", n=3),
        CODEC.frame(RESULTS, w="w", results=[[None, False, ["E", "m", ""]]]),
        encode_tasks(CODEC, bodies, "r", "x", "c"),
        CODEC.frame_of_parts(
            RESULTS, "results",
            [failure_part(CODEC, 1, Failed("E", "m", "t")), rejection_part(CODEC, "no")],
            w="w", claims=[1],
        ),
        encode_heartbeat(CODEC, Heartbeat("w1", "p", 3, "dataflow.worker.ab", 72, 0.5)),
        encode_heartbeat(CODEC, Heartbeat("w1", "p", 0, "w.ab", 8, 0.5, frozenset(["a", "b"]))),
        CODEC.frame(
            TASKS, run="r", reply="x", tasks=[[2, ["s", [], {}, 1, [True, [], ["a", "b"]]]]]
        ),
        encode_cancel(CODEC, [1, 2, 3]),
        encode_items(CODEC, [item_part(i, data) for i, data in enumerate(encoded[:8])]),
        encode_end(CODEC, 8, ["ValueError", "boom"]),
        encode_hello(CODEC),
        encode_credit(CODEC, Credit(3, 11, "s", True, False, True)),
    ]  # fmt: skip


# -- generators -----------------------------------------------------------------------------------


def random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((1, 2, 5, 16, 64, 300)))


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4))):
        where = rng.randrange(len(out) + 1)
        op = rng.randrange(6)
        if op == 0 and out:
            out[min(where, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[min(where, len(out) - 1)] = rng.randrange(256)
        elif op == 2:
            out[where:where] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3:
            del out[where : where + rng.randrange(1, 9)]
        elif op == 4:
            del out[where:]
        else:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            out[where:where] = other[start : start + rng.randrange(1, 64)]
    return bytes(out)


def header(kind: str, n: int) -> bytes:
    """A msgpack header declaring `n` (which may lie about what follows)."""
    if kind == "array":
        if n < 16:
            return bytes((0x90 | n,))
        return (b"\xdc" + struct.pack(">H", n)) if n < 0x10000 else b"\xdd" + struct.pack(">I", n)
    if kind == "map":
        if n < 16:
            return bytes((0x80 | n,))
        return (b"\xde" + struct.pack(">H", n)) if n < 0x10000 else b"\xdf" + struct.pack(">I", n)
    if kind == "str":
        return b"\xdb" + struct.pack(">I", n)
    return b"\xc6" + struct.pack(">I", n)  # bin


def ext(code: int, payload: bytes) -> bytes:
    return b"\xc9" + struct.pack(">Ib", len(payload), code) + payload


def grammar(rng: random.Random, depth: int = 0) -> bytes:
    """A msgpack message with hostile parts; `depth` bounds this generator's own recursion."""
    roll = rng.random()
    if depth > 5 or roll < 0.3:
        return rng.choice(
            [b"\xc0", b"\xc3", b"\x01", b"\xcf" + rng.randbytes(8), b"\xcb" + rng.randbytes(8),
             b"\xa3abc", b"\xc4\x02\x00\xff", b"\xd9\x03\xff\xfe\xfd", rng.randbytes(3)]
        )  # fmt: skip
    if roll < 0.5:
        n = rng.randrange(4)
        items = b"".join(grammar(rng, depth + 1) for _ in range(n))
        declared = n if rng.random() < 0.8 else rng.choice((n + 1, max(n - 1, 0), 2**32 - 1))
        return header("array", declared) + items
    if roll < 0.65:
        n = rng.randrange(3)
        items = b"".join(grammar(rng, depth + 1) + grammar(rng, depth + 1) for _ in range(n))
        declared = n if rng.random() < 0.8 else rng.choice((n + 1, 2**32 - 1))
        return header("map", declared) + items
    if roll < 0.7:
        return header(rng.choice(("str", "bin")), rng.choice((2**31, 2**32 - 1, 10**6)))
    code = rng.choice(EXT_CODES)
    if 15 <= code <= 23 and rng.random() < 0.6:  # a marker array, well placed or not
        name = rng.choice([b"", b"builtins:int", b"=x:y", b"!enum:Enum", b"__main__:Boxed"])
        n = rng.randrange(4)
        items = b"".join(grammar(rng, depth + 1) for _ in range(n))
        declared = 1 + n if rng.random() < 0.8 else rng.randrange(6)
        return header("array", declared) + ext(code, name) + items
    payload = grammar(rng, depth + 1) if rng.random() < 0.6 else rng.randbytes(rng.randrange(20))
    return ext(code, payload)


def as_frame(rng: random.Random, body: bytes) -> bytes:
    """`body` in the place of a frame field, so read_frame gets past the frame's own checks."""
    kind = rng.choice(
        (b"\xa5tasks", b"\xa7results", b"\xa2hb", b"\xa5items", b"\xa3end", b"\xa6credit")
    )
    key = rng.choice(
        (b"\xa5tasks", b"\xa7results", b"\xa1w", b"\xa6claims", b"\xa5inbox", b"\xa3cap",
         b"\xa1i", b"\xa1n", b"\xa1e", b"\xa3got", b"\xa3run", b"\xa5reply")
    )  # fmt: skip
    return b"\x83\xa1v\x02\xa1t" + kind + key + body


def deep_cases() -> Iterator[tuple[str, bytes]]:
    """Nesting past every bound, once each: what crashed decoders before protocol version 2."""
    none = b"\xc0"
    for depth in (MAX_DEPTH - 8, MAX_DEPTH, MAX_DEPTH + 1, 5_000, 100_000):
        yield f"{depth} arrays", b"\x91" * depth + none
        yield f"{depth} maps", b"\x81\xa1k" * depth + none
        yield f"{depth} marker arrays (tuples)", (b"\x92" + ext(15, b"")) * depth + none
        yield f"{depth} marker arrays (dataclass)", (b"\x92" + ext(19, b"x:y")) * depth + none
        yield f"frame around {depth} arrays", as_frame(random.Random(depth), b"\x91" * depth + none)
    for code in (1, 2, 3, 7, 10, 11, 12, 13, 14, 64):
        for depth in (MAX_EXT_DEPTH, MAX_EXT_DEPTH + 1, 200, 2_000):
            data = b"\x90"
            for _ in range(depth):
                data = ext(code, data)
            yield f"{depth} nested payloads of extension {code}", data
    mixed = none
    for i in range(3_000):
        mixed = ext(1, b"\x91" + mixed) if i % 3 == 0 else b"\x91" + mixed
    yield "arrays and payloads of extension 1 mixed", mixed
    yield "an array declaring 2**32-1 items", header("array", 2**32 - 1) + none
    yield "a map declaring 2**32-1 pairs", header("map", 2**32 - 1) + none
    yield "a str declaring 4 GiB", header("str", 2**32 - 1)
    yield "an ext declaring 4 GiB", b"\xc9\xff\xff\xff\xff\x01"


def inputs(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    pool = seeds()
    for _ in range(count):
        roll = rng.random()
        if roll < 0.25:
            yield "random bytes", random_bytes(rng)
        elif roll < 0.6:
            yield "mutated", mutate(rng, rng.choice(pool), pool)
        elif roll < 0.85:
            yield "grammar", grammar(rng)
        elif roll < 0.98:
            yield "grammar in a frame", as_frame(rng, grammar(rng))
        else:
            depth = rng.choice((50, 300, MAX_DEPTH, 3_000))
            unit = rng.choice((b"\x91", b"\x81\xa1k", b"\x92" + ext(15, b"")))
            yield (
                "deep",
                as_frame(rng, unit * depth + b"\xc0")
                if rng.random() < 0.5
                else (unit * depth + b"\xc0"),
            )


# -- the run --------------------------------------------------------------------------------------


def fuzz(cases: Iterator[tuple[str, bytes]]) -> tuple[int, Counter[str], list[str]]:
    count, outcomes, findings, seen = 0, Counter[str](), [], set()
    for source, data in cases:
        count += 1
        for name, decode in DECODERS:
            try:
                decode(data)
                outcomes["decoded"] += 1
            except ProtocolError:
                outcomes["ProtocolError"] += 1
            except Exception as exc:  # anything but ProtocolError is a finding
                outcomes[type(exc).__name__] += 1
                key = f"{name}: {type(exc).__name__}: {str(exc)[:80]}"
                if key not in seen:
                    seen.add(key)
                    findings.append(f"{key}  ({source}, input {data[:64].hex()})")
    return count, outcomes, findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="random inputs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deep", action="store_true", help="only the deep and huge cases")
    parser.add_argument("--stack-kib", type=int, default=512, help="the fuzzing thread's stack")
    args = parser.parse_args(argv)
    cases = deep_cases() if args.deep else inputs(random.Random(args.seed), args.count)
    result: list[Any] = []
    threading.stack_size(args.stack_kib * 1024)
    started = time.perf_counter()
    thread = threading.Thread(target=lambda: result.extend(fuzz(cases)))
    thread.start()
    thread.join()
    elapsed = time.perf_counter() - started
    count, outcomes, findings = result
    calls = sum(outcomes.values())
    print(
        f"{count:,} inputs, {calls:,} decoder calls in {elapsed:.1f} s "
        f"({calls / elapsed:,.0f} calls/s, {args.stack_kib} KiB stack): "
        + ", ".join(f"{name} {n:,}" for name, n in outcomes.most_common())
    )
    for finding in findings:
        print("FINDING", finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
