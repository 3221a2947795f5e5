"""Test hosts made of Linux network namespaces (recipe: ../shared/notes/multihost.md).

    with NamespaceHosts(tmp_path, ranks=("a", "b")) as hosts:
        hosts.broker.address, hosts["a"].address      # 10.203.N.10, 10.203.N.11, ...
        hosts.popen("a", [...]); hosts.link("b", up=False)

Each host has its own network stack, address, /etc/hosts (the machine's hostname maps to the
host's own address, or Gloo's process-set context connects to 127.0.0.1) and, for rank hosts,
its own sshd with a key made for this run. They share the filesystem, like hosts with an NFS
home. Names carry a random suffix, the subnet is one no route on this machine uses, and
everything made here - processes, namespaces, links, files under /etc/netns - is removed on
exit, also when the test fails.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
IFACE = "eth0"  # the name every host's interface has (horovodrun --network-interface)


def unavailable_reason() -> str | None:
    """Why namespace hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network-namespace hosts need root"
    if not shutil.which("ip"):
        return "iproute2 (`ip`) is not installed"
    if not SSHD.exists():
        return "openssh-server is not installed (scripts/test.sh installs it as root)"
    probe = f"hvdprobe{random.randrange(16**4):04x}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make network namespaces: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass(frozen=True)
class Host:
    name: str  # "broker", "a", "b", ...
    namespace: str
    address: str
    veth: str


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=check, capture_output=True, text=True)


def _free_subnet() -> str:
    """10.203.N: a /24 that no route on this machine uses yet."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    for _ in range(100):
        subnet = f"10.203.{random.randrange(1, 255)}"
        if f"{subnet}." not in routes:
            return subnet
    raise RuntimeError("no free 10.203.N.0/24 subnet")


class NamespaceHosts:
    """A bridge, one namespace per host on it, sshd on the rank hosts. The root namespace sits
    on the bridge as .1: the test itself can reach every host."""

    def __init__(self, workdir: Path, ranks: tuple[str, ...] = ("a", "b")) -> None:
        self.workdir = workdir
        self.suffix = f"{random.randrange(16**4):04x}"
        self.subnet = _free_subnet()
        self.bridge = f"hvb{self.suffix}"
        self.hosts = {name: Host(name, f"hvd{self.suffix}{name}", f"{self.subnet}.{10 + i}",
                                 f"hvv{self.suffix}{name}")
                      for i, name in enumerate(("broker", *ranks))}
        self.ssh_key = workdir / "ssh" / "id_ed25519"
        self._processes: list[subprocess.Popen] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def broker(self) -> Host:
        return self.hosts["broker"]

    @property
    def rank_hosts(self) -> list[Host]:
        return [h for h in self.hosts.values() if h.name != "broker"]

    def __enter__(self) -> NamespaceHosts:
        try:
            self._make_network()
            self._start_sshd()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- set-up ---------------------------------------------------------------------------

    def _make_network(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        hostname = socket.gethostname()
        for host in self.hosts.values():
            # before anything starts in it: `ip netns exec` bind-mounts this over /etc/hosts
            etc = Path("/etc/netns") / host.namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(f"127.0.0.1 localhost\n{host.address} {hostname}\n")
            _ip("netns", "add", host.namespace)
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", IFACE, "netns",
                host.namespace)
            _ip("link", "set", host.veth, "master", self.bridge, "up")
            _ip("addr", "add", f"{host.address}/24", "dev", IFACE, namespace=host.namespace)
            _ip("link", "set", IFACE, "up", namespace=host.namespace)
            _ip("link", "set", "lo", "up", namespace=host.namespace)

    def _start_sshd(self) -> None:
        ssh = self.ssh_key.parent
        ssh.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.ssh_key)],
                       check=True)
        (ssh / "authorized_keys").write_text(self.ssh_key.with_suffix(".pub").read_text())
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        for host in self.rank_hosts:
            host_key = ssh / f"host-{host.name}"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                           check=True)
            config = ssh / f"sshd-{host.name}.conf"
            config.write_text(
                f"ListenAddress {host.address}\nHostKey {host_key}\n"
                f"AuthorizedKeysFile {ssh / 'authorized_keys'}\nPermitRootLogin yes\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                f"StrictModes no\nPidFile {ssh / f'sshd-{host.name}.pid'}\n"
                # a session whose client is cut off ends instead of lingering
                "ClientAliveInterval 5\nClientAliveCountMax 3\n")
            self.popen(host.name, [str(SSHD), "-D", "-e", "-f", str(config)],
                       log=ssh / f"sshd-{host.name}.log")
        # OpenSSH takes ~ from the passwd entry, not $HOME: without this wrapper first on
        # the launcher's PATH, host keys would land in root's own ~/.ssh/known_hosts
        self.ssh_bin = ssh / "bin"
        self.ssh_bin.mkdir()
        wrapper = self.ssh_bin / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -i {self.ssh_key} '
                           f'-o UserKnownHostsFile={ssh / "known_hosts"} '
                           '-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=no '
                           '"$@"\n')
        wrapper.chmod(0o755)
        for host in self.rank_hosts:
            self.wait_for_port(host.address, 22, 20)

    def launcher_env(self, home: Path) -> dict[str, str]:
        """The environment of a process that reaches the rank hosts over ssh."""
        return {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": str(home),
                "PATH": f"{self.ssh_bin}:{os.environ['PATH']}"}

    # -- use ------------------------------------------------------------------------------

    def popen(self, host: str, argv: list[str], log: Path, **kwargs) -> subprocess.Popen:
        """A process on `host`, stopped at exit if still running."""
        with open(log, "ab") as out:
            process = subprocess.Popen(["ip", "netns", "exec", self.hosts[host].namespace,
                                        *argv], stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, **kwargs)
        self._processes.append(process)
        return process

    def run(self, host: str, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.hosts[host].namespace, *argv],
                              capture_output=True, text=True, timeout=timeout)

    def link(self, host: str, up: bool) -> None:
        """Plug or unplug `host`'s network cable."""
        _ip("link", "set", IFACE, "up" if up else "down", namespace=self.hosts[host].namespace)

    def pids(self, host: str) -> list[int]:
        """Every process whose network is `host`'s (also those its sshd started)."""
        out = subprocess.run(["ip", "netns", "pids", self.hosts[host].namespace],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    @staticmethod
    def wait_for_port(address: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((address, port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- tear-down ------------------------------------------------------------------------

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for host in self.hosts.values():
            for pid in self.pids(host.name):  # whatever sshd sessions started there
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for process in self._processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for host in self.hosts.values():
            _ip("netns", "del", host.namespace, check=False)
            _ip("link", "del", host.veth, check=False)
            shutil.rmtree(Path("/etc/netns") / host.namespace, ignore_errors=True)
        _ip("link", "del", self.bridge, check=False)
