"""`hvd-online run`: everything with one command.

Starts the embedded broker (unless a URL is configured), `serving.replicas` serving replicas
(`hvd-online serve`, apart from the job: they answer predict through every training fault),
publishes the config's [produce] stream concurrently, and runs `horovodrun` training against
it - on this machine (`-np N`), or across `--hosts`, relaunched by the supervisor when a rank
or a host is lost (hvd_online/commands/supervisor.py). The broker and the replicas are
restarted when they die, a producer's error stops the run at once
(hvd_online/commands/services.py). When training ends (or kill -15 on this command), all of
them are stopped. Exit status is training's (1 if the producer failed).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psutil

from hvd_online.commands.services import Child, Services
from hvd_online.commands.supervisor import STANDBY_ENV, HostSlots, Supervisor
from hvd_online.config import Config
from hvd_online.inputs.open import embedded_broker
from hvd_online.state.run_dir import RunLayout
from streams.pulsar.lifetime import die_with_parent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankPlan:
    """Where the ranks run: this machine, or hosts reached over ssh (same paths there)."""

    hosts: list[HostSlots]
    #: relaunches in a row after a failure before giving up
    max_restarts: int = 0
    #: horovodrun --network-interface: the NIC the ranks reach each other on
    network_interface: str | None = None
    ssh_identity_file: str | None = None
    ssh_port: int = 22

    @classmethod
    def local(cls, num_proc: int, max_restarts: int = 0) -> RankPlan:
        return cls([HostSlots("localhost", num_proc)], max_restarts)

    def options_for(self, hosts: list[HostSlots]) -> list[str]:
        """horovodrun's options for a launch on `hosts`. When all of them are this machine,
        horovodrun runs over loopback and refuses a --network-interface without 127.0.0.1
        ("No interface is found for address 127.0.0.1"), so it is left out."""
        options = []
        if self.network_interface and not all(map(is_this_machine, hosts)):
            options += ["--network-interface", self.network_interface]
        if self.ssh_identity_file:
            options += ["--ssh-identity-file", self.ssh_identity_file]
        if self.ssh_port != 22:
            options += ["--ssh-port", str(self.ssh_port)]
        return options


def is_this_machine(host: HostSlots) -> bool:
    try:
        address = socket.gethostbyname(host.host)
    except OSError:
        return False
    return address.startswith("127.") or address in {
        a.address for addresses in psutil.net_if_addrs().values() for a in addresses}


def horovodrun_command(num_proc: int, rank_argv: list[str], hosts: str | None = None,
                       options: Sequence[str] = ()) -> list[str]:
    horovodrun = str(Path(sys.executable).with_name("horovodrun"))
    return [horovodrun, "-np", str(num_proc), "-H", hosts or f"localhost:{num_proc}", "--gloo",
            *options, sys.executable, "-m", "hvd_online.cli", *rank_argv]


def run_command(config_path: str, overrides: list[str], config: Config, plan: RankPlan,
                produce: bool = True) -> int:
    with ExitStack() as stack:
        url = config.stream.url
        broker = None
        if not url:
            broker = embedded_broker(config)
            stack.enter_context(broker)
            url = broker.url
            log.info("embedded pulsar-lite broker at %s", url)
        common = [config_path, *[a for o in overrides for a in ("--set", o)], "--url", url]
        cli = [sys.executable, "-m", "hvd_online.cli"]
        replicas = [Child(f"serving replica {i}", [*cli, "serve", *common, "--index", str(i)])
                    for i in range(config.serving.replicas if config.serving.updates else 0)]
        producer = (Child("producer", [*cli, "produce", *common])
                    if produce and config.produce.generator else None)
        launches: list[subprocess.Popen[bytes]] = []

        layout = RunLayout.of(config)

        def launch(hosts: list[HostSlots], number: int,
                   go: Path | None = None) -> subprocess.Popen[bytes]:
            if go is None:  # a standby's must not remove the running launch's
                layout.config_error.unlink(missing_ok=True)
            num_proc = sum(h.slots for h in hosts)
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "HVD_ONLINE_LAUNCH": str(number)}
            if go is not None:
                env[STANDBY_ENV] = str(go)
            # its own process group, so a stuck launch can be killed whole; horovodrun's
            # middlemen end the ranks when horovodrun ends
            ranks = subprocess.Popen(
                horovodrun_command(num_proc, ["train", *common], ",".join(map(str, hosts)),
                                   plan.options_for(hosts)),
                env=env, preexec_fn=die_with_parent(), start_new_session=True)
            launches.append(ranks)
            return ranks

        def config_error() -> str | None:
            path = layout.config_error
            return path.read_text() if path.is_file() else None

        supervisor = Supervisor(plan.hosts, launch, plan.max_restarts, plan.ssh_port,
                                config_error=config_error,
                                # standby launches on this machine only so far: across
                                # hosts they are not tested yet
                                go_file=layout.standby_go if config.run.standby and all(
                                    map(is_this_machine, plan.hosts)) else None,
                                finished=lambda rank: layout.summary(rank).exists())
        services = Services(broker, replicas, producer,
                            on_producer_failed=lambda *_: supervisor.stop())
        stack.callback(_stop_all, launches)  # after the services: the stack runs backwards
        stack.callback(services.stop)
        services.start()
        # kill -15 on this command reaches the ranks (they checkpoint, then exit 0); then
        # the producer, the replicas and the broker are stopped on the way out
        for sig in (signal.SIGTERM, signal.SIGINT):  # kill -15, Ctrl-C
            signal.signal(sig, lambda *_: supervisor.stop())
        code = supervisor.run()
        if services.producer_failed is not None:
            code = code or 1
        log.info("training exited with %d", code)
        return code
    return 1


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
