"""Dispatch to the NATS worker cluster: msgpack task frames out, result frames pushed back.

Reliability: every task entry is claimed by the worker that took it; workers heart-beat. A task
that nobody claims is sent again (a redelivery, not a retry); the first result for a task wins
and later duplicates are dropped. A worker that stops heart-beating is reported to the run (a
`WorkerLost` through the sink) with the jobs it held: the run's state decides whether each goes
again (kicked again: the frame kept here is sent again) or fails. If nothing at all is heard
from the cluster for `progress_timeout` while tasks are outstanding, the run fails with an
error that says so instead of hanging. While the engine's own connection to the server is down
nothing is redelivered (the silence is ours); once it is back, every task in flight goes again.

Dispatch is by credit: each worker announces (in its heartbeats) its own subject and how many
entries it will hold at once; the engine sends a worker at most that many unanswered entries,
and only while it heart-beats. A worker that hangs (SIGSTOP, a blocked loop) thus stops getting
work at once, and what it held is reported lost after `heartbeat_timeout`. The run counts those
losses against `max_redeliveries` apart from the unclaimed sends counted here (a task lost by
that many workers may be what kills them). Only before any worker of a pool is known does a
frame go to the pool's queue group.

Trust: the run's reply and cancel subjects carry a random secret (never printed); inside them a
result counts only from the worker the attempt was sent to (or that claimed it from the queue
group). Frames respect the server's advertised max_payload: batches are split by size, and a
value too big for one frame goes through the object store whatever large_value_threshold says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import deque
from typing import Any

from ..events import TaskError
from ..router import Router
from ..run_state import WorkerLost
from ..streams import StreamRef
from ..transports.base import Completion, Job, Sink, Transport, new_completion, task_error
from ..transports.local import LocalTransport
from .broker import (
    ENTRY_OVERHEAD,
    ClusterError,
    DataflowNatsBroker,
    frame_budget,
    publish_now,
)
from .protocol import (
    MAX_TASK_NAME,
    EncodeError,
    Failure,
    Heartbeat,
    ProtocolError,
    ResultsFrame,
    TaskLogging,
    ValueRef,
    decode_heartbeat,
    decode_results,
    encode_cancel,
    encode_ping,
    encode_task_body,
    encode_tasks,
    task_head,
    tasks_head,
    tasks_with_head,
)
from .redact import redact
from .session import EngineSession, session_for
from .streams import StreamLink
from .values import ValueStore
from .wire import publish_frames, subscribe_direct, unsubscribe_direct

log = logging.getLogger("taskiq_dataflow.nats")

DISCOVERY_WAIT = 0.2  # seconds a run waits at most for workers to answer its ping
DISCOVERY_QUIET = 0.01  # ... and it stops waiting once no new worker answered for this long


class _Flight:
    __slots__ = (
        "body", "claimed", "job", "name", "pool", "queued", "route", "sent_at", "seqs",
        "streams", "unclaimed", "worker",
    )  # fmt: skip

    def __init__(self, job: Job, pool: str, name: str, body: bytes, streams: bool) -> None:
        self.job, self.pool, self.name, self.body = job, pool, name, body
        self.route = (pool, name)  # it goes to workers of `pool` that serve `name`
        self.streams = streams  # a stream task: never waits for credit (see _flush)
        self.seqs: list[int] = []
        self.worker: str | None = None  # who holds the latest attempt
        self.claimed = False  # whether that worker said it took it
        self.queued = False  # waiting in the outbox for a worker with room
        self.sent_at = 0.0
        self.unclaimed = 0  # attempts nobody took within heartbeat_timeout


class _WorkerState:
    __slots__ = (
        "busy", "capacity", "done", "fresh", "held", "id", "inbox", "last_seen", "lost", "pool",
        "sent", "tasks",
    )  # fmt: skip

    def __init__(self, worker: str, pool: str, now: float) -> None:
        self.id, self.pool, self.last_seen = worker, pool, now
        self.held: set[int] = set()  # seqs sent to it or claimed by it, not yet answered
        self.inbox: str | None = None  # its own task subject, from its heartbeats
        self.capacity = 0  # how many entries it will hold at once
        self.fresh = 0.0  # heard from within this many seconds: it may be sent work
        self.lost = False  # silent for heartbeat_timeout: holds nothing, gets nothing
        self.sent = False  # whether this run sent it anything (may it reject our frames?)
        # the task names it serves, from its heartbeats (None: it does not say, so it gets
        # whatever its pool gets, as workers did before they advertised their tasks)
        self.tasks: frozenset[str] | None = None
        self.busy = 0  # tasks running or queued on it, as its last heartbeat said
        self.done = 0  # results of this run it sent that were accepted

    def serves(self, name: str) -> bool:
        return self.tasks is None or name in self.tasks


class NatsTransport(Transport):
    def __init__(self, broker: DataflowNatsBroker, run_id: str) -> None:
        super().__init__()
        self.broker = broker
        self.codec = broker.codec
        self.run_id = run_id
        # the run's secrets: whoever may publish on the server but cannot read our frames can
        # neither answer for our tasks nor cancel the run (never put them in a log or error)
        secret = secrets.token_hex(32)  # (one system call for both)
        self.reply_subject = broker.reply_subject(run_id, secret[:32])
        self._cancel_key = secret[32:]
        self._head: tuple[str, bytes] | None = None  # (cancel key, its tasks frames' head)
        self.redeliveries = 0
        self.duplicates = 0
        # claims and result entries refused: malformed, or not from the attempt's worker
        self.ignored = 0
        self._seq = 0
        self._inflight: dict[int, _Flight] = {}
        self._owner: dict[int, str] = {}  # seq -> the worker whose answer for it counts
        self._workers: dict[str, _WorkerState] = {}
        # (pool, task name) -> seqs waiting for a worker of the pool that serves it and has room
        self._outbox: dict[tuple[str, str], deque[int]] = {}
        self._streams_out: dict[tuple[str, str], list[int]] = {}  # stream tasks' (no credit)
        # (pool, task name) -> when it was first found that no live worker of the pool serves it
        # while some are known: it waits, then fails after progress_timeout (_watch)
        self._unserved: dict[tuple[str, str], float] = {}
        # node -> a flight whose worker was lost, out of the books until the run kicks it again
        self._lost: dict[int, _Flight] = {}
        self._budget = frame_budget(1024 * 1024)  # set from the server's INFO on connect
        self._discovered: asyncio.Event | None = None  # made by _discover, set by _beat
        self._flush_scheduled = False
        # tasks placed here (control nodes such as a map over a sub-DAG) run in this process,
        # on a transport made for the first (_here)
        self._local: LocalTransport | None = None
        self._heard = time.monotonic()
        self._offline = False
        self._nc: Any = None
        self._session: EngineSession | None = None  # the connection, shared with other runs
        self._subs: list[Any] = []
        self._watching = False  # whether the session's ticker calls _check (session.py)
        self._values: ValueStore | None = None
        self._link: StreamLink | None = None
        self._background: set[asyncio.Future[Any]] = set()
        # id(input value) -> its reference; the engine's value map keeps the values alive
        self._uploads: dict[int, ValueRef] = {}
        self._refs_received = 0

    def attach(self, sink: Sink) -> None:
        super().attach(sink)
        if self._local is not None:
            self._local.attach(sink)

    def log_tasks(self, run_id: str, level: int | None) -> None:
        # the tasks frames carry the level (and each entry's attempt) to the workers
        super().log_tasks(run_id, level)
        if self._local is not None:
            self._local.log_tasks(run_id, level)

    def _here(self) -> LocalTransport:
        local = self._local
        if local is None:
            local = self._local = LocalTransport()
            local.attach(self.sink)
            if self.task_logs is not None:
                local.log_tasks(*self.task_logs)
        return local

    def router(self) -> Router:
        return Router(remote=True, streams_travel=True, default_pool=self.broker.pool)

    # -- lifecycle ------------------------------------------------------------------------------

    async def startup(self) -> None:
        broker = self.broker
        # the connection and the heartbeats are the broker's in this loop, shared by its runs
        # (session.py): a run does not connect, nor wait for the workers it already knows
        session = await session_for(broker)
        self._nc = session.nc
        self._budget = frame_budget(self._nc.max_payload)
        # a value that would not fit in a frame goes by reference whatever the threshold says
        inline_limit = min(broker.large_value_threshold, self._budget - ENTRY_OVERHEAD)
        self._values = ValueStore(
            self._nc, broker.object_store_bucket, inline_limit, self.codec,
            broker.object_store_replicas,
        )  # fmt: skip
        self._link = StreamLink(
            self._nc, self.codec, self._values, broker.heartbeat_interval, broker.prefix,
            self.run_id, broker.progress_timeout,
        )  # fmt: skip
        # the results come to _reply from nats-py's reader itself (wire.py); the SUB leaves
        # with the first tasks frame, on the same connection, so it reaches the server first
        self._subs = [await subscribe_direct(self._nc, self.reply_subject, self._reply)]
        self._session = session
        try:
            if not session.join(self):
                await self._discover()
        except BaseException:
            await self.shutdown()  # the driver shuts down only what started: leave the session
            raise
        self._heard = time.monotonic()
        self._watching = True  # the session's ticker checks the run's silences from now on

    async def _discover(self) -> None:
        """Ask the workers to heart-beat now, and give them a moment: work then goes straight
        to workers that have room, rather than to the queue group (where a hung worker would
        get its share), and is shared among all of them rather than filling the first to
        answer. Workers heard later join as their heartbeats arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DISCOVERY_WAIT
        discovered = self._discovered = asyncio.Event()
        if any(state.inbox is not None for state in self._workers.values()):
            discovered.set()
        await self._nc.publish(self.broker.ping_subject, encode_ping())
        await self._nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(discovered.wait(), DISCOVERY_WAIT)
        # the others answer within moments of the first: wait while more keep coming
        known = -1
        while len(self._workers) != known and loop.time() < deadline:
            known = len(self._workers)
            await asyncio.sleep(DISCOVERY_QUIET)

    async def shutdown(self) -> None:
        if self._local is not None:
            await self._local.shutdown()
        self._watching = False
        for fut in list(self._background):
            fut.cancel()
        session, self._session = self._session, None
        if session is not None:
            session.leave(self)  # no more heartbeats, disconnects or reconnects for this run
        if self._values is not None and self._values.used and self._nc.is_connected:
            # the run's large values were materialized into its results: free the store
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._values.purge(f"{self.run_id}."), 10)
        if self._nc is not None:
            for sub in self._subs:
                with contextlib.suppress(Exception):
                    await unsubscribe_direct(self._nc, sub)
            self._subs = []
            # the connection is the session's: it stays open for the broker's next run

    def cancel(self) -> None:
        if self._local is not None:
            self._local.cancel()
        self._outbox.clear()
        self._streams_out.clear()
        self._unserved.clear()
        self._lost.clear()
        self._inflight.clear()
        self._owner.clear()
        for state in self._workers.values():
            state.held.clear()
        if self._nc is not None and self._nc.is_connected:
            subject = self.broker.cancel_subject(self._cancel_key)
            self._spawn(self._nc.publish(subject, encode_cancel(self.codec)))
        # what is sent from now on (compensations) goes under another cancel key: the cancel
        # may reach a worker after it, and must not stop it
        self._cancel_key = secrets.token_hex(16)

    def stop(self, node: int) -> bool:
        """Cancel `node`'s job alone (a stream producer nobody reads any more): where it waits,
        it is dropped; where it runs, its worker is told to cancel it, and answers with a
        CancelledError like any cancelled task."""
        if self._local is not None and self._local.stop(node):
            return True
        seqs = [seq for seq, flight in self._inflight.items() if flight.job.node == node]
        if not seqs or self._nc is None or not self._nc.is_connected:
            return False
        flight = self._inflight[seqs[0]]
        if flight.queued and flight.worker is None:  # never sent: nothing to tell a worker
            self._release(flight)
            exc = asyncio.CancelledError(f"task '{flight.job.name}' was cancelled")
            self.push(Completion(node, flight.job.attempt, False, task_error(flight.job.name, exc)))
            return True
        subject = self.broker.cancel_subject(self._cancel_key)
        self._spawn(self._nc.publish(subject, encode_cancel(self.codec, seqs)))
        return True

    def stats(self) -> dict[str, int]:
        return {
            "redeliveries": self.redeliveries,
            "duplicates": self.duplicates,
            "values_uploaded": len(self._uploads),
            "values_by_reference": self._refs_received,
            "results_ignored": self.ignored,
            "object_store_bytes_put": self._values.bytes_put if self._values else 0,
            "object_store_bytes_get": self._values.bytes_got if self._values else 0,
        }

    def queue_depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        for (pool, _), queue in list(self._outbox.items()):
            depths[pool] = depths.get(pool, 0) + len(queue)
        return depths

    def workers(self) -> list[dict[str, Any]]:
        """The workers this run heard from, as the dashboard shows them: id, pool, host and
        pid (from a `<host>-<pid>-<hex>` worker id, else None), slots (entries it takes at
        once), in_use (running or queued, per its last heartbeat), last_heartbeat (seconds
        ago), state ("alive" or "lost") and done (its results this run accepted)."""
        now = time.monotonic()
        found = []
        for w in self._workers.values():
            host, pid = _identity(w.id)
            found.append(
                {
                    "id": w.id[:200], "pool": w.pool or None, "host": host, "pid": pid,
                    "slots": w.capacity or None, "in_use": w.busy,
                    "last_heartbeat": max(now - w.last_seen, 0.0),
                    "state": "lost" if w.lost else "alive", "done": w.done,
                }
            )  # fmt: skip
        return found

    async def materialize(self, values: dict[str, Any]) -> dict[str, Any]:
        assert self._values is not None
        return await self._values.resolve_all(values)

    def _spawn(self, coro: Any) -> None:
        fut = asyncio.ensure_future(coro)
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    # -- sending --------------------------------------------------------------------------------

    def kick(self, jobs: list[Job]) -> None:
        scheduled = self._flush_scheduled
        self._flush_scheduled = True  # flushed below, not from the loop
        try:
            link = self._link
            if self._lost or (link is not None and link.routed):
                for job in jobs:
                    self._kick_one(job)
            else:
                self._kick_plain(jobs)
        finally:
            if self._outbox or self._streams_out:
                # the engine hands over everything that became ready at once: send it now
                # rather than a loop iteration later
                self._flush()
            else:
                self._flush_scheduled = scheduled

    def _kick_plain(self, jobs: list[Job]) -> None:
        """_kick_one for every job, while no worker was lost and no stream routed: the jobs
        for workers have their bodies encoded in one pass and go to the outbox inline (the
        engine's path for every task it sends)."""
        flights: list[_Flight] = []
        bodies: list[list[Any]] = []
        for job in jobs:
            place = job.place
            # here, a stream producer, or a plain function (which fails): the long way
            if place is None or place.local or place.name is None or job.stream is not None:
                self._kick_one(job)
            else:
                name = place.name
                flights.append(_Flight(job, place.pool, name, b"", False))
                bodies.append([name, list(job.args), job.kwargs, job.timeout])
        if not flights:
            return
        try:
            encoded = self.codec.pack_each(bodies)
        except EncodeError:
            for flight in flights:  # each again on its own: the one that fails says why
                self._kick_one(flight.job)
            return
        assert self._values is not None
        threshold, inflight, outbox = self._values.threshold, self._inflight, self._outbox
        seq = self._seq
        route: tuple[str, str] | None = None
        queue: deque[int] = deque()
        for flight, body in zip(flights, encoded, strict=True):
            flight.body = body
            if len(body) > threshold:
                self._spawn(self._offload(flight))
                continue
            seq += 1
            flight.seqs.append(seq)
            flight.queued = True
            inflight[seq] = flight
            if flight.route != route:
                route = flight.route
                found = outbox.get(route)
                if found is None:
                    found = outbox[route] = deque()
                queue = found
            queue.append(seq)
        self._seq = seq

    def stream_link(self) -> StreamLink:
        assert self._link is not None, "the stream link exists once the transport started"
        return self._link

    def _kick_one(self, job: Job) -> None:
        place = job.place
        if place is None or place.local:
            self._here().kick([job])
            return
        if self._lost and self._resend_lost(job):
            return
        name, pool = place.name, place.pool
        if name is None:
            exc = TypeError(
                f"task '{job.name}' is a plain function; cluster workers run only tasks "
                "registered with @broker.task on the DataflowNatsBroker"
            )
            self.push(Completion(job.node, job.attempt, False, task_error(job.name, exc)))
            return
        try:
            body = self._body(name, list(job.args), job.kwargs, job)
        except EncodeError as exc:
            self.push(Completion(job.node, job.attempt, False, self._encode_error(job, exc)))
            return
        # a consumer's inputs hold StreamRefs only once the run made a route
        link = self._link
        streams = job.stream is not None or (link is not None and link.routed and _has_streams(job))
        flight = _Flight(job, pool, name, body, streams)
        assert self._values is not None
        if len(body) > self._values.threshold:
            self._spawn(self._offload(flight))
        else:
            self._send(flight)

    def _resend_lost(self, job: Job) -> bool:
        """Whether `job` is one the run sends again after its worker was lost: then its kept
        frame goes again (a redelivery: the same attempt, its inputs not encoded nor uploaded
        twice)."""
        flight = self._lost.pop(job.node, None)
        if flight is None or flight.job.attempt != job.attempt:
            return False  # an older attempt's flight is dropped: the run failed that one
        self.redeliveries += 1
        self._send(flight)
        return True

    def _body(self, name: str, args: list[Any], kwargs: dict[str, Any], job: Job) -> bytes:
        return encode_task_body(self.codec, name, args, kwargs, job.timeout, job.stream)

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
        """Move large inputs to the object store, then send the task with references; when
        the inputs left inline still do not fit in a frame together, the largest go too."""
        assert self._values is not None
        job = flight.job
        try:
            kwargs = {k: await self._by_ref(v, f"{job.node}.{k}") for k, v in job.kwargs.items()}
            args = [await self._by_ref(v, f"{job.node}.{i}") for i, v in enumerate(job.args)]
            body = self._body(job.task.task_name, args, kwargs, job)
            if len(body) > self._values.threshold:
                body = await self._offload_largest(job, args, kwargs)
            flight.body = body
        except Exception as exc:
            self.push(Completion(job.node, job.attempt, False, task_error(job.name, exc)))
            return
        self._send(flight)

    async def _offload_largest(self, job: Job, args: list[Any], kwargs: dict[str, Any]) -> bytes:
        """Many inputs each under the threshold: upload the largest until the entry fits."""
        assert self._values is not None
        inline: list[tuple[int | str, Any]] = [(i, v) for i, v in enumerate(args)]
        inline += [(k, v) for k, v in kwargs.items()]
        inline.sort(key=lambda item: len(self.codec.packb(item[1])), reverse=True)
        body = b""
        for where, value in inline:
            if type(value) is ValueRef:
                continue
            ref = await self._by_ref(value, f"{job.node}.{where}", force=True)
            if isinstance(where, int):
                args[where] = ref
            else:
                kwargs[where] = ref
            body = self._body(job.task.task_name, args, kwargs, job)
            if len(body) <= self._values.threshold:
                return body
        raise EncodeError(
            f"task '{job.name}' cannot be sent: even with every input in the object store its "
            f"entry takes {len(body)} bytes, over the {self._values.threshold} a frame can "
            "carry on this server (its max_payload)"
        )

    async def _by_ref(self, value: Any, label: str, force: bool = False) -> Any:
        """`value`, or a reference to it in the object store when it is large (uploaded once
        per run however many tasks consume it)."""
        assert self._values is not None
        ref = self._uploads.get(id(value))
        if ref is not None:
            return ref
        encoded = self.codec.packb(value)
        if len(encoded) <= self._values.threshold and not force:
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
        flight.claimed = False
        flight.queued = True
        self._inflight[seq] = flight
        if flight.streams:
            self._streams_out.setdefault(flight.route, []).append(seq)
        else:
            queue = self._outbox.get(flight.route)
            if queue is None:
                queue = self._outbox[flight.route] = deque()
            queue.append(seq)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send what waits to workers with room: one frame per worker (or more, when it would
        exceed max_payload or batch_size). What finds no room waits for credit to come back."""
        self._flush_scheduled = False
        now = time.monotonic()
        frames: list[tuple[str, bytes]] = []
        streams, self._streams_out = self._streams_out, {}
        for route, seqs in streams.items():
            self._dispatch_streams(route, seqs, now, frames)
        for route in list(self._outbox):
            queue = self._outbox[route]
            self._dispatch(route, queue, now, frames)
            if not queue:
                del self._outbox[route]
        if not frames or publish_frames(self._nc, frames):
            return  # written to the socket at once (wire.py)
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

    def _targets(self, route: tuple[str, str], now: float) -> list[_WorkerState]:
        """The workers that may get `route`'s work: of its pool, serving its task, heard from
        lately, with a subject of their own."""
        pool, name = route
        targets = [
            w
            for w in self._workers.values()
            if w.pool == pool and w.inbox and not w.lost and now - w.last_seen <= w.fresh
            and w.serves(name)
        ]  # fmt: skip
        if targets and self._unserved:
            self._unserved.pop(route, None)
        return targets

    def _dispatch(
        self, route: tuple[str, str], queue: deque[int], now: float, frames: list[tuple[str, bytes]]
    ) -> None:
        targets = self._targets(route, now)
        if not targets:
            if not self._waits_for_known_worker(route, now):
                # no worker of the pool known: its queue group reaches whoever serves it
                seqs = self._take(queue, len(queue))
                self._frames(self.broker.tasks_subject(route[0]), seqs, None, now, frames)
            return
        session = self._session
        while queue:
            open_ = [(room, w) for w in targets if (room := w.capacity - len(w.held)) > 0]
            if not open_:
                return  # credit comes back with the results (_on_reply flushes again)
            if len(open_) > 1 and session is not None:
                # the first worker in turn, across the runs of the session: concurrent runs
                # (which do not see each other's credit) of a task or two each spread evenly
                session.turn += 1
                turn = session.turn % len(open_)
                open_ = open_[turn:] + open_[:turn]
            share = math.ceil(len(queue) / len(open_))
            for room, w in open_:
                seqs = self._take(queue, min(room, share))
                if seqs:
                    self._frames(w.inbox or "", seqs, w, now, frames)

    def _dispatch_streams(
        self, route: tuple[str, str], seqs: list[int], now: float, frames: list[tuple[str, bytes]]
    ) -> None:
        """A stream task never waits for credit: consumers holding every slot would otherwise
        wait for a producer that is never sent. Each goes to the worker with the most room."""
        seqs = [s for s in seqs if s in self._inflight]
        targets = self._targets(route, now)
        if not targets:
            if self._waits_for_known_worker(route, now):
                self._streams_out.setdefault(route, []).extend(seqs)
            else:
                self._frames(self.broker.tasks_subject(route[0]), seqs, None, now, frames)
            return
        for seq in seqs:
            target = max(targets, key=lambda w: w.capacity - len(w.held))
            self._frames(target.inbox or "", [seq], target, now, frames)

    def _waits_for_known_worker(self, route: tuple[str, str], now: float) -> bool:
        """Whether the route's work waits rather than go to the pool's queue group: a worker
        of the pool that serves the task is known but late with its heartbeat (it waits until
        that one is heard again or declared lost, rather than go where a hung one may take it),
        or the pool's live workers are known and none serves the task (it waits for one that
        does, another service's worker maybe, at most progress_timeout: see _watch)."""
        pool, name = route
        known = [w for w in self._workers.values() if w.pool == pool and not w.lost]
        if not known:
            return False
        if not any(w.serves(name) for w in known):
            self._unserved.setdefault(route, now)
        return True

    def _take(self, queue: deque[int], n: int) -> list[int]:
        """Up to `n` seqs still in flight from the front of `queue` (a finished or cancelled
        task's seq is dropped on the way)."""
        taken: list[int] = []
        inflight, popleft = self._inflight, queue.popleft
        while queue and len(taken) < n:
            seq = popleft()
            if seq in inflight:
                taken.append(seq)
        return taken

    def _frames(
        self,
        subject: str,
        seqs: list[int],
        target: _WorkerState | None,
        now: float,
        frames: list[tuple[str, bytes]],
    ) -> None:
        """Frames for `seqs` to one destination, none over batch_size entries or the server's
        max_payload; with a `target`, the entries are that worker's until it answers."""
        inflight, owner = self._inflight, self._owner
        worker = None
        if target is not None:
            target.sent = True
            worker = target.id
        limit, budget = self.broker.batch_size, self._budget
        logged = self.task_logs is not None
        # each entry's task_head and body, joined once per frame (logged: its whole entry)
        pieces: list[bytes] = []
        attempts: list[int] = []  # each entry's attempt and task name, when logged
        names: list[str] = []
        count = size = 0
        for seq in seqs:
            flight = inflight[seq]
            flight.queued, flight.sent_at, flight.worker = False, now, worker
            if target is not None:
                owner[seq] = worker  # type: ignore[assignment]
                target.held.add(seq)
            head, body = task_head(seq), flight.body
            entry = len(head) + len(body)
            if count and (count >= limit or size + entry > budget):
                frames.append((subject, self._tasks_frame(pieces, count, attempts, names)))
                pieces, attempts, names, count, size = [], [], [], 0, 0
            if logged:
                pieces.append(head + body)
                attempts.append(flight.job.attempt)
                names.append(flight.job.name[:MAX_TASK_NAME])
            else:
                pieces.append(head)
                pieces.append(body)
            count += 1
            size += entry
        if count:
            frames.append((subject, self._tasks_frame(pieces, count, attempts, names)))

    def _tasks_frame(
        self, pieces: list[bytes], count: int, attempts: list[int], names: list[str]
    ) -> bytes:
        if self.task_logs is None:
            # what every frame of the run starts with, encoded once (for each cancel key)
            head = self._head
            if head is None or head[0] != self._cancel_key:
                head = self._head = (
                    self._cancel_key,
                    tasks_head(self.codec, self.run_id, self.reply_subject, self._cancel_key),
                )
            return tasks_with_head(head[1], pieces, count)
        logs = TaskLogging(self.task_logs[1], attempts, names)
        return encode_tasks(
            self.codec, pieces, self.run_id, self.reply_subject, self._cancel_key, logs
        )

    # -- receiving ------------------------------------------------------------------------------

    async def _on_reply(self, msg: Any) -> None:
        self._reply(msg)

    def _reply(self, msg: Any) -> None:
        """A results frame on the run's subject (called by nats-py's reader as it reads it)."""
        self._heard = now = time.monotonic()
        frame = self._read(msg.data)
        if frame is None:
            return
        worker, claims, results = frame.worker, frame.claims, frame.results
        state = self._worker(worker, None, now)
        if frame.rejections and self._rejected(worker, state, frame.rejections[0]):
            return
        refused = frame.malformed + len(frame.rejections)
        if results:
            bad = self._accept(results, claims, worker, state, frame.logs)
            refused += bad
            state.done += len(results) - bad
        # after the results: a task answered in this same frame needs no claim
        if claims:
            refused += self._claim(claims, worker, state)
        if refused:
            self.ignored += refused
            why = f" (first: {frame.problem})" if frame.problem else ""
            log.warning(
                "ignored %d result entr%s from worker %s: malformed, or for attempts it does "
                "not hold%s", refused, "y" if refused == 1 else "ies", worker[:80], why,
            )  # fmt: skip
        if self._outbox or self._streams_out:
            self._schedule_flush()  # the answered entries' credit is free again

    def _read(self, data: bytes) -> ResultsFrame | None:
        """The results frame (a value that cannot be decoded here fails its own task, inside
        decode_results), or None when the frame as a whole cannot be read."""
        try:
            return decode_results(self.codec, data)
        except ProtocolError as exc:
            log.warning("dropped an unreadable results frame: %s", exc)
            return None

    def _claim(self, claims: list[int], worker: str, state: _WorkerState) -> int:
        """Record who took which attempt; returns how many claims were refused."""
        inflight, owner, refused = self._inflight, self._owner, 0
        for seq in claims:
            flight = inflight.get(seq)
            if flight is None:
                continue  # answered already, or not ours
            holder = owner.get(seq)
            if holder is None:  # sent to the queue group: whoever took it first holds it
                owner[seq] = holder = worker
                state.held.add(seq)
                if seq == flight.seqs[-1]:
                    flight.worker = worker
            if holder != worker:
                refused += 1
            elif seq == flight.seqs[-1]:
                flight.claimed = True
        return refused

    def _accept(
        self,
        results: list[tuple[int, bool, Any]],
        claims: list[int],
        worker: str,
        state: _WorkerState,
        logs: dict[int, Any] | None = None,
    ) -> int:
        """Complete the attempts `worker` holds (or claims in this frame, when they went to
        the queue group and nobody holds them yet); returns how many entries were refused."""
        inflight, owner, done, refused = self._inflight, self._owner, self.sink.done.append, 0
        claimed: set[int] | None = None
        for seq, ok, value in results:
            flight = inflight.pop(seq, None)
            if flight is None:
                self.duplicates += 1
                continue
            holder = owner.pop(seq, None)
            if holder == worker:
                state.held.discard(seq)
            else:
                if claimed is None:
                    claimed = set(claims)
                if holder is not None or seq not in claimed:
                    # a result from someone the attempt was never given to: it stays as it was
                    inflight[seq] = flight
                    if holder is not None:
                        owner[seq] = holder
                    refused += 1
                    continue
            if len(flight.seqs) > 1:  # sent more than once: the other attempts leave too
                self._release(flight)
            job = flight.job
            if not ok:
                value = TaskError(job.name, *value)  # a protocol.Failure
            elif type(value) is ValueRef:
                self._refs_received += 1
            records = None if logs is None else logs.get(seq)
            done(new_completion((job.node, job.attempt, ok, value, worker, False, records)))
        self.sink.wake()
        return refused

    def _release(self, flight: _Flight) -> None:
        """A flight is answered: its attempts leave the books, their credit goes back."""
        inflight, owner, workers = self._inflight, self._owner, self._workers
        for seq in flight.seqs:
            inflight.pop(seq, None)
            holder = owner.pop(seq, None)
            if holder is not None:
                state = workers.get(holder)
                if state is not None:
                    state.held.discard(seq)

    def _rejected(self, worker: str, state: _WorkerState, failure: Failure) -> bool:
        """A worker could not read a frame of this run: the run cannot go on. Believed only
        from a worker this run sent work to."""
        if not state.sent and self._workers_known():
            return False
        message = failure.message[:2000]
        self._fail(ClusterError(f"a worker rejected a frame of this run: {message}"))
        return True

    def _workers_known(self) -> bool:
        return any(w.inbox for w in self._workers.values())

    async def _on_heartbeat(self, msg: Any) -> None:
        """A heartbeat frame (the session decodes each once and hands it to every run)."""
        self._heard = now = time.monotonic()
        try:
            beat = decode_heartbeat(self.codec, msg.data)
        except ProtocolError:
            return  # a bystander's, or garbage: no worker to record
        self._beat(beat, now)

    def _beat(self, beat: Heartbeat, now: float) -> None:
        """A worker's heartbeat, heard at `now` (a run that starts gets the latest beat of each
        worker the session heard lately, with the time it was heard)."""
        state = self._worker(beat.worker, beat.pool, now)
        state.tasks, state.busy = beat.tasks, beat.busy
        if beat.inbox is not None and beat.capacity is not None:
            first = state.inbox is None
            state.inbox, state.capacity = beat.inbox, beat.capacity
            state.fresh = self._freshness(beat.interval)
            if self._discovered is not None:
                self._discovered.set()
            if first:
                self._rehome(state)
        if self._outbox or self._streams_out:
            self._schedule_flush()  # a worker (back) with room

    def _freshness(self, interval: Any) -> float:
        """How long after it was last heard a worker still gets work: half of heartbeat_timeout,
        yet at least two of its heartbeat intervals (one late beat is no hang), never more
        than heartbeat_timeout itself."""
        timeout = self.broker.heartbeat_timeout
        beats = 2 * interval if type(interval) in (int, float) and interval > 0 else 0
        return min(timeout, max(timeout / 2, beats))

    def _worker(self, worker: str, pool: str | None, now: float) -> _WorkerState:
        state = self._workers.get(worker)
        if state is None:
            state = self._workers[worker] = _WorkerState(worker, pool or "", now)
        state.last_seen = now
        if state.lost:
            state.lost = False  # it is back (SIGCONT): it gets work again, from scratch
        if pool:
            state.pool = pool
        return state

    # -- failure detection ----------------------------------------------------------------------

    def _check(self, now: float) -> None:
        """What the silences mean, every tick of the session (at most heartbeat_timeout / 4
        and 0.25 s apart): the run failing for lack of progress, workers lost, tasks no live
        worker serves, frames nobody claimed."""
        broker = self.broker
        timeout = broker.heartbeat_timeout
        if self._inflight and now - self._heard > broker.progress_timeout:
            self._watching = False
            self._fail(self._no_progress())
            return
        if self._offline:
            # The silence is our connection's, not the workers': redelivering now would only
            # use up max_redeliveries. _resend_all sends everything once we are back.
            return
        for state in list(self._workers.values()):
            if not state.lost and now - state.last_seen > timeout:
                self._lose(state, now)
        for route, since in list(self._unserved.items()):
            if now - since > broker.progress_timeout:
                self._unserved_too_long(route, now - since)
        seen: set[int] = set()
        for flight in list(self._inflight.values()):
            if id(flight) in seen:
                continue
            seen.add(id(flight))
            if not (flight.claimed or flight.queued) and now - flight.sent_at > timeout:
                self._unclaimed(flight)

    def _no_progress(self) -> ClusterError:
        broker = self.broker
        pools = sorted({f.pool for f in self._inflight.values()})
        tasks = len({id(f) for f in self._inflight.values()})  # redelivered: many seqs
        connected = self._nc.is_connected
        where = "the NATS server" if not connected else f"workers of pool(s) {pools}"
        return ClusterError(
            f"run {self.run_id} made no progress for {broker.progress_timeout:.0f} s: "
            f"nothing heard from {where} ({tasks} task(s) outstanding; "
            f"NATS {'connected' if connected else 'disconnected'} "
            f"to {redact(broker.servers)}). Start workers with "
            "`taskiq-dataflow worker module:broker`, or raise progress_timeout."
        )

    def _lose(self, state: _WorkerState, now: float) -> None:
        """A worker went silent: it gets nothing new, and the run is told what it held. Those
        flights leave the books (a late answer from the worker is a duplicate: the run may
        have sent the job again already) and wait in `_lost` until the run kicks them again."""
        state.lost = True
        held, state.held = state.held, set()
        inflight = self._inflight
        # only attempts still current: an older one was sent again already
        lost = {id(f): f for s in held if (f := inflight.get(s)) and f.seqs[-1] == s}
        if lost:
            log.warning(
                "worker %s silent for %.1f s: reporting its %d task(s) lost to the run",
                state.id[:80], now - state.last_seen, len(lost),
            )  # fmt: skip
            for flight in lost.values():
                self._release(flight)
                self._lost[flight.job.node] = flight
            jobs = [flight.job for flight in lost.values()]
            self.sink.signal(WorkerLost(state.id, jobs, self.broker.max_redeliveries))
        if self._outbox or self._streams_out:
            self._schedule_flush()  # what waited for this worker may go to the queue group now

    def _rehome(self, state: _WorkerState) -> None:
        """A worker of a pool is heard for the first time: what went to the pool's queue group
        before any worker serving it was known (a run started with its workers) and nobody
        claimed yet most likely found no subscriber, or only workers that do not serve it;
        what this worker serves goes to the workers now instead of heartbeat_timeout later
        (not counted against max_redeliveries: no worker refused it)."""
        pool = state.pool
        stranded = {
            id(f): f
            for f in self._inflight.values()
            if f.pool == pool and f.worker is None and not (f.claimed or f.queued)
            and state.serves(f.name)
        }  # fmt: skip
        for flight in stranded.values():
            self._redeliver(flight, "discovered")

    def _unclaimed(self, flight: _Flight) -> None:
        """Sent, and nobody said they took it: the frame was lost (or no worker serves the
        pool). Its credit goes back and it is sent again."""
        seq = flight.seqs[-1]
        holder = self._owner.get(seq)
        state = self._workers.get(holder) if holder is not None else None
        if state is not None:
            state.held.discard(seq)
        self._redeliver(flight, "unclaimed")

    def _resend_all(self) -> None:
        """After a reconnect: task frames, claims and results sent during the outage may be lost,
        and a result published while we were away is never seen again, so every task in flight
        goes again (one redelivery per outage, not counted against max_redeliveries) and the
        silence clocks restart."""
        now = self._heard = time.monotonic()
        for state in self._workers.values():
            state.last_seen = now
            state.held.clear()
        for flight in list({id(f): f for f in self._inflight.values()}.values()):
            if not flight.queued:
                self._redeliver(flight, "reconnect")

    def _redeliver(self, flight: _Flight, why: str) -> None:
        """Send a flight again, unless nobody claimed it too often (no worker serves the pool).
        Attempts lost with their worker are the run's to count (WorkerLost), apart from these:
        one hung worker does not fail the tasks healthy ones can run."""
        if why == "unclaimed":
            flight.unclaimed += 1
        if flight.unclaimed > self.broker.max_redeliveries:
            self._give_up(flight)
            return
        self.redeliveries += 1
        self._send(flight)

    def _unserved_too_long(self, route: tuple[str, str], waited: float) -> None:
        """No live worker of the pool served the task for progress_timeout: its jobs fail,
        naming the task and the workers heard from (and what each serves)."""
        del self._unserved[route]
        pool, name = route
        seqs = [*self._outbox.pop(route, ()), *self._streams_out.pop(route, ())]
        flights = {id(f): f for seq in seqs if (f := self._inflight.get(seq)) is not None}
        if not flights:
            return
        exc = ClusterError(
            f"no live worker of pool '{pool}' serves task '{name}' (waited {waited:.1f} s, the "
            f"broker's progress_timeout); workers seen: {self._workers_seen()}. Start a worker "
            f"whose module registers '{name}' with @broker.task, in pool '{pool}'"
        )
        for flight in flights.values():
            self._release(flight)
            job = flight.job
            self.push(Completion(job.node, job.attempt, False, task_error(job.name, exc)))

    def _workers_seen(self, shown: int = 10) -> str:
        states = list(self._workers.values())
        if not states:
            return "none"
        parts = []
        for w in states[:shown]:
            if w.tasks is None:
                serves = "does not advertise its tasks"
            else:
                names = sorted(w.tasks)
                more = f" and {len(names) - 5} more" if len(names) > 5 else ""
                serves = f"serves {', '.join(map(repr, names[:5])) or 'nothing'}{more}"
            status = ", lost" if w.lost else ""
            parts.append(f"{w.id[:80]} (pool '{w.pool}'{status}, {serves})")
        more = f" and {len(states) - shown} more" if len(states) > shown else ""
        return "; ".join(parts) + more

    def _give_up(self, flight: _Flight) -> None:
        for seq in flight.seqs:
            self._inflight.pop(seq, None)
            self._owner.pop(seq, None)
        job = flight.job
        if any(w.pool == flight.pool for w in self._workers.values()):
            why = "its workers never claimed it"
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

    def _fail(self, exc: BaseException) -> None:
        self.sink.fail(exc)


def _has_streams(job: Job) -> bool:
    """Whether a job reads a stream (a consumer gets StreamRefs among its inputs)."""
    # `in` over a map of types runs in C: this is on every job's path
    return StreamRef in map(type, job.kwargs.values()) or StreamRef in map(type, job.args)


def _identity(worker: str) -> tuple[str | None, int | None]:
    """(host, pid) of a worker id made by Worker (`<host>-<pid>-<6 hex>`), else (None, None)."""
    parts = worker.rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit() and len(parts[2]) == 6:
        return parts[0][:200], int(parts[1])
    return None, None
