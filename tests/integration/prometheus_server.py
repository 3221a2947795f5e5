"""A real Prometheus server (Debian's `prometheus`) for a test: the shipped config
(examples/monitoring/prometheus.yml) with its target replaced by the test run's console and
its alert rules loaded; queried over its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from streams.pulsar.broker import free_port
from tests.integration.harness import REPO, wait_until

MONITORING = REPO / "examples" / "monitoring"
BINARY = shutil.which("prometheus")


class PrometheusServer:
    def __init__(self, target: str, work: Path) -> None:
        """`target`: host:port of the console to scrape."""
        config = (MONITORING / "prometheus.yml").read_text()
        assert '"127.0.0.1:8080"' in config and "  - alerts.yml" in config
        config = config.replace('"127.0.0.1:8080"', f'"{target}"').replace(
            "  - alerts.yml", f"  - {MONITORING / 'alerts.yml'}")
        work.mkdir(parents=True, exist_ok=True)
        (work / "prometheus.yml").write_text(config)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = work / "prometheus.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [BINARY, f"--config.file={work / 'prometheus.yml'}",
                 f"--storage.tsdb.path={work / 'data'}",
                 f"--web.listen-address={self.url.removeprefix('http://')}"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self._ready(), 60, "Prometheus to be ready")

    def _ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector's samples)."""
        return self.api("query", query=expr)["result"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
