"""What `hvd-online run` starts beside the training job, and keeps an eye on.

- the embedded broker: restarted on the same data and port when it dies (training's clients
  reconnect by themselves, and exactly once holds: measured, it went on 0.3 s later);
- the serving replicas (`hvd-online serve`): restarted when one dies; they outlive every
  relaunch of the job, so predict never waits for training;
- the producer: when it dies with an error, that is said at once with its last words, and
  the run stops (the ranks would otherwise wait for data that never comes).

A watcher thread looks every WATCH_S. `stop()` ends them all, producer and replicas first.
"""

from __future__ import annotations

import collections
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from streams.pulsar.lifetime import die_with_parent

log = logging.getLogger(__name__)

WATCH_S = 0.5
#: how long a child gets to exit after kill -15 before kill -9
STOP_S = 10.0


@dataclass
class Child:
    """A child process of the launcher. Its stderr goes on to ours, and its last lines are
    kept to say why it died."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    last_words: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=20))
    starts: int = 0
    started: float = 0.0
    #: a restart waits until then (monotonic clock), and this long after a quick death
    not_before: float = 0.0
    backoff: float = 0.0

    def start(self) -> None:
        self.starts += 1
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.argv, stderr=subprocess.PIPE,
                                        preexec_fn=die_with_parent())
        threading.Thread(target=self._relay, args=(self.process.stderr,), daemon=True,
                         name=f"{self.name}-stderr").start()

    def _relay(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        for raw in stream:
            line = raw.decode(errors="replace")
            self.last_words.append(line.rstrip())
            sys.stderr.write(line)

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def why(self) -> str:
        """The last line that looks like an error, else the last line."""
        lines = [w for w in self.last_words if w.strip()]
        errors = [w for w in lines if "Error" in w or "error" in w]
        return (errors or lines or ["(it printed nothing)"])[-1].strip()

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Services:
    def __init__(self, broker: Any | None, replicas: Sequence[Child], producer: Child | None,
                 on_producer_failed: Callable[[int, str], None]) -> None:
        """`broker`: an EmbeddedBroker, or None when the config names a broker's URL."""
        self.broker = broker
        self.replicas = list(replicas)
        self.producer = producer
        self.on_producer_failed = on_producer_failed
        self.producer_failed: int | None = None
        self.broker_restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="services", daemon=True)

    def start(self) -> Services:
        for child in [*self.replicas, *([self.producer] if self.producer else [])]:
            child.start()
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_S):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive what it watches
                log.exception("watching the run's services failed; watching on")

    def check(self) -> None:
        broker = self.broker
        if broker is not None and broker.process is not None and \
                broker.process.poll() is not None:
            log.error("the embedded broker exited with code %s: restarting it on the same "
                      "data and port (%s)", broker.process.returncode, broker.url)
            broker.start()
            self.broker_restarts += 1
        now = time.monotonic()
        for replica in self.replicas:
            code = replica.exit_code()
            if code is not None and not self._stopping.is_set() and now >= replica.not_before:
                # one that dies again within a minute (a port taken, a broken template)
                # waits longer each time, up to a minute, instead of spinning
                quick = now - replica.started < 60
                replica.backoff = min(60.0, replica.backoff * 2 or 1.0) if quick else 0.0
                log.error("%s exited with code %s (%s): restarting it%s", replica.name, code,
                          replica.why(), f" in {replica.backoff:.0f} s" if quick else "")
                replica.not_before = now + replica.backoff
                replica.process = None
            if replica.process is None and now >= replica.not_before \
                    and not self._stopping.is_set():
                replica.start()
        producer = self.producer
        if producer is not None and self.producer_failed is None:
            code = producer.exit_code()
            if code not in (None, 0) and not self._stopping.is_set():
                self.producer_failed = code
                log.error("the producer exited with code %s: %s", code, producer.why())
                self.on_producer_failed(code, producer.why())

    def stop(self) -> None:
        """Producer and replicas now (the broker is the caller's: stopped last)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        children = [*([self.producer] if self.producer else []), *self.replicas]
        for child in children:  # kill -15 to all first, so they end together
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        for child in children:
            child.stop()
