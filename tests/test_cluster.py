"""The NATS worker cluster against a real nats-server and real worker processes.

One server for the module; worker supervisors (`python -m taskiq_dataflow.cluster.serve`) for the
default pool (2 workers), a "gpu" pool and a "chaos" pool that the SIGKILL test may damage.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import signal
import time
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import cluster_tasks
import msgpack
import nats
import pytest
from cluster_support import CODEC, WorkerProcesses, index_dag
from cluster_tasks import Colour, Inner, Level, Money, Reading
from conftest import dag_of, run
from taskiq_dataflow import (
    DataflowExecutionError,
    DataflowRegistry,
    ExecutionEngine,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow.cluster import Codec, DataflowNatsBroker, NatsServer
from taskiq_dataflow.cluster.protocol import RESULTS, TASKS


@pytest.fixture(scope="module")
def cluster(server):
    pools = SimpleNamespace(
        default=WorkerProcesses(server.url, workers=2),
        gpu=WorkerProcesses(server.url, workers=1, pool="gpu"),
        chaos=WorkerProcesses(server.url, workers=2, pool="chaos", concurrency=32),
    )
    started = []
    try:
        for wp in vars(pools).values():
            started.append(wp.launch())
        for wp in started:
            wp.ready()
        yield pools
    finally:
        for wp in started:
            wp.stop()


def engine_broker(server: NatsServer, **settings: Any) -> DataflowNatsBroker:
    """The engine side's broker: same codec as the workers, short timeouts for tests."""
    settings.setdefault("heartbeat_timeout", 1.0)
    settings.setdefault("progress_timeout", 20.0)
    settings.setdefault("codec", cluster_tasks.broker.codec)
    return DataflowNatsBroker(server.url, **settings)


# -- payloads ------------------------------------------------------------------------------------

TZ_IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
PAYLOADS: dict[str, Any] = {
    "none": None,
    "true": True,
    "false": False,
    "int": -42,
    "u64_max": 2**64 - 1,
    "i64_min": -(2**63),
    "float": 3.141592653589793,
    "float_inf": float("-inf"),
    "float_neg_zero": -0.0,
    "str": "héllo ✓ \x00 end",
    "empty_str": "",
    "bytes": bytes(range(256)),
    "list": [1, "a", None, 2.5],
    "empty_list": [],
    "dict": {"a": 1, "b": [1, 2]},
    "dict_non_str_keys": {
        1: "int",
        -7: "negative",
        b"k": "bytes",
        (1, "x"): "tuple",
        None: "none",
        2.5: "float",
        frozenset({1, 2}): "frozenset",
        dt.date(2020, 1, 1): "date",
    },
    "nested": {
        "rows": [
            {"id": 1, "tags": {"a", "b"}, "span": (dt.date(2024, 1, 1), dt.timedelta(days=1))}
        ],
        "meta": {"ok": True, "pair": (1, (2, [3, {4: (5,)}]))},
    },
    "tuple": (1, "two", 3.0, None),
    "empty_tuple": (),
    "set": {1, 2, 3},
    "empty_set": set(),
    "frozenset": frozenset({"x", "y"}),
    "datetime_naive": dt.datetime(2024, 2, 29, 13, 45, 1, 123456),
    "datetime_utc": dt.datetime(2024, 2, 29, 13, 45, tzinfo=dt.UTC),
    "datetime_offset": dt.datetime(2024, 2, 29, 13, 45, 0, 7, tzinfo=TZ_IST),
    "date": dt.date(1999, 12, 31),
    "time": dt.time(23, 59, 59, 999999),
    "time_tz": dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
    "timedelta": dt.timedelta(days=-2, seconds=5, microseconds=7),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": Decimal("-1234.5678901234567890123456789"),
    "complex": complex(1.5, -2.25),
    "pydantic_model": Reading(
        sensor="t1",
        values=[1.0, 2.5],
        inner=Inner(label="x", when=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
        tags={"a"},
    ),
    "int_enum": Level.HIGH,
    "str_enum": Colour.RED,
    "user_codec": Money(1999, "EUR"),
    "user_codec_nested": {"prices": [Money(1, "USD"), (Money(2, "JPY"),)]},
}


def assert_same(got: Any, want: Any, path: str = "value") -> None:
    """Equal and of the same type, all the way down (enums arrive as themselves: the codec
    carries them since issue 9 item 9)."""
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    assert got == want, f"{path}: {got!r} != {want!r}"
    if isinstance(want, float):
        assert math.copysign(1, got) == math.copysign(1, want), path
    elif isinstance(want, (dt.datetime, dt.time)):
        assert got.utcoffset() == want.utcoffset(), f"{path}: offset"
    elif isinstance(want, (list, tuple)):
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, dict):
        got_keys = {k: k for k in got}
        for k, w in want.items():
            assert_same(got_keys[k], k, f"{path} key {k!r}")
            assert_same(got[k], w, f"{path}[{k!r}]")
    elif isinstance(want, Reading):
        assert_same(got.inner.when, want.inner.when, f"{path}.inner.when")


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payload_round_trip(server, cluster, name):
    value = PAYLOADS[name]
    dag = dag_of(cluster_tasks.echo, external=("value",))
    out = run(ExecutionEngine(engine_broker(server), dag).execute({"value": value}))
    assert_same(out["echoed"], value)


def test_all_payloads_in_one_run_positionally(server, cluster):
    """Many nodes of one task, arguments bound by position, one run, every type at once."""
    registry = DataflowRegistry()
    for name in PAYLOADS:
        registry.register_external_input(f"in_{name}")
        registry.register_task(cluster_tasks.echo, output=f"out_{name}", inputs=[f"in_{name}"])
    dag = registry.build_dag()
    inputs = {f"in_{name}": value for name, value in PAYLOADS.items()}
    out = run(ExecutionEngine(engine_broker(server), dag).execute(inputs))
    for name, value in PAYLOADS.items():
        assert_same(out[f"out_{name}"], value, name)


def test_unencodable_return_value_names_the_task(server, cluster):
    dag = dag_of(cluster_tasks.unsendable)
    with pytest.raises(TaskFailedError) as info:
        run(ExecutionEngine(engine_broker(server), dag).execute())
    message = str(info.value)
    assert info.value.task_name == "unsendable"
    assert "task 'unsendable' failed: EncodeError" in message
    assert "return value cannot be sent" in message
    assert "builtins.object" in message and "Codec.register" in message


def test_an_unencodable_result_fails_only_its_task_among_its_frames_results(server, cluster):
    # a worker steps a task in place from the second frame of it on (the first one runs it
    # the long way, which finds out what it is): the second run's results are encoded together
    registry = DataflowRegistry()
    inputs: dict[str, Any] = {f"i{i}": i for i in range(40)}
    for key in (*inputs, "bad"):
        registry.register_external_input(key)
    for i in range(40):
        registry.register_task(
            cluster_tasks.index_or_unsendable, name=f"t{i}", output=f"k{i}", inputs=[f"i{i}", "bad"]
        )
    engine = ExecutionEngine(engine_broker(server), registry.build_dag(), fail_fast=False)
    for _ in range(2):
        with pytest.raises(DataflowExecutionError) as info:
            run(asyncio.wait_for(engine.execute({**inputs, "bad": 17}), 30))
        assert {k: v for k, v in info.value.results.items() if k.startswith("k")} == {
            f"k{i}": i for i in range(40) if i != 17
        }
        [failure] = info.value.failures
        assert failure.task_name == "t17" and failure.type == "EncodeError"
        assert "return value cannot be sent" in failure.message
        assert "builtins.object" in failure.message


def test_unencodable_input_names_the_task_and_input(server, cluster):
    dag = dag_of(cluster_tasks.echo, external=("value",))
    with pytest.raises(TaskFailedError) as info:
        run(ExecutionEngine(engine_broker(server), dag).execute({"value": [1, object()]}))
    message = str(info.value)
    assert info.value.task_name == "echo"
    assert "an input of task 'echo' (input 'value') cannot be sent" in message
    assert "builtins.object" in message


def test_int_beyond_msgpack_range_names_the_task(server, cluster):
    dag = dag_of(cluster_tasks.echo, external=("value",))
    with pytest.raises(TaskFailedError) as info:
        run(ExecutionEngine(engine_broker(server), dag).execute({"value": 2**64}))
    assert "an input of task 'echo' (input 'value') cannot be sent" in str(info.value)


def test_user_type_without_a_codec_is_refused_naming_the_task(server, cluster):
    broker = DataflowNatsBroker(server.url, codec=Codec())  # Money is not registered here
    dag = dag_of(cluster_tasks.echo, external=("value",))
    with pytest.raises(TaskFailedError) as info:
        run(ExecutionEngine(broker, dag).execute({"value": Money(1, "EUR")}))
    message = str(info.value)
    assert "an input of task 'echo' (input 'value') cannot be sent" in message
    assert "cluster_tasks.Money" in message and "Codec.register" in message


class Unknown:
    pass


def test_extension_the_workers_lack_is_rejected_clearly(server, cluster):
    codec = Codec()
    codec.register(Unknown, 99, lambda _: b"", lambda _: Unknown())
    broker = engine_broker(server, codec=codec)
    dag = dag_of(cluster_tasks.echo, external=("value",))
    with pytest.raises(TaskFailedError) as info:
        run(ExecutionEngine(broker, dag).execute({"value": Unknown()}))
    message = str(info.value)
    assert message.startswith("task 'echo' failed: ProtocolError: worker ")
    assert "cannot decode the task: unknown msgpack extension type 99" in message


# -- batching, pools, unknown tasks --------------------------------------------------------------


def test_wide_dag_is_sent_and_answered_in_batches(server, cluster):
    n = 2000
    registry = DataflowRegistry()
    for i in range(n):
        registry.register_task(cluster_tasks.noop, output=f"n{i}", inputs=[])
    dag = registry.build_dag()
    broker = engine_broker(server)
    run_id = f"wide-{uuid.uuid4().hex}"
    seen = {"task_frames": 0, "task_entries": 0, "result_frames": 0, "results": 0}

    async def main() -> dict[str, Any]:
        nc = await nats.connect(server.url)
        got_all = asyncio.Event()

        async def on_tasks(msg: Any) -> None:
            frame = CODEC.read_frame(msg.data)
            if frame["run"] == run_id:
                seen["task_frames"] += 1
                seen["task_entries"] += len(frame["tasks"])

        async def on_results(msg: Any) -> None:
            frame = CODEC.read_frame(msg.data)
            if frame["t"] == RESULTS:
                seen["result_frames"] += 1
                seen["results"] += len(frame["results"])
            if seen["results"] >= n and seen["task_entries"] >= n:
                got_all.set()

        try:
            # frames go to each worker's own subject (the pool's queue group only before any
            # worker is known); the run's results subject ends in its secret
            await nc.subscribe(f"{broker.prefix}.worker.*", cb=on_tasks)
            await nc.subscribe(broker.tasks_subject("default"), cb=on_tasks)
            await nc.subscribe(f"{broker.prefix}.results.{run_id}.*", cb=on_results)
            await nc.flush()
            out = await ExecutionEngine(broker, dag).execute(pipeline_id=run_id)
            await asyncio.wait_for(got_all.wait(), 10)
        finally:
            await nc.close()
        return out

    out = run(main())
    assert out == {f"n{i}": None for i in range(n)}
    assert seen["task_entries"] >= n
    assert seen["task_frames"] <= n // 10, seen
    assert seen["result_frames"] < n // 2, seen


def test_pool_tasks_go_only_to_that_pools_workers(server, cluster):
    registry = DataflowRegistry()
    for i in range(20):
        registry.register_task(cluster_tasks.where, output=f"cpu{i}", inputs=[])
        registry.register_task(cluster_tasks.where_gpu, output=f"gpu{i}", inputs=[])
    out = run(ExecutionEngine(engine_broker(server), registry.build_dag()).execute())
    gpu_pids, default_pids = set(cluster.gpu.children()), set(cluster.default.children())
    for i in range(20):
        assert out[f"gpu{i}"]["pool"] == "gpu" and out[f"gpu{i}"]["pid"] in gpu_pids
        assert out[f"cpu{i}"]["pool"] == "default" and out[f"cpu{i}"]["pid"] in default_pids


def test_register_task_sets_pool_and_local_per_node(server, cluster):
    """One task, three nodes: its own pool, another pool, and the engine's process."""
    registry = DataflowRegistry()
    registry.register_task(cluster_tasks.where_gpu, output="own", inputs=[])
    registry.register_task(cluster_tasks.where_gpu, output="moved", inputs=[], pool="default")
    registry.register_task(cluster_tasks.where_gpu, output="here", inputs=[], local=True)
    out = run(ExecutionEngine(engine_broker(server), registry.build_dag()).execute())
    assert out["own"]["pid"] in cluster.gpu.children()
    assert out["moved"]["pid"] in cluster.default.children()
    assert out["here"]["pid"] == os.getpid()


@cluster_tasks.broker.task
@pipeline_task(output="ghostly")
def ghost() -> int:
    """Registered in this (engine) process only: the workers' module has no such task."""
    return 1


def test_a_task_no_worker_serves_is_never_sent_and_fails_naming_it(server, cluster):
    """Workers advertise their task names: the engine waits for one that serves the task (at
    most progress_timeout), then fails naming the task and the workers it heard from."""
    dag = dag_of(ghost)
    with pytest.raises(TaskFailedError) as info:
        run(ExecutionEngine(engine_broker(server, progress_timeout=1.0), dag).execute())
    message = str(info.value)
    assert info.value.task_name == "ghost"
    assert f"no live worker of pool 'default' serves task {ghost.task_name!r}" in message
    assert "workers seen: " in message and "(pool 'default', serves " in message
    assert "@broker.task" in message


def test_pool_without_workers_fails_naming_the_pool(server, cluster):
    dag = dag_of(cluster_tasks.echo, external=("value",))
    broker = engine_broker(server, pool="nobody", heartbeat_timeout=0.2, max_redeliveries=2)
    started = time.monotonic()
    with pytest.raises(TaskFailedError) as info:
        run(ExecutionEngine(broker, dag).execute({"value": 1}))
    assert time.monotonic() - started < 5
    assert "sent to pool 'nobody' 3 times and no worker completed it" in str(info.value)


# -- malformed frames ----------------------------------------------------------------------------


def test_malformed_frames_get_error_results_and_the_worker_keeps_serving(server, cluster):
    before = sorted(cluster.default.children())
    subject = cluster_tasks.broker.tasks_subject("default")
    echo_name = cluster_tasks.echo.task_name

    async def main() -> None:
        nc = await nats.connect(server.url)
        inbox = nc.new_inbox()
        frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_reply(msg: Any) -> None:
            frames.put_nowait(CODEC.read_frame(msg.data))

        async def rejection() -> list[Any]:
            frame = await asyncio.wait_for(frames.get(), 5)
            assert frame["t"] == RESULTS, frame
            [(seq, ok, error)] = frame["results"]
            assert seq is None and ok is False and error[0] == "ProtocolError"
            return error

        try:
            await nc.subscribe(inbox, cb=on_reply)
            await nc.flush()

            # Not msgpack at all; the reply subject is the message's own.
            await nc.publish(subject, b"\xc1\xc1 not msgpack", reply=inbox)
            assert "not a msgpack frame" in (await rejection())[1]

            # msgpack, but not a map.
            await nc.publish(subject, msgpack.packb([1, 2, 3]), reply=inbox)
            assert "not a dataflow frame" in (await rejection())[1]

            # A map from another protocol version: the reply subject is read from inside it.
            wrong = {"v": 99, "t": TASKS, "run": "r", "reply": inbox, "tasks": []}
            await nc.publish(subject, msgpack.packb(wrong))
            assert "protocol version 99" in (await rejection())[1]

            # The right version but the wrong kind of frame, and a tasks frame without tasks.
            await nc.publish(subject, CODEC.frame(RESULTS, reply=inbox, results=[]))
            assert "expected a 'tasks' frame" in (await rejection())[1]
            await nc.publish(subject, CODEC.frame(TASKS, run="r", reply=inbox, tasks="nope"))
            assert "needs 'run' (str), 'reply' (str), 'tasks' (list)" in (await rejection())[1]

            # Malformed entries next to a good one: each bad one gets an error result.
            entries = [
                [7, "bogus"],
                8,
                [9, [echo_name, "not a list", {}, None]],
                [[10], [echo_name, ["unhashable seq"], {}, None]],
                [11, [echo_name, ["fine"], {}, None]],
            ]
            await nc.publish(subject, CODEC.frame(TASKS, run="hand", reply=inbox, tasks=entries))
            results: list[tuple[Any, bool, Any]] = []
            claims: list[int] = []
            deadline = time.monotonic() + 5
            while len(results) < len(entries) or not claims:
                timeout = max(deadline - time.monotonic(), 0.01)
                frame = await asyncio.wait_for(frames.get(), timeout)
                assert frame["t"] == RESULTS
                claims += frame.get("claims", [])
                results += [tuple(r) for r in frame["results"]]
            # an entry with a readable seq is claimed even when malformed: the engine takes an
            # answer only from the worker holding the attempt
            assert claims == [7, 9, 11]
            by_seq = {str(seq): (ok, value) for seq, ok, value in results}
            assert by_seq["11"] == (True, "fine")
            for seq in ("7", "None", "9"):
                ok, error = by_seq[seq]
                assert not ok and error[0] == "ProtocolError", (seq, error)
                assert "malformed task entry" in error[1], (seq, error)
            assert sum(seq is None for seq, _, _ in results) == 2  # entries 8 and [10]
        finally:
            await nc.close()

    run(main())
    # Still the same worker processes (none crashed and was restarted), and a run succeeds.
    assert sorted(cluster.default.children()) == before
    dag = dag_of(cluster_tasks.echo, external=("value",))
    assert run(ExecutionEngine(engine_broker(server), dag).execute({"value": 5})) == {"echoed": 5}


# -- large values --------------------------------------------------------------------------------

BIG = 3 * 1024 * 1024  # above nats-server's default max_payload of 1 MB


def stored_objects(server: NatsServer, prefix: str) -> dict[str, int]:
    """Objects of the value store bucket whose names start with `prefix`, with their sizes."""

    async def main() -> dict[str, int]:
        nc = await nats.connect(server.url)
        try:
            store = await nc.jetstream().object_store(cluster_tasks.broker.object_store_bucket)
            objects = await store.list()
            return {o.name: o.size for o in objects if o.name.startswith(prefix) and not o.deleted}
        finally:
            await nc.close()

    return run(main())


def test_large_result_goes_through_the_object_store(server, cluster):
    registry = DataflowRegistry()
    registry.register_external_input("size")
    registry.register_task(cluster_tasks.make_blob)
    registry.register_task(cluster_tasks.measure, output="measured", inputs=["blob"])
    engine = ExecutionEngine(engine_broker(server), registry.build_dag())
    run_id = f"big-out-{uuid.uuid4().hex}"
    out = run(engine.execute({"size": BIG}, pipeline_id=run_id))
    expected = cluster_tasks.make_blob.original_func(BIG)
    assert len(out["blob"]) == BIG and out["blob"] == expected
    # measure got the blob by reference, resolved on its worker
    assert out["measured"] == cluster_tasks.measure.original_func(expected)
    # the blob came back as a reference (put by its worker), and the run freed the store after
    assert engine.stats["values_by_reference"] == 1
    assert stored_objects(server, f"{run_id}.") == {}


def test_a_large_result_of_a_task_stepped_in_place_goes_through_the_object_store(server, cluster):
    # blob_now is async and never suspends: a worker that ran it once steps it as it arrives,
    # encodes its result with its frame's others, and uploads a large one as encoded (the
    # first run makes sure both workers know it)
    registry = DataflowRegistry()
    for key in ("size", "small"):
        registry.register_external_input(key)
    registry.register_task(cluster_tasks.blob_now, output="big", inputs=["size", "small"])
    for i in range(8):
        registry.register_external_input(f"seed{i}")
        registry.register_task(
            cluster_tasks.blob_now, name=f"little{i}", output=f"little{i}",
            inputs=["small", f"seed{i}"],
        )  # fmt: skip
    engine = ExecutionEngine(engine_broker(server), registry.build_dag())
    seeds = {f"seed{i}": i for i in range(8)}
    for _ in range(2):
        run_id = f"big-stepped-{uuid.uuid4().hex}"
        out = run(engine.execute({"size": BIG, "small": 10, **seeds}, pipeline_id=run_id))
        assert out["big"] == bytes([10]) * BIG
        assert all(out[f"little{i}"] == bytes([i]) * 10 for i in range(8))
        assert engine.stats["values_by_reference"] == 1
        assert stored_objects(server, f"{run_id}.") == {}


def test_large_input_goes_through_the_object_store(server, cluster):
    blob = os.urandom(BIG)
    registry = DataflowRegistry()
    registry.register_external_input("blob")
    registry.register_task(cluster_tasks.measure, output="measured", inputs=["blob"])
    registry.register_task(cluster_tasks.echo, output="same", inputs=["blob"])
    engine = ExecutionEngine(engine_broker(server), registry.build_dag())
    run_id = f"big-in-{uuid.uuid4().hex}"
    out = run(engine.execute({"blob": blob}, pipeline_id=run_id))
    assert out["measured"] == {"len": BIG, "sum": sum(blob[::4096])}
    assert out["same"] == blob
    # the input was uploaded once for both consumers; echo's result came back by reference
    assert engine.stats["values_uploaded"] == 1
    assert engine.stats["values_by_reference"] == 1
    assert stored_objects(server, f"{run_id}.") == {}


# -- a worker killed mid-run ---------------------------------------------------------------------


def test_sigkill_of_a_worker_mid_run_loses_nothing(server, cluster):
    chaos = cluster.chaos
    n = 10_000
    dag, inputs = index_dag(n, delay=0.005)
    victim, survivor = chaos.children()
    completed: list[str] = []
    killed_after: list[int] = []

    def on_step(name: str, result: Any) -> None:
        completed.append(name)
        if len(completed) == 1500:
            os.kill(victim, signal.SIGKILL)
            killed_after.append(len(completed))

    engine = ExecutionEngine(
        engine_broker(server, pool="chaos", heartbeat_timeout=1.0), dag, on_step_complete=on_step
    )
    out = run(engine.execute(inputs))
    assert killed_after == [1500]
    assert len(completed) == n  # every step reported once
    assert out == {f"k{i}": i for i in range(n)}
    assert engine.stats["redeliveries"] > 0, engine.stats
    # The supervisor replaced the dead worker.
    assert chaos.wait_ready(2, timeout=20) and victim not in chaos.children()
    assert survivor in chaos.children()
