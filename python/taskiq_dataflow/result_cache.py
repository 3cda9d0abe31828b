"""Per-task result caching keyed by a digest of the task's inputs (SQLite).

`pipeline_task(cache=True, min_ttl=..., max_ttl=...)` with
`ExecutionEngine(cache=ResultCache(path))`: a result younger than `min_ttl` seconds is reused;
one older than `max_ttl` is recomputed; in between, the chance of recomputing rises linearly
with age, so a popular entry is refreshed before it expires rather than by a stampede after.
TTLs are seconds or `datetime.timedelta`s (lythonic counts in days: `timedelta(days=0.5)` says
which without a conversion). Values keep their types (msgpack with the cluster codec's extension
types). Hits show up as `StepCompleted(cached=True)`.
"""

from __future__ import annotations

import hashlib
import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from .codec import DEFAULT_CODEC, Codec
from .errors import EncodeError
from .transports.base import Job


class ResultCache:
    def __init__(
        self,
        path: str | Path = ":memory:",
        codec: Codec | None = None,
        clock: Callable[[], float] = time.time,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.path = str(path)
        self.codec = codec or DEFAULT_CODEC
        self._clock, self._chance = clock, chance
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results ("
            " task TEXT NOT NULL, digest TEXT NOT NULL, value BLOB NOT NULL,"
            " stored_at REAL NOT NULL, PRIMARY KEY (task, digest))"
        )
        self.hits = self.misses = self.refreshes = 0

    def key(self, job: Job) -> tuple[str, str] | None:
        """(task identity, digest of its arguments); None when the arguments cannot be encoded."""
        task = getattr(job.task, "task_name", None) or _qualified(job.func)
        try:
            encoded = self.codec.packb([list(job.args), sorted(job.kwargs.items())])
        except EncodeError:
            return None
        return task, hashlib.blake2b(encoded, digest_size=20).hexdigest()

    def lookup(
        self,
        job: Job,
        min_ttl: float | timedelta | None = None,
        max_ttl: float | timedelta | None = None,
    ) -> tuple[bool, Any]:
        min_ttl, max_ttl = ttl_seconds(min_ttl, "min_ttl"), ttl_seconds(max_ttl, "max_ttl")
        key = self.key(job)
        if key is None:
            return False, None
        with self._lock:
            row = self._db.execute(
                "SELECT value, stored_at FROM results WHERE task = ? AND digest = ?", key
            ).fetchone()
        if row is None:
            self.misses += 1
            return False, None
        age = self._clock() - row[1]
        high = math.inf if max_ttl is None else max_ttl
        low = high if min_ttl is None else min(min_ttl, high)
        if age >= high or (age >= low and self._chance() < (age - low) / (high - low)):
            self.refreshes += 1
            return False, None
        self.hits += 1
        return True, self.codec.unpackb(row[0])

    def store(self, job: Job, value: Any) -> None:
        key = self.key(job)
        if key is None:
            return
        try:
            encoded = self.codec.packb(value)
        except EncodeError:
            return  # an unencodable result is simply not cached
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results (task, digest, value, stored_at) VALUES (?,?,?,?)",
                (*key, encoded, self._clock()),
            )

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM results")

    def close(self) -> None:
        self._db.close()


def ttl_seconds(ttl: float | timedelta | None, what: str) -> float | None:
    """A TTL in seconds: a number of seconds or a timedelta."""
    if ttl is None or type(ttl) in (float, int):
        return ttl  # type: ignore[return-value]
    if isinstance(ttl, timedelta):
        return ttl.total_seconds()
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        return float(ttl)
    raise TypeError(
        f"{what} must be a number of seconds or a datetime.timedelta, got {type(ttl).__name__}"
    )


def _qualified(func: Any) -> str:
    return f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"
