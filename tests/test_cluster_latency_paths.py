"""The cluster's short paths (issue 14): the engine's runs sharing one connection per broker
and event loop (cluster/session.py), and the hot frames' way through nats-py
(cluster/wire.py: messages handed over as they are read, frames written without the flusher)
-- with a login, over TLS, across a server restart, and against arbitrary chunking of the
byte stream. Correctness only: nothing here measures time."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import latency_tasks
import nats
import pytest
from cluster_support import WorkerProcesses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskiq_dataflow import ExecutionEngine
from taskiq_dataflow.cluster import DataflowNatsBroker, NatsServer, wire
from taskiq_dataflow.cluster.session import EngineSession

TARGET = "latency_tasks:broker"
USER, PASSWORD = "carol", "pw for the short paths"


def engine_broker(url: str, **options: Any) -> DataflowNatsBroker:
    return DataflowNatsBroker(url, heartbeat_interval=0.2, heartbeat_timeout=1.0, **options)


def session_of(broker: DataflowNatsBroker) -> EngineSession:
    return broker._sessions[asyncio.get_running_loop()]


def fast_reader_on(nc: Any) -> bool:
    """Whether wire.py's reader frames what the connection's current stream receives."""
    current = getattr(nc, "_dataflow_reader", None)
    reader = nc._transport._io_reader
    return current is not None and current.reader is reader and "feed_data" in vars(reader)


async def seeded_runs(engine: ExecutionEngine, seeds: range) -> None:
    outs = await asyncio.gather(*(engine.execute({"seed": s}) for s in seeds))
    for seed, out in zip(seeds, outs, strict=True):
        assert {k: out[k] for k in "abcde"} == latency_tasks.expected(seed)


@pytest.fixture(scope="module")
def plain():
    with NatsServer() as server, WorkerProcesses(server.url, workers=2, target=TARGET):
        yield server


# -- the session: one connection for the runs of a broker in a loop ------------------------------


def test_runs_share_one_connection_and_know_the_workers_at_once(plain):
    broker = engine_broker(plain.url)
    engine = ExecutionEngine(broker, latency_tasks.small_dag(), max_parallel=64)

    async def main() -> None:
        await seeded_runs(engine, range(1))
        session = session_of(broker)
        nc = session.nc
        assert len(session.beats) == 2 and session.runs == {}
        for _ in range(3):
            await seeded_runs(engine, range(5))  # concurrent runs, then sequential ones
        await seeded_runs(engine, range(100, 140))
        assert session_of(broker) is session and session.nc is nc and nc.is_connected
        assert fast_reader_on(nc)
        assert engine.stats["redeliveries"] == 0, engine.stats
        await broker.shutdown()
        assert nc.is_closed and not broker._sessions

    asyncio.run(main())


def test_the_connection_closes_after_the_linger_and_with_its_loop(plain):
    broker = engine_broker(plain.url)
    broker.session_linger = 0.2
    engine = ExecutionEngine(broker, latency_tasks.small_dag())

    async def lingering() -> Any:
        await seeded_runs(engine, range(2))
        nc = session_of(broker).nc
        await asyncio.sleep(1.0)
        assert nc.is_closed and not broker._sessions
        await seeded_runs(engine, range(2))  # a new session
        return session_of(broker).nc

    broker2 = engine_broker(plain.url)  # the default linger: the loop's end closes it

    async def torn_down() -> Any:
        await seeded_runs(ExecutionEngine(broker2, latency_tasks.small_dag()), range(3))
        return session_of(broker2).nc

    second = asyncio.run(lingering())
    assert second.is_closed  # asyncio.run cancelled the keeper, which closed it
    nc = asyncio.run(torn_down())
    assert nc.is_closed and not broker2._sessions
    # each loop gets its own session
    assert asyncio.run(torn_down()) is not nc


def test_a_failed_connection_is_tried_again_by_the_next_run(plain):
    from taskiq_dataflow.cluster import ClusterError

    broker = engine_broker("nats://127.0.0.1:1")
    broker.unreachable_timeout = 0.3
    engine = ExecutionEngine(broker, latency_tasks.small_dag())

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(ClusterError, match="cannot connect"):
                await engine.execute({"seed": 1})
            assert not broker._sessions
        broker.use_servers(plain.url)
        await seeded_runs(engine, range(3))

    asyncio.run(main())


def test_workers_run_tasks_in_a_task_as_nats_py_would(plain):
    from taskiq_dataflow import DataflowRegistry

    registry = DataflowRegistry()
    for i in range(8):
        registry.register_task(latency_tasks.in_a_task, output=f"t{i}", inputs=[])
    engine = ExecutionEngine(engine_broker(plain.url), registry.build_dag())

    async def main() -> dict[str, Any]:
        await engine.execute()  # the workers' readers are wrapped at their first answer
        return await engine.execute()

    assert asyncio.run(main()) == {f"t{i}": True for i in range(8)}


# -- a login, TLS, a restart -------------------------------------------------------------------


@pytest.fixture(scope="module")
def secure():
    with NatsServer(extra_args=["--user", USER, "--pass", PASSWORD]) as server:
        env = {latency_tasks.USER_ENV: USER, latency_tasks.PASSWORD_ENV: PASSWORD}
        login = {"user": USER, "password": PASSWORD}
        with WorkerProcesses(server.url, workers=2, target=TARGET, env=env, connect=login):
            yield server


def test_with_a_login(secure):
    broker = engine_broker(secure.url, user=USER, password=PASSWORD)
    engine = ExecutionEngine(broker, latency_tasks.small_dag())

    async def main() -> None:
        await seeded_runs(engine, range(10))
        await seeded_runs(engine, range(10, 12))
        assert fast_reader_on(session_of(broker).nc)

    asyncio.run(main())


def make_certificate(where: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost (it is its own authority)."""
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    try:
        cert, key = make_certificate(tmp_path_factory.mktemp("tls"))
    except (OSError, subprocess.CalledProcessError) as exc:  # pragma: no cover
        pytest.skip(f"openssl cannot make a certificate here: {exc}")
    args = ["--tls", "--tlscert", cert, "--tlskey", key]
    with NatsServer(extra_args=args) as server:
        url = server.url.replace("nats://", "tls://")
        env = {latency_tasks.TLS_CA_ENV: cert, "DATAFLOW_NATS_URL": url}
        with WorkerProcesses(
            url, workers=2, target=TARGET, env=env, connect=latency_tasks.connection(cert)
        ):
            yield SimpleNamespace(url=url, ca=cert)


def test_over_tls(tls):
    broker = engine_broker(tls.url, **latency_tasks.connection(tls.ca))
    engine = ExecutionEngine(broker, latency_tasks.small_dag())

    async def main() -> None:
        await seeded_runs(engine, range(20))
        nc = session_of(broker).nc
        assert isinstance(nc._transport._io_writer.get_extra_info("ssl_object"), ssl.SSLObject)
        assert fast_reader_on(nc)
        await seeded_runs(engine, range(3))

    asyncio.run(main())


def test_over_tls_a_plain_client_is_refused(tls):
    from taskiq_dataflow.cluster import ClusterError

    broker = engine_broker(tls.url.replace("tls://", "nats://"))
    broker.unreachable_timeout = 1.0
    with pytest.raises(ClusterError):
        asyncio.run(ExecutionEngine(broker, latency_tasks.small_dag()).execute({"seed": 1}))


def test_runs_after_the_server_restarted_use_the_same_connection():
    with NatsServer() as server:
        broker = engine_broker(server.url)
        engine = ExecutionEngine(broker, latency_tasks.small_dag())
        workers = WorkerProcesses(server.url, workers=1, target=TARGET).start()
        try:

            async def main() -> None:
                await seeded_runs(engine, range(4))
                session = session_of(broker)
                nc, before = session.nc, session.nc._transport._io_reader
                server.stop()
                await asyncio.sleep(0.5)
                assert session.offline
                await asyncio.to_thread(server.start)
                # the next run waits for the connection to be back, then runs at once
                await asyncio.wait_for(seeded_runs(engine, range(4)), 30)
                assert session_of(broker) is session and session.nc is nc
                assert not session.offline and nc._transport._io_reader is not before
                assert fast_reader_on(nc)  # wrapped again on the new stream

            asyncio.run(main())
        finally:
            workers.stop()


# -- wire.py on a real server ------------------------------------------------------------------


def test_direct_messages_in_order_beside_nats_py_s_own(plain):
    async def main() -> None:
        nc = await nats.connect(plain.url)
        got: list[bytes] = []
        tasks: list[Any] = []
        theirs: list[bytes] = []

        def handler(msg: Any) -> None:
            got.append(msg.data)
            tasks.append(asyncio.current_task())
            if msg.data == b"boom":
                raise RuntimeError("a failing handler does not stop the reader")

        async def callback(msg: Any) -> None:
            theirs.append(msg.data)

        async def responder(msg: Any) -> None:
            await nc.publish(msg.reply, b"answer to " + msg.data)

        try:
            await wire.subscribe_direct(nc, "direct.x", handler)
            await nc.subscribe("plain.x", cb=callback)
            await nc.subscribe("service.x", cb=responder)
            await nc.flush()
            big = bytes(range(256)) * 1200  # 300 KB: read in many pieces
            sent: list[bytes] = []
            for i in range(300):
                payload = big if i % 50 == 7 else (b"boom" if i == 3 else b"%d" % i)
                assert wire.publish_frames(nc, [("direct.x", payload), ("plain.x", b"%d" % i)])
                sent.append(payload)
                if i % 100 == 0:
                    reply = await nc.request("service.x", b"%d" % i, timeout=5)
                    assert reply.data == b"answer to %d" % i
            await nc.flush()
            for _ in range(100):
                if len(got) == len(sent) and len(theirs) == len(sent):
                    break
                await asyncio.sleep(0.05)
            assert got == sent and theirs == [b"%d" % i for i in range(300)]
            assert fast_reader_on(nc) and all(t is nc._reading_task for t in tasks)
            assert nc.stats["in_msgs"] >= 600
            # what cannot be written as is goes through nats-py instead
            assert not wire.publish_frames(nc, [("bad subject", b"x")])
            assert not wire.publish_frames(nc, [("direct.x", b"x" * (nc.max_payload + 1))])
        finally:
            await nc.close()

    asyncio.run(main())


# -- the framing, against any chunking -----------------------------------------------------------


def _units() -> Any:
    payload = st.binary(max_size=40)
    direct = st.tuples(st.just("direct"), payload, st.booleans())
    other = st.tuples(st.just("other"), payload, st.booleans())
    headers = st.tuples(st.just("hmsg"), payload, st.booleans())
    control = st.tuples(
        st.sampled_from(["PING", "PONG", "+OK", "-ERR 'x'", 'INFO {"a":1}']),
        st.just(b""),
        st.just(False),
    )
    return st.lists(st.one_of(direct, other, headers, control), max_size=30)


def _encode(kind: str, payload: bytes, reply: bool) -> bytes:
    to = " _INBOX.r" if reply else ""
    if kind == "direct":
        return b"MSG d.x 1%s %d\r\n%s\r\n" % (to.encode(), len(payload), payload)
    if kind == "other":
        return b"MSG o.x 2%s %d\r\n%s\r\n" % (to.encode(), len(payload), payload)
    if kind == "hmsg":
        head = b"NATS/1.0\r\n\r\n"
        size = len(head) + len(payload)
        return b"HMSG d.x 1%s %d %d\r\n%s%s\r\n" % (to.encode(), len(head), size, head, payload)
    return kind.encode() + b"\r\n"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(units=_units(), cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_the_reader_frames_any_chunking(units, cuts):
    stream = b"".join(_encode(*u) for u in units)
    forwarded: list[bytes] = []
    delivered: list[tuple[str, str, bytes]] = []
    direct_sub = SimpleNamespace(_received=0, subject="d.x")
    nc = SimpleNamespace(
        stats={"in_msgs": 0, "in_bytes": 0},
        _subs={1: direct_sub, 2: SimpleNamespace()},
        _reading_task=None,
    )
    reader = SimpleNamespace(feed_data=forwarded.append)

    def handler(msg: Any) -> None:
        delivered.append((msg.subject, msg.reply, msg.data))

    async def main() -> None:
        framer = wire._Reader(nc, reader, {1: (direct_sub, handler)})
        points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
        for a, b in itertools.pairwise(points):
            framer(stream[a:b])
        assert framer.buf == b"" and framer.skip == 0

    asyncio.run(main())
    wanted = [
        ("d.x", "_INBOX.r" if reply else "", payload)
        for kind, payload, reply in units
        if kind == "direct"
    ]
    assert delivered == wanted
    rest = b"".join(_encode(*u) for u in units if u[0] != "direct")
    assert b"".join(forwarded) == rest  # everything else reaches nats-py as it came
    assert direct_sub._received == nc.stats["in_msgs"] == len(wanted)


@settings(max_examples=100, deadline=None)
@given(
    count=st.integers(min_value=0, max_value=70_000),
    run=st.text(max_size=40),
    reply=st.text(max_size=80),
    cancel=st.text(max_size=40),
)
def test_a_run_s_cached_frame_head_makes_the_same_frames(count, run, reply, cancel):
    from taskiq_dataflow.cluster.protocol import (
        DEFAULT_CODEC,
        decode_tasks,
        encode_task_body,
        encode_tasks,
        task_part,
        tasks_head,
        tasks_with_head,
    )

    body = encode_task_body(DEFAULT_CODEC, "t", [1], {}, None)
    parts = [task_part(seq, body) for seq in range(count % 40)] * (1 + count // 40)
    head = tasks_head(DEFAULT_CODEC, run, reply, cancel)
    frame = tasks_with_head(head, parts)
    assert frame == encode_tasks(DEFAULT_CODEC, parts, run, reply, cancel)
    decoded = decode_tasks(DEFAULT_CODEC, frame)
    assert (decoded.run, decoded.reply, decoded.cancel) == (run, reply, cancel)
    assert len(decoded.entries) == len(parts)
