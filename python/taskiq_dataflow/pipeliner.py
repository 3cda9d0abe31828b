"""taskiq-flow's sequential `Pipeline`: steps chained in order, each fed the one before's result.

    pipeline = (
        Pipeline(broker)
        .call_next(add_one)            # 1 -> 2
        .call_next(repeat, times=4)    # 2 -> [2, 2, 2, 2]
        .map(add_one)                  # one task per item -> [3, 3, 3, 3]
        .filter(is_positive)           # the items whose task returns a truthy value
    )
    task = await pipeline.kiq(1)
    result = await task.wait_result(timeout=30)    # a taskiq TaskiqResult
    result.return_value                            # [3, 3, 3, 3]

The chain is ONE run of the ExecutionEngine on `broker` (pipeline_steps.py says how): in this
process for an InMemoryBroker (or none), on the NATS workers for a DataflowNatsBroker, through
taskiq's `kiq` for any other broker. A step starts the moment the one before it finished; a
map's items run in parallel, one task each. No middleware is needed, and nothing polls:
`PipelineMiddleware` is kept so that code adding it runs (see its docstring).

A failing step ends the run: `wait_result()` gives `is_err=True` and `error`, a
TaskFailedError naming the step's task (`step2.add_one[3]`: step 2, item 3) with its traceback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from taskiq import TaskiqMiddleware, TaskiqResult

from .events import Event
from .execution_engine import ExecutionEngine, RunHandle
from .pipeline import check_engine_options
from .pipeline_steps import (
    CALL_AFTER,
    CALL_NEXT,
    FILTER,
    GROUP,
    MAP,
    Step,
    check_task,
    expand,
    positional_order,
)
from .task import task_display_name

__all__ = ["Pipeline", "PipelineMiddleware", "PipelineTask"]

# taskiq-flow's polling period of a map's collector task; our engine is told of each completion
_CHECK_INTERVAL = 0.5

# a chain of steps each waiting for the one before has one way to handle a failure: stop there
_ERROR_MODE_OPTIONS = ("fail_fast", "continue_on_error", "skip_failed", "error_mode")


class Pipeline:
    """A chain of steps run as one run of the ExecutionEngine on `broker`.

    `task` is the first step (as `call_next(task)`). `engine_options` are ExecutionEngine's
    (`max_parallel`, `retries`, `retry_delay`, `timeout` of each task's attempt, `transport`,
    ...); a failed step always ends the run, so its error-mode options are refused.
    """

    def __init__(
        self,
        broker: Any = None,
        task: Any = None,
        *,
        pipeline_id: str | None = None,
        **engine_options: Any,
    ) -> None:
        options = check_engine_options(engine_options, "Pipeline")
        modes = [name for name in _ERROR_MODE_OPTIONS if name in options]
        if modes:
            raise TypeError(
                f"Pipeline got {', '.join(map(repr, modes))}: each step needs the result of the "
                "one before it, so a failed step ends the pipeline; to go on past failed items "
                "use map(..., skip_errors=True) or filter(..., skip_errors=True)"
            )
        self.broker = broker
        self.pipeline_id = pipeline_id
        self.engine_options = options
        self.steps: list[Step] = []
        self._subscriptions: list[tuple[Callable[[Any], Any], tuple[type[Event], ...]]] = []
        if task is not None:
            self.call_next(task)

    # -- chaining -------------------------------------------------------------------------------

    def call_next(self, task: Any, param_name: str | int | None = None, **kwargs: Any) -> Pipeline:
        """Run `task` on the previous step's result: as its first positional argument, or as
        the parameter `param_name`; `kwargs` are fixed arguments. The first step receives
        kiq()'s arguments instead."""
        where = f"call_next({task_display_name(task)!r})"
        if param_name == -1:  # taskiq-flow's EMPTY_PARAM_NAME: the result is not passed
            return self.call_after(task, **kwargs)
        self._check_param(where, param_name, kwargs)
        assert param_name is None or isinstance(param_name, str)
        if param_name is not None and not self.steps:
            raise TypeError(
                f"{where}: param_name={param_name!r} names where the previous step's result "
                "goes, and the first step has none: it receives kiq()'s arguments (pass "
                f"kiq({param_name}=...))"
            )
        return self._add(Step(CALL_NEXT, (task,), (param_name,), (kwargs,)), where)

    def call_after(self, task: Any, **kwargs: Any) -> Pipeline:
        """Run `task` once the previous step finished, without its result (`kwargs` are its
        arguments); its own result is the next step's input."""
        where = f"call_after({task_display_name(task)!r})"
        return self._add(Step(CALL_AFTER, (task,), (None,), (kwargs,)), where)

    def map(
        self,
        task: Any,
        param_name: str | None = None,
        skip_errors: bool = False,
        check_interval: float = _CHECK_INTERVAL,
        *,
        max_parallel: int | None = None,
        **kwargs: Any,
    ) -> Pipeline:
        """Run `task` on each item of the previous step's list, one task per item, in
        parallel (at most `max_parallel` at once); the result is the list of their results in
        item order. An item goes as the first positional argument, or as `param_name`.
        `skip_errors=True` leaves out the items whose task failed instead of failing."""
        return self._fan_out(
            MAP, task, param_name, skip_errors, check_interval, max_parallel, kwargs
        )

    def filter(
        self,
        task: Any,
        param_name: str | None = None,
        skip_errors: bool = False,
        check_interval: float = _CHECK_INTERVAL,
        *,
        max_parallel: int | None = None,
        **kwargs: Any,
    ) -> Pipeline:
        """Keep the items of the previous step's list for which `task` (one task per item, in
        parallel) returns a truthy value, in order; the options are map()'s."""
        return self._fan_out(
            FILTER, task, param_name, skip_errors, check_interval, max_parallel, kwargs
        )

    def group(
        self,
        tasks: Sequence[Any],
        param_names: Sequence[str | None] | None = None,
        **kwargs_by_task: dict[str, Any],
    ) -> Pipeline:
        """Run `tasks` in parallel, each on the previous step's result (as its first positional
        argument, or as its entry of `param_names`); the result is their results in order.
        As in taskiq-flow, fixed arguments are given per task: `name={"arg": value}`, `name`
        being the task's name (or its taskiq `task_name`). Unlike taskiq-flow 1.2.2, a task
        whose entry is None gets the result as its first argument (there it gets nothing,
        against its docs' "from the same input"), and a failing task fails the pipeline (there
        its result silently becomes None)."""
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence) or not tasks:
            raise TypeError(f"group() takes a non-empty list of tasks, got {tasks!r:.80}")
        where = f"group([{', '.join(task_display_name(t) for t in tasks)}])"
        if param_names is None:
            param_names = [None] * len(tasks)
        elif len(param_names) != len(tasks):
            raise ValueError(
                f"{where}: param_names has {len(param_names)} entries for {len(tasks)} tasks; "
                "give one per task (None: the result as its first positional argument)"
            )
        names = [_names_of(t) for t in tasks]
        unknown = [k for k in kwargs_by_task if not any(k in n for n in names)]
        if unknown:
            known = sorted({n for ns in names for n in ns})
            raise TypeError(
                f"{where}: {', '.join(map(repr, unknown))} is not the name of a task of the "
                f"group; its fixed arguments go per task: name={{'arg': value}} (names: "
                f"{', '.join(known)})"
            )
        kwargs: list[dict[str, Any]] = []
        for task, task_names, param in zip(tasks, names, param_names, strict=True):
            fixed: dict[str, Any] = {}
            for key in task_names:
                given = kwargs_by_task.get(key, {})
                if not isinstance(given, dict):
                    raise TypeError(
                        f"{where}: {key}= must be a dict of {key!r}'s fixed arguments, got "
                        f"{given!r:.80}"
                    )
                fixed.update(given)
            self._check_param(f"{where}: task {task_display_name(task)!r}", param, fixed)
            kwargs.append(fixed)
        step = Step(GROUP, tuple(tasks), tuple(param_names), tuple(kwargs))
        return self._add(step, where)

    def _fan_out(
        self,
        kind: str,
        task: Any,
        param_name: str | None,
        skip_errors: bool,
        check_interval: float,
        max_parallel: int | None,
        kwargs: dict[str, Any],
    ) -> Pipeline:
        where = f"{kind}({task_display_name(task)!r})"
        self._check_param(where, param_name, kwargs)
        if not isinstance(skip_errors, bool):
            raise TypeError(f"{where}: skip_errors must be True or False, got {skip_errors!r}")
        if check_interval != _CHECK_INTERVAL:
            raise TypeError(
                f"{where}: check_interval={check_interval!r} is taskiq-flow's period for "
                "polling the items' results; taskiq-dataflow's engine is told of each "
                "completion as it happens, so there is nothing to poll: drop check_interval"
            )
        if max_parallel is not None and (
            isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1
        ):
            raise ValueError(
                f"{where}: max_parallel must be a positive integer, got {max_parallel!r}"
            )
        step = Step(kind, (task,), (param_name,), (kwargs,), skip_errors, max_parallel)
        return self._add(step, where)

    @staticmethod
    def _check_param(where: str, param_name: Any, kwargs: dict[str, Any]) -> None:
        if param_name is not None and not isinstance(param_name, str):
            raise TypeError(f"{where}: param_name must be a parameter name, got {param_name!r}")
        if param_name is not None and param_name in kwargs:
            raise TypeError(
                f"{where}: {param_name!r} receives the previous step's result and is also given "
                "as a fixed argument; give it once"
            )

    def _add(self, step: Step, where: str) -> Pipeline:
        for task in step.tasks:
            check_task(task, where)
        index = len(self.steps)
        if index == 0 and step.kind not in (CALL_NEXT, CALL_AFTER):
            raise TypeError(
                f"{where}: the first step receives kiq()'s arguments, so it must be call_next "
                "or call_after (e.g. call_next on a task returning the list to map over)"
            )
        if index > 0:
            # a step that cannot take its arguments fails here, not when the run reaches it
            for k, task in enumerate(step.tasks):
                positional_order(step.describe(index), task, *step.call(k))
        self.steps.append(step)
        return self

    # -- running --------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Any], Any], *types: type[Event]) -> Callable[[], None]:
        """Call `listener(event)` for the step events of every run (see ExecutionEngine.events:
        StepStarted, StepCompleted, StepFailed, ... of each task, named as in errors)."""
        entry = (listener, types)
        self._subscriptions.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscriptions:
                self._subscriptions.remove(entry)

        return unsubscribe

    async def kiq(self, *args: Any, **kwargs: Any) -> PipelineTask:
        """Start the pipeline with `args` and `kwargs` for its first step; returns at once with
        a handle (`await handle.wait_result()` for the last step's result)."""
        if not self.steps:
            raise ValueError("the pipeline is empty: add a step with call_next(task) before kiq()")
        dag, inputs, last = expand(
            self.steps, args, kwargs, self.broker, self.engine_options, self._subscriptions
        )
        engine = ExecutionEngine(self.broker, dag, **self.engine_options)
        for listener, types in self._subscriptions:
            engine.events.subscribe(listener, *types)
        return PipelineTask(engine.start(inputs, pipeline_id=self.pipeline_id), last)

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        steps = " -> ".join(s.describe(i) for i, s in enumerate(self.steps)) or "no steps"
        return f"<Pipeline {steps}>"


class PipelineTask:
    """A started pipeline, as taskiq's AsyncTaskiqTask: `task_id` (the run's id), `await
    is_ready()`, `await wait_result(timeout=)` and `await get_result()` giving a taskiq
    TaskiqResult (`return_value`, `is_err`, `error`, `execution_time`), plus `cancel()`
    and `progress()` of the run."""

    def __init__(self, handle: RunHandle, key: str) -> None:
        self._handle, self._key = handle, key
        self._started = time.perf_counter()
        # awaited from the start: the execution time is the run's, however late one waits
        self._result = asyncio.ensure_future(self._finish())

    @property
    def task_id(self) -> str:
        return self._handle.run_id

    async def is_ready(self) -> bool:
        return self._result.done()

    async def wait_result(
        self, check_interval: float = 0.2, timeout: float | None = -1.0, with_logs: bool = False
    ) -> TaskiqResult[Any]:
        """The last step's result once the run finished; a failed step gives `is_err=True`
        and its error. `timeout` (seconds; None or negative: no limit) raises TimeoutError,
        and the run goes on. `check_interval` is taskiq's signature: results are pushed to the
        engine, nothing polls; no logs are kept (`log` is None)."""
        if timeout is None or timeout < 0:
            return await asyncio.shield(self._result)
        try:
            return await asyncio.wait_for(asyncio.shield(self._result), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"pipeline run {self.task_id} did not finish within {timeout}s (it goes on: "
                "wait again, or cancel() it)"
            ) from None

    async def get_result(self, with_logs: bool = False) -> TaskiqResult[Any]:
        """The result of a finished run (see wait_result)."""
        if not self._result.done():
            raise RuntimeError(
                f"pipeline run {self.task_id} has not finished: await wait_result(), or check "
                "is_ready() first"
            )
        return self._result.result()

    async def _finish(self) -> TaskiqResult[Any]:
        try:
            outputs = await self._handle.result()
        except Exception as exc:
            result: TaskiqResult[Any] = TaskiqResult(
                is_err=True,
                log=None,
                return_value=None,
                execution_time=time.perf_counter() - self._started,
                error=exc,
            )
        else:
            result = TaskiqResult(
                is_err=False,
                log=None,
                return_value=outputs[self._key],
                execution_time=time.perf_counter() - self._started,
            )
        return result

    def cancel(self) -> None:
        """Cancel the run; its result is then an error (ExecutionCancelled)."""
        self._handle.cancel()

    def progress(self) -> dict[str, Any]:
        return self._handle.progress()

    def __repr__(self) -> str:
        return f"<PipelineTask {self.task_id}>"


class PipelineMiddleware(TaskiqMiddleware):
    """taskiq-flow's PipelineMiddleware, kept so that `broker.add_middlewares(
    PipelineMiddleware())` runs: in taskiq-flow it starts each step from the worker that
    finished the step before. Here the ExecutionEngine drives a Pipeline's steps itself,
    wherever its tasks run, so the middleware has no hook (it costs nothing per task) and a
    Pipeline works with or without it.

    Its options have no meaning here and are refused: follow a pipeline's steps with
    `pipeline.subscribe(listener, StepStarted, StepCompleted, StepFailed)`.
    """

    def __init__(
        self,
        tracking_manager: Any = None,
        hook_manager: Any = None,
        metrics_collector: Any = None,
    ) -> None:
        given = {
            "tracking_manager": tracking_manager,
            "hook_manager": hook_manager,
            "metrics_collector": metrics_collector,
        }
        refused = [name for name, value in given.items() if value is not None]
        if refused:
            raise TypeError(
                f"PipelineMiddleware({', '.join(f'{n}=...' for n in refused)}): taskiq-dataflow's "
                "engine drives a Pipeline's steps, not this middleware, so it has nothing to "
                "report; follow the steps with pipeline.subscribe(listener, StepStarted, "
                "StepCompleted, StepFailed) (taskiq_dataflow's events)"
            )
        super().__init__()


def _names_of(task: Any) -> set[str]:
    """The names a group's fixed arguments may be given under for `task`."""
    names = {task_display_name(task)}
    task_name = getattr(task, "task_name", None)
    if isinstance(task_name, str):
        names.add(task_name)
    return names
