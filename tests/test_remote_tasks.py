"""Tasks implemented only in another service, referred to by name (RemoteTask), and workers that
advertise the names they serve: two services' workers share one server and pool, and each task
goes only to a worker that has it."""

from __future__ import annotations

import asyncio

import pytest
from cluster_support import two_services
from conftest import run
from taskiq_dataflow import DataflowRegistry, ExecutionEngine, TaskFailedError
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.errors import ClusterError, RemoteTaskError
from taskiq_dataflow.task import RemoteTask


def remote_dag(*, stream: bool = True):
    registry = DataflowRegistry()
    registry.register_task("svc_a:double", inputs=["foo"], output="doubled")
    registry.register_task("svc_b:count", inputs=["doubled"], output="bar", stream=stream)
    registry.register_task("svc_b:label", inputs=["doubled"], output="label")
    registry.register_task(RemoteTask("svc_a:total", ["bar"], "total", streams=["bar"]))
    return registry.build_dag()


# -- the reference, in this process --------------------------------------------------------------


def test_a_string_registers_a_remote_task_with_its_declared_keys():
    registry = DataflowRegistry()
    node = registry.register_task("svc:foobar", inputs=["foo"], output="bar")
    again = registry.register_task("svc:foobar", inputs=["foo"], output="bar")
    assert again == node and len(registry) == 1
    assert (node.task_name, node.inputs, node.outputs) == ("svc:foobar", ["foo"], ["bar"])
    assert node.task == RemoteTask("svc:foobar", ["foo"], "bar")
    assert not node.task.stream
    streamed = registry.register_task("svc:gen", inputs=["bar"], output="items", stream=True)
    assert streamed.task.stream and registry.get_task_metadata("svc:gen")["outputs"] == ["items"]


def test_a_remote_task_needs_its_inputs_and_an_output():
    registry = DataflowRegistry()
    with pytest.raises(TypeError, match=r"remote task 'svc:x': pass inputs=\[\.\.\.\]"):
        registry.register_task("svc:x", output="y")
    with pytest.raises(ValueError, match="remote task 'svc:x' declares no output"):
        registry.register_task("svc:x", inputs=[])
    with pytest.raises(TypeError, match="stream must be True or False"):
        RemoteTask("svc:x", [], "y", stream="yes")  # type: ignore[arg-type]


def test_in_process_a_remote_task_fails_for_want_of_an_implementation():
    registry = DataflowRegistry()
    registry.register_task("svc:foobar", inputs=["foo"], output="bar")
    engine = ExecutionEngine(None, registry.build_dag())
    with pytest.raises(TaskFailedError, match="no local implementation in this process") as info:
        run(engine.execute({"foo": 1}))
    assert info.value.error.type == RemoteTaskError.__name__
    assert "task 'svc:foobar'" in str(info.value)


def test_in_process_a_remote_stream_fails_as_well():
    registry = DataflowRegistry()
    registry.register_task("svc:gen", inputs=["foo"], output="bar", stream=True)
    with pytest.raises(TaskFailedError, match="'svc:gen' is a remote task"):
        run(ExecutionEngine(None, registry.build_dag()).execute({"foo": 1}))


# -- on the cluster: two services, one server, one pool ------------------------------------------


@pytest.fixture(scope="module")
def services(server):
    with two_services(server.url) as both:
        yield both


def engine_broker(server, **settings):
    # the engine's own broker: it registers none of the tasks it runs
    return DataflowNatsBroker(server.url, **settings)


def test_each_task_goes_only_to_the_service_that_serves_it(server, services):
    dag = remote_dag()
    engine = ExecutionEngine(engine_broker(server), dag)

    async def twenty_runs():
        return [await engine.execute({"foo": n}) for n in range(1, 21)]

    for n, out in enumerate(run(twenty_runs()), start=1):
        items = [i * 10 for i in range(2 * n)]
        # every reader of 'bar' read it live: the stream was not kept as a list
        assert out == {"doubled": 2 * n, "bar": None, "label": f"b saw {2 * n}", "total": items}


def test_a_remote_generator_declared_as_a_plain_task_fails_naming_stream_true(server, services):
    engine = ExecutionEngine(engine_broker(server), remote_dag(stream=False))
    with pytest.raises(TaskFailedError, match=r"is an async generator.*stream=True"):
        run(engine.execute({"foo": 2}))


def test_a_plain_task_declared_as_a_stream_fails_instead_of_hanging(server, services):
    registry = DataflowRegistry()
    registry.register_task("svc_a:double", inputs=["foo"], output="doubled", stream=True)
    engine = ExecutionEngine(engine_broker(server), registry.build_dag())
    with pytest.raises(TaskFailedError, match="is not an async generator"):
        run(asyncio.wait_for(engine.execute({"foo": 2}), 20))


def test_a_task_no_live_worker_serves_waits_then_fails_naming_it_and_the_workers(server, services):
    registry = DataflowRegistry()
    registry.register_task("svc_c:missing", inputs=["foo"], output="out")
    engine = ExecutionEngine(engine_broker(server, progress_timeout=1.5), registry.build_dag())
    loop_time = []

    async def timed():
        start = asyncio.get_running_loop().time()
        try:
            await engine.execute({"foo": 1})
        finally:
            loop_time.append(asyncio.get_running_loop().time() - start)

    with pytest.raises(TaskFailedError) as info:
        run(timed())
    message = str(info.value)
    assert info.value.error.type == ClusterError.__name__
    assert "no live worker of pool 'default' serves task 'svc_c:missing'" in message
    assert "'svc_a:double'" in message and "'svc_b:count'" in message  # the workers seen
    assert 1.5 <= loop_time[0] < 10


def test_a_worker_answers_a_name_it_lacks_sent_to_it_and_leaves_one_from_the_queue_group(
    server, services
):
    import nats
    from taskiq_dataflow.cluster.protocol import (
        DEFAULT_CODEC,
        decode_heartbeat,
        decode_results,
        encode_task_body,
        encode_tasks,
        task_part,
    )

    def frame(seq):
        body = encode_task_body(DEFAULT_CODEC, "svc_z:nope", [], {}, None)
        return encode_tasks(DEFAULT_CODEC, [task_part(seq, body)], "probe", reply, "ck")

    reply = "dataflow.results.probe.secret"

    async def main():
        nc = await nats.connect(server.url)
        beats, answers = asyncio.Queue(), []

        async def on_beat(msg):
            await beats.put(decode_heartbeat(DEFAULT_CODEC, msg.data))

        async def on_reply(msg):
            answers.append(decode_results(DEFAULT_CODEC, msg.data))

        try:
            await nc.subscribe("dataflow.heartbeat", cb=on_beat)
            await nc.subscribe(reply, cb=on_reply)
            beat = await asyncio.wait_for(beats.get(), 5)
            assert beat.tasks and "svc_z:nope" not in beat.tasks
            await nc.publish(beat.inbox, frame(1))
            await nc.publish("dataflow.tasks.default", frame(2))
            await asyncio.sleep(1.0)
        finally:
            await nc.close()
        return answers

    answers = run(main())
    assert [a.claims for a in answers] == [[1]]  # the queue group's entry is nobody's
    [(seq, ok, failure)] = answers[0].results
    assert (seq, ok, failure.type) == (1, False, "LookupError")
    assert "has no task named 'svc_z:nope'" in failure.message


def test_a_worker_whose_tasks_no_heartbeat_can_carry_fails_at_start():
    from taskiq_dataflow.cluster.protocol import MAX_TASK_NAMES
    from taskiq_dataflow.cluster.worker import Worker

    broker = DataflowNatsBroker("nats://127.0.0.1:1")  # never reached: it fails before
    for i in range(MAX_TASK_NAMES + 1):
        broker.register_task(lambda: None, task_name=f"many:t{i}")
    with pytest.raises(ValueError, match=r"worker w1 cannot advertise its tasks: nil or an"):
        run(Worker(broker, worker_id="w1").run())


def test_a_remote_task_goes_through_a_taskiq_broker_by_its_name():
    """transport='broker': the task is kicked by name; whatever serves that name runs it."""
    import asyncio

    from taskiq import InMemoryBroker
    from taskiq_dataflow import DataflowRegistry, ExecutionEngine

    broker = InMemoryBroker()

    async def double(x: int) -> int:  # the other service's implementation, under its name
        return 2 * x

    broker.register_task(double, task_name="svc:double")

    async def gen(x: int):
        yield x

    registry = DataflowRegistry()
    registry.register_external_input("x")
    registry.register_task("svc:double", inputs=["x"], output="y")
    engine = ExecutionEngine(broker, registry.build_dag(), transport="broker")
    assert asyncio.run(engine.execute({"x": 21})) == {"y": 42}

    streaming = DataflowRegistry()
    streaming.register_external_input("x")
    streaming.register_task("svc:gen", inputs=["x"], output="s", stream=True)
    engine = ExecutionEngine(broker, streaming.build_dag(), transport="broker")
    # a stream's items need the cluster's stream links: taskiq's result backend holds one value
    with pytest.raises(TaskFailedError, match="'svc:gen' is a remote task.*run it on the NATS"):
        asyncio.run(engine.execute({"x": 1}))
