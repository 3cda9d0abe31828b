"""The dashboard page in a real headless chromium, against `dashboard_fake.py` (a stand-in
server in a subprocess that serves the shipped static files and plays contract-exact
snapshots): it loads, its numbers move, the task stream has bars, a failure's traceback is one
click away, the run selector switches runs, and the offline report renders with the network
blocked. No test may leave a console error behind."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .browser_support import (
    PACKAGE_ROOT,
    Watched,
    chromium,
    coloured_fraction,
    done_count,
    number,
    open_offline,
    wait_for,
    watched_page,
)
from .support import E2E, Processes, free_port, listening, run, wait_until

pytestmark = pytest.mark.e2e

FAKE = str(E2E / "dashboard_fake.py")


@pytest.fixture(scope="module")
def fake_url(module_procs: Processes) -> str:
    port = free_port()
    # a slow live run, so it is still running at the module's last test
    proc = module_procs.spawn(
        [sys.executable, FAKE, "--port", str(port), "--rate", "300"],
        env=module_procs.env(pythonpath=[PACKAGE_ROOT]),
    )
    wait_until(lambda: listening(port) or proc.poll() is not None, 20, "the fake dashboard")
    assert proc.poll() is None, module_procs.output(proc)
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    with watched_page(browser) as w:
        yield w
        w.assert_clean()


def open_live(watched: Watched, url: str) -> Any:
    page = watched.page
    page.goto(url)
    page.wait_for_function("document.getElementById('run-status').textContent === 'running'")
    return page


def test_the_page_loads_and_shows_every_view_of_the_newest_run(watched, fake_url):
    start = time.monotonic()
    page = open_live(watched, fake_url)
    assert page.input_value("#run-select") == "run-live"
    assert page.locator("#run-select option").count() == 2
    assert number(page.inner_text("#run-total")) == 100_000
    rows = page.locator("[data-testid=progress-row]")
    names = [rows.nth(i).get_attribute("data-name") for i in range(rows.count())]
    assert names == ["load", "parse", "validate", "features", "score", "aggregate", "report"]
    # the DAG collapsed: one node per task name, with its count, and the external inputs apart
    assert page.locator("#graph g.node:not(.input)").count() == 7
    inputs = page.locator("#graph g.node.input")
    assert sorted(inputs.nth(i).get_attribute("data-name") for i in range(2)) == ["model", "source"]
    assert "\u00d720,000" in page.text_content("#graph g.node[data-name=load]")
    assert page.locator("#graph path.edge").count() == 9  # 7 between names + 2 from inputs
    page.wait_for_selector("#workers tr.lost")  # the fake loses a worker 3 s in
    assert "worker-node2-5121-1" in page.inner_text("#workers tr.lost")
    assert number(page.inner_text("#lost-workers")) == 1
    assert number(page.inner_text("#redeliveries")) == 3
    assert "rows" in page.inner_text("#streams") and "64" in page.inner_text("#streams")
    assert "processed batch" in page.inner_text("#logs")
    assert coloured_fraction(page, "throughput") > 0.001  # the line and its area
    assert time.monotonic() - start < 20


def test_progress_numbers_move_while_the_run_goes_on(watched, fake_url):
    page = open_live(watched, fake_url)
    first = done_count(page)
    parse = page.locator("[data-testid=progress-row][data-name=parse] .s-done")
    width_before = parse.evaluate("e => e.getBoundingClientRect().width")
    second = wait_for(lambda: done_count(page) > first and done_count(page), 5, "done to grow")
    assert second > first
    elapsed = page.inner_text("#run-elapsed")
    wait_for(lambda: page.inner_text("#run-elapsed") != elapsed, 3, "the elapsed clock to tick")
    width_after = parse.evaluate("e => e.getBoundingClientRect().width")
    assert width_after > width_before


def test_the_task_stream_canvas_has_bars(watched, fake_url):
    page = open_live(watched, fake_url)
    fraction = wait_for(lambda: coloured_fraction(page), 5, "coloured bars on the canvas")
    assert fraction > 0.05, f"only {fraction:.2%} of the task stream is coloured"
    assert "4 lanes" in page.inner_text("#stream-note")
    # hovering a bar names its task
    box = page.locator("#task-stream").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 30, box["y"] + 12)
    tip = page.locator("#stream-tip")
    wait_for(lambda: tip.is_visible() or _hover_left(page, box), 3, "a tooltip on a bar")
    assert "·" in tip.inner_text()


def _hover_left(page: Any, box: dict[str, float]) -> bool:
    # the most recent bar may not have ended yet at that spot: try a little further left
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 12)
    return bool(page.locator("#stream-tip").is_visible())


def test_clicking_a_failure_shows_its_traceback(watched, fake_url):
    page = open_live(watched, fake_url)
    failure = page.locator("[data-testid=failure]").first
    failure.wait_for()
    assert "ValueError" in failure.inner_text()
    assert "Traceback" not in page.inner_text("#traceback")
    failure.click()
    text = page.inner_text("#traceback")
    assert "Traceback (most recent call last):" in text
    assert "ValueError: feature vector 4711 has NaN in column 'price'" in text
    assert failure.get_attribute("aria-pressed") == "true"
    # the choice survives the next snapshots
    time.sleep(1.2)
    assert "feature vector 4711" in page.inner_text("#traceback")


def test_the_run_selector_switches_runs_and_keeps_the_choice_in_the_url(watched, fake_url):
    page = open_live(watched, fake_url)
    page.select_option("#run-select", "run-old")
    page.wait_for_function("document.getElementById('run-status').textContent === 'failed'")
    assert page.url.endswith("#run=run-old")
    assert number(page.inner_text("#run-total")) == 2_000
    rows = page.locator("[data-testid=progress-row]")
    wait_for(lambda: rows.count() == 3, 3, "the old run's three progress rows")
    assert page.locator("#workers").inner_text().startswith("No workers")
    assert "8 lanes" in page.inner_text("#stream-note")
    # markup in a log message is shown as text
    assert '<b id="injected">bold</b>' in page.inner_text("#logs")
    assert page.locator("#injected").count() == 0
    # a reload opens the run the URL names, and the run stays put while the live one moves
    page.reload()
    page.wait_for_function("document.getElementById('run-status').textContent === 'failed'")
    assert page.input_value("#run-select") == "run-old"
    page.wait_for_timeout(1200)
    assert number(page.inner_text("#run-done")) == 1_997
    page.select_option("#run-select", "run-live")
    page.wait_for_function("document.getElementById('run-status').textContent === 'running'")
    assert number(page.inner_text("#run-total")) == 100_000


def test_the_offline_report_renders_with_the_network_blocked(watched, tmp_path):
    report = tmp_path / "report.html"
    procs = Processes()
    try:
        outcome = run(
            procs,
            [sys.executable, FAKE, "--write-report", str(report), "--at", "12"],
            timeout=30,
            env=procs.env(pythonpath=[PACKAGE_ROOT]),
        )
    finally:
        procs.close()
    assert outcome.code == 0, outcome.describe()
    html = report.read_text()
    assert 'src="' not in html and "/static/" not in html  # nothing to fetch
    page = watched.page
    blocked = open_offline(page, report)
    page.wait_for_function("document.getElementById('run-status').textContent === 'running'")
    assert page.inner_text("#conn").startswith("report")
    assert page.evaluate("typeof window.DATAFLOW_REPORT") == "object"
    assert done_count(page) > 0
    assert page.locator("[data-testid=progress-row]").count() == 7
    assert coloured_fraction(page) > 0.05
    page.locator("[data-testid=failure]").first.click()
    assert "ValueError: feature vector 4711" in page.inner_text("#traceback")
    # a report does not move: it is the run as it was
    before = done_count(page)
    page.wait_for_timeout(800)
    assert done_count(page) == before
    # the other run of the report, by the selector
    page.select_option("#run-select", "run-old")
    page.wait_for_function("document.getElementById('run-status').textContent === 'failed'")
    assert page.evaluate("window.INJECTED === undefined"), "a log message ran as a script"
    assert blocked == [], f"the report asked the network for {blocked}"


LONG_TASKS_JS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({ entryTypes: ["longtask"] });
"""


def test_a_snapshot_at_every_cap_renders_without_stalling_the_page(browser, module_procs):
    """What the server sends for a 1M-task run (200 names, 2,000 bars, 600 points, 100
    failures, 500 logs, 64 workers), twice a second: no frame blocks the page for long, and
    the bars are pixels, not DOM nodes."""
    port = free_port()
    proc = module_procs.spawn(
        [sys.executable, FAKE, "--port", str(port), "--big", "--rate", "100000"],
        env=module_procs.env(pythonpath=[PACKAGE_ROOT]),
    )
    wait_until(lambda: listening(port) or proc.poll() is not None, 20, "the big fake dashboard")
    with watched_page(browser) as watched:
        page = watched.page
        page.add_init_script(LONG_TASKS_JS)
        open_live(watched, f"http://127.0.0.1:{port}/")
        wait_for(lambda: page.locator("[data-testid=progress-row]").count() == 200, 5, "200 rows")
        page.wait_for_timeout(500)  # the first full render (the graph is laid out once)
        page.evaluate("window.__longTasks = []")
        start = done_count(page)
        page.wait_for_timeout(4000)  # ~8 snapshots
        assert done_count(page) > start
        longest = max(page.evaluate("window.__longTasks"), default=0.0)
        # ~40 ms on an idle laptop; the bound leaves room for a loaded 2-core CI box and still
        # catches a frame that grows with the data (a DOM node per bar, a quadratic layout)
        assert longest < 750, f"a frame blocked the page for {longest:.0f} ms"
        assert page.locator("#graph g.node:not(.input)").count() == 200
        assert page.locator("#task-stream *").count() == 0  # one canvas, no element per bar
        elements = page.evaluate("document.getElementsByTagName('*').length")
        assert elements < 12_000, f"{elements} DOM elements"
        watched.assert_clean()
