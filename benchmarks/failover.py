"""What each fault stops, and for how long, seen from outside (a benchmark, not a test).

`hvd-online run` on the MLP demo (2 ranks, one serving replica, the producer live at
--rate samples/s, never paused), a REST and a gRPC client each sending --probe-rate predicts/s
to the replica for the whole run. Faults one at a time, --settle s apart:

    kill -9 of rank 1, kill -9 of rank 0, kill -9 of the console process, kill -9 of the
    embedded broker

Per fault: failed predict requests and the longest outage at the replica, per protocol;
training's outage (the longest time from the fault on without a newly trained model version,
as the replica reports them: a stall after a first version counts too); the console's (from
the fault to its answering again).

    .venv/bin/python -m benchmarks.failover [--repeats 2] [--rate 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.availability import (
    Job,
    Probe,
    ServingWatch,
    answers,
    mlp_config,
    wait_until,
)
from benchmarks.common import REPO, work_dir, write_results

RESULTS = REPO / "benchmarks" / "results" / "failover.json"


def faults(job: Job) -> dict[str, Callable[[], None]]:
    def kill(pid: int | None) -> None:
        assert pid is not None, "the process to kill was found"
        os.kill(pid, signal.SIGKILL)

    def console_pid() -> int | None:
        """The console serving now (after a relaunch, once it listens again: it starts
        beside the first steps, on a new port if the config's is 0)."""
        def serving() -> int | None:
            try:
                port = int(job.console_url().rstrip("/").rsplit(":", 1)[1])
            except (OSError, ValueError):
                return None
            return job.pid_listening(port)

        return wait_until(serving, 180, "the console listening")  # type: ignore[return-value]

    return {
        "kill -9 rank 1": lambda: kill(job.rank_pids().get(1)),
        "kill -9 rank 0": lambda: kill(job.rank_pids().get(0)),
        "kill -9 console": lambda: kill(console_pid()),
        "kill -9 broker": lambda: kill(job.broker_pid()),
    }


def training_back(job: Job, after_ms: int, timeout: float) -> float:
    """Seconds from `after_ms` to the first model version trained after it."""
    def newer() -> int:
        try:
            created = job.serving()["created_ms"]
        except OSError:
            return 0
        return created if created > after_ms else 0

    created = wait_until(newer, timeout, "a model version trained after the fault")
    return (int(created) - after_ms) / 1000  # type: ignore[call-overload]


#: a relaunch's stages, by the first log line of each after the fault (HH:MM:SS: whole s)
STAGES = (("launcher saw the job fail", r"training failed \(exit code"),
          ("resume state read (Horovod ready)", r"resuming from step"),
          ("inputs opened, trainer built (restored)", r"Horovod ready in"),
          ("first step done (sources, restore, trace)", r"first step done"))


def relaunch_stages(output: str, after: float) -> dict[str, float]:
    """Seconds from the fault (`after`, epoch s) to each stage of the relaunch it caused."""
    day = time.strftime("%Y-%m-%d ", time.localtime(after))
    out: dict[str, float] = {}
    for line in output.splitlines():
        found = re.search(r"(\d\d:\d\d:\d\d) ", line)
        if not found:
            continue
        at = time.mktime(time.strptime(day + found.group(1), "%Y-%m-%d %H:%M:%S"))
        if at + 1 < after:
            continue
        if len(out) < len(STAGES) and re.search(STAGES[len(out)][1], line):
            out[STAGES[len(out)][0]] = max(0.0, at - after)
    return out


def first_version(job: Job) -> bool:
    try:
        return job.serving()["version"] > 0
    except OSError:
        return False


def one_fault(job: Job, name: str, fault: Callable[[], None], probes: list[Probe],
              watch: ServingWatch, timeout: float) -> dict:
    if "rank" in name:  # the designed path: the next launch stands by (run.standby)
        wait_until(job.standby_ready, timeout, "the standby launch")
    if "console" in name:  # the designed path: its standby is loaded
        wait_until(job.console_standby_loaded, timeout, "the console's standby")
    start, start_ms = time.monotonic(), int(time.time() * 1000)
    fault()
    row: dict = {"fault": name}
    training_back(job, start_ms, timeout)
    if "rank" in name:  # a version the dying launch still made does not count as back
        wait_until(lambda: len(relaunch_stages(job.output, start_ms / 1000)) == len(STAGES),
                   timeout, "the relaunch's first step")
    if "console" in name:
        wait_until(lambda: answers(job.console_url() + "api/status"), timeout, "the console")
        row["console_outage_s"] = round(time.monotonic() - start, 2)
    time.sleep(5.0)  # a stall just after the first new version (the broker's) counts too
    row["training_outage_s"] = round(watch.longest_gap_s(start_ms), 2)
    if "rank" in name:
        row["stages_s"] = relaunch_stages(job.output, start_ms / 1000)
        row["standby_took_over"] = "the standby launch takes over" in job.output[-20000:]
    end = time.monotonic()
    for probe in probes:
        row[f"{probe.name}_requests"] = len(probe.window(start, end))
        row[f"{probe.name}_failed"] = probe.failed(start, end)
        row[f"{probe.name}_outage_s"] = round(probe.longest_outage_s(start, end), 2)
    return row


def run(repeats: int, rate: float, probe_rate: float, settle: float, timeout: float) -> dict:
    rows = []
    with work_dir("hvd-failover-") as tmp:
        for repeat in range(repeats):
            run_dir = tmp / f"run-{repeat}"
            config = mlp_config(run_dir)
            job = Job.start(config, run_dir, "--max-restarts", "10", "--set",
                            "checkpoint.every_seconds=10", "--set",
                            "train.max_samples=0", "--set", "produce.count=1000000000",
                            "--set", f"produce.rate={rate}", "--set", "train.idle_timeout_s=0",
                            "--set", "run.standby=true")
            try:
                replica = job.replica()
                wait_until(lambda j=job: first_version(j), 180, "a first version")
                probes = [Probe.rest(replica["rest"], rate=probe_rate),
                          Probe.grpc(replica["grpc"], rate=probe_rate)]
                watch = ServingWatch(replica["rest"])
                time.sleep(settle)
                for name, fault in faults(job).items():
                    row = one_fault(job, name, fault, probes, watch, timeout)
                    rows.append({"repeat": repeat, **row})
                    print(row, flush=True)
                    time.sleep(settle)
                for probe in probes:
                    probe.stop()
                watch.stop()
                rows.append({"repeat": repeat, "fault": "whole run",
                             "served_step_went_back": watch.step_went_back(),
                             **{f"{p.name}_requests": len(p.answers) for p in probes},
                             **{f"{p.name}_failed": p.failed() for p in probes},
                             "versions_never_back": all(p.versions_never_back()
                                                        for p in probes),
                             "errors": [e for p in probes for e in p.errors()][:10]})
            finally:
                stopped_at = time.monotonic()
                code = job.stop()
                rows.append({"repeat": repeat, "fault": "SIGTERM to hvd-online run",
                             "exit_code": code,
                             "stopped_s": round(time.monotonic() - stopped_at, 2)})
    return {"command": "python -m benchmarks.failover " + " ".join(
        f"--{k} {v}" for k, v in (("repeats", repeats), ("rate", rate))),
        "rate": rate, "probe_rate": probe_rate, "rows": rows}


def table(results: dict) -> str:
    rows = [r for r in results["rows"] if "training_outage_s" in r]
    lines = ["| fault | REST failed / sent | gRPC failed / sent | REST, gRPC down (s) | "
             "training back (s) | console back (s) |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["fault"] for r in rows):
        mine = [r for r in rows if r["fault"] == name]

        def med(key: str, of: list[dict] = mine) -> str:
            found = [r[key] for r in of if key in r]
            return f"{statistics.median(found):g}" if found else "-"

        def summed(key: str, of: list[dict] = mine) -> int:
            return sum(r[key] for r in of)

        lines.append(f"| {name} | {summed('rest_failed')} / {summed('rest_requests')} | "
                     f"{summed('grpc_failed')} / {summed('grpc_requests')} | "
                     f"{med('rest_outage_s')}, {med('grpc_outage_s')} | "
                     f"{med('training_outage_s')} (max "
                     f"{max(r['training_outage_s'] for r in mine):g}) | "
                     f"{med('console_outage_s')} |")
    for r in results["rows"]:
        if r["fault"] == "SIGTERM to hvd-online run":
            lines.append(f"\nSIGTERM to `hvd-online run` (repeat {r['repeat']}): everything "
                         f"stopped in {r['stopped_s']} s, exit code {r['exit_code']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--probe-rate", type=float, default=50)
    parser.add_argument("--settle", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = run(args.repeats, args.rate, args.probe_rate, args.settle, args.timeout)
    results["table"] = table(results)
    write_results(args.out, results)
    print(results["table"])


if __name__ == "__main__":
    main()
