"""The typed API under type checkers: tests/typed_program.py (pipeline_task under @broker.task,
.kiq, EventBus.subscribe with typed listeners) passes mypy --strict and pyright, and a program
that misuses it is refused."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run

TESTS = Path(__file__).parent
PYTHON_DIR = TESTS.parent / "python"

BAD_PROGRAM = """
from taskiq import InMemoryBroker
from taskiq_dataflow import EventBus, StepCompleted, StepFailed, pipeline_task

broker = InMemoryBroker()


@broker.task
@pipeline_task(output="doubled")
async def double(x: int) -> int:
    return x * 2


def on_failed(event: StepFailed) -> None:
    print(event.error)


async def main() -> None:
    await double.kiq("three")
    EventBus().subscribe(on_failed, StepCompleted)
"""


def mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR)}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(path)],
        capture_output=True, text=True, env=env, cwd=TESTS.parent, timeout=600,
    )  # fmt: skip


def test_typed_program_passes_mypy_strict(tmp_path):
    done = mypy(TESTS / "typed_program.py", tmp_path / "cache")
    assert done.returncode == 0, done.stdout + done.stderr


def test_misuse_is_refused_by_mypy(tmp_path):
    bad = tmp_path / "bad_program.py"
    bad.write_text(textwrap.dedent(BAD_PROGRAM))
    done = mypy(bad, tmp_path / "cache")
    assert done.returncode == 1, done.stdout
    # the wrong argument of .kiq, the listener that takes another event type than subscribed
    assert 'bad_program.py:19: error: No overload variant of "kiq"' in done.stdout
    assert "bad_program.py:20: error:" in done.stdout
    assert done.stdout.count("error:") == 2, done.stdout


def _pyright() -> str:
    beside = Path(sys.executable).with_name("pyright")  # the test extra installs it there
    found = os.environ.get("PYRIGHT") or (str(beside) if beside.exists() else None)
    found = found or shutil.which("pyright")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("pyright is missing: the [test] extra installs it (pyright[nodejs])")
        pytest.skip("pyright is not installed (set PYRIGHT to its executable)")
    return found


def pyright(path: Path, tmp_path: Path) -> dict:
    config = tmp_path / "pyrightconfig.json"
    config.write_text(json.dumps({"extraPaths": [str(PYTHON_DIR)], "pythonVersion": "3.11"}))
    done = subprocess.run(
        [_pyright(), "-p", str(config), "--pythonpath", sys.executable, "--outputjson", str(path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_typed_program_passes_pyright(tmp_path):
    report = pyright(TESTS / "typed_program.py", tmp_path)
    assert report["summary"]["errorCount"] == 0, report["generalDiagnostics"]


def test_misuse_is_refused_by_pyright(tmp_path):
    bad = tmp_path / "bad_program.py"
    bad.write_text(textwrap.dedent(BAD_PROGRAM))
    report = pyright(bad, tmp_path)
    found = report["generalDiagnostics"]
    assert {d["range"]["start"]["line"] + 1 for d in found} == {19, 20}, found
    messages = " ".join(d["message"] for d in found)
    assert 'parameter "x" of type "int" in function "kiq"' in messages
    assert '"type[StepCompleted]" is not assignable to "type[StepFailed]"' in messages


def test_typed_program_runs():
    sys.path.insert(0, str(TESTS))
    try:
        import typed_program
    finally:
        sys.path.remove(str(TESTS))
    # double.kiq(3) -> 6, plus the two outputs of the run; the second run is served from the
    # cache kept for a timedelta
    assert run(typed_program.main()) == 8
    assert typed_program.completed.count("double") == 4  # both listeners, both runs
    assert typed_program.cached == [False, True]
