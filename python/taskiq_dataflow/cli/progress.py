"""The progress display of a run, fed by the engine's events only (nothing polls): a tqdm bar on
a terminal, plain lines (at most one a second) otherwise, and a final summary line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..events import (
    Event,
    RunFinished,
    RunGrew,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepSkipped,
    StepStarted,
)
from ..execution_engine import ExecutionEngine
from .console import Console, isatty


class Progress:
    """Progress from engine events: a tqdm bar, plain lines (at most one a second), or nothing.

    The tasks of map nodes' items count as tasks: their nested runs add to the total when they
    start (see `watch`)."""

    def __init__(self, mode: str, stream: TextIO | Console, interval: float = 1.0) -> None:
        self.console = stream if isinstance(stream, Console) else Console(stream)
        self.stream = self.console.stream
        if mode == "auto":
            mode = "bar" if isatty(self.stream) else "lines"
        self.mode = mode
        self.interval = interval
        self.total = 0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.skipped = 0
        self.t0 = time.monotonic()
        self.finished: RunFinished | None = None
        self.cached = 0  # completed from the result cache, not run
        self.run_id: str | None = None
        self._bar: Any = None
        self._bar_done = 0
        self._last_sync = 0.0
        self._last_line = 0.0
        self._last_line_state: tuple[int, ...] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.skipped

    @property
    def running(self) -> int:
        return max(0, self.started - self.completed - self.failed)

    def attach(self, engine: ExecutionEngine) -> None:
        self.watch(engine.events)

    def watch(self, bus: Any) -> None:
        if self.mode != "none":
            self._unsubscribe.append(
                bus.subscribe(
                    self.on_event,
                    RunStarted,
                    RunGrew,
                    StepStarted,
                    StepCompleted,
                    StepFailed,
                    StepSkipped,
                    RunFinished,
                )
            )

    def detach(self) -> None:
        """Unsubscribe from every bus: a map node's bus lives as long as its Flow, so it would
        otherwise keep this display (and its stream) for the flow's next runs."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    def on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is StepCompleted:
            self.completed += 1
            if event.cached:  # type: ignore[attr-defined]
                self.cached += 1
        elif kind is StepStarted:
            self.started += 1
        elif kind is StepFailed:
            self.failed += 1
        elif kind is StepSkipped:
            self.skipped += 1
        elif kind is RunStarted:
            if self.run_id is None or event.run_id == self.run_id:
                self._start(event)  # type: ignore[arg-type]
                return
            self._grow(event.total)  # type: ignore[attr-defined]  # a nested run on this engine
        elif kind is RunGrew:
            if event.run_id == self.run_id:
                self._grow(event.added)  # type: ignore[attr-defined]  # a map's items
        elif kind is RunFinished:
            if event.run_id == self.run_id:
                self._finish(event)  # type: ignore[arg-type]
            return
        now = time.monotonic()
        if self._bar is not None:
            if now - self._last_sync >= 0.1:
                self._sync_bar(now)
        elif self.mode == "lines" and now - self._last_line >= self.interval:
            self._line(now)

    def _grow(self, tasks: int) -> None:
        self.total += tasks
        if self._bar is not None:
            self._bar.total = self.total

    def _start(self, event: RunStarted) -> None:
        self.run_id = event.run_id
        self.total = event.total
        self.t0 = self._last_line = time.monotonic()
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total,
                unit="task",
                file=self.stream,
                dynamic_ncols=True,
                smoothing=0.1,
                leave=True,
            )
            self.console.bar = self._bar
            self._sync_bar(self.t0)
        if self.mode in ("bar", "lines"):
            try:
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
            except RuntimeError:  # pragma: no cover - events are emitted inside the loop
                self._ticker = None

    async def _tick(self) -> None:
        """Keep the display alive through quiet stretches (no events): redraw the bar (elapsed,
        ETA) twice a second; print a line when due, still at most one per interval."""
        while self.finished is None:
            if self._bar is not None:
                await asyncio.sleep(0.5)
                if self._bar is not None:
                    self._sync_bar(time.monotonic())
                continue
            wait = self.interval - (time.monotonic() - self._last_line)
            await asyncio.sleep(max(wait, 0.05))
            now = time.monotonic()
            if self.finished is None and now - self._last_line >= self.interval:
                self._line(now)

    def _sync_bar(self, now: float) -> None:
        bar = self._bar
        self._last_sync = now
        bar.update(self.done - self._bar_done)
        self._bar_done = self.done
        postfix = {"failed": self.failed, "running": self.running}
        if self.skipped:
            postfix["skipped"] = self.skipped
        if self.cached:
            postfix["cached"] = self.cached
        bar.set_postfix(postfix, refresh=True)

    def _line(self, now: float) -> None:
        state = (self.completed, self.failed, self.skipped, self.running)
        self._last_line = now
        if state == self._last_line_state:
            return  # nothing changed since the last line
        self._last_line_state = state
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = self.total - self.done
        eta = f"{remaining / rate:.1f}s" if rate > 0 else "?"
        cached = f" ({self.cached} from cache)" if self.cached else ""
        self._write(
            f"progress {self.done}/{self.total} done{cached}, {self.failed} failed, "
            f"{self.skipped} skipped, {self.running} running, {rate:.1f} tasks/s, ETA {eta}, "
            f"elapsed {elapsed:.1f}s"
        )

    def _finish(self, event: RunFinished) -> None:
        self.finished = event
        self.close()
        elapsed = event.elapsed
        rate = (self.completed + self.failed) / elapsed if elapsed > 0 else 0.0
        not_run = self.total - self.done
        stopped = f", {not_run} not run" if not_run else ""
        self._write(
            f"finished {event.status}: {self.completed}/{self.total} succeeded, {self.failed} "
            f"failed, {self.skipped} skipped{stopped} in {elapsed:.2f}s ({rate:.1f} tasks/s)"
        )

    def close(self) -> None:
        """Stop the ticker and close the bar (also after a run that ended without RunFinished,
        e.g. an error before it)."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._bar is not None:
            self._sync_bar(time.monotonic())
            self._bar.close()
            self._bar = None
            self.console.bar = None

    def _write(self, line: str) -> None:
        self.console.echo(line)
