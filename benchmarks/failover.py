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

Then raw events (examples/clicks, the same rate, an even stream and one with 60% of its events
on rank 1's partition 1), kill -9 of rank 1 and of rank 0: per fault, the longest time without
a prediction published on the surviving rank's partitions and on the killed rank's, from the
predictions topic read back by a plain reader (not event -> prediction latency: the events'
time is when the producer was due to send them, and in one run here it fell tens of seconds
behind). Each kill waits for the standby launch (`run.standby`); the
console's kill, for its standby to be loaded. ~20 minutes with the defaults.

    .venv/bin/python -m benchmarks.failover [--repeats 2] [--rate 2000]
                                            [--join-streams even,skewed] [--out FILE]
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
    example_config,
    mlp_config,
    wait_until,
)
from benchmarks.common import REPO, work_dir, write_results
from benchmarks.join_latency import STREAMS as JOIN_STREAMS
from benchmarks.join_latency import read_predictions
from streams.assignment import partitions_for_rank
from streams.pulsar.broker import EmbeddedBroker, free_port

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
        # (on 2 busy cores a standby takes 75-100 s to import and trace: clicks, measured)
        wait_until(job.standby_ready, max(timeout, 300), "the standby launch")
    if "console" in name:  # the designed path: its standby is loaded
        wait_until(job.console_standby_loaded, timeout, "the console's standby")
    start, start_ms = time.monotonic(), int(time.time() * 1000)
    fault()
    row: dict = {"fault": name, "at_ms": start_ms}
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


#: raw events (examples/clicks, the predictions topic): the rank faults, on an even stream
#: and one with 60% of the events on partition 1 (rank 1's)
JOIN_FAULTS = ("kill -9 rank 1", "kill -9 rank 0")
JOIN_PARTITIONS = 4


def prediction_times(url: str, events_topic: str) -> dict[int, list[int]]:
    """The predictions topic's publish times in ms, by partition (the event's key %
    partitions). A redelivered copy has its original's time: it fills no gap."""
    out: dict[int, list[int]] = {p: [] for p in range(JOIN_PARTITIONS)}
    for body, published_ms in read_predictions(url, events_topic):
        out[body["key"] % JOIN_PARTITIONS].append(published_ms)
    return out


def prediction_gaps(times: dict[int, list[int]], at_ms: int,
                    span_ms: int = 30_000) -> dict[int, float]:
    """Per partition, the longest time without a prediction published, around a fault at
    `at_ms` (gaps that end after it and start before `span_ms` after it), in s."""
    out = {}
    for partition, published in times.items():
        ts = sorted(published)
        gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)
                if b > at_ms and a < at_ms + span_ms]
        out[partition] = max(gaps, default=0) / 1000
    return out


def join_run(stream: str, tmp: Path, rate: float, probe_rate: float, settle: float,
             timeout: float) -> list[dict]:
    run_dir = tmp / f"clicks-{stream}"
    rows = []
    with EmbeddedBroker(tmp / f"broker-{stream}", port=free_port()) as broker:
        config = example_config("clicks", run_dir, broker.url)
        sets = [f"produce.rate={rate}", "produce.count=1000000000", "train.max_samples=0",
                "train.idle_timeout_s=0", "checkpoint.every_seconds=10", "run.standby=true",
                *JOIN_STREAMS[stream]]
        job = Job.start(config, run_dir, "--max-restarts", "10",
                        *[arg for s in sets for arg in ("--set", s)])
        try:
            replica = job.replica()
            wait_until(lambda: first_version(job), 180, "a first version")
            probes = [Probe.rest(replica["rest"], inputs=8, rate=probe_rate),
                      Probe.grpc(replica["grpc"], inputs=8, rate=probe_rate)]
            watch = ServingWatch(replica["rest"])
            time.sleep(settle)
            every = faults(job)
            for name in JOIN_FAULTS:
                row = one_fault(job, name, every[name], probes, watch, timeout)
                rows.append({"stream": stream, **row})
                print(rows[-1], flush=True)
                time.sleep(settle)
            for probe in probes:
                probe.stop()
            watch.stop()
        finally:
            job.stop()
        times = prediction_times(broker.url, "impressions")
    for row in rows:
        killed = int(row["fault"][-1])
        gaps = prediction_gaps(times, row["at_ms"])
        owned = partitions_for_rank(JOIN_PARTITIONS, killed, 2)
        row["predictions_gap_s"] = gaps
        row["surviving_gap_s"] = max(g for p, g in gaps.items() if p not in owned)
        row["killed_gap_s"] = max(g for p, g in gaps.items() if p in owned)
    return rows


def join_table(rows: list[dict]) -> str:
    lines = ["| stream | fault | training back (s) | longest predictions gap, the surviving "
             "rank's partitions (s) | the killed rank's (s) | REST, gRPC failed |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stream']} | {r['fault']} | {r['training_outage_s']:g} | "
                     f"{r['surviving_gap_s']:g} | {r['killed_gap_s']:g} | "
                     f"{r['rest_failed']}, {r['grpc_failed']} |")
    return "\n".join(lines)


def run(repeats: int, rate: float, probe_rate: float, settle: float, timeout: float,
        join_streams: list[str]) -> dict:
    rows: list[dict] = []
    join_rows: list[dict] = []
    with work_dir("hvd-failover-") as tmp:
        for stream in join_streams:
            join_rows += join_run(stream, tmp, rate, probe_rate, settle, timeout)
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
        f"--{k} {v}" for k, v in (("repeats", repeats), ("rate", rate),
                                  ("join-streams", ",".join(join_streams) or '""'))),
        "rate": rate, "probe_rate": probe_rate, "rows": rows, "join_rows": join_rows}


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
    parser.add_argument("--join-streams", default="even,skewed",
                        help="the raw-event runs' streams (even, skewed; empty: none)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    streams = [s for s in args.join_streams.split(",") if s]
    results = run(args.repeats, args.rate, args.probe_rate, args.settle, args.timeout, streams)
    results["table"] = table(results)
    if results["join_rows"]:
        results["table"] += ("\n\nRaw events (examples/clicks, predictions topic read back by "
                             "a plain reader):\n\n" + join_table(results["join_rows"]))
    write_results(args.out, results)
    print(results["table"])


if __name__ == "__main__":
    main()
