"""The shipped alert rules (examples/monitoring/alerts.yml) with Debian's real promtool: they
load, and each fires on the failure it is for and stays quiet on a healthy run (the cases in
alerts-test.yml)."""

import shutil
import subprocess
from pathlib import Path

import pytest

MONITORING = Path(__file__).resolve().parents[2] / "examples" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian's prometheus package: "
                             "scripts/setup.sh installs it where it runs as root)")


def promtool(*args: str) -> str:
    done = subprocess.run([PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@needs_promtool
def test_the_alert_rules_load():
    assert "SUCCESS: 9 rules found" in promtool("check", "rules", "alerts.yml")


@needs_promtool
def test_each_alert_fires_on_its_failure_and_not_on_a_healthy_run():
    out = promtool("test", "rules", "alerts-test.yml")
    assert "SUCCESS" in out
    tested = {line.split("alertname:")[1].strip().strip("}").split(",")[0].strip()
              for line in (MONITORING / "alerts-test.yml").read_text().splitlines()
              if "alertname:" in line}
    rules = {line.split("alert:")[1].strip()
             for line in (MONITORING / "alerts.yml").read_text().splitlines()
             if line.strip().startswith("- alert:")}
    assert rules == tested, "every rule has a case"


@needs_promtool
def test_the_prometheus_config_is_valid():
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
