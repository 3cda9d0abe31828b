"""taskiq-flow's sequential Pipeline on our engine: call_next, call_after, map, filter, group,
kiq and wait_result, in process (InMemoryBroker, and through taskiq's kiq), errors naming the
failing step, and on real NATS workers; PipelineMiddleware; config.TaskiqFlowConfig."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pydantic
import pytest
from conftest import run
from taskiq import InMemoryBroker, TaskiqMiddleware
from taskiq_dataflow import (
    ExecutionCancelled,
    Pipeline,
    PipelineMiddleware,
    StepCompleted,
    TaskFailedError,
)

broker = InMemoryBroker()
broker.add_middlewares(PipelineMiddleware())


@broker.task
def add_one(value: int) -> int:
    return value + 1


@broker.task
def repeat(value: int, times: int) -> list[int]:
    return [value] * times


@broker.task
def is_positive(value: int) -> bool:
    return value >= 0


@broker.task
def scale(value: int, factor: int = 1, offset: int = 0) -> int:
    return value * factor + offset


@broker.task
async def slow_double(value: int, delay: float = 0.2) -> int:
    await asyncio.sleep(delay)
    return value * 2


@broker.task
def fragile(value: int) -> int:
    if value % 2:
        raise ValueError(f"odd value {value}")
    return value


@broker.task
def tagged(value: int, *, tag: str) -> str:
    return f"{tag}{value}"


@broker.task
def marker() -> str:
    return "after"


def test_readme_example_with_and_without_the_middleware() -> None:
    plain = InMemoryBroker()  # no PipelineMiddleware: the engine drives the steps anyway
    for b, one in ((broker, add_one), (plain, plain.task(add_one.original_func))):
        pipeline = (
            Pipeline(b).call_next(one).call_next(repeat, times=4).map(one).filter(is_positive)
        )

        async def main(p: Pipeline = pipeline) -> Any:
            task = await p.kiq(1)
            return await task.wait_result()

        result = run(main())
        assert not result.is_err and result.error is None
        assert result.return_value == [3, 3, 3, 3]
        assert result.execution_time > 0


def kiq_result(pipeline: Pipeline, *args: Any, **kwargs: Any) -> Any:
    async def main() -> Any:
        task = await pipeline.kiq(*args, **kwargs)
        return await task.wait_result(timeout=10)

    return run(main())


def test_arguments_param_name_and_fixed_kwargs() -> None:
    pipeline = (
        Pipeline(broker, scale)  # the first step receives kiq()'s arguments
        .call_next(scale, factor=10)  # the result as the first positional argument
        .call_next(scale, param_name="value", factor=2, offset=1)
    )
    # kiq(3, factor=2): 6; then 60; then 121
    assert kiq_result(pipeline, 3, factor=2).return_value == 121
    # the first step's fixed arguments join kiq()'s; 'factor', left out, keeps its default
    assert kiq_result(Pipeline(broker).call_next(scale, offset=5), 1).return_value == 6
    assert kiq_result(Pipeline(broker, add_one).call_next(scale, offset=5), 1).return_value == 7


def test_call_after_runs_after_the_step_without_its_result() -> None:
    order: list[str] = []
    pipeline = (
        Pipeline(broker)
        .call_next(repeat, times=3)
        .map(slow_double, delay=0.05)  # the map's result is its items' (deferred)
        .call_after(marker)
    )
    pipeline.subscribe(lambda e: order.append(e.task_name), StepCompleted)
    result = kiq_result(pipeline, 1)
    assert result.return_value == "after"
    assert order[-1] == "step2.marker"
    assert {"step1.slow_double[0]", "step1.slow_double[2]"} <= set(order[:-1])
    # param_name=-1 is taskiq-flow's way of saying call_after
    assert kiq_result(Pipeline(broker, add_one).call_next(marker, param_name=-1), 1).return_value


def test_map_items_run_in_parallel_and_keep_their_order() -> None:
    pipeline = Pipeline(broker).call_next(lambda n: list(range(n))).map(slow_double, delay=0.2)
    started = time.perf_counter()
    result = kiq_result(pipeline, 8)
    assert result.return_value == [0, 2, 4, 6, 8, 10, 12, 14]
    assert time.perf_counter() - started < 1.0  # 8 x 0.2 s one after the other is 1.6 s
    # max_parallel bounds the items in flight
    bounded = (
        Pipeline(broker)
        .call_next(lambda n: list(range(n)))
        .map(slow_double, delay=0.1, max_parallel=1)
    )
    started = time.perf_counter()
    assert kiq_result(bounded, 4).return_value == [0, 2, 4, 6]
    assert time.perf_counter() - started >= 0.4


def test_map_param_name_filter_and_empty_list() -> None:
    pipeline = (
        Pipeline(broker)
        .call_next(lambda n: list(range(-n, n)))
        .filter(is_positive)
        .map(scale, param_name="value", factor=3)
    )
    assert kiq_result(pipeline, 3).return_value == [0, 3, 6]
    assert kiq_result(pipeline, 0).return_value == []


def test_group_runs_its_tasks_on_the_same_input() -> None:
    pipeline = (
        Pipeline(broker, add_one)
        .group([add_one, scale, repeat], param_names=[None, "value", None], scale={"factor": 5},
               repeat={"times": 2})
    )  # fmt: skip
    assert kiq_result(pipeline, 1).return_value == [3, 10, [2, 2]]


def test_a_failing_step_gives_an_error_result_naming_it() -> None:
    result = kiq_result(Pipeline(broker).call_next(add_one).call_next(fragile), 2)
    assert result.is_err and result.return_value is None
    assert isinstance(result.error, TaskFailedError)
    assert result.error.task_name == "step1.fragile"
    assert "odd value 3" in str(result.error)

    mapped = Pipeline(broker).call_next(lambda n: list(range(n))).map(fragile).call_next(len)
    result = kiq_result(mapped, 4)
    assert result.is_err
    assert result.error.task_name in ("step1.fragile[1]", "step1.fragile[3]")
    with pytest.raises(TaskFailedError, match=r"step1\.fragile\[\d\].*odd value"):
        result.raise_for_error()


def test_map_over_a_non_list_names_the_step() -> None:
    result = kiq_result(Pipeline(broker, add_one).map(add_one), 1)
    assert result.is_err
    assert "step 1 (map(add_one)) needs a list from the step before it, got int" in str(
        result.error
    )


def test_skip_errors_leaves_out_the_failed_items() -> None:
    numbers = Pipeline(broker).call_next(lambda n: list(range(n)))
    mapped = Pipeline(broker).call_next(lambda n: list(range(n))).map(fragile, skip_errors=True)
    assert kiq_result(mapped, 5).return_value == [0, 2, 4]
    filtered = numbers.filter(fragile, skip_errors=True)  # 0 is falsy, odd ones fail
    assert kiq_result(filtered, 5).return_value == [2, 4]


def test_through_taskiqs_kiq() -> None:
    pipeline = (
        Pipeline(broker, transport="broker")
        .call_next(add_one)
        .call_next(repeat, times=3)
        .map(add_one)
    )
    assert kiq_result(pipeline, 1).return_value == [3, 3, 3]


def test_wait_result_timeout_and_cancel() -> None:
    async def main() -> None:
        task = await Pipeline(broker).call_next(slow_double, delay=0.3).kiq(2)
        assert not await task.is_ready()
        with pytest.raises(RuntimeError, match="has not finished"):
            await task.get_result()
        with pytest.raises(TimeoutError, match=f"pipeline run {task.task_id} did not finish"):
            await task.wait_result(timeout=0.05)
        result = await task.wait_result(timeout=5)  # the run went on
        assert result.return_value == 4 and await task.is_ready()
        assert (await task.get_result()).return_value == 4

        slow = await Pipeline(broker).call_next(slow_double, delay=5).kiq(1)
        await asyncio.sleep(0.05)
        slow.cancel()
        cancelled = await slow.wait_result(timeout=5)
        assert cancelled.is_err and isinstance(cancelled.error, ExecutionCancelled)

    run(main())


def test_refusals_name_the_step_and_what_to_do() -> None:
    with pytest.raises(TypeError, match="first step receives kiq"):
        Pipeline(broker).map(add_one)
    with pytest.raises(TypeError, match="param_name='value' names where the previous"):
        Pipeline(broker).call_next(add_one, param_name="value")
    with pytest.raises(TypeError, match="check_interval=0.1 is taskiq-flow's period"):
        Pipeline(broker, add_one).map(add_one, check_interval=0.1)
    with pytest.raises(TypeError, match="'fail_fast'.*a failed step ends the pipeline"):
        Pipeline(broker, fail_fast=False)
    with pytest.raises(TypeError, match="unexpected option"):
        Pipeline(broker, colour="red")
    # arguments travel by position: a keyword-only parameter cannot be given
    with pytest.raises(TypeError, match=r"step 1 \(call_next\(tagged\)\).*keyword-only.*'tag'"):
        Pipeline(broker, add_one).call_next(tagged, tag="x")
    with pytest.raises(TypeError, match=r"step 1 \(call_next\(add_one\)\): cannot call"):
        Pipeline(broker, add_one).call_next(add_one, bogus=1)
    with pytest.raises(TypeError, match="'times' is not the name of a task of the group"):
        Pipeline(broker, add_one).group([add_one, repeat], times=2)
    with pytest.raises(ValueError, match="param_names has 1 entries for 2 tasks"):
        Pipeline(broker, add_one).group([add_one, repeat], param_names=["value"])
    with pytest.raises(TypeError, match="taskiq kicker"):
        Pipeline(broker, add_one.kicker())
    with pytest.raises(ValueError, match="the pipeline is empty"):
        run(Pipeline(broker).kiq(1))
    with pytest.raises(TypeError, match="kiq\\(\\) gives \\['offset'\\], which the step"):
        run(Pipeline(broker).call_next(scale, offset=1).kiq(1, offset=2))


def test_pipeline_middleware_is_a_taskiq_middleware_without_options() -> None:
    middleware = PipelineMiddleware()
    assert isinstance(middleware, TaskiqMiddleware)
    # no hook: a task of a broker with it runs without any middleware call around it
    from taskiq_dataflow.middlewares import task_hooks

    hooks = task_hooks(add_one)
    assert broker.middlewares and hooks is not None and not hooks.middlewares
    with pytest.raises(TypeError, match=r"metrics_collector=.*pipeline\.subscribe"):
        PipelineMiddleware(metrics_collector=object())
    from taskiq_dataflow.middleware import PipelineMiddleware as documented_path

    assert documented_path is PipelineMiddleware


def test_module_paths_are_one_class() -> None:
    import taskiq_dataflow
    import taskiq_dataflow.pipeline
    import taskiq_dataflow.pipeliner

    assert taskiq_dataflow.pipeline.Pipeline is taskiq_dataflow.Pipeline
    assert taskiq_dataflow.pipeliner.Pipeline is taskiq_dataflow.Pipeline
    assert taskiq_dataflow.pipeline.DataflowPipeline is taskiq_dataflow.DataflowPipeline


# -- on the cluster ------------------------------------------------------------------------------


def test_steps_and_items_run_on_the_nats_workers(server: Any, workers: Any) -> None:
    import cluster_tasks as ct
    from cluster_support import worker_pid
    from taskiq_dataflow.cluster import DataflowNatsBroker

    cluster = DataflowNatsBroker(server.url, codec=ct.broker.codec)
    ran_on: dict[str, str | None] = {}
    pipeline = (
        Pipeline(cluster)
        .call_next(ct.echo)  # [0, 1, 2, 3]
        .map(ct.index, delay=0.01)  # one worker task per item
        .filter(ct.index)  # index(0) is falsy: [1, 2, 3]
        .group([ct.echo, ct.noop])  # [[1, 2, 3], None]
    )
    pipeline.subscribe(lambda e: ran_on.__setitem__(e.task_name, e.worker), StepCompleted)
    result = kiq_result(pipeline, [0, 1, 2, 3])
    assert not result.is_err, result.error
    assert result.return_value == [[1, 2, 3], None]
    steps = [f"step1.index[{j}]" for j in range(4)] + ["step2.index[0]", "step3.group[1].noop"]
    pids = {worker_pid(w) for w in (ran_on[name] or "" for name in steps) if w}
    assert len(pids) == 1 and pids <= set(workers.children()) and os.getpid() not in pids

    # an item that fails on a worker fails the pipeline naming the item's task
    failing = Pipeline(cluster).call_next(ct.echo).map(ct.measure)  # an int is no blob
    result = kiq_result(failing, [1, 2])
    assert result.is_err and isinstance(result.error, TaskFailedError)
    assert result.error.task_name in ("step1.measure[0]", "step1.measure[1]")
    assert "argument 'blob'" in str(result.error) and "not a valid bytes" in str(result.error)

    # skip_errors: the items run apart (a run that goes on past failures), on the workers too
    skipping = Pipeline(cluster).call_next(ct.echo).map(ct.measure, skip_errors=True)
    skipping.subscribe(lambda e: ran_on.__setitem__(e.task_name, e.worker), StepCompleted)
    result = kiq_result(skipping, [b"ab", 1, b"c"])
    assert result.return_value == [{"len": 2, "sum": 97}, {"len": 1, "sum": 99}]
    assert worker_pid(ran_on["step1.measure[2]"] or "-0-") in workers.children()


# -- config ------------------------------------------------------------------------------------


def test_config_validates_its_fields() -> None:
    from taskiq_dataflow.config import TaskiqFlowConfig

    config = TaskiqFlowConfig(
        auth_provider="api_key",
        api_keys={"my-key": {"role": "admin", "permissions": ["read", "execute", "admin"]}},
        log_level="debug",
    )
    assert config.security_enabled and config.api_keys["my-key"].role == "admin"
    assert config.api_keys["my-key"].pipeline_whitelist == ["*"]
    assert config.log_level == "DEBUG"
    assert not TaskiqFlowConfig(security_enabled=False).security_enabled
    assert TaskiqFlowConfig(storage_enabled=True).security_enabled  # a default is accepted

    def refused(match: str, **fields: Any) -> None:
        with pytest.raises(pydantic.ValidationError, match=match):
            TaskiqFlowConfig(**fields)

    refused(r"auth_provider\n.*'api_key' or 'jwt'", auth_provider="oauth")
    refused(r"api_keys\.k\.permissions\.0\n", api_keys={"k": {"role": "a", "permissions": ["x"]}})
    refused(r"api_keys\.k\.role\n", api_keys={"k": {"permissions": ["read"]}})
    refused(r"api_keys\.k\.scope\n.*Extra inputs", api_keys={"k": {"role": "a", "scope": 1}})
    refused(r"needs jwt_secret", auth_provider="jwt")
    refused(r"rate_limit_default\n.*'<count>/<second", rate_limit_default="lots")
    refused(r"metrics_path\n", metrics_path="metrics")
    refused(r"log_level\n.*not a logging level", log_level="LOUD")
    refused(r"colour\n.*Extra inputs", colour="red")
    refused(r"storage_type='redis'.*RunStore", storage_type="redis")
    refused(r"cache_redis_url=.*ResultCache", cache_redis_url="redis://x")
    refused(r"websocket_ssl_cert and websocket_ssl_key go together", websocket_ssl_cert="c.pem")
    assert TaskiqFlowConfig(auth_provider="jwt", jwt_secret="s3").auth_provider == "jwt"
    assert "s3" not in repr(TaskiqFlowConfig(auth_provider="jwt", jwt_secret="s3"))
