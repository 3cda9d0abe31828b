"""Helpers of the dashboard's browser tests: Debian's chromium driven by Playwright (no browser
download), every console error and uncaught exception of a page collected so a test can assert
there were none, and reads of what the page drew."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import taskiq_dataflow

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 1000}
# where this test process imports the package from (a worktree's python/, or the install): the
# subprocesses it starts import the same code
PACKAGE_ROOT = Path(taskiq_dataflow.__file__).resolve().parent.parent

# Saturated pixels of a canvas: the task stream's bars are coloured per task name, while its
# lanes, grid and labels are greys, so a count above zero means bars were drawn.
COLOURED_PIXELS_JS = """(id) => {
  const c = document.getElementById(id);
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const hi = Math.max(d[i], d[i + 1], d[i + 2]), lo = Math.min(d[i], d[i + 1], d[i + 2]);
    if (d[i + 3] > 200 && hi - lo > 60) n++;
  }
  return n / (c.width * c.height);
}"""


@dataclass
class Watched:
    """A page and what went wrong in it (console errors, uncaught exceptions)."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.errors, "the page logged errors:\n" + "\n".join(self.errors)


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def watched_page(browser: Any, timeout_ms: float = 15_000) -> Iterator[Watched]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    watched = Watched(page)
    page.on(
        "console",
        lambda msg: (
            watched.errors.append(f"console.{msg.type}: {msg.text}")
            if msg.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
    try:
        yield watched
    finally:
        context.close()


def number(text: str) -> int:
    """'12,345' -> 12345."""
    digits = re.sub(r"[^\d]", "", text)
    assert digits, f"no number in {text!r}"
    return int(digits)


def done_count(page: Any) -> int:
    return number(page.inner_text("#run-done"))


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy (returned); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def coloured_fraction(page: Any, canvas_id: str = "task-stream") -> float:
    return float(page.evaluate(COLOURED_PIXELS_JS, canvas_id))


def open_offline(page: Any, report: Path) -> list[str]:
    """Open the report file with every other request aborted; returns the list the aborted
    URLs are added to (an offline report must leave it empty)."""
    blocked: list[str] = []
    own = report.as_uri()

    def only_the_file(route: Any) -> None:
        if route.request.url.split("#")[0] == own:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_file)
    page.goto(own)
    return blocked
