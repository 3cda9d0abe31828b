"""Streams between tasks: an async-generator task yields values into its output key.

A consumer that declares the key as a stream (`pipeline_task(streams=["key"])`, or a parameter
annotated `AsyncIterator[...]` / `Stream[...]`) receives a `Stream` and starts as soon as the
producer starts, reading each value as it is yielded. Every other consumer receives the complete
list when the stream ends. Each streaming consumer reads through a bounded buffer: a producer
that gets `buffer` values ahead waits, so a fast producer cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import inspect
import typing
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from .errors import StreamError as StreamError  # its documented path

T = TypeVar("T")

_END: Any = object()


@dataclass(frozen=True, slots=True)
class StreamRef:
    """A stream argument for another process: the NATS subjects its items and credits travel
    on (cluster/streams.py), or the items themselves when the producer had finished before
    the consumer started (`values`)."""

    key: str
    items: str
    credits: str
    buffer: int
    values: list[Any] | None = None


class Stream(Generic[T]):
    """The values of a stream, in order, each once: `async for value in stream`."""

    def __init__(self, key: str, buffer: int) -> None:
        self.key = key
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=buffer)
        self._failure: BaseException | None = None
        self._abandoned = False
        self.items = 0  # put so far (the dashboard's streams view)
        self.closed = False

    @classmethod
    def of(cls, key: str, values: Iterable[T]) -> Stream[T]:
        """A finished stream over known values (a consumer started after its producer ended)."""
        values = list(values)
        stream: Stream[T] = cls(key, len(values) + 1)
        for value in values:
            stream._queue.put_nowait(value)
        stream._queue.put_nowait(_END)
        stream.items, stream.closed = len(values), True
        return stream

    async def _put(self, value: Any) -> None:
        if not self._abandoned:
            self.items += 1
            await self._queue.put(value)

    async def _close(self, failure: BaseException | None = None) -> None:
        self._failure = failure
        self.closed = True
        if not self._abandoned:
            await self._queue.put(_END)

    @property
    def _gone(self) -> bool:
        """Whether the consumer stopped reading (the producer may stop for it)."""
        return self._abandoned

    def _abandon(self) -> None:
        """The consumer is done (maybe without reading it all): never block the producer."""
        self._abandoned = True
        while not self._queue.empty():
            self._queue.get_nowait()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            value = await self._queue.get()
            if value is _END:
                if self._failure is not None:
                    raise StreamError(
                        f"the producer of stream '{self.key}' failed: {self._failure}"
                    )
                return
            yield value

    async def first(self) -> T:
        async for value in self:
            return value
        raise StreamError(f"stream '{self.key}' ended without a value")

    async def collect(self) -> list[T]:
        return [value async for value in self]


class Watch(Generic[T]):
    """A stream the caller of a run reads as it is produced (`RunHandle.stream(key)`): it is
    bound to the producer's stream when the producer starts (a Stream here, the end of a route
    when the producer runs on a worker); until then iterating it waits. A run that fails or is
    cancelled ends it with a StreamError (its producer may never end it)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._source: Stream[T] | None = None
        self._bound = asyncio.Event()
        self._failure: BaseException | None = None
        self._stopped = asyncio.Event()
        self._listening: Any = None

    def _bind(self, source: Stream[T]) -> None:
        self._source = source
        listen = getattr(source, "listen", None)
        if listen is not None:
            # a remote end listens at once: its producer must not wait for the caller to read
            self._listening = listen()
        self._bound.set()

    def _end(self, failure: BaseException) -> None:
        self._failure = failure
        self._stopped.set()

    def stream(self) -> AsyncIterator[T]:
        """The values, in order, as they are yielded (Datagraph's `result[key].stream()`)."""
        return self._iterate()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            if await self._next(asyncio.ensure_future(self._bound.wait()), stopped) is _END:
                return
            assert self._source is not None
            items = self._source.__aiter__()
            while True:
                item = await self._next(asyncio.ensure_future(items.__anext__()), stopped)
                if item is _END:
                    return
                yield item
        finally:
            stopped.cancel()

    async def _next(self, step: asyncio.Future[Any], stopped: asyncio.Future[Any]) -> Any:
        """What `step` gives, or the run's failure once it ended without it."""
        await asyncio.wait({step, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not step.done():
            step.cancel()
            raise StreamError(f"stream '{self.key}' ended with its run: {self._failure}")
        if type(step.exception()) is StopAsyncIteration:
            return _END
        return step.result()

    async def first(self) -> T:
        async for value in self:
            return value
        raise StreamError(f"stream '{self.key}' ended without a value")

    async def collect(self) -> list[T]:
        return [value async for value in self]


# a caller reads its streams whenever it likes (maybe only after awaiting the run): its end
# never makes the producer wait
WATCH_BUFFER = 2**31 - 1


class StreamItem(NamedTuple):
    """What a generator with several outputs yields: one value for the stream of `key`
    (Datagraph's `IOVal(name=..., value=...)`)."""

    key: str
    value: Any


async def pump(
    items: AsyncIterator[Any],
    sinks: list[Any],
    keep: bool,
    keys: Sequence[str] | None = None,
) -> Any:
    """Run a producer: each item to every sink (a Stream, or a StreamSender to another
    process; each waits while its consumer is `buffer` items behind), and into the list that
    is the output's value when `keep`. A failure ends every sink's stream with it.

    A producer of several output `keys` yields StreamItem(key, value): each value goes to the
    sinks of its key, and the task's value is {key: list} (each None when not kept).

    Once every consumer is gone (ended, failed or stopped reading) and nobody needs the list,
    the producer is stopped at its next item: the generator is closed (its `finally` blocks
    run) and the task completes with None, the value of a stream that was not kept. An endless
    producer would otherwise run, unread, for ever."""
    if keys is not None and len(keys) > 1:
        return await _pump_keys(items, sinks, keep, keys)
    kept: list[Any] = []
    async with _ending(sinks), contextlib.aclosing(items):  # type: ignore[type-var]
        async for item in items:
            if keep:
                kept.append(item)
            for sink in sinks:
                await sink._put(item)
            if not keep and all(sink._gone for sink in sinks):
                break
    return kept if keep else None


@contextlib.asynccontextmanager
async def _ending(sinks: list[Any]) -> AsyncIterator[None]:
    """Close every sink when the producer ends: with its exception when it raised."""
    try:
        yield
    except BaseException as exc:
        for sink in sinks:
            await sink._close(exc)
        raise
    for sink in sinks:
        await sink._close()


async def _pump_keys(
    items: AsyncIterator[Any], sinks: list[Any], keep: bool, keys: Sequence[str]
) -> dict[str, Any]:
    kept: dict[str, list[Any]] = {key: [] for key in keys}
    by_key: dict[str, list[Any]] = {key: [] for key in keys}
    for sink in sinks:
        by_key[_key_of(sink)].append(sink)
    async with _ending(sinks), contextlib.aclosing(items):  # type: ignore[type-var]
        async for item in items:
            if type(item) is not StreamItem or item.key not in kept:
                raise TypeError(
                    f"a generator with outputs {list(keys)} must yield StreamItem(key, "
                    f"value) with one of those keys, got {_short_repr(item)}"
                )
            key, value = item
            if keep:
                kept[key].append(value)
            for sink in by_key[key]:
                await sink._put(value)
            if not keep and all(sink._gone for sink in sinks):
                break
    return kept if keep else dict.fromkeys(keys)


def _key_of(sink: Any) -> str:
    key = getattr(sink, "key", None)  # a Stream; a StreamSender holds its route's StreamRef
    return key if isinstance(key, str) else sink.ref.key


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_stream_annotation(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return origin in (
        Stream,
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
        typing.AsyncIterator,
        typing.AsyncIterable,
    )


def stream_params(func: Any) -> frozenset[str]:
    """Parameters annotated as streams."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = getattr(func, "__annotations__", {})
    return frozenset(
        name for name, hint in hints.items() if name != "return" and is_stream_annotation(hint)
    )


def is_producer(func: Any) -> bool:
    return inspect.isasyncgenfunction(func)
