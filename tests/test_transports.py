"""Transports only kick: completions go to the one Sink the driver attached; placement comes
from the Router, not from the transports."""

import asyncio

from taskiq import InMemoryBroker
from taskiq_dataflow import pipeline_task
from taskiq_dataflow.cluster.broker import DataflowNatsBroker
from taskiq_dataflow.cluster.transport import NatsTransport
from taskiq_dataflow.router import Placement, Router
from taskiq_dataflow.task import InEngine
from taskiq_dataflow.transports.base import Job, Sink
from taskiq_dataflow.transports.broker import BrokerTransport
from taskiq_dataflow.transports.local import LocalTransport


async def double(x):
    return 2 * x


def job(node, func=double, place=None):
    return Job(node, 1, func, func, (node,), {}, f"t{node}", None, None, place)


def test_every_transport_and_its_in_process_helper_complete_into_the_attached_sink():
    async def go():
        sink = Sink()
        broker = BrokerTransport(InMemoryBroker())
        nats = NatsTransport(DataflowNatsBroker("nats://127.0.0.1:1"), "r")
        local = LocalTransport()
        for transport in (local, broker, nats):
            transport.attach(sink)
        local.kick([job(1)])
        # placed here: the broker and NATS transports hand the job to their LocalTransport,
        # whose completion lands in the same sink (not in the outer transport)
        broker.kick([job(2, place=Placement(True, None, ""))])
        nats.kick([job(3, place=Placement(True, None, ""))])
        await asyncio.wait_for(sink.wait(), 5)
        return sorted((c.node, c.value) for c in sink.take())

    assert asyncio.run(go()) == [(1, 2), (2, 4), (3, 6)]


def test_a_remote_placement_of_a_plain_function_fails_its_task_by_name():
    async def go():
        sink = Sink()
        broker = BrokerTransport(InMemoryBroker())
        broker.attach(sink)
        broker.kick([job(5, place=Placement(False, None, ""))])
        return sink.take()

    (done,) = asyncio.run(go())
    assert not done.ok and "task 't5' is a plain function" in done.value.message


def test_router_places_per_task_and_per_node_settings():
    @pipeline_task(output="o", pool="gpu")
    async def on_gpu():
        return 1

    on_gpu.task_name = "mod:on_gpu"  # registered on a broker
    cluster = Router(remote=True, streams_travel=True, default_pool="default")
    assert cluster.place(on_gpu) == Placement(False, "mod:on_gpu", "gpu")
    assert cluster.place(on_gpu, (True, None)) == Placement(True, "mod:on_gpu", "")
    assert cluster.place(on_gpu, (None, "cpu")) == Placement(False, "mod:on_gpu", "cpu")
    assert cluster.place(InEngine(double)).local  # local=True control nodes stay here
    assert Router.in_process().place(on_gpu, (False, "x")).local  # nowhere else to go
