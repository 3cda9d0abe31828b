"""Screenshots of the dashboard for the README, taken in headless chromium (Debian's
/usr/bin/chromium, driven by Playwright) while a run goes on.

    python docs/make_screenshots.py           # the real thing: examples/dashboard_demo.py run
                                              # with --dashboard on a free port (-j 32)
    python docs/make_screenshots.py --fake    # against tests/e2e/dashboard_fake.py instead

Writes docs/dashboard-live.png (the whole page, mid-run) and docs/dashboard-failures.png (the
graph, the failure clicked open with its traceback, the workers).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@contextlib.contextmanager
def serving(fake: bool) -> Iterator[str]:
    """The demo run (or the fake) with its dashboard on a free port; ended on the way out."""
    port = free_port()
    if fake:
        cmd = [sys.executable, str(ROOT / "tests/e2e/dashboard_fake.py"), "--port", str(port)]
        cmd += ["--rate", "2500"]
    else:
        cmd = [sys.executable, "-m", "taskiq_dataflow", "run", "examples.dashboard_demo:build"]
        # 32 slots and short sleeps: a task stream of 32 lanes with many bars each
        cmd += ["-i", "source=demo", "--no-fail-fast", "--progress", "none", "-j", "32"]
        cmd += ["--dashboard", f"127.0.0.1:{port}"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), str(ROOT)])
    env["DASHBOARD_DEMO_SLEEP"] = "0.02"
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{cmd[2:5]} exited ({proc.returncode}) before it listened")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def done_fraction(page: Any) -> float:
    done = int(page.inner_text("#run-done").replace(",", "") or 0)
    total = int(page.inner_text("#run-total").replace(",", "") or 1)
    return done / max(1, total)


def shoot(url: str, at: float) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("document.getElementById('run-status').textContent === 'running'")
        deadline = time.monotonic() + 90
        while done_fraction(page) < at or not page.locator("[data-testid=failure]").count():
            if time.monotonic() > deadline:
                raise SystemExit("the run did not get far enough for a screenshot in 90 s")
            page.wait_for_timeout(200)
        # the viewport as tall as the page, and a frame drawn at that size: a full-page
        # screenshot would resize the page under canvases drawn for the old size
        height = page.evaluate("document.documentElement.scrollHeight")
        page.set_viewport_size({"width": 1440, "height": height})
        page.wait_for_timeout(700)
        page.screenshot(path=str(DOCS / "dashboard-live.png"))
        page.locator("[data-testid=failure]").first.click()
        height = page.evaluate("document.documentElement.scrollHeight")  # the traceback's room
        page.set_viewport_size({"width": 1440, "height": height})
        page.wait_for_timeout(700)
        top = page.locator("#graph").locator("xpath=ancestor::section").bounding_box()
        bottom = page.locator("#failures").locator("xpath=ancestor::section").bounding_box()
        clip = {"x": 0, "y": top["y"] - 14, "width": 1440,
                "height": bottom["y"] + bottom["height"] - top["y"] + 28}  # fmt: skip
        page.screenshot(path=str(DOCS / "dashboard-failures.png"), clip=clip)
        browser.close()
        if errors:
            raise SystemExit("the page logged errors:\n" + "\n".join(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fake", action="store_true", help="the fake server, not a real run")
    parser.add_argument("--at", type=float, default=0.45, help="done fraction to shoot at")
    args = parser.parse_args()
    with serving(args.fake) as url:
        shoot(url, args.at)
    for name in ("dashboard-live.png", "dashboard-failures.png"):
        print(DOCS / name)


if __name__ == "__main__":
    main()
