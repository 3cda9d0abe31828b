"""Dispatch to the NATS worker cluster: msgpack task frames out, result frames pushed back.

Reliability: every task entry is claimed by the worker that took it; workers heart-beat. A task
whose worker stops heart-beating, or that nobody claims, is sent again (a redelivery, not a
retry); the first result for a task wins and later duplicates are dropped. If nothing at all is
heard from the cluster for `progress_timeout` while tasks are outstanding, the run fails with an
error that says so instead of hanging. While the engine's own connection to the server is down
nothing is redelivered (the silence is ours); once it is back, every task in flight goes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from ..cluster.broker import ClusterError, DataflowNatsBroker, publish_now
from ..cluster.protocol import (
    HEARTBEAT,
    RESULTS,
    TASKS,
    EncodeError,
    ValueRef,
    find_undecodable,
    task_part,
)
from ..cluster.streams import StreamLink
from ..cluster.values import ValueStore
from ..events import TaskError
from ..task import get_spec
from .base import Completion, Job, Transport, task_error
from .local import LocalTransport, runs_in_engine

log = logging.getLogger("taskiq_dataflow.nats")


class _Flight:
    __slots__ = ("body", "job", "pool", "sent_at", "seqs", "worker")

    def __init__(self, job: Job, pool: str, body: bytes) -> None:
        self.job, self.pool, self.body = job, pool, body
        self.seqs: list[int] = []
        self.worker: str | None = None
        self.sent_at = 0.0


class _WorkerState:
    __slots__ = ("last_seen", "pool", "seqs")

    def __init__(self, pool: str, now: float) -> None:
        self.pool, self.last_seen = pool, now
        self.seqs: set[int] = set()


class NatsTransport(Transport):
    def __init__(self, broker: DataflowNatsBroker, run_id: str) -> None:
        super().__init__()
        self.broker = broker
        self.codec = broker.codec
        self.run_id = self._frame_run = run_id
        self.reply_subject = broker.reply_subject(run_id)
        self.redeliveries = 0
        self.duplicates = 0
        self._seq = 0
        self._inflight: dict[int, _Flight] = {}
        self._workers: dict[str, _WorkerState] = {}
        self._outbox: dict[str, list[int]] = {}
        self._flush_scheduled = False
        self._pools: dict[int, str] = {}
        # id(task) -> (runs here, task name, pool): one lookup per job on the hot path
        self._routes: dict[int, tuple[bool, Any, str]] = {}
        # tasks declared local=True (control nodes such as a map over a sub-DAG) run here
        self._local = LocalTransport(sink=self)
        self._heard = time.monotonic()
        self._offline = False
        self._nc: Any = None
        self._subs: list[Any] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._values: ValueStore | None = None
        self._link: StreamLink | None = None
        self._background: set[asyncio.Future[Any]] = set()
        # id(input value) -> its reference; the engine's value map keeps the values alive
        self._uploads: dict[int, ValueRef] = {}
        self._refs_received = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def startup(self) -> None:
        await self._local.startup()
        broker = self.broker

        def on_disconnected() -> None:
            self._offline = True

        def on_reconnected() -> None:
            self._offline = False
            self._resend_all()

        self._nc = await broker.connect_checked(
            f"dataflow-engine-{self.run_id}",
            broker.progress_timeout,
            on_disconnected=on_disconnected,
            on_reconnected=on_reconnected,
        )
        self._values = ValueStore(
            self._nc, broker.object_store_bucket, broker.large_value_threshold, self.codec
        )
        self._link = StreamLink(
            self._nc, self.codec, self._values, broker.heartbeat_interval, broker.prefix,
            self.run_id, broker.progress_timeout,
        )  # fmt: skip
        self._subs = [
            await self._nc.subscribe(self.reply_subject, cb=self._on_reply),
            await self._nc.subscribe(broker.heartbeat_subject, cb=self._on_heartbeat),
        ]
        await self._nc.flush()
        self._heard = time.monotonic()
        self._watchdog = asyncio.ensure_future(self._watch())

    async def shutdown(self) -> None:
        await self._local.shutdown()
        if self._watchdog is not None:
            self._watchdog.cancel()
        for fut in list(self._background):
            fut.cancel()
        if self._values is not None and self._values.used and self._nc.is_connected:
            # the run's large values were materialized into its results: free the store
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._values.purge(f"{self.run_id}."), 10)
        if self._nc is not None:
            for sub in self._subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 5)

    def cancel(self) -> None:
        self._local.cancel()
        self._outbox.clear()
        self._inflight.clear()
        if self._nc is not None and self._nc.is_connected:
            self._spawn(self._nc.publish(self.broker.cancel_subject(self.run_id), b""))
        # what is sent from now on (compensations) goes under another run id: the cancel may
        # reach a worker after it, and must not stop it (object names keep the run's prefix,
        # so the store is still purged with the run)
        self._frame_run = f"{self.run_id}.undo"

    def stats(self) -> dict[str, int]:
        return {
            "redeliveries": self.redeliveries,
            "duplicates": self.duplicates,
            "values_uploaded": len(self._uploads),
            "values_by_reference": self._refs_received,
        }

    async def materialize(self, values: dict[str, Any]) -> dict[str, Any]:
        assert self._values is not None
        return await self._values.resolve_all(values)

    def _spawn(self, coro: Any) -> None:
        fut = asyncio.ensure_future(coro)
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    # -- sending --------------------------------------------------------------------------------

    def _pool_of(self, task: Any) -> str:
        pool = self._pools.get(id(task))
        if pool is None:
            spec = get_spec(task)
            pool = self._pools[id(task)] = (spec.pool if spec and spec.pool else None) or (
                self.broker.pool
            )
        return pool

    def kick(self, jobs: list[Job]) -> None:
        scheduled = self._flush_scheduled
        self._flush_scheduled = True  # flushed below, not from the loop
        try:
            for job in jobs:
                self._kick_one(job)
        finally:
            if self._outbox:
                # the engine hands over everything that became ready at once: send it now
                # rather than a loop iteration later
                self._flush()
            else:
                self._flush_scheduled = scheduled

    def _route(self, task: Any) -> tuple[bool, Any, str]:
        route = self._routes.get(id(task))
        if route is None:
            local = runs_in_engine(task, streams_travel=True)
            name = getattr(task, "task_name", None)
            route = self._routes[id(task)] = (local, name, "" if local else self._pool_of(task))
        return route

    def _route_of(self, task: Any, where: Any) -> tuple[bool, Any, str]:
        """Where a node runs: its task's route, with the node's register_task settings."""
        route = self._route(task)
        if where is None:
            return route
        local, name, pool = route
        here, own_pool = where
        if here is not None:
            local = bool(here)
        return local, name, "" if local else (own_pool or pool or self._pool_of(task))

    def runs_remotely(self, task: Any, where: Any) -> bool:
        return not self._route_of(task, where)[0]

    def stream_link(self) -> StreamLink:
        assert self._link is not None, "the stream link exists once the transport started"
        return self._link

    def _kick_one(self, job: Job) -> None:
        task = job.task
        if job.where is None:
            local, name, pool = self._routes.get(id(task)) or self._route(task)
        else:
            local, name, pool = self._route_of(task, job.where)
        if local:
            self._local.kick([job])
            return
        if not isinstance(name, str):
            exc = TypeError(
                f"task '{job.name}' is a plain function; cluster workers run only tasks "
                "registered with @broker.task on the DataflowNatsBroker"
            )
            self.push(Completion(job.node, job.attempt, False, task_error(job.name, exc)))
            return
        try:
            body = self.codec.packb(self._body(name, list(job.args), job.kwargs, job))
        except EncodeError as exc:
            self.push(Completion(job.node, job.attempt, False, self._encode_error(job, exc)))
            return
        flight = _Flight(job, pool, body)
        if len(body) > self.broker.large_value_threshold:
            self._spawn(self._offload(flight))
        else:
            self._send(flight)

    @staticmethod
    def _body(name: str, args: list[Any], kwargs: dict[str, Any], job: Job) -> list[Any]:
        body = [name, args, kwargs, job.timeout]
        if job.stream is not None:
            body.append(job.stream)
        return body

    def _encode_error(self, job: Job, exc: EncodeError) -> TaskError:
        culprit = ""
        for key, value in job.kwargs.items():
            try:
                self.codec.packb(value)
            except EncodeError:
                culprit = f" (input '{key}')"
                break
        error = EncodeError(f"an input of task '{job.name}'{culprit} cannot be sent: {exc}")
        return task_error(job.name, error)

    async def _offload(self, flight: _Flight) -> None:
        """Move large inputs to the object store, then send the task with references."""
        assert self._values is not None
        job = flight.job
        try:
            kwargs = {k: await self._by_ref(v, f"{job.node}.{k}") for k, v in job.kwargs.items()}
            args = [await self._by_ref(v, f"{job.node}.{i}") for i, v in enumerate(job.args)]
            flight.body = self.codec.packb(self._body(job.task.task_name, args, kwargs, job))
        except Exception as exc:
            self.push(Completion(job.node, job.attempt, False, task_error(job.name, exc)))
            return
        self._send(flight)

    async def _by_ref(self, value: Any, label: str) -> Any:
        """`value`, or a reference to it in the object store when it is large (uploaded once
        per run however many tasks consume it)."""
        assert self._values is not None
        ref = self._uploads.get(id(value))
        if ref is not None:
            return ref
        encoded = self.codec.packb(value)
        if len(encoded) <= self._values.threshold:
            return value
        ref = self._uploads[id(value)] = await self._values.put(
            f"{self.run_id}.in.{label}", encoded
        )
        return ref

    def _send(self, flight: _Flight) -> None:
        self._seq += 1
        seq = self._seq
        flight.seqs.append(seq)
        flight.worker = None
        flight.sent_at = time.monotonic()
        self._inflight[seq] = flight
        self._outbox.setdefault(flight.pool, []).append(seq)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        frames = []
        for pool, seqs in outbox.items():
            live = [s for s in seqs if s in self._inflight]
            if not live:
                continue
            workers = sum(1 for w in self._workers.values() if w.pool == pool) or 1
            size = max(1, min(self.broker.batch_size, math.ceil(len(live) / workers)))
            subject = self.broker.tasks_subject(pool)
            inflight = self._inflight
            for i in range(0, len(live), size):
                parts = [task_part(s, inflight[s].body) for s in live[i : i + size]]
                frame = self.codec.frame_of_parts(
                    TASKS, "tasks", parts, run=self._frame_run, reply=self.reply_subject
                )
                frames.append((subject, frame))
        for subject, frame in frames:
            try:
                pending = publish_now(self._nc, subject, frame)
            except Exception as exc:
                # the tasks stay in flight: unclaimed, they are sent again
                log.warning("could not send a tasks frame: %s: %s", type(exc).__name__, exc)
                continue
            if pending is not None:
                self._background.add(pending)
                pending.add_done_callback(self._background.discard)

    # -- receiving ------------------------------------------------------------------------------

    async def _on_reply(self, msg: Any) -> None:
        self._heard = now = time.monotonic()
        tolerant = False
        try:
            frame = self.codec.read_frame(msg.data)
        except Exception:
            # some result cannot be decoded here: it fails its own task, not the frame
            try:
                frame = self.codec.read_frame(msg.data, tolerant=True)
                tolerant = True
            except Exception as exc:
                log.warning("dropped an unreadable frame on %s: %s", msg.subject, exc)
                return
        if frame.get("t") != RESULTS:
            return
        worker = frame.get("w")
        state = self._worker(worker, None, now)
        inflight = self._inflight
        results = frame.get("results", ())
        if results:
            pop, discard, done = inflight.pop, state.seqs.discard, self._done.append
            for seq, ok, value in results:
                if seq is None:
                    self._fail(ClusterError(f"a worker rejected a frame of this run: {value[1]}"))
                    return
                discard(seq)
                flight = pop(seq, None)
                if flight is None:
                    self.duplicates += 1
                    continue
                if len(flight.seqs) > 1:
                    for other in flight.seqs:
                        pop(other, None)
                job = flight.job
                if type(value) is ValueRef:
                    self._refs_received += 1
                elif tolerant and ok:
                    bad = find_undecodable(value)
                    if bad is not None:
                        ok = False
                        value = ["DecodeError", f"its result cannot be decoded: {bad.message}", ""]
                if not ok:
                    value = TaskError(job.name, value[0], value[1], value[2])
                done(Completion(job.node, job.attempt, ok, value, worker))
            self._wake.set()
        # after the results: a task answered in this same frame needs no claim
        for seq in frame.get("claims", ()):
            flight = inflight.get(seq)
            if flight is not None:
                flight.worker = worker
                state.seqs.add(seq)

    async def _on_heartbeat(self, msg: Any) -> None:
        self._heard = now = time.monotonic()
        with contextlib.suppress(Exception):
            frame = self.codec.read_frame(msg.data)
            if frame.get("t") == HEARTBEAT:
                self._worker(frame["w"], frame.get("pool"), now)

    def _worker(self, worker: str, pool: str | None, now: float) -> _WorkerState:
        state = self._workers.get(worker)
        if state is None:
            state = self._workers[worker] = _WorkerState(pool or "", now)
        state.last_seen = now
        if pool:
            state.pool = pool
        return state

    # -- failure detection ----------------------------------------------------------------------

    async def _watch(self) -> None:
        broker = self.broker
        timeout = broker.heartbeat_timeout
        while True:
            await asyncio.sleep(min(timeout / 4, 0.25))
            now = time.monotonic()
            if self._inflight and now - self._heard > broker.progress_timeout:
                pools = sorted({f.pool for f in self._inflight.values()})
                tasks = len({id(f) for f in self._inflight.values()})  # redelivered: many seqs
                connected = self._nc.is_connected
                where = "the NATS server" if not connected else f"workers of pool(s) {pools}"
                self._fail(
                    ClusterError(
                        f"run {self.run_id} made no progress for {broker.progress_timeout:.0f} s: "
                        f"nothing heard from {where} ({tasks} task(s) outstanding; "
                        f"NATS {'connected' if connected else 'disconnected'} "
                        f"to {broker.servers}). Start workers with "
                        "`taskiq-dataflow worker module:broker`, or raise progress_timeout."
                    )
                )
                return
            if self._offline:
                # The silence is our connection's, not the workers': redelivering now would only
                # use up max_redeliveries. _resend_all sends everything once we are back.
                continue
            for worker, state in list(self._workers.items()):
                if now - state.last_seen > timeout:
                    del self._workers[worker]
                    lost = list(
                        {id(f): f for s in state.seqs if (f := self._inflight.get(s))}.values()
                    )
                    if lost:
                        log.warning(
                            "worker %s silent for %.1f s: sending its %d task(s) again",
                            worker,
                            now - state.last_seen,
                            len(lost),
                        )
                    for flight in lost:
                        self._redeliver(flight)
            seen: set[int] = set()
            for flight in list(self._inflight.values()):
                if id(flight) in seen:
                    continue
                seen.add(id(flight))
                if flight.worker is None and now - flight.sent_at > timeout:
                    self._redeliver(flight)

    def _resend_all(self) -> None:
        """After a reconnect: task frames, claims and results sent during the outage may be lost,
        and a result published while we were away is never seen again, so every task in flight
        goes again (one redelivery per outage) and the silence clocks restart."""
        now = self._heard = time.monotonic()
        for state in self._workers.values():
            state.last_seen = now
            state.seqs.clear()
        for flight in list({id(f): f for f in self._inflight.values()}.values()):
            self._redeliver(flight)

    def _redeliver(self, flight: _Flight) -> None:
        if len(flight.seqs) > self.broker.max_redeliveries:
            for seq in flight.seqs:
                self._inflight.pop(seq, None)
            job = flight.job
            if any(w.pool == flight.pool for w in self._workers.values()):
                why = "workers died or never claimed it"
            else:
                why = (
                    f"no worker serves pool '{flight.pool}': start one with "
                    f"`taskiq-dataflow worker module:broker --pool {flight.pool}`"
                )
            exc = ClusterError(
                f"task '{job.name}' was sent to pool '{flight.pool}' {len(flight.seqs)} times and "
                f"no worker completed it ({why})"
            )
            self.push(Completion(job.node, job.attempt, False, task_error(job.name, exc)))
            return
        self.redeliveries += 1
        self._send(flight)

    def _fail(self, exc: BaseException) -> None:
        self.fatal = exc
        self._wake.set()
