"""Who may speak for a run: a bystander on the same server, publishing forged results and
rejections on the run's subjects (read off the task frames it can see, or guessed from the run
id), changes nothing; secrets in a server URL never reach an error or a log line."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import Any

import cluster_tasks
import nats
import pytest
from cluster_support import CODEC, WorkerProcesses, index_dag
from conftest import run
from taskiq_dataflow import ExecutionEngine, TaskFailedError
from taskiq_dataflow.cluster import ClusterError, DataflowNatsBroker, NatsServer
from taskiq_dataflow.cluster.protocol import RESULTS

BOUND = 20.0


@pytest.fixture(scope="module")
def workers(server):
    with WorkerProcesses(server.url, workers=2, pool="trust") as wp:
        yield wp


def forgery(frame: dict[str, Any], forger: str) -> bytes:
    """Results for every task of a frame, and a rejection of the run, from `forger`."""
    seqs = [seq for seq, _ in frame["tasks"]]
    results = [[seq, True, "forged"] for seq in seqs]
    results.append([None, False, ["ProtocolError", "forged rejection", ""]])
    return CODEC.frame(RESULTS, w=forger, claims=seqs, results=results)


def test_forged_results_and_rejections_change_nothing(server, workers):
    n = 60
    dag, inputs = index_dag(n, delay=0.05)  # the forger answers long before the workers
    broker = DataflowNatsBroker(
        server.url, pool="trust", codec=cluster_tasks.codec, heartbeat_timeout=1.0
    )
    seen: dict[str, int] = {"frames": 0, "forged": 0}

    async def main() -> Any:
        nc = await nats.connect(server.url)

        async def on_tasks(msg: Any) -> None:
            frame = CODEC.read_frame(msg.data)
            seen["frames"] += 1
            run_id = frame["run"]
            # one that reads the task frames knows the real subject; it forges as itself and as
            # a made-up worker, claims and all
            for forger in ("forger-1-abc", "intruder"):
                await nc.publish(frame["reply"], forgery(frame, forger))
            # one that only knows the run id guesses the subjects of old
            await nc.publish(f"{broker.prefix}.results.{run_id}", forgery(frame, "guesser"))
            await nc.publish(f"{broker.prefix}.cancel.{run_id}", b"")
            seen["forged"] += 1

        try:
            await nc.subscribe(f"{broker.prefix}.worker.*", cb=on_tasks)
            await nc.subscribe(broker.tasks_subject("trust"), cb=on_tasks)
            await nc.flush()
            engine = ExecutionEngine(broker, dag)
            out = await asyncio.wait_for(engine.execute(inputs), BOUND)
            return out, engine.stats
        finally:
            await nc.close()

    out, stats = run(main())
    assert {k: v for k, v in out.items() if k.startswith("k")} == {f"k{i}": i for i in range(n)}
    assert seen["forged"] >= 1
    assert stats["results_ignored"] >= n, stats  # every forged entry was refused


USER, PASSWORD = "bob", "pw-never-printed-0xC0FFEE"


@pytest.fixture(scope="module")
def secure():
    with NatsServer(extra_args=["--user", USER, "--pass", PASSWORD]) as srv:
        yield srv


def secret_url(server: NatsServer) -> str:
    return server.url.replace("nats://", f"nats://{USER}:{PASSWORD}@")


def texts(exc: BaseException, caplog: Any) -> str:
    """Everything a user could see: the message, the traceback, the log."""
    return "\n".join(
        [str(exc), "".join(traceback.format_exception(exc)), caplog.text, repr(exc.__cause__)]
    )


def test_no_progress_error_never_shows_the_password_of_the_url(secure, caplog):
    caplog.set_level(logging.DEBUG)
    broker = DataflowNatsBroker(secret_url(secure), pool="nobody", progress_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ClusterError) as info:
        run(ExecutionEngine(broker, index_dag(2, 0.0)[0]).execute(index_dag(2, 0.0)[1]))
    assert time.monotonic() - started < 10
    assert "made no progress" in str(info.value)
    assert f"{USER}:***@" in str(info.value)  # says where it tried, without the secret
    assert PASSWORD not in texts(info.value, caplog)


def test_task_failure_for_a_pool_nobody_serves_never_shows_the_password(secure, caplog):
    caplog.set_level(logging.DEBUG)
    broker = DataflowNatsBroker(
        secret_url(secure), pool="nobody", heartbeat_timeout=0.2, max_redeliveries=1
    )
    dag, inputs = index_dag(2, 0.0)
    with pytest.raises(TaskFailedError) as info:
        run(ExecutionEngine(broker, dag).execute(inputs))
    assert "no worker serves pool 'nobody'" in str(info.value)
    assert PASSWORD not in texts(info.value, caplog)
