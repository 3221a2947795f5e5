"""Serving apart from the job: `hvd-online run` (real broker, horovodrun -np 2, the producer
live and never paused) with its serving replica, a REST and a gRPC client calling predict the
whole time. Through kill -9 of rank 1 and of rank 0 (each a supervisor relaunch from an older
checkpoint, the second by the standby launch), of the console process and of the embedded
broker, the replica answers every request, and the versions it answers with never go back.
A replica started mid-run begins at the newest version. kill -15 on `hvd-online run` stops
everything it started."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from benchmarks.availability import REPO, Job, Probe, answers, mlp_config, wait_until
from benchmarks.failover import faults, first_version, training_back

pytestmark = pytest.mark.integration


def serving(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url + "api/serving", timeout=2) as reply:
        return json.loads(reply.read())


def start_late_replica(job: Job, config, run_dir) -> subprocess.Popen:
    url = re.search(r"embedded pulsar-lite broker at (\S+)", job.output).group(1)
    return subprocess.Popen(
        [sys.executable, "-m", "hvd_online.cli", "serve", str(config), "--url", url,
         "--run-dir", str(run_dir), "--index", "1"], cwd=REPO,
        stdout=open(run_dir / "late-replica.log", "wb"), stderr=subprocess.STDOUT)


def test_a_replica_answers_through_every_training_fault(tmp_path):
    run_dir = tmp_path / "run"
    config = mlp_config(run_dir)
    job = Job.start(config, run_dir, "--max-restarts", "5", "--set", "train.max_samples=0",
                    "--set", "produce.count=1000000000", "--set", "produce.rate=1000",
                    "--set", "checkpoint.every_seconds=5", "--set", "train.idle_timeout_s=0",
                    "--set", "run.standby=true")
    late = None
    try:
        replica = job.replica()
        wait_until(lambda: first_version(job), 240, "the replica's first version")
        probes = [Probe.rest(replica["rest"], rate=20), Probe.grpc(replica["grpc"], rate=20)]
        breaks = faults(job)
        for name in ("kill -9 rank 1", "kill -9 console", "kill -9 broker", "kill -9 rank 0"):
            if name == "kill -9 rank 0":  # the next launch's ranks wait, started
                wait_until(job.standby_ready, 240, "the standby launch")
            before = job.serving()
            fault_ms = int(time.time() * 1000)
            breaks[name]()
            training_back(job, fault_ms, 180)
            if "console" in name:
                wait_until(lambda: answers(job.console_url() + "api/status"), 30,
                           "the console's standby answering")
            after = job.serving()
            assert after["version"] > before["version"], (name, before, after)
        late = start_late_replica(job, config, run_dir)
        newest = job.serving()["version"]
        late_url = job.replica(1)["rest"]
        wait_until(lambda: serving(late_url)["version"] >= newest, 60,
                   "the late replica at the newest version")
        for probe in probes:
            probe.stop()
        for probe in probes:
            assert probe.failed() == 0, (probe.name, probe.errors(), job.output[-3000:])
            assert len(probe.answers) > 100
            assert probe.versions_never_back()
        assert job.output.count("relaunch") >= 2  # both rank kills were relaunches
        assert "the standby launch takes over" in job.output
        # its ranks built the model and traced the step before the go: both say so
        assert job.output.count("(a standby launch: imports and trace done before)") >= 2
        assert "the standby takes over" in job.output
        assert "restarting it on the same data and port" in job.output

        started = [p.pid for p in psutil.Process(job.process.pid).children(recursive=True)]
        assert job.stop(timeout=120) == 0, job.output[-3000:]
        wait_until(lambda: not any(psutil.pid_exists(pid) and
                                   psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                                   for pid in started), 15,
                   "every process hvd-online run started to end")
    finally:
        if late is not None:
            late.send_signal(signal.SIGTERM)
            late.wait(30)
        job.kill()
        os.system(f"pkill -9 -f {run_dir} >/dev/null 2>&1")  # nothing of this test survives


def test_a_producer_that_dies_stops_the_run_and_says_why(tmp_path):
    run_dir = tmp_path / "run"
    job = Job.start(mlp_config(run_dir), run_dir, "--set", "produce.params={bogus = 1}",
                    "--set", "train.idle_timeout_s=0")  # without the report: waits forever
    try:
        code = job.process.wait(timeout=240)
        assert code == 1, job.output[-3000:]
        assert re.search(r"the producer exited with code 1: TypeError: .*'bogus'", job.output)
    finally:
        job.kill()
