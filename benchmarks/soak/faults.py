"""The soak's jobs and the faults done to them on a seeded random schedule.

A job is `hvd-online run CONFIG --no-produce` (2 ranks, its own supervisor, which relaunches
a failed launch from the last checkpoint) with the sample ledger attached. Faults, one every
20-60 s: kill -9 of a random rank; SIGSTOP of a rank for 10-40 s (a straggler); kill -9 of the
console process; a broker restart; the run directory's disk full for 20 s; a 10x burst from
the producer. Each fault's recovery time is measured from the end of the fault to the sign
that the job is whole again (named in `Fault.recovered`).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import REPO
from benchmarks.kit.ledger import ledger_hook
from benchmarks.kit.stragglers import freeze, thaw
from benchmarks.soak.stream import LiveStream
from hvd_online.commands.supervisor import local_ranks
from streams.pulsar.broker import EmbeddedBroker
from streams.pulsar.lifetime import die_with_parent

#: how long a job may take to recover before the soak counts the fault as not recovered
RECOVERY_LIMIT_S = 240.0


@dataclass
class Job:
    """One training job of the soak, run by `hvd-online run` with a supervisor."""

    name: str
    config: Path
    run_dir: Path
    ledger: Path
    stream: LiveStream
    disk: Path | None = None  # the run directory's own tmpfs, if one could be mounted
    process: subprocess.Popen | None = None
    log: Path = field(init=False)

    def start(self) -> None:
        self.log = self.run_dir.parent / f"{self.name}.log"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hvd_online.cli", "run", str(self.config),
                 "--no-produce", "--max-restarts", "1000",
                 "--set", ledger_hook(self.ledger, labels=True)],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=die_with_parent())  # a killed soak leaves no job behind

    def ranks(self) -> list[psutil.Process]:
        """This job's training processes now."""
        assert self.process is not None
        return local_ranks(self.process)

    def console(self) -> psutil.Process | None:
        """The console process rank 0 spawned (multiprocessing) that serves (listens), if it
        runs: not its standby, nor multiprocessing's resource tracker."""
        for rank in self.ranks():
            try:
                for child in rank.children():
                    if "multiprocessing" in " ".join(child.cmdline()) and any(
                            c.status == psutil.CONN_LISTEN
                            for c in child.net_connections("tcp")):
                        return child
            except psutil.Error:
                continue
        return None

    def trained(self) -> int:
        """Samples in the ledger of every launch (repeats after a resume included)."""
        return sum(len(f.read_bytes().splitlines()) for f in self.ledger.glob("launch-*/rank-*"))

    def newest_checkpoint(self) -> str:
        return max((p.name for p in (self.run_dir / "checkpoints").glob("ckpt-*")), default="")


@dataclass
class Fault:
    kind: str
    job: str
    at_s: float
    detail: str = ""
    #: seconds from the end of the fault until the job was whole again; None: not recovered
    recovery_s: float | None = None
    recovered: str = ""


def wait_for(predicate: Any, limit: float = RECOVERY_LIMIT_S) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def trains_again(job: Job) -> tuple[Any, str]:
    before = job.trained()
    return (lambda: job.trained() > before), "the job's ledger grows again"


def fill(directory: Path) -> Path:
    """Write a file until the disk refuses."""
    filler = directory / "filler"
    try:
        with open(filler, "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 65536)
    except OSError:
        pass
    return filler


class Schedule:
    """Faults on a seeded random schedule over `jobs`, the first always one with a console."""

    KINDS = ("kill -9 rank", "straggler", "kill -9 console", "broker restart", "disk full",
             "burst")

    def __init__(self, jobs: list[Job], broker: EmbeddedBroker, seed: int) -> None:
        self.jobs, self.broker = jobs, broker
        self.rng = random.Random(seed)
        self.faults: list[Fault] = []
        self.actions = dict(zip(self.KINDS, (
            self._kill_rank, self._straggler, self._kill_console, self._restart_broker,
            self._fill_disk, self._burst), strict=True))

    def run(self, until: float, started: float) -> None:
        """Faults until the monotonic time `until` (the first after a 20-60 s gap)."""
        kinds = list(self.KINDS)
        self.rng.shuffle(kinds)  # every kind early on, then at random
        while True:
            gap = self.rng.uniform(20, 60)
            if time.monotonic() + gap >= until:
                return
            time.sleep(gap)
            kind = kinds.pop() if kinds else self.rng.choice(self.KINDS)
            job = self.rng.choice(self.jobs)
            fault = Fault(kind, job.name, round(time.monotonic() - started, 1))
            predicate, fault.recovered = self.actions[kind](job, fault)
            fault.recovery_s = wait_for(predicate)
            print(f"soak: {fault.at_s:7.1f} s  {kind:16s} {fault.job:9s} {fault.detail:24s} "
                  f"recovered in {fault.recovery_s} s ({fault.recovered})", flush=True)
            self.faults.append(fault)

    def _kill_rank(self, job: Job, fault: Fault) -> tuple[Any, str]:
        ranks = job.ranks()
        if ranks:
            victim = self.rng.choice(ranks)
            fault.detail = f"rank {victim.environ().get('HOROVOD_RANK')}"
            victim.send_signal(signal.SIGKILL)
        return trains_again(job)

    def _straggler(self, job: Job, fault: Fault) -> tuple[Any, str]:
        ranks, seconds = job.ranks(), self.rng.uniform(10, 40)
        fault.detail = f"{seconds:.0f} s"
        if ranks:
            victim = self.rng.choice(ranks)
            freeze(victim.pid)
            time.sleep(seconds)
            try:
                thaw(victim.pid)
            except ProcessLookupError:
                pass  # its launch failed meanwhile; the supervisor relaunched it
        return trains_again(job)

    def _kill_console(self, job: Job, fault: Fault) -> tuple[Any, str]:
        job = next(j for j in self.jobs if j.name == "join")  # the job with a console
        fault.job = job.name
        console = job.console()
        fault.detail = "console gone" if console else "no console running"
        if console:
            console.send_signal(signal.SIGKILL)
        return trains_again(job)

    def _restart_broker(self, job: Job, fault: Fault) -> tuple[Any, str]:
        fault.job = "all"
        self.broker.stop()
        time.sleep(2.0)
        self.broker.start()
        waits = [trains_again(j)[0] for j in self.jobs]
        return (lambda: all(w() for w in waits)), "every job's ledger grows again"

    def _fill_disk(self, job: Job, fault: Fault) -> tuple[Any, str]:
        if job.disk is None:
            fault.detail = "skipped: no tmpfs"
            return (lambda: True), "nothing to recover"
        filler = fill(job.disk)
        fault.detail = "20 s"
        time.sleep(20)
        filler.unlink()
        before = job.newest_checkpoint()
        return (lambda: job.newest_checkpoint() != before), "a checkpoint is written again"

    def _burst(self, job: Job, fault: Fault) -> tuple[Any, str]:
        job.stream.burst(10)
        fault.detail = "10x for 10 s"
        time.sleep(10)
        sent = job.stream.sent
        return (lambda: job.trained() >= sent * 0.98), "training caught up with the burst"
