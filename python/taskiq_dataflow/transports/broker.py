"""Dispatch through any taskiq broker with `task.kiq(...)`.

Completions are pushed: the transport hooks the broker's result backend so that a result saved
in this process (InMemoryBroker, or a worker running in-process) reaches the engine at once.
For a broker whose workers run elsewhere there is no generic push channel in taskiq, so each task
falls back to taskiq's `wait_result`; the NATS cluster transport pushes results instead.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from taskiq.kicker import AsyncKicker

from ..middlewares import ArgumentParser
from ..router import Router
from ..task import RemoteTask
from .base import Completion, Job, Sink, Transport, task_error
from .local import LocalTransport

_UNSEEN = object()

# result backend -> transports listening to it (several engines may share one broker)
_HOOKED: weakref.WeakKeyDictionary[Any, set[BrokerTransport]] = weakref.WeakKeyDictionary()


def _hook(backend: Any, transport: BrokerTransport) -> None:
    listeners = _HOOKED.get(backend)
    if listeners is None:
        listeners = _HOOKED[backend] = set()
        original = backend.set_result

        async def set_result(task_id: str, result: Any) -> None:
            await original(task_id, result)
            for listener in list(listeners):
                listener._on_result(task_id, result)

        backend.set_result = set_result
    listeners.add(transport)


def refuse_without_results(broker: Any) -> None:
    """A broker whose result backend keeps nothing answers every `wait_result` with None: the
    run would report success without a single real result, so it must not start."""
    from taskiq.result_backends.dummy import DummyResultBackend

    if isinstance(broker.result_backend, DummyResultBackend):
        raise ValueError(
            f"transport='broker' cannot get task results from {type(broker).__name__}: it has "
            "no result backend (taskiq's DummyResultBackend keeps nothing); give it one, e.g. "
            "broker.with_result_backend(RedisAsyncResultBackend(url)) from taskiq-redis, or run "
            "the tasks on a DataflowNatsBroker cluster (transport='nats')"
        )


class BrokerTransport(Transport):
    """Kick each job with `task.kiq`; completions come back through the result backend."""

    def __init__(self, broker: Any, in_process: bool | None = None) -> None:
        super().__init__()
        self.broker = broker
        if in_process is None:
            from taskiq import InMemoryBroker

            in_process = isinstance(broker, InMemoryBroker)
        self.in_process = in_process
        self._pending: dict[str, tuple[Job, asyncio.TimerHandle | None]] = {}
        self._inflight: set[asyncio.Future[Any]] = set()
        self._parsers: dict[Any, Any] = {}  # task -> its ArgumentParser, or None
        # tasks placed here (control nodes such as a map over a sub-flow) run in this process
        self._local = LocalTransport()
        self._local.attach(self.sink)

    def attach(self, sink: Sink) -> None:
        super().attach(sink)
        self._local.attach(sink)

    def log_tasks(self, run_id: str, level: int | None) -> None:
        # only the tasks placed here: a taskiq worker's own logging keeps its records
        super().log_tasks(run_id, level)
        self._local.log_tasks(run_id, level)

    def router(self) -> Router:
        return Router(remote=True)

    async def startup(self) -> None:
        refuse_without_results(self.broker)
        await self._local.startup()
        if self.in_process:
            _hook(self.broker.result_backend, self)

    async def shutdown(self) -> None:
        self.cancel()
        await self._local.shutdown()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        listeners = _HOOKED.get(self.broker.result_backend)
        if listeners is not None:
            listeners.discard(self)

    def kick(self, jobs: list[Job]) -> None:
        for job in jobs:
            if job.place is None or job.place.local:
                self._local.kick([job])
                continue
            if not hasattr(job.task, "kiq") and not isinstance(job.task, RemoteTask):
                exc = TypeError(
                    f"task '{job.name}' is a plain function; the broker transport needs tasks "
                    "decorated with @broker.task (or use transport='local')"
                )
                self.push(Completion(job.node, job.attempt, False, task_error(job.name, exc)))
                continue
            fut = asyncio.ensure_future(self._send(job))
            self._inflight.add(fut)
            fut.add_done_callback(self._inflight.discard)

    async def _send(self, job: Job) -> None:
        try:
            args, kwargs = job.args, job.kwargs
            parse = self._parsers.get(job.task, _UNSEEN)
            if parse is _UNSEEN:
                parse = self._parsers[job.task] = ArgumentParser.of(job.task)
            if parse is not None:
                # taskiq's receiver would log a value it cannot parse and run the task on it:
                # refused here, before it is sent, naming the task and the parameter
                args, kwargs = parse(args, kwargs)
            if isinstance(job.task, RemoteTask):
                # implemented only where the broker's workers run: sent by its name
                kicker: AsyncKicker[Any, Any] = AsyncKicker(job.task.task_name, self.broker, {})
                kicked = await kicker.kiq(*args, **kwargs)
            else:
                kicked = await job.task.kiq(*args, **kwargs)
        except Exception as exc:
            self.push(Completion(job.node, job.attempt, False, task_error(job.name, exc)))
            return
        timer = None
        if job.timeout is not None:
            timer = asyncio.get_running_loop().call_later(
                job.timeout, self._timed_out, kicked.task_id
            )
        self._pending[kicked.task_id] = (job, timer)
        # In-process results cannot arrive before this line: nothing awaited since kiq returned.
        if not self.in_process:
            result = await kicked.wait_result()
            self._on_result(kicked.task_id, result)

    def _timed_out(self, task_id: str) -> None:
        entry = self._pending.pop(task_id, None)
        if entry is not None:
            job = entry[0]
            exc = TimeoutError(f"task '{job.name}' timed out after {job.timeout} s")
            self.push(Completion(job.node, job.attempt, False, task_error(job.name, exc)))

    def _on_result(self, task_id: str, result: Any) -> None:
        entry = self._pending.pop(task_id, None)
        if entry is None:
            return  # another engine's task, or one that timed out
        job, timer = entry
        if timer is not None:
            timer.cancel()
        if result.is_err:
            error = result.error
            if not isinstance(error, BaseException):
                error = RuntimeError(str(error))
            self.push(Completion(job.node, job.attempt, False, task_error(job.name, error)))
        else:
            self.push(Completion(job.node, job.attempt, True, result.return_value))

    def stop(self, node: int) -> bool:
        return self._local.stop(node)  # only the engine's own tasks can be stopped one by one

    def cancel(self) -> None:
        self._local.cancel()
        for fut in list(self._inflight):
            fut.cancel()
        for _, timer in self._pending.values():
            if timer is not None:
                timer.cancel()
        self._pending.clear()
