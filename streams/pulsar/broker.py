"""The embedded broker: pulsar-lite (a Pulsar-protocol broker) as a child process.

Used when no Pulsar URL is configured, and by the tests. Production points the same code at
a real cluster (`pulsar://host:6650`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from streams.errors import BrokerError
from streams.pulsar.lifetime import die_with_parent

# default_partitions must stay 0: with N > 0 pulsar-lite also reports N partitions for the
# `NAME-partition-K` topics themselves and a per-partition consumer gets nothing.
# Its metrics endpoint would otherwise bind 0.0.0.0:8080 (the console's default port).
_CONFIG = "default_partitions = 0\n[metrics]\nenabled = false\n"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        from pulsar_lite.binary_finder import find_pulsar_lite_binary
    except ImportError as err:
        msg = "pulsar-lite is not installed: run scripts/setup.sh (or pip install pulsar-lite)"
        raise BrokerError(msg) from err
    return str(find_pulsar_lite_binary())


class EmbeddedBroker:
    """Start with `with EmbeddedBroker(data_dir) as broker: broker.url`.

    Data persists in `data_dir` across restarts (the same port is reused by `restart()`).
    """

    def __init__(self, data_dir: str | os.PathLike[str], port: int = 0,
                 host: str = "127.0.0.1", log_level: str = "warn") -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"pulsar://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "pulsar-lite.toml"
        config.write_text(_CONFIG)
        log = open(self.data_dir / "broker.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [broker_binary(), "--config", str(config), "--addr", f"{self.host}:{self.port}",
             "--db-path", str(self.data_dir / "db"), "--log-level", self.log_level],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = (f"pulsar-lite exited with code {self.process.returncode} at start; "
                       f"see {self.data_dir / 'broker.log'}")
                raise BrokerError(msg)
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        msg = f"pulsar-lite did not accept connections on {self.host}:{self.port} in {timeout_s}s"
        raise BrokerError(msg)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Stop abruptly (for outage tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
