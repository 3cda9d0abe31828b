"""In-process dispatch: async tasks on the event loop, blocking ones in an executor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import threading
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

from ..errors import TaskArgumentError
from ..middlewares import TaskHooks, is_taskiq_task, task_hooks
from ..router import runs_in_engine
from ..seceding import CURRENT_TASK, STEPPING
from ..task import all_names
from ..task_logs import CURRENT as CURRENT_LOG
from ..task_logs import TaskLog, labels_on, set_fallback
from .base import Completion, Job, Transport, new_job, task_error

if TYPE_CHECKING:
    from ..run_state import RunState

__all__ = ["LocalTransport", "runs_in_engine"]


class LocalTransport(Transport):
    """Runs tasks in this process.

    A coroutine is first stepped directly: a task that finishes without suspending (most cheap
    tasks) completes with no asyncio.Task at all; one that suspends continues as a Task. Blocking
    functions run in a thread pool, or a process pool with `executor="process"`.
    """

    def __init__(
        self,
        executor: str | concurrent.futures.Executor = "thread",
        workers: int | None = None,
    ):
        super().__init__()
        self._executor_spec = executor
        self._workers = workers
        self._executor: concurrent.futures.Executor | None = None
        self._owns_executor = False
        self._tasks: dict[int, asyncio.Future[Any]] = {}
        # per distinct callable: is it async, and the taskiq hooks to run around it
        self._kind: dict[Any, tuple[bool, TaskHooks | None]] = {}
        self._hooks: dict[Any, TaskHooks | None] = {}
        # id(task) -> how step_in_place calls it (_stepper), for the run's tasks: per run
        self._plain: dict[int, tuple[Any, Any, bool]] = {}
        # node -> the TaskLog of its job in flight (only while its run captures or labels)
        self._logs: dict[int, TaskLog] = {}
        # node -> the TaskLog a job stepped in place made at its first record (_task_log)
        self._first: dict[int, TaskLog] = {}
        # node -> its job, of a job that went on as a Task while its run captures lazily
        self._jobs: dict[int, Job] = {}

    async def startup(self) -> None:
        if self._plain:  # a transport given to the engine, reused: ids of another run's tasks
            self._plain = {}

    def _pool(self) -> concurrent.futures.Executor:
        if self._executor is None:
            spec = self._executor_spec
            if isinstance(spec, concurrent.futures.Executor):
                self._executor = spec
            elif spec == "process":
                self._executor = concurrent.futures.ProcessPoolExecutor(self._workers)
                self._owns_executor = True
            elif spec == "thread":
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self._workers, thread_name_prefix="dataflow-task"
                )
                self._owns_executor = True
            else:
                raise ValueError(
                    f"executor must be 'thread', 'process' or an Executor, got {spec!r}"
                )
        return self._executor

    def steps_in_place(self) -> bool:
        # a run that captures or labels its tasks' records needs a TaskLog per task (kick)
        return self.task_logs is None

    def step_in_place(
        self, state: RunState, nodes: list[int]
    ) -> tuple[list[int], list[Any], list[int]]:
        """Each node's plain async task called and stepped once, with no Job nor Completion
        for one that returns without suspending (most cheap tasks): the engine's hottest
        loop, so RunState.job's argument binding is inlined. One that suspends goes on as a
        Task, one that fails ends on the sink; hooks or a blocking function go through kick."""
        tasks, metadata, node_inputs = state.tasks, state.metadata, state.node_inputs
        getitem = state.values.__getitem__
        plain = self._plain
        sink = self.sink
        done: list[int] = []
        returned: list[Any] = []
        rest: list[int] = []
        # while a task is stepped here, STEPPING names it (for secede() and sub-runs); a task
        # may run a whole nested run within its first step, so the outer names come back after
        stepping = STEPPING
        outer_sink, outer_node = stepping.sink, stepping.node
        stepping.sink = sink
        last = None  # nodes of one task often come together: its stepper is looked up once
        func: Any = None
        params: frozenset[str] | None = None
        steps = fast = False
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] | None = None  # None: by position (cheaper than an empty **{})
        try:
            for node in nodes:
                task = tasks[node]
                if task is not last or metadata[node] is not None:
                    found = plain.get(id(task)) if metadata[node] is None else None
                    if found is None:
                        found = self._stepper(state, node, task)
                        if found is None:  # its plan revealed a stream or a cache
                            rest = nodes[nodes.index(node) :]
                            break
                    func, params, steps = found
                    # the common case: stepped, and bound by position with no check per node
                    fast = steps and params is _BY_POSITION
                    last = task if metadata[node] is None else None
                keys = node_inputs[node]
                if not fast:
                    kwargs = None
                    if params.issuperset(keys) if params is not None else all_names(keys):
                        args, kwargs = (), {k: getitem(k) for k in keys}
                    else:
                        args = tuple(map(getitem, keys))
                    if not steps:  # taskiq hooks, or a blocking function
                        stepping.node = None
                        self.kick([self._job(state, node, func, args, kwargs)])
                        continue
                # named until the next node is (no code of the user's runs in between), and
                # also while its function makes the coroutine (a wrapper's code is the task's)
                stepping.node = node
                try:
                    if fast:
                        coro = func(*map(getitem, keys))
                    else:
                        coro = func(*args) if kwargs is None else func(**kwargs)
                    context = copy_context()  # its own, kept if it goes on as a Task
                    yielded = context.run(coro.send, None)
                except StopIteration as stop:
                    done.append(node)
                    returned.append(stop.value)
                    continue
                except BaseException as exc:
                    error = task_error(state.names[node], exc)
                    sink.done.append(Completion(node, 1, False, error))
                    continue
                if fast:  # it suspended: its job holds its arguments (for a retry)
                    args, kwargs = tuple(map(getitem, keys)), None
                job = self._job(state, node, func, args, kwargs)
                self._continue(job, coro, yielded, context, None)
        finally:
            stepping.sink, stepping.node = outer_sink, outer_node
        return done, returned, rest

    def _stepper(self, state: RunState, node: int, task: Any) -> tuple[Any, Any, bool] | None:
        """How step_in_place calls a node's task: (func, its keyword-bindable params, whether
        it is a plain async function stepped here rather than kicked), kept per task of the
        run in `_plain`; None when the node's plan asks the run for the long way."""
        own = state.metadata[node] is not None
        plan = None if own else state.plans.get(id(task))
        if plan is None:
            plan = state.plan(node)
            if not state.plain:
                return None
        func = plan.func
        kind = self._kind.get(func)
        if kind is None:
            kind = self._kind[func] = self._kind_of(func, task)
        # no keyword-bindable parameter: every call is by position (no params check per node)
        params = _BY_POSITION if plan.params is not None and not plan.params else plan.params
        found = (func, params, kind is _PLAIN_ASYNC)
        if not own:
            self._plain[id(task)] = found
        return found

    @staticmethod
    def _job(
        state: RunState, node: int, func: Any, args: Any, kwargs: dict[str, Any] | None
    ) -> Job:
        plan = state.plan(node)
        task, name, place = state.tasks[node], state.names[node], plan.place
        fields = (node, 1, task, func, args, kwargs or {}, name, plan.policy.timeout, None, place)
        return new_job(fields)

    def kick(self, jobs: list[Job]) -> None:
        sink = self.sink
        push = sink.done.append
        # while a task is stepped here, STEPPING names it (for secede() and sub-runs); a task
        # may run a whole nested run within its first step, so the outer names come back after
        stepping = STEPPING
        outer_sink, outer_node = stepping.sink, stepping.node
        stepping.sink = sink
        task_logs = self.task_logs
        # capture only: a task's TaskLog is made at its first record (_task_log); labels
        # (JSON log lines) need one in every task's context
        eager = task_logs is not None and (task_logs[1] is None or labels_on())
        lazy = task_logs is not None and not eager
        first = self._first
        outer_lazy = None
        if lazy:
            outer_lazy = _LAZY.enter(first, task_logs)
            sink.stepper = self
        log = None
        try:
            for job in jobs:
                if eager:
                    assert task_logs is not None
                    log = TaskLog(task_logs[0], job.name, job.attempt, task_logs[1])
                elif lazy:
                    log = None
                func = job.func
                kind = self._kind.get(func)
                if kind is None:
                    kind = self._kind[func] = self._kind_of(func, job.task)
                is_coro, hooks = kind
                args, kwargs = job.args, job.kwargs
                if hooks is not None:
                    # a taskiq task: its broker's middlewares and argument parsing around the
                    # call, as taskiq's receiver runs them (a blocking function still runs in
                    # the pool)
                    if hooks.middlewares:
                        call = func if is_coro else functools.partial(self._in_pool, func)
                        func, is_coro = functools.partial(hooks.run, call), True
                    else:
                        try:
                            args, kwargs = hooks.parse(args, kwargs)
                        except TaskArgumentError as exc:
                            error = task_error(job.name, exc)
                            push(Completion(job.node, job.attempt, False, error))
                            continue
                if not is_coro:
                    if lazy:  # in its thread, CURRENT_LOG holds it
                        assert task_logs is not None
                        log = TaskLog(task_logs[0], job.name, job.attempt, task_logs[1])
                    self._run_blocking(job, args, kwargs, log)
                    continue
                try:
                    coro = func(*args, **kwargs)
                    # each task gets its own context, as an asyncio.Task would, and keeps it
                    # when it continues as a Task (a ContextVar token set in the first step
                    # stays valid)
                    context = contextvars.copy_context()
                    if log is not None:
                        context.run(CURRENT_LOG.set, log)
                    stepping.node = job.node
                    if lazy:
                        _LAZY.job = job
                    try:
                        yielded = context.run(coro.send, None)
                    finally:
                        stepping.node = None
                        if lazy:
                            _LAZY.job = None
                            log = first.pop(job.node, None) if first else None
                except StopIteration as stop:
                    if log is None:
                        push(Completion(job.node, job.attempt, True, stop.value))
                    else:
                        logs = log.entries()
                        push(Completion(job.node, job.attempt, True, stop.value, logs=logs))
                    continue
                except BaseException as exc:
                    error = task_error(job.name, exc)
                    logs = None if log is None else log.entries()
                    push(Completion(job.node, job.attempt, False, error, logs=logs))
                    continue
                if lazy:  # it goes on as a Task: found by its CURRENT_TASK (_task_log)
                    self._jobs[job.node] = job
                self._continue(job, coro, yielded, context, log)
        finally:
            stepping.sink, stepping.node = outer_sink, outer_node
            if outer_lazy is not None:
                _LAZY.leave(outer_lazy)
        if sink.done:
            sink.wake()

    def _continue(
        self,
        job: Job,
        coro: Any,
        yielded: Any,
        context: contextvars.Context,
        log: TaskLog | None,
    ) -> None:
        context.run(CURRENT_TASK.set, (self.sink, job.node))  # it goes on in the loop
        loop = asyncio.get_running_loop()
        task = loop.create_task(_resume(coro, yielded, job.timeout), context=context)
        self._tasks[job.node] = task
        if log is not None:
            self._logs[job.node] = log
        task.add_done_callback(functools.partial(self._finished, job))

    def _kind_of(self, func: Any, task: Any) -> tuple[bool, TaskHooks | None]:
        """(is it async, the taskiq hooks around it); the one _PLAIN_ASYNC tuple for an async
        callable without hooks, so that kick's fast path tests it by identity."""
        is_async, hooks = _is_async(func), self._hooks_of(task)
        return _PLAIN_ASYNC if is_async and hooks is None else (is_async, hooks)

    def _hooks_of(self, task: Any) -> TaskHooks | None:
        if not _is_taskiq_task(task):
            return None
        # by task too: a producer's callable is a new partial per job, its task is not; and
        # per run, so that middlewares added to a broker since its last run take part
        if task not in self._hooks:
            self._hooks[task] = task_hooks(task)
        return self._hooks[task]

    def _in_pool(self, func: Any, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """A blocking function inside a task's middlewares: called from the task's own
        context, which it keeps in the thread as _run_blocking does."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._pool(), self._in_context(func, args, kwargs))

    def _in_context(
        self,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        log: TaskLog | None = None,
    ) -> Any:
        call = functools.partial(func, *args, **kwargs)
        if isinstance(self._pool(), concurrent.futures.ThreadPoolExecutor):
            # in the run's context, so that the task finds its run (growth.add_tasks) and its
            # log records find their TaskLog; a process pool pickles the call, and a context
            # does not pickle (its tasks' records are not captured)
            context = contextvars.copy_context()
            if log is not None:
                context.run(CURRENT_LOG.set, log)
            call = functools.partial(context.run, call)
        return call

    def _run_blocking(
        self, job: Job, args: tuple[Any, ...], kwargs: dict[str, Any], log: TaskLog | None
    ) -> None:
        call = self._in_context(job.func, args, kwargs, log)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().run_in_executor(self._pool(), call)
        if job.timeout is not None:
            fut = asyncio.ensure_future(asyncio.wait_for(fut, job.timeout))
        self._tasks[job.node] = fut
        if log is not None:
            self._logs[job.node] = log
        fut.add_done_callback(functools.partial(self._finished, job))

    def _finished(self, job: Job, fut: asyncio.Future[Any]) -> None:
        self._tasks.pop(job.node, None)
        if self._jobs:
            self._jobs.pop(job.node, None)
        log = self._logs.pop(job.node, None) if self._logs else None
        logs = None if log is None else log.entries()
        if fut.cancelled():
            cancelled = asyncio.CancelledError(f"task '{job.name}' was cancelled")
            error = task_error(job.name, cancelled)
            self.sink.push(Completion(job.node, job.attempt, False, error, logs=logs))
            return
        exc = fut.exception()
        if exc is None:
            self.sink.push(Completion(job.node, job.attempt, True, fut.result(), logs=logs))
        else:
            if isinstance(exc, asyncio.TimeoutError | TimeoutError) and job.timeout is not None:
                exc = TimeoutError(f"task '{job.name}' timed out after {job.timeout} s")
            error = task_error(job.name, exc)
            self.sink.push(Completion(job.node, job.attempt, False, error, logs=logs))

    def cancel(self) -> None:
        if self._tasks:
            for fut in list(self._tasks.values()):
                fut.cancel()

    def stop(self, node: int) -> bool:
        fut = self._tasks.get(node)
        if fut is None or fut.done():
            return False
        # a Task made this turn has not taken its first step: cancelled now, it would end
        # without ever resuming the hand-started coroutine inside it (left suspended, its
        # finally blocks never run); one turn later it has taken that step
        asyncio.get_running_loop().call_soon(fut.cancel)
        return True

    async def shutdown(self) -> None:
        self.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


_PLAIN_ASYNC: tuple[bool, TaskHooks | None] = (True, None)
# a stepper's params for a function with no keyword-bindable parameter: bound by position
_BY_POSITION: frozenset[str] = frozenset()
# a run asks once per distinct task; runs repeat
_is_taskiq_task = functools.lru_cache(maxsize=4096)(is_taskiq_task)


@functools.lru_cache(maxsize=4096)  # a run asks once per distinct callable; runs repeat
def _is_async(func: Any) -> bool:
    """An async function, or an object whose __call__ is one."""
    if inspect.iscoroutinefunction(func):
        return True
    if inspect.isroutine(func) or not callable(func):
        return False
    return inspect.iscoroutinefunction(type(func).__call__)


async def _resume(coro: Any, yielded: Any, timeout: float | None) -> Any:
    """Drive a coroutine that was started by hand and suspended on `yielded`."""
    if timeout is not None:
        # asyncio.timeout, not wait_for: no extra Task, so the coroutine keeps its context
        async with asyncio.timeout(timeout):
            return await _drive(coro, yielded)
    return await _drive(coro, yielded)


async def _drive(coro: Any, yielded: Any) -> Any:
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)  # a bare `yield` (what asyncio.sleep(0) does)
            else:
                # The coroutine marked the future as awaited; hand that role to this task, as
                # asyncio.Task does, so that cancelling us cancels the future it waits on.
                yielded._asyncio_future_blocking = False
                try:
                    await yielded
                except asyncio.CancelledError:
                    if not yielded.done() or yielded.cancelled() is False:
                        raise
                except BaseException:
                    pass
        except asyncio.CancelledError as cancel:
            try:
                yielded = coro.throw(cancel)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value


class _Lazy:
    """The job a LocalTransport steps in place while its run captures, for _task_log.
    A task may run a nested run within its first step: `enter` returns what `leave` puts
    back."""

    __slots__ = ("job", "level", "logs", "run_id", "thread")

    def __init__(self) -> None:
        self.job: Job | None = None
        self.logs: dict[int, TaskLog] = {}
        self.run_id = ""
        self.level: int | None = None
        self.thread = 0

    def enter(
        self, logs: dict[int, TaskLog], task_logs: tuple[str, int | None] | None
    ) -> tuple[Any, ...]:
        assert task_logs is not None
        outer = (self.job, self.logs, self.run_id, self.level, self.thread)
        self.job, self.logs = None, logs
        self.run_id, self.level = task_logs
        self.thread = threading.get_ident()
        return outer

    def leave(self, outer: tuple[Any, ...]) -> None:
        self.job, self.logs, self.run_id, self.level, self.thread = outer


_LAZY = _Lazy()


def _task_log() -> TaskLog | None:
    """The TaskLog of the in-process task that is logging, made at its first record: the task
    stepped in place right now (in this thread), else the Task whose context names it (its
    transport's jobs); None outside a task of a run that captures lazily."""
    lazy = _LAZY
    job = lazy.job
    if job is not None and threading.get_ident() == lazy.thread:
        log = lazy.logs.get(job.node)
        if log is None:
            log = lazy.logs[job.node] = TaskLog(lazy.run_id, job.name, job.attempt, lazy.level)
        return log
    current = CURRENT_TASK.get()
    if current is None:
        return None
    sink, node = current
    transport = sink.stepper
    if transport is None:
        return None
    job = transport._jobs.get(node)
    task_logs = transport.task_logs
    if job is None or task_logs is None:
        return None
    log = transport._logs.get(node)
    if log is None:
        log = transport._logs[node] = TaskLog(task_logs[0], job.name, job.attempt, task_logs[1])
    return log


set_fallback(_task_log)
