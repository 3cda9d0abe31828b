"""Every command block and every Python block of README.md, taken from the README itself and run
literally, as a user would type or paste them (so the README cannot drift from the product).

The conventions the README follows (and this runner enforces):
- each ```bash block runs as one `bash -e` script from the repository root, with .venv/bin first
  on PATH, DATAFLOW_NATS_URL unset, a fresh HOME and TMPDIR, in its own process group that is
  ended (SIGTERM, then SIGKILL) once its last command has exited; servers and workers a block
  needs are started with a trailing `&`, and the last command is the one judged;
- `# e2e: skip (<reason>)` as a block's first line: not run; `# e2e: expect-exit N`: must exit N;
- each ```python block is a complete script, run as `python block.py` from an empty directory
  with the repository root on PYTHONPATH;
- no command is shown outside a fenced block (an indented block would escape this runner).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .support import ROOT, Processes, listening, run, tagged, wait_until

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
DEFAULT_PORT = 4222
BLOCK_TIMEOUT = 120.0  # a block is a few commands a user waits for: minutes would be a hang
DIRECTIVE = re.compile(r"#\s*e2e:\s*(?P<word>[\w-]+)\s*(?P<rest>.*)")
# a pid the cluster example reports for a task, as JSON or as a Python repr
PID = re.compile(r"""["']?\bpid["']?\s*[:=]\s*(\d+)""")
# what a user types, shown outside a fenced block (an indented command block)
UNFENCED_COMMAND = re.compile(r"^(?: {4,}|\t)(?:\$ )?(taskiq-dataflow|\./scripts/|python )", re.M)
# ... or in a fenced block this runner does not run (```sh, ```console, ```text, ```)
COMMAND_LINE = re.compile(r"^\s*(?:\$ )?(?:taskiq-dataflow\s|\./scripts/|python -m |source )", re.M)


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # of the opening fence, 1-based
    text: str

    @property
    def id(self) -> str:
        first = next((ln for ln in self.text.splitlines() if ln.strip()), "")
        if self.lang == "bash":
            first = next(
                (ln for ln in self.text.splitlines() if ln.strip() and not ln.startswith("#")),
                first,
            )
        slug = re.sub(r"[^A-Za-z0-9]+", "-", first)[:40].strip("-")
        return f"{self.lang}-L{self.line}-{slug}"

    def directive(self) -> tuple[str, str] | None:
        first = self.text.splitlines()[0] if self.text else ""
        found = DIRECTIVE.match(first.strip())
        return (found["word"], found["rest"].strip()) if found else None


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for found in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.M | re.S):
        line = text.count("\n", 0, found.start()) + 1
        blocks.append(Block(found[1], line, found[2]))
    return blocks


BLOCKS = readme_blocks(README.read_text())
BASH = [b for b in BLOCKS if b.lang == "bash"]
PYTHON = [b for b in BLOCKS if b.lang == "python"]


def expected_exit(block: Block) -> int:
    directive = block.directive()
    if directive is None:
        return 0
    word, rest = directive
    if word == "skip":
        pytest.skip(f"README line {block.line}: {rest or 'no reason given'}")
    assert word == "expect-exit" and rest.isdigit(), (
        f"README line {block.line}: unknown directive {block.text.splitlines()[0]!r}; "
        "use `# e2e: skip (<reason>)` or `# e2e: expect-exit N`"
    )
    return int(rest)


def test_the_readme_has_command_and_python_blocks():
    assert BASH, "README.md has no ```bash block: the commands a user types must be in one"
    assert PYTHON, "README.md has no ```python block"


def test_no_command_is_shown_outside_a_fenced_block():
    text = README.read_text()
    outside = re.sub(r"^```.*?^```", lambda m: "\n" * m[0].count("\n"), text, flags=re.M | re.S)
    lines = [
        f"line {outside.count(chr(10), 0, m.start()) + 1}: {m[0].strip()}"
        for m in UNFENCED_COMMAND.finditer(outside)
    ]
    assert not lines, (
        "README.md shows commands outside a ```bash block, where tests/e2e cannot run them; "
        "put them in a fenced ```bash block:\n  " + "\n  ".join(lines)
    )


def test_every_fenced_command_is_in_a_bash_block():
    strays = [
        f"line {block.line} (```{block.lang or '(no language)'})"
        for block in BLOCKS
        if block.lang not in ("bash", "python")
        and (block.lang in ("sh", "shell", "console", "zsh") or COMMAND_LINE.search(block.text))
    ]
    assert not strays, (
        "README.md has commands in fenced blocks that tests/e2e does not run; label them "
        "```bash (one script per block): " + ", ".join(strays)
    )


def test_every_skipped_block_says_why():
    for block in BASH + PYTHON:
        directive = block.directive()
        if directive and directive[0] == "skip":
            assert re.fullmatch(r"\(.+\)", directive[1]), (
                f"README line {block.line}: `# e2e: skip` needs a reason: "
                "`# e2e: skip (<why it cannot run here>)`"
            )


# -- command blocks ---------------------------------------------------------------------------


class Sampler:
    """Records, while a block runs, every process it started (by tag): which were workers and
    which were the CLI, since they are gone when the block's outcome is judged."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.seen: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pid, cmd in tagged(self.tag).items():
                # An exiting process reads as an empty command line once its memory is
                # released, before it turns zombie: keep what an earlier sample saw.
                if cmd or pid not in self.seen:
                    self.seen[pid] = cmd
            self._stop.wait(0.05)

    def workers(self) -> set[int]:
        return {pid for pid, cmd in self.seen.items() if "--child" in cmd}


def uses_default_port(block: Block) -> bool:
    """A block that starts `taskiq-dataflow server` on its default port, or that runs workers
    on the default server URL (a foreign server on that port would serve them instead)."""
    if "DATAFLOW_NATS_URL" in block.text:
        return False
    for line in block.text.splitlines():
        if re.search(r"\btaskiq-dataflow\s+(server|worker)\b", line) and "--port" not in line:
            return True
    return False


def refuse_recursion(block: Block) -> None:
    assert "scripts/test" not in block.text, (
        f"README line {block.line}: this block runs ./scripts/test, which would run this suite "
        "inside itself; give it the first line `# e2e: skip (runs the whole suite)`"
    )


@pytest.mark.parametrize("block", BASH, ids=[b.id for b in BASH])
def test_command_block(block: Block, procs: Processes, tmp_path: Path):
    expected = expected_exit(block)
    refuse_recursion(block)
    needs_port = uses_default_port(block)
    if needs_port and listening(DEFAULT_PORT):
        pytest.skip(
            f"port {DEFAULT_PORT} is in use by another process, and README line {block.line} "
            f"starts `taskiq-dataflow server` on it"
        )
    held_before = listening(DEFAULT_PORT)
    script = tmp_path / "block.sh"
    script.write_text(block.text)
    with Sampler(procs.tag) as sampler:
        outcome = run(procs, ["bash", "-e", str(script)], BLOCK_TIMEOUT)
    where = f"README line {block.line}:\n{block.text}\n{outcome.describe()}"
    assert outcome.code == expected, f"expected exit {expected}; {where}"
    assert outcome.seconds < BLOCK_TIMEOUT
    if expected == 0:
        assert "Traceback (most recent call last)" not in outcome.stderr, where
    if "examples.cluster_example" in block.text:
        assert_ran_on_workers(outcome.stdout + outcome.stderr, sampler, where)
    if not held_before:
        # whatever the block started on the port went with its process group
        wait_until(lambda: not listening(DEFAULT_PORT), 10, f"nothing to listen on {DEFAULT_PORT}")


def assert_ran_on_workers(output: str, sampler: Sampler, where: str) -> None:
    """Every pid the cluster example reports for a task is a worker process's, not the CLI's."""
    workers = sampler.workers()
    assert workers, f"no `taskiq-dataflow worker` child process ran during the block; {where}"
    reported = {int(pid) for pid in PID.findall(output)}
    assert reported, (
        "the cluster example's output reports no pid for its tasks, so where they ran cannot "
        f"be checked (its report should carry the pid of the process that ran each task); {where}"
    )
    strays = {pid: sampler.seen.get(pid, "not started by this block") for pid in reported}
    strays = {pid: cmd for pid, cmd in strays.items() if pid not in workers}
    assert not strays, (
        f"tasks ran outside the worker processes {sorted(workers)}: {strays}; {where}"
    )


# -- python blocks ----------------------------------------------------------------------------


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block(block: Block, procs: Processes, tmp_path: Path):
    expected = expected_exit(block)
    script = tmp_path / "block.py"
    script.write_text(block.text)
    env = procs.env(pythonpath=[ROOT])
    started = time.monotonic()
    # `python` as a user types it: the first on PATH, which is .venv's
    outcome = run(procs, ["python", "block.py"], BLOCK_TIMEOUT, env=env, cwd=tmp_path)
    assert outcome.code == expected, (
        f"README line {block.line}: `python block.py` exited {outcome.code}, expected "
        f"{expected}\n{block.text}\n{outcome.describe()}"
    )
    assert time.monotonic() - started < BLOCK_TIMEOUT


# -- the runner's own checks ------------------------------------------------------------------


def test_a_process_that_escapes_its_group_is_reported_and_killed():
    tracker = Processes()
    # the daemon is in a session of its own before the script ends (field 6 of stat: session)
    escape = (
        "setsid sleep 300 & child=$!; session() { cut -d' ' -f6 /proc/$1/stat; }; "
        'while [ "$(session $child)" = "$(session $$)" ]; do sleep 0.01; done; echo started'
    )
    outcome = run(tracker, ["bash", "-c", escape], timeout=10)
    assert outcome.code == 0 and "started" in outcome.stdout
    survivors = tracker.close(grace=0.5)
    assert any("sleep 300" in cmd for cmd in survivors.values()), survivors
    assert not tagged(tracker.tag), "the escaped process was not killed"


def test_a_task_reported_outside_the_workers_fails_the_block():
    sampler = Sampler("unused")
    sampler.seen = {101: "python -m taskiq_dataflow.cluster.serve --child m:broker",
                    202: "python taskiq-dataflow run m:registry"}  # fmt: skip
    assert_ran_on_workers('{"load": {"pid": 101}}', sampler, "here")
    with pytest.raises(AssertionError, match="202"):
        assert_ran_on_workers('{"load": {"pid": 101}, "clean": {"pid": 202}}', sampler, "here")
    with pytest.raises(AssertionError, match="reports no pid"):
        assert_ran_on_workers("report: {}", sampler, "here")
