"""Placement: where each task runs (this process, or which pool of the cluster), decided once.

The run asks its transport's Router once per distinct task (and once per node that has its own
register_task(..., local=, pool=) settings); the answer rides in `Job.place`, so transports
and the stream wiring read it instead of deciding again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .streams import is_producer, stream_params
from .task import get_spec, original_function


class Placement(NamedTuple):
    local: bool  # runs in the engine's process
    name: str | None  # the name workers know it by (None: a plain function, it cannot leave)
    pool: str  # the worker pool ("" when local)


class Router:
    """Resolve placement for one transport.

    `remote`: the transport can run tasks in other processes at all. `streams_travel`: it
    carries stream items between processes, so a stream task registered on the broker may
    leave. `default_pool`: the pool of a task that names none."""

    __slots__ = ("_cache", "default_pool", "remote", "streams_travel")

    def __init__(self, remote: bool, streams_travel: bool = False, default_pool: str = "") -> None:
        self.remote, self.streams_travel, self.default_pool = remote, streams_travel, default_pool
        self._cache: dict[int, Placement] = {}

    @classmethod
    def in_process(cls) -> Router:
        return cls(remote=False)

    def place(self, task: Any, where: tuple[bool | None, str | None] | None = None) -> Placement:
        """Where `task` runs; `where` is (local, pool) given to register_task for one node."""
        found = self._cache.get(id(task))
        if found is None:
            found = self._cache[id(task)] = self._resolve(task)
        if where is None:
            return found
        local, own_pool = where
        here = found.local if local is None else bool(local) or not self.remote
        pool = "" if here else (own_pool or found.pool or self._pool_of(task))
        return Placement(here, found.name, pool)

    def _resolve(self, task: Any) -> Placement:
        name = getattr(task, "task_name", None)
        name = name if isinstance(name, str) else None
        if not self.remote or runs_in_engine(task, self.streams_travel):
            return Placement(True, name, "")
        return Placement(False, name, self._pool_of(task))

    def _pool_of(self, task: Any) -> str:
        spec = get_spec(task)
        return (spec.pool if spec is not None and spec.pool else None) or self.default_pool


def runs_in_engine(task: Any, streams_travel: bool = False) -> bool:
    """Whether a remote transport must still run `task` in the engine's process: tasks declared
    `local=True` (control nodes such as a map over a sub-flow), and stream producers and
    consumers unless the transport carries stream items between processes (`streams_travel`)
    and the task is one its workers can run (registered on the broker)."""
    spec = get_spec(task)
    if spec is not None and spec.local:
        return True
    if streams_travel and isinstance(getattr(task, "task_name", None), str):
        return False
    if spec is not None and spec.streams:
        return True
    func = original_function(task)
    return is_producer(func) or bool(stream_params(func))
