"""The cluster past one machine: hosts as network namespaces (tests/e2e/netbed.py), three
nats-servers joined by routes (JetStream, the object store R3), `taskiq-dataflow worker`s on each
host connected to their own host's server first, the engine on a host of its own.

The drills (multihost_drills.py) lose a host's link, a worker host's server, the engine's
server, the server holding a large value, and the engine's host itself; each test asserts that
nothing is lost or accepted twice, and bounds the time. The same drills at full size are
measured in RELIABILITY.md (benches/bench_multihost.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from . import multihost_drills as drills
from . import netbed
from .multihost_drills import SPARE, WORKER_HOSTS, Bed

pytestmark = pytest.mark.e2e

REASON = netbed.unavailable()
if REASON is not None and os.environ.get("CI") != "true":
    pytest.skip(f"multi-host test bed unavailable: {REASON}", allow_module_level=True)
# in CI a missing test bed is a failure, not a skip (the fixture says why)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if REASON is not None:
        pytest.fail(f"CI must run the multi-host drills, but: {REASON}")
    made = Bed(tmp_path_factory.mktemp("multihost"))
    try:
        made.start()
        drills.wait_for_workers(made)
        yield made
    finally:
        made.close()


def assert_whole(figures: dict[str, Any]) -> None:
    assert figures["error"] is None, figures["error"]
    assert figures["lost"] == 0, "tasks lost"
    assert figures["accepted_twice"] == 0, "a task's result was accepted twice"
    assert figures["executions"] >= figures["tasks"]


def test_workers_on_every_host_run_one_dag(bed: Bed) -> None:
    bed.reset_ledger()
    result = drills.finish(bed.engine("wide", ",".join(bed.cluster.urls), "200", "20"), 120)
    figures = drills.tally(bed, result)
    assert_whole(figures)
    done = bed.executions()
    assert all(done[h] > 0 for h in WORKER_HOSTS), done
    assert figures["re_executed"] == 0  # nothing runs twice on a quiet cluster


def test_worker_host_cut_off_past_the_heartbeat_timeout_then_healed(bed: Bed) -> None:
    """100k tasks; h2's link is down for 2.5 heartbeat timeouts mid-run, then back."""
    started = time.monotonic()
    figures = drills.cut_worker_host(bed, 1000, 100, "h2")
    assert_whole(figures)
    assert figures["requeued"] > 0, "the cut-off host's tasks were never requeued"
    before, during = figures["before"], figures["during"]
    # the healthy hosts kept working while h2 was away; h2 did nothing
    assert during["h1"] > before["h1"] and during["h3"] > before["h3"], (before, during)
    assert 0 <= figures["requeued_after"] < 3 * drills.HEARTBEAT_TIMEOUT, figures
    assert time.monotonic() - started < 300


def test_worker_hosts_server_killed_its_workers_fail_over(bed: Bed) -> None:
    figures = drills.kill_worker_hosts_server(bed, 400, 50, "h2")
    assert_whole(figures)
    # h2's workers reconnected to h1 or h3 and went on serving
    assert figures["host_executions_after"] > 0, "h2's workers never ran a task after the kill"


def test_engines_server_killed_the_engine_fails_over(bed: Bed) -> None:
    figures = drills.lose_engines_server(bed, 400, 50, "h3", "kill")
    assert_whole(figures)
    assert 0 <= figures["resumed_after"] < 20, figures


def test_engines_server_cut_off_the_engine_gives_it_up_and_fails_over(bed: Bed) -> None:
    """A silent server (its host's link down, its workers with it): the engine's pings go
    unanswered, it moves to another server, and h3's tasks go to the other hosts' workers."""
    figures = drills.lose_engines_server(bed, 400, 50, "h3", "cut")
    assert_whole(figures)
    assert figures["requeued"] > 0, figures  # h3's workers were lost with their server
    assert 0 <= figures["resumed_after"] < 20, figures


def test_large_value_survives_the_loss_of_the_server_that_stored_it(bed: Bed) -> None:
    figures = drills.lose_large_values_server(bed)
    assert_whole(figures)
    assert figures["intact"], figures["result"]["digest"]
    assert figures["result"]["stats"]["values_by_reference"] >= 1  # it went through the store
    assert figures["replicas"] == 3
    assert figures["read_after"] < 40


def test_engine_host_lost_mid_run_another_host_restarts_the_run(bed: Bed) -> None:
    """The run store on a path both engine hosts reach (here the same file system; across
    machines a shared volume, docs/deployment.md): the engine's host is cut off and its engine
    killed mid-run; `runs restart` on another host completes the run."""
    figures = drills.lose_engine_host(bed)
    early, second, row = figures["early"], figures["second"], figures["row"]
    # until the store's heartbeat is 10 s late, another host may not take the run over
    assert early.returncode == 2 and "is still running" in early.stderr, early.stderr
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"run {figures['run_id']} restarted" in second.stderr
    assert row["status"] == "succeeded", row
    assert row["owner_host"] == SPARE, row
    assert figures["lost"] == 0
    # the restart ran what was left (and what the lost engine had in flight), not everything
    assert 0 < figures["executions_before_loss"] < figures["tasks"], figures
    assert figures["executions"] - figures["executions_before_loss"] < figures["tasks"], figures
    assert figures["recovered"] < 60
