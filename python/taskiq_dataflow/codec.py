"""The value codec: msgpack with extension types, for the cluster's frames, the run store and
the result cache alike. No pickle. (The frames themselves are `cluster/protocol.py`'s.)

Values travel as msgpack data, and the types msgpack lacks come back as the same type:

- tuple, set, frozenset, NamedTuple, dataclass, pydantic model, Enum member (Enum, IntEnum,
  StrEnum, Flag, IntFlag), ValueRef, StreamRef: an array whose first element is a marker
  extension (naming the class where there is one) followed by the items. The decoder rebuilds
  them in msgpack's `list_hook`, so a level of nesting is one array level and never a nested
  decode: nothing recurses on the C stack, however the values nest.
- datetime (a `zoneinfo` zone is kept by its key), date, time, timedelta, UUID, Decimal,
  complex, Fraction, pathlib paths: leaf extensions whose payload is text or fixed-size binary.
- bytearray and memoryview travel as bytes (equal to them; msgpack packs them before any hook).

Classes: a frame names a class by module and qualified name, looked up only among modules
already imported (a frame never makes a process import code). Where the class is not loaded, a
NamedTuple comes back as a plain tuple and an enum member with a plain-typed value (IntEnum,
StrEnum, IntFlag) as that value, both equal to the original; a dataclass or pydantic model comes
back as the dict of its fields (attribute access then fails loudly). A plain Enum or Flag member,
whose value would compare unequal to it and so change results silently, is a ProtocolError that
names the class: import its module where the value is decoded (in the task's module, say).

Depth: any message, value or frame, nests at most MAX_DEPTH containers (arrays and maps, so
tuples, sets and dataclasses count too). msgpack's Packer and Unpacker stop at that same bound,
so the encoder raises EncodeError and the decoder ProtocolError, and what the encoder accepts
the decoder accepts; `read_frame` decodes the entries of a frame that is too deep as a whole one
by one, so a frame's own levels never count against its values. Extension payloads decoded
inside one another (`Packed`, user codecs that call the codec, the encoding of protocol version
1) nest at most MAX_EXT_DEPTH deep. Packing a value at the bound takes under 512 KiB of C stack
(threads get 8 MiB on Linux); decoding takes a fixed 42 KiB.

Anything else needs an extension codec registered on a `Codec`, or it is refused with an error
naming the task.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import fractions
import os
import pathlib
import reprlib
import struct
import sys
import threading
import uuid
import weakref
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import EncodeError, ProtocolError
from .streams import StreamRef

# 2: tuples, sets and named classes became marker arrays (version 1 nested a msgpack payload in
# an extension per level); version 1 values still decode, so older stores stay readable.
VERSION = 2

# msgpack's own bound, in its Packer and Unpacker alike (it is compiled in, not an option)
MAX_DEPTH = 1024
MAX_EXT_DEPTH = 16

# Extension type codes (0-63 reserved for the protocol; user codecs use 64-127).
# Leaves: the payload is the value.
_DATETIME, _DATE, _TIME, _UUID, _DECIMAL, _PACKED = 4, 5, 6, 8, 9, 13
_TIMEDELTA, _COMPLEX, _FRACTION, _PATH = 24, 25, 26, 27
# Markers: the first element of the array that stands for the value.
_TUPLE_AT, _SET_AT, _FROZENSET_AT, _NAMEDTUPLE, _DATACLASS = 15, 16, 17, 18, 19
_MODEL_AT, _ENUM, _REF_AT, _STREAM_AT = 20, 21, 22, 23
_FIRST_MARK, _LAST_MARK = 15, 23
# Protocol version 1 put a msgpack payload inside the extension; read, never written.
_V1_TUPLE, _V1_SET, _V1_FROZENSET, _V1_TIMEDELTA, _V1_COMPLEX = 1, 2, 3, 7, 10
_V1_MODEL, _V1_REF, _V1_STREAM = 11, 12, 14
USER_CODES = range(64, 128)


class _TooDeep(ProtocolError):
    """A message nested deeper than msgpack decodes in one piece."""


_DEPTH_HELP = (
    "flatten it (a list of rows instead of a chain of nested containers) or register an "
    "extension codec for its type (Codec.register)"
)


@dataclass(frozen=True, slots=True)
class ValueRef:
    """A large value kept in the JetStream object store and passed by name."""

    bucket: str
    name: str
    size: int


class Undecodable:
    """Stands for a value a tolerant read could not decode (an unknown extension type...)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"Undecodable({self.message!r})"


def find_undecodable(value: Any) -> Undecodable | None:
    """The first Undecodable inside a value from a tolerant read, if any (depth first, without
    recursion: values nest up to MAX_DEPTH levels)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is Undecodable:
            return item
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, (set, frozenset)):
            stack.extend(reversed(list(item)))
        elif isinstance(item, dict):
            stack.extend(reversed([*item.keys(), *item.values()]))
    return None


@dataclass(frozen=True, slots=True)
class Packed:
    """A value already encoded with this codec (sent as is, decoded on arrival)."""

    data: bytes


@dataclass(frozen=True)
class _UserType:
    code: int
    type: type
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


class _Mark(tuple[int, bytes]):
    """A decoded marker extension (code, class name), until the array it heads is rebuilt into
    the value it stands for."""

    __slots__ = ()


class Codec:
    """msgpack with extension types. `register(MyType, code, encode, decode)` adds your own."""

    def __init__(self) -> None:
        self._by_type: dict[type, _UserType] = {}
        self._by_code: dict[int, _UserType] = {}
        # msgpack.packb builds a Packer per call, which costs several times the packing of a
        # small value; one Packer per thread, never re-entered (a user codec may pack parts)
        self._local = threading.local()

    def register(
        self,
        type_: type,
        code: int,
        encode: Callable[[Any], bytes],
        decode: Callable[[bytes], Any],
    ) -> None:
        if code not in USER_CODES:
            raise ValueError(f"extension codes 64..127 are for user types, got {code}")
        if code in self._by_code:
            raise ValueError(f"extension code {code} is already used by {self._by_code[code].type}")
        entry = _UserType(code, type_, encode, decode)
        self._by_type[type_] = entry
        self._by_code[code] = entry

    # -- encoding -------------------------------------------------------------------------------

    def _default(self, obj: Any) -> Any:
        # What is returned is packed in the same Packer call: a marker array adds one level of
        # msgpack's bounded nesting and no Python or C recursion of its own.
        cls = type(obj)
        if cls is tuple:
            return [_TUPLE_MARK, *obj]
        user = self._by_type.get(cls)
        if user is not None:
            return msgpack.ExtType(user.code, user.encode(obj))
        if cls is set:
            return [_SET_MARK, *obj]
        if cls is frozenset:
            return [_FROZENSET_MARK, *obj]
        if isinstance(obj, enum.Enum):
            return [_named_mark(_ENUM, cls), obj.value]
        leaf = _leaf(obj)
        if leaf is not None:
            return leaf
        if isinstance(obj, Packed):
            return msgpack.ExtType(_PACKED, obj.data)
        if isinstance(obj, ValueRef):
            return [_REF_MARK, obj.bucket, obj.name, obj.size]
        if isinstance(obj, StreamRef):
            return [_STREAM_MARK, obj.key, obj.items, obj.credits, obj.buffer, obj.values]
        return self._default_by_kind(obj, cls)

    def _default_by_kind(self, obj: Any, cls: type) -> Any:
        if isinstance(obj, tuple):
            if hasattr(cls, "_fields"):
                return [_named_mark(_NAMEDTUPLE, cls), *obj]
            return [_TUPLE_MARK, *obj]  # another tuple subclass travels as a tuple
        if isinstance(obj, (set, frozenset)):
            return [_FROZENSET_MARK if isinstance(obj, frozenset) else _SET_MARK, *obj]
        if hasattr(cls, "__dataclass_fields__"):
            return [_named_mark(_DATACLASS, cls), _dataclass_fields(obj, cls)]
        dump = getattr(obj, "model_dump", None)
        if dump is not None and hasattr(cls, "model_validate"):
            return [_named_mark(_MODEL_AT, cls), dump(mode="python")]
        for base, user in self._by_type.items():
            if isinstance(obj, base):
                return msgpack.ExtType(user.code, user.encode(obj))
        # Other subclasses of plain types (OrderedDict, a str subclass...) travel as the plain type
        plain: type[Any]
        for plain in (bool, int, float, str, bytes, dict, list):
            if isinstance(obj, plain):
                return str.__str__(obj) if plain is str else plain(obj)
        raise EncodeError(
            f"cannot encode a value of type {cls.__module__}.{cls.__qualname__} "
            "with msgpack; return plain data, a dataclass, a pydantic model, or register an "
            "extension codec (Codec.register)"
        )

    def packb(self, obj: Any) -> bytes:
        local = self._local
        # _packer inlined: packb runs once per value sent
        packer = getattr(local, "packer", None)
        if packer is None or local.busy:
            packer = self._packer(local)
        else:
            local.busy = True
        try:
            packed: bytes = packer.pack(obj)
            return packed
        except EncodeError:
            packer.reset()
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            packer.reset()
            raise _encode_error(exc) from None
        finally:
            if packer is local.packer:
                local.busy = False

    def pack_each(self, objs: Iterable[Any]) -> list[bytes]:
        """`[self.packb(obj) for obj in objs]` with one packer fetched for them all (the
        engine encodes every task body of a batch at once). The first that cannot be encoded
        raises, as packb would."""
        local = self._local
        packer = self._packer(local)
        try:
            return list(map(packer.pack, objs))
        except EncodeError:
            packer.reset()
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            packer.reset()
            raise _encode_error(exc) from None
        finally:
            if packer is local.packer:
                local.busy = False

    def _packer(self, local: threading.local) -> msgpack.Packer:
        """This thread's packer, marked busy; a fresh one when it is busy already (a hook
        called from inside a pack encodes a value of its own)."""
        packer = getattr(local, "packer", None)
        if packer is None:
            packer = local.packer = msgpack.Packer(
                default=self._default, strict_types=True, use_bin_type=True
            )
            local.busy = False
        if local.busy:
            return msgpack.Packer(default=self._default, strict_types=True, use_bin_type=True)
        local.busy = True
        return packer

    # -- decoding -------------------------------------------------------------------------------

    def _decoder(self) -> _Decoder:
        try:
            return self._local.decoder  # type: ignore[no-any-return]
        except AttributeError:
            decoder = self._local.decoder = _Decoder(self._by_code)
            return decoder

    def unpackb(self, data: bytes, lazy: bool = False, tolerant: bool = False) -> Any:
        """Decode; with `lazy`, pre-encoded parts stay Packed (decode them one by one); with
        `tolerant`, a value that cannot be decoded becomes an Undecodable. Raises only
        ProtocolError."""
        try:
            decoder = self._local.decoder
        except AttributeError:
            decoder = self._decoder()
        return decoder.unpack(data, lazy, tolerant, "value")

    # -- frames ---------------------------------------------------------------------------------

    def frame(self, kind: str, **fields: Any) -> bytes:
        return self.packb({"v": VERSION, "t": kind, **fields})

    def frame_of_parts(self, kind: str, key: str, parts: list[bytes], **fields: Any) -> bytes:
        """A frame whose `key` is the list of `parts`, each one value already encoded with this
        codec: they are joined as bytes, not decoded and encoded again."""
        head = self.packb({"v": VERSION, "t": kind, **fields})
        size = len(fields) + 3
        if size > 15 or head[0] != 0x80 | (size - 1):
            raise ValueError("frame_of_parts takes at most 12 fields")
        return b"".join(
            [bytes((0x80 | size,)), head[1:], self.packb(key), _array_header(len(parts)), *parts]
        )

    def last_read_plain(self) -> bool:
        """Whether the last frame or value this thread decoded held no extension type at all:
        no marker array, reference, user type, date... (so no ValueRef nor StreamRef)."""
        return self._decoder().plain

    def read_frame(self, data: bytes, lazy: bool = False, tolerant: bool = False) -> dict[str, Any]:
        """Decode a frame; ProtocolError says what is wrong with it. With `tolerant`, values
        that cannot be decoded are Undecodable (see find_undecodable) instead of an error."""
        try:
            frame = self._decoder().unpack(data, lazy, tolerant, "frame")
        except _TooDeep:
            frame = self._decoder().unpack_split(data, lazy, tolerant)
        if not isinstance(frame, dict) or "t" not in frame:
            raise ProtocolError(f"not a dataflow frame: {_short(frame)}")
        if frame.get("v") != VERSION:
            raise ProtocolError(
                f"frame has protocol version {_short(frame.get('v'))}; this side speaks {VERSION}"
            )
        return frame


def _encode_error(exc: Exception) -> EncodeError:
    """What msgpack raised, as the EncodeError that says what to do about it."""
    if "recursion limit" in str(exc):
        return EncodeError(
            f"the value is nested deeper than {MAX_DEPTH} levels (lists, dicts, tuples, "
            f"dataclasses...), which msgpack cannot carry: {_DEPTH_HELP}"
        )
    if isinstance(exc, OverflowError):
        return EncodeError(
            f"{exc}: msgpack carries integers from -2**63 to 2**64-1; send a larger one as a str "
            "or a Decimal"
        )
    return EncodeError(str(exc))


# ExtType.__new__ re-checks its arguments in Python, which costs more than packing a small value;
# these are valid by construction.
_new_ext = tuple.__new__


def packed(data: bytes) -> msgpack.ExtType:
    """Bytes encoded by a Codec, as a part of a frame: what `Packed(data)` becomes on the wire,
    but packed by msgpack itself, without a call to `Codec._default`."""
    return _new_ext(msgpack.ExtType, (_PACKED, data))


def _uint(n: int) -> bytes:
    if n < 0x80:
        return _FIXINT[n]
    if n < 0x10000:
        return b"\xcd" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\xce" + n.to_bytes(4, "big")
    return b"\xcf" + n.to_bytes(8, "big")


_FIXINT = [bytes((i,)) for i in range(0x80)]


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80
_short = _REPR.repr  # bounded however deep or large the value (repr() would recurse)

_TUPLE_MARK = _new_ext(msgpack.ExtType, (_TUPLE_AT, b""))
_SET_MARK = _new_ext(msgpack.ExtType, (_SET_AT, b""))
_FROZENSET_MARK = _new_ext(msgpack.ExtType, (_FROZENSET_AT, b""))
_REF_MARK = _new_ext(msgpack.ExtType, (_REF_AT, b""))
_STREAM_MARK = _new_ext(msgpack.ExtType, (_STREAM_AT, b""))
_STRAY_MARK = "a marker extension outside of the array it heads"
_PLAIN_VALUES = (int, str, float, bytes)
_TIMEDELTA_STRUCT = struct.Struct(">iii")
_COMPLEX_STRUCT = struct.Struct(">dd")
# a frame's own levels: map, list of entries, entry, task body, args: what lies below is values
_SPLIT_LEVELS = 8
_ARRAY_HEADS = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])
_MAP_HEADS = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])

# Per class, and weakly: a class defined again (a notebook cell run twice) is a new entry, and
# the old one goes with its class. Names are resolved afresh on each decode for the same reason.
_MARKS_OF: weakref.WeakKeyDictionary[type, dict[int, msgpack.ExtType]] = weakref.WeakKeyDictionary()
_FIELDS_OF: weakref.WeakKeyDictionary[type, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _named_mark(code: int, cls: type) -> msgpack.ExtType:
    marks = _MARKS_OF.get(cls)
    if marks is None:
        marks = _MARKS_OF[cls] = {}
    mark = marks.get(code)
    if mark is None:
        name = f"{cls.__module__}:{cls.__qualname__}".encode()
        if code == _ENUM:
            # '=': the member's value equals the member, so it may stand in for an unloaded class
            plain = issubclass(cls, _PLAIN_VALUES)
            if not plain and "<locals>" in cls.__qualname__:
                raise EncodeError(
                    f"enum {cls.__module__}.{cls.__qualname__} is defined inside a function, "
                    "so no other process can find it by name: define it at module level"
                )
            name = (b"=" if plain else b"!") + name
        mark = marks[code] = msgpack.ExtType(code, name)
    return mark


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS_OF.get(cls)
    if names is None:
        names = _FIELDS_OF[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _dataclass_fields(obj: Any, cls: type) -> dict[str, Any]:
    try:
        return {name: getattr(obj, name) for name in _field_names(cls)}
    except AttributeError as exc:
        raise EncodeError(f"dataclass {cls.__module__}.{cls.__qualname__}: {exc}") from None


def _loaded(name: bytes) -> type | None:
    """The class `module:qualname` if its module is already imported; never imports, and reads
    namespaces directly so no module `__getattr__` (a lazy import) runs either."""
    module, _, qualname = name.decode().partition(":")
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        namespace = getattr(obj, "__dict__", None)
        obj = namespace.get(part) if namespace is not None else None
    return obj if isinstance(obj, type) else None


def _class_name(name: bytes) -> str:
    return name.decode(errors="replace").replace(":", ".", 1)


# -- leaves ---------------------------------------------------------------------------------------


def _leaf(obj: Any) -> msgpack.ExtType | None:
    if isinstance(obj, dt.datetime):
        return msgpack.ExtType(_DATETIME, _datetime_text(obj))
    if isinstance(obj, dt.date):
        return msgpack.ExtType(_DATE, obj.isoformat().encode())
    if isinstance(obj, dt.time):
        return msgpack.ExtType(_TIME, _datetime_text(obj))
    if isinstance(obj, dt.timedelta):
        data = _TIMEDELTA_STRUCT.pack(obj.days, obj.seconds, obj.microseconds)
        return msgpack.ExtType(_TIMEDELTA, data)
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(_UUID, obj.bytes)
    if isinstance(obj, decimal.Decimal):
        return msgpack.ExtType(_DECIMAL, str(obj).encode())
    if isinstance(obj, complex):
        return msgpack.ExtType(_COMPLEX, _COMPLEX_STRUCT.pack(obj.real, obj.imag))
    if isinstance(obj, fractions.Fraction):
        # hexadecimal: int <-> decimal text is refused past 4,300 digits, hex has no limit
        return msgpack.ExtType(_FRACTION, f"{obj.numerator:x}/{obj.denominator:x}".encode())
    if isinstance(obj, pathlib.PurePath):
        kind = b"w" if isinstance(obj, pathlib.PureWindowsPath) else b"p"
        if isinstance(obj, pathlib.Path):
            kind = kind.upper()
        return msgpack.ExtType(_PATH, kind + str(obj).encode("utf-8", "surrogateescape"))
    return None


def _datetime_text(value: dt.datetime | dt.time) -> bytes:
    """ISO 8601, then what it leaves out, in brackets: the zone's key and the fold, if any
    ('2024-10-27T02:30:00+01:00[Europe/Paris|fold]')."""
    text = value.isoformat()
    zone = value.tzinfo
    key = zone.key if isinstance(zone, zoneinfo.ZoneInfo) and zone.key else ""
    if key or value.fold:
        text = f"{text}[{key}{'|fold' if value.fold else ''}]"
    return text.encode()


def _extras(data: bytes) -> tuple[str, str, int]:
    """ISO text, zone key and fold of a _datetime_text."""
    text = data.decode()
    if not text.endswith("]"):
        return text, "", 0
    text, _, extra = text[:-1].partition("[")
    key, _, fold = extra.partition("|")
    if fold not in ("", "fold"):
        raise ProtocolError(f"unknown datetime extra {_short(extra)}")
    return text, key, int(bool(fold))


def _datetime(data: bytes) -> dt.datetime:
    text, key, fold = _extras(data)
    value = dt.datetime.fromisoformat(text)
    if not key:
        return value.replace(fold=fold)
    if value.tzinfo is None:
        raise ProtocolError(f"datetime {text} names zone {key} but has no UTC offset")
    zone = zoneinfo.ZoneInfo(key)
    local = value.replace(tzinfo=None)
    for candidate in (local.replace(tzinfo=zone, fold=fold), local.replace(tzinfo=zone)):
        if candidate.utcoffset() == value.utcoffset():
            return candidate
    return value.astimezone(zone)  # the zone's rules differ here: the same instant, in the zone


def _time(data: bytes) -> dt.time:
    text, key, fold = _extras(data)
    value = dt.time.fromisoformat(text).replace(fold=fold)
    return value.replace(tzinfo=zoneinfo.ZoneInfo(key)) if key else value


def _timedelta(data: bytes) -> dt.timedelta:
    days, seconds, micros = _TIMEDELTA_STRUCT.unpack(data)
    return dt.timedelta(days=days, seconds=seconds, microseconds=micros)


def _fraction(data: bytes) -> fractions.Fraction:
    numerator, slash, denominator = data.decode().partition("/")
    if not slash:
        raise ProtocolError(f"a Fraction must be 'n/d' in hexadecimal, got {_short(data)}")
    return fractions.Fraction(int(numerator, 16), int(denominator, 16))


def _path(data: bytes) -> pathlib.PurePath:
    kind, text = data[:1], data[1:].decode("utf-8", "surrogateescape")
    if kind not in (b"p", b"P", b"w", b"W"):
        raise ProtocolError(f"unknown path kind {_short(kind)}")
    windows = kind in (b"w", b"W")
    if kind.isupper() and windows == (os.name == "nt"):
        return pathlib.Path(text)
    # a concrete path of the other system's kind cannot exist here: its pure kind can
    return pathlib.PureWindowsPath(text) if windows else pathlib.PurePosixPath(text)


_LEAVES: dict[int, Callable[[bytes], Any]] = {
    _DATETIME: _datetime,
    _DATE: lambda data: dt.date.fromisoformat(data.decode()),
    _TIME: _time,
    _UUID: lambda data: uuid.UUID(bytes=data),
    _DECIMAL: lambda data: decimal.Decimal(data.decode()),
    _TIMEDELTA: _timedelta,
    _COMPLEX: lambda data: complex(*_COMPLEX_STRUCT.unpack(data)),
    _FRACTION: _fraction,
    _PATH: _path,
}


# -- marker arrays --------------------------------------------------------------------------------


def _one(items: list[Any], what: str) -> Any:
    if len(items) != 1:
        raise ProtocolError(f"a {what} array must hold one element after its marker")
    return items[0]


def _build_namedtuple(name: bytes, items: list[Any]) -> tuple[Any, ...]:
    cls = _loaded(name)
    if cls is not None and issubclass(cls, tuple) and hasattr(cls, "_make"):
        return cls._make(items)  # type: ignore[no-any-return]
    return tuple(items)


def _build_dataclass(name: bytes, items: list[Any]) -> Any:
    fields = _one(items, "dataclass")
    if not isinstance(fields, dict):
        raise ProtocolError(f"dataclass {_class_name(name)}: its fields must be a map")
    cls = _loaded(name)
    if cls is None or not dataclasses.is_dataclass(cls):
        return fields
    expected = _field_names(cls)
    if sorted(fields) != sorted(expected):
        raise ProtocolError(
            f"dataclass {_class_name(name)} has fields {list(expected)} here but the value "
            f"carries {_short(list(fields))}: run the same version of {cls.__module__} on both "
            "sides"
        )
    # as pickle does: the state as it was, without running __init__ or __post_init__ again
    obj = cls.__new__(cls)
    for key, value in fields.items():
        object.__setattr__(obj, key, value)
    return obj


def _build_model(name: bytes, items: list[Any]) -> Any:
    fields = _one(items, "model")
    cls = _loaded(name)
    validate = getattr(cls, "model_validate", None)
    return fields if validate is None else validate(fields)


def _build_enum(name: bytes, items: list[Any]) -> Any:
    value = _one(items, "enum")
    cls = _loaded(name[1:])
    if cls is not None and issubclass(cls, enum.Enum):
        return cls(value)
    if name[:1] == b"=":
        return value  # an IntEnum/StrEnum/IntFlag member's value equals the member
    module = name[1:].decode(errors="replace").partition(":")[0]
    raise ProtocolError(
        f"enum {_class_name(name[1:])} is not loaded in this process, and its value "
        f"{_short(value)} would not compare equal to the member: import {module} here (from "
        "the task's module, say)"
    )


def _build_ref(_: bytes, items: list[Any]) -> ValueRef:
    bucket, name, size = items
    if type(bucket) is not str or type(name) is not str or type(size) is not int or size < 0:
        raise ProtocolError(f"a ValueRef is [bucket, name, size], got {_short(items)}")
    return ValueRef(bucket, name, size)


def _build_stream(_: bytes, items: list[Any]) -> StreamRef:
    key, subject, credits, buffer, values = items
    if not (
        type(key) is str
        and type(subject) is str
        and type(credits) is str
        and type(buffer) is int
        and (values is None or type(values) is list)
    ):
        raise ProtocolError(
            f"a StreamRef is [key, items, credits, buffer, values], got {_short(items)}"
        )
    return StreamRef(key, subject, credits, buffer, values)


_BUILDERS: dict[int, Callable[[bytes, list[Any]], Any]] = {
    _TUPLE_AT: lambda _, items: tuple(items),
    _SET_AT: lambda _, items: set(items),
    _FROZENSET_AT: lambda _, items: frozenset(items),
    _NAMEDTUPLE: _build_namedtuple,
    _DATACLASS: _build_dataclass,
    _MODEL_AT: _build_model,
    _ENUM: _build_enum,
    _REF_AT: _build_ref,
    _STREAM_AT: _build_stream,
}
# containers find_undecodable looks into
_TRANSPARENT = frozenset([_TUPLE_AT, _SET_AT, _FROZENSET_AT, _NAMEDTUPLE])


# -- protocol version 1 ---------------------------------------------------------------------------


def _model(module: str, qualname: str, fields: Any) -> Any:
    """A pydantic model of protocol version 1: rebuilt if its class is loaded, else its data."""
    return _build_model(f"{module}:{qualname}".encode(), [fields])


def _v1_timedelta(parts: Any) -> dt.timedelta:
    days, seconds, micros = parts
    return dt.timedelta(days=days, seconds=seconds, microseconds=micros)


_V1_NESTED: dict[int, Callable[[Any], Any]] = {
    _V1_TUPLE: tuple,
    _V1_SET: set,
    _V1_FROZENSET: frozenset,
    _V1_TIMEDELTA: _v1_timedelta,
    _V1_COMPLEX: lambda parts: complex(*parts),
    _V1_MODEL: lambda parts: _model(*parts),
    _V1_REF: lambda parts: _build_ref(b"", parts),
    _V1_STREAM: lambda parts: _build_stream(b"", parts),
}


# -- decoding helpers -----------------------------------------------------------------------------


def _walk(unpacker: msgpack.Unpacker, data: bytes, list_hook: Any, levels: int) -> Any:
    if levels:
        head = data[unpacker.tell()]
        if head in _ARRAY_HEADS:
            count = unpacker.read_array_header()
            return list_hook([_walk(unpacker, data, list_hook, levels - 1) for _ in range(count)])
        if head in _MAP_HEADS:
            out = {}
            for _ in range(unpacker.read_map_header()):
                key = _walk(unpacker, data, list_hook, levels - 1)
                out[key] = _walk(unpacker, data, list_hook, levels - 1)
            return out
    return unpacker.unpack()


# -- decoding -------------------------------------------------------------------------------------


class _Decoder:
    """A codec's decoding hooks for one thread, with that thread's decoding state: the hooks
    are called from msgpack's C code and cannot be handed any state of their own."""

    def __init__(self, by_code: dict[int, _UserType]) -> None:
        self.by_code = by_code
        self.marks = 0  # markers seen minus markers consumed by the array each heads
        self.ext_depth = 0  # extension payloads being decoded inside one another
        # whether the last value unpack() decoded held no extension type at all (Codec.
        # last_read_plain): no marker array, reference, user type, date...
        self.plain = False
        self.list_hook = _list_hook(self.build)
        self.strict = (self.ext_hook, self.list_hook)
        self.hooks = {
            (False, False): (self.ext_hook, self.list_hook),
            (True, False): (self.lazy_ext_hook, self.list_hook),
            (True, True): (self.lazy_ext_hook, self.list_hook),
            (False, True): (self.tolerant_ext_hook, self.tolerant_list_hook),
        }
        # each mode's ext hook for a first pass without the list hook (see unpack)
        self.probes = {mode: _probing(hooks[0], self) for mode, hooks in self.hooks.items()}
        self.strict_probe = self.probes[False, False]

    def unpack(self, data: bytes, lazy: bool, tolerant: bool, what: str) -> Any:
        if lazy or tolerant:
            (ext_hook, list_hook), probe = self.hooks[lazy, tolerant], self.probes[lazy, tolerant]
        else:
            (ext_hook, list_hook), probe = self.strict, self.strict_probe
        marks = self.marks
        self.plain = False
        try:
            if self.ext_depth:  # a user codec decoding its payload: keep off the C stack
                value = _unpack_whole(_unpacker(data, ext_hook, list_hook), len(data))
            else:
                # msgpack calls the list hook for every array, which only marker arrays need:
                # a first pass without it, given up at the first marker, and then a second
                # pass with it (most frames hold no marker: plain data, None, str, numbers)
                try:
                    self.plain = True  # until the probe meets an extension type
                    value = msgpack.unpackb(data, ext_hook=probe, raw=False, strict_map_key=False)
                except _HasMarks:
                    self.plain = False
                    value = msgpack.unpackb(
                        data, ext_hook=ext_hook, list_hook=list_hook, raw=False,
                        strict_map_key=False,
                    )  # fmt: skip
        except Exception as exc:
            raise self.error(exc, marks, what) from None
        if self.marks != marks:
            raise self.error(ProtocolError(_STRAY_MARK), marks, what)
        return value

    def unpack_split(self, data: bytes, lazy: bool, tolerant: bool) -> Any:
        """Decode a frame too deep for one piece: its top levels (the frame's own, down to the
        entries) one element at a time, each value below them in one piece."""
        ext_hook, list_hook = self.hooks[lazy, tolerant]
        marks = self.marks
        try:
            unpacker = _unpacker(data, ext_hook, list_hook)
            value = _walk(unpacker, data, list_hook, _SPLIT_LEVELS)
            if unpacker.tell() != len(data):
                raise ProtocolError("bytes after the end of the frame")
        except Exception as exc:
            raise self.error(exc, marks, "frame") from None
        if self.marks != marks:
            raise self.error(ProtocolError(_STRAY_MARK), marks, "frame")
        return value

    def error(self, exc: Exception, marks: int, what: str) -> ProtocolError:
        self.marks = marks  # the markers of a failed decode were never consumed
        self.plain = False
        if isinstance(exc, msgpack.StackError):
            return _TooDeep(f"a {what} nested deeper than {MAX_DEPTH} levels")
        if isinstance(exc, ProtocolError):
            return exc
        return ProtocolError(f"not a msgpack {what} ({type(exc).__name__}: {exc})")

    # -- hooks ----------------------------------------------------------------------------------

    def ext_hook(self, code: int, data: bytes) -> Any:
        if _FIRST_MARK <= code <= _LAST_MARK:
            self.marks += 1
            return _SIMPLE_MARKS.get(code) or _new_mark(_Mark, (code, data))
        leaf = _LEAVES.get(code)
        if leaf is not None:
            return leaf(data)
        if code in _V1_NESTED:
            return _V1_NESTED[code](self.nested(self.unpack_payload, data))
        if code == _PACKED:
            return self.nested(self.unpack_payload, data)
        user = self.by_code.get(code)
        if user is None:
            raise ProtocolError(f"unknown msgpack extension type {code}; register a codec for it")
        return self.nested(user.decode, data)

    def lazy_ext_hook(self, code: int, data: bytes) -> Any:
        return Packed(data) if code == _PACKED else self.ext_hook(code, data)

    def tolerant_ext_hook(self, code: int, data: bytes) -> Any:
        try:
            return self.ext_hook(code, data)
        except Exception as exc:
            return Undecodable(str(exc) or type(exc).__name__)

    def build(self, items: list[Any]) -> Any:
        """The value a marker array stands for (`items` without its marker)."""
        head = items.pop(0)
        self.marks -= 1
        if head is _TUPLE_HEAD:
            return tuple(items)
        return _BUILDERS[head[0]](head[1], items)

    def tolerant_list_hook(self, items: list[Any]) -> Any:
        if not items or type(items[0]) is not _Mark:
            return items
        if items[0][0] not in _TRANSPARENT:
            # the rebuilt object would hide its fields from find_undecodable: report them
            bad = find_undecodable(items[1:])
            if bad is not None:
                self.marks -= 1
                return bad
        try:
            return self.build(items)
        except Exception as exc:
            return Undecodable(str(exc) or type(exc).__name__)

    # -- extension payloads ---------------------------------------------------------------------

    def nested(self, decode: Callable[[bytes], Any], data: bytes) -> Any:
        """Decode an extension payload that may itself hold payloads, to MAX_EXT_DEPTH levels."""
        if self.ext_depth >= MAX_EXT_DEPTH:
            raise ProtocolError(f"extension payloads nested deeper than {MAX_EXT_DEPTH} levels")
        self.ext_depth += 1
        try:
            return decode(data)
        except (msgpack.StackError, _TooDeep):
            # too deep inside a payload: not for read_frame to retry split at the top
            raise ProtocolError(
                f"an extension payload is nested deeper than {MAX_DEPTH} levels"
            ) from None
        finally:
            self.ext_depth -= 1

    def unpack_payload(self, data: bytes) -> Any:
        # an Unpacker keeps its 42 KiB parsing stack in the object, unpackb on the C stack
        marks = self.marks
        value = _unpack_whole(_unpacker(data, self.ext_hook, self.list_hook), len(data))
        if self.marks != marks:
            raise ProtocolError(_STRAY_MARK)
        return value


class _HasMarks(ProtocolError):
    """A value holds a marker array: decode it again with the list hook (never leaves
    _Decoder.unpack; in the package's one tree as every exception of it)."""


def _probing(
    ext_hook: Callable[[int, bytes], Any], decoder: _Decoder
) -> Callable[[int, bytes], Any]:
    def probe(code: int, data: bytes) -> Any:
        if _FIRST_MARK <= code <= _LAST_MARK:
            raise _HasMarks
        decoder.plain = False
        return ext_hook(code, data)

    return probe


def _list_hook(build: Callable[[list[Any]], Any]) -> Callable[[list[Any]], Any]:
    # msgpack calls this for every array it decodes: a closure with its names bound locally,
    # the cheapest test there is for the common case, a plain list
    def list_hook(items: list[Any], _Mark: type = _Mark, type: type = type) -> Any:
        if items and type(items[0]) is _Mark:
            return build(items)
        return items

    return list_hook


def _unpack_whole(unpacker: msgpack.Unpacker, size: int) -> Any:
    value = unpacker.unpack()
    if unpacker.tell() != size:
        raise ProtocolError("bytes after the end of the value")
    return value


def _unpacker(data: bytes, ext_hook: Any, list_hook: Any) -> msgpack.Unpacker:
    # the buffer limit also caps every declared length at the size of the data
    unpacker = msgpack.Unpacker(
        ext_hook=ext_hook,
        list_hook=list_hook,
        raw=False,
        strict_map_key=False,
        max_buffer_size=max(len(data), 1),
    )
    unpacker.feed(data)
    return unpacker


_new_mark = tuple.__new__
_TUPLE_HEAD = _new_mark(_Mark, (_TUPLE_AT, b""))
_SIMPLE_MARKS = {
    code: _TUPLE_HEAD if code == _TUPLE_AT else _new_mark(_Mark, (code, b""))
    for code in (_TUPLE_AT, _SET_AT, _FROZENSET_AT, _REF_AT, _STREAM_AT)
}


DEFAULT_CODEC = Codec()
