"""What the CLI prints: outputs (plain or JSON), the one error line for each kind of failure, and
the exit codes. The lowest level of the CLI: it imports no other module of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import traceback
from typing import Any

from ..errors import CLIError
from ..execution_engine import DataflowExecutionError, ExecutionCancelled, MissingInputError

PROG = "taskiq-dataflow"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # pydantic
    if callable(dump):
        return dump()
    return repr(value)


def _json_or_repr(value: Any) -> Any:
    """`value` if it serialises (with _jsonable's help), else its repr."""
    try:
        json.dumps(value, default=_jsonable)
    except (TypeError, ValueError):  # non-string keys, circular references
        return repr(value)
    return value


def format_outputs(outputs: dict[str, Any], as_json: bool) -> str:
    if as_json:
        safe = {key: _json_or_repr(value) for key, value in outputs.items()}
        return json.dumps(safe, indent=2, default=_jsonable)
    lines = []
    for key, value in outputs.items():
        try:
            text = json.dumps(value, default=_jsonable)
        except (TypeError, ValueError):
            text = repr(value)
        if len(text) > 500:
            text = text[:500] + f"... ({len(text)} chars; use --json for the full value)"
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


def where(exc: BaseException) -> str:
    """` at file:line` of the innermost frame of a traceback, outside importlib."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in f.filename and not f.filename.startswith("<frozen")
    ]
    if not frames:
        return ""
    last = frames[-1]
    return f" at {last.filename}:{last.lineno}"


def describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def input_error(exc: Exception) -> CLIError:
    if isinstance(exc, MissingInputError):
        return CLIError(f"{exc} (on the command line: -i KEY=VALUE)".replace("\n", " "))
    problems = getattr(exc, "problems", None) or [str(exc)]
    if len(problems) == 1:
        return CLIError(f"invalid pipeline: {problems[0]}")
    listed = "; ".join(problems[:10])
    more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
    return CLIError(f"invalid pipeline ({len(problems)} problems): {listed}{more}")


def traceback_hint(args: argparse.Namespace) -> str:
    return "" if args.traceback else " (run with --traceback to see the task's traceback)"


def summarise_failures(exc: DataflowExecutionError, args: argparse.Namespace) -> str:
    failures = exc.failures
    shown = "; ".join(str(f) for f in failures[:5])
    if len(failures) > 5:
        shown += f"; and {len(failures) - 5} more"
    text = f"{len(failures)} task(s) failed: {shown}"
    if exc.skipped:
        names = list(exc.skipped)
        listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        text += f"; {len(names)} task(s) skipped because they depend on a failed task: {listed}"
    return text + traceback_hint(args).replace("task's traceback", "tasks' tracebacks")


def tracebacks(exc: DataflowExecutionError) -> str:
    return "\n".join(f.traceback for f in exc.failures if f.traceback)


def cancelled_error(
    exc: ExecutionCancelled, stopped_by: list[int], run_id: str | None, args: argparse.Namespace
) -> CLIError:
    done = len(getattr(exc, "results", None) or {})
    why = {signal.SIGINT: "by Ctrl-C", signal.SIGTERM: "by SIGTERM"}.get(
        stopped_by[0] if stopped_by else None,  # type: ignore[call-overload]
        f"({exc})",
    )
    again = ""
    if run_id is not None:
        again = f"; continue it with `{PROG} runs restart {run_id} --store {args.store}`"
    code = EXIT_TERMINATED if stopped_by and stopped_by[0] == signal.SIGTERM else EXIT_INTERRUPTED
    return CLIError(f"the run was cancelled {why} ({done} output(s) computed){again}", code)
