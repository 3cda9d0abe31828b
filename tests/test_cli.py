import itertools
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import call_cli
from taskiq_dataflow.cli.args import parse_inputs
from taskiq_dataflow.errors import CLIError

FLOWS = textwrap.dedent(
    """
    import asyncio

    from taskiq import InMemoryBroker

    from taskiq_dataflow import DAG, DAGBuilder, DAGNode, DataflowPipeline, DataflowRegistry
    from taskiq_dataflow import pipeline_task

    broker = InMemoryBroker()


    @broker.task
    @pipeline_task(output="raw")
    async def load(source: str, n: int):
        return [source] * n


    @broker.task
    @pipeline_task(output="size")
    def size(raw):
        return len(raw)


    @broker.task
    @pipeline_task(output="bad")
    async def boom(raw):
        raise ValueError("the raw data is unusable")


    @broker.task
    @pipeline_task(output="after_bad")
    async def after(bad):
        return bad


    pipeline = DataflowPipeline.from_tasks(broker, [load, size])
    failing = DataflowPipeline.from_tasks(broker, [load, size, boom, after])

    registry = DataflowRegistry()
    registry.register_task(load)
    registry.register_task(size)

    duplicated = DataflowRegistry()
    duplicated.register_task(load)
    duplicated.register_task(size, output="raw", inputs=["source"])

    dag = DAG()
    dag.add_node(DAGNode(task=lambda x: x + 1, output="y", inputs=["x"], name="inc"))


    def build():
        return DAGBuilder().add_task(load).add_task(size)


    async def abuild():
        return registry


    def needs_args(a):
        return registry


    number = 42

    in_flight = peak = 0


    @pipeline_task(output="w", inputs=["i"])
    async def work(i):
        global in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return i


    @pipeline_task(output="peak", inputs=[])
    def report_peak(*ws):
        return peak


    def fan_out():
        r = DataflowRegistry()
        r.register_external_input("i")
        keys = []
        for k in range(12):
            r.register_task(work, output=f"w{k}", inputs=["i"], name=f"work{k}")
            keys.append(f"w{k}")
        r.register_task(report_peak, output="peak", inputs=keys)
        return r


    @pipeline_task(output="t", inputs=["i"])
    async def tick(i):
        await asyncio.sleep(0.1)
        return i


    def slow():
        r = DataflowRegistry()
        r.register_external_input("i")
        for k in range(22):
            r.register_task(tick, output=f"t{k}", inputs=["i"], name=f"tick{k}")
        return DataflowPipeline.from_registry(r, max_parallel=1)
    """
)


@pytest.fixture(scope="module")
def flows_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli")
    (path / "cli_flows.py").write_text(FLOWS)
    (path / "cli_broken.py").write_text(
        "import os\n\nVALUE = 1\nraise RuntimeError('config missing')\n"
    )
    return path


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli_process(flows_dir):
    """The command in a subprocess, the example module found through PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(flows_dir), env.get("PYTHONPATH")]))

    def invoke(*args):
        return subprocess.run(
            [sys.executable, "-m", "taskiq_dataflow", *args],
            capture_output=True,
            text=True,
            cwd=flows_dir.parent,
            env=env,
            timeout=60,
        )

    return invoke


@pytest.fixture
def cli(flows_dir, capsys, monkeypatch):
    """`main(argv)` in this process (fast); output captured."""
    monkeypatch.syspath_prepend(str(flows_dir))

    def invoke(*args):
        return Result(*call_cli(capsys, *args))

    return invoke


def assert_clean_error(proc, code, *fragments):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("taskiq-dataflow: error")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_parse_inputs_json_or_string():
    assert parse_inputs(["n=3", "s=abc", "xs=[1, 2]", "flag=true", "empty=", "eq=a=b"]) == {
        "n": 3,
        "s": "abc",
        "xs": [1, 2],
        "flag": True,
        "empty": "",
        "eq": "a=b",
    }
    with pytest.raises(CLIError, match="KEY=VALUE"):
        parse_inputs(["novalue"])
    with pytest.raises(CLIError, match="given twice"):
        parse_inputs(["a=1", "a=2"])


def test_run_pipeline_prints_outputs_and_summary(cli_process):
    proc = cli_process("run", "cli_flows:pipeline", "--input", "source=ab", "--input", "n=3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['raw: ["ab", "ab", "ab"]', "size: 3"]
    assert re.search(r"^finished succeeded: 2/2 succeeded, 0 failed, 0 skipped", proc.stderr, re.M)


@pytest.mark.parametrize("target", ["cli_flows:registry", "cli_flows:build", "cli_flows:abuild"])
def test_run_json_for_each_kind_of_target(cli, target):
    proc = cli("run", target, "-i", "source=x", "-i", "n=2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"raw": ["x", "x"], "size": 2}


def test_run_a_dag_and_warn_about_unused_inputs(cli):
    proc = cli("run", "cli_flows:dag", "-i", "x=41", "-i", "typo=1", "--json", "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"y": 42}
    assert proc.stderr == "taskiq-dataflow: warning: no task consumes input(s) 'typo'\n"


def test_max_parallel_option(cli):
    proc = cli("run", "cli_flows:fan_out", "-i", "i=1", "--max-parallel", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["peak"] == 3


def test_failing_task(cli_process):
    proc = cli_process("run", "cli_flows:failing", "-i", "source=ab", "-i", "n=1")
    assert proc.stdout == ""
    assert_clean_error(proc, 1, "task 'boom' failed: ValueError: the raw data is unusable")

    proc = cli_process("run", "cli_flows:failing", "-i", "source=ab", "-i", "n=1", "--traceback")
    assert proc.returncode == 1
    assert (
        "Traceback" in proc.stderr and 'raise ValueError("the raw data is unusable")' in proc.stderr
    )


def test_no_fail_fast_prints_partial_outputs_and_names_skipped(cli):
    proc = cli(
        "run", "cli_flows:failing", "-i", "source=ab", "-i", "n=1", "--no-fail-fast", "--json"
    )
    assert json.loads(proc.stdout) == {"raw": ["ab"], "size": 1}
    assert_clean_error(proc, 1, "1 task(s) failed", "'boom'", "skipped", "after")
    assert "finished failed: 2/4 succeeded, 1 failed, 1 skipped" in proc.stderr


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "nosuch:pipeline"], ["cannot import module 'nosuch'"]),
        (
            ["run", "cli_flows:nothing"],
            ["'cli_flows' has no attribute 'nothing'", "pipeline", "build"],
        ),
        (["run", "flows"], ["not of the form module:attr"]),
        (["run", "cli_flows:number"], ["'cli_flows:number' is of type int"]),
        (["run", "cli_flows:load"], ["single task"]),
        (
            ["run", "cli_flows:needs_args"],
            ["'cli_flows:needs_args' is a callable that needs arguments"],
        ),
        (
            ["run", "cli_broken:VALUE"],
            ["importing module 'cli_broken' raised", "cli_broken.py:4", "config missing"],
        ),
        (
            ["run", "cli_flows:pipeline", "-i", "source"],
            ["--input 'source' is not of the form KEY=VALUE"],
        ),
        (
            ["run", "cli_flows:pipeline", "-i", "source=a"],
            ["missing input 'n'", "task 'load'", "-i n=VALUE"],
        ),
        (["run", "cli_flows:duplicated"], ["'raw' is produced by two tasks", "'load'"]),
        (["graph", "cli_flows:duplicated"], ["'raw' is produced by two tasks"]),
    ],
)
def test_errors_are_one_paragraph_naming_the_culprit(cli, args, fragments):
    assert_clean_error(cli(*args), 2, *fragments)


def test_bad_module_in_a_process(cli_process):
    assert_clean_error(cli_process("run", "nosuch.flows:pipeline"), 2, "no module named 'nosuch'")


def test_traceback_flag_shows_python_traceback_for_import_errors(cli):
    proc = cli("run", "cli_broken:VALUE", "--traceback")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "RuntimeError: config missing" in proc.stderr


def test_usage_errors(cli):
    assert cli().returncode == 2
    proc = cli("run", "cli_flows:pipeline", "--max-parallel", "0")
    assert proc.returncode == 2 and "positive integer" in proc.stderr


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("ascii", "[0] load (source, n) => raw"),
        ("dot", 'n0 -> n1 [label="raw"];'),
        ("mermaid", "n0 -->|raw| n1"),
    ],
)
def test_graph(cli, fmt, expected):
    proc = cli("graph", "cli_flows:pipeline", "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout


def test_graph_view_options(cli):
    proc = cli("graph", "cli_flows:pipeline", "-f", "dot", "--direction", "TB")
    assert proc.returncode == 0, proc.stderr
    assert "  rankdir=TB;" in proc.stdout and 'n0 -> n1 [label="raw"];' in proc.stdout
    # by task name beyond one task; the external inputs as ellipses
    proc = cli("graph", "cli_flows:pipeline", "-f", "dot", "--collapse-above", "1")
    assert proc.returncode == 0, proc.stderr
    assert '  g0 [label="load"];' in proc.stdout and "  g0 -> g1;" in proc.stdout
    assert '  in0 [label="source", shape=ellipse' in proc.stdout
    proc = cli("graph", "cli_flows:pipeline", "-f", "mermaid", "--max-edges", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("-->") == 1 and "2 edges not shown" in proc.stdout
    proc = cli("graph", "cli_flows:pipeline", "-f", "mermaid", "--max-text-size", "10")
    assert proc.returncode == 2 and "max_text_size=10 is too small" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "dot", "--max-edges", "5"], "--max-edges applies to --format mermaid, not dot"),
        (["--collapse-above", "5"], "--collapse-above applies to --format dot or mermaid, not"),
        (["--direction", "LR"], "--direction applies to --format dot or mermaid, not ascii"),
        (["-f", "mermaid", "--max-nodes", "5"], "--max-nodes applies to --format ascii, not"),
        (["-f", "dot", "--collapse-above", "-1"], "expected a whole number >= 0, got -1"),
        (["-f", "mermaid", "--max-text-size", "0"], "expected a positive integer, got 0"),
    ],
)
def test_graph_refuses_options_it_would_ignore(cli, args, message):
    proc = cli("graph", "cli_flows:pipeline", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_progress_lines_when_not_a_terminal(cli_process):
    # 22 tasks of 0.1 s one at a time: about 2.2 s, so two or three progress lines
    proc = cli_process("run", "cli_flows:slow", "-i", "i=1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 22
    lines = proc.stderr.splitlines()
    assert "\r" not in proc.stderr  # no bar
    progress = [line for line in lines if line.startswith("progress ")]
    assert lines[-1].startswith("finished succeeded: 22/22 succeeded, 0 failed, 0 skipped in ")
    assert lines[:-1] == progress
    total = float(re.search(r" in ([\d.]+)s", lines[-1]).group(1))
    assert 1 <= len(progress) <= int(total) + 1
    stamps = [float(re.search(r"elapsed ([\d.]+)s", line).group(1)) for line in progress]
    assert stamps[0] >= 0.95  # the first line after a full second
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(stamps))  # rounded to 0.1 s
    for line in progress:
        assert re.fullmatch(
            r"progress \d+/22 done, 0 failed, 0 skipped, [01] running, [\d.]+ tasks/s, "
            r"ETA [\d.]+s, elapsed [\d.]+s",
            line,
        ), line


def test_progress_bar_when_forced(cli):
    proc = cli("run", "cli_flows:pipeline", "-i", "source=a", "-i", "n=1", "--progress", "bar")
    assert proc.returncode == 0, proc.stderr
    assert "2/2" in proc.stderr and "task/s" in proc.stderr and "failed=0" in proc.stderr


def test_progress_lines_show_cache_hits():
    import io

    from taskiq_dataflow.cli.progress import Progress
    from taskiq_dataflow.events import RunStarted, StepCompleted

    out = io.StringIO()
    progress = Progress("lines", out, interval=0.0)
    progress.on_event(RunStarted("r", 2))
    progress.on_event(StepCompleted("r", 0, "a", 1, cached=True))
    progress.on_event(StepCompleted("r", 1, "b", 2))
    assert "1/2 done (1 from cache)" in out.getvalue()
    assert "2/2 done (1 from cache)" in out.getvalue()
    if progress._ticker is not None:  # RunStarted outside a loop starts no ticker
        progress._ticker.cancel()
