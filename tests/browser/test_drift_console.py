"""A drift on the console, in real headless Chromium during a real 2-rank run: the response
taken is named on the page and a running challenger's loss is drawn next to the model's."""

import pytest

from hvd_online.state.run_dir import RunLayout
from tests.browser.kit import ARTIFACTS, CHROMIUM
from tests.integration.harness import (
    enable_console,
    start_producer,
    start_ranks,
    wait_until,
    write_drift_config,
)

pytestmark = pytest.mark.browser
M = 14000


def test_the_page_names_the_response_and_draws_the_challenger(broker, topic, tmp_path):
    from playwright.sync_api import sync_playwright

    config = enable_console(write_drift_config(tmp_path, broker.url, topic), "t")
    layout = RunLayout(tmp_path / "run")
    ranks = start_ranks(config, f"train.max_samples={M}", log_path=tmp_path / "ranks.log")
    producer = None
    try:
        url = wait_until(lambda: layout.console_url.exists()
                         and layout.console_url.read_text().strip(), 120, "the console")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM,
                                         args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            # the page is open before the stream starts: it sees every step live
            producer = start_producer(config, M, rate=1500, log_path=tmp_path / "producer.log")

            def challenger_points() -> int:
                return page.evaluate(
                    "window.hvdConsole.charts.loss.data.datasets[3].data.length")

            wait_until(lambda: "challenger" in page.locator("#drift-action").inner_text(), 90,
                       "the drift response on the page")
            wait_until(lambda: challenger_points() >= 3, 60, "the challenger's loss curve")
            wait_until(lambda: "promoted" in page.locator("#drift-action").inner_text(), 90,
                       "the promotion on the page")
            marks = page.evaluate("window.hvdConsole.charts.loss.data.datasets[2].data.length")
            assert marks >= 2, "the start and the promotion are marked on the loss chart"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console-drift.png"), full_page=True)
            browser.close()
        assert ranks.wait(timeout=120) == 0
    finally:
        ranks.stop()
        if producer is not None:
            producer.stop()
