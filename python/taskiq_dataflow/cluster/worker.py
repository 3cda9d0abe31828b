"""A cluster worker: serves a pool's task frames with the tasks its broker module registered.

Each worker takes task frames on its own subject (and, before an engine knows it, from its
pool's queue group), claims them (so the engine knows who holds what), runs them with at most
`concurrency` at once (blocking functions in threads), and sends results back in batches. It
heart-beats while alive, announcing its subject and how many entries it will hold: engines send
it no more than that, so a worker that hangs stops getting work. An unknown task name or a
malformed frame or entry gets an error result, never a crash. No frame it sends exceeds the
server's max_payload: results are split across frames, and a result too big for one frame goes
through the object store.

An async task is first stepped in place, as the in-process transport does: one that finishes
without suspending (most cheap tasks) costs no asyncio.Task and no extra loop iteration, and its
result leaves in the frame that carries the claims.

A task that waits on a sub-run (or calls `seceding.secede()`) gives its slot back while it waits
and takes one again when it rejoins, before any task not started yet: parents awaiting children
on the same workers cannot hold every slot (see seceding.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import logging
import os
import socket
import time
import traceback
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from ..dependencies import with_dependencies
from ..events import LogEntry
from ..middlewares import TaskHooks, start_middlewares, stop_middlewares, task_hooks
from ..seceding import CURRENT_SLOT, CURRENT_WORKER
from ..streams import STREAM_ITEMS, StreamRef, pump
from ..task_logs import CURRENT as CURRENT_LOG
from ..task_logs import DROPPED_LOGGER, TaskLog, capturing, labels_on
from ..transports.local import _resume
from .broker import ENTRY_OVERHEAD, DataflowNatsBroker, frame_budget, publish_now
from .protocol import (
    BadTask,
    EncodeError,
    Failure,
    Heartbeat,
    ProtocolError,
    TasksFrame,
    ValueRef,
    cancel_key_of,
    decode_cancel,
    decode_ping,
    decode_tasks,
    encode_heartbeat,
    encode_results,
    failure_part,
    logs_part,
    peek_reply,
    rejection_part,
    result_part,
    value_part,
)
from .streams import StreamLink, StreamReceiver
from .values import ValueStore
from .wire import publish_frames, reading_more, subscribe_direct, unsubscribe_direct

if TYPE_CHECKING:
    from ..metrics.worker import WorkerMetrics

log = logging.getLogger("taskiq_dataflow.worker")

# a failure's message and traceback are cut to this many characters each: a frame must stay
# under max_payload, and a megabyte of traceback helps nobody
FAILURE_TEXT_LIMIT = 16 * 1024
PING_INTERVAL = 0.02  # seconds between two heartbeats sent in answer to pings


class Worker:
    def __init__(
        self,
        broker: DataflowNatsBroker,
        pool: str | None = None,
        concurrency: int = 64,
        worker_id: str | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.broker = broker
        # Prometheus metrics (taskiq_dataflow.metrics): None counts nothing, per task or beat
        self.metrics = metrics
        self.pool = pool or broker.pool
        self.concurrency = concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.codec = broker.codec
        # what engines may send it at once: its slots, and as many again queued, at least eight
        # full batches: quick tasks (run in place, no slot) then never wait for a round trip
        self.capacity = concurrency + max(concurrency, 8 * broker.batch_size)
        # its own task subject: random, as a worker id may hold characters a subject cannot
        self.subject = broker.worker_subject(uuid.uuid4().hex)
        self._free = concurrency  # slots not held by a running task
        # running tasks that gave their slot back: key -> how many secedes are open (nested
        # sub-runs); a task waiting to rejoin stays here until it has its slot
        self._seceded: dict[tuple[str, int], int] = {}
        self._rejoiners: deque[asyncio.Future[None]] = deque()  # seceded tasks waiting for a slot
        self._stepping: tuple[str, int] | None = None  # the task being stepped in place, if any
        self._context = contextvars.copy_context()  # run()'s, where tasks start from callbacks
        # entries waiting for a slot: (run id, reply subject, seq, name, args, kwargs, timeout,
        # stream or None, the run's cancel key, its TaskLog or None)
        self._queue: deque[
            tuple[str, str, int, str, list[Any], dict[str, Any], Any, Any, str, TaskLog | None]
        ] = deque()
        # the capture handler, on the root logger from the first frame that asks for capture
        self._capturing = contextlib.ExitStack()
        self._captures = False
        # task name -> (callable, is async, is an async generator: a stream producer)
        self._funcs: dict[str, tuple[Any, bool, bool, TaskHooks | None]] = {}
        # task name -> its callable, for the async ones without hooks that are not producers
        # (what _on_tasks steps itself)
        self._plain: dict[str, Any] = {}
        self._threads = concurrent.futures.ThreadPoolExecutor(
            concurrency, thread_name_prefix="dataflow-worker"
        )
        self._outbox: dict[str, list[bytes]] = {}  # reply subject -> encoded results
        self._claims: dict[str, list[int]] = {}
        self._flush_scheduled = False
        self._running: dict[tuple[str, int], asyncio.Task[Any]] = {}
        self._stop = asyncio.Event()
        self._nc: Any = None
        self._task_subs: list[Any] = []
        self._values: ValueStore | None = None
        self._budget = frame_budget(1024 * 1024)  # set from the server's INFO on connect
        self._pinged = 0.0
        self._background: set[asyncio.Future[Any]] = set()
        # (registry sizes, task names) the heartbeats advertise, made again when tasks are added
        self._names: tuple[tuple[int, int], frozenset[str]] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        # every task it runs descends from this context: secede() finds its worker there
        CURRENT_WORKER.set(self)
        if self.metrics is not None:
            STREAM_ITEMS.set(self.metrics.stream_item)
        self._context = contextvars.copy_context()
        broker = self.broker
        # a task set its heartbeats cannot carry fails here, not in the heartbeat loop (where
        # the worker would go silent and be taken for lost)
        encode_heartbeat(
            self.codec, Heartbeat(self.worker_id, self.pool, 0, tasks=self.task_names())
        )
        self._nc = await broker.connect_checked(
            f"dataflow-worker-{self.worker_id}", broker.progress_timeout
        )
        # the middlewares' own startup, as `taskiq worker` runs it (broker.startup() would
        # also connect taskiq's NATS subscriber, which this worker does not use)
        await start_middlewares(broker)
        self._budget = frame_budget(self._nc.max_payload)
        # a result that would not fit in a frame goes by reference whatever the threshold says
        inline_limit = min(broker.large_value_threshold, self._budget - ENTRY_OVERHEAD)
        self._values = ValueStore(
            self._nc, broker.object_store_bucket, inline_limit, self.codec,
            broker.object_store_replicas,
        )  # fmt: skip
        # task frames are handled by nats-py's reader as it reads them (wire.py), in run()'s
        # context (the tasks stepped in place start from a copy of it)
        context = self._context

        def on_tasks(msg: Any) -> None:
            context.run(self._on_tasks, msg)

        def on_pool_tasks(msg: Any) -> None:
            context.run(self._on_pool_tasks, msg)

        self._task_subs = [
            await subscribe_direct(self._nc, self.subject, on_tasks),
            await subscribe_direct(
                self._nc,
                broker.tasks_subject(self.pool),
                on_pool_tasks,
                queue=broker.queue_group(self.pool),
            ),
        ]
        control = [
            await self._nc.subscribe(f"{broker.prefix}.cancel.*", cb=self._on_cancel),
            await self._nc.subscribe(broker.ping_subject, cb=self._on_ping),
        ]
        await self._nc.flush()
        beat = asyncio.ensure_future(self._heartbeat())
        log.info("worker %s serving pool %r", self.worker_id, self.pool)
        if ready is not None:
            ready.set()
        try:
            await self._stop.wait()
        finally:
            beat.cancel()
            for sub in self._task_subs:
                await unsubscribe_direct(self._nc, sub)
            for sub in control:
                await sub.unsubscribe()
            self._queue.clear()
            for task in list(self._running.values()):
                task.cancel()
            self._flush()
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._capturing.close()
            await stop_middlewares(broker)

    def stop(self) -> None:
        self._stop.set()

    async def _heartbeat(self) -> None:
        while True:
            self._beat()
            await asyncio.sleep(self.broker.heartbeat_interval)

    def _beat(self) -> None:
        if self.metrics is not None:
            self.metrics.sample(self)
        busy = self.concurrency - self._free + len(self._queue)
        beat = Heartbeat(
            self.worker_id, self.pool, busy, self.subject, self.capacity,
            self.broker.heartbeat_interval, self.task_names(),
        )  # fmt: skip
        self._publish(self.broker.heartbeat_subject, encode_heartbeat(self.codec, beat))

    def load(self) -> tuple[int, int, int, int, int]:
        """(slots held, slots, entries waiting for a slot, bytes put into and got from the
        object store) for the metrics."""
        values = self._values
        put, got = (values.bytes_put, values.bytes_got) if values is not None else (0, 0)
        return self.concurrency - self._free, self.concurrency, len(self._queue), put, got

    def task_names(self) -> frozenset[str]:
        """The names it serves, as its heartbeats advertise them: engines send it only those
        (another service's workers may share its server and pool)."""
        broker = self.broker
        size = (len(broker.local_task_registry), len(broker.global_task_registry))
        if self._names is None or self._names[0] != size:
            self._names = (size, frozenset(broker.get_all_tasks()))
        return self._names[1]

    def _serves(self, name: str) -> bool:
        return name in self._funcs or self.broker.find_task(name) is not None

    async def _on_ping(self, msg: Any) -> None:
        """An engine starting a run: tell it at once where to send work (at most every
        PING_INTERVAL: a flood of pings must not become a flood of heartbeats)."""
        try:
            decode_ping(msg.data)
        except ProtocolError as exc:
            log.debug("ignored a ping: %s", exc)
            return
        now = time.monotonic()
        if now - self._pinged >= PING_INTERVAL:
            self._pinged = now
            self._beat()

    # -- incoming frames ------------------------------------------------------------------------

    def _on_pool_tasks(self, msg: Any) -> None:
        self._on_tasks(msg, pooled=True)

    def _on_tasks(self, msg: Any, pooled: bool = False) -> None:
        """A tasks frame on its own subject, or (`pooled`) from its pool's queue group, which
        an engine uses before it knows the pool's workers: there an entry it does not serve
        is neither claimed nor answered (another service's worker in the same pool may serve
        it), so the engine sends it again to a worker that advertises it."""
        try:
            frame = decode_tasks(self.codec, msg.data)
        except ProtocolError as exc:
            self._reject(msg, exc)
            return
        # the results of the tasks stepped below join one frame, sent at the end
        scheduled, self._flush_scheduled = self._flush_scheduled, True
        try:
            self._admit(frame, pooled)
            self._pump()
        finally:
            if not self._more_to_read():
                # no other frame waits behind this one, so nothing would join the batch:
                # answer now instead of a loop iteration later
                self._flush()
            elif not scheduled:
                asyncio.get_running_loop().call_soon(self._flush)

    def _admit(self, frame: TasksFrame, pooled: bool) -> None:
        """Claim a frame's entries: step the plain ones now, queue the others for a slot."""
        run_id, reply, cancel = frame.run, frame.reply, frame.cancel
        seqs = []
        finished: list[list[Any]] = []  # [seq, True, value] of each task stepped to its end
        queue = self._queue
        plain, meterless = self._plain, self.metrics is None
        refs = frame.refs  # (False: no entry holds a reference, none is looked for)
        logging_ = frame.logs
        task_log = None
        labelled = logging_ is not None or labels_on()
        if logging_ is not None and logging_.level is not None and not self._captures:
            self._captures = True
            self._capturing.enter_context(capturing())
        for i, task in enumerate(frame.entries):
            if isinstance(task, BadTask):
                failure = Failure("ProtocolError", f"worker {self.worker_id} {task.message}", "")
                if task.seq is None:
                    self._send(reply, rejection_part(self.codec, failure.message))
                else:
                    self._send(reply, failure_part(self.codec, task.seq, failure))
                    seqs.append(task.seq)  # claimed: the engine takes this answer from us
                continue
            seq, name, args, kwargs, timeout, stream = task
            if pooled and not self._serves(name):
                log.debug("left task %r from the queue group to a worker that serves it", name)
                continue
            seqs.append(seq)
            if labelled:
                if logging_ is None:  # labels of this worker's own: no attempt, its own name
                    task_log = TaskLog(run_id, name, None, None, self.worker_id)
                else:
                    level, attempt, label = (
                        logging_.level, logging_.attempts[i], logging_.tasks[i] or name,
                    )  # fmt: skip
                    task_log = TaskLog(run_id, label, attempt, level, self.worker_id)
            if (
                timeout is None and task_log is None and stream is None and not queue
                and self._free > 0 and not self._rejoiners and meterless
                and (func := plain.get(name)) is not None
                and not (refs and _has_refs(args, kwargs))
            ):  # fmt: skip
                # the common entry (a plain async task with a free slot and nothing ahead of
                # it): stepped here, without the queue and _start's checks
                self._free -= 1
                if self._step(func, run_id, reply, seq, name, args, kwargs, cancel, finished):
                    self._free += 1
                continue
            entry = (run_id, reply, seq, name, args, kwargs, timeout, stream, cancel, task_log)
            if stream is not None or (refs and _has_refs(args, kwargs, (StreamRef,))):
                # a stream task never waits for a slot: consumers holding every slot while
                # their producer waits in the queue would wait forever
                self._free -= 1
                if self._start(*entry):
                    self._free += 1
            else:
                queue.append(entry)
        if seqs:  # a frame with nothing of ours (left to the queue group) gets no answer
            self._claims.setdefault(reply, []).extend(seqs)
        if finished:
            self._finished(run_id, reply, finished)

    def _finished(self, run_id: str, reply: str, entries: list[list[Any]]) -> None:
        """The results of tasks stepped to their end, for the reply frame: encoded in one pass,
        each as its entry `[seq, True, value]`; a large one goes to the object store as it was
        encoded (not encoded again), and when one cannot be encoded, _finish says which."""
        try:
            parts = self.codec.pack_each(entries)
        except Exception:  # a user codec may raise anything
            for seq, _, value in entries:
                self._finish(run_id, reply, seq, value)
            return
        assert self._values is not None
        threshold = self._values.threshold
        outbox = self._outbox.get(reply)
        if outbox is None:
            outbox = self._outbox[reply] = []
        for part, (seq, _, _) in zip(parts, entries, strict=True):
            if len(part) > threshold:  # (the entry's few bytes more than its value)
                # the value, after the entry's array header, seq (as this packer wrote it) and True
                encoded = part[2 + len(self.codec.packb(seq)) :]
                if len(encoded) > threshold:
                    self._spawn(self._upload(run_id, reply, seq, encoded))
                    continue
            outbox.append(part)
        self._schedule_flush()

    def _more_to_read(self) -> bool:
        """Whether more frames may follow this one at once: they were read with it (the frames
        read together are answered together), or a subscription queues messages (when
        wire.py fell back to callbacks)."""
        return reading_more(self._nc) or any(sub.pending_msgs for sub in self._task_subs)

    def _reject(self, msg: Any, exc: BaseException) -> None:
        """A frame we cannot read: answer on its reply subject if it has one, else log it."""
        reply = msg.reply or peek_reply(msg.data)
        log.warning("rejected a frame on %s: %s", msg.subject, exc)
        if reply:
            part = rejection_part(self.codec, f"worker {self.worker_id} rejected a frame: {exc}")
            self._publish(reply, encode_results(self.codec, self.worker_id, [], [part]))

    def _spawn(self, coro: Any) -> None:
        fut = asyncio.ensure_future(coro)
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    async def _on_cancel(self, msg: Any) -> None:
        """Cancel a run's tasks: all of them, or with a payload (a list of seqs) only those."""
        # the subject carries the run's cancel key (a secret of the run's frames)
        key = cancel_key_of(msg.subject)
        try:
            only = decode_cancel(self.codec, msg.data)
        except ProtocolError as exc:
            log.warning("ignored a cancel frame: %s", exc)
            return

        def chosen(cancel: str, seq: Any) -> bool:
            return cancel == key and (only is None or seq in only)

        for (cancel, seq), task in list(self._running.items()):
            if chosen(cancel, seq):
                task.cancel()
        if any(chosen(entry[8], entry[2]) for entry in self._queue):
            keep: deque[Any] = deque()
            for entry in self._queue:
                if chosen(entry[8], entry[2]):
                    self._send(entry[1], self._cancelled(entry[2], entry[3]))
                else:
                    keep.append(entry)
            self._queue = keep

    # -- running tasks --------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start waiting entries while slots are free (tasks rejoining first)."""
        if self._rejoiners:
            self._admit_rejoiners()
        queue = self._queue
        while queue and self._free > 0:
            self._free -= 1
            if self._start(*queue.popleft()):
                self._free += 1

    def _release(self, key: tuple[str, int], _: Any) -> None:
        self._running.pop(key, None)
        if not (self._seceded and self._seceded.pop(key, None) is not None):
            self._free += 1  # (a task that ended seceded gave its slot back already)
        if self._queue or self._rejoiners:
            self._pump()

    # -- secede / rejoin (seceding.py) ----------------------------------------------------------

    def _secede(self, key: tuple[str, int]) -> None:
        depth = self._seceded.get(key, 0)
        self._seceded[key] = depth + 1
        if depth == 0:
            self._free += 1
            if self._queue or self._rejoiners:
                # not now: the caller may be a task stepped in place inside _pump itself; and
                # in the worker's context, not the caller's (the tasks started inherit it)
                asyncio.get_running_loop().call_soon(self._pump, context=self._context)

    async def _rejoin(self, key: tuple[str, int], wait: bool = True) -> None:
        depth = self._seceded.get(key)
        if depth is None:
            return  # never seceded (or rejoined already): it holds its slot
        if depth > 1:
            self._seceded[key] = depth - 1
            return
        if not wait or (self._free > 0 and not self._rejoiners):
            self._free -= 1  # without waiting, it may run over the bound until it ends
            del self._seceded[key]
            return
        granted = asyncio.get_running_loop().create_future()
        self._rejoiners.append(granted)
        if self._free > 0:
            self._admit_rejoiners()  # the slot is free, only cancelled waiters were ahead
        try:
            await granted
        except asyncio.CancelledError:
            if granted.cancelled():
                self._free -= 1  # ending anyway: its release gives this back
            self._rejoined(key)
            raise
        self._rejoined(key)

    def _rejoined(self, key: tuple[str, int]) -> None:
        """A task got its slot back; if it seceded again meanwhile, the slot goes on."""
        depth = self._seceded.pop(key)
        if depth > 1:
            self._seceded[key] = depth - 1
            self._free += 1
            asyncio.get_running_loop().call_soon(self._pump, context=self._context)

    def _admit_rejoiners(self) -> None:
        rejoiners = self._rejoiners
        while rejoiners and self._free > 0:
            granted = rejoiners.popleft()
            if not granted.done():  # (a cancelled waiter gave up its turn)
                self._free -= 1
                granted.set_result(None)

    def _start(
        self,
        run_id: str,
        reply: str,
        seq: int,
        name: str,
        args: Any,
        kwargs: Any,
        timeout: Any,
        stream: Any,
        cancel: str,
        log: TaskLog | None = None,
    ) -> bool:
        """Run one entry; True when it already finished (its result is in the outbox)."""
        found = self._funcs.get(name)
        if found is None:
            task = self.broker.find_task(name)
            if task is None:
                exc = LookupError(
                    f"worker {self.worker_id} (pool {self.pool!r}) has no task named {name!r}; "
                    "the worker's module must register it with @broker.task"
                )
                self._send(reply, self._failure(seq, exc))
                return True
            func = with_dependencies(task.original_func, self.broker)
            found = self._funcs[name] = (
                func, inspect.iscoroutinefunction(func), inspect.isasyncgenfunction(func),
                task_hooks(task, self.broker),
            )  # fmt: skip
            if found[1] and not found[2] and found[3] is None:
                self._plain[name] = func
        func, is_async, is_producer, hooks = found
        if is_producer != (stream is not None):
            self._send(reply, self._failure(seq, self._kind_mismatch(name, is_producer)))
            return True
        if is_producer:
            func, is_async = functools.partial(self._produce, run_id, func, stream), True
        if hooks is not None:
            # the broker's middlewares and argument parsing around the call, as taskiq's
            # receiver runs them; a blocking function still runs in a thread
            call = func if is_async else functools.partial(self._in_threads, func)
            func, is_async = functools.partial(hooks.run, call), True
        call = None
        context = None
        key = (cancel, seq)
        meter = self.metrics
        started = 0.0 if meter is None else meter.task_started(name)
        if is_async and timeout is None and not _has_refs(args, kwargs):
            # its own context, as an asyncio.Task would have, kept when it continues as one
            context = contextvars.copy_context()
            if log is not None:
                context.run(CURRENT_LOG.set, log)
            # while it is stepped here, `_stepping` names its slot (for secede() and sub-runs):
            # cheaper than a context variable set for every quick task
            self._stepping = key
            try:
                try:
                    coro = func(*args, **kwargs)
                    yielded = context.run(coro.send, None)
                finally:
                    self._stepping = None
            except StopIteration as stop:
                self._ended_in_place(key)
                if meter is not None:
                    meter.task_ended(name, started, True)
                self._finish(run_id, reply, seq, stop.value, log)
                return True
            except BaseException as exc:  # every failure becomes a result
                self._ended_in_place(key)
                if meter is not None:
                    meter.task_ended(name, started, False)
                self._send(reply, self._failure(seq, exc, log))
                return True
            call = _resume(coro, yielded, None)
        if log is not None and context is None:
            context = contextvars.copy_context()
            context.run(CURRENT_LOG.set, log)
        if is_async and context is None:
            context = contextvars.copy_context()
        run = self._execute(
            run_id, reply, seq, name, func, is_async, args, kwargs, timeout, call, log
        )
        self._go_on(key, run, context, is_async, name, started)
        return False

    def _step(
        self,
        func: Any,
        run_id: str,
        reply: str,
        seq: int,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        cancel: str,
        finished: list[list[Any]],
    ) -> bool:
        """`_start` for a plain async task without a timeout, log, refs or meter: the same
        steps, without the checks that do not apply. True when it already finished: then its
        result entry is in `finished`, to be encoded with the others of its frame."""
        key = (cancel, seq)
        context = contextvars.copy_context()
        self._stepping = key
        try:
            try:
                coro = func(*args, **kwargs)
                yielded = context.run(coro.send, None)
            finally:
                self._stepping = None
        except StopIteration as stop:
            if self._seceded:
                self._ended_in_place(key)
            finished.append([seq, True, stop.value])
            return True
        except BaseException as exc:  # every failure becomes a result
            if self._seceded:
                self._ended_in_place(key)
            self._send(reply, self._failure(seq, exc))
            return True
        call = _resume(coro, yielded, None)
        run = self._execute(run_id, reply, seq, name, func, True, args, kwargs, None, call)
        self._go_on(key, run, context, True, name, 0.0)
        return False

    def _go_on(
        self,
        key: tuple[str, int],
        run: Any,
        context: contextvars.Context | None,
        is_async: bool,
        name: str,
        started: float,
    ) -> None:
        """A task that did not finish in place goes on as an asyncio.Task holding its slot."""
        if is_async:
            # a task that goes on in the loop names its slot in its own context
            assert context is not None
            context.run(CURRENT_SLOT.set, (self, key))
        fut = asyncio.get_running_loop().create_task(run, context=context)
        self._running[key] = fut
        fut.add_done_callback(functools.partial(self._release, key))
        meter = self.metrics
        if meter is not None:
            fut.add_done_callback(functools.partial(meter.task_done, name, started))

    def _in_threads(self, func: Any, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        partial = functools.partial(func, *args, **kwargs)
        if CURRENT_LOG.get() is not None:  # its records find their TaskLog in the thread
            partial = functools.partial(contextvars.copy_context().run, partial)
        return asyncio.get_running_loop().run_in_executor(self._threads, partial)

    def _kind_mismatch(self, name: str, is_producer: bool) -> TypeError:
        """The engine wired the task as the other kind: run anyway, its items would be lost
        (a list at the end instead of a stream) or its readers would wait for ever."""
        where = f"worker {self.worker_id} (pool {self.pool!r})"
        if is_producer:
            return TypeError(
                f"task {name!r} on {where} is an async generator, but the engine does not read "
                f"it as a stream: declare it RemoteTask({name!r}, ..., stream=True) (or "
                "register_task(..., stream=True))"
            )
        return TypeError(
            f"task {name!r} on {where} is not an async generator, but the engine reads it as "
            "a stream: drop stream=True from its RemoteTask"
        )

    def _ended_in_place(self, key: tuple[str, int]) -> None:
        """A task stepped in place ended: the caller frees its slot, unless it seceded."""
        if self._seceded and self._seceded.pop(key, None) is not None:
            self._free -= 1  # given back at secede(): cancels the caller's release

    def _finish(
        self, run_id: str, reply: str, seq: int, value: Any, log: TaskLog | None = None
    ) -> None:
        """Queue a task's result (and its log records) for its reply frame; a large one goes
        to the object store first, off the hot path."""
        logs = b"" if log is None else self._logs(log)
        try:
            encoded = self.codec.packb(value)
        except Exception as exc:  # a user codec may raise anything
            error = EncodeError(f"the task's return value cannot be sent: {exc}")
            self._send(reply, self._failure(seq, error, logs=logs))
            return
        assert self._values is not None
        if len(encoded) + len(logs) > self._values.threshold:
            self._spawn(self._upload(run_id, reply, seq, encoded, logs))
        else:
            self._send(reply, result_part(seq, encoded, logs))

    async def _upload(
        self, run_id: str, reply: str, seq: int, encoded: bytes, logs: bytes = b""
    ) -> None:
        assert self._values is not None
        try:
            ref = await self._values.put(f"{run_id}.{seq}.{uuid.uuid4().hex[:8]}", encoded)
            part = value_part(self.codec, seq, ref, logs)
        except BaseException as exc:
            part = self._failure(seq, exc, logs=logs)
        self._send(reply, part)

    def _logs(self, log: TaskLog) -> bytes:
        """A task's records for its result entry: b"" when it logged nothing; a single marker
        when they would take more than a quarter of a frame (the result must still fit)."""
        entries = log.entries()
        if entries is None:
            return b""
        part = logs_part(self.codec, entries)
        if len(part) > self._budget // 4:
            marker = (
                f"... {len(entries)} records dropped: they do not fit in a results frame of "
                f"worker {self.worker_id} (the server's max_payload is {self._budget} bytes)"
            )
            part = logs_part(
                self.codec, (LogEntry(time.time(), "WARNING", DROPPED_LOGGER, marker),)
            )
        return part

    async def _execute(
        self,
        run_id: str,
        reply: str,
        seq: int,
        name: str,
        func: Any,
        is_async: bool,
        args: Any,
        kwargs: Any,
        timeout: Any,
        call: Any,
        log: TaskLog | None = None,
    ) -> bool:
        """A task that needs the loop: it suspended when stepped (`call` continues it), is
        blocking (a thread), has a timeout, takes values by reference or reads a stream.
        True when it ran to its end without raising."""
        receivers: list[Any] = []
        try:
            if call is None:
                args = [await self._resolve(a, run_id, receivers) for a in args]
                kwargs = {k: await self._resolve(v, run_id, receivers) for k, v in kwargs.items()}
                if is_async:
                    call = func(*args, **kwargs)
                else:
                    loop = asyncio.get_running_loop()
                    partial = functools.partial(func, *args, **kwargs)
                    if log is not None:  # its records find their TaskLog in the thread
                        partial = functools.partial(contextvars.copy_context().run, partial)
                    call = loop.run_in_executor(self._threads, partial)
            if timeout is None:
                value = await call
            else:
                try:
                    value = await asyncio.wait_for(call, timeout)
                except TimeoutError:
                    raise TimeoutError(f"task '{name}' timed out after {timeout} s") from None
        except asyncio.CancelledError:
            if inspect.iscoroutine(call):
                call.close()  # cancelled before it started: no "never awaited" warning
            self._send(reply, self._cancelled(seq, name, log))
            return False
        except BaseException as exc:  # every failure becomes a result
            self._send(reply, self._failure(seq, exc, log))
            return False
        else:
            self._finish(run_id, reply, seq, value, log)
            return True
        finally:
            for receiver in receivers:
                await receiver.close()  # its producer stops waiting for us

    async def _resolve(self, value: Any, run_id: str, receivers: list[Any]) -> Any:
        if isinstance(value, ValueRef):
            assert self._values is not None
            value = await self._values.get(value)
        if isinstance(value, StreamRef):
            value = self._link(run_id).receiver(value)
            if isinstance(value, StreamReceiver):
                receivers.append(value)
        return value

    def _link(self, run_id: str) -> StreamLink:
        broker = self.broker
        return StreamLink(
            self._nc, self.codec, self._values, broker.heartbeat_interval, broker.prefix, run_id,
            broker.progress_timeout,
        )  # fmt: skip

    async def _produce(self, run_id: str, func: Any, stream: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a stream producer: its items to each live consumer's route, and back as the
        task's result when the engine asked to keep them."""
        keep, routes, *keys = stream if stream is not None else (True, [])
        senders = [self._link(run_id).sender(route) for route in routes]
        return await pump(func(*args, **kwargs), senders, keep, keys[0] if keys else None)

    # -- outgoing results, batched --------------------------------------------------------------

    def _send(self, reply: str, part: bytes) -> None:
        """Queue an encoded result entry for the next results frame to `reply`."""
        self._outbox.setdefault(reply, []).append(part)
        self._schedule_flush()

    def _failure(
        self, seq: int, exc: BaseException, log: TaskLog | None = None, logs: bytes = b""
    ) -> bytes:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        failure = Failure(type(exc).__name__, _cut(str(exc)), _cut(text))
        if log is not None:
            logs = self._logs(log)
        return failure_part(self.codec, seq, failure, logs)

    def _cancelled(self, seq: int, name: str, log: TaskLog | None = None) -> bytes:
        failure = Failure("CancelledError", f"task '{name}' was cancelled", "")
        return failure_part(self.codec, seq, failure, b"" if log is None else self._logs(log))

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """One frame per reply subject with the claims and results gathered since the last
        (more when they would exceed the server's max_payload; the claims go in the first)."""
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        claims, self._claims = self._claims, {}
        budget = self._budget
        frames = []
        for reply in {**claims, **outbox}:
            seqs = claims.get(reply, [])
            for parts in _chunks(outbox.get(reply, []), budget - 10 * len(seqs)):
                frames.append((reply, encode_results(self.codec, self.worker_id, seqs, parts)))
                seqs = []
        if not frames or publish_frames(self._nc, frames):
            return  # written to the socket at once (wire.py)
        for reply, frame in frames:
            self._publish(reply, frame)

    def _publish(self, subject: str, frame: bytes) -> None:
        try:
            pending = publish_now(self._nc, subject, frame)
        except Exception as exc:
            # as a spawned publish would: the engine redelivers what it does not hear about
            # (a reply subject's last token is its run's secret: not for the log)
            where = subject.rsplit(".", 1)[0] + ".*"
            log.warning("could not send a frame to %s: %s: %s", where, type(exc).__name__, exc)
            return
        if pending is not None:
            self._background.add(pending)
            pending.add_done_callback(self._background.discard)


_REFS = (ValueRef, StreamRef)


def _has_refs(args: list[Any], kwargs: dict[str, Any], kinds: tuple[type, ...] = _REFS) -> bool:
    for value in args:
        if type(value) in kinds:
            return True
    if kwargs:
        for value in kwargs.values():
            if type(value) in kinds:
                return True
    return False


def _cut(text: str) -> str:
    if len(text) <= FAILURE_TEXT_LIMIT:
        return text
    half = FAILURE_TEXT_LIMIT // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def _chunks(parts: list[bytes], budget: int) -> list[list[bytes]]:
    """`parts` in runs of at most `budget` bytes (a single larger part alone); always one run,
    maybe empty, so that claims without results still leave."""
    if sum(map(len, parts)) <= budget:
        return [parts]
    chunks: list[list[bytes]] = [[]]
    size = 0
    for part in parts:
        if chunks[-1] and size + len(part) > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(part)
        size += len(part)
    return chunks
