"""The NATS cluster's dispatch and result path against a real nats-server and real workers:
frames within the server's max_payload, a hung (SIGSTOPped) worker, malformed result entries.

Pools: "big" (one worker whose large_value_threshold is above max_payload) and "hung" (three
workers, one of which a test stops). A bystander nats-py client plays a worker where a test
needs hand-made result frames.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from types import SimpleNamespace
from typing import Any

import cluster_tasks
import nats
import pytest
from cluster_support import CODEC, WorkerProcesses, index_dag, worker_pid
from conftest import run
from taskiq_dataflow import DataflowRegistry, ExecutionEngine, StepRequeued, TaskFailedError
from taskiq_dataflow.cluster import DataflowNatsBroker, NatsServer
from taskiq_dataflow.cluster.protocol import HEARTBEAT, RESULTS, TASKS
from taskiq_dataflow.errors import DataflowExecutionError

KB = 1000
BOUND = 20.0  # seconds: every run here takes well under 3


@pytest.fixture(scope="module")
def pools(server):
    big = WorkerProcesses(
        server.url, pool="big", env={cluster_tasks.THRESHOLD_ENV: str(8 * 1024 * 1024)}
    )
    hung = WorkerProcesses(server.url, workers=3, pool="hung", concurrency=4)
    started = []
    try:
        for wp in (big, hung):
            started.append(wp.launch())
        for wp in started:
            wp.ready()
        yield SimpleNamespace(big=big, hung=hung)
    finally:
        for wp in started:
            wp.stop()


def engine_broker(server: NatsServer, pool: str, **settings: Any) -> DataflowNatsBroker:
    settings.setdefault("heartbeat_timeout", 1.0)
    settings.setdefault("progress_timeout", 10.0)
    return DataflowNatsBroker(server.url, pool=pool, codec=cluster_tasks.codec, **settings)


def bounded(engine: ExecutionEngine, inputs: dict[str, Any] | None = None) -> Any:
    """The run, failing the test (not hanging it) when it takes longer than BOUND."""
    return run(asyncio.wait_for(engine.execute(inputs or {}), BOUND))


# -- max_payload (item 14) -----------------------------------------------------------------------


def test_a_batch_of_results_over_max_payload_arrives(server, pools):
    # 8 results of 200 KB finish in one flush of the worker: 1.6 MB in one frame would be
    # refused by the server (max_payload 1 MiB) and the run would hang
    registry = DataflowRegistry()
    registry.register_external_input("size")
    for i in range(8):
        registry.register_external_input(f"seed{i}")
        registry.register_task(cluster_tasks.blob_now, output=f"b{i}", inputs=["size", f"seed{i}"])
    engine = ExecutionEngine(engine_broker(server, "big"), registry.build_dag())
    out = bounded(engine, {"size": 200 * KB, **{f"seed{i}": i for i in range(8)}})
    assert {k: v for k, v in out.items() if k.startswith("b")} == {
        f"b{i}": bytes([i]) * 200 * KB for i in range(8)
    }
    assert engine.stats["values_by_reference"] == 0  # split across frames, not offloaded


def test_tasks_with_inputs_that_fill_a_frame_together_are_split_across_frames(server, pools):
    # 20 inputs of 200 KB, each under large_value_threshold: one frame would take 4 MB
    registry = DataflowRegistry()
    for i in range(20):
        registry.register_external_input(f"v{i}")
        registry.register_task(cluster_tasks.echo, output=f"e{i}", inputs=[f"v{i}"], name=f"e{i}")
    inputs = {f"v{i}": bytes([i]) * 200 * KB for i in range(20)}
    engine = ExecutionEngine(engine_broker(server, "big"), registry.build_dag())
    out = bounded(engine, inputs)
    assert all(out[f"e{i}"] == inputs[f"v{i}"] for i in range(20))
    assert engine.stats["values_uploaded"] == 0


def test_a_value_too_big_for_a_frame_goes_by_reference_whatever_the_threshold(server, pools):
    # engine and worker both say 8 MiB is small enough to inline: 1.5 MB still cannot be sent
    # in a frame, so each goes through the object store
    size = 1_500 * KB
    registry = DataflowRegistry()
    registry.register_external_input("size")
    registry.register_external_input("given")
    registry.register_task(cluster_tasks.make_blob, output="blob", inputs=["size"])
    registry.register_task(cluster_tasks.measure, output="made", inputs=["blob"], name="made")
    registry.register_task(cluster_tasks.measure, output="sent", inputs=["given"], name="sent")
    broker = engine_broker(server, "big", large_value_threshold=8 * 1024 * 1024)
    engine = ExecutionEngine(broker, registry.build_dag())
    out = bounded(engine, {"size": size, "given": b"\x01" * size})
    assert out["made"]["len"] == out["sent"]["len"] == size
    assert len(out["blob"]) == size
    # the worker's 1.5 MB result came by reference; the engine uploaded the given input and
    # the blob on its way to `made`
    assert engine.stats["values_by_reference"] == 1, engine.stats
    assert engine.stats["values_uploaded"] >= 1, engine.stats


# -- a hung worker (item 15) ---------------------------------------------------------------------


async def inboxes(nc: Any, pids: set[int], timeout: float = 5.0) -> dict[int, str]:
    """Each worker's own task subject, read from its heartbeats."""
    found: dict[int, str] = {}
    done = asyncio.Event()

    async def on_beat(msg: Any) -> None:
        frame = CODEC.read_frame(msg.data)
        if frame["t"] == HEARTBEAT and worker_pid(frame["w"]) in pids and frame.get("inbox"):
            found[worker_pid(frame["w"])] = frame["inbox"]
            if len(found) == len(pids):
                done.set()

    sub = await nc.subscribe(cluster_tasks.broker.heartbeat_subject, cb=on_beat)
    await asyncio.wait_for(done.wait(), timeout)
    await sub.unsubscribe()
    return found


def test_a_sigstopped_worker_gets_no_new_work_while_the_others_finish(server, pools):
    hung = pools.hung
    victim = sorted(hung.children())[0]
    n, stop_after = 2000, 150
    dag, inputs = index_dag(n, delay=0.01)
    # one redelivery allowed: the victim's tasks use it up, and still nothing may fail
    broker = engine_broker(server, "hung", max_redeliveries=1)
    fresh = broker.heartbeat_timeout / 2  # how long a silent worker may still be sent work
    state = SimpleNamespace(stopped_at=None, done=[], to_victim=[], to_pool=[])

    def on_step(name: str, result: Any) -> None:
        state.done.append(time.monotonic())
        if len(state.done) == stop_after:
            os.kill(victim, signal.SIGSTOP)
            state.stopped_at = time.monotonic()

    async def main() -> dict[str, Any]:
        nc = await nats.connect(server.url)
        try:
            inbox = (await inboxes(nc, {victim}))[victim]

            async def to_victim(msg: Any) -> None:
                state.to_victim.append(time.monotonic())

            async def to_pool(msg: Any) -> None:
                state.to_pool.append(time.monotonic())

            await nc.subscribe(inbox, cb=to_victim)
            await nc.subscribe(broker.tasks_subject("hung"), cb=to_pool)
            await nc.flush()
            engine = ExecutionEngine(broker, dag, on_step_complete=on_step)
            out = await asyncio.wait_for(engine.execute(inputs), BOUND)
            state.stats = engine.stats
            return out
        finally:
            os.kill(victim, signal.SIGCONT)
            await nc.close()

    out = run(main())
    assert {k: v for k, v in out.items() if k.startswith("k")} == {f"k{i}": i for i in range(n)}
    assert len(state.done) == n  # nothing failed, every step once
    stopped = state.stopped_at
    assert stopped is not None
    # the run went on well past the point where the victim was declared lost (1 s)...
    assert state.done[-1] > stopped + 1.5, state.done[-1] - stopped
    # ...and nothing was sent to the victim once its heartbeats were late (margin for delivery)
    late = [t - stopped for t in state.to_victim if t > stopped + fresh + 0.75]
    assert not late, late
    assert not state.to_pool  # every frame went to a worker that had room, none to the group
    # only what the victim held went again: about its third of the work
    assert 0 < state.stats["redeliveries"] <= math.ceil(n / 2), state.stats
    # the victim, resumed, serves again
    hung.wait_ready(3, timeout=10)


# -- malformed result entries (item 16) ----------------------------------------------------------


class FakeWorker:
    """A bystander that heart-beats as a worker of `pool` and answers each task frame with
    `answer(entries) -> (claims, results)`."""

    def __init__(self, url: str, pool: str, answer: Any) -> None:
        self.url, self.pool, self.answer = url, pool, answer
        self.id = f"fakehost-{os.getpid()}-fake01"
        self.inbox = f"dataflow.worker.fake{os.getpid()}{pool}"

    async def __aenter__(self) -> FakeWorker:
        self.nc = await nats.connect(self.url)

        async def on_tasks(msg: Any) -> None:
            frame = CODEC.read_frame(msg.data)
            claims, results = self.answer(frame["tasks"])
            reply = CODEC.frame(RESULTS, w=self.id, claims=claims, results=results)
            await self.nc.publish(frame["reply"], reply)

        async def on_ping(msg: Any) -> None:
            await self.beat()

        await self.nc.subscribe(self.inbox, cb=on_tasks)
        await self.nc.subscribe(cluster_tasks.broker.ping_subject, cb=on_ping)
        await self.nc.flush()
        self.beating = asyncio.ensure_future(self.beat_forever())
        return self

    async def beat(self) -> None:
        frame = CODEC.frame(HEARTBEAT, w=self.id, pool=self.pool, n=0, inbox=self.inbox, cap=100)
        await self.nc.publish(cluster_tasks.broker.heartbeat_subject, frame)

    async def beat_forever(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        self.beating.cancel()
        await self.nc.close()


JUNK = [
    "not a list",
    None,
    {"seq": 1},
    [1],
    [1, True, 2, 3],
    [[1], True, "unhashable seq"],
    [True, True, "bool seq"],
    [1.5, True, "float seq"],
    [None, True, "a rejection must say ok=False"],
    [-5, True, "negative, not ours"],
    [2**63, True, "not ours"],
]


def test_malformed_result_entries_are_refused_one_by_one_and_the_rest_kept(server):
    registry = DataflowRegistry()
    for i in range(5):
        registry.register_external_input(f"v{i}")
        registry.register_task(cluster_tasks.echo, output=f"e{i}", inputs=[f"v{i}"], name=f"e{i}")
    inputs = {f"v{i}": f"value {i}" for i in range(5)}

    def answer(entries: list[Any]) -> tuple[list[Any], list[Any]]:
        results: list[Any] = list(JUNK)  # before the good ones: they must not be dropped
        for seq, (_name, args, _kwargs, _timeout) in entries:
            if args[0] == "value 3":  # a malformed failure still fails its own task
                results.append([seq, False, "not [type, message, traceback]"])
            else:
                results.append([seq, True, args[0]])
            results.append([seq, "yes", "ok is not a bool"])
        return ["x", None, [1], *[seq for seq, _ in entries]], results

    async def main() -> Any:
        async with FakeWorker(server.url, "fake", answer):
            engine = ExecutionEngine(engine_broker(server, "fake"), registry.build_dag())
            engine.fail_fast = False
            try:
                await asyncio.wait_for(engine.execute(inputs), BOUND)
            except DataflowExecutionError as exc:
                return exc, engine.stats
        raise AssertionError("the malformed failure did not fail its task")

    exc, stats = run(main())
    assert {k: exc.results[k] for k in exc.results if k.startswith("e")} == {
        f"e{i}": f"value {i}" for i in (0, 1, 2, 4)
    }
    [failure] = exc.failures
    assert failure.task_name == "e3" and failure.type == "ProtocolError"
    assert "sent a malformed failure" in failure.message and "fakehost-" in failure.message
    assert stats["results_ignored"] >= len(JUNK) - 2, stats  # -5 and 2**63 count as unknown


def test_a_negative_seq_comes_back_as_sent(server, pools):
    entries = [
        [-5, [cluster_tasks.echo.task_name, ["minus five"], {}, None]],
        [-(2**40), [cluster_tasks.echo.task_name, ["far below"], {}, None]],
        [2**64 - 1, [cluster_tasks.echo.task_name, ["top"], {}, None]],
    ]

    async def main() -> list[Any]:
        nc = await nats.connect(server.url)
        inbox = nc.new_inbox()
        got: list[Any] = []
        done = asyncio.Event()

        async def on_reply(msg: Any) -> None:
            got.extend(CODEC.read_frame(msg.data)["results"])
            if len(got) >= len(entries):
                done.set()

        try:
            await nc.subscribe(inbox, cb=on_reply)
            frame = CODEC.frame(TASKS, run="neg", reply=inbox, tasks=entries)
            await nc.publish(cluster_tasks.broker.tasks_subject("big"), frame)
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await nc.close()
        return got

    got = run(main())
    assert sorted(map(tuple, got)) == sorted(
        [(-5, True, "minus five"), (-(2**40), True, "far below"), (2**64 - 1, True, "top")]
    )


def test_a_task_that_kills_every_worker_fails_after_max_redeliveries_losses(server):
    registry = DataflowRegistry()
    registry.register_task(cluster_tasks.die, output="never", inputs=[])
    broker = engine_broker(server, "poison", max_redeliveries=1)
    with WorkerProcesses(server.url, workers=2, pool="poison"):
        started = time.monotonic()
        with pytest.raises(TaskFailedError) as info:
            run(asyncio.wait_for(ExecutionEngine(broker, registry.build_dag()).execute(), BOUND))
    message = str(info.value)
    assert "each of the 2 workers that held it stopped heart-beating" in message, message
    assert "may be what kills or hangs them" in message
    assert time.monotonic() - started < BOUND


def test_a_worker_lost_holding_a_task_is_reported_to_the_run_which_sends_it_again(server):
    """A worker claims the task and goes silent: the transport reports it lost to the run
    (WorkerLost), whose state sends the same attempt again; the kept frame reaches the
    worker that joined meanwhile, and the silent one's answer is no longer awaited."""
    registry = DataflowRegistry()
    registry.register_external_input("v")
    registry.register_task(cluster_tasks.echo, output="e", inputs=["v"], name="e")
    taken = asyncio.Event()

    def go_silent(entries: list[Any]) -> tuple[list[Any], list[Any]]:
        silent.beating.cancel()
        taken.set()
        return [seq for seq, _ in entries], []

    def answer(entries: list[Any]) -> tuple[list[Any], list[Any]]:
        seqs = [seq for seq, _ in entries]
        return seqs, [[seq, True, args[0]] for seq, (_name, args, _kw, _t) in entries]

    silent = FakeWorker(server.url, "lost", go_silent)
    good = FakeWorker(server.url, "lost", answer)
    good.id, good.inbox = f"{good.id}-good", f"{good.inbox}good"

    async def main() -> Any:
        async with silent:
            engine = ExecutionEngine(engine_broker(server, "lost"), registry.build_dag())
            requeued: list[StepRequeued] = []
            engine.events.subscribe(requeued.append, StepRequeued)
            running = asyncio.ensure_future(engine.execute({"v": "value"}))
            await asyncio.wait_for(taken.wait(), BOUND)
            async with good:
                out = await asyncio.wait_for(running, BOUND)
        return out, requeued, engine.stats

    out, requeued, stats = run(main())
    assert out["e"] == "value"
    assert [(e.task_name, e.attempt, e.worker, e.losses) for e in requeued] == [
        ("e", 1, silent.id, 1)
    ]
    assert stats["redeliveries"] == 1, stats


def test_a_run_started_before_its_workers_goes_to_them_as_they_appear(server):
    """Tasks sent to the pool's queue group before any worker subscribed reach nobody; the
    first worker heard gets them at once, not after heartbeat_timeout (20 s here)."""
    broker = DataflowNatsBroker(
        server.url, heartbeat_interval=0.2, heartbeat_timeout=20.0, progress_timeout=60.0
    )
    dag, inputs = index_dag(4, 0.0)
    workers = WorkerProcesses(server.url, workers=1)

    async def main() -> tuple[dict[str, Any], float]:
        running = asyncio.ensure_future(ExecutionEngine(broker, dag).execute(inputs))
        await asyncio.sleep(0.5)  # it pinged, heard no worker, sent to the queue group
        assert not running.done()
        await asyncio.to_thread(workers.start)
        ready = time.monotonic()
        out = await asyncio.wait_for(running, 15)
        return out, time.monotonic() - ready

    try:
        out, after_ready = run(main())
    finally:
        workers.stop()
    assert out == {f"k{i}": i for i in range(4)}
    assert after_ready < 5, f"the run waited {after_ready:.1f} s after its worker was ready"
