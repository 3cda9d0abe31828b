"""`taskiq-dataflow runs ...`: the runs a run store recorded, on the command line.

    taskiq-dataflow runs ls [--status S] [--limit N] [--json | -q]
    taskiq-dataflow runs show RUN [--json]
    taskiq-dataflow runs tasks RUN [--status S] [--name TASK] [--show-outputs] [--json]
    taskiq-dataflow runs restart RUN [TARGET]
    taskiq-dataflow runs replay RUN [TARGET] --rerun TASK [TASK ...]

RUN is a run id or a unique prefix of one. The store is `--store PATH`, else `$DATAFLOW_STORE`,
else ./dataflow-runs.db; a missing file is an error, never an empty store made on the spot.
`restart` and `replay` run like `run` (progress, outputs, exit codes, the tasks' own broker or
`--broker`) on the target the run was started from (`run`/`cluster` record it), or on TARGET.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ..errors import CLIError
from ..store import RunStore
from .args import (
    STORE_ENV,
    Subparsers,
    add_common,
    add_execution_args,
    add_output_args,
    add_server_arg,
    positive_int,
)
from .output import EXIT_USAGE, PROG
from .runner import Resume, run_pipeline
from .runs_logs import add_logs_command
from .store_reading import (
    Stored,
    mapping_json,
    mapping_text,
    open_store,
    resolve_run,
    store_path,
)

RUN_STATUSES = ("running", "interrupted", "succeeded", "failed", "cancelled")
TASK_STATUSES = ("running", "completed", "failed", "skipped", "compensated")
SHORT_ID = 8  # `ls` shows each id by its shortest unique prefix, at least this long
SHOWN_TASKS = 50  # `show` lists the outputs of this many tasks (--json: all of them)
Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


def add_runs_parser(sub: Subparsers) -> None:
    runs = sub.add_parser(
        "runs",
        help="the runs recorded in a run store: list, inspect, read task logs, restart, replay",
        description="Read the runs a run store (SQLite) recorded, and restart or replay them. "
        "RUN is a run id or a unique prefix of one. The store is --store PATH, else "
        f"${STORE_ENV}, else ./dataflow-runs.db.",
    )
    runs.set_defaults(runs_help=runs.format_help)
    # each subcommand sets `runs_command`: the function that carries it out (a Handler)
    commands = runs.add_subparsers(dest="runs_name")

    ls = commands.add_parser(
        "ls",
        help="list the runs, newest first",
        description="One line per run, newest first: id (its shortest unique prefix), status "
        "('running' has a live engine, 'interrupted' had one that died), start, duration, "
        "tasks done / failed / total, target.",
    )
    ls.add_argument("--status", choices=RUN_STATUSES, default=None, help="only runs in S")
    ls.add_argument(
        "--limit", type=positive_int, default=20, metavar="N", help="at most N runs (default: 20)"
    )
    ls.add_argument(
        "-q", "--quiet", action="store_true", help="only the full run ids, one a line (scripts)"
    )
    _add_reading(ls, handler=_ls)

    show = commands.add_parser(
        "show",
        help="one run: status, inputs and outputs, error, owner, parent",
        description="One run: status, target, parent run (of a replay), timings, owner host "
        "and pid, task counts, error, inputs and outputs (decoded: JSON when the value is "
        "JSON, its repr otherwise).",
    )
    show.add_argument("run", metavar="RUN", help="a run id or a unique prefix of one")
    _add_reading(show, handler=_show)

    tasks = commands.add_parser(
        "tasks",
        help="the task executions of a run",
        description="One line per execution (a retried task has one per attempt): task, "
        "attempt, status, duration, worker, the first line of its error.",
    )
    tasks.add_argument("run", metavar="RUN", help="a run id or a unique prefix of one")
    tasks.add_argument("--status", choices=TASK_STATUSES, default=None, help="only those in S")
    tasks.add_argument("--name", default=None, metavar="TASK", help="only the task TASK")
    tasks.add_argument(
        "--show-outputs", action="store_true", help="each completed execution's outputs too"
    )
    _add_reading(tasks, handler=_tasks)

    restart = commands.add_parser(
        "restart",
        help="continue a failed, cancelled or interrupted run",
        description="Continue RUN under its own id: the tasks it completed do not run again. "
        "The pipeline is TARGET, else the one the run was started from.",
    )
    _add_resuming(restart, handler=_restart)

    replay = commands.add_parser(
        "replay",
        help="a new run re-running some tasks of a run",
        description="A new run (its id is printed) that re-runs the tasks named by --rerun "
        "and everything downstream of them, reusing every other output of RUN. The pipeline "
        "is TARGET, else the one the run was started from.",
    )
    _add_resuming(replay, handler=_replay)
    replay.add_argument(
        "--rerun",
        action="extend",
        nargs="+",
        required=True,
        metavar="TASK",
        help="a task to run again (repeatable; give TARGET before it)",
    )

    add_logs_command(commands)


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="PATH",
        help=f"the run store (default: ${STORE_ENV}, else ./dataflow-runs.db)",
    )


def _add_reading(parser: argparse.ArgumentParser, handler: Handler) -> None:
    _add_store(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_common(parser)
    parser.set_defaults(runs_command=handler)


def _add_resuming(parser: argparse.ArgumentParser, handler: Handler) -> None:
    parser.add_argument("run", metavar="RUN", help="a run id or a unique prefix of one")
    parser.add_argument(
        "target",
        metavar="TARGET",
        nargs="?",
        default=None,
        help="module:attr of the pipeline (default: the one recorded with the run; needed for "
        "a run started from Python)",
    )
    _add_store(parser)
    parser.add_argument(
        "--broker",
        default=None,
        metavar="MODULE:ATTR",
        help="the broker to run on (default: the DataflowNatsBroker of the tasks, if any)",
    )
    add_server_arg(parser, "the run's")
    add_execution_args(parser)
    add_output_args(parser)
    add_common(parser)
    parser.set_defaults(runs_command=handler)


def runs_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handler: Handler | None = getattr(args, "runs_command", None)
    if handler is None:
        err.write(args.runs_help())
        return EXIT_USAGE
    return handler(args, out, err)


# -- reading ----------------------------------------------------------------------------------


def _ls(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = open_store(args.store)
    try:
        runs = store.recent_runs(args.limit, args.status)
        short = _short_ids(store)
    finally:
        store.close()
    now = time.time()
    if args.json:
        out.write(json.dumps([_run_json(run, now) for run in runs], indent=2) + "\n")
        return 0
    if args.quiet:
        out.write("".join(f"{run['run_id']}\n" for run in runs))
        return 0
    if not runs:
        which = f" with status {args.status!r}" if args.status else ""
        err.write(f"{PROG}: no runs{which} in {store.path}\n")
        return 0
    header = ("RUN", "STATUS", "STARTED", "DURATION", "DONE", "FAILED", "TOTAL", "TARGET")
    rows = [header]
    for run in runs:
        done, failed, total = _counts(run)
        rows.append(
            (
                short.get(run["run_id"], run["run_id"]),
                run["status"],
                _when(run["started_at"]),
                _duration(run, now),
                str(done),
                str(failed),
                str(total),
                run["target"] or "-",
            )
        )
    out.write(_table(rows))
    return 0


def _show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = open_store(args.store)
    try:
        run_id = resolve_run(store, args.run)
        run = store.get_run(run_id, decode=False)
        summary = {**run, "counts": store.task_counts([run_id])[run_id]}
        inputs = Stored(store, run["inputs"])
        outputs = _run_outputs(store, run_id)
    finally:
        store.close()
    now = time.time()
    if args.json:
        shown = _run_json({**summary, "error": run["error"]}, now)
        shown["inputs"] = mapping_json(inputs)
        shown["outputs"] = {key: mapping_json(stored) for key, stored in outputs.items()}
        out.write(json.dumps(shown, indent=2) + "\n")
        return 0
    done, failed, total = _counts(summary)
    counts = summary["counts"]
    lines = [
        ("run", run_id),
        ("status", _status_text(summary)),
        ("target", run["target"] or "- (not recorded: restart and replay need TARGET)"),
    ]
    if run["parent_run_id"]:
        reused = run["restored_tasks"] or 0
        lines.append(("parent", f"{run['parent_run_id']} (a replay; {reused} task(s) reused)"))
    lines += [
        ("started", _when(run["started_at"])),
        ("finished", _when(run["finished_at"]) if run["finished_at"] else "-"),
        ("duration", _duration(summary, now)),
        ("owner", f"{run['owner_host'] or '?'} pid {run['owner_pid'] or '?'}"),
        ("tasks", f"{done} done, {failed} failed, {counts.get('skipped', 0)} skipped, "
                  f"{counts.get('running', 0)} running, of {total}"),
    ]  # fmt: skip
    for key, value in lines:
        out.write(f"{key:<9} {value}\n")
    if run["error"]:
        out.write("error\n" + _indent(run["error"]) + "\n")
    _write_mapping(out, "inputs", mapping_text(inputs))
    out.write("outputs\n" if outputs else "outputs   -\n")
    for key, stored in list(outputs.items())[:SHOWN_TASKS]:
        shown_outputs = mapping_text(stored)
        if isinstance(shown_outputs, str):
            out.write(f"  {key}: {shown_outputs}\n")
        else:
            out.write("".join(f"  {k}: {v}\n" for k, v in shown_outputs.items()))
    if len(outputs) > SHOWN_TASKS:
        out.write(
            f"  ... and the outputs of {len(outputs) - SHOWN_TASKS} more tasks (`runs tasks "
            f"{run_id} --show-outputs`, or --json)\n"
        )
    return 0


def _tasks(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = open_store(args.store)
    try:
        run_id = resolve_run(store, args.run)
        rows = store.get_task_executions(run_id, decode=False)
        names = {row["task_name"] for row in rows}
        if args.name is not None and args.name not in names:
            raise CLIError(
                f"run {run_id} has no execution of a task named {args.name!r}; its tasks: "
                + (", ".join(sorted(names)[:20]) or "none")
            )
        rows = [
            row
            for row in rows
            if (args.status is None or row["status"] == args.status)
            and (args.name is None or row["task_name"] == args.name)
        ]
        rows.sort(
            key=lambda r: (r["started_at"] or r["finished_at"] or 0.0, r["node"], r["attempt"])
        )
        outputs = (
            {id(row): Stored(store, row["outputs"]) for row in rows} if args.show_outputs else {}
        )
    finally:
        store.close()
    now = time.time()
    if args.json:
        shown = []
        for row in rows:
            entry = {
                "task": row["task_name"],
                "node": row["node"],
                "attempt": row["attempt"],
                "status": row["status"],
                "started_at": row["started_at"],
                "finished_at": row["finished_at"],
                "duration": _seconds(row, now),
                "worker": row["worker"],
                "error": row["error"],
            }
            if args.show_outputs:
                entry["outputs"] = (
                    mapping_json(outputs[id(row)]) if row["outputs"] is not None else None
                )
            shown.append(entry)
        out.write(json.dumps(shown, indent=2) + "\n")
        return 0
    if not rows:
        err.write(f"{PROG}: no task executions of run {run_id} match\n")
        return 0
    table = [("TASK", "ATTEMPT", "STATUS", "DURATION", "WORKER", "ERROR")]
    for row in rows:
        seconds = _seconds(row, now)
        error = (row["error"] or "").strip().splitlines()
        table.append(
            (
                row["task_name"],
                str(row["attempt"]),
                row["status"],
                "-" if seconds is None else _format_seconds(seconds),
                row["worker"] or "-",
                error[0] if error else "",
            )
        )
    lines = _table(table).splitlines()
    out.write(lines[0] + "\n")
    for row, line in zip(rows, lines[1:], strict=True):
        out.write(line + "\n")
        if args.show_outputs and row["outputs"] is not None:
            shown_outputs = mapping_text(outputs[id(row)])
            if isinstance(shown_outputs, str):
                out.write(f"    {shown_outputs}\n")
            else:
                out.write("".join(f"    {k}: {v}\n" for k, v in shown_outputs.items()))
    return 0


def _run_outputs(store: RunStore, run_id: str) -> dict[str, Stored]:
    """Task name -> its stored outputs, for each task whose latest execution completed."""
    latest: dict[int, dict[str, Any]] = {}
    for row in store.get_task_executions(run_id, decode=False):
        if row["node"] not in latest or row["attempt"] > latest[row["node"]]["attempt"]:
            latest[row["node"]] = row
    return {
        row["task_name"]: Stored(store, row["outputs"])
        for _, row in sorted(latest.items())
        if row["status"] == "completed" and row["outputs"] is not None
    }


# -- restart and replay -----------------------------------------------------------------------


def _restart(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _resume(args, out, err, None)


def _replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _resume(args, out, err, tuple(dict.fromkeys(args.rerun)))


def _resume(
    args: argparse.Namespace, out: TextIO, err: TextIO, rerun: tuple[str, ...] | None
) -> int:
    what = "restart" if rerun is None else "replay"
    store = open_store(args.store)
    try:
        run_id = resolve_run(store, args.run)
        run = store.get_run(run_id, decode=False)
        inputs = Stored(store, run["inputs"])
    finally:
        store.close()
    if rerun is None and run["status"] == "running":
        raise CLIError(
            f"run {run_id} is still running (pid {run['owner_pid']} on {run['owner_host']}): "
            "restart continues a run whose engine has ended; wait for it or stop it first"
        )
    target = args.target or run["target"]
    if not target:
        raise CLIError(
            f"run {run_id} has no recorded target (it was not started by `{PROG} run` or "
            f"`cluster` with --store): pass TARGET, the module:attr of its pipeline: "
            f"`{PROG} runs {what} {args.run} module:attr`"
        )
    if not inputs.ok or not isinstance(inputs.value, dict):
        raise CLIError(f"the inputs of run {run_id} cannot be read back: {inputs.problem()}")
    # `run`'s arguments: this command's own (-j, --json, --broker, ...) with the stored run's
    run_args = argparse.Namespace(
        **{**vars(args), "target": target, "input": [], "store": store_path(args.store)}
    )
    resume = Resume(run_id, dict(inputs.value), rerun)
    return asyncio.run(run_pipeline(run_args, out, err, resume=resume))


# -- formatting -------------------------------------------------------------------------------


def _short_ids(store: RunStore) -> dict[str, str]:
    """Each run id -> its shortest prefix of at least SHORT_ID characters that no other id
    starts with (what RUN accepts), as git abbreviates commits."""
    ids = sorted(run["run_id"] for run in store.list_runs())
    short: dict[str, str] = {}
    for i, run_id in enumerate(ids):
        need = SHORT_ID
        for other in (ids[i - 1] if i else None, ids[i + 1] if i + 1 < len(ids) else None):
            if other is None:
                continue
            common = 0
            while common < min(len(run_id), len(other)) and run_id[common] == other[common]:
                common += 1
            need = max(need, common + 1)
        short[run_id] = run_id[:need]
    return short


def _counts(run: dict[str, Any]) -> tuple[int, int, int]:
    """(done, failed, total) tasks; a replay's reused tasks count as done."""
    counts: dict[str, int] = run["counts"]
    done = counts.get("completed", 0)
    if run["parent_run_id"]:
        done += run["restored_tasks"] or 0
    total = run["total_tasks"] or sum(counts.values())
    return done, counts.get("failed", 0), max(total, done + counts.get("failed", 0))


def _run_json(run: dict[str, Any], now: float) -> dict[str, Any]:
    done, failed, total = _counts(run)
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "target": run["target"],
        "parent_run_id": run["parent_run_id"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "duration": _run_seconds(run, now),
        "owner_host": run["owner_host"],
        "owner_pid": run["owner_pid"],
        "heartbeat_at": run["heartbeat_at"],
        # by_status: each task by the status of its latest attempt
        "tasks": {"done": done, "failed": failed, "total": total, "by_status": run["counts"]},
        "error": run["error"],
    }


def _status_text(run: dict[str, Any]) -> str:
    if run["status"] == "running":
        return "running (its engine is alive)"
    if run["status"] == "interrupted":
        return "interrupted (its engine died: `runs restart` continues it)"
    return str(run["status"])


def _run_seconds(run: dict[str, Any], now: float) -> float | None:
    """Finished: its run time; running: so far; interrupted: until its last heartbeat."""
    end = run["finished_at"]
    if end is None:
        end = now if run["status"] == "running" else run["heartbeat_at"]
    return None if end is None else max(0.0, float(end - run["started_at"]))


def _duration(run: dict[str, Any], now: float) -> str:
    seconds = _run_seconds(run, now)
    if seconds is None:
        return "-"
    # an interrupted run ran at least until its last heartbeat, perhaps a little longer
    return _format_seconds(seconds) + ("+" if run["status"] == "interrupted" else "")


def _seconds(row: dict[str, Any], now: float) -> float | None:
    if row["started_at"] is None:
        return None
    end = row["finished_at"] if row["finished_at"] is not None else now
    return max(0.0, float(end - row["started_at"]))


def _format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.rstrip().splitlines())


def _write_mapping(out: TextIO, title: str, shown: dict[str, str] | str) -> None:
    if isinstance(shown, str):
        out.write(f"{title:<9} {shown}\n")
    elif not shown:
        out.write(f"{title:<9} -\n")
    else:
        out.write(f"{title}\n" + "".join(f"  {k}: {v}\n" for k, v in shown.items()))
