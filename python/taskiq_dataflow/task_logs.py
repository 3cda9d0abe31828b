"""The log records of a running task: captured for its execution, and labelled with its run.

While a task runs (stepped in place, continued as an asyncio Task, or in the thread that runs a
blocking task; in the engine's process or on a cluster worker) CURRENT holds its `TaskLog`:
run id, task name, attempt, worker. Two things read it:

- capture: the one `_CaptureHandler` on the root logger adds the records the task logs, from
  any logger, at or above the capture level, to its TaskLog (at most MAX_RECORDS records and
  MAX_BYTES bytes per execution, then one "... K more records dropped" marker). The engine asks
  for capture when its run has a store or a StepLogged listener; a worker when the tasks frame
  says so. The records travel back with the completion and become a StepLogged event.
- labels: `JsonFormatter` (the CLI's `--log-format json`) writes the run id, task, attempt and
  worker of every record logged inside a task (null outside one).

Only records that the logging configuration lets through exist at all: a logger at WARNING
makes no INFO record to capture. The command line's processes (run, cluster, worker) create
records down to INFO, whatever `--log-level` shows on stderr (`configure`).

With neither capture nor labels, nothing is set per task: the transports test one attribute
per batch of jobs.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from .events import LogEntry

__all__ = [
    "CURRENT",
    "DROPPED_LOGGER",
    "MAX_BYTES",
    "MAX_LEVEL_NAME",
    "MAX_LOGGER_NAME",
    "MAX_MESSAGE",
    "MAX_RECORDS",
    "JsonFormatter",
    "TaskLog",
    "capture_level",
    "capturing",
    "labels_on",
    "level_number",
    "set_fallback",
    "set_labels",
]

MAX_RECORDS = 1000  # records kept per execution of a task
MAX_BYTES = 64 * 1024  # bytes of messages (UTF-8) kept per execution
MAX_MESSAGE = 16 * 1024  # characters of one message: a longer one keeps its head and tail
MAX_LOGGER_NAME = 256
MAX_LEVEL_NAME = 32
DROPPED_LOGGER = "taskiq_dataflow.logs"  # the logger the "records dropped" marker names

CURRENT: contextvars.ContextVar[TaskLog | None] = contextvars.ContextVar(
    "taskiq_dataflow_task_log", default=None
)

_labels = False  # JsonFormatter in use: every task gets a TaskLog, captured or not

# the TaskLog of a record logged where no context holds one: an in-process task stepped in
# place, whose TaskLog LocalTransport makes at its first record rather than for every task
# (most log nothing, and a TaskLog per task cost the in-process engine ~15% of its rate)
_fallback: Callable[[], TaskLog | None] | None = None


def set_fallback(find: Callable[[], TaskLog | None] | None) -> None:
    global _fallback
    _fallback = find


def set_labels(on: bool) -> None:
    """Give every task run in this process a TaskLog, so that its records carry its run."""
    global _labels
    _labels = on


def labels_on() -> bool:
    return _labels


def level_number(level: str | int, what: str = "log level") -> int:
    """`"INFO"` or `20` -> 20; a clear error naming the bad value otherwise."""
    if type(level) is int and level >= 0:
        return level
    if isinstance(level, str):
        number = logging.getLevelNamesMapping().get(level.upper())
        if number is not None:
            return number
    known = ", ".join(n for n in logging.getLevelNamesMapping() if n != "NOTSET")
    raise ValueError(f"{what} {level!r} is not a logging level: use one of {known}")


class TaskLog:
    """One execution of a task as its log records see it; `level` None: labels only."""

    __slots__ = ("_dropped", "_records", "_size", "attempt", "level", "run_id", "task", "worker")

    def __init__(
        self,
        run_id: str,
        task: str,
        attempt: int | None,
        level: int | None,
        worker: str | None = None,
    ) -> None:
        self.run_id, self.task, self.attempt, self.worker = run_id, task, attempt, worker
        self.level = level
        self._records: list[LogEntry] = []
        self._size = 0
        self._dropped = 0

    def add(self, record: logging.LogRecord) -> None:
        # no lock: a task that logs from several threads at once may go a record or two over
        # the bounds here, entries() cuts them (the list's append itself is atomic)
        message = _cut(message_of(record))
        cost = len(message.encode("utf-8", "replace")) + len(record.name)
        if len(self._records) >= MAX_RECORDS or self._size + cost > MAX_BYTES:
            self._dropped += 1
            return
        self._size += cost
        level = record.levelname[:MAX_LEVEL_NAME]
        self._records.append(
            LogEntry(record.created, level, record.name[:MAX_LOGGER_NAME], message)
        )

    def entries(self) -> tuple[LogEntry, ...] | None:
        """What it captured, within the bounds, the marker last when records were dropped;
        None if nothing."""
        records, dropped = self._records, self._dropped
        if not records and not dropped:
            return None
        kept: tuple[LogEntry, ...] = tuple(records[:MAX_RECORDS])
        if len(records) > MAX_RECORDS or self._size > MAX_BYTES:  # threads raced in add()
            size, cut = 0, 0
            for cut, entry in enumerate(kept):  # noqa: B007 - cut is the count kept
                size += len(entry.message.encode("utf-8", "replace")) + len(entry.logger)
                if size > MAX_BYTES:
                    break
            else:
                cut = len(kept)
            dropped += len(records) - cut
            kept = kept[:cut]
        if dropped:
            marker = (
                f"... {dropped} more records dropped (a task execution keeps at most "
                f"{MAX_RECORDS} records, {MAX_BYTES} bytes)"
            )
            kept += (LogEntry(time.time(), "WARNING", DROPPED_LOGGER, marker),)
        return kept


def capture_level(log: TaskLog | None) -> int | None:
    return None if log is None else log.level


_FORMATTER = logging.Formatter()


def message_of(record: logging.LogRecord) -> str:
    """The record's message with its arguments, then its exception's traceback text (and
    stack, when it was logged with stack_info)."""
    try:
        message = record.getMessage()
    except Exception as exc:  # arguments that do not fit the format: keep what there is
        message = f"{record.msg!r} % {record.args!r} (cannot be formatted: {exc})"
    if record.exc_info and not record.exc_text:
        record.exc_text = _FORMATTER.formatException(record.exc_info)
    if record.exc_text:
        message = f"{message}\n{record.exc_text}"
    if record.stack_info:
        message = f"{message}\n{_FORMATTER.formatStack(record.stack_info)}"
    return message


def _cut(text: str) -> str:
    if len(text) <= MAX_MESSAGE:
        return text
    half = (MAX_MESSAGE - 64) // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


class _CaptureHandler(logging.Handler):
    """On the root logger while some run captures: adds each record to the TaskLog of the
    task that logged it. Being a handler, it would turn Python's last-resort output (warnings
    on stderr when nothing else handles them) off: it writes those itself."""

    def handle(self, record: logging.LogRecord) -> bool:
        # no lock, no filters: a TaskLog is its own task's (and locks itself)
        log = CURRENT.get()
        if log is None and _fallback is not None:
            log = _fallback()
        if log is not None and log.level is not None and record.levelno >= log.level:
            log.add(record)
        last = logging.lastResort
        if last is not None and record.levelno >= last.level and self._alone(record.name):
            last.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def _alone(self, name: str) -> bool:
        """No handler but this one on the record's way up: Python would use lastResort."""
        logger: logging.Logger | None = (
            logging.root if name == "root" else logging.Logger.manager.loggerDict.get(name)  # type: ignore[assignment]
        )
        if not isinstance(logger, logging.Logger):
            logger = logging.root
        while logger is not None:
            for handler in logger.handlers:
                if handler is not self:
                    return False
            if not logger.propagate:
                break
            logger = logger.parent
        return True


_handler = _CaptureHandler()
_users = 0
_users_lock = threading.Lock()


@contextlib.contextmanager
def capturing() -> Iterator[None]:
    """The capture handler on the root logger while any run (or worker) captures."""
    global _users
    with _users_lock:
        if _users == 0:
            logging.getLogger().addHandler(_handler)
        _users += 1
    try:
        yield
    finally:
        with _users_lock:
            _users -= 1
            if _users == 0:
                logging.getLogger().removeHandler(_handler)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (epoch seconds), level, logger, message, and the
    run_id, task, attempt and worker of the task that logged it (null outside a task)."""

    def format(self, record: logging.LogRecord) -> str:
        log = CURRENT.get()
        created = record.created
        line: dict[str, Any] = {
            "time": created if math.isfinite(created) else None,
            "level": record.levelname,
            "logger": record.name,
            "message": message_of(record),
            "run_id": None if log is None else log.run_id,
            "task": None if log is None else log.task,
            "attempt": None if log is None else log.attempt,
            "worker": None if log is None else log.worker,
        }
        return json.dumps(line, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LIBRARY_LOGGERS = ("taskiq_dataflow", "nats", "taskiq")


def configure(
    level: str | int = "WARNING",
    fmt: str = "text",
    stream: TextIO | None = None,
    text_format: str = TEXT_FORMAT,
) -> logging.Handler:
    """A process's logging as the command line sets it (worker processes): records at
    `level` and above on `stream` (stderr), as text or JSON lines. Records are made down to
    INFO whatever `level` is, so that a task's log.info can be captured for its run; the
    library's own loggers stay at WARNING unless `level` is DEBUG."""
    number = level_number(level)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setLevel(number)
    handler.setFormatter(formatter(fmt, text_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        if old is not _handler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(min(number, logging.INFO))
    quiet_library(number)
    set_labels(fmt == "json")
    return handler


def formatter(fmt: str, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return logging.Formatter(text_format)
    raise ValueError(f"log format {fmt!r} is not one of: text, json")


def quiet_library(level: int) -> None:
    """The engine's, NATS client's and taskiq's loggers at WARNING unless `level` is DEBUG
    (their INFO lines are about connections, not about the user's tasks)."""
    own = logging.NOTSET if level <= logging.DEBUG else logging.WARNING
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(own)
