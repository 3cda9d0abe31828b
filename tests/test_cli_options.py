"""The CLI's run options and targets, in this process (no server): brokers taken from the tasks,
Flow targets and their map items in the progress, the default bound on tasks in flight,
--version, --store's run id, missing inputs in CLI terms, log lines above the bar."""

import io
import json
import logging
import re
import textwrap

import pytest
from conftest import call_cli
from taskiq_dataflow import DataflowPipeline
from taskiq_dataflow.cli.args import DEFAULT_MAX_PARALLEL
from taskiq_dataflow.cli.console import Console
from taskiq_dataflow.cli.progress import Progress
from taskiq_dataflow.pipeline import BrokerConflictError

FLOWS = textwrap.dedent(
    """
    import asyncio

    from taskiq import InMemoryBroker
    from taskiq_dataflow import DataflowRegistry, Flow, pipeline_task
    from taskiq_dataflow.cluster import DataflowNatsBroker

    one = DataflowNatsBroker("nats://127.0.0.1:1")
    two = DataflowNatsBroker("nats://127.0.0.1:2")
    here = InMemoryBroker()


    @one.task
    @pipeline_task(output="a")
    def on_one(x: int) -> int:
        return x


    @two.task
    @pipeline_task(output="b")
    def on_two(a: int) -> int:
        return a


    mixed = DataflowRegistry()
    mixed.register_task(on_one)
    mixed.register_task(on_two)

    running = 0
    peak = 0


    async def hold(i):
        global running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return i


    def fan_out():
        global peak
        peak = 0
        registry = DataflowRegistry()
        registry.register_external_input("i")
        for n in range(DEFAULT + 100):
            registry.register_task(hold, output=f"k{n}", inputs=["i"], name=f"hold{n}")

        async def report(**kwargs):
            return peak

        registry.register_task(
            report, output="peak", inputs=[f"k{n}" for n in range(DEFAULT + 100)]
        )
        return registry


    def double(x):
        return 2 * x


    def total(doubled):
        return sum(doubled)


    def items(n):
        return list(range(n))


    each = Flow("each")
    each.node(double)
    flow = Flow("main")
    flow.node(items) >> flow.map(each, name="doubled") >> flow.node(total)
    """
)


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    from taskiq_dataflow.cli.args import DEFAULT_MAX_PARALLEL as default

    (tmp_path / "opt_flows.py").write_text(f"DEFAULT = {default}\n" + FLOWS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)

    def invoke(*args):
        return call_cli(capsys, *args)

    return invoke


def test_from_registry_takes_the_broker_of_its_tasks():
    from examples.cluster_example import broker, registry

    assert DataflowPipeline.from_registry(registry).broker is broker
    engine = DataflowPipeline.from_registry(registry).create_engine({"source"})
    assert engine.broker is broker  # so the run goes to the cluster's workers


def test_two_brokers_among_the_tasks_is_one_clear_error(cli):
    import opt_flows

    with pytest.raises(BrokerConflictError, match="'on_one' and 'on_two'"):
        DataflowPipeline.from_registry(opt_flows.mixed)
    code, _, err = cli("run", "opt_flows:mixed", "-i", "x=1")
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "two different DataflowNatsBrokers" in err and "--broker module:attr" in err


def test_an_explicit_broker_wins_over_the_tasks(cli):
    # the tasks' brokers point at no server: the run succeeds only on the one named
    code, out, err = cli("run", "opt_flows:mixed", "-i", "x=1", "--broker", "opt_flows:here")
    assert code == 0, err
    assert out == "a: 1\nb: 1\n"
    code, _, err = cli("run", "opt_flows:mixed", "-i", "x=1", "--broker", "opt_flows:nowhere")
    assert code == 2 and "has no attribute 'nowhere'" in err
    code, _, err = cli("run", "opt_flows:mixed", "-i", "x=1", "--broker", "opt_flows:items")
    assert code == 2 and "a callable that needs arguments" in err
    code, _, err = cli("run", "opt_flows:mixed", "-i", "x=1", "--broker", "opt_flows:DEFAULT")
    assert code == 2 and "is a int, not a taskiq broker" in err


def test_missing_input_speaks_cli_and_suggests_the_typo(cli):
    code, _, err = cli("run", "opt_flows:flow", "-i", "m=3")
    assert code == 2
    assert err == (
        "taskiq-dataflow: error: missing input 'n' (needed by task 'items'): give it with "
        "-i n=VALUE\n"
    )
    code, _, err = cli("run", "opt_flows:mixed", "-i", "xx=1", "--broker", "opt_flows:here")
    assert "give it with -i x=VALUE (-i xx=... was given: a typo for 'x'?)" in err


def test_a_flow_is_a_target_and_its_map_items_count_as_tasks(cli):
    code, out, err = cli("run", "opt_flows:flow", "-i", "n=50", "--json", "--progress", "lines")
    assert code == 0, err
    assert json.loads(out)["total"] == 2 * sum(range(50))
    # items, the map node, total: 3 tasks of the flow, plus the map's 50 items and the task
    # collecting them
    assert "finished succeeded: 54/54 succeeded" in err, err


def test_default_bound_on_tasks_in_flight(cli):
    code, out, err = cli("run", "opt_flows:fan_out", "-i", "i=1", "--json", "--progress", "none")
    assert code == 0, err
    assert json.loads(out)["peak"] == DEFAULT_MAX_PARALLEL
    code, out, _ = cli("run", "opt_flows:fan_out", "-i", "i=1", "--json", "-j", "7")
    assert json.loads(out)["peak"] == 7


def test_version(cli):
    from taskiq_dataflow import __version__

    code, out, _ = cli("--version")
    assert code == 0 and out == f"taskiq-dataflow {__version__}\n"


def test_store_prints_the_run_id_it_records(cli, tmp_path):
    from taskiq_dataflow import RunStore

    db = tmp_path / "runs.db"
    code, _, err = cli(
        "run",
        "opt_flows:flow",
        "-i",
        "n=3",
        "--store",
        str(db),
        "--progress",
        "none",
        "--traceback",
    )
    assert code == 0, err
    run_id = re.search(r"^taskiq-dataflow: run (\w+) \(recorded in ", err, re.M).group(1)
    runs = RunStore(str(db)).list_runs()
    assert run_id in [run["run_id"] for run in runs]


def test_log_records_go_above_the_bar_not_through_it():
    from taskiq_dataflow.cli.console import logging_to as _logging_to
    from taskiq_dataflow.events import RunFinished, RunStarted

    stream = io.StringIO()
    console = Console(stream)
    progress = Progress("bar", console)
    progress.on_event(RunStarted("r", 10))
    with _logging_to(console):
        logging.getLogger("taskiq_dataflow.nats").warning("worker w1 is late")
    progress.on_event(RunFinished("r", "succeeded"))
    text = stream.getvalue()
    # tqdm.write clears the bar's line first, writes the record on a line of its own, and
    # redraws the bar below it
    line = next(x for x in text.split("\n") if "worker w1 is late" in x)
    assert line.rstrip("\r").endswith(
        "taskiq-dataflow: WARNING taskiq_dataflow.nats: worker w1 is late"
    )
    assert "it/s" not in line and "task/s" not in line.split("taskiq-dataflow: WARNING")[-1]


def test_python_api_fails_fast_and_quietly_on_an_unreachable_server(monkeypatch, caplog):
    import asyncio
    import time

    from taskiq_dataflow import DataflowRegistry, ExecutionEngine
    from taskiq_dataflow.cluster import ClusterError, DataflowNatsBroker

    broker = DataflowNatsBroker("nats://bob:hunter2@127.0.0.1:1")

    @broker.task
    def task() -> int:
        return 1

    registry = DataflowRegistry()
    registry.register_task(task, output="x", inputs=[])
    monkeypatch.setenv("DATAFLOW_CONNECT_TIMEOUT", "1")
    start = time.monotonic()
    with pytest.raises(ClusterError) as caught:
        asyncio.run(ExecutionEngine(broker, registry.build_dag()).execute())
    assert time.monotonic() - start < 10
    assert "nats://bob:***@127.0.0.1:1 within 1 s" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # no line per retry


def test_connect_waits_for_a_server_that_is_just_starting():
    import asyncio
    import threading

    from taskiq_dataflow.cluster import DataflowNatsBroker, NatsServer
    from taskiq_dataflow.cluster.server import free_port

    port = free_port()
    server = NatsServer(port=port)
    starter = threading.Timer(1.0, server.start)
    starter.start()
    try:

        async def connect():
            nc = await DataflowNatsBroker(f"nats://127.0.0.1:{port}").connect_checked("t", 30)
            await nc.close()

        asyncio.run(connect())
    finally:
        starter.join()
        server.close()


def test_dag_and_flow_targets_take_the_broker_of_their_tasks():
    from taskiq_dataflow import Flow
    from taskiq_dataflow.cli.args import build_parser
    from taskiq_dataflow.cli.engine import make_engine

    from examples.cluster_example import broker, clean_data, load_data, registry

    flow = Flow("f")
    flow.node(load_data) >> flow.node(clean_data)
    args = build_parser().parse_args(["run", "unused:target"])
    assert make_engine(flow, {"source": "x"}, args).broker is broker
    assert make_engine(registry.build_dag(), {"source": "x"}, args).broker is broker


def test_cluster_takes_the_run_options():
    from taskiq_dataflow.cli.args import build_parser

    run_options = ["-j", "3", "--no-fail-fast", "--progress", "none", "--store", "runs.db"]
    argv = ["cluster", "m:broker", "m:registry", *run_options, "-i", "a=1", "--json"]
    args = build_parser().parse_args(argv)
    assert (args.max_parallel, args.no_fail_fast, args.progress) == (3, True, "none")
    assert (args.store, args.input, args.json) == ("runs.db", ["a=1"], True)
