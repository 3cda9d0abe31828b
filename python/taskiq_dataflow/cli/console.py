"""stderr while a run is shown: one writer for the progress bar, log records and the cluster's
worker output, so that every line goes above the bar rather than through it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, TextIO

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
    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self.console = console
        self.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.echo(self.format(record))
        except Exception:  # a broken stderr must not end the run
            self.handleError(record)


@contextlib.contextmanager
def logging_to(console: Console) -> Iterator[None]:
    """Log records of warning and above through `console` while a run is shown; otherwise
    Python's last-resort handler would write them straight across the bar."""
    handler = _ConsoleHandler(console)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
