"""The browser tests' kit: Debian's Chromium and where screenshots go."""

from tests.integration.harness import REPO

CHROMIUM = "/usr/bin/chromium"
#: screenshots of the pages under test, for a person to look at
ARTIFACTS = REPO / "artifacts"
