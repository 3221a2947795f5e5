"""Self-healing for `hvd-online run --hosts`: relaunch horovodrun on the hosts that answer.

A lost rank or host ends a Horovod job (measured here: Horovod's elastic driver needs a
discovery script and per-reset re-creation of everything a rank owns - Pulsar consumers,
join buffers, the console - while a relaunch reuses the resume path every kill -9 test
already covers). So the supervisor:

- probes every host's ssh port every PROBE_S while training runs; a host that misses
  LOST_AFTER probes in a row is lost (within (LOST_AFTER + 1) x (PROBE_S +
  PROBE_TIMEOUT_S) = 14 s of going away, with two hosts): this launch is killed (a rank
  blocked in a collective with it would otherwise wait for Gloo's own 30 s timeout), and
  the next launch runs on the hosts that answer, from the last checkpoint, the partitions
  spread over the ranks left;
- relaunches after any failed launch, at most `max_restarts` times in a row without a
  launch that ran for STABLE_S; then it exits with the last code, naming the lost hosts;
  never after a launch a rank ended with a config error (it would fail the same way);
- takes a lost host back once it answers BACK_AFTER probes in a row: kill -15 reaches the
  ranks, they checkpoint and exit 0, and the next launch runs on every host again.

Each launch gets HVD_ONLINE_LAUNCH=n in its environment (the tests' sample ledger keeps one
directory per launch with it).

Faster recovery (measured: a rank's kill -9 cost 21-27 s, of which ~12 s went to horovodrun
starting the new ranks and their TensorFlow import, and 2-5 s to horovodrun noticing):

- a **standby launch** (`standby=True`): STANDBY_AFTER_S into each launch, the next one is
  started on the same hosts; its ranks import everything, build the model and trace the
  step, then wait before `hvd.init()` until their go file exists. A failed launch is
  replaced by it at once (its hosts must be the ones that answer; otherwise it is dropped
  and a launch starts cold);
- a rank of this machine that is gone without its summary (it crashed, or was killed) ends
  the launch at once (kill -9 of its process group), instead of waiting for horovodrun.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from hvd_online.errors import CONFIG_ERROR_EXIT

log = logging.getLogger(__name__)

PROBE_S = 2.0
PROBE_TIMEOUT_S = 1.5
LOST_AFTER = 3
BACK_AFTER = 3
#: a launch that ran this long resets the count of restarts in a row
STABLE_S = 300.0
#: how long ranks get to checkpoint after kill -15 before they are killed
GRACE_S = 60.0
#: set for a standby launch's ranks: the file whose creation starts them
STANDBY_ENV = "HVD_ONLINE_STANDBY_GO"
#: how often a launch's ranks on this machine are looked at
WATCH_S = 0.2
#: the standby launch starts this long into a launch (not at once: both would import
#: TensorFlow together and slow the first steps)
STANDBY_AFTER_S = 20.0
LOCAL = {"localhost", "127.0.0.1"}


@dataclass(frozen=True)
class HostSlots:
    host: str
    slots: int

    def __str__(self) -> str:
        return f"{self.host}:{self.slots}"


def parse_hosts(spec: str) -> list[HostSlots]:
    """"hostA:2,hostB:1" (slots default to 1), as horovodrun -H takes them."""
    hosts = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        host, _, slots = item.partition(":")
        if not host or (slots and not slots.isdigit()) or slots == "0":
            msg = f"--hosts: {item!r} is not HOST or HOST:SLOTS"
            raise ValueError(msg)
        hosts.append(HostSlots(host, int(slots or 1)))
    if not hosts:
        raise ValueError("--hosts: no host given")
    return hosts


def answers(host: str, port: int) -> bool:
    """The host's ssh port accepts a connection (what horovodrun needs first)."""
    if host in LOCAL:
        return True
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def local_ranks(launch: subprocess.Popen) -> list[psutil.Process]:
    """The launch's training processes on this machine. (A remote rank's ssh client names the
    rank's command too, but only ranks have HOROVOD_RANK in their own environment.)"""
    found = []
    try:
        children = psutil.Process(launch.pid).children(recursive=True)
    except psutil.Error:
        return []
    for child in children:
        try:
            env = child.environ()
            waiting = STANDBY_ENV in env and not Path(env[STANDBY_ENV]).exists()
            if "hvd_online.cli" in " ".join(child.cmdline()) and "HOROVOD_RANK" in env \
                    and not waiting:  # a standby launch's rank is not training yet
                found.append(child)
        except psutil.Error:
            continue
    return found


def request_stop(launch: subprocess.Popen) -> None:
    """The documented stop path: kill -15 to one rank, whose flag reaches every rank at the
    next step boundary (each checkpoints, writes its summary, exits 0), and horovodrun exits
    with them. kill -15 to horovodrun instead ends the ranks behind ssh with exit 255, no
    checkpoint and no summary; it is only the fallback when no rank runs on this machine."""
    ranks = local_ranks(launch)
    try:
        if ranks:
            ranks[0].send_signal(signal.SIGTERM)
        else:
            launch.send_signal(signal.SIGTERM)
    except (psutil.Error, ProcessLookupError):
        pass  # ended meanwhile


def ranks_by_number(launch: subprocess.Popen) -> dict[int, psutil.Process]:
    """{rank: process} of the launch's ranks on this machine, once they all run (empty
    before, or when they run elsewhere)."""
    found, sizes = {}, set()
    for process in local_ranks(launch):
        try:
            env = process.environ()
            found[int(env["HOROVOD_RANK"])] = process
            sizes.add(int(env["HOROVOD_LOCAL_SIZE"]))
        except (psutil.Error, KeyError, ValueError):
            return {}
    return found if found and sizes == {len(found)} else {}


class Ending(enum.Enum):
    EXITED = "exited"  # horovodrun ended by itself
    LOST = "lost"  # a host stopped answering: this launch was stopped
    BACK = "back"  # a lost host answers again: this launch was stopped to take it back


#: starts horovodrun on these hosts as launch number n; with a go file, as a standby whose
#: ranks wait for that file before they start
Launch = Callable[[list[HostSlots], int, Path | None], subprocess.Popen]


@dataclass
class Standby:
    process: subprocess.Popen
    number: int
    hosts: list[HostSlots]
    go: Path


def kill_group(process: subprocess.Popen) -> int:
    """kill -9 of a launch's process group (horovodrun runs in its own session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return process.wait()


def crashed_rank(ranks: dict[int, psutil.Process], finished: Callable[[int], bool]) -> int | None:
    """A rank of this machine whose process is gone without its summary, if any."""
    for rank, process in ranks.items():
        try:
            gone = process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            gone = True
        if gone and not finished(rank):
            return rank
    return None


class Supervisor:
    def __init__(self, hosts: list[HostSlots], launch: Launch, max_restarts: int,
                 ssh_port: int = 22, probe: Callable[[str, int], bool] = answers,
                 config_error: Callable[[], str | None] = lambda: None,
                 go_file: Callable[[int], Path] | None = None,
                 finished: Callable[[int], bool] = lambda rank: True) -> None:
        """`config_error`: what a rank of the last launch found wrong with the config once
        running, if anything (RUN_DIR/config-error.txt): such a launch is never retried.
        `go_file`: where standby launch n waits for its go (None: no standby launches).
        `finished`: whether rank r of the current launch wrote its summary (a rank gone
        without one crashed)."""
        self.hosts = hosts
        self.config_error = config_error
        self.launch = launch
        self.max_restarts = max_restarts
        self.ssh_port = ssh_port
        self.probe = probe
        self.go_file = go_file
        self.finished = finished
        self.lost: set[str] = set()
        self._stopping = False
        self._current: subprocess.Popen | None = None
        self.standby: Standby | None = None
        self.taken_over = 0

    def stop(self) -> None:
        """kill -15 on the launcher: the ranks checkpoint and exit; no relaunch."""
        self._stopping = True
        if self._current is not None and self._current.poll() is None:
            request_stop(self._current)

    def drop_standby(self) -> None:
        if self.standby is not None:
            kill_group(self.standby.process)
            self.standby.go.unlink(missing_ok=True)
            self.standby = None

    def _start(self, live: list[HostSlots], number: int) -> subprocess.Popen:
        """The standby, if it waits on these hosts, else a launch started now."""
        standby, self.standby = self.standby, None
        if standby is not None and standby.hosts == live and standby.process.poll() is None:
            log.info("launch %d: the standby launch takes over", standby.number)
            standby.go.touch()
            self.taken_over += 1
            return standby.process
        if standby is not None:
            self.standby = standby
            self.drop_standby()
        return self.launch(live, number, None)

    def _prepare_standby(self, live: list[HostSlots], number: int) -> None:
        if self.go_file is None or self.standby is not None or self._stopping:
            return
        go = self.go_file(number)
        go.unlink(missing_ok=True)
        self.standby = Standby(self.launch(live, number, go), number, live, go)

    def run(self) -> int:
        restarts, launch_number = 0, 0
        while True:
            live = [h for h in self.hosts if self.probe(h.host, self.ssh_port)]
            self.lost = {h.host for h in self.hosts} - {h.host for h in live}
            if not live:
                log.error("no host answers on ssh port %d: %s", self.ssh_port,
                          ", ".join(sorted(self.lost)))
                return 1
            if self.lost:
                log.warning("running without %s (no answer on ssh port %d)",
                            ", ".join(sorted(self.lost)), self.ssh_port)
            launch_number += 1
            log.info("launch %d on %s", launch_number, ",".join(map(str, live)))
            started = time.monotonic()
            self._current = self._start(live, launch_number)
            ending, code = self._watch(self._current, live, launch_number + 1)
            if self._stopping or (ending is Ending.EXITED and code == 0):
                self.drop_standby()
                return code
            if ending is Ending.BACK:
                continue  # a planned relaunch onto more hosts, not a failure
            refused = self.config_error()
            if ending is Ending.EXITED and refused:
                log.error("training refused its config, so a relaunch would too: %s; fix "
                          "the config and run again", refused.strip())
                self.drop_standby()
                return CONFIG_ERROR_EXIT
            if time.monotonic() - started >= STABLE_S:
                restarts = 0
            restarts += 1
            lost = ", ".join(sorted(self.lost)) or "none"
            if restarts > self.max_restarts:
                log.error("training failed (exit code %d); gave up after %d restart(s) in a "
                          "row. Hosts lost: %s", code, self.max_restarts, lost)
                self.drop_standby()
                return code or 1
            log.warning("training failed (exit code %d; hosts lost: %s): relaunch %d of %d "
                        "from the last checkpoint", code, lost, restarts, self.max_restarts)

    def _watch(self, process: subprocess.Popen, live: list[HostSlots],
               next_number: int) -> tuple[Ending, int]:
        """Wait for this launch, probing the hosts; stop it if one is lost or comes back, or
        at once when a rank of this machine crashed; start the standby for the next one."""
        missed: Counter[str] = Counter()
        answered: Counter[str] = Counter()
        running = {h.host for h in live}
        started = time.monotonic()
        probed = started
        ranks: dict[int, psutil.Process] = {}
        while True:
            try:
                return Ending.EXITED, process.wait(WATCH_S)
            except subprocess.TimeoutExpired:
                pass
            if self._stopping:
                continue
            ranks = ranks or ranks_by_number(process)
            crashed = crashed_rank(ranks, self.finished) if ranks else None
            if crashed is not None:
                log.error("rank %d is gone without its summary: ending this launch now", crashed)
                return Ending.EXITED, kill_group(process) or 1
            now = time.monotonic()
            if now - started >= STANDBY_AFTER_S:
                self._prepare_standby(live, next_number)
            if now - probed < PROBE_S:
                continue
            probed = now
            for host in (h.host for h in self.hosts):
                ok = self.probe(host, self.ssh_port)
                if host in running:
                    missed[host] = 0 if ok else missed[host] + 1
                    if missed[host] >= LOST_AFTER:
                        self.lost.add(host)
                        log.error("host %s lost: no answer on ssh port %d for %d probes; "
                                  "stopping this launch", host, self.ssh_port, LOST_AFTER)
                        return Ending.LOST, self._end(process, graceful=False)
                else:
                    answered[host] = answered[host] + 1 if ok else 0
                    if answered[host] >= BACK_AFTER:
                        log.warning("host %s answers again: checkpointing and relaunching "
                                    "onto it", host)
                        self.lost.discard(host)
                        return Ending.BACK, self._end(process, graceful=True)

    def _end(self, process: subprocess.Popen, graceful: bool) -> int:
        """Graceful: kill -15 (ranks checkpoint and exit 0), then wait. Not graceful, or
        not done in GRACE_S: kill -9 the launch's process group. A rank blocked in a
        collective with a lost host never reaches a step boundary, so there is nothing to
        wait for; kill -9 is safe (it resumes from the last checkpoint, exactly once)."""
        if graceful:
            request_stop(process)
            try:
                return process.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        return kill_group(process)
