"""Wire protocol of the NATS cluster: every frame, as an encode/decode pair. No pickle.

A frame is a msgpack map {"v": VERSION, "t": kind, ...fields}; values inside it are encoded by
the value codec (`taskiq_dataflow.codec`, whose names this module re-exports). Decoders check
every field's type and bound and raise ProtocolError naming the frame kind and the field. Where
a frame holds entries (tasks, results, stream items), a bad entry fails alone: the decoder
keeps the rest, and a value this side cannot decode fails its own task (the frame is read again
tolerantly, see `Codec.read_frame`).

Frames (engine = the side running the DAG; S = the run's per-run random secret, never printed):

    frame      subject                              from -> to       fields
    ---------  -----------------------------------  ---------------  ------------------------------
    tasks      <prefix>.worker.<hex> (one worker)   engine -> worker run: str, reply: str (the
               or <prefix>.tasks.<pool> (queue                        results subject), cancel: str
               group <prefix>-<pool>, before any                      (the cancel key), tasks:
               worker of the pool is known)                           [[seq, [name, args, kwargs,
                                                                      timeout(, stream)]], ...];
                                                                      stream: [keep, [StreamRef,
                                                                      ...](, [output key, ...]:
                                                                      a producer of several)];
                                                                      logs (optional): [capture
                                                                      level or nil, [attempt of
                                                                      each entry, ...], [its task's
                                                                      name in the DAG, ...]]
    results    <prefix>.results.<run>.<S>           worker -> engine w: worker id, claims: [seq,
                                                                      ...], results: [[seq, true,
                                                                      value] | [seq, false, [type,
                                                                      message, traceback]] |
                                                                      [nil, false, [type, message,
                                                                      traceback]] (a rejection of
                                                                      a whole frame)]; an entry
                                                                      may end with its task's
                                                                      log records: [[time, level,
                                                                      logger, message], ...]
    hb         <prefix>.heartbeat                   worker -> all    w, pool: str, n: busy count,
                                                                      inbox: its own task subject,
                                                                      cap: entries it holds at
                                                                      once, i: heartbeat
                                                                      interval, tn: nil (serves
                                                                      what it gets) or the task
                                                                      names it serves (at most
                                                                      MAX_TASK_NAMES, each 1 to
                                                                      MAX_TASK_NAME chars)
    ping       <prefix>.ping (empty payload)        engine -> all    none: every worker beats now
    cancel     <prefix>.cancel.<cancel key>         engine -> all    empty: every task of the run;
                                                                      else a msgpack array of 1 to
                                                                      MAX_CANCEL_SEQS int seqs
    items      <prefix>.stream.<run>.<S>.<n>.<i>    producer ->      i: [[seq >= 0, item], ...]
    end        (same)                               consumer         n: item count (-1: failed
                                                                      before any), e: nil or
                                                                      [type, message]
    hello      (same)                               (probe)          none: answer with a credit
    credit     <prefix>.credit.<run>.<S>.<n>.<i>    consumer ->      got, limit: ints >= 0, r:
                                                                      session, end, done, p: bools
                                                    producer

`<n>.<i>` is the consumer's node and input number. A seq is the engine's number for one attempt
of a task (results and claims name it); entries a worker cannot read are still claimed when their
seq is readable, so the engine takes the error from the worker that holds the attempt.

Hot paths: a tasks or results frame is built by joining pre-encoded parts (`task_part`,
`result_part`, `Codec.frame_of_parts`), never decoded and encoded again.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import msgpack

from ..codec import (
    DEFAULT_CODEC,
    MAX_DEPTH,
    MAX_EXT_DEPTH,
    USER_CODES,
    VERSION,
    Codec,
    Packed,
    Undecodable,
    ValueRef,
    _array_header,
    _short,
    _uint,
    find_undecodable,
    packed,
)
from ..errors import EncodeError, ProtocolError
from ..events import LogEntry
from ..streams import StreamRef
from ..task_logs import MAX_BYTES as MAX_LOG_BYTES
from ..task_logs import MAX_LEVEL_NAME, MAX_LOGGER_NAME, MAX_MESSAGE
from ..task_logs import MAX_RECORDS as MAX_LOG_RECORDS

__all__ = [
    "CREDIT", "DEFAULT_CODEC", "END", "HEARTBEAT", "HELLO", "ITEMS", "MAX_CANCEL_SEQS",
    "MAX_DEPTH", "MAX_EXT_DEPTH", "MAX_LOG_LEVEL", "MAX_OUTPUT_KEYS", "MAX_TASK_NAME",
    "MAX_TASK_NAMES", "PING", "RESULTS", "TASKS", "USER_CODES", "VERSION",
    "BadTask", "Codec", "Credit", "EncodeError", "Failure", "Heartbeat", "Packed",
    "ProtocolError", "ResultsFrame", "StreamEnd", "StreamHello", "StreamItems", "TaskEntry",
    "TaskLogging", "TasksFrame",
    "Undecodable", "ValueRef", "cancel_key_of", "decode_cancel", "decode_credit",
    "decode_heartbeat", "decode_ping", "decode_results", "decode_stream", "decode_tasks",
    "encode_cancel", "encode_credit", "encode_end", "encode_heartbeat", "encode_hello",
    "encode_items", "encode_ping", "encode_results", "encode_task_body", "encode_tasks",
    "failure_part", "find_undecodable", "item_part", "logs_part", "packed", "peek_reply",
    "rejection_part", "result_part", "stream_subjects", "task_head", "task_part", "tasks_head",
    "tasks_with_head", "value_part",
]  # fmt: skip

TASKS, RESULTS, HEARTBEAT, PING = "tasks", "results", "hb", "ping"
ITEMS, END, HELLO, CREDIT = "items", "end", "hello", "credit"
MAX_CANCEL_SEQS = 100_000
# a heartbeat lists the names its worker serves: bounded so that a beat stays far under the
# server's max_payload (1,024 names of 256 characters: 256 KiB at most, typically a few dozen)
MAX_TASK_NAMES = 1024
MAX_OUTPUT_KEYS = 1024  # output keys of one stream producer in a task entry
MAX_TASK_NAME = 256
MAX_LOG_LEVEL = 100  # a capture level in a tasks frame: logging's levels are 0 to 50
# a result entry's log records: what task_logs.TaskLog keeps, and its "dropped" marker
_LOG_RECORDS = MAX_LOG_RECORDS + 1
_LOG_TEXT = MAX_LOG_BYTES + 1024

_ENTRY_SHAPE = "[seq, [name, args, kwargs, timeout(, stream)]]"
_TASKS_NEEDS = "a tasks frame needs 'run' (str), 'reply' (str), 'tasks' (list), 'cancel' (str)"


def _field_error(kind: str, field: str, wanted: str, got: Any) -> ProtocolError:
    return ProtocolError(f"{kind} frame: field '{field}' must be {wanted}, got {_short(got)}")


_NUMBERS = (int, float)
_STR = frozenset([str])
# a NamedTuple's own __new__ is Python code; its fields are checked before this is called
_new_tuple = tuple.__new__


def _is_number(value: Any) -> bool:
    return type(value) in _NUMBERS and not math.isnan(value)


def _read(codec: Codec, data: bytes, kind: str) -> tuple[dict[str, Any], bool]:
    """The frame `kind`, and whether it was read tolerantly (some value inside could not be
    decoded here: what holds it fails alone)."""
    try:
        frame, tolerant = codec.read_frame(data), False
    except ProtocolError:
        try:
            frame, tolerant = codec.read_frame(data, tolerant=True), True
        except ProtocolError as exc:
            raise ProtocolError(f"{kind} frame: {exc}") from None
    if frame["t"] != kind:
        raise ProtocolError(f"expected a '{kind}' frame, got {_short(frame['t'])}")
    return frame, tolerant


def _int_part(n: int) -> bytes:
    # negative seqs come only in hand-made frames; msgpack writes them as it would read them
    return _uint(n) if n >= 0 else msgpack.packb(n)


# -- tasks: engine -> worker ----------------------------------------------------------------------


class TaskEntry(NamedTuple):
    seq: int
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float | None
    # a stream producer's: [keep the items?, [StreamRef of each live consumer, ...]]
    stream: list[Any] | None


class BadTask(NamedTuple):
    """An entry that fails alone; `seq` when it could be read (the worker then claims it)."""

    seq: int | None
    message: str


class TaskLogging(NamedTuple):
    """What a tasks frame asks of its tasks' log records (task_logs.py)."""

    level: int | None  # capture the records at this level and above; None: capture nothing
    # for the labels, per entry in the frame's order: its attempt, and its task's name in the
    # DAG (the entry names the task as the worker registered it)
    attempts: list[int]
    tasks: list[str]


class TasksFrame(NamedTuple):
    run: str
    reply: str
    cancel: str
    entries: list[TaskEntry | BadTask]
    logs: TaskLogging | None = None
    # whether an entry may hold a ValueRef or StreamRef: False when the frame held no
    # extension type at all (Codec.last_read_plain), and the worker looks for none
    refs: bool = True


def encode_task_body(
    codec: Codec,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    timeout: float | None,
    stream: list[Any] | None = None,
) -> bytes:
    """An entry's body, encoded once per task however often it is sent (see `task_part`)."""
    body = [name, args, kwargs, timeout]
    if stream is not None:
        body.append(stream)
    return codec.packb(body)


def task_part(seq: int, body: bytes) -> bytes:
    """A tasks frame entry `[seq, body]`, `body` being an encoded task body."""
    return b"\x92" + _int_part(seq) + body


def task_head(seq: int) -> bytes:
    """What goes before an encoded task body in its entry `[seq, body]`: the engine joins the
    heads and bodies of a frame's entries at once (tasks_with_head), not an entry at a time.
    A seq under 2**32 takes its 4-byte form whatever its size (valid msgpack, one step)."""
    if 0 <= seq < 0x100000000:
        return _ENTRY_U32 + seq.to_bytes(4, "big")
    return b"\x92" + _int_part(seq)


_ENTRY_U32 = b"\x92\xce"  # an array of 2, then a uint32


def encode_tasks(
    codec: Codec,
    parts: list[bytes],
    run: str,
    reply: str,
    cancel: str,
    logs: TaskLogging | None = None,
) -> bytes:
    if logs is None:  # (the field is left out: a worker of before it reads the frame)
        return codec.frame_of_parts(TASKS, "tasks", parts, run=run, reply=reply, cancel=cancel)
    if not len(logs.attempts) == len(logs.tasks) == len(parts):
        raise ValueError(
            f"{len(logs.attempts)} attempts and {len(logs.tasks)} task names for {len(parts)} "
            "task entries"
        )
    return codec.frame_of_parts(
        TASKS, "tasks", parts, run=run, reply=reply, cancel=cancel, logs=list(logs)
    )


def tasks_head(codec: Codec, run: str, reply: str, cancel: str) -> bytes:
    """The bytes every tasks frame of a run (without `logs`) starts with, up to its entries:
    `tasks_with_head(head, parts)` is `encode_tasks(codec, parts, run, reply, cancel)`."""
    empty = encode_tasks(codec, [], run, reply, cancel)
    return empty[:-1]  # without the empty array's header


def tasks_with_head(head: bytes, parts: list[bytes], entries: int | None = None) -> bytes:
    """A tasks frame of the run `head` is of (tasks_head), its entries joined from `parts`:
    one part per entry (task_part), or, with their count in `entries`, each entry's task_head
    then its body."""
    count = len(parts) if entries is None else entries
    return b"".join([head, _array_header(count), *parts])


def decode_tasks(codec: Codec, data: bytes) -> TasksFrame:
    frame, tolerant = _read(codec, data, TASKS)
    refs = not codec.last_read_plain()
    run, reply, tasks = frame.get("run"), frame.get("reply"), frame.get("tasks")
    cancel = frame.get("cancel", run)  # engines before the cancel key used the run id
    for field, value, wanted in (
        ("run", run, str), ("reply", reply, str), ("tasks", tasks, list), ("cancel", cancel, str),
    ):  # fmt: skip
        if type(value) is not wanted:
            what = "an array" if wanted is list else "a str"
            raise ProtocolError(f"{_field_error(TASKS, field, what, value)} ({_TASKS_NEEDS})")
    entries: list[TaskEntry | BadTask] = []
    append = entries.append
    for item in tasks:  # type: ignore[union-attr]
        # the common entry checked inline (this loop runs for every task a worker gets);
        # anything else goes to _task_entry, which says what is wrong
        if type(item) is list and len(item) == 2 and not tolerant:
            seq, body = item
            if type(seq) is int and type(body) is list and len(body) == 4:
                name, args, kwargs, timeout = body
                if (
                    type(name) is str
                    and type(args) is list
                    and type(kwargs) is dict
                    and (timeout is None or (type(timeout) in _NUMBERS and timeout >= 0))
                    and (not kwargs or _STR.issuperset(map(type, kwargs)))
                ):
                    append(_new_tuple(TaskEntry, (seq, name, args, kwargs, timeout, None)))
                    continue
        append(_task_entry(item, tolerant))
    logs = frame.get("logs")
    if logs is not None:
        logs = _task_logging(logs, len(entries))
    return TasksFrame(run, reply, cancel, entries, logs, refs)  # type: ignore[arg-type]


def _task_logging(logs: Any, entries: int) -> TaskLogging:
    wanted = (
        f"nil or [capture level (nil or an int 0 to {MAX_LOG_LEVEL}), [attempt (an int >= 1) "
        f"of each of the {entries} task entries], [task name of each (1 to {MAX_TASK_NAME} "
        "characters)]]"
    )
    if type(logs) is not list or len(logs) != 3:
        raise _field_error(TASKS, "logs", wanted, logs)
    level, attempts, tasks = logs
    if level is not None and not (type(level) is int and 0 <= level <= MAX_LOG_LEVEL):
        raise _field_error(TASKS, "logs", wanted, logs)
    if (
        type(attempts) is not list
        or len(attempts) != entries
        or not all(type(a) is int and a >= 1 for a in attempts)
    ):
        raise _field_error(TASKS, "logs", wanted, logs)
    if (
        type(tasks) is not list
        or len(tasks) != entries
        or not all(type(t) is str and 0 < len(t) <= MAX_TASK_NAME for t in tasks)
    ):
        raise _field_error(TASKS, "logs", wanted, logs)
    return TaskLogging(level, attempts, tasks)


def peek_reply(data: bytes) -> str | None:
    """The reply subject of a tasks frame that failed validation, when it can still be read
    (plain msgpack: the frame's values may be what failed)."""
    try:
        frame = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # any garbage: msgpack raises several types
        return None
    reply = frame.get("reply") if isinstance(frame, dict) else None
    return reply if isinstance(reply, str) else None


def _task_entry(item: Any, tolerant: bool) -> TaskEntry | BadTask:
    if type(item) is not list or len(item) != 2:
        shape = f"expected {_ENTRY_SHAPE}, got {_short(item)}"
        return BadTask(None, f"got a malformed task entry: {shape}")
    seq, body = item
    if type(seq) is not int:
        # a seq keys the worker's running tasks: an unhashable one would abort the frame
        return BadTask(None, f"got a malformed task entry: 'seq' must be an int, got {_short(seq)}")
    if tolerant:
        bad = find_undecodable(body)
        if bad is not None:
            return BadTask(seq, f"cannot decode the task: {bad.message}")
    problem = _task_body_problem(body)
    if problem is not None:
        return BadTask(seq, f"got a malformed task entry: {problem} (an entry is {_ENTRY_SHAPE})")
    name, args, kwargs, timeout, *extra = body
    return _new_tuple(TaskEntry, (seq, name, args, kwargs, timeout, extra[0] if extra else None))


def _task_body_problem(body: Any) -> str | None:
    if type(body) is not list or not 4 <= len(body) <= 5:
        return f"the body must be [name, args, kwargs, timeout(, stream)], got {_short(body)}"
    name, args, kwargs, timeout, *extra = body
    if type(name) is not str:
        return f"'name' must be a str, got {_short(name)}"
    if type(args) is not list:
        return f"'args' must be an array, got {_short(args)}"
    if type(kwargs) is not dict or not _STR.issuperset(map(type, kwargs)):
        return f"'kwargs' must be a map with str keys, got {_short(kwargs)}"
    if timeout is not None and not (type(timeout) in _NUMBERS and timeout >= 0):  # NaN too
        return f"'timeout' must be nil or a number >= 0, got {_short(timeout)}"
    if extra and not _is_stream_spec(extra[0]):
        wanted = "[keep (bool), [StreamRef, ...](, [output key, ...])]"
        return f"'stream' must be {wanted}, got {_short(extra[0])}"
    return None


def _is_stream_spec(stream: Any) -> bool:
    return (
        type(stream) is list
        and 2 <= len(stream) <= 3
        and type(stream[0]) is bool
        and type(stream[1]) is list
        and all(type(r) is StreamRef for r in stream[1])
        and (len(stream) == 2 or _is_output_keys(stream[2]))
    )


def _is_output_keys(keys: Any) -> bool:
    # a producer of several outputs: the keys its StreamItems name (at least two, distinct)
    return (
        type(keys) is list
        and 2 <= len(keys) <= MAX_OUTPUT_KEYS
        and all(type(k) is str for k in keys)
        and len(set(keys)) == len(keys)
    )


# -- results: worker -> engine --------------------------------------------------------------------


class Failure(NamedTuple):
    """A task's failure as a worker reports it."""

    type: str
    message: str
    traceback: str


class ResultsFrame(NamedTuple):
    worker: str
    claims: list[int]
    # (seq, True, value) or (seq, False, Failure): undecodable values and malformed failures
    # are Failures already, so each fails its own task
    results: list[tuple[int, bool, Any]]
    rejections: list[Failure]  # frames of the run the worker could not read at all
    malformed: int  # claims and entries refused for their shape
    # seq -> the log records its task made (entries that carried some)
    logs: dict[int, tuple[LogEntry, ...]] | None = None
    problem: str | None = None  # what was wrong with the first entry refused for its logs


def result_part(seq: int, encoded: bytes, logs: bytes = b"") -> bytes:
    """A successful result `[seq, True, value(, logs)]`, the value (and the logs_part) being
    already encoded."""
    if logs:
        return b"\x94" + _int_part(seq) + b"\xc3" + encoded + logs
    return b"\x93" + _int_part(seq) + b"\xc3" + encoded


def value_part(codec: Codec, seq: int, value: Any, logs: bytes = b"") -> bytes:
    return result_part(seq, codec.packb(value), logs)


def failure_part(codec: Codec, seq: int, failure: Failure, logs: bytes = b"") -> bytes:
    head = b"\x94" if logs else b"\x93"
    return head + _int_part(seq) + b"\xc2" + codec.packb(list(failure)) + logs


def logs_part(codec: Codec, records: tuple[LogEntry, ...]) -> bytes:
    """A result entry's log records, encoded (what result_part and failure_part append)."""
    return codec.packb([[r.time, r.level, r.logger, r.message] for r in records])


def rejection_part(codec: Codec, message: str) -> bytes:
    """The answer to a frame that could not be read at all (it has no seq)."""
    return codec.packb([None, False, ["ProtocolError", message, ""]])


def encode_results(codec: Codec, worker: str, claims: list[int], parts: list[bytes]) -> bytes:
    return codec.frame_of_parts(RESULTS, "results", parts, w=worker, claims=claims)


def decode_results(codec: Codec, data: bytes) -> ResultsFrame:
    frame, tolerant = _read(codec, data, RESULTS)
    worker, claims, entries = frame.get("w"), frame.get("claims", []), frame.get("results", [])
    if type(worker) is not str:
        raise _field_error(RESULTS, "w", "a str (the worker id)", worker)
    if type(claims) is not list:
        raise _field_error(RESULTS, "claims", "an array of seqs", claims)
    if type(entries) is not list:
        raise _field_error(RESULTS, "results", "an array of entries", entries)
    seqs = [seq for seq in claims if type(seq) is int]
    malformed = len(claims) - len(seqs)
    results: list[tuple[int, bool, Any]] = []
    rejections: list[Failure] = []
    logs: dict[int, tuple[LogEntry, ...]] | None = None
    problem = None
    append = results.append
    for entry in entries:
        if type(entry) is not list or len(entry) != 3:
            if type(entry) is list and len(entry) == 4 and type(entry[0]) is int:
                # an entry with its task's log records: bad ones refuse the entry, as any
                # malformed entry (the attempt is not answered)
                seq, ok, value, records = entry
                found, wrong = _log_records(records)
                if wrong is not None:
                    malformed += 1
                    if problem is None:
                        problem = f"the entry for seq {seq} has malformed log records: {wrong}"
                    continue
                if logs is None:
                    logs = {}
                logs[seq] = found
                entry = entry[:3]
            else:
                malformed += 1
                continue
        seq, ok, value = entry
        if type(seq) is int and ok is True:
            if tolerant:
                bad = find_undecodable(value)
                if bad is not None:
                    message = f"its result cannot be decoded: {bad.message}"
                    value, ok = Failure("DecodeError", message, ""), False
            append((seq, ok, value))
        elif ok is False and (type(seq) is int or seq is None):
            failure = _failure(worker, value)
            if seq is None:
                rejections.append(failure)
            else:
                append((seq, False, failure))
        else:
            malformed += 1
    return ResultsFrame(worker, seqs, results, rejections, malformed, logs, problem)


def _log_records(records: Any) -> tuple[tuple[LogEntry, ...], str | None]:
    """The records of a result entry, or the problem with them (every field is bounded: a
    hostile worker cannot make the engine keep more than a task could log)."""
    if type(records) is not list or not 0 < len(records) <= _LOG_RECORDS:
        return (), f"expected an array of 1 to {_LOG_RECORDS} records, got {_short(records)}"
    found = []
    text = 0
    for record in records:
        if type(record) is not list or len(record) != 4:
            return (), f"a record must be [time, level, logger, message], got {_short(record)}"
        at, level, logger, message = record
        if type(at) not in _NUMBERS or not math.isfinite(at):
            return (), f"a record's time must be a finite number, got {_short(at)}"
        if type(level) is not str or not 0 < len(level) <= MAX_LEVEL_NAME:
            return (), f"a record's level must be a str of 1 to {MAX_LEVEL_NAME} characters"
        if type(logger) is not str or len(logger) > MAX_LOGGER_NAME:
            return (), f"a record's logger must be a str of at most {MAX_LOGGER_NAME} characters"
        if type(message) is not str or len(message) > MAX_MESSAGE:
            return (), f"a record's message must be a str of at most {MAX_MESSAGE} characters"
        text += len(message)
        if text > _LOG_TEXT:
            return (), f"the records' messages exceed {_LOG_TEXT} characters in all"
        found.append(LogEntry(float(at), level, logger, message))
    return tuple(found), None


def _failure(worker: str, value: Any) -> Failure:
    """A malformed failure still fails its task, with a message that says what arrived."""
    if type(value) is list and len(value) == 3 and all(type(v) is str for v in value):
        return Failure(*value)
    # _short, not str(): a failure nested 1,000 levels deep would exhaust the recursion limit
    message = f"worker {worker[:80]} sent a malformed failure for it: {_short(value)}"
    return Failure("ProtocolError", message, "")


# -- heartbeat and ping: worker <-> everyone -----------------------------------------------------


class Heartbeat(NamedTuple):
    worker: str
    pool: str
    busy: int  # tasks running or queued on it
    # None from a worker that takes work only from its pool's queue group
    inbox: str | None = None
    capacity: int | None = None  # entries an engine may send it at once
    interval: float | None = None  # seconds between its heartbeats
    # the task names it serves; None from a worker that does not say (it gets its pool's work)
    tasks: frozenset[str] | None = None


def encode_heartbeat(codec: Codec, beat: Heartbeat) -> bytes:
    tasks = beat.tasks
    if tasks is not None:
        problem = _task_names_problem(list(tasks))
        if problem is not None:
            raise ValueError(f"worker {beat.worker[:80]} cannot advertise its tasks: {problem}")
    return codec.frame(
        HEARTBEAT, w=beat.worker, pool=beat.pool, n=beat.busy, inbox=beat.inbox,
        cap=beat.capacity, i=beat.interval, tn=None if tasks is None else sorted(tasks),
    )  # fmt: skip


def _task_names_problem(names: Any) -> str | None:
    if type(names) is not list or len(names) > MAX_TASK_NAMES:
        return f"nil or an array of at most {MAX_TASK_NAMES} task names, got {_short(names)}"
    for name in names:
        if type(name) is not str or not 0 < len(name) <= MAX_TASK_NAME:
            return f"task names of 1 to {MAX_TASK_NAME} characters, got {_short(name)}"
    return None


def decode_heartbeat(codec: Codec, data: bytes) -> Heartbeat:
    frame = codec.read_frame(data)
    if frame["t"] != HEARTBEAT:
        raise ProtocolError(f"expected a '{HEARTBEAT}' frame, got {_short(frame['t'])}")
    worker, pool, busy = frame.get("w"), frame.get("pool"), frame.get("n", 0)
    inbox, capacity, interval = frame.get("inbox"), frame.get("cap"), frame.get("i")
    names = frame.get("tn")
    if type(worker) is not str:
        raise _field_error(HEARTBEAT, "w", "a str (the worker id)", worker)
    if type(pool) is not str:
        raise _field_error(HEARTBEAT, "pool", "a str", pool)
    if type(busy) is not int or busy < 0:
        raise _field_error(HEARTBEAT, "n", "an int >= 0", busy)
    if inbox is not None and type(inbox) is not str:
        raise _field_error(HEARTBEAT, "inbox", "nil or a str (a subject)", inbox)
    if capacity is not None and (type(capacity) is not int or capacity <= 0):
        raise _field_error(HEARTBEAT, "cap", "nil or an int > 0", capacity)
    if interval is not None and not (_is_number(interval) and interval > 0):
        raise _field_error(HEARTBEAT, "i", "nil or a number > 0", interval)
    tasks = None
    if names is not None:
        problem = _task_names_problem(names)
        if problem is not None:
            raise ProtocolError(f"{HEARTBEAT} frame: field 'tn' must be {problem}")
        tasks = frozenset(names)
    return Heartbeat(worker, pool, busy, inbox, capacity, interval, tasks)


def encode_ping() -> bytes:
    return b""


def decode_ping(data: bytes) -> None:
    if data:
        raise ProtocolError(f"ping frame: must be empty, got {len(data)} bytes")


# -- cancel: engine -> workers --------------------------------------------------------------------


def encode_cancel(codec: Codec, seqs: list[int] | None = None) -> bytes:
    """Every task of the run (None), or only these attempts."""
    if seqs is None:
        return b""
    if not 0 < len(seqs) <= MAX_CANCEL_SEQS:
        raise ValueError(f"a cancel frame names 1 to {MAX_CANCEL_SEQS} seqs, got {len(seqs)}")
    return codec.packb(seqs)


def decode_cancel(codec: Codec, data: bytes) -> frozenset[int] | None:
    """None: cancel every task of the run; else the seqs to cancel."""
    if not data:
        return None
    seqs = codec.unpackb(data)
    if type(seqs) is not list or not 0 < len(seqs) <= MAX_CANCEL_SEQS:
        raise ProtocolError(
            f"cancel frame: must be empty or an array of 1 to {MAX_CANCEL_SEQS} seqs, got "
            f"{_short(seqs)}"
        )
    for seq in seqs:
        if type(seq) is not int:
            raise ProtocolError(f"cancel frame: a seq must be an int, got {_short(seq)}")
    return frozenset(seqs)


def cancel_key_of(subject: str) -> str:
    """The cancel key a cancel subject carries (its last token)."""
    return subject.rsplit(".", 1)[-1]


# -- streams: producer <-> consumer ---------------------------------------------------------------


class StreamItems(NamedTuple):
    items: list[tuple[int, Any]]  # (seq, item), in the order sent


class StreamEnd(NamedTuple):
    size: int  # items the stream had (-1: ended by the engine, its producer lost)
    error: list[str] | None  # [type, message] when the producer failed


class StreamHello(NamedTuple):
    """A producer's probe: the consumer answers with a credit saying what it has."""


class Credit(NamedTuple):
    got: int  # items the consumer has without a gap
    limit: int  # the producer may send seq < limit
    session: str  # the consumer instance: another one is a restarted consumer
    end: bool = False  # it has the end frame and every item
    done: bool = False  # it stopped listening
    probed: bool = False  # an answer to a probe: what it lacks was lost


def stream_subjects(
    prefix: str, run_id: str, secret: str, node: int, index: int
) -> tuple[str, str]:
    """The items and credit subjects of consumer `node`'s input `index`."""
    where = f"{run_id}.{secret}.{node}.{index}"
    return f"{prefix}.stream.{where}", f"{prefix}.credit.{where}"


def item_part(seq: int, encoded: bytes) -> bytes:
    """An items frame entry `[seq, item]`, the item already encoded."""
    return b"\x92" + _uint(seq) + encoded


def encode_items(codec: Codec, parts: list[bytes]) -> bytes:
    return codec.frame_of_parts(ITEMS, "i", parts)


def encode_end(codec: Codec, count: int, error: list[str] | None = None) -> bytes:
    return codec.frame(END, n=count, e=error)


def encode_hello(codec: Codec) -> bytes:
    return codec.frame(HELLO)


def encode_credit(codec: Codec, credit: Credit) -> bytes:
    return codec.frame(
        CREDIT, got=credit.got, limit=credit.limit, r=credit.session, end=credit.end,
        done=credit.done, p=credit.probed,
    )  # fmt: skip


def decode_stream(codec: Codec, data: bytes) -> StreamItems | StreamEnd | StreamHello:
    """What arrives on an items subject."""
    frame = codec.read_frame(data)
    kind = frame["t"]
    if kind == ITEMS:
        return StreamItems(_stream_items(frame.get("i")))
    if kind == END:
        count, error = frame.get("n"), frame.get("e")
        if type(count) is not int or count < -1:
            raise _field_error(END, "n", "an int >= -1", count)
        if error is not None and not (
            type(error) is list and len(error) == 2 and all(type(x) is str for x in error)
        ):
            raise _field_error(END, "e", "nil or [type, message]", error)
        return StreamEnd(count, error)
    if kind == HELLO:
        return _HELLO
    raise ProtocolError(f"expected an '{ITEMS}', '{END}' or '{HELLO}' frame, got {_short(kind)}")


_HELLO = StreamHello()


def _stream_items(entries: Any) -> list[tuple[int, Any]]:
    if type(entries) is not list:
        raise _field_error(ITEMS, "i", "an array of [seq, item]", entries)
    for entry in entries:
        # all or nothing: the frame comes from the route's producer, which writes no bad entry
        if type(entry) is not list or len(entry) != 2:
            raise _field_error(ITEMS, "i", "an array of [seq, item]", entry)
        if type(entry[0]) is not int or entry[0] < 0:
            raise _field_error(ITEMS, "seq", "an int >= 0", entry[0])
    return entries


def decode_credit(codec: Codec, data: bytes) -> Credit:
    frame = codec.read_frame(data)
    if frame["t"] != CREDIT:
        raise ProtocolError(f"expected a '{CREDIT}' frame, got {_short(frame['t'])}")
    got, limit, session = frame.get("got"), frame.get("limit"), frame.get("r")
    for field, value in (("got", got), ("limit", limit)):
        if type(value) is not int or value < 0:
            raise _field_error(CREDIT, field, "an int >= 0", value)
    if type(session) is not str:
        raise _field_error(CREDIT, "r", "a str (the consumer's session)", session)
    flags = []
    for field in ("end", "done", "p"):
        flag = frame.get(field, False)
        if type(flag) is not bool:
            raise _field_error(CREDIT, field, "a bool", flag)
        flags.append(flag)
    return Credit(got, limit, session, *flags)  # type: ignore[arg-type]
