"""The operator's view in real headless Chromium over a real 2-rank run on a live stream:
the header agrees with /api/status, the charts run on wall-clock time, checkpoints and
serving versions are marked, panels of features that are off are absent, a reload keeps the
history, a kill -9 of a rank turns the rank rows red, and the relaunch's console still shows
the first launch's history with a relaunch marker."""

import os
import signal
import time

import pytest

from hvd_online.state.run_dir import RunLayout
from tests.browser.kit import ARTIFACTS, CHROMIUM
from tests.integration.harness import (
    enable_console,
    rank_pids,
    start_producer,
    start_ranks,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.browser
#: the page's STALE_S (console/static/dashboard.js) and the time a page needs to notice
RED_WITHIN_S = 15

LOSS, CHECKPOINTS, VERSIONS, RELAUNCHES = 0, 4, 5, 6


def console_config(tmp_path, url, topic):
    extra = ('[checkpoint]\nevery_steps = 25\n[serving]\nexport_every_s = 2\n')
    return enable_console(write_config(tmp_path, url, topic, extra=extra), "t")


def open_page(pw, url, errors: list | None = None):
    """`errors`: collects every response of 400 or more the page gets (none is expected)."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    if errors is not None:
        page.on("response", lambda r: errors.append((r.status, r.url)) if r.status >= 400
                else None)
    page.goto(url)
    return browser, page


def points(page, dataset: int) -> list[dict]:
    return page.evaluate(f"window.hvdConsole.charts.loss.data.datasets[{dataset}].data")


def status(page) -> dict:
    return page.evaluate("fetch('/api/status').then(r => r.json())")


def test_the_operator_console_over_a_live_run_a_kill_and_the_relaunch(broker, topic, tmp_path):
    from playwright.sync_api import sync_playwright

    config = console_config(tmp_path, broker.url, topic)
    layout = RunLayout(tmp_path / "run")
    ranks = start_ranks(config, "train.idle_timeout_s=0", log_path=tmp_path / "ranks-1.log")
    producer = start_producer(config, 2_000_000, rate=2000, log_path=tmp_path / "producer.log")
    relaunch = None
    try:
        url = wait_until(lambda: layout.console_url.exists()
                         and layout.console_url.read_text().strip(), 120, "the console")
        with sync_playwright() as pw:
            errors: list = []
            browser, page = open_page(pw, url, errors)
            wait_until(lambda: len(points(page, LOSS)) >= 5, 90, "loss points")
            first_end = points(page, LOSS)[-1]["x"]
            wait_until(lambda: points(page, VERSIONS) and points(page, CHECKPOINTS), 90,
                       "checkpoint and serving version markers")
            wait_until(lambda: points(page, LOSS)[-1]["x"] > first_end + 2, 30,
                       "the time axis to move")
            assert abs(first_end - time.time()) < 60, "points are at wall-clock time"

            # the header shows what /api/status says: samples move on, and the page gets
            # them up to an emit later (0.2 s), so between a read 1 s before and one after
            before = status(page)["header"]
            time.sleep(1)
            shown = int(page.locator("#samples").inner_text().replace(",", ""))
            version = int(page.locator("#version").inner_text().split()[1].replace(",", ""))
            after = status(page)["header"]
            assert before["samples_total"] <= shown <= after["samples_total"]
            assert before["serving_version"] <= version <= after["serving_version"]
            assert page.locator("#status").inner_text() == after["status"] == "training"

            # features that are off: no panel, no legend
            for panel in ("#join-panel", "#tables-panel"):
                assert page.locator(panel).is_hidden(), panel
            legend = page.evaluate("window.hvdConsole.charts.loss.legend.legendItems"
                                   ".map(i => i.text)")
            assert "drift / response" not in legend and "challenger loss" not in legend, legend
            rows = page.locator("#ranks-body tr")
            assert rows.count() == 2
            assert page.locator("#ranks-body tr.stale").count() == 0
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console-operator.png"), full_page=True)

            # a reload keeps the history
            kept = len(points(page, LOSS))
            page.reload()
            wait_until(lambda: len(points(page, LOSS)) >= kept, 30, "the history after a reload")
            assert errors == [], "no request of the page failed (no 404 for a favicon)"

            # kill -9 of rank 1 while the stream flows: the rows turn red
            os.kill(rank_pids(ranks.process)[1], signal.SIGKILL)
            killed = time.monotonic()
            wait_until(lambda: page.locator("#ranks-body tr.stale").count() == 2,
                       RED_WITHIN_S, "the rank rows to turn red")
            print(f"kill -9 of rank 1 -> rank rows red: {time.monotonic() - killed:.1f} s")
            page.screenshot(path=str(ARTIFACTS / "console-rank-killed.png"), full_page=True)
            browser.close()
        ranks.wait(60)
        killed_at = time.time()

        # the relaunch's console reads the first launch's history back
        layout.console_url.unlink(missing_ok=True)
        relaunch = start_ranks(config, "train.idle_timeout_s=0",
                               log_path=tmp_path / "ranks-2.log")
        url = wait_until(lambda: layout.console_url.exists()
                         and layout.console_url.read_text().strip(), 120, "the second console")
        with sync_playwright() as pw:
            browser, page = open_page(pw, url)
            wait_until(lambda: points(page, RELAUNCHES), 90, "the relaunch marker")
            earlier = [p for p in points(page, LOSS) if p["x"] < killed_at - 5]
            assert len(earlier) >= 5, "the first launch's loss curve is still there"
            page.screenshot(path=str(ARTIFACTS / "console-relaunched.png"), full_page=True)
            browser.close()
    finally:
        for process in (ranks, relaunch, producer):
            if process is not None:
                process.stop()
