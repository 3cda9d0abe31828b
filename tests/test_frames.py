"""cluster/protocol.py: every frame kind round-trips through its encode/decode pair, and every
field of the wrong type or out of bounds is refused with a ProtocolError naming the frame kind
and the field (or, inside a frame of entries, fails that entry alone)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import msgpack
import pytest
from taskiq_dataflow import codec as codec_module
from taskiq_dataflow.cluster import protocol
from taskiq_dataflow.cluster.protocol import (
    CREDIT,
    END,
    HEARTBEAT,
    ITEMS,
    MAX_CANCEL_SEQS,
    MAX_LOG_LEVEL,
    MAX_TASK_NAME,
    MAX_TASK_NAMES,
    RESULTS,
    TASKS,
    VERSION,
    BadTask,
    Codec,
    Credit,
    Failure,
    Heartbeat,
    ProtocolError,
    StreamEnd,
    StreamHello,
    StreamItems,
    TaskEntry,
    TaskLogging,
    ValueRef,
    cancel_key_of,
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
    encode_ping,
    encode_results,
    encode_task_body,
    encode_tasks,
    failure_part,
    item_part,
    logs_part,
    peek_reply,
    rejection_part,
    result_part,
    stream_subjects,
    task_head,
    task_part,
    tasks_head,
    tasks_with_head,
    value_part,
)
from taskiq_dataflow.events import LogEntry
from taskiq_dataflow.streams import StreamRef
from taskiq_dataflow.task_logs import MAX_LEVEL_NAME, MAX_LOGGER_NAME, MAX_MESSAGE
from taskiq_dataflow.task_logs import MAX_RECORDS as MAX_LOG_RECORDS

CODEC = Codec()
REF = StreamRef("k", "dataflow.stream.r.s.1.0", "dataflow.credit.r.s.1.0", 8)


class Opaque:
    """Known to one codec only (extension code 99): the other side cannot decode it."""


def _opaque_codec() -> Codec:
    codec = Codec()
    codec.register(Opaque, 99, lambda _: b"", lambda _: Opaque())
    return codec


def test_the_value_codec_lives_in_its_own_module_and_protocol_keeps_its_names():
    for name in ("Codec", "DEFAULT_CODEC", "MAX_DEPTH", "MAX_EXT_DEPTH", "ValueRef", "Packed"):
        assert getattr(protocol, name) is getattr(codec_module, name)
    assert codec_module.Codec.__module__ == "taskiq_dataflow.codec"


# -- round trips ----------------------------------------------------------------------------------


def test_tasks_frame_round_trip():
    bodies = [
        encode_task_body(CODEC, "m:echo", [1, (2, 3)], {"k": {4}}, None),
        encode_task_body(CODEC, "m:gen", [], {}, 2.5, [True, [REF]]),
        encode_task_body(CODEC, "m:split", [], {}, None, [False, [REF], ["evens", "odds"]]),
    ]
    parts = [task_part(seq, body) for seq, body in zip([1, 300, 301], bodies, strict=True)]
    frame = decode_tasks(CODEC, encode_tasks(CODEC, parts, "run1", "dataflow.results.r.s", "ck"))
    assert (frame.run, frame.reply, frame.cancel) == ("run1", "dataflow.results.r.s", "ck")
    assert frame.entries == [
        TaskEntry(1, "m:echo", [1, (2, 3)], {"k": {4}}, None, None),
        TaskEntry(300, "m:gen", [], {}, 2.5, [True, [REF]]),
        TaskEntry(301, "m:split", [], {}, None, [False, [REF], ["evens", "odds"]]),
    ]


def test_a_frame_joined_from_task_heads_and_bodies_reads_as_its_entries():
    """The engine's frames: each entry's task_head then its body, joined once (any seq)."""
    seqs = [0, 127, 128, 65535, 65536, 2**32 - 1, 2**32, 2**63, -5]
    body = encode_task_body(CODEC, "m:echo", [1], {}, None)
    pieces = [piece for seq in seqs for piece in (task_head(seq), body)]
    head = tasks_head(CODEC, "run1", "dataflow.results.r.s", "ck")
    frame = decode_tasks(CODEC, tasks_with_head(head, pieces, len(seqs)))
    assert frame.entries == [TaskEntry(seq, "m:echo", [1], {}, None, None) for seq in seqs]
    assert all(msgpack.unpackb(task_head(seq) + b"\xc0") == [seq, None] for seq in seqs)


def test_results_frame_round_trip():
    parts = [
        result_part(1, CODEC.packb({"a": (1,)})),
        value_part(CODEC, 2, ValueRef("b", "n", 9)),
        failure_part(CODEC, 3, Failure("ValueError", "boom", "tb")),
        result_part(-4, CODEC.packb("hand-made seq")),
        rejection_part(CODEC, "could not read it"),
    ]
    frame = decode_results(CODEC, encode_results(CODEC, "w1", [1, 2, 3], parts))
    assert (frame.worker, frame.claims, frame.malformed) == ("w1", [1, 2, 3], 0)
    assert frame.results == [
        (1, True, {"a": (1,)}),
        (2, True, ValueRef("b", "n", 9)),
        (3, False, Failure("ValueError", "boom", "tb")),
        (-4, True, "hand-made seq"),
    ]
    assert frame.rejections == [Failure("ProtocolError", "could not read it", "")]


def test_heartbeat_ping_and_cancel_round_trip():
    beat = Heartbeat("w1", "default", 3, "dataflow.worker.ab", 72, 0.5)
    assert decode_heartbeat(CODEC, encode_heartbeat(CODEC, beat)) == beat
    # a worker serving only its queue group announces no inbox
    plain = Heartbeat("w2", "gpu", 0)
    assert decode_heartbeat(CODEC, encode_heartbeat(CODEC, plain)) == plain
    serving = Heartbeat("w3", "default", 0, "dataflow.worker.cd", 8, 0.5, frozenset(["a", "b:c"]))
    assert decode_heartbeat(CODEC, encode_heartbeat(CODEC, serving)) == serving
    assert decode_ping(encode_ping()) is None
    assert decode_cancel(CODEC, encode_cancel(CODEC)) is None
    assert decode_cancel(CODEC, encode_cancel(CODEC, [5, 7])) == {5, 7}
    assert cancel_key_of("dataflow.cancel.abc123") == "abc123"


def test_stream_frames_round_trip():
    items = encode_items(CODEC, [item_part(0, CODEC.packb("a")), item_part(1, CODEC.packb((2,)))])
    assert decode_stream(CODEC, items) == StreamItems([[0, "a"], [1, (2,)]])
    assert decode_stream(CODEC, encode_end(CODEC, 2)) == StreamEnd(2, None)
    failed = encode_end(CODEC, -1, ["ValueError", "boom"])
    assert decode_stream(CODEC, failed) == StreamEnd(-1, ["ValueError", "boom"])
    assert decode_stream(CODEC, encode_hello(CODEC)) == StreamHello()
    credit = Credit(3, 11, "sess", end=True, done=False, probed=True)
    assert decode_credit(CODEC, encode_credit(CODEC, credit)) == credit
    assert stream_subjects("df", "run", "sec", 4, 1) == (
        "df.stream.run.sec.4.1",
        "df.credit.run.sec.4.1",
    )


def test_peek_reply_reads_the_reply_of_a_frame_that_fails_validation():
    wrong = CODEC.packb({"v": 99, "t": TASKS, "reply": "inbox.1"})
    assert peek_reply(wrong) == "inbox.1"
    assert peek_reply(b"\xc1 garbage") is None
    assert peek_reply(CODEC.packb({"reply": 5})) is None


# -- bad fields -----------------------------------------------------------------------------------


def _frame(kind: str, **fields: Any) -> bytes:
    return CODEC.packb({"v": VERSION, "t": kind, **fields})


TASKS_OK = {"run": "r", "reply": "x", "cancel": "c", "tasks": []}


@pytest.mark.parametrize(
    ("field", "value"),
    [("run", 1), ("reply", None), ("cancel", ["c"]), ("tasks", "nope"), ("tasks", {"a": 1})],
)
def test_a_tasks_frame_field_of_the_wrong_type_is_refused_by_name(field, value):
    with pytest.raises(ProtocolError, match=rf"^tasks frame: field '{field}' must be"):
        decode_tasks(CODEC, _frame(TASKS, **{**TASKS_OK, field: value}))


@pytest.mark.parametrize(
    ("entry", "seq", "culprit"),
    [
        (8, None, "expected \\[seq"),
        ([1], None, "expected \\[seq"),
        ([[10], ["t", [], {}, None]], None, "'seq' must be an int"),
        ([2, "bogus"], 2, "the body must be"),
        ([3, [7, [], {}, None]], 3, "'name' must be a str"),
        ([4, ["t", "x", {}, None]], 4, "'args' must be an array"),
        ([5, ["t", [], [], None]], 5, "'kwargs' must be a map"),
        ([6, ["t", [], {1: 2}, None]], 6, "'kwargs' must be a map with str keys"),
        ([7, ["t", [], {}, "soon"]], 7, "'timeout' must be nil or a number"),
        ([8, ["t", [], {}, -1]], 8, "'timeout' must be nil or a number >= 0"),
        ([9, ["t", [], {}, True]], 9, "'timeout'"),
        ([9, ["t", [], {}, float("nan")]], 9, "'timeout'"),
        ([10, ["t", [], {}, None, [1, []]]], 10, "'stream' must be"),
        ([11, ["t", [], {}, None, [True, ["not a ref"]]]], 11, "'stream' must be"),
        # a producer of several outputs names two or more distinct keys
        ([11, ["t", [], {}, None, [True, [], ["only"]]]], 11, "'stream' must be"),
        ([11, ["t", [], {}, None, [True, [], ["a", "a"]]]], 11, "'stream' must be"),
        ([11, ["t", [], {}, None, [True, [], ["a", 1]]]], 11, "'stream' must be"),
        ([11, ["t", [], {}, None, [True, [], "ab"]]], 11, "'stream' must be"),
        ([11, ["t", [], {}, None, [True, [], [f"k{i}" for i in range(1025)]]]], 11, "'stream'"),
        ([11, ["t", [], {}, None, [True, [], ["a", "b"], 4]]], 11, "'stream' must be"),
    ],
)
def test_a_bad_task_entry_fails_alone_naming_its_field(entry, seq, culprit):
    good = [12, ["t", ["fine"], {}, None]]
    frame = decode_tasks(CODEC, _frame(TASKS, **{**TASKS_OK, "tasks": [entry, good]}))
    bad, ok = frame.entries
    assert type(bad) is BadTask and bad.seq == seq
    assert bad.message.startswith("got a malformed task entry: ")
    assert re.search(culprit, bad.message), bad.message
    assert ok == TaskEntry(12, "t", ["fine"], {}, None, None)


def test_a_task_whose_arguments_cannot_be_decoded_fails_alone():
    sender = _opaque_codec()
    parts = [
        task_part(1, encode_task_body(sender, "t", [Opaque()], {}, None)),
        task_part(2, encode_task_body(sender, "t", [2], {}, None)),
    ]
    frame = decode_tasks(CODEC, encode_tasks(sender, parts, "r", "x", "c"))
    bad, ok = frame.entries
    assert bad == BadTask(1, "cannot decode the task: unknown msgpack extension type 99; "
                             "register a codec for it")  # fmt: skip
    assert ok == TaskEntry(2, "t", [2], {}, None, None)


def test_a_tasks_frame_that_is_not_one_is_refused_by_kind():
    with pytest.raises(ProtocolError, match="expected a 'tasks' frame, got 'results'"):
        decode_tasks(CODEC, _frame(RESULTS, **TASKS_OK))
    with pytest.raises(ProtocolError, match="^tasks frame: not a msgpack frame"):
        decode_tasks(CODEC, b"\xc1")
    with pytest.raises(ProtocolError, match="protocol version 99"):
        decode_tasks(CODEC, CODEC.packb({"v": 99, "t": TASKS}))


@pytest.mark.parametrize(
    ("field", "value"), [("w", None), ("w", 5), ("claims", "1,2"), ("results", {"a": 1})]
)
def test_a_results_frame_field_of_the_wrong_type_is_refused_by_name(field, value):
    fields: dict[str, Any] = {"w": "w1", "claims": [], "results": [], field: value}
    with pytest.raises(ProtocolError, match=rf"^results frame: field '{field}' must be"):
        decode_results(CODEC, _frame(RESULTS, **fields))


def test_malformed_claims_and_result_entries_are_counted_and_the_rest_kept():
    entries = [
        [1, True, "one"],
        "junk",
        [2, True],  # two elements
        ["2", True, "x"],  # a seq that is a str
        [3, 1, "x"],  # ok that is an int
        [None, True, "x"],  # a rejection says ok false
        [4, False, ["E", "m", "t"]],
        [5, False, "not a failure"],
    ]
    frame = decode_results(
        CODEC, _frame(RESULTS, w="w9", claims=[1, "2", None, 4], results=entries)
    )
    assert frame.claims == [1, 4]
    assert frame.malformed == 2 + 5
    assert frame.results[:2] == [(1, True, "one"), (4, False, Failure("E", "m", "t"))]
    seq, ok, failure = frame.results[2]
    assert (seq, ok, failure.type) == (5, False, "ProtocolError")
    assert "worker w9 sent a malformed failure for it" in failure.message


def test_a_deeply_nested_malformed_failure_still_fails_its_task():
    deep: Any = "x"
    for _ in range(1000):
        deep = [deep]
    frame = decode_results(CODEC, _frame(RESULTS, w="w1", results=[[1, False, deep]]))
    [(seq, ok, failure)] = frame.results
    assert (seq, ok, failure.type) == (1, False, "ProtocolError")
    assert failure.message.startswith("worker w1 sent a malformed failure for it: [[[")


def test_a_result_that_cannot_be_decoded_fails_its_own_task():
    sender = _opaque_codec()
    parts = [result_part(1, sender.packb([Opaque()])), result_part(2, sender.packb("fine"))]
    frame = decode_results(CODEC, encode_results(sender, "w1", [1, 2], parts))
    [(seq, ok, failure), good] = frame.results
    assert (seq, ok, failure.type) == (1, False, "DecodeError")
    assert failure.message.startswith("its result cannot be decoded: unknown msgpack extension")
    assert good == (2, True, "fine")


HB_OK = {"w": "w1", "pool": "p", "n": 0}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("w", [1]), ("w", None), ("pool", ["default"]), ("n", "many"), ("n", -1),
        ("inbox", ["x"]), ("inbox", 7), ("cap", "all"), ("cap", -5), ("cap", 0), ("cap", {}),
        ("i", "often"), ("i", 0), ("i", float("nan")),
        ("tn", "echo"), ("tn", {"echo": 1}), ("tn", [1]), ("tn", [""]), ("tn", [None]),
        ("tn", ["x" * (MAX_TASK_NAME + 1)]), ("tn", ["t"] * (MAX_TASK_NAMES + 1)),
    ],
)  # fmt: skip
def test_a_heartbeat_field_of_the_wrong_type_is_refused_by_name(field, value):
    with pytest.raises(ProtocolError, match=rf"^hb frame: field '{field}' must be"):
        decode_heartbeat(CODEC, _frame(HEARTBEAT, **{**HB_OK, field: value}))


def test_a_heartbeat_lists_task_names_within_bounds():
    names = [f"t{i}" for i in range(MAX_TASK_NAMES)]
    beat = decode_heartbeat(CODEC, _frame(HEARTBEAT, **HB_OK, tn=names))
    assert beat.tasks == frozenset(names)
    assert decode_heartbeat(CODEC, _frame(HEARTBEAT, **HB_OK, tn=None)).tasks is None


def test_a_worker_cannot_advertise_tasks_past_the_bounds():
    too_many = Heartbeat("w1", "p", 0, tasks=frozenset(f"t{i}" for i in range(MAX_TASK_NAMES + 1)))
    with pytest.raises(ValueError, match="worker w1 cannot advertise its tasks: nil or an array"):
        encode_heartbeat(CODEC, too_many)
    too_long = Heartbeat("w1", "p", 0, tasks=frozenset(["x" * (MAX_TASK_NAME + 1)]))
    with pytest.raises(ValueError, match="task names of 1 to 256 characters"):
        encode_heartbeat(CODEC, too_long)


def test_a_heartbeat_that_is_not_one_is_refused():
    with pytest.raises(ProtocolError, match="expected a 'hb' frame"):
        decode_heartbeat(CODEC, _frame(RESULTS, **HB_OK))


def test_a_ping_with_a_payload_is_refused():
    with pytest.raises(ProtocolError, match="^ping frame: must be empty"):
        decode_ping(b"x")


@pytest.mark.parametrize(
    ("payload", "culprit"),
    [
        (b"\xc1", "not a msgpack value"),
        (CODEC.packb("3"), "must be empty or an array"),
        (CODEC.packb([]), "must be empty or an array"),
        (CODEC.packb(list(range(MAX_CANCEL_SEQS + 1))), "must be empty or an array"),
        (CODEC.packb([1, "2"]), "a seq must be an int, got '2'"),
    ],
)
def test_a_bad_cancel_payload_is_refused(payload, culprit):
    with pytest.raises(ProtocolError, match=culprit):
        decode_cancel(CODEC, payload)


def test_encode_cancel_refuses_what_decode_cancel_would():
    with pytest.raises(ValueError, match="names 1 to"):
        encode_cancel(CODEC, [])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"t": ITEMS, "i": "x"}, "i"),
        ({"t": ITEMS, "i": [[0]]}, "i"),
        ({"t": ITEMS, "i": [[-1, "x"]]}, "seq"),
        ({"t": ITEMS, "i": [["0", "x"]]}, "seq"),
        ({"t": END, "n": "5", "e": None}, "n"),
        ({"t": END, "n": -2, "e": None}, "n"),
        ({"t": END, "n": 5, "e": ["only one"]}, "e"),
        ({"t": END, "n": 5, "e": ["E", 1]}, "e"),
    ],
)
def test_a_stream_frame_field_of_the_wrong_type_is_refused_by_name(fields, field):
    kind = fields.pop("t")
    with pytest.raises(ProtocolError, match=rf"^{kind} frame: field '{field}' must be"):
        decode_stream(CODEC, _frame(kind, **fields))


def test_a_stream_frame_of_another_kind_is_refused():
    with pytest.raises(ProtocolError, match="expected an 'items', 'end' or 'hello' frame"):
        decode_stream(CODEC, _frame(CREDIT, got=0, limit=0, r="s"))


CREDIT_OK = {"got": 0, "limit": 4, "r": "s", "end": False, "done": False, "p": False}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("got", "0"), ("got", -1), ("limit", 1.5), ("limit", None), ("r", 7), ("end", 1),
        ("done", "yes"), ("p", None),
    ],
)  # fmt: skip
def test_a_credit_field_of_the_wrong_type_is_refused_by_name(field, value):
    with pytest.raises(ProtocolError, match=rf"^credit frame: field '{field}' must be"):
        decode_credit(CODEC, _frame(CREDIT, **{**CREDIT_OK, field: value}))


# -- task log records (task_logs.py): the capture level out, the records back ------------------

RECORD = LogEntry(1796000000.25, "INFO", "user.tasks", "loaded 3 rows")


def test_a_tasks_frame_carries_the_capture_level_and_each_entry_attempt():
    parts = [task_part(1, encode_task_body(CODEC, "t", [], {}, None)),
             task_part(2, encode_task_body(CODEC, "u", [], {}, None))]  # fmt: skip
    frame = decode_tasks(
        CODEC, encode_tasks(CODEC, parts, "r", "x", "c", TaskLogging(20, [1, 3], ["t", "u"]))
    )
    assert frame.logs == TaskLogging(20, [1, 3], ["t", "u"])
    labels_only = encode_tasks(CODEC, parts, "r", "x", "c", TaskLogging(None, [1, 1], ["t", "u"]))
    assert decode_tasks(CODEC, labels_only).logs == TaskLogging(None, [1, 1], ["t", "u"])
    # without logging the field is left out: the frame is what a worker of before reads
    plain = encode_tasks(CODEC, parts, "r", "x", "c")
    assert "logs" not in CODEC.read_frame(plain) and decode_tasks(CODEC, plain).logs is None
    with pytest.raises(ValueError, match="1 attempts and 2 task names for 2 task entries"):
        encode_tasks(CODEC, parts, "r", "x", "c", TaskLogging(20, [1], ["t", "u"]))


@pytest.mark.parametrize(
    "logs",
    [
        "INFO", [20], [20, [1]], [20, [1], ["t"], 3], ["INFO", [1], ["t"]], [-1, [1], ["t"]],
        [MAX_LOG_LEVEL + 1, [1], ["t"]], [True, [1], ["t"]], [20, "1", ["t"]], [20, [], ["t"]],
        [20, [1, 1], ["t"]], [20, [0], ["t"]], [20, ["1"], ["t"]], [20, [1.0], ["t"]],
        [20, [1], "t"], [20, [1], []], [20, [1], ["t", "u"]], [20, [1], [""]], [20, [1], [7]],
        [20, [1], ["t" * (MAX_TASK_NAME + 1)]],
    ],
)  # fmt: skip
def test_a_bad_logs_field_of_a_tasks_frame_is_refused_by_name(logs):
    frame = _frame(TASKS, **{**TASKS_OK, "tasks": [[1, ["t", [], {}, None]]], "logs": logs})
    with pytest.raises(ProtocolError, match=r"^tasks frame: field 'logs' must be nil or \["):
        decode_tasks(CODEC, frame)


def test_result_entries_carry_their_task_log_records():
    logs = logs_part(CODEC, (RECORD, LogEntry(5, "ERROR", "", "boom\nTraceback ...")))
    parts = [
        result_part(1, CODEC.packb("one"), logs),
        failure_part(CODEC, 2, Failure("ValueError", "bad", "tb"), logs),
        value_part(CODEC, 3, ValueRef("b", "n", 9), logs),
        result_part(4, CODEC.packb("no records")),
    ]
    frame = decode_results(CODEC, encode_results(CODEC, "w1", [], parts))
    assert frame.results == [
        (1, True, "one"),
        (2, False, Failure("ValueError", "bad", "tb")),
        (3, True, ValueRef("b", "n", 9)),
        (4, True, "no records"),
    ]
    records = (RECORD, LogEntry(5.0, "ERROR", "", "boom\nTraceback ..."))
    assert frame.logs == {1: records, 2: records, 3: records}
    assert frame.malformed == 0
    assert decode_results(CODEC, encode_results(CODEC, "w1", [], parts[3:])).logs is None


GOOD = [1.0, "INFO", "a", "m"]


@pytest.mark.parametrize(
    ("records", "culprit"),
    [
        ("lines", "an array of 1 to"),
        ([], "an array of 1 to"),
        ([GOOD] * (MAX_LOG_RECORDS + 2), "an array of 1 to"),
        ([[1.0, "INFO", "a"]], "a record must be \\[time, level, logger, message\\]"),
        ([{"time": 1}], "a record must be"),
        ([["now", "INFO", "a", "m"]], "time must be a finite number"),
        ([[float("nan"), "INFO", "a", "m"]], "time must be a finite number"),
        ([[float("inf"), "INFO", "a", "m"]], "time must be a finite number"),
        ([[True, "INFO", "a", "m"]], "time must be a finite number"),
        ([[1.0, 20, "a", "m"]], "level must be a str"),
        ([[1.0, "", "a", "m"]], "level must be a str of 1 to"),
        ([[1.0, "L" * (MAX_LEVEL_NAME + 1), "a", "m"]], "level must be a str of 1 to"),
        ([[1.0, "INFO", None, "m"]], "logger must be a str"),
        ([[1.0, "INFO", "a" * (MAX_LOGGER_NAME + 1), "m"]], "logger must be a str of at most"),
        ([[1.0, "INFO", "a", b"m"]], "message must be a str"),
        ([[1.0, "INFO", "a", "m" * (MAX_MESSAGE + 1)]], "message must be a str of at most"),
        ([[1.0, "INFO", "a", "m" * MAX_MESSAGE]] * 6, "messages exceed"),
    ],
)
def test_hostile_log_records_refuse_their_entry_saying_why_and_the_rest_is_kept(records, culprit):
    entries = [[1, True, "value", records], [2, True, "fine", [GOOD]], [3, True, "plain"],
               [4, True, "also bad", "x"]]  # fmt: skip
    frame = decode_results(CODEC, _frame(RESULTS, w="w7", claims=[1, 2, 3], results=entries))
    assert frame.results == [(2, True, "fine"), (3, True, "plain")]
    assert frame.malformed == 2  # refused as any entry of the wrong shape: seq 1 is not answered
    assert frame.problem is not None
    assert frame.problem.startswith("the entry for seq 1 has malformed log records: ")
    assert re.search(culprit, frame.problem), frame.problem
    assert frame.logs == {2: (LogEntry(1.0, "INFO", "a", "m"),)}


def test_a_four_element_entry_without_an_int_seq_is_malformed():
    entries = [["1", True, "x", [GOOD]], [None, False, ["E", "m", ""], [GOOD]]]
    frame = decode_results(CODEC, _frame(RESULTS, w="w1", results=entries))
    assert frame.results == [] and frame.malformed == 2


@pytest.mark.parametrize(
    ("args", "refs"),
    [
        ([1, "two", None, [3.0, {"k": b"v"}]], False),
        ([(1, 2)], True),  # a marker array: it could have been a reference
        ([REF], True),
        ([dt.datetime(2026, 12, 4)], True),  # any extension type at all
    ],
)
def test_a_tasks_frame_says_whether_its_entries_may_hold_references(args, refs):
    """A worker looks for references only in a frame that held an extension type at all."""
    parts = [task_part(1, encode_task_body(CODEC, "m:echo", args, {}, None))]
    frame = decode_tasks(CODEC, encode_tasks(CODEC, parts, "run1", "dataflow.results.r.s", "ck"))
    assert frame.refs is refs
    assert frame.entries[0].args == args
