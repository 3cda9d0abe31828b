"""Every ```python block of taskiq-flow's documentation runs on us with only the import changed.

The pages are read from ../shared/reference/taskiq-flow-docs/ (or $TASKIQ_FLOW_DOCS); their code
is not copied into the project. Each block runs in its own interpreter, in an empty directory,
with `taskiq_flow` rewritten to `taskiq_dataflow`; a block with a top-level `await` runs in an
event loop, as the pages mean it to.

Blocks that do not run on taskiq-flow 1.2.2 itself (fragments, placeholders, APIs the pages
describe but 1.2.2 lacks) are listed in FAILS_ON_1_2_2 with the reason, and are not required;
blocks that run on 1.2.2 only because it loses task errors are in RIGHTLY_FAIL, and must fail
on us naming the culprit.
Regenerate the list with taskiq-flow 1.2.2 installed in a throwaway venv:

    python tests/test_taskiq_flow_docs.py --python /tmp/tf-venv/bin/python --original
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = Path(
    os.environ.get("TASKIQ_FLOW_DOCS", ROOT.parent / "shared" / "reference" / "taskiq-flow-docs")
)
TIMEOUT = 60.0

_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)

# Runs the block from a file, so tracebacks show its lines; a top-level `await` makes the
# compiled module a coroutine.
_RUNNER = """\
import ast, asyncio, sys
path = sys.argv[1]
code = compile(open(path).read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
outcome = eval(code, {"__name__": "__main__", "__file__": path})
if asyncio.iscoroutine(outcome):
    asyncio.run(outcome)
"""


class Block(NamedTuple):
    id: str  # "<page>:<first 10 hex digits of the block's sha1>"
    page: str
    line: int
    text: str


def doc_blocks(docs: Path = DOCS) -> list[Block]:
    blocks = []
    for page in sorted(docs.glob("*.md")):
        source = page.read_text()
        for match in _FENCE.finditer(source):
            text = match.group(1)
            digest = hashlib.sha1(text.encode()).hexdigest()[:10]
            line = source.count("\n", 0, match.start()) + 1
            blocks.append(Block(f"{page.name}:{digest}", page.name, line, text))
    return blocks


def run_block(
    block: Block, python: str, original: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `block` with `python` in a fresh directory (as taskiq-flow code when `original`)."""
    text = block.text if original else block.text.replace("taskiq_flow", "taskiq_dataflow")
    with tempfile.TemporaryDirectory(prefix="tf-doc-") as cwd:
        script = Path(cwd) / "block.py"
        script.write_text(text)
        env = dict(os.environ)
        if not original:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(ROOT / "python"), *filter(None, [env.get("PYTHONPATH")])]
            )
        else:
            env.pop("PYTHONPATH", None)
        return subprocess.run(
            [python, "-c", _RUNNER, str(script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )


# Blocks that fail on taskiq-flow 1.2.2 itself, so they are not required on us.
FAILS_ON_1_2_2: dict[str, str] = {
    "README.md:a78daf6c77": "fragment: `broker = ...` is a placeholder",
    "README.md:67b18bef90": "fragment: uses undefined `Pipeline`",
    "README.md:7704c97cf0": "fragment: uses undefined `broker`",
    "README.md:a5422bd23f": "fragment: uses undefined `pipeline`",
    "README.md:d2084f8dae": "fragment: uses undefined `pipeline`",
    "README.md:e4b9787ce2": "fragment: uses undefined `pipeline`",
    "README.md:501ac7ad0f": "fragment: uses undefined `broker`",
    "README.md:0f6b8d97dc": "fragment: uses undefined `broker`",
    "README.md:d5218bf9d4": "fragment: uses undefined `broker`",
    "README.md:655e039330": "fragment: uses undefined `pipeline`",
    "README.md:c47d92f6b3": "fragment: uses undefined `broker`",
    "README.md:fbbb40cca0": "fragment: uses undefined `broker`",
    "README.md:1b4dfcf551": "fragment: uses undefined `broker`",
    "README.md:50ca6231d2": "fragment: uses undefined `load_data`",
    "README.md:2a705929c4": "1.2.2 has no `integration.websocket.get_websocket_server`",
    "README.md:780605678d": "1.2.2 has no `create_visualization_api` in `taskiq_flow`",
    "README.md:1f4e4ab823": "fragment: undefined `broker` (and needs PyJWT)",
    "api-core.md:81d3a50fbc": "fragment: uses undefined `broker`",
    "api-core.md:a9d0d62a92": "signature listing, not code (annotated call arguments)",
    "api-core.md:d5441fed1d": "fragment: uses undefined `Pipeline`",
    "api-core.md:88890a16bc": "fragment: uses undefined `broker`",
    "api-core.md:1bc1ab52de": "signature listing, not code (annotated call arguments)",
    "api-core.md:4033768f16": "fragment: uses undefined `broker`",
    "api-core.md:cfeb8126c3": "fragment: uses undefined `broker`",
    "api-core.md:26ccc56bc1": "1.2.2 has no `PipelineContext` in `taskiq_flow`",
    "api-core.md:ca0b915ae1": "1.2.2 has no `TaskiqFlowError` in `taskiq_flow`",
    "api-core.md:9337d4a4a2": "fragment: uses undefined `CycleError`",
    "api-core.md:6eae4033b7": "fragment: uses undefined `task`",
    "api-core.md:c22ceae865": "fragment: uses undefined `broker`",
    "api-core.md:cb3666ff03": "fragment: uses undefined `broker`",
    "api-decorators.md:dc688113d6": "fragment: uses undefined `broker`",
    "api-decorators.md:86f05a4a19": "fragment: uses undefined `broker`",
    "api-decorators.md:26a3c3c41a": "fragment: uses undefined `broker`",
    "api-decorators.md:95c53301f7": "fragment: uses undefined `broker`",
    "api-decorators.md:d1f36a022a": "fragment: uses undefined `broker`",
    "api-decorators.md:77e83e2dd4": "fragment: uses undefined `extract_task`",
    "api-decorators.md:2afe03a97a": "1.2.2 has no `get_task_inputs` in `taskiq_flow`",
    "api-decorators.md:a0fbcbb273": "fragment: uses undefined `my_func`",
    "api-decorators.md:cecf2e8497": "1.2.2 has no `resolve_task_dependencies` in `taskiq_flow`",
    "api-decorators.md:30f279c9d2": "fragment: uses undefined `broker`",
    "api-decorators.md:468803de6b": "fragment: uses undefined `broker`",
    "api-decorators.md:b1643b0fd7": "fragment: uses undefined `broker`",
    "api-execution.md:69436f9e90": "fragment: uses undefined `load`",
    "api-execution.md:de684b0c0a": "signature listing, not code (annotated call arguments)",
    "api-execution.md:60375d8848": "fragment: uses undefined `Any`",
    "api-execution.md:c56398ce5c": "fragment: uses undefined `my_task`",
    "api-execution.md:2184bc8770": "fragment: uses undefined `my_task_function`",
    "api-execution.md:79743e0de3": "1.2.2's DAGBuilder has no `add_task`",
    "api-execution.md:7f9558f97a": "fragment: uses undefined `DAGBuilder`",
    "api-execution.md:138dd2c02f": "signature listing, not code (annotated call arguments)",
    "api-execution.md:24418e4563": "signature listing, not code (annotated call arguments)",
    "api-execution.md:f1e781d21c": "fragment: uses undefined `MapReduce`",
    "api-execution.md:a3b95a8a2b": "fragment: uses undefined `extract`",
    "examples-dag_visualization_demo.md:81103c066b": "fragment: uses undefined `pipeline`",
    "examples-dag_visualization_demo.md:ad89f47db7": "fragment: uses undefined `dag`",
    "examples-dag_visualization_demo.md:40f3357a7b": "fragment: uses undefined `visualizer`",
    "examples-dag_visualization_demo.md:0bd247123c": "fragment: uses undefined `visualizer`",
    "examples-dag_visualization_demo.md:7525c1cbf0": "fragment: uses undefined `visualizer`",
    "examples-dag_visualization_demo.md:4fe94b08aa": "1.2.2 has no `integration.nicegui.mermaid`",
    "examples-dataflow-audio-pipeline.md:a1a633e93e": "fragment: uses undefined `broker`",
    "examples-dataflow-audio-pipeline.md:b3d2090b24": "fragment: uses undefined `broker`",
    "examples-dataflow-audio-pipeline.md:0a4aec85a9": "fragment: uses undefined `pipeline`",
    "examples-registry-discovery.md:399d93afb0": "fragment: uses undefined `broker`",
    "examples-registry-discovery.md:eee99afef0": "fragment: the indented body of a function",
    "guides-dataflow.md:963d754cff": "fragment: uses undefined `broker`",
    "guides-dataflow.md:9920183bcd": "fragment: uses undefined `broker`",
    "guides-dataflow.md:240b17e981": "fragment: uses undefined `DataflowPipeline`",
    "guides-dataflow.md:bb1d2bb831": "fragment: uses undefined `DataflowPipeline`",
    "guides-dataflow.md:e88ec95a79": "fragment: uses undefined `broker`",
    "guides-dataflow.md:314aa34c9e": "fragment: uses undefined `pipeline`",
    "guides-dataflow.md:be3f5c7a7f": "fragment: uses undefined `load_data`",
    "guides-dataflow.md:efaf344724": "fragment: uses undefined `dag`",
    "guides-dataflow.md:1be8f630ce": "fragment: uses undefined `dag`",
    "guides-dataflow.md:6aa0c6042c": "fragment: uses undefined `pipeline`",
    "guides-dataflow.md:c16ac17d69": "fragment: uses undefined `broker`",
    "guides-dataflow.md:249c12bdb3": "fragment: uses undefined `broker`",
    "guides-dataflow.md:7bbf0f8656": "fragment: uses undefined `DataflowPipeline`",
    "guides-dataflow.md:f7e12cb47c": "fragment: uses undefined `Pipeline`",
    "guides-dataflow.md:b6c8972080": "fragment: uses undefined `broker`",
    "guides-dataflow.md:348887b896": "fragment: uses undefined `ExecutionEngine`",
    "guides-dataflow.md:65b6c5a3de": "fragment: uses undefined `broker`",
    "guides-dataflow.md:1f1804bf3d": "fragment: uses undefined `ExecutionEngine`",
    "guides-dataflow.md:4c365cb8f3": "fragment: uses undefined `pipeline`",
    "guides-dataflow.md:9a510fce6f": "fragment: uses undefined `dag`",
    "guides-dataflow.md:4b6155d648": "fragment: uses undefined `dag`",
    "guides-execution.md:143ee3aeb0": "fragment: uses undefined `Pipeline`",
    "guides-execution.md:4530d09f82": "fragment: uses undefined `broker`",
    "guides-execution.md:b96cd398b7": "fragment: uses undefined `broker`",
    "guides-execution.md:3cfd4536bf": "fragment: uses undefined `pipeline`",
    "guides-execution.md:0e308a46f9": "fragment: uses undefined `pipeline`",
    "guides-execution.md:fccf145f05": "fragment: uses undefined `pipeline`",
    "guides-execution.md:dfaad10707": "fragment: uses undefined `pipeline`",
    "guides-execution.md:86b020fced": "fragment: uses undefined `pipeline`",
    "guides-execution.md:15643b25a8": "taskiq has no `Task` class (and `broker` is undefined)",
    "guides-execution.md:7f55218ff3": "fragment: uses undefined `Pipeline`",
    "guides-execution.md:1b306c637b": "fragment: uses undefined `TaskiqError`",
    "guides-execution.md:b44691c739": "fragment: uses undefined `pipeline`",
    "guides-execution.md:559a30c873": "fragment: uses undefined `Pipeline`",
    "guides-execution.md:c3c51cd391": "1.2.2 has no `PipelineContext` in `taskiq_flow`",
    "guides-execution.md:dc65866817": "fragment: uses undefined `Pipeline`",
    "guides-execution.md:b5ed1d47a3": "fragment: uses undefined `load`",
    "guides-execution.md:d7b8d7e503": "fragment: uses undefined `pipeline`",
    "guides-execution.md:a6ec8fee43": "fragment: uses undefined `pipeline`",
    "guides-execution.md:ecf4fb9573": "fragment: uses undefined `MapReduce`",
    "guides-execution.md:bfcd253a4b": "fragment: uses undefined `broker`",
    "guides-execution.md:1d77759a0d": "fragment: uses undefined `pipeline`",
    "guides-execution.md:bf1082229d": "fragment: uses undefined `broker`",
    "guides-execution.md:77b4c51e36": "fragment: uses undefined `broker`",
    "guides-execution.md:fd9b74d97d": "1.2.2 has no `optimization.parallel.set_max_parallel_tasks`",
    "guides-execution.md:8e30e2a095": "fragment: uses undefined `pipeline`",
    "guides-execution.md:9f54825a9c": "fragment: uses undefined `split_into_chunks`",
    "guides-migration.md:7f407b6965": "1.2.2 has no `create_visualization_api` in `taskiq_flow`",
    "guides-migration.md:bb2adfa27b": "fragment: uses undefined `TaskiqFlowConfig`",
    "guides-migration.md:6fc2914a93": "fragment: uses undefined `broker`",
    "guides-migration.md:7493f74c23": "fragment: uses undefined `Pipeline`",
    "guides-migration.md:83bb05e3ed": "fragment: uses undefined `ExecutionEngine`",
    "guides-migration.md:ab2f2d2c90": "fragment: uses undefined `InMemoryBroker`",
    "guides-migration.md:50035c4a24": "fragment: uses undefined `TransportMiddleware`",
    "guides-migration.md:4c0a1e4577": "1.2.2 has no `MetricsCollector` in `taskiq_flow`",
    "guides-migration.md:398978b65a": "fragment: uses undefined `app`",
    "guides-migration.md:22261dc19f": "fragment: uses undefined `app`",
    "guides-migration.md:240ac52796": "JavaScript, not Python",
    "guides-migration.md:e364601784": "fragment: an `if` without a body",
    "guides-migration.md:85b91f2810": "no `create_redis_storage` in 1.2.2 (needs Redis too)",
    "guides-migration.md:292a2d96e8": "fragment: undefined `config` (and needs PyJWT)",
    "guides-migration.md:4f48cdcee8": "fragment: uses undefined `ws`",
    "guides-migration.md:8c9eb45ac1": "fragment: uses undefined `TransportMiddleware`",
    "guides-migration.md:ed251cce18": "fragment: uses undefined `MetricsCollector`",
}


# Blocks that run on 1.2.2 only because of its bugs (NOTES.md: a task that raises counts as a
# success with output None): on us they must fail, naming the culprit. id -> (reason, texts the
# error must contain).
RIGHTLY_FAIL: dict[str, tuple[str, tuple[str, ...]]] = {
    "api-decorators.md:4a1f1a7807": (
        "its tasks call undefined `read_file`, `preprocess`, `compute_stats`",
        ("TaskFailedError", "'load'", "read_file"),
    ),
}


_BLOCKS = doc_blocks() if DOCS.is_dir() else []


@pytest.mark.skipif(
    not DOCS.is_dir(),
    reason=f"taskiq-flow's documentation is not at {DOCS} (set TASKIQ_FLOW_DOCS to its folder)",
)
@pytest.mark.parametrize("block", _BLOCKS or [None], ids=[b.id for b in _BLOCKS] or ["none"])
def test_doc_block_runs(block: Block | None) -> None:
    assert block is not None
    reason = FAILS_ON_1_2_2.get(block.id)
    if reason is not None:
        pytest.skip(f"fails on taskiq-flow 1.2.2 too: {reason}")
    done = run_block(block, sys.executable)
    if block.id in RIGHTLY_FAIL:
        why, texts = RIGHTLY_FAIL[block.id]
        assert done.returncode != 0, f"{block.id} ({why}) succeeded: a task error was lost"
        missing = [t for t in texts if t not in done.stderr]
        assert not missing, f"{block.id} ({why}): the error lacks {missing}:\n{done.stderr}"
        return
    assert done.returncode == 0, (
        f"{block.page} line {block.line} (block {block.id}) failed on taskiq_dataflow:\n"
        f"{block.text}\n--- stderr ---\n{done.stderr[-4000:]}"
    )


def test_known_failures_are_blocks_of_the_docs() -> None:
    if not DOCS.is_dir():
        pytest.skip(f"taskiq-flow's documentation is not at {DOCS}")
    stale = {*FAILS_ON_1_2_2, *RIGHTLY_FAIL} - {b.id for b in _BLOCKS}
    assert not stale, f"FAILS_ON_1_2_2 lists blocks no longer in the docs: {sorted(stale)}"


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def main() -> None:
    parser = argparse.ArgumentParser(description="run every doc block and report the failures")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--original", action="store_true", help="run as taskiq_flow code")
    args = parser.parse_args()
    for block in doc_blocks():
        try:
            done = run_block(block, args.python, args.original)
            failed, why = done.returncode != 0, _last_line(done.stderr)
        except subprocess.TimeoutExpired:
            failed, why = True, f"timed out after {TIMEOUT:.0f}s"
        print(
            f"{'FAIL' if failed else 'ok  '} {block.id} line {block.line}: {why if failed else ''}"
        )


if __name__ == "__main__":
    main()
