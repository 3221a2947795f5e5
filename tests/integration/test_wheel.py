"""The installed package works: build the wheel, install it into a scratch venv (not
editable, no repo on the path), start the console server from it, and fetch every script the
dashboard loads."""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.integration.harness import REPO

pytestmark = pytest.mark.integration

SERVE = """
import json, sys, urllib.request
import console, hvd_online.cli
from console.app import create_app
from console.server import ConsoleServer
from console.state import ConsoleState

server = ConsoleServer(create_app(ConsoleState({}), None, print, token="t"), "127.0.0.1", 0)
paths = ["/", "/vendor/chart.umd.min.js", "/vendor/socket.io.min.js",
         "/static/dashboard.js", "/static/style.css"]
status = {}
for path in paths:
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as reply:
            status[path] = [reply.status, len(reply.read())]
    except urllib.error.HTTPError as err:
        status[path] = [err.code, 0]
print(json.dumps({"console": console.__file__, "cli": hvd_online.cli.__file__,
                  "status": status}))
server.finish(linger_s=0)
"""


def test_wheel_installs_and_its_console_serves_every_script(tmp_path):
    source = tmp_path / "src"  # build from a copy: the build leaves nothing in the repo
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("hvd_online", "streams", "console"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(source)], check=True, timeout=300)
    (wheel,) = dist.glob("hvd_online-*.whl")

    scratch = tmp_path / "venv"
    venv.create(scratch, with_pip=False)
    site = next(scratch.glob("lib/python*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                    "--target", str(site), str(wheel)], check=True, timeout=300)
    # dependencies come from the project's venv as a plain path: its .pth files (the
    # editable install's finder among them) are not processed, so only the wheel provides
    # our packages
    deps = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "project-deps.pth").write_text(deps + "\n")

    run = subprocess.run([str(scratch / "bin" / "python"), "-c", SERVE], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["console"].startswith(str(site)), "the console came from the wheel"
    assert result["cli"].startswith(str(site))
    for path, (status, size) in result["status"].items():
        assert status == 200, f"{path}: {status}"
        assert size > 500, f"{path}: only {size} bytes"
    assert result["status"]["/vendor/chart.umd.min.js"][1] > 100_000
