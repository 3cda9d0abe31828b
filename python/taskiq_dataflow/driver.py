"""The thin async driver of one run: it owns the run's one completion queue (a Sink) and
carries out what the pure RunState asks for, and nothing else decides anything here.

    state.start() -> instructions
    loop: wait on the sink; feed control events (retry due) and the batch of completions to
          the state; carry out the instructions it returns (emit, look up, dispatch, retry at,
          stop, requeue, store); until the state says Finish
    then: compensate a failed run (one job at a time through the same transport and sink),
          materialize the outputs, emit RunFinished, return or raise
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from .errors import CompensationError
from .events import EventBus, RunFinished, RunStarted, StepCompensated, TaskError
from .run_state import (
    Deliver,
    Dispatch,
    Emit,
    Finish,
    Instruction,
    LookUp,
    Requeue,
    RetryAt,
    RetryDue,
    RunState,
    StepInPlace,
    StepResult,
    Stop,
    Store,
    WorkerLost,
)
from .slots import SharedSlots
from .streams import STREAM_ITEMS
from .transports.base import Completion, Job, Sink, Transport

if TYPE_CHECKING:
    from .metrics.engine import RunMeter

# Yield to the event loop at least this often while every batch is followed by another at
# once (in-process tasks that complete without suspending), so other coroutines still run.
EAGER_YIELD_EVERY = 256

# this process's id (Driver.pid, for growth.py's check from a forked pool's child), kept
# instead of a getpid system call per run
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


class Driver:
    def __init__(
        self,
        state: RunState,
        transport: Transport,
        bus: EventBus,
        cache: Any = None,
        step_sink: Callable[[StepResult], None] | None = None,
        parent: str | None = None,
        slots: SharedSlots | None = None,
        limit: int | None = None,
    ) -> None:
        self.state, self.transport, self.bus, self.cache = state, transport, bus, cache
        self.step_sink, self.parent = step_sink, parent
        # the engine's slots shared with its other runs, and this run's own bound within them
        self.slots, self.limit = slots, limit
        # the sink a transport made for the run (most are made per run), else one of its own
        sink = transport.sink
        if sink.taken:
            sink = Sink()
            transport.attach(sink)
        sink.taken = True
        self.sink = sink
        # the engine's metrics for this run (metrics.engine.RunMeter), None when it has none:
        # then nothing is counted, per batch or per task
        self.meter: RunMeter | None = None
        self.stats: dict[str, int] = {}
        # the loop it runs on and its process, for a blocking task that adds tasks from its
        # thread (growth.py); a process pool's forked worker inherits a copy of both
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid = 0
        self._gc: contextlib.ExitStack | None = None  # relaxed_gc, once the run is large
        self._timers: list[asyncio.TimerHandle] = []
        self._step: list[int] | None = None  # nodes to step in place (StepInPlace)

    def cancel(self) -> None:
        """Stop dispatching, cancel what is in flight; the run ends with ExecutionCancelled."""
        self.state.cancel()
        self.transport.cancel()
        self.sink.wake()

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> Coroutine[Any, Any, dict[str, Any]]:
        # not a coroutine of its own around _run: a frame less per run
        return self._run() if self.meter is None else self._metered()

    async def _metered(self) -> dict[str, Any]:
        assert self.meter is not None
        self.meter.begun()
        token = STREAM_ITEMS.set(self.meter.stream_item)  # items of producers run here
        try:
            return await self._run()
        finally:
            STREAM_ITEMS.reset(token)
            self.meter.ended(self.state.status or "failed", self.transport.stats())

    async def _run(self) -> dict[str, Any]:
        state, transport, bus = self.state, self.transport, self.bus
        started_at = time.perf_counter()
        produced: dict[str, Any] = {}
        compensation: list[TaskError] = []
        self.loop, self.pid = asyncio.get_running_loop(), _pid[0]
        await transport.startup()
        state.link = transport.stream_link()
        # a meter counts each task as it starts: through kick
        state.in_place = self.meter is None and transport.steps_in_place()
        # fewer GC passes in a large run, or once tasks added to it make it one (_loop)
        if len(state.tasks) >= RELAX_GC_AT:
            self._relax()
        try:
            if bus:
                await bus.emit(self._started())
            await self._loop()
            if state.status == "failed":
                transport.cancel()
                compensation = await self._compensate()
            if state.status != "cancelled":
                produced = await transport.materialize(state.produced())
        except BaseException as exc:
            state.status = "failed"
            self.stats = transport.stats()
            if bus:
                elapsed = time.perf_counter() - started_at
                counts = state.scheduler.counts()
                await bus.emit(
                    RunFinished(state.run_id, "failed", counts, elapsed, exc, self.stats)
                )
            raise
        finally:
            if self.slots is not None:
                self.slots.leave(self)
            if self._gc is not None:
                self._gc.close()
            for timer in self._timers:
                timer.cancel()
            if state.status != "succeeded":
                transport.cancel()
            await transport.shutdown()
        return await self._finish(produced, compensation, started_at)

    def _started(self) -> RunStarted:
        state = self.state
        restored = {k: v for outs in state.restored.values() for k, v in outs.items()}
        return RunStarted(
            state.run_id, len(state.tasks), tuple(state.inputs), state.inputs,
            len(state.restored), self.parent, restored,
        )  # fmt: skip

    async def _finish(
        self, produced: dict[str, Any], compensation: list[TaskError], started_at: float
    ) -> dict[str, Any]:
        state = self.state
        self.stats = self.transport.stats()
        error = state.error(produced)
        if error is not None and compensation:
            error.compensation_errors = compensation  # type: ignore[attr-defined]
            error.add_note(str(CompensationError(compensation)))
        if self.bus:
            elapsed = time.perf_counter() - started_at
            status = state.status or "succeeded"
            counts = state.scheduler.counts()
            await self.bus.emit(
                RunFinished(state.run_id, status, counts, elapsed, error, self.stats)
            )
        if error is not None:
            raise error
        return produced

    async def _loop(self) -> None:
        state, sink, carry_out, slots = self.state, self.sink, self._carry_out, self.slots
        transport = self.transport
        if slots is None:
            instructions = state.start()
            if len(instructions) == 1 and type(instructions[0]) is StepInPlace:
                self._step = instructions[0].nodes  # the hot path
            else:
                await carry_out(instructions)
        elif not slots.drivers:
            # alone: all the slots are its own before it starts (no SlotsGranted turn)
            slots.join(self)
            await carry_out(state.start())
        else:
            await carry_out(state.start())  # with shared slots: none yet, what is ready waits
            if slots is not None:
                slots.join(self)  # grants this run its share (SlotsGranted through the sink)
        eager = 0
        while state.status is None:
            slots = self.slots  # a run bounded on its own gets slots at its first secede
            if self._step is not None and not (sink.done or sink.control):
                # what the last batch made ready, stepped in place, batch after batch while
                # each makes only more of that (a completion or an event that came meanwhile
                # goes first: a failure stops a fail_fast run at once)
                nodes, self._step = self._step, None
                while True:
                    eager += 1
                    if eager % EAGER_YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                        if state.status is not None:
                            break
                    slots = self.slots
                    done, values, rest = transport.step_in_place(state, nodes)
                    if slots is not None and slots.seceded:
                        # a task that seceded in its first step and returned in it leaves its
                        # extra capacity: recorded as a batch, which slots.taking looks at
                        for node, value in zip(done, values, strict=True):
                            sink.done.append(Completion(node, 1, True, value))
                        done, values = [], []
                    instructions = state.stepped(nodes, done, values, rest)
                    if slots is not None and len(slots.drivers) > 1:
                        slots.rebalance_soon()
                    if len(instructions) != 1 or type(instructions[0]) is not StepInPlace:
                        await carry_out(instructions)
                        break
                    nodes = instructions[0].nodes  # the hot path
                    if sink.done or sink.control:
                        self._step = nodes
                        break
                continue
            if sink.done or sink.control:
                eager += 1
                if eager % EAGER_YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            else:
                eager = 0
                await sink.wait()
            if sink.fatal is not None:
                raise sink.fatal
            if sink.control:
                control, sink.control = sink.control, []
                if self._gc is None and len(state.tasks) >= RELAX_GC_AT:
                    # tasks added made it a large run: collect as for one that large from the
                    # start, before the added tasks are dispatched
                    self._relax()
                for event in control:
                    # the jobs of a lost worker go again: a redelivery, not a new start
                    await carry_out(state.handle(event), type(event) is not WorkerLost)
            after = False
            if sink.done and state.status is None:
                batch = sink.take()
                if slots is not None and slots.seceded:
                    after = slots.taking(self, batch)  # tasks seceded or rejoining (slots.py)
                if self.meter is None:
                    instructions = state.completed(batch)
                    if len(instructions) == 1 and type(instructions[0]) is StepInPlace:
                        self._stepping(instructions[0].nodes)  # the hot path
                    elif len(instructions) == 1 and type(instructions[0]) is Dispatch:
                        transport.kick(instructions[0].jobs)  # the hot path, not awaited
                    else:
                        await carry_out(instructions)
                else:
                    seen = self.meter.before(batch)
                    instructions = state.completed(batch)
                    self.meter.after(seen)
                    await carry_out(instructions)
            if slots is not None:
                if after:
                    slots.rebalance()  # a rejoining task gets the slots this batch freed first
                elif len(slots.drivers) > 1:
                    # slots this batch freed may belong to another run now: once per loop
                    # iteration for all the runs' batches, not once per batch (O(runs) each)
                    slots.rebalance_soon()

    # -- instructions ---------------------------------------------------------------------------

    def _relax(self) -> None:
        self._gc = contextlib.ExitStack()
        self._gc.enter_context(relaxed_gc(len(self.state.tasks)))

    def _stepping(self, nodes: list[int]) -> None:
        """Step these in place at the loop's next turn (the loop does, before it waits)."""
        self._step = nodes if self._step is None else self._step + nodes

    async def _carry_out(self, instructions: list[Instruction], starts: bool = True) -> None:
        for ins in instructions:
            if type(ins) is StepInPlace:
                self._stepping(ins.nodes)
            elif type(ins) is Dispatch:
                if self.state.status is None:  # a listener may have cancelled the run
                    self.transport.kick(ins.jobs)
                    if self.meter is not None and starts:
                        self.meter.dispatched(ins.jobs)
            elif type(ins) is Emit:
                for event in ins.events:
                    await self.bus.emit(event)
            elif type(ins) is not Finish:  # on Finish the loop ends (it reads state.status)
                self._carry_out_rare(ins)

    def _carry_out_rare(self, ins: Instruction) -> None:
        handler = _RARE.get(type(ins))
        if handler is None:
            raise TypeError(f"the driver cannot carry out {type(ins).__name__}: {ins!r}")
        handler(self, ins)

    def _deliver(self, ins: Deliver) -> None:
        assert self.step_sink is not None
        for step in ins.steps:
            self.step_sink(step)

    def _look_up(self, ins: LookUp) -> None:
        if self.state.status is None:
            misses = self._serve_from_cache(ins.jobs, ins.ttls)
            self.transport.kick(misses)
            if self.meter is not None:
                self.meter.dispatched(misses)

    def _retry_at(self, ins: RetryAt) -> None:
        due = RetryDue(ins.node, ins.attempt)
        self._timers.append(asyncio.get_running_loop().call_later(ins.delay, self.sink.signal, due))

    def _stop(self, ins: Stop) -> None:
        for node in ins.nodes:
            self.transport.stop(node)

    def _requeue(self, ins: Requeue) -> None:
        self.sink.done.extend(ins.completions)
        self.sink.wake()

    def _store(self, ins: Store) -> None:
        for job, value in ins.entries:
            self.cache.store(job, value)

    def _serve_from_cache(self, jobs: list[Job], ttls: list[Any]) -> list[Job]:
        """Answer cached tasks at once (their completions go through the sink like any
        other); returns the misses."""
        todo = []
        for job, ttl in zip(jobs, ttls, strict=True):
            hit, value = self.cache.lookup(job, *ttl)
            if hit:
                self.sink.push(Completion(job.node, job.attempt, True, value, cached=True))
            else:
                todo.append(job)
        return todo

    # -- compensation ---------------------------------------------------------------------------

    async def _compensate(self) -> list[TaskError]:
        """Undo every completed task that has a compensation (RunState.compensations gives
        the order); returns the compensations that failed.

        A compensation registered on the broker (`@broker.task`) runs where the broker's tasks
        run (a cluster worker); a plain function runs in the engine's process."""
        failed: list[TaskError] = []
        for job in self.state.compensations():
            done = await self._call(job)
            error = None if done.ok else done.value
            if error is not None:
                failed.append(error)
            if self.bus:
                await self.bus.emit(StepCompensated(self.state.run_id, job.node, job.name, error))
        return failed

    async def _call(self, job: Job) -> Completion:
        """Run one job to its end outside the loop: what else arrives meanwhile (late results
        of the failed run, retries that came due, losses of its jobs) is dropped. The job itself,
        lost with its worker, goes again as the run's own jobs do (RunState.requeue_lost)."""
        sink = self.sink
        self.transport.kick([job])
        while True:
            await sink.wait()
            if sink.fatal is not None:
                raise sink.fatal
            control, sink.control = sink.control, []
            for event in control:
                if type(event) is WorkerLost and any(j is job for j in event.jobs):
                    again, lost = self.state.requeue_lost(event.worker, [job], event.limit)
                    if lost:
                        return lost[0]
                    self.transport.kick(again)
            for c in sink.take():
                if c.node == job.node and c.attempt == job.attempt:
                    return c


# instructions off the hot path (Dispatch and Emit are tested first, inline)
_RARE: dict[type, Callable[[Driver, Any], None]] = {
    Deliver: Driver._deliver,
    LookUp: Driver._look_up,
    RetryAt: Driver._retry_at,
    Stop: Driver._stop,
    Requeue: Driver._requeue,
    Store: Driver._store,
}

RELAX_GC_AT = 10_000  # tasks in a run
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def relaxed_gc(size: int) -> Iterator[None]:
    """Fewer cyclic-GC passes while a large run allocates its per-task objects.

    A run makes a few short-lived tuples per task; with a million-node graph alive, the default
    gen-0 threshold (700) triggers enough collections to double the engine's CPU per task.
    Restored when the last large run in the process ends.
    """
    global _gc_users, _gc_saved
    if size < RELAX_GC_AT:
        yield
        return
    if _gc_users == 0:
        _gc_saved = gc.get_threshold()
        gc.set_threshold(max(_gc_saved[0], 20_000), *_gc_saved[1:])
    _gc_users += 1
    try:
        yield
    finally:
        _gc_users -= 1
        if _gc_users == 0 and _gc_saved is not None:
            gc.set_threshold(*_gc_saved)
