"""transport='broker' never reports success without real results (issue 9 item 3)."""

import asyncio

import nats
import pytest
from conftest import dag_of as build
from conftest import run
from taskiq_dataflow import ExecutionEngine, pipeline_task
from taskiq_nats import NatsBroker


def test_broker_without_result_backend_is_refused_before_sending_anything(server):
    broker = NatsBroker(server.url)

    @broker.task
    @pipeline_task(output="pid", inputs=[])
    async def pid():
        return 1

    async def main():
        watcher = await nats.connect(server.url)
        sent = []

        async def seen(msg):
            sent.append(msg.subject)

        await watcher.subscribe(">", cb=seen)
        await broker.startup()
        try:
            with pytest.raises(ValueError) as info:
                await ExecutionEngine(broker, build(pid), transport="broker").execute()
            await watcher.flush()
            await asyncio.sleep(0.1)
        finally:
            await broker.shutdown()
            await watcher.close()
        return str(info.value), [s for s in sent if not s.startswith("_INBOX")]

    message, sent = run(main())
    assert "NatsBroker" in message and "no result backend" in message
    assert "with_result_backend" in message and "transport='nats'" in message
    assert "\n" not in message
    assert sent == []  # refused at start: no task was published
