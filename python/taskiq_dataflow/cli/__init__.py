"""The `taskiq-dataflow` command: run a pipeline with a progress display, or print its graph.

    taskiq-dataflow run myproject.flows:registry --input source=data.csv --max-parallel 8
    taskiq-dataflow graph myproject.flows:pipeline --format mermaid
    taskiq-dataflow cluster myproject.flows:broker myproject.flows:registry --workers 4

The target `module:attr` is a DataflowRegistry, DAG, DAGBuilder, DataflowPipeline or Flow, or a
zero-argument callable (sync or async) returning one. Tasks declared with `@broker.task` on a
DataflowNatsBroker run on that broker's workers (or on the one `--broker` names). Progress comes
from the engine's events only: a tqdm bar when stderr is a terminal, otherwise a plain line at
most once a second and a final summary line. Outputs go to stdout, progress and errors to stderr.

Exit codes: 0 success; 1 a task failed (or the run did, or the cluster cannot be reached);
2 bad usage, target or graph (unimportable module, missing attribute, bad --input, missing input,
validation error); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).

The package is split by level, each module importing only those below it: `output` (exit
codes, formatting), then `args`, `console` and `targets`, then `progress`, `engine` and
`dashboard` (--dashboard, --report), then `runner` (one run as the command line shows it),
then one module per subcommand (`run`, `graph`, `worker`, `server`, `cluster`, `report`;
none imports another), and this module on top.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import TextIO

from ..errors import CLIError
from .args import build_parser
from .cluster import cluster_command
from .graph import graph_command
from .output import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, PROG
from .report import report_command
from .run import run_command
from .server import server_command
from .worker import worker_command

__all__ = ["main"]

# each subcommand's function, called with the parsed arguments, stdout and stderr
COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "run": run_command,
    "graph": graph_command,
    "worker": worker_command,
    "server": server_command,
    "cluster": cluster_command,
    "report": report_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    code = _main(argv)
    if argv is None and code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        _exit_despite_threads(code)
    return code


def _exit_despite_threads(code: int) -> None:
    """A cancelled run may leave a blocking task running in a worker thread, which Python
    would wait for at exit (minutes, for a long task): the user asked to stop, so the process
    ends now. Only as the command (argv from sys.argv), never inside a caller's process."""
    lingering = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    if lingering:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out, err = sys.stdout, sys.stderr
    if args.command is None:
        parser.print_help(err)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args, out, err)
    except CLIError as exc:
        if args.traceback:
            if exc.detail:
                err.write(exc.detail.rstrip() + "\n")
            elif exc.__cause__ is not None:
                cause = exc.__cause__
                err.write(
                    "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
                )
        err.write(f"{PROG}: error: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
