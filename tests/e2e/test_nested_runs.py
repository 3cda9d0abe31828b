"""Nested runs through the real commands: two `taskiq-dataflow worker nested_tasks:broker`
processes (64 slots each) and a user's script (nested_run.py) whose 200 parents each await a
sub-run of 3 children on the same workers. Without seceding, the parents hold every slot and
the children wait behind them forever; here the run ends, with every child's value, within a
bound, and a child's failure reaches the script while the workers' slots stay whole."""

from __future__ import annotations

import json
import os
import sys

import pytest

from .support import E2E, ROOT, TESTS, URL_ENV, Processes, Server, Workers, run

pytestmark = pytest.mark.e2e

BOUND = 60.0  # seconds for a script's run; the 200 x 3 one takes about 3 s
CHILDREN = 3


def pythonpath() -> dict[str, str]:
    # this checkout's package first: the venv's own install may point at another tree
    return {"PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT / "python", E2E, TESTS))}


@pytest.fixture
def workers(procs: Processes, e2e_server: Server) -> Workers:
    target = "nested_tasks:broker"
    return Workers(procs, e2e_server.url, target=target, workers=2, env=pythonpath()).ready()


def script(procs: Processes, server: Server, *args: str) -> tuple[int, dict]:
    env = procs.env({URL_ENV: server.url, **pythonpath()})
    cmd = [sys.executable, str(E2E / "nested_run.py"), *args]
    outcome = run(procs, cmd, BOUND, env=env)
    lines = [line for line in outcome.stdout.splitlines() if line.startswith("{")]
    assert lines, outcome.describe()
    return outcome.code, json.loads(lines[-1])


def test_200_parents_awaiting_3_children_each_on_2_workers_x_64_slots_finish(
    procs, e2e_server, workers
):
    code, result = script(procs, e2e_server, "200", "0.05")
    assert code == 0, result
    outputs = result["results"]
    assert {key: value["children"] for key, value in outputs.items()} == {
        f"p{i}": [i * 10 + k for k in range(CHILDREN)] for i in range(200)
    }
    assert {value["pid"] for value in outputs.values()} == workers.beating_pids()
    assert max(value["peak"] for value in outputs.values()) <= 64  # the bound held
    assert result["seconds"] < BOUND


def test_a_failing_child_fails_its_parent_and_leaves_the_slots_whole(procs, e2e_server, workers):
    code, result = script(procs, e2e_server, "20", "0.01", "refusing")
    assert code == 1
    assert "parent_of_refusing" in result["error"], result
    assert f"child {CHILDREN - 1} of parent" in result["error"] and "refuses" in result["error"]
    # the failed parents gave back what they held: a full nested run still fits afterwards
    code, result = script(procs, e2e_server, "130", "0.02")
    assert code == 0, result
    assert len(result["results"]) == 130
