"""The docs site as a reader gets it: built with `mkdocs build --strict` (a broken link, a
missing page or a results figure with no results file fails the build), served on loopback,
opened in real headless Chromium: the home page, and a reference page generated from the
code that names a config key the code declares."""

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hvd_online.config.sections import ServingConfig
from tests.integration.harness import REPO

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    subprocess.run([str(Path(sys.executable).with_name("mkdocs")), "build", "--strict",
                    "-d", str(out)], cwd=REPO, check=True,
                   env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_the_home_page_and_a_generated_reference_page_open(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto(site)
        assert "hvd-online" in page.title()
        assert page.locator("h1").first.inner_text().strip().rstrip("¶") == "hvd-online"
        page.get_by_role("link", name="Configuration").first.click()
        page.wait_for_url("**/reference/config/")
        text = page.locator("article").inner_text()
        # every key the code declares is on the page, with its default
        assert "updates_every_s" in text and str(ServingConfig().updates_every_s) in text
        assert "[serving]" in text
        (REPO / "artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(REPO / "artifacts" / "docs-config.png"))
        browser.close()
