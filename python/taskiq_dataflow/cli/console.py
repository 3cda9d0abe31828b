"""stderr while a run is shown: one writer for the progress bar, log records and the cluster's
worker output, so that every line goes above the bar rather than through it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from ..task_logs import LIBRARY_LOGGERS, formatter, labels_on, quiet_library, set_labels
from .output import PROG


class Console:
    """stderr shared by the progress display and everything else that writes there while it
    runs (log records, the cluster's worker processes): a line goes above the bar rather than
    through it. Safe to call from other threads."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar: Any = None
        self._lock = threading.Lock()

    def echo(self, line: str) -> None:
        with self._lock:
            if self.bar is not None:
                from tqdm import tqdm

                tqdm.write(line, file=self.stream)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console, level: int = logging.WARNING, fmt: str = "text") -> None:
        super().__init__(level)
        self.console = console
        self.setFormatter(formatter(fmt, f"{PROG}: %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.echo(self.format(record))
        except Exception:  # a broken stderr must not end the run
            self.handleError(record)


@contextlib.contextmanager
def logging_to(console: Console, level: str = "WARNING", fmt: str = "text") -> Iterator[None]:
    """Log records of `level` and above through `console` while a run is shown (otherwise
    Python's last-resort handler would write them straight across the bar), as text or JSON
    lines labelled with their task. Records are made down to INFO meanwhile, so that a run
    store captures a task's log.info; the library's own loggers stay at WARNING (unless
    DEBUG). Everything is as it was afterwards."""
    number = logging.getLevelNamesMapping()[level]
    handler = _ConsoleHandler(console, number, fmt)
    root = logging.getLogger()
    saved = root.level, labels_on()
    own = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    root.addHandler(handler)
    root.setLevel(min(root.getEffectiveLevel(), number, logging.INFO))
    quiet_library(number)
    set_labels(fmt == "json")
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        set_labels(saved[1])
        for name, was in own.items():
            logging.getLogger(name).setLevel(was)


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
