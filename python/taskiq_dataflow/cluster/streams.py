"""Stream items over NATS: from a producer task to each streaming consumer, in order, exactly once,
with credit-based back-pressure.

Every live (producer, consumer input) pair has a route: two subjects named after the run, the
consumer's node and its input, one carrying the items (producer -> consumer), one the credits
(consumer -> producer). NATS core delivery is at most once, so exactly once is built on top:

- items carry a sequence number; the receiver keeps `got` (items received without a gap), drops
  what it already has and parks what arrives early;
- the receiver grants credit: the sender may send item `seq` only while `seq < limit`, `limit`
  being what the consumer has *read* plus its buffer, so at most `buffer` items are ever in
  flight or waiting: a fast producer cannot exhaust the consumer's memory;
- a sender waiting on credit for longer than `resend_after` probes the receiver, which answers
  with what it has; items are published in order on one connection, so what the answer lacks was
  lost and is sent again (a lost item or credit costs a delay, never an item, and a slow reader
  causes no resends);
- the end frame carries the item count (and the producer's error, if it failed); the producer
  task finishes once every receiver acknowledged all items and the end.

A receiver answers probes whether or not its consumer reads; one silent for `give_up` seconds
is gone (its engine died, say), and the producer goes on without it instead of holding its
worker forever.

A producer whose worker died is sent again by the engine and regenerates its items; the first
credit it hears tells it how many the consumer already has, and it skips those (the items must
come out of the generator the same way twice). A consumer that restarts after items were
acknowledged cannot read them again: its producer ends its stream with an error saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections import deque
from typing import Any

from ..errors import StreamError
from ..streams import Stream, StreamRef
from .broker import publish_now
from .protocol import (
    CREDIT,
    END,
    HELLO,
    ITEMS,
    Codec,
    Credit,
    ProtocolError,
    StreamEnd,
    StreamItems,
    ValueRef,
    decode_credit,
    decode_stream,
    encode_credit,
    encode_end,
    encode_hello,
    encode_items,
    item_part,
    stream_subjects,
)
from .values import ValueStore

log = logging.getLogger("taskiq_dataflow.streams")

__all__ = ["CREDIT", "END", "HELLO", "ITEMS", "StreamLink", "StreamReceiver", "StreamSender"]
BATCH_BYTES = 64 * 1024  # an items frame is sent at this size without waiting for a pause


# publishes still in flight (the few that must wait for room in nats-py's buffer), kept alive
_pending: set[asyncio.Future[Any]] = set()


def _send(nc: Any, subject: str, frame: bytes) -> None:
    """Publish at most once, as NATS core does anyway: a frame that cannot go now is lost, and
    the protocol above (probes, credits, resends) recovers it."""
    try:
        pending = publish_now(nc, subject, frame)
    except Exception:
        return
    if pending is not None:
        _pending.add(pending)
        pending.add_done_callback(_settled)


def _settled(fut: asyncio.Future[Any]) -> None:
    _pending.discard(fut)
    if not fut.cancelled():
        fut.exception()  # retrieved: a lost frame is not an error here


def _error_of(exc: BaseException | None) -> list[str] | None:
    return None if exc is None else [type(exc).__name__, str(exc)]


class StreamSender:
    """The producer's end of one route: `_put` each item (waits for credit), then `_close`."""

    def __init__(
        self,
        nc: Any,
        codec: Codec,
        ref: StreamRef,
        values: ValueStore | None,
        resend_after: float,
        label: str,
        give_up: float,
    ) -> None:
        self.nc, self.codec, self.ref, self.values = nc, codec, ref, values
        self.resend_after, self.give_up = resend_after, give_up
        self.heard_at = time.monotonic()
        self.label = label  # names large items in the object store
        self.count = 0  # items generated so far (the next item's seq)
        self.got = 0  # items the receiver has, without a gap
        self.limit = 0  # the receiver lets us send seq < limit
        self.session: str | None = None  # the receiver instance we talk to
        self.heard = False
        self.done = False  # the receiver is gone: nothing more to send it
        self.end_acked = False
        # items sent (or about to be), not yet acknowledged: (seq, encoded [seq, item])
        self.unacked: deque[tuple[int, bytes]] = deque()
        self.batch: list[bytes] = []  # the next items frame, sent when the producer pauses
        self.batch_bytes = 0
        self._flush_handle: asyncio.Handle | None = None
        self.end_frame: bytes | None = None
        self._changed = asyncio.Event()
        self._sub: Any = None

    @property
    def _gone(self) -> bool:
        """Whether the receiver is gone or refused (streams.pump stops a producer nobody reads)."""
        return self.done

    async def _open(self) -> None:
        if self._sub is None:
            self._sub = await self.nc.subscribe(self.ref.credits, cb=self._on_credit)
            self._publish(encode_hello(self.codec))

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self.batch:
            self._publish(encode_items(self.codec, self.batch))
            self.batch, self.batch_bytes = [], 0

    def _publish(self, frame: bytes) -> None:
        _send(self.nc, self.ref.items, frame)  # lost: the receiver's answer to a probe says so

    async def _on_credit(self, msg: Any) -> None:
        try:
            credit = decode_credit(self.codec, msg.data)
        except ProtocolError:
            return  # not a credit: ignored (the receiver answers the next probe)
        got, limit, session = credit.got, credit.limit, credit.session
        self.heard_at = time.monotonic()
        if credit.done:
            self.done = True
        elif session != self.session:
            base = self.unacked[0][0] if self.unacked else self.count
            if self.heard and got < min(base, self.got):
                # a restarted consumer asks for items we sent and it acknowledged: gone
                self._refuse(got)
                return
            self.session, self.got, self.limit = session, got, limit
        else:
            self.got, self.limit = max(self.got, got), max(self.limit, limit)
        self.heard = True
        if credit.end and self.end_frame is not None:
            self.end_acked = True
        unacked = self.unacked
        while unacked and unacked[0][0] < self.got:
            unacked.popleft()
        if credit.probed:
            # the answer to a probe: the receiver has seen everything we published before it,
            # so what it still lacks was lost
            self._flush()
            for _, part in unacked:
                self._add(part)
            self._flush()
            if self.end_frame is not None and not self.end_acked:
                self._publish(self.end_frame)
        self._changed.set()

    def _refuse(self, got: int) -> None:
        error = StreamError(
            f"the consumer of stream '{self.ref.key}' restarted and asked for it from item "
            f"{got}, but items {got}..{self.got - 1} had already been read by its previous "
            "run; a stream's items are not kept once read"
        )
        self._publish(encode_end(self.codec, self.count, _error_of(error)))
        self.done = True
        self._changed.set()

    async def _wait(self) -> None:
        """Until a credit arrives; after `resend_after` of silence, probe the receiver (its
        answer says what to send again). A receiver answers probes whether or not its consumer
        reads, so `give_up` seconds without an answer mean it is gone (its run ended with the
        engine, say): the stream goes on without it rather than holding the producer forever."""
        self._flush()
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), self.resend_after)
        except TimeoutError:
            silent = time.monotonic() - self.heard_at
            if silent > self.give_up:
                log.warning(
                    "stream '%s': its consumer has not answered for %.0f s; going on without it",
                    self.ref.key, silent,
                )  # fmt: skip
                error = StreamError(
                    f"the producer of stream '{self.ref.key}' heard nothing from this consumer "
                    f"for {silent:.0f} s and went on without it"
                )
                self._publish(encode_end(self.codec, self.got, _error_of(error)))
                self.done = True
                return
            self._publish(encode_hello(self.codec))

    async def _put(self, item: Any) -> None:
        if self.done:
            return
        await self._open()
        seq = self.count
        self.count += 1
        while not self.done and seq >= self.limit:
            await self._wait()
        if self.done or seq < self.got:
            return  # gone, or an item this consumer already has from an earlier producer run
        try:
            encoded = self.codec.packb(item)
            if self.values is not None and len(encoded) > self.values.threshold:
                ref = await self.values.put(f"{self.label}.{seq}", encoded)
                encoded = self.codec.packb(ref)
        except Exception as exc:
            raise StreamError(
                f"item {seq} of stream '{self.ref.key}' cannot be sent: {exc}"
            ) from exc
        part = item_part(seq, encoded)  # [seq, item], the item encoded once
        self.unacked.append((seq, part))
        self._add(part)

    def _add(self, part: bytes) -> None:
        """Into the next items frame: a producer that yields without pausing fills a frame
        per turn of the event loop (or per BATCH_BYTES) instead of a message per item."""
        self.batch.append(part)
        self.batch_bytes += len(part)
        if self.batch_bytes >= BATCH_BYTES:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    async def _close(self, failure: BaseException | None = None) -> None:
        if self.done:
            await self._shut()
            return
        await self._open()
        self._flush()
        self.end_frame = encode_end(self.codec, self.count, _error_of(failure))
        self._publish(self.end_frame)
        if failure is None:
            # finished only when the receiver has everything (it may still be reading)
            while not self.done and not (self.end_acked and self.got >= self.count):
                await self._wait()
        await self._shut()

    async def _shut(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


class StreamReceiver(Stream[Any]):
    """The consumer's end of one route: a Stream whose items arrive over NATS."""

    def __init__(self, nc: Any, codec: Codec, ref: StreamRef, values: ValueStore | None) -> None:
        super().__init__(ref.key, ref.buffer)
        self.nc, self.codec, self.ref, self.values = nc, codec, ref, values
        self.session = uuid.uuid4().hex[:12]
        self.got = 0  # items received without a gap
        self.read = 0  # items handed to the consumer
        self.granted = 0  # the last limit sent
        self.ready: deque[Any] = deque()
        self.early: dict[int, Any] = {}  # arrived ahead of a gap
        self.total: int | None = None  # the item count, once the end frame came
        self.failure: list[str] | None = None
        self._arrived = asyncio.Event()
        self._sub: Any = None
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._opening: asyncio.Future[None] | None = None

    async def _open(self) -> None:
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._subscribe())
        await self._opening

    def listen(self) -> asyncio.Future[None]:
        """Start listening now, before anyone reads (the caller of a run may read later)."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._subscribe())
        return self._opening

    async def _subscribe(self) -> None:
        if self._sub is None and not self._closed:
            self._sub = await self.nc.subscribe(self.ref.items, cb=self._on_items)
            self._credit()

    def _credit(self, done: bool = False, probed: bool = False) -> None:
        self.granted = self.read + self.ref.buffer
        ended = self.total is not None and self.got >= self.total
        credit = Credit(self.got, self.granted, self.session, ended, done, probed)
        # lost: the sender's next probe asks again
        _send(self.nc, self.ref.credits, encode_credit(self.codec, credit))

    async def _on_items(self, msg: Any) -> None:
        try:
            frame = decode_stream(self.codec, msg.data)
        except ProtocolError as exc:
            # not from our producer (whose frames always decode here): dropped, and whatever
            # it displaced is recovered by the probes as a lost frame would be
            log.debug("stream '%s': dropped an unreadable frame: %s", self.key, exc)
            return
        if type(frame) is StreamItems:
            stale, gap = False, bool(self.early)
            for seq, value in frame.items:
                if seq < self.got or seq in self.early:
                    stale = True  # a resend, or a regenerating producer: already have it
                elif seq == self.got:
                    self.ready.append(value)
                    self.got += 1
                    while self.got in self.early:
                        self.ready.append(self.early.pop(self.got))
                        self.got += 1
                elif seq < self.read + self.ref.buffer:
                    self.early[seq] = value
            if self.early and not gap:
                # items come in order on one connection: the one before these was lost
                self._credit(probed=True)
            elif stale or (self.total is not None and self.got >= self.total):
                self._credit()  # tell the sender where we are
        elif type(frame) is StreamEnd:
            if self.total is None:
                self.failure = frame.error
                # a failed stream ends with what already came: its items were published before
                # the end on the same connection, and a failed producer sends nothing again
                self.total = self.got if self.failure else frame.size
            self._credit(probed=self.got < self.total)
        else:  # a hello: the producer probes
            self._credit(probed=True)
        self._arrived.set()

    async def _iterate(self) -> Any:
        await self._open()
        ready = self.ready
        try:
            while True:
                if ready:
                    value = ready.popleft()
                    self.read += 1
                    if self.read + self.ref.buffer - self.granted >= max(1, self.ref.buffer // 2):
                        self._credit()
                    if type(value) is ValueRef and self.values is not None:
                        value = await self._fetch(value)
                    yield value
                elif self.total is not None and self.read >= self.total:
                    if self.failure is not None:
                        kind, message = self.failure
                        raise StreamError(
                            f"the producer of stream '{self.key}' failed: {kind}: {message}"
                        )
                    return
                else:
                    self._arrived.clear()
                    await self._arrived.wait()
        finally:
            if self.total is not None and self.read >= self.total:
                await self.close()

    async def _fetch(self, ref: ValueRef) -> Any:
        """A large item from the object store, deleted once read: each item has exactly one
        reader, so a long stream of large items never piles up in the store (what is left
        when a run stops is purged with the run's other values)."""
        assert self.values is not None
        value = await self.values.get(ref)
        with contextlib.suppress(Exception):  # left for the run's purge
            await self.values.delete(ref.name)
        return value

    def _abandon(self) -> None:
        if not self._closed:
            self._closing = asyncio.ensure_future(self.close())

    async def close(self) -> None:
        """Stop listening; the producer stops waiting for this consumer."""
        if self._closed:
            return
        self._closed = True
        self._credit(done=True)
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


class StreamLink:
    """The stream ends of one run on one side (the engine, or a task on a worker)."""

    def __init__(
        self,
        nc: Any,
        codec: Codec,
        values: ValueStore | None,
        resend_after: float,
        prefix: str,
        run_id: str,
        give_up: float = 30.0,
    ) -> None:
        self.nc, self.codec, self.values, self.resend_after = nc, codec, values, resend_after
        self.prefix, self.run_id, self.give_up = prefix, run_id, give_up
        # in the routes' subjects: a bystander who knows the run id cannot inject items or
        # end a stream (only the engine makes routes; workers get them inside task frames)
        self._secret = ""  # made with the first route (most runs have none)
        self.routed = False  # whether any route was made: until then no job carries a stream

    def route(self, node: int, index: int, key: str, buffer: int) -> StreamRef:
        """The route of consumer `node`'s input number `index` (`key`)."""
        if not self._secret:
            self._secret = secrets.token_hex(16)
        items, credits = stream_subjects(self.prefix, self.run_id, self._secret, node, index)
        self.routed = True
        if self.values is not None:
            # the route's large items go to the object store under the run's name, maybe by
            # two workers the engine never hears from: purge the run's objects when it ends
            self.values.used = True
        return StreamRef(key, items, credits, buffer)

    def sender(self, ref: StreamRef) -> StreamSender:
        # large items go to the object store under the run's name: purged with the run
        label = f"{self.run_id}.stream.{uuid.uuid4().hex[:12]}"
        return StreamSender(
            self.nc, self.codec, ref, self.values, self.resend_after, label, self.give_up
        )

    def receiver(self, ref: StreamRef) -> Stream[Any]:
        if ref.values is not None:
            return Stream.of(ref.key, ref.values)
        return StreamReceiver(self.nc, self.codec, ref, self.values)

    def abandon(self, ref: StreamRef) -> None:
        """Tell the producer a consumer is gone (it failed for good, or the run stopped)."""
        credit = Credit(0, 0, "engine", done=True)
        _send(self.nc, ref.credits, encode_credit(self.codec, credit))

    def end(self, ref: StreamRef, failure: BaseException) -> None:
        """End a stream whose producer failed for good (e.g. its workers died)."""
        _send(self.nc, ref.items, encode_end(self.codec, -1, _error_of(failure)))
