"""Large values by reference: kept in a JetStream object store instead of passing through frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .protocol import Codec, ValueRef

T = TypeVar("T")
log = logging.getLogger("taskiq_dataflow.nats")

# How long a store operation is tried again while JetStream cannot answer: a cluster that lost
# a server elects new leaders for its streams within seconds, and a value read or written then
# must wait for them rather than fail its task.
UNAVAILABLE_FOR = 30.0


class ValueStore:
    """Stores encoded values above `threshold` bytes; resolves references back to values."""

    def __init__(
        self, nc: Any, bucket: str, threshold: int, codec: Codec, replicas: int | None = None
    ) -> None:
        self._nc = nc
        self.bucket = bucket
        self.replicas = replicas  # None: as many as the cluster allows, at most 3
        self.threshold = threshold
        self._codec = codec
        self._store: Any = None
        self._lock: asyncio.Lock | None = None  # made at the first use (most runs have none)
        # whether the store may hold objects of this run: this side stored or fetched one, or
        # routed a stream between workers, whose large items a worker stores (see StreamLink)
        self.used = False
        self.bytes_put = 0  # encoded bytes through the store, for the metrics
        self.bytes_got = 0

    async def _obs(self) -> Any:
        self.used = True
        if self._store is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._store is None:
                    from nats.js.errors import BucketNotFoundError, NotFoundError

                    js = self._nc.jetstream()
                    try:
                        self._store = await js.object_store(self.bucket)
                    except (BucketNotFoundError, NotFoundError):
                        self._store = await self._create(js)
        return self._store

    async def _create(self, js: Any) -> Any:
        from nats.js.api import ObjectStoreConfig
        from nats.js.errors import BadRequestError

        replicas = self.replicas or min(3, cluster_size(self._nc))
        config = ObjectStoreConfig(bucket=self.bucket, replicas=replicas)
        try:
            return await js.create_object_store(self.bucket, config)
        except BadRequestError as exc:
            # another engine or worker created it a moment earlier
            if "already in use" not in str(exc):
                raise
            return await js.object_store(self.bucket)

    async def _retried(self, op: Callable[[Any], Awaitable[T]], what: str) -> T:
        """`op(store)`, tried again while JetStream is unavailable (no leader for the stream,
        its server lost: timeouts, no responders, 503), for at most UNAVAILABLE_FOR seconds."""
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import ServiceUnavailableError

        deadline = time.monotonic() + UNAVAILABLE_FOR
        delay = 0.1
        while True:
            try:
                return await op(await self._obs())
            except (NatsTimeout, NoRespondersError, ServiceUnavailableError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.info("object store %s: %s %s; trying again", self.bucket, what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def put(self, name: str, encoded: bytes) -> ValueRef:
        await self._retried(lambda obs: obs.put(name, encoded), f"put {name}")
        self.bytes_put += len(encoded)
        return ValueRef(self.bucket, name, len(encoded))

    async def get(self, ref: ValueRef) -> Any:
        result = await self._retried(lambda obs: obs.get(ref.name), f"get {ref.name}")
        self.bytes_got += len(result.data)
        return self._codec.unpackb(result.data)

    async def delete(self, name: str) -> None:
        """Delete one object now that its only reader has it (a stream item)."""
        from nats.js.errors import NotFoundError

        obs = await self._obs()
        with contextlib.suppress(NotFoundError):
            await obs.delete(name)

    async def purge(self, prefix: str) -> int:
        """Delete the objects whose names start with `prefix`; returns how many."""
        from nats.js.errors import NotFoundError

        obs = await self._obs()
        try:
            infos = await obs.list()
        except NotFoundError:  # an empty bucket
            return 0
        names = [i.name for i in infos if i.name.startswith(prefix) and not i.deleted]
        for name in names:
            await obs.delete(name)
        return len(names)

    async def resolve_all(self, values: dict[str, Any]) -> dict[str, Any]:
        """The same mapping with every top-level ValueRef replaced by its value."""
        if ValueRef not in map(type, values.values()):  # in C: most runs get no reference
            return values
        refs = [(k, v) for k, v in values.items() if isinstance(v, ValueRef)]
        if not refs:
            return values
        fetched = await asyncio.gather(*(self.get(v) for _, v in refs))
        return {**values, **{k: value for (k, _), value in zip(refs, fetched, strict=True)}}


def cluster_size(nc: Any) -> int:
    """How many servers the connected server's cluster has, as its INFO advertises them (each
    server's client URL); 1 for a server on its own."""
    info = getattr(nc, "_server_info", None)
    urls = info.get("connect_urls") if isinstance(info, dict) else None
    if not isinstance(urls, list):
        return 1
    return max(1, len({url for url in urls if isinstance(url, str)}))
