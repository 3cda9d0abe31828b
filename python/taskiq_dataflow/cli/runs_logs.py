"""`taskiq-dataflow runs logs RUN [TASK] --store PATH`: the records a run's tasks logged.

The `runs` group (cli/runs.py) calls `add_logs_command` on its subparsers; the parsed arguments
carry `runs_command`, the function that prints them (`logs_command(args, out, err) -> exit
code`). Records come from the run store (RunStore.task_logs), oldest first, one line each:

    2026-12-02 10:00:01 INFO load[1] myproject.load: read 120 rows

or, with --json, one JSON object per line (node, task_name, attempt, time, level, logger,
message).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
from typing import Any, TextIO

from ..errors import CLIError, StoreError
from .output import EXIT_FAILED, PROG

__all__ = ["add_logs_command", "logs_command"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def add_logs_command(runs_subparsers: Any) -> None:
    """Add `logs RUN [TASK]` to the `runs` group's subparsers."""
    logs = runs_subparsers.add_parser(
        "logs",
        help="print the records a run's tasks logged",
        description="Print the log records the tasks of RUN (a full run id) logged while they "
        "ran, here or on a worker, oldest first: all tasks, or only TASK. The run must have been "
        "recorded in a run store (run/cluster --store PATH).",
    )
    logs.add_argument("run", metavar="RUN", help="the run id (as printed by run --store)")
    logs.add_argument("task", metavar="TASK", nargs="?", default=None, help="one task's name")
    logs.add_argument(
        "--store", required=True, metavar="PATH", help="the run store (SQLite) the run is in"
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
    logs.set_defaults(runs_command=logs_command)


def logs_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..store import RunStore

    if not os.path.isfile(args.store):
        raise CLIError(f"no run store at {args.store!r} (give the --store PATH the run used)")
    store = RunStore(args.store)
    try:
        records = store.task_logs(args.run, args.task)
    except StoreError as exc:
        raise CLIError(str(exc), EXIT_FAILED) from exc
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
        which = f"task {args.task!r} of run {args.run}" if args.task else f"run {args.run}"
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
