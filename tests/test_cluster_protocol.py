"""Frames joined from pre-encoded parts, tolerant reads, the worker's in-place execution.

Unit tests of the protocol helpers, then a real nats-server and one worker process with
concurrency 1: a result the engine cannot decode fails only its own task, and tasks that suspend
still hold the worker's slots while the ones that finish at once take none.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cluster_tasks
import pytest
from cluster_support import WorkerProcesses, index_dag
from conftest import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskiq_dataflow import DataflowRegistry, ExecutionEngine
from taskiq_dataflow.cluster import Codec, DataflowNatsBroker, NatsServer
from taskiq_dataflow.cluster.protocol import (
    RESULTS,
    TASKS,
    VERSION,
    Undecodable,
    find_undecodable,
    result_part,
    task_part,
)
from taskiq_dataflow.errors import DataflowExecutionError

CODEC = Codec()


class Opaque:
    """Known to one codec only (extension code 99)."""


def _opaque_codec() -> Codec:
    codec = Codec()
    codec.register(Opaque, 99, lambda _: b"", lambda _: Opaque())
    return codec


@pytest.mark.parametrize("count", [0, 1, 15, 16, 70_000])
def test_a_frame_of_parts_reads_as_the_frame_it_stands_for(count):
    seqs = [0, 127, 128, 255, 65_535, 65_536, 2**32 - 1, 2**32, 2**40]
    values = [None, (1, "a"), {"k": {1, 2}}, b"\x00", -1, 2.5, "x" * 300, [], {}]
    results = [[seqs[i % 9] + i, True, values[i % 9]] for i in range(count)]
    parts = [result_part(seq, CODEC.packb(value)) for seq, _, value in results]
    frame = CODEC.read_frame(CODEC.frame_of_parts(RESULTS, "results", parts, w="w1", claims=[7]))
    assert frame == {"v": VERSION, "t": RESULTS, "w": "w1", "claims": [7], "results": results}
    entries = [[9, ["name", [1], {"a": (2,)}, None]], [300, ["other", [], {}, 1.5]]]
    parts = [task_part(seq, CODEC.packb(body)) for seq, body in entries]
    frame = CODEC.read_frame(CODEC.frame_of_parts(TASKS, "tasks", parts, run="r", reply="x"))
    assert frame["tasks"] == entries and frame["run"] == "r" and frame["reply"] == "x"


def test_a_tolerant_read_marks_only_the_parts_it_cannot_decode():
    parts = [
        result_part(1, CODEC.packb("fine")),
        result_part(2, _opaque_codec().packb({"deep": [Opaque()]})),
        result_part(3, CODEC.packb((1, 2))),
    ]
    data = CODEC.frame_of_parts(RESULTS, "results", parts, w="w1")
    with pytest.raises(ValueError, match="unknown msgpack extension type 99"):
        CODEC.read_frame(data)
    results = CODEC.read_frame(data, tolerant=True)["results"]
    assert [find_undecodable(value) is None for _, _, value in results] == [True, False, True]
    bad = find_undecodable(results[1][2])
    assert isinstance(bad, Undecodable) and "extension type 99" in bad.message
    assert results[0][2] == "fine" and results[2][2] == (1, 2)


def test_codec_packs_nested_extensions_and_from_several_threads():
    value = {"t": (1, {2, 3}, [(4,)]), "f": frozenset({(5, 6)})}
    assert CODEC.unpackb(CODEC.packb(value)) == value
    errors: list[BaseException] = []

    def pack_many(seed: int) -> None:
        try:
            for i in range(3000):
                item = (seed, i, {seed: (i,)})
                assert CODEC.unpackb(CODEC.packb(item)) == item
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=pack_many, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with pytest.raises(TypeError, match="cannot encode a value of type builtins.object"):
        CODEC.packb({"ok": 1, "bad": object()})
    assert CODEC.unpackb(CODEC.packb((1,))) == (1,)  # the failed packing left nothing behind


# -- against a worker ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(server):
    with WorkerProcesses(server.url, workers=1, pool="single", concurrency=1) as wp:
        yield wp


def engine_broker(server: NatsServer, codec: Codec | None = None) -> DataflowNatsBroker:
    return DataflowNatsBroker(
        server.url,
        pool="single",
        codec=codec or cluster_tasks.broker.codec,
        heartbeat_timeout=1.0,
        progress_timeout=20.0,
    )


def test_a_result_the_engine_cannot_decode_fails_only_its_task(server, worker):
    # The engine encodes Opaque with the code the workers use for Money (64), but cannot decode
    # what comes back: the echoed Money fails its task; its neighbour in the frame succeeds.
    codec = Codec()

    def refuse(_: bytes) -> Any:
        raise ValueError("no Money here")

    codec.register(Opaque, 64, lambda _: b"5:EUR", refuse)
    registry = DataflowRegistry()
    registry.register_external_input("money")
    registry.register_external_input("text")
    registry.register_task(cluster_tasks.echo, output="m", inputs=["money"], name="echo_money")
    registry.register_task(cluster_tasks.echo, output="t", inputs=["text"], name="echo_text")
    engine = ExecutionEngine(engine_broker(server, codec), registry.build_dag(), fail_fast=False)
    with pytest.raises(DataflowExecutionError) as info:
        run(engine.execute({"money": Opaque(), "text": "plain"}))
    [failure] = info.value.failures
    assert failure.task_name == "echo_money" and failure.type == "DecodeError"
    assert "its result cannot be decoded: no Money here" in failure.message
    assert info.value.results == {"t": "plain"}


def test_suspending_tasks_hold_the_slots_and_quick_ones_run_in_place(server, worker):
    # concurrency 1: eight tasks that sleep 0.1 s run one after the other, never together
    dag, inputs = index_dag(8, 0.1)
    t0 = time.perf_counter()
    results = run(ExecutionEngine(engine_broker(server), dag).execute(inputs))
    assert results == {f"k{i}": i for i in range(8)}
    assert time.perf_counter() - t0 >= 0.8
    # tasks that finish without suspending take no slot for long: 2,000 of them at once
    dag, inputs = index_dag(2000, 0.0)
    results = run(ExecutionEngine(engine_broker(server), dag).execute(inputs))
    assert results == {f"k{i}": i for i in range(2000)}


# -- the engine's reading of result frames (issue 9 item 16) -------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_JUNK = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)
HELD = range(1, 9)  # the seqs the fake worker holds in the tests below


def _harmless(entry: Any) -> bool:
    """Junk that is neither an answer for a held seq nor a rejection (both are real answers)."""
    if not (isinstance(entry, list) and len(entry) == 3):
        return True
    seq, ok = entry[0], entry[1]
    if seq is None:
        return ok is not False
    return not (type(seq) is int and seq in HELD)


def _transport() -> Any:
    """A NatsTransport, not started, holding seqs HELD for worker 'w1' (what dispatch records)."""
    from taskiq_dataflow.cluster.transport import NatsTransport, _Flight, _WorkerState
    from taskiq_dataflow.transports.base import Job

    transport = NatsTransport(DataflowNatsBroker("nats://127.0.0.1:1"), "fuzz")
    w1 = transport._workers["w1"] = _WorkerState("w1", "default", time.monotonic())
    w1.inbox, w1.capacity, w1.sent = "dataflow.worker.w1", 100, True
    for seq in HELD:
        job = Job(seq, 0, None, None, (), {}, f"t{seq}", None)
        flight = _Flight(job, "default", f"t{seq}", b"", False)
        flight.seqs.append(seq)
        transport._inflight[seq] = flight
        transport._owner[seq] = "w1"
        w1.held.add(seq)
    return transport


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    junk=st.lists(_JUNK.filter(_harmless), max_size=12),
    claims=st.lists(_JUNK, max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_malformed_result_entries_are_refused_and_the_good_ones_kept(junk, claims, order):
    import asyncio
    from types import SimpleNamespace

    good = [[seq, True, f"value {seq}"] for seq in HELD]
    entries = junk + good
    order.shuffle(entries)
    data = CODEC.frame(RESULTS, w="w1", claims=claims, results=entries)
    transport = _transport()
    asyncio.run(transport._on_reply(SimpleNamespace(data=data, subject="s")))
    assert transport.sink.fatal is None
    assert {c.node: (c.ok, c.value) for c in transport.sink.done} == {
        seq: (True, f"value {seq}") for seq in HELD
    }
    assert not transport._inflight


def test_results_from_a_worker_that_does_not_hold_the_attempt_are_refused():
    import asyncio
    from types import SimpleNamespace

    transport = _transport()
    forged = [[seq, True, "forged"] for seq in HELD]
    for frame in (
        CODEC.frame(RESULTS, w="intruder", claims=list(HELD), results=forged),
        CODEC.frame(RESULTS, w="intruder", results=[[None, False, ["E", "forged", ""]]]),
    ):
        asyncio.run(transport._on_reply(SimpleNamespace(data=frame, subject="s")))
    assert not transport.sink.done and transport.sink.fatal is None
    # its claims and its results, each refused; its rejection too (it was sent nothing)
    assert transport.stats()["results_ignored"] == 2 * len(HELD) + 1


def test_a_cancel_payload_names_seqs_or_is_refused():
    from taskiq_dataflow.cluster.protocol import DEFAULT_CODEC as codec
    from taskiq_dataflow.cluster.protocol import MAX_CANCEL_SEQS, ProtocolError, decode_cancel

    assert decode_cancel(codec, codec.packb([3, -1, 7])) == {3, -1, 7}
    too_many = codec.packb(list(range(MAX_CANCEL_SEQS + 1)))
    for bad in (b"\xc1", codec.packb("3"), codec.packb([]), codec.packb([1, "2"]), too_many):
        with pytest.raises(ProtocolError):  # the worker ignores what raises here
            decode_cancel(codec, bad)
