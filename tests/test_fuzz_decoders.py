"""Fuzzing every decoder (bounded for CI; BENCHMARKS.md "Fuzzing (issue 9)" records a long run).

Hostile input to `Codec.unpackb` and `Codec.read_frame`, strict, lazy and tolerant: random
bytes, valid frames mutated, msgpack with extension types of every code whose payloads are
hostile msgpack in turn, and deep nesting. Only ProtocolError may come out. The deep cases run
in a subprocess (benches/fuzz_decoders.py --deep, on a 512 KiB thread stack), so a stack
overflow fails the test instead of killing pytest. Ordinary values of every supported type
round-trip as themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import fractions
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskiq_dataflow.cluster.protocol import (
    RESULTS,
    VERSION,
    Codec,
    Credit,
    Failure,
    Heartbeat,
    ProtocolError,
    TaskLogging,
    ValueRef,
    decode_cancel,
    decode_credit,
    decode_heartbeat,
    decode_ping,
    decode_results,
    decode_stream,
    decode_tasks,
    encode_credit,
    encode_end,
    encode_heartbeat,
    encode_items,
    encode_results,
    encode_tasks,
    failure_part,
    item_part,
    logs_part,
    result_part,
    task_part,
)
from taskiq_dataflow.events import LogEntry

ROOT = Path(__file__).resolve().parent.parent
CODEC = Codec()
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


FRAME_DECODERS = (
    lambda d: decode_tasks(CODEC, d),
    lambda d: decode_results(CODEC, d),
    lambda d: decode_heartbeat(CODEC, d),
    decode_ping,
    lambda d: decode_cancel(CODEC, d),
    lambda d: decode_stream(CODEC, d),
    lambda d: decode_credit(CODEC, d),
)


def only_protocol_errors(data: bytes) -> None:
    for decode in (
        CODEC.unpackb,
        lambda d: CODEC.unpackb(d, lazy=True),
        lambda d: CODEC.unpackb(d, tolerant=True),
        CODEC.read_frame,
        lambda d: CODEC.read_frame(d, lazy=True),
        lambda d: CODEC.read_frame(d, tolerant=True),
        *FRAME_DECODERS,
    ):
        with contextlib.suppress(ProtocolError):
            decode(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    only_protocol_errors(data)


# msgpack-level values with extension types of every code, payloads that are msgpack in turn
ints = st.integers(-(2**63), 2**64 - 1)  # msgpack's range
ext_codes = st.sampled_from([*range(0, 30), 64, 99, 127])  # negative ones: the fuzz script
leaves = st.one_of(
    st.none(), st.booleans(), ints, st.floats(), st.text(max_size=8),
    st.binary(max_size=8),
)  # fmt: skip
raw = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=3), ints), inner, max_size=3),
        st.builds(msgpack.ExtType, ext_codes, st.binary(max_size=12)),
        st.builds(lambda code, v: msgpack.ExtType(code, msgpack.packb(v)), ext_codes, inner),
        # a marker extension heading an array, with or without a class name
        st.builds(
            lambda code, name, items: [msgpack.ExtType(code, name), *items],
            st.integers(15, 23),
            st.sampled_from([b"", b"builtins:int", b"=no:such", b"!enum:Enum", b"x"]),
            st.lists(inner, max_size=3),
        ),
    ),
    max_leaves=20,
)


@FUZZ
@given(raw, st.sampled_from(["tasks", "results", "hb", "items", "end", "credit"]), st.booleans())
def test_hostile_msgpack_alone_and_inside_frames(value, kind, framed):
    body = {"v": VERSION, "t": kind, kind: value} if framed else value
    only_protocol_errors(msgpack.packb(body))


RECORDS = (LogEntry(1.5, "INFO", "a.b", "hi"), LogEntry(2, "ERROR", "", "x\ny"))
VALID = [
    CODEC.frame_of_parts(
        RESULTS, "results", [result_part(1, CODEC.packb(((1, {2}), ValueRef("b", "n", 1))))]
    ),
    CODEC.frame("tasks", tasks=[[1, ["echo", [(1,), {"k": frozenset([2])}], {}, None]]]),
    CODEC.frame("tasks", tasks=[[2, ["split", [], {}, None, [True, [], ["a", "b"]]]]]),
    CODEC.packb([dt.datetime(2024, 1, 1, tzinfo=dt.UTC), fractions.Fraction(1, 3), 1j]),
    encode_heartbeat(CODEC, Heartbeat("w1", "p", 3, "dataflow.worker.ab", 72, 0.5)),
    encode_heartbeat(CODEC, Heartbeat("w1", "p", 0, "w.ab", 8, 0.5, frozenset(["a", "b:c"]))),
    encode_items(CODEC, [item_part(0, CODEC.packb((1, "x"))), item_part(1, CODEC.packb(None))]),
    encode_end(CODEC, 2, ["ValueError", "boom"]),
    encode_credit(CODEC, Credit(3, 11, "s", True, False, True)),
    CODEC.packb([1, 2, 3]),  # a cancel payload
    # with task logging: the capture level and attempts, and a result entry's records
    encode_tasks(
        CODEC, [task_part(1, CODEC.packb(["echo", [1], {}, None]))], "r", "x", "c",
        TaskLogging(20, [2], ["echo"]),
    ),
    encode_results(CODEC, "w1", [1], [
        result_part(1, CODEC.packb(5), logs_part(CODEC, RECORDS)),
        failure_part(CODEC, 2, Failure("E", "m", ""), logs_part(CODEC, RECORDS)),
    ]),
]  # fmt: skip


@FUZZ
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255), st.integers(0, 2)), max_size=6),
)
def test_mutated_valid_frames(data, edits):
    out = bytearray(data)
    for where, byte, op in edits:
        where %= len(out) + 1
        if op == 0 and where < len(out):
            out[where] = byte
        elif op == 1:
            out.insert(where, byte)
        else:
            del out[where : where + 1 + byte % 8]
    only_protocol_errors(bytes(out))


# every field of every frame kind, given junk: a ProtocolError or a decoded frame, and in a tasks
# or results frame each junk entry fails alone (the others are kept)
FIELDS = {
    "tasks": ["run", "reply", "cancel", "tasks", "logs"],
    "results": ["w", "claims", "results"],
    "hb": ["w", "pool", "n", "inbox", "cap", "i", "tn"],
    "items": ["i"],
    "end": ["n", "e"],
    "credit": ["got", "limit", "r", "end", "done", "p"],
}


@FUZZ
@given(st.sampled_from(sorted(FIELDS)), st.data())
def test_junk_in_any_field_of_any_frame_is_a_protocol_error(kind, data):
    fields = {name: data.draw(raw, label=name) for name in FIELDS[kind]}
    only_protocol_errors(CODEC.frame(kind, **fields))


# plain msgpack data (a frame around extension junk may fail as a whole: the test above)
plain = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


@FUZZ
@given(st.lists(plain, max_size=8))
def test_junk_entries_fail_alone(entries):
    tasks = decode_tasks(CODEC, CODEC.frame("tasks", run="r", reply="x", cancel="c", tasks=entries))
    assert len(tasks.entries) == len(entries)
    results = decode_results(CODEC, CODEC.frame(RESULTS, w="w", claims=entries, results=entries))
    assert len(results.claims) + len(results.results) + len(results.rejections) + (
        results.malformed
    ) == 2 * len(entries)


@pytest.mark.parametrize("args", [["--deep"], ["--count", "3000", "--seed", "9"]])
def test_the_fuzz_script_finds_nothing_deep_or_random(args):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "fuzz_decoders.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    assert "FINDING" not in proc.stdout and " inputs, " in proc.stdout


# -- ordinary values round-trip as themselves -----------------------------------------------------


class Tone(enum.Enum):
    LOW = "low"
    HIGH = ("high", 2)


@dataclasses.dataclass(frozen=True)
class Cell:
    row: int
    value: Any


hashable = st.one_of(
    ints, st.text(max_size=5), st.booleans(), st.none(), st.sampled_from(Tone),
    st.fractions(), st.uuids(), st.dates(), st.timedeltas(),
)  # fmt: skip
values = st.recursive(
    st.one_of(
        hashable,
        st.floats(allow_nan=False),
        st.binary(max_size=5),
        st.datetimes(timezones=st.none() | st.timezones()),
        st.times(timezones=st.none() | st.timezones()),
        st.decimals(allow_nan=False),
        st.complex_numbers(allow_nan=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.frozensets(hashable, max_size=4),
        st.sets(hashable, max_size=4),
        st.dictionaries(hashable, inner, max_size=3),
        st.builds(Cell, ints, inner),
    ),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, Cell):
        return same(a.row, b.row) and same(a.value, b.value)
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    return bool(a == b) and (not isinstance(a, uuid.UUID) or a.int == b.int)


@settings(max_examples=300, deadline=None, database=None)
@given(values)
def test_ordinary_values_round_trip_as_themselves(value):
    assert same(CODEC.unpackb(CODEC.packb(value)), value)
