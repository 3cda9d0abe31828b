"""A cluster worker: serves a pool's task frames with the tasks its broker module registered.

Each worker takes task frames from its pool's queue group, claims them (so the engine knows who
holds what), runs them with at most `concurrency` at once (blocking functions in threads), and
sends results back in batches. It heart-beats while alive. An unknown task name or a malformed
frame gets an error result, never a crash.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import os
import socket
import traceback
import uuid
from typing import Any

from ..dependencies import with_dependencies
from .broker import DataflowNatsBroker
from .protocol import (
    HEARTBEAT,
    RESULTS,
    TASKS,
    EncodeError,
    Packed,
    ProtocolError,
    ValueRef,
)
from .values import ValueStore

log = logging.getLogger("taskiq_dataflow.worker")


class _Undecodable(ValueError):
    """A task entry whose arguments this worker cannot decode (e.g. an unknown extension)."""


class Worker:
    def __init__(
        self,
        broker: DataflowNatsBroker,
        pool: str | None = None,
        concurrency: int = 64,
        worker_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.pool = pool or broker.pool
        self.concurrency = concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.codec = broker.codec
        self._slots = asyncio.Semaphore(concurrency)
        self._threads = concurrent.futures.ThreadPoolExecutor(
            concurrency, thread_name_prefix="dataflow-worker"
        )
        self._outbox: dict[str, list[list[Any]]] = {}
        self._claims: dict[str, list[int]] = {}
        self._flush_scheduled = False
        self._running: dict[tuple[str, int], asyncio.Task[Any]] = {}
        self._stop = asyncio.Event()
        self._nc: Any = None
        self._values: ValueStore | None = None
        self._background: set[asyncio.Future[Any]] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        broker = self.broker
        self._nc = await broker.connect_checked(
            f"dataflow-worker-{self.worker_id}", broker.progress_timeout
        )
        self._values = ValueStore(
            self._nc, broker.object_store_bucket, broker.large_value_threshold, self.codec
        )
        sub = await self._nc.subscribe(
            broker.tasks_subject(self.pool), queue=broker.queue_group(self.pool), cb=self._on_tasks
        )
        cancel_sub = await self._nc.subscribe(f"{broker.prefix}.cancel.*", cb=self._on_cancel)
        await self._nc.flush()
        beat = asyncio.ensure_future(self._heartbeat())
        log.info("worker %s serving pool %r", self.worker_id, self.pool)
        if ready is not None:
            ready.set()
        try:
            await self._stop.wait()
        finally:
            beat.cancel()
            await sub.unsubscribe()
            await cancel_sub.unsubscribe()
            for task in list(self._running.values()):
                task.cancel()
            self._flush()
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._threads.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        self._stop.set()

    async def _heartbeat(self) -> None:
        subject = self.broker.heartbeat_subject
        while True:
            frame = self.codec.frame(
                HEARTBEAT, w=self.worker_id, pool=self.pool, n=len(self._running)
            )
            with contextlib.suppress(Exception):
                await self._nc.publish(subject, frame)
            await asyncio.sleep(self.broker.heartbeat_interval)

    # -- incoming frames ------------------------------------------------------------------------

    async def _on_tasks(self, msg: Any) -> None:
        try:
            # entries stay encoded: one that cannot be decoded fails alone, with its seq
            frame = self.codec.read_frame(msg.data, lazy=True)
            if frame["t"] != TASKS:
                raise ProtocolError(f"expected a '{TASKS}' frame, got '{frame['t']}'")
            run_id, reply, tasks = frame["run"], frame["reply"], frame["tasks"]
            if not (isinstance(tasks, list) and isinstance(reply, str) and isinstance(run_id, str)):
                raise ProtocolError(
                    "a tasks frame needs 'run' (str), 'reply' (str), 'tasks' (list)"
                )
        except Exception as exc:
            self._reject(msg, exc)
            return
        seqs = []
        for item in tasks:
            try:
                seq, body = item
                if isinstance(body, Packed):
                    try:
                        body = self.codec.unpackb(body.data)
                    except Exception as exc:
                        raise _Undecodable(f"cannot decode the task: {exc}") from None
                name, args, kwargs, timeout = body
                # seq keys _running: an unhashable one would abort the rest of the frame
                if not (
                    type(seq) is int
                    and isinstance(name, str)
                    and isinstance(args, list)
                    and isinstance(kwargs, dict)
                ):
                    raise TypeError("expected [seq, [name, args, kwargs, timeout]]")
            except Exception as exc:
                seq = item[0] if isinstance(item, list) and item and type(item[0]) is int else None
                what = "" if isinstance(exc, _Undecodable) else "got a malformed task entry: "
                message = f"worker {self.worker_id} {what}{exc}"
                self._send(reply, [seq, False, ["ProtocolError", message, ""]])
                continue
            seqs.append(seq)
            task = asyncio.ensure_future(
                self._execute(run_id, reply, seq, name, args, kwargs, timeout)
            )
            self._running[(run_id, seq)] = task
            task.add_done_callback(lambda _, key=(run_id, seq): self._running.pop(key, None))
        self._claims.setdefault(reply, []).extend(seqs)
        self._schedule_flush()

    def _reject(self, msg: Any, exc: BaseException) -> None:
        """A frame we cannot read: answer on its reply subject if it has one, else log it."""
        reply = msg.reply or _peek_reply(msg.data)
        log.warning("rejected a frame on %s: %s", msg.subject, exc)
        if reply:
            error = ["ProtocolError", f"worker {self.worker_id} rejected a frame: {exc}", ""]
            frame = self.codec.frame(RESULTS, w=self.worker_id, results=[[None, False, error]])
            self._spawn(self._nc.publish(reply, frame))

    def _spawn(self, coro: Any) -> None:
        fut = asyncio.ensure_future(coro)
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    async def _on_cancel(self, msg: Any) -> None:
        run_id = msg.subject.rsplit(".", 1)[-1]
        for (run, _), task in list(self._running.items()):
            if run == run_id:
                task.cancel()

    # -- running tasks --------------------------------------------------------------------------

    async def _execute(
        self, run_id: str, reply: str, seq: int, name: str, args: Any, kwargs: Any, timeout: Any
    ) -> None:
        async with self._slots:
            try:
                task = self.broker.find_task(name)
                if task is None:
                    raise LookupError(
                        f"worker {self.worker_id} (pool {self.pool!r}) has no task named {name!r}; "
                        "the worker's module must register it with @broker.task"
                    )
                args = [await self._resolve(a) for a in args]
                kwargs = {k: await self._resolve(v) for k, v in kwargs.items()}
                func = with_dependencies(task.original_func, self.broker)
                value = await self._call(func, args, kwargs, timeout, name)
                result = [seq, True, await self._shrink(run_id, seq, value)]
            except asyncio.CancelledError:
                result = [seq, False, ["CancelledError", f"task '{name}' was cancelled", ""]]
            except BaseException as exc:  # every failure becomes a result
                text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                result = [seq, False, [type(exc).__name__, str(exc), text]]
        self._send(reply, result)

    async def _call(
        self, func: Any, args: list[Any], kwargs: dict[str, Any], timeout: Any, name: str
    ) -> Any:
        if inspect.iscoroutinefunction(func):
            call = func(*args, **kwargs)
        else:
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(self._threads, functools.partial(func, *args, **kwargs))
        if timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"task '{name}' timed out after {timeout} s") from None

    async def _resolve(self, value: Any) -> Any:
        if isinstance(value, ValueRef):
            assert self._values is not None
            return await self._values.get(value)
        return value

    async def _shrink(self, run_id: str, seq: int, value: Any) -> Any:
        """The value itself, or a reference when its encoding is above the size threshold."""
        try:
            encoded = self.codec.packb(value)
        except EncodeError as exc:
            raise EncodeError(f"the task's return value cannot be sent: {exc}") from None
        assert self._values is not None
        if len(encoded) > self._values.threshold:
            return await self._values.put(f"{run_id}.{seq}.{uuid.uuid4().hex[:8]}", encoded)
        return Packed(encoded)

    # -- outgoing results, batched --------------------------------------------------------------

    def _send(self, reply: str, result: list[Any]) -> None:
        self._outbox.setdefault(reply, []).append(result)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """One frame per reply subject with the claims and results gathered since the last."""
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        claims, self._claims = self._claims, {}
        for reply in {**claims, **outbox}:
            frame = self.codec.frame(
                RESULTS,
                w=self.worker_id,
                claims=claims.get(reply, []),
                results=outbox.get(reply, []),
            )
            self._spawn(self._nc.publish(reply, frame))


def _peek_reply(data: bytes) -> str | None:
    """The reply subject of a frame that failed validation, when it can still be read."""
    import msgpack

    with contextlib.suppress(Exception):
        frame = msgpack.unpackb(data, raw=False, strict_map_key=False)
        reply = frame.get("reply") if isinstance(frame, dict) else None
        return reply if isinstance(reply, str) else None
    return None
