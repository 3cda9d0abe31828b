"""Drill: an engine with a run store is SIGKILLed mid-run; the store says the run was
interrupted, and restart() finishes it without running a completed task again."""

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from taskiq_dataflow import ExecutionEngine, RunStore

pytestmark = pytest.mark.e2e

PIPELINE = textwrap.dedent(
    """
    import asyncio
    import sys

    from taskiq_dataflow import DataflowRegistry, ExecutionEngine, RunStore, pipeline_task

    LOG = None


    def note(name):
        with open(LOG, "a") as f:
            f.write(name + "\\n")


    def make_dag(slow):
        registry = DataflowRegistry()

        def step(i):
            inputs = [] if i == 0 else [f"s{i - 1}"]

            @pipeline_task(output=f"s{i}", inputs=inputs, name=f"step{i}")
            async def work(*previous):
                await asyncio.sleep(slow)
                note(f"step{i}")
                return i + sum(previous)

            return work

        for i in range(8):
            registry.register_task(step(i))
        return registry.build_dag()


    if __name__ == "__main__":
        db, LOG = sys.argv[1], sys.argv[2]
        engine = ExecutionEngine(None, make_dag(0.3), store=RunStore(db))
        asyncio.run(engine.execute(pipeline_id="drill"))
    """
)


def load(path):
    spec = importlib.util.spec_from_file_location("drill_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logged(path):
    return path.read_text().split() if path.exists() else []


def test_sigkilled_engine_is_reported_interrupted_and_restart_completes_it(tmp_path):
    script, db, log = tmp_path / "drill_pipeline.py", tmp_path / "runs.db", tmp_path / "log"
    script.write_text(PIPELINE)
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(log)], env=os.environ)
    deadline = time.monotonic() + 20
    while len(logged(log)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = logged(log)
    assert 3 <= len(before) < 8, before

    store = RunStore(db)
    assert [(r["run_id"], r["status"]) for r in store.list_runs()] == [("drill", "interrupted")]
    stored = {r["task_name"] for r in store.get_task_executions("drill")
              if r["status"] == "completed"}  # fmt: skip
    assert stored and stored <= set(before)

    log.unlink()
    module = load(script)
    module.LOG = str(log)
    engine = ExecutionEngine(None, module.make_dag(0.0), store=store)
    out = asyncio.run(engine.restart("drill"))
    again = logged(log)
    assert not stored & set(again)  # no completed task ran twice
    assert stored | set(again) == {f"step{i}" for i in range(8)}
    assert out["s7"] == sum(range(8))  # restored values feed the rest as if never stopped
    assert store.get_run("drill")["status"] == "succeeded"
