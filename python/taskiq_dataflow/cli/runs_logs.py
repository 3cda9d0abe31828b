"""`taskiq-dataflow runs logs RUN [TASK]`: the records a run's tasks logged.

The `runs` group (cli/runs.py) calls `add_logs_command` on its subparsers; the parsed arguments
carry `runs_command`, the function that prints them (`logs_command(args, out, err) -> exit
code`). RUN is a run id or a unique prefix of one, and the store `--store PATH`, else
`$DATAFLOW_STORE`, else ./dataflow-runs.db, as for the group's other commands
(store_reading.py). Records come from the run store (RunStore.task_logs), oldest first, one
line each:

    2026-12-02 10:00:01 INFO load[1] myproject.load: read 120 rows

or, with --json, one JSON object per line (node, task_name, attempt, time, level, logger,
message).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from typing import Any, TextIO

from ..errors import CLIError, StoreError
from .args import STORE_ENV, add_common
from .output import EXIT_USAGE, PROG
from .store_reading import open_store, resolve_run

__all__ = ["add_logs_command", "logs_command"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def add_logs_command(runs_subparsers: Any) -> None:
    """Add `logs RUN [TASK]` to the `runs` group's subparsers."""
    logs = runs_subparsers.add_parser(
        "logs",
        help="print the records a run's tasks logged",
        description="Print the log records the tasks of RUN (a run id or a unique prefix of "
        "one) logged while they ran, here or on a worker, oldest first: all tasks, or only TASK. "
        "The run must have been recorded in a run store (run/cluster --store PATH).",
    )
    logs.add_argument("run", metavar="RUN", help="a run id or a unique prefix of one")
    logs.add_argument("task", metavar="TASK", nargs="?", default=None, help="one task's name")
    logs.add_argument(
        "--store",
        default=None,
        metavar="PATH",
        help=f"the run store (default: ${STORE_ENV}, else ./dataflow-runs.db)",
    )
    logs.add_argument(
        "--level",
        type=_level,
        default=None,
        metavar="LEVEL",
        help=f"only records at LEVEL and above: {', '.join(LEVELS)} (default: all)",
    )
    logs.add_argument(
        "--json", action="store_true", help="one JSON object per record instead of text lines"
    )
    add_common(logs)  # --traceback, which main() reads on an error
    logs.set_defaults(runs_command=logs_command)


def logs_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = open_store(args.store)
    try:
        run_id = resolve_run(store, args.run)
        records = store.task_logs(run_id, args.task)
    except StoreError as exc:  # no such task in the run
        raise CLIError(str(exc), EXIT_USAGE) from exc
    finally:
        store.close()
    if args.level is not None:
        names = logging.getLevelNamesMapping()
        least = names[args.level]
        # a level this process does not know (a custom one) cannot be ranked: it is shown
        records = [r for r in records if names.get(r["level"], least) >= least]
    for record in records:
        out.write((json.dumps(record) if args.json else format_record(record)) + "\n")
    if not records:
        which = f"task {args.task!r} of run {run_id}" if args.task else f"run {run_id}"
        above = f" at {args.level} and above" if args.level else ""
        err.write(f"{PROG}: {which} logged no records{above}\n")
    return 0


def format_record(record: dict[str, Any]) -> str:
    """`2026-12-02 10:00:01 INFO task[attempt] logger: message` (local time)."""
    when = dt.datetime.fromtimestamp(record["time"]).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{when} {record['level']} {record['task_name']}[{record['attempt']}] "
        f"{record['logger']}: {record['message']}"
    )


def _level(text: str) -> str:
    name = text.upper()
    if name not in LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level: use one of {', '.join(LEVELS)}"
        )
    return name
