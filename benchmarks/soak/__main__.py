"""A randomized fault soak: `python -m benchmarks.soak --minutes M [--seed S]`.

Two jobs at once on one embedded broker, 2 ranks each, each under `hvd-online run`'s
supervisor: a labelled pipeline (MLP samples, with malformed payloads now and then) and a
clicks-style join pipeline (impressions predicted on arrival, clicks joined later, the
console on). Both streams are skewed and live from start to end; faults come on a seeded
schedule (benchmarks/soak/faults.py); at the end every check of benchmarks/soak/check.py must
hold, no process or port may be left, and each rank's RSS at its end must be within 10% of
its RSS after warm-up (30 s after its job first trained with it; for ranks that lived long
enough to say). Prints a report; writes it as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchmarks.common import REPO
from benchmarks.soak.check import check_join, check_labelled
from benchmarks.soak.faults import Job, Schedule
from benchmarks.soak.stream import ClickStream, SampleStream
from hvd_online.model.template import load_template
from streams.pulsar.broker import EmbeddedBroker, free_port

CLICKS_TEMPLATE = REPO / "examples" / "clicks" / "model.py"
MLP_TEMPLATE = REPO / "examples" / "mlp" / "model.py"
WINDOW_MS, LATENESS_MS = 3000, 500
WARM_UP_S = 30.0


def job_config(path: Path, url: str, run_dir: Path, join: bool, console_port: int) -> Path:
    common = f"""
[stream]
url = "{url}"
partitions = 4
{"" if join else 'topic = "soak-samples"'}
[window]
batch_size = 128
max_wait_ms = 20
[train]
learning_rate = 0.005
idle_timeout_s = 20
threads = 1
log_every = 500
[checkpoint]
every_seconds = 5
[run]
dir = "{run_dir}"
# two jobs share 2 cores here: a standby launch each (4 more ranks importing TensorFlow)
# slowed every recovery (a kill -9: 69 s, the standby still importing when it took over)
standby = false
[serving]
replicas = 0
"""
    if join:
        body = f"""
[model]
template = "{CLICKS_TEMPLATE}:ClickModel"
params = {{ inputs = 8, hidden = 16 }}
[join]
events_topic = "soak-impressions"
labels_topic = "soak-clicks"
window_s = {WINDOW_MS / 1000}
lateness_s = {LATENESS_MS / 1000}
idle_s = 5.0
on_expiry = "label"
expiry_label = 0.0
[console]
enabled = true
port = {console_port}
token = "soak"
"""
    else:
        body = f"""
[model]
template = "{MLP_TEMPLATE}:MLPRegression"
params = {{ inputs = 16, hidden = 32, layers = 2 }}
[console]
enabled = false
"""
    path.write_text(body + common)
    return path


def mount_tmpfs(directory: Path) -> Path | None:
    """`directory` on a tmpfs of its own (root only), so its disk can be filled."""
    directory.mkdir(parents=True)
    if os.geteuid() != 0:
        return None
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(directory)],
                          capture_output=True)
    return directory if done.returncode == 0 else None


class RssSampler(threading.Thread):
    """Every 5 s, each rank's resident memory and its job's ledger size:
    {(job, pid): [(seconds alive, MB, samples trained), ...]}. A rank's warm-up counts from
    when its job trains again after the rank started, not from its start: a relaunched rank
    waits for its partitions, and one sampled 30 s after its start had not trained yet (594
    MB, then 724 MB once training: judged "not within 10%")."""

    def __init__(self, jobs: list[Job]) -> None:
        super().__init__(daemon=True)
        self.jobs, self.samples = jobs, {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(5.0):
            for job in self.jobs:
                ranks = job.ranks()
                trained = job.trained() if ranks else 0
                for rank in ranks:
                    try:
                        alive = time.time() - rank.create_time()
                        mb = rank.memory_info().rss / 2**20
                    except psutil.Error:
                        continue
                    self.samples.setdefault((job.name, rank.pid), []).append(
                        (alive, mb, trained))

    def report(self) -> list[dict]:
        rows = []
        for (job, pid), points in sorted(self.samples.items()):
            # when the job first trained after this rank started
            trains = next((alive for alive, _, n in points if n > points[0][2]), None)
            warm_at = math.inf if trains is None else trains + WARM_UP_S
            warm = [mb for alive, mb, _ in points if alive >= warm_at]
            lived = points[-1][0]
            rows.append({"job": job, "pid": pid, "lived_s": round(lived),
                         "rss_warm_mb": round(warm[0]) if warm else None,
                         "rss_end_mb": round(points[-1][1]),
                         # judged only for ranks that ran a minute past their warm-up
                         "within_10pct": (abs(points[-1][1] - warm[0]) <= 0.10 * warm[0]
                                          if warm and lived >= warm_at + 60 else None)})
        return rows


def leftovers(ports: list[int]) -> list[str]:
    """Processes this soak started that still run, and ports still held."""
    found = [" ".join(p.cmdline()[:4]) for p in psutil.Process().children(recursive=True)
             if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                found.append(f"port {port} still held")
    return found


def soak(minutes: float, seed: int, workdir: Path) -> dict:
    broker = EmbeddedBroker(workdir / "broker", port=free_port()).start()
    console_port = free_port()
    jobs = []
    for name, join, rate in (("labelled", False, 400.0), ("join", True, 300.0)):
        run_dir = workdir / name / "run"
        disk = mount_tmpfs(run_dir)
        config = job_config(workdir / name / "config.toml", broker.url, run_dir, join,
                            console_port)
        template = load_template(f"{CLICKS_TEMPLATE if join else MLP_TEMPLATE}:"
                                 f"{'ClickModel' if join else 'MLPRegression'}",
                                 {"inputs": 8, "hidden": 16} if join else
                                 {"inputs": 16, "hidden": 32, "layers": 2})
        stream = (ClickStream(broker.url, "soak-impressions", "soak-clicks", template, rate,
                              seed) if join else
                  SampleStream(broker.url, "soak-samples", template, rate, seed))
        jobs.append(Job(name, config, run_dir, workdir / name / "ledger", stream, disk))
    sampler = RssSampler(jobs)
    schedule = Schedule(jobs, broker, seed)
    try:
        for job in jobs:
            job.start()
        # a job's stream starts as soon as its own ranks have opened their partitions: live,
        # a backlog of a second at most, and before its idle timeout however long the other
        # job takes to start. (Not at the ranks' first step: with no data that step waited
        # for the readers' 20 s silence timeout, and the 20 s idle timeout ended the job at
        # it, before its stream began; seen in CI.)
        waiting = list(jobs)
        deadline = time.monotonic() + 180
        while waiting:
            for job in [j for j in waiting if j.log.read_text().count("owns partitions") >= 2]:
                job.stream.start()
                waiting.remove(job)
            if time.monotonic() > deadline:
                raise AssertionError(f"{[j.name for j in waiting]}: ranks not stepping")
            time.sleep(0.1)
        started = time.monotonic()
        sampler.start()
        schedule.run(until=started + minutes * 60, started=started)
        time.sleep(max(0.0, started + minutes * 60 - time.monotonic()))
        for job in jobs:
            job.stream.stop()
        codes = {job.name: job.process.wait(900) for job in jobs}  # idle timeout ends them
        sampler.done.set()
        results = {"labelled": check_labelled(jobs[0], broker.url),
                   "join": check_join(jobs[1], broker.url, WINDOW_MS, LATENESS_MS)}
    finally:
        sampler.done.set()
        for job in jobs:
            if job.process is not None and job.process.poll() is None:
                job.process.kill()
                job.process.wait()
        broker.stop()
        for job in jobs:
            if job.disk is not None:
                subprocess.run(["umount", "-l", str(job.disk)], check=False)
    left = leftovers([broker.port, console_port])
    kinds: dict[str, list[float]] = {}
    for fault in schedule.faults:
        if fault.recovery_s is not None:
            kinds.setdefault(fault.kind, []).append(fault.recovery_s)
    rss = sampler.report()
    return {
        "minutes": minutes, "seed": seed, "exit_codes": codes, "results": results,
        "faults": [vars(f) for f in schedule.faults],
        "recovery_s": {k: {"count": len(v), "median": round(statistics.median(v), 1),
                           "max": round(max(v), 1)} for k, v in sorted(kinds.items())},
        "not_recovered": [vars(f) for f in schedule.faults if f.recovery_s is None],
        "stream_failures": [repr(j.stream.failure) for j in jobs if j.stream.failure],
        "rss": rss, "leftovers": left,
        "ok": (all(r["ok"] for r in results.values()) and set(codes.values()) == {0}
               and not left and all(f.recovery_s is not None for f in schedule.faults)
               and all(r["within_10pct"] is not False for r in rss)
               and not any(j.stream.failure for j in jobs)),
    }


def print_report(report: dict) -> None:
    print(f"\nsoak: {report['minutes']} min, seed {report['seed']}: "
          f"{'OK' if report['ok'] else 'FAILED'}")
    print("| fault | count | recovery median s | max s |\n|---|---|---|---|")
    for kind, r in report["recovery_s"].items():
        print(f"| {kind} | {r['count']} | {r['median']} | {r['max']} |")
    print("| job | rank pid | lived s | RSS after warm-up MB | RSS at end MB | within 10% |")
    print("|---|---|---|---|---|---|")
    for r in report["rss"]:
        print(f"| {r['job']} | {r['pid']} | {r['lived_s']} | {r['rss_warm_mb']} | "
              f"{r['rss_end_mb']} | {r['within_10pct']} |")
    for name, result in report["results"].items():
        print(f"{name}: {json.dumps(result)}")
    for key in ("exit_codes", "not_recovered", "stream_failures", "leftovers"):
        print(f"{key}: {report[key]}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hvd-online-soak-"))
    report = soak(args.minutes, args.seed, workdir)
    print_report(report)
    if report["ok"]:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs, ledgers and the broker's data kept in {workdir}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
