"""kill -9 of `hvd-online run` (as Kubernetes does after its grace period): the broker, the
producer and the ranks it started all end, and a rerun on the same run directory starts
cleanly on the same broker data."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.integration.harness import REPO, Background, wait_until, write_config

pytestmark = pytest.mark.integration


def test_a_killed_launcher_leaves_nothing_running(tmp_path):
    config = write_config(tmp_path, "", "launcher-kill")  # no URL: the embedded broker
    config.write_text(config.read_text() + "count = 2000000\nrate = 2000\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "hvd_online.cli", "run", str(config), "-np", "2"]
    with open(tmp_path / "run.log", "w") as log:
        launcher = Background(subprocess.Popen(argv + ["--set", "train.idle_timeout_s=0"],
                                               cwd=REPO, env=env, stdout=log,
                                               stderr=subprocess.STDOUT), tmp_path / "run.log")
    started: list[psutil.Process] = []
    try:
        launcher.wait_for_ranks_stepping(2)
        wait_until(lambda: "samples/s" in launcher.output, 60, "training on the live stream")
        started = psutil.Process(launcher.process.pid).children(recursive=True)
        names = " ".join(p.name() for p in started)
        assert "pulsar-lite" in names, names
        assert len(started) >= 4, names  # broker, producer, horovodrun, ranks
        killed_at = time.monotonic()
        launcher.process.send_signal(signal.SIGKILL)
        launcher.process.wait()

        def all_gone() -> bool:
            return not [p for p in started if p.is_running()
                        and p.status() != psutil.STATUS_ZOMBIE]

        wait_until(all_gone, 60, "every process the launcher started to end")
        print(f"launcher kill -9 -> all {len(started)} children gone: "
              f"{time.monotonic() - killed_at:.1f} s")
    finally:
        launcher.stop()
        for process in started:  # orphans, if the test failed: not our children any more
            if process.is_running():
                process.kill()

    # a new user reruns on the same run directory: the broker's data dir and port are free
    rerun = subprocess.run(argv + ["--no-produce", "--set", "train.idle_timeout_s=5"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "embedded pulsar-lite broker at" in rerun.stdout + rerun.stderr
