"""Wire protocol of the NATS cluster: msgpack frames, versioned, batched. No pickle.

Values travel as msgpack data. Types msgpack lacks (tuple, set, frozenset, datetime, date, time,
timedelta, UUID, Decimal, complex, pydantic models) are extension types; anything else needs an
extension codec registered on a `Codec`, or it is refused with an error naming the task.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from ..streams import StreamRef

VERSION = 1

# Frame kinds. Entries and results are encoded one by one and joined into their frame as bytes
# (`Codec.frame_of_parts`), so a frame is decoded in one call; a side that cannot decode some
# entry reads the frame again tolerantly (`read_frame(tolerant=True)`) and fails only that entry.
# engine -> pool: [[seq, [task name, args, kwargs, timeout]], ...]; a stream producer's entry
# has a fifth element, [keep the items?, [StreamRef of each live consumer, ...]]
TASKS = "tasks"
# worker -> engine: "claims": the seqs it took, "results": [[seq, ok, value or [type, message,
# traceback]], ...]; one frame carries both, so a quick task costs a single reply message
RESULTS = "results"
HEARTBEAT = "hb"  # worker -> everyone: alive, with its in-flight count

# Extension type codes (0-63 reserved for the protocol; user codecs use 64-127)
_TUPLE, _SET, _FROZENSET, _DATETIME, _DATE, _TIME, _TIMEDELTA = 1, 2, 3, 4, 5, 6, 7
_UUID, _DECIMAL, _COMPLEX, _MODEL, _REF, _PACKED, _STREAM = 8, 9, 10, 11, 12, 13, 14
USER_CODES = range(64, 128)


class ProtocolError(ValueError):
    """A frame that is not valid msgpack or not a frame of this protocol."""


class EncodeError(TypeError):
    """A value msgpack cannot carry."""


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
    """The first Undecodable inside a value from a tolerant read, if any."""
    if type(value) is Undecodable:
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        items: Any = value
    elif isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    else:
        return None
    for item in items:
        found = find_undecodable(item)
        if found is not None:
            return found
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


class Codec:
    """msgpack with extension types. `register(MyType, code, encode, decode)` adds your own."""

    def __init__(self) -> None:
        self._by_type: dict[type, _UserType] = {}
        self._by_code: dict[int, _UserType] = {}
        # msgpack.packb builds a Packer per call, which costs several times the packing of a
        # small value; one Packer per thread, never re-entered (_default packs nested parts)
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
        user = self._by_type.get(type(obj))
        if user is not None:
            return msgpack.ExtType(user.code, user.encode(obj))
        pack = self.packb
        if isinstance(obj, tuple):
            return msgpack.ExtType(_TUPLE, pack(list(obj)))
        if isinstance(obj, frozenset):
            return msgpack.ExtType(_FROZENSET, pack(list(obj)))
        if isinstance(obj, set):
            return msgpack.ExtType(_SET, pack(list(obj)))
        if isinstance(obj, dt.datetime):
            return msgpack.ExtType(_DATETIME, obj.isoformat().encode())
        if isinstance(obj, dt.date):
            return msgpack.ExtType(_DATE, obj.isoformat().encode())
        if isinstance(obj, dt.time):
            return msgpack.ExtType(_TIME, obj.isoformat().encode())
        if isinstance(obj, dt.timedelta):
            return msgpack.ExtType(_TIMEDELTA, pack([obj.days, obj.seconds, obj.microseconds]))
        if isinstance(obj, uuid.UUID):
            return msgpack.ExtType(_UUID, obj.bytes)
        if isinstance(obj, decimal.Decimal):
            return msgpack.ExtType(_DECIMAL, str(obj).encode())
        if isinstance(obj, complex):
            return msgpack.ExtType(_COMPLEX, pack([obj.real, obj.imag]))
        if isinstance(obj, Packed):
            return msgpack.ExtType(_PACKED, obj.data)
        if isinstance(obj, ValueRef):
            return msgpack.ExtType(_REF, pack([obj.bucket, obj.name, obj.size]))
        if isinstance(obj, StreamRef):
            return msgpack.ExtType(
                _STREAM, pack([obj.key, obj.items, obj.credits, obj.buffer, obj.values])
            )
        dump = getattr(obj, "model_dump", None)
        if dump is not None and hasattr(type(obj), "model_validate"):
            cls = type(obj)
            return msgpack.ExtType(
                _MODEL, pack([cls.__module__, cls.__qualname__, dump(mode="python")])
            )
        for base, user in self._by_type.items():
            if isinstance(obj, base):
                return msgpack.ExtType(user.code, user.encode(obj))
        # Subclasses of plain types (IntEnum, OrderedDict, str enums...) travel as the plain type.
        for plain in (bool, int, float, str, bytes, dict, list):
            if isinstance(obj, plain):
                # str(obj) is Enum.__str__ ('Colour.RED') for a (str, Enum); str.__str__ is the data
                return str.__str__(obj) if plain is str else plain(obj)
        raise EncodeError(
            f"cannot encode a value of type {type(obj).__module__}.{type(obj).__qualname__} "
            "with msgpack; return plain data, a pydantic model, or register an extension codec "
            "(Codec.register)"
        )

    def packb(self, obj: Any) -> bytes:
        local = self._local
        packer = getattr(local, "packer", None)
        if packer is None:
            packer = local.packer = msgpack.Packer(
                default=self._default, strict_types=True, use_bin_type=True
            )
            local.busy = False
        if local.busy:
            packer = msgpack.Packer(default=self._default, strict_types=True, use_bin_type=True)
        else:
            local.busy = True
        try:
            return packer.pack(obj)
        except EncodeError:
            packer.reset()
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            packer.reset()
            raise EncodeError(str(exc)) from None
        finally:
            if packer is local.packer:
                local.busy = False

    # -- decoding -------------------------------------------------------------------------------

    def _ext_hook(self, code: int, data: bytes) -> Any:
        unpack = self.unpackb
        if code == _TUPLE:
            return tuple(unpack(data))
        if code == _SET:
            return set(unpack(data))
        if code == _FROZENSET:
            return frozenset(unpack(data))
        if code == _DATETIME:
            return dt.datetime.fromisoformat(data.decode())
        if code == _DATE:
            return dt.date.fromisoformat(data.decode())
        if code == _TIME:
            return dt.time.fromisoformat(data.decode())
        if code == _TIMEDELTA:
            days, seconds, micros = unpack(data)
            return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
        if code == _UUID:
            return uuid.UUID(bytes=data)
        if code == _DECIMAL:
            return decimal.Decimal(data.decode())
        if code == _COMPLEX:
            real, imag = unpack(data)
            return complex(real, imag)
        if code == _PACKED:
            return unpack(data)
        if code == _REF:
            return ValueRef(*unpack(data))
        if code == _STREAM:
            return StreamRef(*unpack(data))
        if code == _MODEL:
            module, qualname, fields = unpack(data)
            return _model(module, qualname, fields)
        user = self._by_code.get(code)
        if user is None:
            raise ProtocolError(f"unknown msgpack extension type {code}; register a codec for it")
        return user.decode(data)

    def _lazy_ext_hook(self, code: int, data: bytes) -> Any:
        return Packed(data) if code == _PACKED else self._ext_hook(code, data)

    def _tolerant_ext_hook(self, code: int, data: bytes) -> Any:
        try:
            return self._ext_hook(code, data)
        except Exception as exc:
            return Undecodable(str(exc) or type(exc).__name__)

    def unpackb(self, data: bytes, lazy: bool = False, tolerant: bool = False) -> Any:
        """Decode; with `lazy`, pre-encoded parts stay Packed (decode them one by one); with
        `tolerant`, a value that cannot be decoded becomes an Undecodable."""
        hook = (
            self._lazy_ext_hook if lazy else self._tolerant_ext_hook if tolerant else self._ext_hook
        )
        return msgpack.unpackb(data, ext_hook=hook, raw=False, strict_map_key=False, use_list=True)

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

    def read_frame(self, data: bytes, lazy: bool = False, tolerant: bool = False) -> dict[str, Any]:
        """Decode a frame; ProtocolError says what is wrong with it. With `tolerant`, values
        that cannot be decoded are Undecodable (see find_undecodable) instead of an error."""
        try:
            frame = self.unpackb(data, lazy, tolerant)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"not a msgpack frame ({type(exc).__name__}: {exc})") from None
        if not isinstance(frame, dict) or "t" not in frame:
            raise ProtocolError(f"not a dataflow frame: {str(frame)[:80]!r}")
        if frame.get("v") != VERSION:
            raise ProtocolError(
                f"frame has protocol version {frame.get('v')!r}; this side speaks {VERSION}"
            )
        return frame


# ExtType.__new__ re-checks its arguments in Python, which costs more than packing a small value;
# these are valid by construction.
_new_ext = tuple.__new__


def packed(data: bytes) -> msgpack.ExtType:
    """Bytes encoded by a Codec, as a part of a frame: what `Packed(data)` becomes on the wire,
    but packed by msgpack itself, without a call to `Codec._default`."""
    return _new_ext(msgpack.ExtType, (_PACKED, data))


def task_part(seq: int, body: bytes) -> bytes:
    """A tasks frame entry `[seq, body]`, `body` being the encoded [name, args, kwargs, timeout]."""
    return b"\x92" + _uint(seq) + body


def result_part(seq: int, encoded: bytes) -> bytes:
    """A successful result `[seq, True, value]`, the value being already encoded."""
    return b"\x93" + _uint(seq) + b"\xc3" + encoded


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


def _model(module: str, qualname: str, fields: Any) -> Any:
    """Rebuild a pydantic model if its class is already loaded here; else keep the data.

    Only modules already imported are looked at: a frame never makes this process import code.
    """
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    validate = getattr(obj, "model_validate", None)
    if validate is None:
        return fields
    return validate(fields)


DEFAULT_CODEC = Codec()
