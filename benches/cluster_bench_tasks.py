"""Worker-side code of benches/bench_cluster.py, imported by the driver and by every worker.

- `broker` / `noop`: taskiq-dataflow (`python -m taskiq_dataflow.cluster.serve
  cluster_bench_tasks:broker --workers 2`); the server comes from $DATAFLOW_NATS_URL, the
  broker's own default.
- `taskiq_broker` / `taskiq_noop` / `flow{i}`: taskiq-nats' `NatsBroker` with a queue group, for
  `taskiq worker cluster_bench_tasks:taskiq_broker --workers 2`, driven by plain `kiq` or by
  taskiq-flow; server from $BENCH_NATS_URL, result backend from $BENCH_RESULT_BACKEND.
- `python cluster_bench_tasks.py hw-worker URL`: the hand-written nats-py worker.
- `noop_sync`: the function in the dask graph.

Every system runs the same no-op: it takes its parents' results (None) and returns None.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import msgpack
from taskiq import AsyncResultBackend, ResultGetError, TaskiqResult
from taskiq_dataflow.cluster import DataflowNatsBroker

URL_ENV = "BENCH_NATS_URL"
BACKEND_ENV = "BENCH_RESULT_BACKEND"  # "kv" (default) or "objectstore"
FLOW_TASKS_ENV = "BENCH_FLOW_TASKS"  # how many flow{i} tasks to register (one per DAG node)

HW_SUBJECT, HW_QUEUE = "hw.tasks", "hw-workers"


def noop_sync(*args: Any) -> None:
    return None


async def noop_async(*args: Any) -> None:
    return None


# -- taskiq-dataflow ------------------------------------------------------------------------------

broker = DataflowNatsBroker(prefix="bench")


@broker.task
async def noop(*args: Any) -> None:
    return None


# -- taskiq over taskiq-nats ----------------------------------------------------------------------


class NatsKVResultBackend(AsyncResultBackend[Any]):
    """taskiq results in a JetStream key-value bucket (in memory), one key per task.

    taskiq-nats 0.7.0 ships only NATSObjectStoreResultBackend, which fails under load
    (`maximum consumers limit reached`), and taskiq's own backends are in-process only; this is
    the object-store backend rewritten over a KV bucket. taskiq polls it (`wait_result`).
    """

    def __init__(self, servers: str, bucket: str = "bench-results") -> None:
        self.servers, self.bucket = servers, bucket
        self.fetched = 0  # results read by this process (taskiq-flow's progress, when capped)

    async def startup(self) -> None:
        import nats
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import BucketNotFoundError

        self.nc = await nats.connect(self.servers)
        js = self.nc.jetstream()
        try:
            self.kv = await js.key_value(self.bucket)
        except BucketNotFoundError:
            self.kv = await js.create_key_value(
                KeyValueConfig(bucket=self.bucket, storage=StorageType.MEMORY, history=1)
            )

    async def shutdown(self) -> None:
        if not self.nc.is_closed:
            await self.nc.close()

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        await self.kv.put(task_id, msgpack.packb(result.model_dump(mode="json")))

    async def is_result_ready(self, task_id: str) -> bool:
        from nats.js.errors import KeyNotFoundError

        try:
            await self.kv.get(task_id)
        except KeyNotFoundError:
            return False
        return True

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[Any]:
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await self.kv.get(task_id)
        except KeyNotFoundError as exc:
            raise ResultGetError from exc
        self.fetched += 1
        result = TaskiqResult[Any].model_validate(msgpack.unpackb(entry.value))
        if not with_logs:
            result.log = None
        return result


def _taskiq_broker() -> Any:
    from taskiq_nats import NatsBroker, NATSObjectStoreResultBackend

    url = os.environ.get(URL_ENV, "nats://127.0.0.1:4222")
    kind = os.environ.get(BACKEND_ENV, "kv")
    backend: AsyncResultBackend[Any]
    if kind == "objectstore":
        backend = NATSObjectStoreResultBackend(url, bucket_name="bench-results-obj")
    else:
        backend = NatsKVResultBackend(url)
    return NatsBroker(url, subject="bench.taskiq", queue="bench-taskiq").with_result_backend(
        backend
    )


taskiq_broker = _taskiq_broker()


@taskiq_broker.task(task_name="bench_noop")
async def taskiq_noop(*args: Any) -> None:
    return None


@taskiq_broker.task(task_name="bench_pid")
async def taskiq_pid() -> int:
    return os.getpid()


def _flow_task(i: int) -> Any:
    # taskiq-flow keys its state by task object: one registered task per DAG node
    async def flow_noop(**kwargs: Any) -> None:
        return None

    return taskiq_broker.register_task(flow_noop, task_name=f"flow{i}")


flow_tasks = [_flow_task(i) for i in range(int(os.environ.get(FLOW_TASKS_ENV, "0")))]


# -- the hand-written nats-py worker --------------------------------------------------------------


async def hw_worker(url: str) -> None:
    """One message in, one message out: [node, name, args] -> [node, value] on msg.reply."""
    import signal

    import nats

    funcs = {"noop": noop_async, "pid": lambda: os.getpid()}
    nc = await nats.connect(url)
    pack, unpack = msgpack.packb, msgpack.unpackb

    async def on_task(msg: Any) -> None:
        node, name, args = unpack(msg.data)
        value = funcs[name](*args)
        if asyncio.iscoroutine(value):
            value = await value
        await nc.publish(msg.reply, pack([node, value]))

    await nc.subscribe(HW_SUBJECT, queue=HW_QUEUE, cb=on_task)
    await nc.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()


# -- a taskiq-dataflow worker profiled only while told to -----------------------------------------


async def profiled_worker(out: str) -> None:
    """A Worker of `broker` whose cProfile runs from SIGUSR1 to SIGUSR2 (then written to
    `out`): the profile covers the measured run, not imports, start-up or warm-up."""
    import cProfile
    import signal

    from taskiq_dataflow.cluster.worker import Worker

    worker = Worker(broker)
    prof = cProfile.Profile()
    loop = asyncio.get_running_loop()

    def stop_profile() -> None:
        prof.disable()
        prof.dump_stats(out)

    loop.add_signal_handler(signal.SIGUSR1, prof.enable)
    loop.add_signal_handler(signal.SIGUSR2, stop_profile)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


if __name__ == "__main__":
    # the tasks must be registered under this module's name, not __main__'s
    import cluster_bench_tasks as this

    if sys.argv[1:2] == ["hw-worker"]:
        asyncio.run(this.hw_worker(sys.argv[2]))
    elif sys.argv[1:2] == ["profiled-worker"]:
        asyncio.run(this.profiled_worker(sys.argv[2]))
    else:
        sys.exit("usage: cluster_bench_tasks.py hw-worker URL | profiled-worker OUT.prof")


# -- streams (benches/bench_streams.py) -----------------------------------------------------------


async def _count_up(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def _drain(items: AsyncIterator[int]) -> int:
    count = 0
    async for _ in items:
        count += 1
    return count


count_up = broker.task("count_up")(_count_up)
drain = broker.task("drain")(_drain)


# -- map nodes (benches/bench_map.py) -------------------------------------------------------------


@broker.task(task_name="ident")
async def ident(item: Any) -> Any:
    return item
