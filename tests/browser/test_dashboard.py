"""The console in real headless Chromium during a real 2-rank run: live loss points,
Save -> checkpoint on disk and on the page, Stop -> both ranks exit 0."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hvd_online.commands.run import horovodrun_command
from hvd_online.state.run_dir import RunLayout
from tests.browser.kit import ARTIFACTS, CHROMIUM
from tests.integration.harness import REPO, enable_console, wait_until, write_config

pytestmark = pytest.mark.browser
TOKEN = "browser-test-token"


@pytest.fixture
def live_run(broker, topic, tmp_path):
    config = enable_console(write_config(tmp_path, broker.url, topic), TOKEN)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    producer = subprocess.Popen(
        [sys.executable, "-m", "hvd_online.cli", "produce", str(config), "--count", "2000000",
         "--rate", "3000"], cwd=REPO, env=env)
    log_path = tmp_path / "ranks.log"
    with open(log_path, "w") as log:
        ranks = subprocess.Popen(horovodrun_command(2, ["train", str(config),
                                                        "--set", "train.idle_timeout_s=0"]),
                                 cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    layout = RunLayout(tmp_path / "run")
    try:
        yield ranks, layout, log_path
    finally:
        for process in (ranks, producer):
            if process.poll() is None:
                process.kill()
                process.wait()
        sys.stdout.write(log_path.read_text()[-5000:])


def test_dashboard_live_save_and_stop(live_run):
    from playwright.sync_api import sync_playwright

    ranks, layout, log_path = live_run
    url = wait_until(lambda: layout.console_url.exists() and layout.console_url.read_text().strip(),
                     120, "the console to start")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}?token={TOKEN}")

        def loss_points() -> int:
            return page.evaluate("window.hvdConsole.charts.loss.data.datasets[0].data.length")

        first = wait_until(lambda: loss_points() >= 3 and loss_points(), 60, "loss points")
        wait_until(lambda: loss_points() > first + 3, 60, "new live loss points")
        assert page.locator("#status").inner_text() == "training"

        page.click("#save")
        wait_until(lambda: "ckpt-" in page.locator("#last-checkpoint").inner_text(), 60,
                 "the checkpoint to show on the page")
        shown = page.locator("#last-checkpoint").inner_text()
        path = Path(shown.split(": ", 1)[1])
        assert (path / "manifest.json").is_file() and (path / "weights.npz").is_file()
        assert ranks.poll() is None, "Save must not stop training"

        page.screenshot(path=str(ARTIFACTS / "console-dashboard.png"), full_page=True)

        page.click("#stop")
        wait_until(lambda: page.locator("#status").inner_text() == "stopped", 60,
                 "the page to show 'stopped'")
        page.screenshot(path=str(ARTIFACTS / "console-stopped.png"), full_page=True)
        browser.close()

    assert ranks.wait(timeout=120) == 0
    summaries = layout.summaries()
    assert sorted(summaries) == [0, 1]
    assert all(s["stopped"] == "stop" for s in summaries.values())
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
