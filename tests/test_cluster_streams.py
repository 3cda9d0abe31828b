"""Streams between cluster workers: items as msgpack frames over NATS, in order, exactly once,
with credit-based back-pressure; producers and consumers on workers or in the engine."""

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import cluster_tasks
import feature_tasks as ft
import nats
import pytest
from cluster_support import WorkerProcesses
from conftest import registry_of as registry
from conftest import run
from taskiq_dataflow import (
    DataflowExecutionError,
    DataflowRegistry,
    ExecutionEngine,
    StepCompleted,
    StreamError,
    TaskFailedError,
    pipeline_task,
)
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.cluster.protocol import DEFAULT_CODEC
from taskiq_dataflow.cluster.streams import StreamLink


@pytest.fixture(scope="module")
def workers(server):
    wp = WorkerProcesses(server.url, workers=2, target="feature_tasks:broker")
    wp.start()
    try:
        yield wp
    finally:
        wp.stop()


def engine_for(server, dag, **options) -> ExecutionEngine:
    broker = DataflowNatsBroker(server.url, heartbeat_timeout=1.0, codec=cluster_tasks.broker.codec)
    return ExecutionEngine(broker, dag, **options)


def workers_of(engine) -> dict[str, str]:
    where: dict[str, str] = {}
    engine.events.subscribe(lambda e: where.__setitem__(e.task_name, e.worker), StepCompleted)
    return where


def test_items_cross_workers_in_order_exactly_once(server, workers):
    dag = registry(ft.ticks, ft.seen, external=["count", "pause", "lag"]).build_dag()
    engine = engine_for(server, dag)
    where = workers_of(engine)
    out = run(engine.execute({"count": 3000, "pause": 0, "lag": 0}))
    assert [i for i, _, _ in out["seen"]] == list(range(3000))
    assert out["ticks"] is None  # read live by its only consumer: not kept
    assert where["ticks"] and where["seen"]  # both ran on workers, not in the engine


def test_streaming_consumer_on_a_worker_starts_before_its_producer_ends(server, workers):
    dag = registry(ft.ticks, ft.seen, external=["count", "pause", "lag"]).build_dag()
    out = run(engine_for(server, dag).execute({"count": 4, "pause": 0.3, "lag": 0}))
    (_, _, first_seen), (_, last_made, _) = out["seen"][0], out["seen"][-1]
    assert first_seen < last_made  # the consumer had item 0 before the producer made item 3


def test_back_pressure_across_workers(server, workers):
    """The consumer reads with a buffer of 4 and is slow: the producer never gets far ahead."""
    dag = registry(ft.ticks, ft.seen, external=["count", "pause", "lag"]).build_dag()
    out = run(engine_for(server, dag).execute({"count": 40, "pause": 0, "lag": 0.02}))
    made = {i: m for i, m, _ in out["seen"]}
    got = {i: g for i, _, g in out["seen"]}
    buffer = 4
    # item s is made only after the consumer read item s - buffer - 1 (credit comes on reads;
    # one item of slack for the consumer's own bookkeeping)
    late = [s for s in range(buffer + 2, 40) if made[s] < got[s - buffer - 2]]
    assert not late, f"items made before their credit: {late}"
    assert made[39] > got[39 - buffer - 2]


def test_a_stream_transformed_on_a_worker_on_its_way(server, workers):
    reg = registry(ft.ticks, ft.double_ticks, external=["count", "pause", "lag"])
    reg.register_task(ft.seen, output="seen", inputs=["doubled", "lag"])
    out = run(engine_for(server, reg.build_dag()).execute({"count": 300, "pause": 0, "lag": 0}))
    assert [row[0] for row in out["seen"]] == list(range(0, 600, 2))
    assert out["ticks"] is None and out["doubled"] is None


def test_a_list_consumer_of_a_worker_stream_gets_the_list(server, workers):
    dag = registry(ft.ticks, ft.seen, ft.tally, external=["count", "pause", "lag"]).build_dag()
    out = run(engine_for(server, dag).execute({"count": 500, "pause": 0, "lag": 0}))
    assert [i for i, _, _ in out["seen"]] == out["tally"] == list(range(500))
    assert [i for i, _ in out["ticks"]] == list(range(500))


def test_engine_producer_to_worker_consumer_and_back(server, workers):
    """A plain (unregistered) producer runs in the engine and streams to a worker; a worker
    producer streams to a plain consumer in the engine."""

    @pipeline_task(output="ticks", inputs=["count"])
    async def local_ticks(count):
        for i in range(count):
            yield [i, 0.0]

    @pipeline_task(output="firsts", stream_buffer=2)
    async def local_reader(ticks: AsyncIterator[list]) -> list:
        return [row[0] async for row in ticks]

    dag = registry(local_ticks, ft.seen, external=["count", "lag"]).build_dag()
    out = run(engine_for(server, dag).execute({"count": 50, "lag": 0}))
    assert [i for i, _, _ in out["seen"]] == list(range(50))

    dag = registry(ft.ticks, local_reader, external=["count", "pause"]).build_dag()
    out = run(engine_for(server, dag).execute({"count": 50, "pause": 0}))
    assert out["firsts"] == list(range(50))


def test_producer_failure_reaches_the_consumer_on_a_worker(server, workers):
    dag = registry(ft.broken, ft.sipped, external=["count"]).build_dag()
    with pytest.raises((TaskFailedError, DataflowExecutionError)) as caught:
        run(engine_for(server, dag, fail_fast=False).execute({"count": 3}))
    text = str(caught.value) + "".join(map(str, getattr(caught.value, "failures", [])))
    assert "the well ran dry" in text


def test_a_consumer_that_stops_early_releases_its_producer(server, workers):
    @pipeline_task(output="head", stream_buffer=2)
    async def head(ticks: AsyncIterator[list]) -> list:
        rows = []
        async for row in ticks:
            rows.append(row[0])
            if len(rows) == 3:
                break
        return rows

    dag = registry(ft.ticks, head, external=["count", "pause"]).build_dag()
    out = run(asyncio.wait_for(engine_for(server, dag).execute({"count": 100, "pause": 0}), 30))
    assert out["head"] == [0, 1, 2]  # and the producer, no longer waited for, finished


def test_producer_worker_killed_mid_stream_consumer_sees_each_item_once(server, workers):
    """The producer's worker is SIGKILLed after 20 items: the engine sends the producer again,
    the new worker regenerates the items and skips the 20 the consumer already has."""
    gen = WorkerProcesses(server.url, workers=1, pool="streamgen", target="feature_tasks:broker")
    gen.start()
    try:
        (victim,) = gen.children()

        @pipeline_task(output="read", stream_buffer=4)
        async def reader(ticks: AsyncIterator[list]) -> list:
            read = []
            async for i, _ in ticks:
                read.append(i)
                if len(read) == 20:
                    os.kill(victim, signal.SIGKILL)
            return read

        dag = registry(ft.ticks_in_own_pool, reader, external=["count", "pause"]).build_dag()
        engine = engine_for(server, dag)
        out = run(asyncio.wait_for(engine.execute({"count": 60, "pause": 0.02}), 60))
        assert out["read"] == list(range(60))
        assert engine.stats["redeliveries"] >= 1
        assert victim not in gen.children()
    finally:
        gen.stop()


class Lossy:
    """A real NATS connection that drops every `every`-th frame it publishes."""

    def __init__(self, nc, every: int) -> None:
        self.nc, self.every, self.sent, self.dropped = nc, every, 0, 0

    async def publish(self, subject, payload):
        self.sent += 1
        if self.sent % self.every == 0:
            self.dropped += 1
            return
        await self.nc.publish(subject, payload)

    def __getattr__(self, name):
        return getattr(self.nc, name)


async def send_all(sender, n: int) -> None:
    """What streams.pump does for a producer yielding 0..n-1."""
    for i in range(n):
        await sender._put(i)
    await sender._close()


def test_lost_items_and_credits_are_sent_again(server):
    """Items and credits lost in transit (NATS core is at most once) cost a resend, never an
    item: the receiver reads each exactly once, in order, and the sender finishes."""

    async def scenario():
        a, b = await nats.connect(server.url), await nats.connect(server.url)
        producer = StreamLink(Lossy(a, 3), DEFAULT_CODEC, None, 0.05, "lossy", "r1")
        consumer = StreamLink(Lossy(b, 4), DEFAULT_CODEC, None, 0.05, "lossy", "r1")
        ref = producer.route(3, 0, "numbers", 8)
        sender, receiver = producer.sender(ref), consumer.receiver(ref)

        reading = asyncio.ensure_future(receiver.collect())
        await asyncio.wait_for(send_all(sender, 500), 30)
        got = await asyncio.wait_for(reading, 30)
        dropped = producer.nc.dropped + consumer.nc.dropped
        await a.close()
        await b.close()
        return got, dropped

    got, dropped = run(scenario())
    assert got == list(range(500))
    assert dropped >= 20


def test_a_consumer_restarted_mid_stream_is_told_which_items_are_gone(server):
    async def scenario():
        nc = await nats.connect(server.url)
        link = StreamLink(nc, DEFAULT_CODEC, None, 0.05, "restart", "r2")
        ref = link.route(5, 0, "numbers", 2)
        sender, first = link.sender(ref), link.receiver(ref)

        producing = asyncio.ensure_future(send_all(sender, 10))
        seen = []
        async for i in first:
            seen.append(i)
            if len(seen) == 4:
                break  # this consumer "dies" without saying so: no done credit
        first._closed = True
        await first._sub.unsubscribe()
        again = link.receiver(ref)  # its restart: a new session asking from item 0
        with pytest.raises(StreamError, match=r"items 0\.\.\d+ had already been read"):
            await asyncio.wait_for(again.collect(), 10)
        await asyncio.wait_for(producing, 10)  # the producer is not left waiting
        await nc.close()
        return seen

    assert run(scenario()) == [0, 1, 2, 3]


def test_more_live_consumers_than_worker_slots(server):
    """Consumers start with their producers; with every slot of the only worker taken by
    consumers, their producers must still run (stream tasks do not wait for a slot)."""
    narrow = WorkerProcesses(
        server.url, workers=1, pool="narrow", concurrency=2, target="feature_tasks:broker"
    )
    narrow.start()
    try:
        reg = DataflowRegistry()
        for key in ("count", "pause", "lag"):
            reg.register_external_input(key)
        for i in range(4):
            reg.register_task(ft.ticks, output=f"t{i}", inputs=["count", "pause"], pool="narrow")
            reg.register_task(
                ft.seen, output=f"s{i}", inputs=[f"t{i}", "lag"], name=f"seen{i}", pool="narrow"
            )
        engine = engine_for(server, reg.build_dag())
        out = run(asyncio.wait_for(engine.execute({"count": 30, "pause": 0, "lag": 0}), 30))
        for i in range(4):
            assert [row[0] for row in out[f"s{i}"]] == list(range(30))
    finally:
        narrow.stop()


def test_consumer_worker_killed_mid_stream_fails_naming_the_lost_items(server, workers):
    """The consumer's worker dies after reading items: its redelivered run cannot read them
    again, and says so instead of returning a stream with a hole."""
    use = WorkerProcesses(server.url, workers=1, pool="streamuse", target="feature_tasks:broker")
    use.start()
    try:
        (victim,) = use.children()

        @pipeline_task(output="ticks", inputs=[])
        async def slow_ticks():
            for i in range(200):
                if i == 20:
                    os.kill(victim, signal.SIGKILL)
                await asyncio.sleep(0.01)
                yield [i, 0.0]

        dag = registry(slow_ticks, ft.seen_in_own_pool).build_dag()
        with pytest.raises(TaskFailedError, match=r"restarted .* items 0\.\.\d+ had already"):
            run(asyncio.wait_for(engine_for(server, dag).execute(), 60))
    finally:
        use.stop()


def test_a_producer_goes_on_without_a_consumer_that_never_answers(server):
    """One consumer is gone for good (nobody listens on its route): after `give_up` seconds
    of unanswered probes the producer drops it, and the other consumer gets every item."""
    from taskiq_dataflow.streams import pump

    async def numbers():
        for i in range(50):
            yield i

    async def scenario():
        nc = await nats.connect(server.url)
        link = StreamLink(nc, DEFAULT_CODEC, None, 0.05, "gone", "r3", give_up=0.3)
        live, dead = link.route(1, 0, "numbers", 4), link.route(2, 0, "numbers", 4)
        reading = asyncio.ensure_future(link.receiver(live).collect())
        kept = await asyncio.wait_for(
            pump(numbers(), [link.sender(live), link.sender(dead)], keep=True), 10
        )
        got = await asyncio.wait_for(reading, 10)
        await nc.close()
        return kept, got

    kept, got = run(scenario())
    assert kept == got == list(range(50))


def test_stream_routes_carry_a_secret_a_bystander_cannot_derive_from_the_run_id():
    from taskiq_dataflow.cluster.protocol import DEFAULT_CODEC
    from taskiq_dataflow.cluster.streams import StreamLink

    links = [StreamLink(None, DEFAULT_CODEC, None, 0.5, "dataflow", "run1") for _ in range(2)]
    routes = [link.route(3, 0, "ticks", 8) for link in links]
    guessable = ("dataflow.stream.run1.3.0", "dataflow.credit.run1.3.0")
    for ref in routes:
        assert ref.items not in guessable and ref.credits not in guessable
        assert ref.items.startswith("dataflow.stream.run1.")
    assert routes[0].items != routes[1].items


def test_a_stream_receiver_drops_unreadable_and_mistyped_frames():
    from taskiq_dataflow.cluster.protocol import DEFAULT_CODEC as codec
    from taskiq_dataflow.cluster.protocol import ProtocolError, decode_stream
    from taskiq_dataflow.cluster.streams import END, ITEMS

    for bad in (
        b"\xc1garbage",
        codec.frame(ITEMS, i=[[-1, "x"]]),
        codec.frame(ITEMS, i=[["0", "x"]]),
        codec.frame(END, n="5", e=None),
        codec.frame(END, n=5, e=["only one"]),
    ):
        with pytest.raises(ProtocolError):  # the receiver drops what raises here
            decode_stream(codec, bad)
    assert decode_stream(codec, codec.frame(ITEMS, i=[[0, "x"], [1, {"y": 2}]])) is not None
    assert decode_stream(codec, codec.frame(END, n=2, e=["ValueError", "boom"])) is not None
