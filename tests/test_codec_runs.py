"""The codec in whole runs: values that used to be refused by the store are stored and reused by
replay (no task runs twice), deep values go through the store and through workers, and hostile
deeply nested frames published on the cluster's subjects neither kill a worker nor an engine."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import fractions
import os

import cluster_tasks
import nats
import pytest
from cluster_support import WorkerProcesses, index_dag
from conftest import run
from taskiq_dataflow import DataflowRegistry, ExecutionEngine
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.cluster.protocol import MAX_DEPTH
from taskiq_dataflow.errors import DataflowExecutionError
from taskiq_dataflow.store import RunStore


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Box:
    width: int
    ratio: fractions.Fraction


def nest(depth: int) -> tuple | None:
    value = None
    for _ in range(depth):
        value = (value,)
    return value


def depth_of(value: object) -> int:
    depth = 0
    while value is not None:
        value, depth = value[0], depth + 1  # type: ignore[index]
    return depth


def test_replay_reuses_enums_dataclasses_fractions_and_deep_values(tmp_path):
    calls: list[str] = []

    def colour() -> Colour:
        calls.append("colour")
        return Colour.RED

    def box() -> Box:
        calls.append("box")
        return Box(3, fractions.Fraction(1, 3))

    def deep() -> tuple | None:
        calls.append("deep")
        return nest(500)  # 500 levels raised RecursionError in the store's encoder

    def describe(colour: Colour, box: Box, deep: tuple) -> str:
        calls.append("describe")
        return f"{colour.value} {box.width} {box.ratio} {depth_of(deep)}"

    registry = DataflowRegistry()
    registry.register_task(colour, output="colour", inputs=[])
    registry.register_task(box, output="box", inputs=[])
    registry.register_task(deep, output="deep", inputs=[])
    registry.register_task(describe, output="text", inputs=["colour", "box", "deep"])
    engine = ExecutionEngine(None, registry.build_dag(), store=RunStore(tmp_path / "runs.db"))
    first = run(engine.execute({}, pipeline_id="base"))
    assert first["text"] == "red 3 1/3 500"
    calls.clear()
    again = run(engine.replay("base", rerun={"describe"}, pipeline_id="again"))
    # each stored output is reused as its own type: only the task asked for runs again
    assert calls == ["describe"] and again["text"] == first["text"]
    assert again["colour"] is Colour.RED and again["box"] == Box(3, fractions.Fraction(1, 3))
    assert depth_of(again["deep"]) == 500


# -- on the cluster -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(server):
    with WorkerProcesses(server.url, workers=1, pool="codec", concurrency=4) as wp:
        yield wp


def engine_broker(server) -> DataflowNatsBroker:
    return DataflowNatsBroker(
        server.url,
        pool="codec",
        codec=cluster_tasks.broker.codec,
        heartbeat_timeout=2.0,
        progress_timeout=20.0,
    )


def echo_dag(inputs: dict[str, object]):
    registry = DataflowRegistry()
    for key in inputs:
        registry.register_external_input(key)
        registry.register_task(cluster_tasks.echo, output=f"out_{key}", inputs=[key], name=key)
    return registry.build_dag()


def test_deep_values_travel_to_a_worker_and_back(server, worker):
    # a 250-deep tuple as an input killed six workers in turn, as a result the engine
    inputs = {
        "t250": nest(250),
        "tmax": nest(MAX_DEPTH - 8),
        "level": cluster_tasks.Level.HIGH,
        "box": Box(1, fractions.Fraction(2)),
    }
    results = run(ExecutionEngine(engine_broker(server), echo_dag(inputs)).execute(inputs))
    assert depth_of(results["out_t250"]) == 250
    assert depth_of(results["out_tmax"]) == MAX_DEPTH - 8
    assert results["out_level"] is cluster_tasks.Level.HIGH
    # this module is not imported by the worker: there, as documented, Box is its fields
    assert results["out_box"] == {"width": 1, "ratio": fractions.Fraction(2)}
    assert worker.children()  # still the same workers, none died


def test_a_value_too_deep_to_send_fails_its_task_with_the_reason(server, worker):
    inputs = {"deep": nest(MAX_DEPTH + 1), "fine": 1}
    engine = ExecutionEngine(engine_broker(server), echo_dag(inputs), fail_fast=False)
    with pytest.raises(DataflowExecutionError) as info:
        run(engine.execute(inputs))
    [failure] = info.value.failures
    assert failure.task_name == "deep"
    assert f"nested deeper than {MAX_DEPTH} levels" in failure.message
    assert info.value.results["out_fine"] == 1


def ext_chain(code: int, depth: int) -> bytes:
    """What crashed the decoders: extension payloads nested `depth` deep (1,114 bytes at 200)."""
    data = b"\x90"
    for _ in range(depth):
        data = (b"\xc7" + bytes((len(data), code)) if len(data) < 256 else
                b"\xc8" + len(data).to_bytes(2, "big") + bytes((code,))) + data  # fmt: skip
    return data


HOSTILE = [
    b"\x83\xa1v\x02\xa1t\xa5tasks\xa5tasks" + ext_chain(1, 200),
    b"\x83\xa1v\x01\xa1t\xa2hb\xa1w" + ext_chain(1, 300),
    ext_chain(13, 2000),
    b"\x91" * 100_000,
    b"\x81\xa1t" + b"\x92\xd4\x0f\x00" * 5_000 + b"\xc0",  # 5,000 marker arrays (tuples)
]


def test_hostile_deep_frames_kill_neither_workers_nor_a_running_engine(server, worker):
    workers = set(worker.children())
    broker = engine_broker(server)

    async def scenario() -> dict[str, int]:
        bystander = await nats.connect(server.url)
        try:
            dag, inputs = index_dag(40, 0.05)
            running = asyncio.ensure_future(ExecutionEngine(broker, dag).execute(inputs))
            for _ in range(5):  # 21 such frames in 10 s ended the whole pool
                for frame in HOSTILE:
                    for subject in (broker.tasks_subject("codec"), broker.heartbeat_subject):
                        await bystander.publish(subject, frame)
                await bystander.flush()
                await asyncio.sleep(0.05)
            return await asyncio.wait_for(running, 20)
        finally:
            await bystander.close()

    results = run(scenario())
    assert results == {f"k{i}": i for i in range(40)}
    assert set(worker.children()) == workers and all(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
