"""taskiq middlewares and argument parsing on real `taskiq-dataflow worker` processes: the
worker runs its broker's middlewares around each task (startup and shutdown with the worker),
parses arguments to their type hints, and refuses one that cannot be parsed, naming the task
and the parameter."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from pathlib import Path

import pytest

from .support import E2E, ROOT, TESTS, URL_ENV, Processes, Server, Workers, wait_until

pytestmark = pytest.mark.e2e


def logged(path: Path) -> list[list]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_worker_runs_the_middlewares_and_parses_arguments(
    procs: Processes, e2e_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hooks.jsonl"
    # the package of this checkout first, as the engine below imports it
    path = os.pathsep.join(str(p) for p in (ROOT / "python", E2E, TESTS))
    workers = Workers(procs, e2e_server.url, target="middleware_tasks:broker", workers=1,
                      env={"E2E_MIDDLEWARE_LOG": str(log), "PYTHONPATH": path}).ready()  # fmt: skip
    monkeypatch.setenv(URL_ENV, e2e_server.url)
    monkeypatch.syspath_prepend(str(E2E))
    sys.modules.pop("middleware_tasks", None)
    tasks = importlib.import_module("middleware_tasks")
    from taskiq_dataflow import DataflowRegistry, ExecutionEngine, TaskFailedError

    registry = DataflowRegistry()
    registry.register_task(tasks.inc)
    registry.register_task(tasks.halve)
    engine = ExecutionEngine(tasks.broker, registry.build_dag(), transport="nats")
    # "4" is parsed to 4 on the worker (x: int), as taskiq's receiver parses it
    assert asyncio.run(engine.execute({"x": "4"})) == {"y": 5, "z": 2.5}
    worker_pid = next(iter(workers.children()))
    hooks = [entry[1:] for entry in logged(log) if entry[0] != os.getpid()]
    assert hooks == [
        ["startup"],
        ["pre_execute", "mw:inc", [], {"x": "4"}],
        ["post_execute", "mw:inc", False, 5],
        ["post_save", "mw:inc"],
        ["pre_execute", "mw:halve", [], {"y": 5}],
        ["post_execute", "mw:halve", False, 2.5],
        ["post_save", "mw:halve"],
    ], workers.log()
    assert {entry[0] for entry in logged(log)} == {worker_pid}  # none ran in the engine

    with pytest.raises(TaskFailedError) as info:
        asyncio.run(engine.execute({"x": "four"}))
    error = info.value.error
    assert error.type == "TaskArgumentError"
    assert error.message.startswith(
        "Can't parse argument 'x' for task 'inc': 'four' (str) is not a valid int"
    )
    assert [entry[1:] for entry in logged(log)][-3:] == [
        ["on_error", "mw:inc", "TaskArgumentError"],
        ["post_execute", "mw:inc", True, None],
        ["post_save", "mw:inc"],
    ]

    procs.end_group(workers.process)
    wait_until(lambda: logged(log)[-1][1:] == ["shutdown"], 10, "the middleware's shutdown")
