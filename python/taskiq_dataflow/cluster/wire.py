"""The hot frames' shorter way through nats-py, on its own connection (auth, TLS, reconnects
and the protocol stay nats-py's).

nats-py costs a message two event-loop iterations on top of the socket read: its reader task
puts the message in the subscription's queue, the subscription's own task takes it out and
awaits the callback (one more iteration); and a publish appends to the outbound buffer and
wakes the flusher task, which writes it an iteration later. On a chain of tasks every hop pays
both on both sides.

- `subscribe_direct`: a subscription whose messages are handed to a plain function as they
  arrive, no queue and no task per subscription. Once the connection's socket is a plain or
  TLS TCP stream and nothing is buffered on nats-py's side, the stream's `feed_data` is
  wrapped (`_Reader`): the bytes are framed as they are received (in the protocol's
  `data_received`), a complete MSG for a direct subscription goes to its handler at once, with
  nats-py's reader task as the current task (as if nats-py had delivered it: `current_task()`
  is what it would be), and every other complete protocol unit (PING, PONG, INFO, +OK, -ERR,
  HMSG, other subscriptions' messages) is passed on to nats-py unchanged and in order. Until
  then, and on another nats-py, nats-py's reader hands the messages over as it parses them
  (the subscription's pending queue replaced), and if even that is not possible, a callback
  subscription does. A reconnect makes a new stream: the wrapper is installed again on the
  next publish once nats-py's buffers are empty. The handler must not block; an exception it
  raises is logged and goes no further (nats-py's reader would stop reading).
- `publish_frames`: frames queued as PUB commands after whatever nats-py holds for the socket
  (so the order of everything sent on the connection is kept) and written by the caller: at
  once when no other callback runs in this loop iteration, else at the start of the next one,
  in one write for everything published meanwhile (concurrent runs share it); no flusher task
  woken. Only on a plain or TLS TCP connection that is up (not reconnecting, not draining)
  and whose socket keeps up, for subjects nats-py would accept and payloads within the
  server's max_payload; otherwise it returns False and the caller publishes through nats-py
  as usual (which buffers while reconnecting, applies backpressure and raises its errors).

Both stand on nats-py internals (checked as they are used): where they differ,
`subscribe_direct` falls back to a callback subscription and `publish_frames` to nats-py's
own publish.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("taskiq_dataflow.nats")

# the data is left to nats-py's flusher (which waits for the socket to drain) once the
# socket's own buffer holds this much
WRITE_BUFFER_LIMIT = 256 * 1024
# what nats-py refuses in a subject it publishes to (a CRLF would inject protocol commands)
_BAD_SUBJECT = re.compile(r"\s")
_checked: dict[str, bool] = {}  # subject -> whether it may be written as is (bounded below)


class _Handoff:
    """Stands in for a nats-py subscription's pending queue: put_nowait runs the handler."""

    __slots__ = ("handler", "sub")

    def __init__(self, sub: Any, handler: Callable[[Any], None]) -> None:
        self.sub, self.handler = sub, handler

    def put_nowait(self, msg: Any) -> None:
        sub = self.sub
        sub._pending_size -= len(msg.data)  # counted by nats-py on the way in: not pending
        try:
            self.handler(msg)
        except Exception:
            log.exception("a message handler failed on %s", sub.subject)

    # what nats-py asks of a queue besides put_nowait (pending_msgs, unsubscribe, drain)
    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    async def join(self) -> None:
        return None


class Delivered:
    """A message handed to a direct subscription's handler (what it reads of nats-py's Msg)."""

    __slots__ = ("data", "reply", "subject")

    def __init__(self, subject: str, reply: str, data: bytes) -> None:
        self.subject, self.reply, self.data = subject, reply, data


class _Reader:
    """Frames the bytes a nats-py connection's stream receives, as it receives them: complete
    MSGs for direct subscriptions go to their handlers, the rest to nats-py (see the module's
    docstring)."""

    __slots__ = ("buf", "direct", "feed", "loop", "more", "nc", "need", "reader", "skip")

    def __init__(self, nc: Any, reader: Any, direct: dict[int, tuple[Any, Any]]) -> None:
        self.nc, self.reader, self.direct = nc, reader, direct
        self.feed = reader.feed_data  # nats-py's side: what is not ours goes there
        self.buf = bytearray()  # the start of a unit not received whole yet
        self.need = 0  # ... which is complete once buf holds this many bytes (0: unknown)
        self.skip = 0  # bytes still to come of a unit for nats-py, passed on as they come
        self.more = False  # while a handler runs: whether more units follow in this read
        self.loop = asyncio.get_running_loop()

    def __call__(self, data: bytes) -> None:
        if self.skip:
            if len(data) <= self.skip:
                self.skip -= len(data)
                self.feed(data)
                return
            self.feed(data[: self.skip])
            data = data[self.skip :]
            self.skip = 0
        if self.buf:
            self.buf += data
            if len(self.buf) < self.need:
                return
            data = bytes(self.buf)
            self.buf = bytearray()
            self.need = 0
        end = self._frame(data)
        if end < len(data):
            self.buf = bytearray(data[end:])
            if not self.need and len(self.buf) > _MAX_LINE:
                # no protocol line is that long: nats-py tells what it is
                self._give_up(bytes(self.buf), 0)
                self.buf = bytearray()

    def _frame(self, data: bytes) -> int:
        """Handle the complete units of `data`; returns where the first incomplete one starts
        (the part of a unit for nats-py that arrived is passed on at once: self.skip)."""
        n = len(data)
        pos = 0
        start = -1  # start of a run of units for nats-py
        direct, subs = self.direct, self.nc._subs
        find = data.find
        while pos < n:
            eol = find(b"\r\n", pos)
            if eol < 0:
                break
            if data.startswith(b"MSG ", pos):
                args = data[pos + 4 : eol].split()
                try:
                    if len(args) == 3:
                        subject, sid_, size = args
                        reply = b""
                    else:
                        subject, sid_, reply, size = args
                    sid, stop = int(sid_), eol + 4 + int(size)
                except ValueError:
                    return self._give_up(data, pos if start < 0 else start)
                entry = direct.get(sid)
                if entry is not None and subs.get(sid) is entry[0]:
                    if stop > n:
                        self.need = stop - pos
                        break
                    if start >= 0:
                        self.feed(data[start:pos])
                        start = -1
                    payload = data[eol + 2 : stop - 2]
                    pos = stop
                    self._deliver(entry, subject, reply, payload, pos < n)
                    continue
            elif data.startswith(b"HMSG ", pos):
                try:
                    stop = eol + 4 + int(data[pos + 5 : eol].split()[-1])
                except (ValueError, IndexError):
                    return self._give_up(data, pos if start < 0 else start)
            else:
                stop = eol + 2  # PING, PONG, INFO, +OK, -ERR: one line
            if start < 0:
                start = pos
            if stop > n:  # a message for nats-py, not all here: what is goes on now
                self.skip = stop - n
                pos = n
                break
            pos = stop
        if start >= 0:
            self.feed(data[start:pos])
        return pos

    def _give_up(self, data: bytes, pos: int) -> int:
        """A unit we cannot frame: nats-py reads (and judges) everything from it on, and
        everything this stream receives from now on."""
        log.debug("passing an unreadable protocol unit on to nats-py")
        self.reader.feed_data = self.feed
        self.feed(data[pos:])
        return len(data)

    def _deliver(self, entry: Any, subject: bytes, reply: bytes, data: bytes, more: bool) -> None:
        sub, handler = entry
        nc = self.nc
        stats = nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        sub._received += 1
        msg = Delivered(subject.decode(errors="replace"), reply.decode(errors="replace"), data)
        # as nats-py would run it: in its reader task (current_task() is that task)
        task = nc._reading_task
        entered = False
        if task is not None and not task.done():
            try:
                _enter_task(self.loop, task)
                entered = True
            except RuntimeError:
                pass
        self.more = more
        try:
            handler(msg)
        except Exception:
            log.exception("a message handler failed on %s", sub.subject)
        finally:
            self.more = False
            if entered:
                _leave_task(self.loop, task)


_MAX_LINE = 64 * 1024  # longer than any protocol line the server sends


def _direct(nc: Any) -> dict[int, tuple[Any, Any]]:
    """sid -> (subscription, handler) of nc's direct subscriptions."""
    table: dict[int, tuple[Any, Any]] | None = getattr(nc, "_dataflow_direct", None)
    if table is None:
        table = nc._dataflow_direct = {}
    return table


def _install(nc: Any) -> None:
    """Wrap the connection's current stream (see the module's docstring), when nothing is
    buffered on nats-py's side (what is could be overtaken)."""
    try:
        transport = nc._transport
        if type(transport) is not _TCP or _enter_task is None:
            return
        reader = transport._io_reader
        current = getattr(nc, "_dataflow_reader", None)
        if reader is None or (current is not None and current.reader is reader):
            return
        if "feed_data" in vars(reader) or reader._buffer or nc._ps.buf or nc._status != _CONNECTED:
            return
        nc._dataflow_reader = _Reader(nc, reader, _direct(nc))
        reader.feed_data = nc._dataflow_reader
    except (AttributeError, TypeError):  # pragma: no cover - another nats-py or Python
        return


def reading_more(nc: Any) -> bool:
    """Whether more protocol units follow at once the message being handled (received in the
    same read): answering after them, a loop iteration later, sends one frame for all."""
    current = getattr(nc, "_dataflow_reader", None)
    if current is not None and current.more:
        return True
    parser = getattr(nc, "_ps", None)
    return bool(parser is not None and getattr(parser, "buf", None))


def _direct_ok(sub: Any) -> bool:
    queue = getattr(sub, "_pending_queue", None)
    return (
        isinstance(queue, asyncio.Queue)
        and isinstance(getattr(sub, "_pending_size", None), int)
        and getattr(sub, "_wait_for_msgs_task", None) is None
    )


async def subscribe_direct(
    nc: Any, subject: str, handler: Callable[[Any], None], queue: str = ""
) -> Any:
    """A subscription to `subject` (in queue group `queue`) whose messages go to `handler(msg)`
    as they arrive (see the module's docstring). Its SUB leaves with the connection's next
    write (no flusher woken): on the same connection, before anything published after it."""
    sub = _subscribe_now(nc, subject, queue)
    if sub is None:
        sub = await nc.subscribe(subject, queue=queue)
    if _direct_ok(sub):
        sub._pending_queue = _Handoff(sub, handler)
        _direct(nc)[sub._id] = (sub, handler)
        _install(nc)
        return sub
    # another nats-py: the same handler through a callback subscription
    await sub.unsubscribe()

    async def callback(msg: Any) -> None:
        handler(msg)

    return await nc.subscribe(subject, queue=queue, cb=callback)


async def unsubscribe_direct(nc: Any, sub: Any) -> None:
    """End a subscription made by subscribe_direct (its UNSUB leaves with the next write)."""
    table = getattr(nc, "_dataflow_direct", None)
    if table is not None:
        table.pop(getattr(sub, "_id", None), None)
    try:
        if _Subscription is not None and type(sub) is _Subscription and _writer(nc) is not None:
            if sub._closed:
                return
            sub._closed = True
            nc._subs.pop(sub._id, None)
            _queue(nc, b"UNSUB %d \r\n" % sub._id)
            return
    except AttributeError:  # pragma: no cover - another nats-py
        pass
    await sub.unsubscribe()


def _subscribe_now(nc: Any, subject: str, queue: str) -> Any:
    """What nats-py's subscribe() does for a subscription without a callback, its SUB queued
    for the next write; None when nats-py itself must (not connected, another nats-py, a
    subject it would refuse: it raises)."""
    if _Subscription is None or _validate_subject is None:
        return None
    try:
        if nc._status != _CONNECTED or _writer(nc) is None:
            return None
        _validate_subject(subject, strict=True)
        if queue and not _subject_ok(queue):
            return None
        nc._sid += 1
        sub = _Subscription(nc, nc._sid, subject, queue=queue)
        nc._subs[sub._id] = sub
        _queue(nc, b"SUB %b %b %d\r\n" % (subject.encode(), queue.encode(), sub._id))
        return sub
    except Exception:  # nats-py says what is wrong
        return None


def _queue(nc: Any, command: bytes) -> None:
    """A SUB or UNSUB for the connection's next write: the frames a run publishes next take it
    along, else it leaves at the start of the next loop iteration (never a write of its own
    when a run starts or ends)."""
    nc._pending.append(command)
    nc._pending_data_size += len(command)
    if not getattr(nc, "_dataflow_write_soon", False):
        nc._dataflow_write_soon = True
        asyncio.get_running_loop().call_soon(_write, nc)


def _nats_py() -> tuple[Any, Any, Any, Any]:
    try:
        from nats.aio.client import Client, _validate_subject
        from nats.aio.subscription import Subscription
        from nats.aio.transport import TcpTransport
    except ImportError:  # pragma: no cover - another nats-py
        return None, None, None, None
    return TcpTransport, getattr(Client, "CONNECTED", None), Subscription, _validate_subject


_TCP, _CONNECTED, _Subscription, _validate_subject = _nats_py()
_enter_task: Any = getattr(asyncio.tasks, "_enter_task", None)
_leave_task: Any = getattr(asyncio.tasks, "_leave_task", None)


def _writer(nc: Any) -> Any:
    """The stream writer of nc's socket when the hot frames may be written to it now: nats-py
    connected (not reconnecting, not draining) over TCP (TLS or not), its socket keeping up;
    else None."""
    if _TCP is None or nc._status != _CONNECTED:
        return None
    transport = nc._transport
    if type(transport) is not _TCP:
        return None
    writer = transport._io_writer
    if writer is None:
        return None
    socket_side = writer.transport
    if socket_side.is_closing() or socket_side.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
        return None
    return writer


def _subject_ok(subject: str) -> bool:
    ok = _checked.get(subject)
    if ok is None:
        ok = bool(subject) and _BAD_SUBJECT.search(subject) is None
        if len(_checked) >= 4096:
            _checked.clear()
        _checked[subject] = ok
    return ok


def publish_frames(nc: Any, frames: Sequence[tuple[str, bytes]]) -> bool:
    """Queue `frames` ((subject, payload), no reply subject) after what nats-py holds for the
    socket and write it all now, or at the start of the next loop iteration when other
    callbacks run in this one (they may publish too: one write for all); False (nothing
    queued) when they must go through nats-py."""
    try:
        writer = _writer(nc)
        if writer is None:
            return False
        limit = nc._max_payload
        for subject, payload in frames:
            if len(payload) > limit or not _subject_ok(subject):
                return False
        pending = nc._pending
        size = 0
        for subject, payload in frames:
            pending.append(b"PUB %b %d\r\n%b\r\n" % (subject.encode(), len(payload), payload))
            size += len(payload)
        nc._pending_data_size += size
        stats = nc.stats
        stats["out_msgs"] += len(frames)
        stats["out_bytes"] += size
    except (AttributeError, KeyError, TypeError):  # pragma: no cover - another nats-py
        return False
    current = getattr(nc, "_dataflow_reader", None)
    if current is None or current.reader is not getattr(nc._transport, "_io_reader", None):
        _install(nc)  # a new stream (a reconnect), or the first chance to wrap it
    _write_soon(nc)
    return True


def _write_soon(nc: Any) -> None:
    """Write what nats-py holds for the socket now when no other callback runs in this loop
    iteration (none could add to the write), else at the start of the next one."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # the callbacks still to run in this iteration
    if ready is not None and (
        not ready or (len(ready) == 1 and getattr(ready[0], "_callback", None) is _write)
    ):
        _write(nc)  # (a write already scheduled, alone: it then finds nothing to do)
    elif not getattr(nc, "_dataflow_write_soon", False):
        nc._dataflow_write_soon = True
        loop.call_soon(_write, nc)


def _write(nc: Any) -> None:
    """Write what nats-py holds for the socket (its flusher, woken or not, then finds nothing);
    left to the flusher when the socket cannot take it now."""
    nc._dataflow_write_soon = False
    try:
        if not nc._pending:
            return
        writer = _writer(nc)
        if writer is None:
            if nc.is_connected and not nc.is_reconnecting:
                # the socket lags: nats-py's flusher writes it once it drained
                nc._flush_queue.put_nowait(asyncio.get_running_loop().create_future())
            return
        pending = nc._pending
        nc._pending = []
        nc._pending_data_size = 0
        writer.writelines(pending)
    except (AttributeError, asyncio.QueueFull):  # pragma: no cover - the flusher writes
        return
