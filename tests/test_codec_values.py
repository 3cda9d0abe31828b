"""The value codec: every ordinary type comes back as itself, deep values within MAX_DEPTH encode
and decode (also inside frames, also in threads), deeper ones are one clear error, classes the
decoding side has not loaded never turn silently into something unequal, and values written by
protocol version 1 still decode (stores written before it stay readable)."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import fractions
import pathlib
import subprocess
import sys
import textwrap
import typing
import uuid
import zoneinfo
from typing import Any

import msgpack
import pytest
from taskiq_dataflow.cluster.protocol import (
    MAX_DEPTH,
    MAX_EXT_DEPTH,
    RESULTS,
    TASKS,
    Codec,
    EncodeError,
    Packed,
    ProtocolError,
    ValueRef,
    find_undecodable,
    result_part,
    task_part,
)
from taskiq_dataflow.store import RunStore
from taskiq_dataflow.streams import StreamRef

CODEC = Codec()


class Colour(enum.Enum):
    RED = 1
    PAIR = (2, "two")


class Level(enum.IntEnum):
    LOW = 1


class Mode(enum.StrEnum):
    FAST = "fast"


class Perm(enum.Flag):
    R = 1
    W = 2


class Bits(enum.IntFlag):
    X = 4


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: tuple[int, ...]


@dataclasses.dataclass
class Shape:
    corner: Point
    tags: set[str]
    colour: Colour
    # not an __init__ argument: rebuilding must not run __init__ or __post_init__ again
    area: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.area = self.corner.x * 10


class Pair(typing.NamedTuple):
    left: int
    right: str


Legacy = collections.namedtuple("Legacy", "a b")
PARIS = zoneinfo.ZoneInfo("Europe/Paris")

VALUES: dict[str, Any] = {
    "tuple": (1, (2, (3, ())), "x"),
    "set": {1, 2, 3},
    "frozenset": frozenset({(1, 2), (3,)}),
    "tuple keys": {(1, 2): "a", frozenset({3}): "b"},
    "enum": Colour.RED,
    "enum with a tuple value": Colour.PAIR,
    "IntEnum": Level.LOW,
    "StrEnum": Mode.FAST,
    "Flag": Perm.R | Perm.W,
    "IntFlag": Bits.X,
    "dataclass (frozen, slots)": Point(1, (2, 3)),
    "dataclass of dataclasses": Shape(Point(4, ()), {"a"}, Colour.PAIR),
    "NamedTuple": Pair(1, "r"),
    "namedtuple": Legacy([1], {"b": (2,)}),
    "Fraction": fractions.Fraction(-(10**5000), 7),  # past int <-> str's 4,300 digits
    "Path": pathlib.Path("/tmp/a b"),
    "PurePosixPath": pathlib.PurePosixPath("rel/x"),
    "PureWindowsPath": pathlib.PureWindowsPath(r"C:\data\x.csv"),
    "datetime in a zone": dt.datetime(2024, 3, 31, 3, 30, tzinfo=PARIS),
    "datetime, second of two": dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS),
    "datetime UTC": dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC),
    "datetime +05:30": dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5.5))),
    "naive datetime": dt.datetime(2024, 1, 1, 1, 2, 3, 4),
    "date": dt.date(2020, 2, 29),
    "time": dt.time(23, 59, 59, 999_999),
    "timedelta": dt.timedelta(days=-3, seconds=5, microseconds=7),
    "largest timedelta": dt.timedelta.max,
    "UUID": uuid.UUID(int=2**128 - 1),
    "Decimal": decimal.Decimal("-1.10E+7"),
    "complex": complex(1.5, -2),
    "ValueRef": ValueRef("bucket", "name", 3),
    "StreamRef": StreamRef("k", "items.subj", "credits.subj", 4, [1, (2,)]),
}


def same(a: Any, b: Any) -> bool:
    """Equal, of the same type all the way down (== alone takes 1 == Level.LOW, (1,) == Pair)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


@pytest.mark.parametrize("name", VALUES)
def test_values_come_back_as_their_own_type(name):
    value = VALUES[name]
    assert same(CODEC.unpackb(CODEC.packb(value)), value)
    assert same(CODEC.unpackb(CODEC.packb([value, {"in": value}])), [value, {"in": value}])


def test_bytes_like_values_come_back_as_equal_bytes():
    for value in (bytearray(b"ab\x00"), memoryview(b"cd")):
        out = CODEC.unpackb(CODEC.packb(value))
        assert type(out) is bytes and out == bytes(value)


def test_a_dataclass_is_rebuilt_without_running_init_again():
    shape = Shape(Point(2, ()), set(), Colour.RED)
    shape.area = 99  # state that __post_init__ would overwrite
    assert CODEC.unpackb(CODEC.packb(shape)).area == 99


def test_a_dataclass_whose_fields_differ_here_is_an_error_naming_both():
    data = msgpack.packb(
        [msgpack.ExtType(19, f"{__name__}:Point".encode()), {"x": 1, "z": 2}], use_bin_type=True
    )
    with pytest.raises(ProtocolError, match=r"Point has fields \['x', 'y'\] here but .*'z'"):
        CODEC.unpackb(data)


def elsewhere(cls: type, module: str = "module_not_loaded_here") -> type:
    """`cls` as if it came from a module this process has not imported."""
    cls.__module__ = module
    return cls


def test_classes_not_loaded_here_decode_as_equal_data_or_fail_loudly():
    @dataclasses.dataclass
    class Job:
        n: int

    class Row(typing.NamedTuple):
        n: int

    Job, Row = elsewhere(Job), elsewhere(Row)
    Size = elsewhere(enum.IntEnum("Size", {"BIG": 2}))
    Tone = elsewhere(enum.StrEnum("Tone", {"LOUD": "loud"}))
    assert CODEC.unpackb(CODEC.packb(Job(1))) == {"n": 1}
    assert same(CODEC.unpackb(CODEC.packb(Row(1))), (1,))
    assert same(CODEC.unpackb(CODEC.packb(Size.BIG)), 2)
    assert same(CODEC.unpackb(CODEC.packb(Tone.LOUD)), "loud")
    # a plain Enum's value is not equal to it: returning it would change results silently
    Hue = elsewhere(enum.Enum("Hue", {"RED": 1}))
    with pytest.raises(ProtocolError, match="enum module_not_loaded_here.Hue is not loaded .*"
                       "import module_not_loaded_here here"):  # fmt: skip
        CODEC.unpackb(CODEC.packb(Hue.RED))
    [bad] = CODEC.unpackb(CODEC.packb([Hue.RED]), tolerant=True)
    assert "Hue is not loaded" in find_undecodable([bad]).message


def test_a_class_defined_again_decodes_as_the_one_defined_now():
    # a notebook cell run twice: the name now stands for the second class
    def define(field: str) -> type:
        cls = dataclasses.make_dataclass("Again", [field], namespace={"__module__": __name__})
        globals()["Again"] = cls
        return cls

    first = define("a")
    assert type(CODEC.unpackb(CODEC.packb(first(1)))) is first
    second = define("a")
    assert type(CODEC.unpackb(CODEC.packb(first(1)))) is second


def test_an_enum_defined_in_a_function_is_refused_when_encoded():
    class Local(enum.Enum):
        A = 1

    with pytest.raises(EncodeError, match="Local is defined inside a function.*module level"):
        CODEC.packb(Local.A)


# -- depth ----------------------------------------------------------------------------------------


def nest(depth: int, kinds: str = "t") -> Any:
    """`depth` levels of containers, cycling through kinds: t tuple, l list, d dict, D dataclass
    (two levels: its array and its fields' map), s frozenset, n NamedTuple."""
    value: Any = None
    level = 0
    while level < depth:
        kind = kinds[level % len(kinds)]
        if kind == "D" and level + 2 <= depth:
            value, level = Point(value, ()), level + 2
            continue
        value = {"t": lambda v: (v,), "l": lambda v: [v], "d": lambda v: {"k": v},
                 "s": lambda v: frozenset([v]), "n": lambda v: Pair(v, "r"),
                 "D": lambda v: (v,)}[kind](value)  # fmt: skip
        level += 1
    return value


def depth_of(value: Any) -> int:
    depth = 0
    while value is not None:
        if isinstance(value, Point):
            value, depth = value.x, depth + 2
            continue
        value = (
            value["k"]
            if isinstance(value, dict)
            else next(iter(value))
            if isinstance(value, frozenset)
            else value[0]
        )
        depth += 1
    return depth


@pytest.mark.parametrize("kinds", ["t", "l", "d", "s", "tldnD"])
def test_values_nest_up_to_max_depth_and_no_deeper(kinds):
    deepest = nest(MAX_DEPTH, kinds)
    out = CODEC.unpackb(CODEC.packb(deepest))
    assert depth_of(out) == MAX_DEPTH and type(out) is type(deepest)
    with pytest.raises(EncodeError, match=f"nested deeper than {MAX_DEPTH} levels.*flatten"):
        CODEC.packb(nest(MAX_DEPTH + 2, kinds))
    data = b"\x91" * (MAX_DEPTH + 1) + b"\xc0"
    with pytest.raises(ProtocolError, match=f"nested deeper than {MAX_DEPTH} levels"):
        CODEC.unpackb(data)


def test_a_deep_value_inside_a_frame_decodes_with_its_neighbours():
    deep = nest(MAX_DEPTH - 1, "tl")
    results = [result_part(1, CODEC.packb(deep)), result_part(2, CODEC.packb("next"))]
    frame_data = CODEC.frame_of_parts(RESULTS, "results", results, w="w1")
    for tolerant in (False, True):
        frame = CODEC.read_frame(frame_data, tolerant=tolerant)
        assert depth_of(frame["results"][0][2]) == MAX_DEPTH - 1
        assert frame["results"][1] == [2, True, "next"]
    body = CODEC.packb(["echo", [nest(MAX_DEPTH - 3)], {}, None])
    tasks = CODEC.read_frame(CODEC.frame_of_parts(TASKS, "tasks", [task_part(5, body)], run="r"))
    assert depth_of(tasks["tasks"][0][1][1][0]) == MAX_DEPTH - 3
    hostile = b"\x82\xa1v\x02\xa1t" + b"\x91" * 2000 + b"\xc0"  # {"v": 2, "t": [[[...]]]}
    for tolerant in (False, True):
        with pytest.raises(ProtocolError, match=f"nested deeper than {MAX_DEPTH} levels"):
            CODEC.read_frame(hostile, tolerant=tolerant)


def test_the_run_store_encodes_deep_values_or_says_why_not():
    store = RunStore()
    blob, error = store.encode(nest(500))
    assert error is None and depth_of(CODEC.unpackb(blob)) == 500
    blob, error = store.encode(nest(MAX_DEPTH + 1))
    assert blob is None and f"nested deeper than {MAX_DEPTH} levels" in error


DEEP_IN_A_SMALL_THREAD = """
import threading
from taskiq_dataflow.cluster.protocol import Codec, MAX_DEPTH, RESULTS, result_part
codec = Codec()
value = None
for _ in range(MAX_DEPTH):
    value = (value,)
def run():
    data = codec.packb(value)
    frame = codec.frame_of_parts(RESULTS, "results", [result_part(1, data)], w="w")
    codec.read_frame(frame)
    codec.unpackb(data)
    print("ok")
threading.stack_size(512 * 1024)
thread = threading.Thread(target=run)
thread.start()
thread.join()
"""


def test_max_depth_fits_a_512_kib_thread_stack():
    # in a subprocess: a stack overflow is a SIGSEGV, which must fail this test, not pytest
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DEEP_IN_A_SMALL_THREAD)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr[-2000:]


# -- extension payloads and protocol version 1 ---------------------------------------------------


def v1(code: int, inner: Any) -> msgpack.ExtType:
    """An extension of protocol version 1: a msgpack payload inside."""
    return msgpack.ExtType(code, msgpack.packb(inner, use_bin_type=True))


def test_values_written_by_protocol_version_1_still_decode():
    old = [
        v1(1, [1, v1(1, ["a"])]),
        v1(2, [1, 2]),
        v1(3, [v1(1, [3])]),
        v1(7, [1, 2, 3]),
        v1(10, [1.0, -1.0]),
        v1(12, ["b", "n", 7]),
        v1(14, ["k", "i", "c", 2, None]),
        v1(11, [__name__, "Point", {"x": 1, "y": ()}]),
    ]
    got = CODEC.unpackb(msgpack.packb(old, use_bin_type=True))
    want = [
        (1, ("a",)),
        {1, 2},
        frozenset({(3,)}),
        dt.timedelta(1, 2, 3),
        complex(1, -1),
        ValueRef("b", "n", 7),
        StreamRef("k", "i", "c", 2, None),
        {"x": 1, "y": []},  # Point is a dataclass, not a pydantic model: its fields
    ]
    assert same(got, want)


def test_extension_payloads_nest_at_most_max_ext_depth():
    data: Any = []
    for _ in range(MAX_EXT_DEPTH):
        data = v1(1, data)
    assert CODEC.unpackb(msgpack.packb(data)) is not None
    packed = Packed(CODEC.packb([Packed(CODEC.packb((1,)))]))
    assert CODEC.unpackb(CODEC.packb(packed)) == [(1,)]
    with pytest.raises(ProtocolError, match=f"nested deeper than {MAX_EXT_DEPTH} levels"):
        CODEC.unpackb(msgpack.packb(v1(1, data)))


def test_a_marker_anywhere_but_at_the_head_of_its_array_is_an_error():
    tuple_mark = msgpack.ExtType(15, b"")
    for stray in ([1, tuple_mark], tuple_mark, {"k": tuple_mark}, {tuple_mark: 1}):
        with pytest.raises(ProtocolError, match="marker extension outside of the array"):
            CODEC.unpackb(msgpack.packb(stray))
    assert CODEC.unpackb(msgpack.packb([tuple_mark, 1])) == (1,)  # and the codec is still fine


def test_a_value_decodes_the_same_when_its_first_marker_comes_after_other_extensions():
    """A frame is first read without the list hook, given up at its first marker array: the
    values decoded before it (a user type, a datetime) are decoded again in the second pass."""
    decoded: list[bytes] = []

    class Tag:
        def __init__(self, name: str) -> None:
            self.name = name

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Tag) and other.name == self.name

    def decode(data: bytes) -> Tag:
        decoded.append(data)
        return Tag(data.decode())

    codec = Codec()
    codec.register(Tag, 70, lambda tag: tag.name.encode(), decode)
    when = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    plain = {"tag": Tag("first"), "at": when, "items": [1, [2, "three"]]}
    assert codec.unpackb(codec.packb(plain)) == plain
    assert decoded == [b"first"]  # no marker at all: one pass
    value = {"tag": Tag("a"), "at": when, "pair": (1, 2), "set": {3}, "tail": [Tag("b"), (4,)]}
    decoded.clear()
    again = codec.unpackb(codec.packb(value))
    assert again == value and type(again["pair"]) is tuple and type(again["tail"][1]) is tuple
    assert decoded == [b"a", b"a", b"b"]  # the one ahead of the first marker, twice
